"""The workload: concurrent clients, one or more per organisation, doing real E-certificate business through
random nodes, and recording every request with its outcome (committed / rejected / unknown) and its timings.

The business (CONTRACT §3, docs/RULES.md §9-10): at setup the bank opens a credit line and every pair of parties
that trade (each supplier with the core, the suppliers among themselves) anchors and confirms one large contract.
A supplier anchors an invoice under its contract with the core enterprise, the core confirms it and issues a
certificate backed by it (some maturing within seconds, the rest in 90 days), the supplier accepts it, then moves
it: transfers with splits to other suppliers, each drawing on the contract between holder and recipient, splits,
or asks the bank for financing, which the bank approves, with or without recourse. A holder sometimes disputes a
certificate with the core (locked until the bank resolves it, after the core's answer). Once a certificate has
matured the core settles it, pays part of it or pays nothing; past the chain's grace period (`GRACE_MS`, set in
the chaos chain's genesis, `CHAIN_PARAMS`) its holder declares it defaulted; financed with recourse, the claim
goes to the seller, who repays part or all, and the bank writes off what is left. Clients of different orgs hand
each other work through bounded queues (the core's inbox of invoices and of disputes to answer, a supplier's
inbox of certificates to accept, the bank's inbox of financing requests and of disputes to resolve), so txs of all
orgs interleave.

A client retries the *same* envelope on another node when a node is unreachable, has no leader or times out
(a resubmission returns the first outcome): the checker then proves no tx is applied twice. An outcome still
unknown at the op deadline stays unknown; the certificate it touched is not used again.

Alongside, readers issue ``GET /v1/certs/{id}?consistency=linearizable`` on recently written certificates; the
checker feeds those reads and the writes' times to the linearizability checker. Reads are signed (CONTRACT §6)
for the org that may read every certificate of the run (`reader_org`: the regulator if the cluster has one,
else the core enterprise, the debtor of them all); tx submissions are not: each envelope is its own signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from node.chaos.history import COMMITTED, REJECTED, UNKNOWN, History, ReadRecord, SubmitRecord
from node.client.api import JSON, AsyncClient, HttpsTrust, Signer, error_code, tx_json
from node.genesis_file import LOCAL_DEMO_PARAMS, ChainParamValues

OP_TIMEOUT_S = 8.0  # a tx still unknown after this is recorded as unknown
IMPATIENT_TIMEOUT_S = 1.0
IMPATIENT_SHARE = 0.15  # of moves sent once, without retries: their outcomes may stay unknown
DOUBLE_SPEND_SHARE = 0.1  # of committed moves followed by an attempt to move the spent parent again
ATTEMPT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 2.0
RETRY_PAUSE_S = (0.05, 0.25)
INBOX_MAX = 64
RECENT_CERTS_MAX = 32
MATURITY_MS = 90 * 24 * 3600 * 1000
SHORT_MATURITY_MS = (2_500, 6_000)  # of some certificates: they mature, are paid or default within a run
SHORT_MATURITY_SHARE = 0.4
GRACE_MS = 2_000
CHAIN_PARAMS: ChainParamValues = {**LOCAL_DEMO_PARAMS, "grace_period_ms": GRACE_MS}
"""The chaos chain's genesis params (node/chaos/cluster.py): a new chain's rules, a grace period of 2 s."""
CLOCK_MARGIN_MS = 300  # block time is the leader's clock: act this long after a deadline by ours
SETTLE_SHARE = 0.45  # of the core's turns on a matured certificate; then PART_PAY_SHARE pays part, the rest nothing
PART_PAY_SHARE = 0.3
RECOURSE_SHARE = 0.5
WRITE_OFF_SHARE = 0.3
DISPUTE_SHARE = 0.05
CONTRACT_AMOUNT = 10**14  # fen: headroom for every invoice and transfer between two parties in a run
CREDIT_LIMIT = 10**15
INVOICE_AMOUNT = (50_000, 5_000_000)  # fen
DISCOUNT_BPS = (50, 600)
CLIENT_THINK_S = (0.0, 0.05)
READER_PAUSE_S = (0.02, 0.1)
CLIENT_ERRORS_MAX = 100


@dataclass(slots=True)
class Cert:
    id: str
    holder: str
    amount: int
    status: str
    busy: bool = False
    maturity: int = 0  # ms since the epoch (block time)
    paid: int = 0  # principal the core paid
    seller: str | None = None  # who sold it to the bank
    recourse: bool = False
    debtor_turns: int = 0  # the core's decisions on it: once at maturity, once more after a default
    no_default: bool = False  # refused `grace_not_over`: the chain's grace period is longer than ours (a ceremony's)


PAYABLE = frozenset({"active", "financing", "financed"})


@dataclass(slots=True)
class Claim:
    """The bank's recourse claim against the seller of a defaulted certificate."""

    cert_id: str
    bank: str
    seller: str
    amount: int
    repaid: int = 0
    open: bool = True
    busy: bool = False


@dataclass(slots=True)
class World:
    """What the clients know from acknowledged outcomes: certificates, inboxes, counters."""

    certs: dict[str, Cert] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)  # recently written cert ids, for readers
    core_inbox: asyncio.Queue[tuple[str, str, int]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))  # (supplier, invoice id, amount)
    accept_inbox: dict[str, asyncio.Queue[str]] = field(default_factory=dict)
    bank_inbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))
    claims: dict[str, Claim] = field(default_factory=dict)  # cert id -> the bank's claim on its seller
    respond_inbox: asyncio.Queue[tuple[str, str]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))  # (dispute id, cert id): the core answers
    resolve_inbox: asyncio.Queue[tuple[str, str]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))  # answered: the bank resolves

    def touch(self, cert_id: str) -> None:
        if cert_id in self.recent:
            self.recent.remove(cert_id)
        self.recent.append(cert_id)
        del self.recent[:-RECENT_CERTS_MAX]


def reader_org(orgs: list[tuple[str, str, str]]) -> str:
    """The org a run's reads speak for: one that may read every certificate, credit line and tx outcome of the
    workload: the regulator if there is one, else the core enterprise (debtor of every certificate issued)."""
    roles = {role: org for org, _, role in reversed(orgs)}  # the first org of each role
    return roles.get("regulator") or roles["core"]


class Api:
    """Submits signed txs and reads certificates through random nodes, recording everything in the history.
    `reader`: the signer of the reads (None: anonymous); `trust`: how https:// nodes are verified (default: the
    system store)."""

    def __init__(self, session: aiohttp.ClientSession, urls: dict[str, str], history: History,
                 clock: Callable[[], float], signers: dict[str, Signer], rng: random.Random,
                 reader: Signer | None = None, trust: HttpsTrust | None = None) -> None:
        self.session = session
        self.urls = urls
        self.history = history
        self.clock = clock
        self.signers = signers
        self.rng = rng
        self.http = AsyncClient(trust=trust)  # tx submissions: never signed
        self.reads = AsyncClient(reader, {url: node for node, url in urls.items()}, trust)

    def _node_order(self) -> list[str]:
        ids = list(self.urls)
        self.rng.shuffle(ids)
        return ids

    async def submit(self, client: str, signer: str, kind: str, body: dict[str, Any], patient: bool = True
                     ) -> SubmitRecord:
        """Send until a definite answer or the op deadline. An impatient client sends once with a short
        timeout and gives up: its outcome stays unknown, which is what the checker's fate rules are for."""
        tx_id, raw = self.signers[signer].signed(kind, body)
        doc = tx_json(raw)
        rec = SubmitRecord(tx_id, kind, client, signer, body, invoke=self.clock())
        self.history.txs.append(rec)
        deadline = rec.invoke + (OP_TIMEOUT_S if patient else IMPATIENT_TIMEOUT_S)
        order = self._node_order()
        while self.clock() < deadline:
            node = order[rec.attempts % len(order)]
            rec.attempts += 1
            rec.nodes.append(node)
            timeout = max(0.2, min(ATTEMPT_TIMEOUT_S, deadline - self.clock()))
            try:
                status, answer = await self.http.post_tx(self.session, self.urls[node], doc, JSON,
                                                         timeout_ms=int(timeout * 1000) - 100, timeout_s=timeout)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                rec.error = type(exc).__name__
                if not patient:
                    break
                await asyncio.sleep(self.rng.uniform(*RETRY_PAUSE_S))
                continue
            answer = _as_dict(answer)
            if status == 200 and answer.get("status") in (COMMITTED, REJECTED):
                rec.complete = self.clock()
                rec.outcome = answer["status"]
                rec.height = answer.get("height")
                if rec.outcome == COMMITTED:
                    rec.result = answer.get("result") or {}
                else:
                    rec.error_code = error_code(answer)
                return rec
            if status == 400:  # refused at admission: never enters a block
                rec.complete = self.clock()
                rec.outcome = REJECTED
                rec.error_code = error_code(answer)
                return rec
            rec.error = error_code(answer) or f"http_{status}"
            if not patient:
                break
            await asyncio.sleep(self.rng.uniform(*RETRY_PAUSE_S))
        rec.outcome = UNKNOWN
        return rec

    async def read_cert(self, client: str, cert_id: str) -> ReadRecord:
        node = self.rng.choice(list(self.urls))
        t0 = self.clock()
        try:
            status, answer = await self.reads.request(self.session, self.urls[node], "GET",
                                                      f"/v1/certs/{cert_id}?consistency=linearizable",
                                                      timeout_s=READ_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            rec = ReadRecord(cert_id, node, client, t0, self.clock(), False, error=type(exc).__name__)
        else:
            t1 = self.clock()
            answer = _as_dict(answer)
            if status == 200:
                rec = ReadRecord(cert_id, node, client, t0, t1, True,
                                 (str(answer.get("holder")), str(answer.get("status"))))
            elif status == 404 and error_code(answer) == "cert_not_found":
                rec = ReadRecord(cert_id, node, client, t0, t1, True, None)
            else:
                rec = ReadRecord(cert_id, node, client, t0, t1, False, error=error_code(answer) or f"http_{status}")
        self.history.reads.append(rec)
        return rec


def _as_dict(answer: Any) -> dict[str, Any]:
    return answer if isinstance(answer, dict) else {}


class Workload:
    """The clients of one run. `run()` returns when `stop` is set and every client has finished its op.
    `grace_ms`: the chain's grace period (a holder declares default only after it)."""

    def __init__(self, api: Api, orgs: list[tuple[str, str, str]], seed: int, stop: asyncio.Event,
                 workers_per_org: int = 1, readers: int = 2, grace_ms: int = GRACE_MS) -> None:
        self.api = api
        self.stop = stop
        self.seed = seed
        self.world = World()
        self.bank = next(o for o, _, r in orgs if r == "bank")
        self.core = next(o for o, _, r in orgs if r == "core")
        self.suppliers = [o for o, _, r in orgs if r == "supplier"]
        for s in self.suppliers:
            self.world.accept_inbox[s] = asyncio.Queue(maxsize=INBOX_MAX)
        self.workers_per_org = workers_per_org
        self.readers = readers
        self.grace_ms = grace_ms
        self.doc_counter = 0
        self.errors: list[str] = []
        self.contracts: dict[frozenset[str], str] = {}
        """The confirmed contract between two parties (supplier-core, supplier-supplier): every invoice names
        its supplier's with the core, every transfer those between the holder and its recipients."""

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"workload:{self.seed}:{name}")

    async def setup(self, deadline_s: float = 60.0) -> None:
        """The bank opens a credit line to the core enterprise; one large contract per pair of parties that
        trade is anchored and confirmed (the chain's trade-background rules). Each retried until it holds."""
        t_end = time.monotonic() + deadline_s
        await self._until(f"{self.bank}-setup", self.bank, "credit.grant", {
            "core": self.core, "limit": CREDIT_LIMIT, "expires_at": _now_ms() + 10 * MATURITY_MS}, (), t_end)
        pairs = [(s, self.core) for s in self.suppliers] + list(itertools.combinations(self.suppliers, 2))
        await asyncio.gather(*(self._contract(seller, buyer, t_end) for seller, buyer in pairs))

    async def _contract(self, seller: str, buyer: str, t_end: float) -> None:
        doc_id = f"ct-{self.seed}-{seller}-{buyer}"
        await self._until(f"{seller}-setup", seller, "trade.anchor", {
            "doc_id": doc_id, "kind": "contract", "doc_hash": hashlib.sha256(doc_id.encode()).hexdigest(),
            "counterparty": buyer, "amount": CONTRACT_AMOUNT}, ("doc_exists",), t_end)
        await self._until(f"{buyer}-setup", buyer, "trade.confirm", {"doc_id": doc_id},
                          ("invalid_status_transition",), t_end)
        self.contracts[frozenset((seller, buyer))] = doc_id

    async def _until(self, client: str, signer: str, kind: str, body: dict[str, Any], done_codes: tuple[str, ...],
                     t_end: float) -> None:
        """Submit (a fresh envelope each time) until committed, or rejected with a code that says an earlier
        attempt whose outcome stayed unknown did commit."""
        while time.monotonic() < t_end:
            rec = await self.api.submit(client, signer, kind, body)
            if rec.outcome == COMMITTED or (rec.outcome == REJECTED and rec.error_code in done_codes):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"setup: {kind} by {signer} did not commit within the setup deadline")

    async def run(self) -> None:
        tasks = []
        for w in range(self.workers_per_org):
            tasks.append(self._client(f"{self.core}-{w}", self._core_step))
            tasks.append(self._client(f"{self.bank}-{w}", self._bank_step))
            for s in self.suppliers:
                tasks.append(self._client(f"{s}-{w}", self._supplier_step, s))
        for r in range(self.readers):
            tasks.append(self._reader(f"reader-{r}"))
        await asyncio.gather(*tasks)

    async def _client(self, name: str, step: Callable[..., Any], *args: Any) -> None:
        rng = self._rng(name)
        while not self.stop.is_set():
            try:
                did = await step(name, rng, *args)
            except Exception as exc:  # an answer we did not expect must not end the run: count it, go on
                if len(self.errors) < CLIENT_ERRORS_MAX:
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                did = False
            if not did:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), 0.05)
            else:
                await asyncio.sleep(rng.uniform(*CLIENT_THINK_S))

    async def _reader(self, name: str) -> None:
        rng = self._rng(name)
        while not self.stop.is_set():
            if self.world.recent:
                await self.api.read_cert(name, rng.choice(self.world.recent))
            await asyncio.sleep(rng.uniform(*READER_PAUSE_S))

    # -- what the world says is due -----------------------------------------------------------------------

    def _payable(self) -> list[Cert]:
        """Certificates the core has not yet decided on: matured (once), or defaulted (once more)."""
        now = _now_ms()
        return [c for c in self.world.certs.values() if not c.busy and now >= c.maturity + CLOCK_MARGIN_MS
                and ((c.status in PAYABLE and c.debtor_turns == 0) or (c.status == "defaulted" and c.debtor_turns < 2))]

    def _defaultable(self, holder: str) -> list[Cert]:
        """Held by `holder`, unpaid past maturity and the grace period, after the core had its turn."""
        now = _now_ms()
        return [c for c in self.world.certs.values() if c.holder == holder and not c.busy
                and c.status in PAYABLE and c.debtor_turns > 0 and c.paid < c.amount and not c.no_default
                and now >= c.maturity + self.grace_ms + CLOCK_MARGIN_MS]

    # -- the orgs' steps: each returns whether it did something ------------------------------------------

    async def _core_step(self, name: str, rng: random.Random) -> bool:
        with contextlib.suppress(asyncio.QueueEmpty):
            dispute_id, cert_id = self.world.respond_inbox.get_nowait()
            rec = await self.api.submit(name, self.core, "dispute.respond", {
                "dispute_id": dispute_id, "statement": "delivered as agreed",
                "evidence_hash": hashlib.sha256(f"answer {dispute_id}".encode()).hexdigest()})
            if rec.outcome == COMMITTED:
                with contextlib.suppress(asyncio.QueueFull):
                    self.world.resolve_inbox.put_nowait((dispute_id, cert_id))
            return True
        due = self._payable()
        if due and (self.world.core_inbox.empty() or rng.random() < 0.5):
            await self._pay(name, rng, rng.choice(due))
            return True
        try:
            supplier, doc_id, amount = self.world.core_inbox.get_nowait()
        except asyncio.QueueEmpty:
            return False
        rec = await self.api.submit(name, self.core, "trade.confirm", {"doc_id": doc_id})
        if rec.outcome != COMMITTED:
            return True
        issue_amount = rng.randint(max(1, amount // 2), amount)
        term = rng.randint(*SHORT_MATURITY_MS) if rng.random() < SHORT_MATURITY_SHARE else MATURITY_MS
        maturity = _now_ms() + term
        rec = await self.api.submit(name, self.core, "ecert.issue", {
            "to": supplier, "amount": issue_amount, "maturity": maturity, "bank": self.bank,
            "invoice_ids": [doc_id]})
        if rec.outcome == COMMITTED and rec.result and rec.result.get("certs"):
            cert_id = rec.result["certs"][0]
            self.world.certs[cert_id] = Cert(cert_id, supplier, issue_amount, "issued", busy=True, maturity=maturity)
            self.world.touch(cert_id)
            with contextlib.suppress(asyncio.QueueFull):
                self.world.accept_inbox[supplier].put_nowait(cert_id)
        return True

    async def _pay(self, name: str, rng: random.Random, cert: Cert) -> None:
        """The debtor's turn on a matured (or defaulted) certificate: settle it, pay part, or leave it unpaid
        (then its holder declares default after the grace period)."""
        cert.busy = True
        cert.debtor_turns += 1
        choice = rng.random()
        rec = None
        if choice < SETTLE_SHARE:
            rec = await self.api.submit(name, self.core, "ecert.settle", {"cert_id": cert.id})
            if rec.outcome == COMMITTED and rec.result:
                cert.status, cert.paid = "settled", cert.amount
        elif choice < SETTLE_SHARE + PART_PAY_SHARE and cert.amount - cert.paid > 1:
            amount = rng.randint(1, cert.amount - cert.paid - 1)
            rec = await self.api.submit(name, self.core, "ecert.pay", {"cert_id": cert.id, "amount": amount})
            if rec.outcome == COMMITTED and rec.result:
                cert.status, cert.paid = str(rec.result.get("status")), int(rec.result.get("paid") or 0)
        if rec is not None and rec.outcome == COMMITTED:
            self.world.touch(cert.id)
        if rec is None or rec.outcome != UNKNOWN:
            cert.busy = False

    async def _bank_step(self, name: str, rng: random.Random) -> bool:
        with contextlib.suppress(asyncio.QueueEmpty):
            dispute_id, cert_id = self.world.resolve_inbox.get_nowait()
            rec = await self.api.submit(name, self.bank, "dispute.resolve", {
                "dispute_id": dispute_id, "outcome": rng.choice(["upheld", "dismissed"])})
            if rec.outcome == COMMITTED:
                self.world.certs[cert_id].busy = False  # the lock is released
            return True
        due = self._defaultable(self.bank)
        if due:
            await self._default(name, self.bank, rng.choice(due))
            return True
        claims = [c for c in self.world.claims.values() if c.bank == self.bank and c.open and not c.busy]
        if claims and rng.random() < WRITE_OFF_SHARE:
            claim = rng.choice(claims)
            claim.busy = True
            rec = await self.api.submit(name, self.bank, "recourse.write_off",
                                        {"cert_id": claim.cert_id, "reason": "not recoverable"})
            if rec.outcome == COMMITTED:
                claim.open = False
            claim.busy = rec.outcome == UNKNOWN
            return True
        try:
            cert_id = self.world.bank_inbox.get_nowait()
        except asyncio.QueueEmpty:
            return False
        cert = self.world.certs[cert_id]
        recourse = rng.random() < RECOURSE_SHARE
        rec = await self.api.submit(name, self.bank, "finance.approve", {
            "cert_id": cert_id, "discount_bps": rng.randint(*DISCOUNT_BPS), "recourse": recourse})
        if rec.outcome == COMMITTED:
            cert.seller, cert.recourse = cert.holder, recourse
            cert.holder, cert.status, cert.busy = self.bank, "financed", False
            self.world.touch(cert_id)
        elif rec.outcome == REJECTED:
            cert.busy = False  # e.g. matured meanwhile: still `financing`, its holder's, payable and defaultable
        return True

    async def _default(self, name: str, holder: str, cert: Cert) -> None:
        cert.busy = True
        rec = await self.api.submit(name, holder, "ecert.default", {"cert_id": cert.id})
        if rec.outcome == COMMITTED and rec.result:
            cert.status, cert.holder = "defaulted", str(rec.result.get("holder"))
            claim = rec.result.get("claim")
            if isinstance(claim, dict):
                self.world.claims[cert.id] = Claim(cert.id, str(claim["bank"]), str(claim["seller"]),
                                                   int(claim["amount"]))
            self.world.touch(cert.id)
        elif rec.outcome == REJECTED and rec.error_code == "grace_not_over":
            cert.no_default = True  # not again: on a chain with a longer grace period it would never end
        cert.busy = rec.outcome == UNKNOWN

    async def _supplier_step(self, name: str, rng: random.Random, org: str) -> bool:
        inbox = self.world.accept_inbox[org]
        with contextlib.suppress(asyncio.QueueEmpty):
            cert_id = inbox.get_nowait()
            rec = await self.api.submit(name, org, "ecert.accept", {"cert_id": cert_id})
            cert = self.world.certs[cert_id]
            if rec.outcome == COMMITTED:
                cert.status, cert.busy = "active", False
                self.world.touch(cert_id)
            return True
        due = self._defaultable(org)
        if due:
            await self._default(name, org, rng.choice(due))
            return True
        claims = [c for c in self.world.claims.values() if c.seller == org and c.open and not c.busy]
        if claims and rng.random() < 0.5:
            await self._repay(name, rng, org, rng.choice(claims))
            return True
        now = _now_ms()
        mine = [c for c in self.world.certs.values() if c.holder == org and c.status == "active" and not c.busy
                and c.paid == 0 and now < c.maturity - CLOCK_MARGIN_MS]
        if mine and rng.random() < DISPUTE_SHARE and not self.world.respond_inbox.full():
            await self._dispute(name, org, rng.choice(mine))
            return True
        if mine and rng.random() < 0.7:
            await self._move(name, rng, org, rng.choice(mine))
            return True
        if self.world.core_inbox.full():
            return False
        self.doc_counter += 1
        doc_id = f"inv-{self.seed}-{org}-{self.doc_counter}"
        amount = rng.randint(*INVOICE_AMOUNT)
        rec = await self.api.submit(name, org, "trade.anchor", {
            "doc_id": doc_id, "kind": "invoice", "doc_hash": hashlib.sha256(doc_id.encode()).hexdigest(),
            "counterparty": self.core, "amount": amount, "contract_id": self.contracts[frozenset((org, self.core))]})
        if rec.outcome == COMMITTED:
            with contextlib.suppress(asyncio.QueueFull):
                self.world.core_inbox.put_nowait((org, doc_id, amount))
        return True

    async def _repay(self, name: str, rng: random.Random, org: str, claim: Claim) -> None:
        claim.busy = True
        left = claim.amount - claim.repaid
        amount = left if rng.random() < 0.4 else rng.randint(1, left)
        rec = await self.api.submit(name, org, "recourse.repay", {"cert_id": claim.cert_id, "amount": amount})
        if rec.outcome == COMMITTED and rec.result:
            claim.repaid = int(rec.result.get("repaid") or claim.repaid)
            claim.open = rec.result.get("status") != "closed"
        claim.busy = rec.outcome == UNKNOWN

    async def _dispute(self, name: str, org: str, cert: Cert) -> None:
        """The holder disputes the delivery behind a certificate with its debtor; the certificate stays locked
        (busy) until the bank resolves it."""
        cert.busy = True
        rec = await self.api.submit(name, org, "dispute.open", {
            "cert_id": cert.id, "against": self.core, "reason": "goods not as agreed",
            "evidence_hash": hashlib.sha256(f"evidence {cert.id}".encode()).hexdigest()})
        if rec.outcome == COMMITTED and rec.result:
            with contextlib.suppress(asyncio.QueueFull):
                self.world.respond_inbox.put_nowait((str(rec.result["dispute_id"]), cert.id))
            # A full inbox leaves it locked and busy: never moved again in this run.
        elif rec.outcome == REJECTED:
            cert.busy = False

    def _trade_docs(self, holder: str, recipients: list[str]) -> list[str]:
        return [self.contracts[frozenset((holder, r))] for r in recipients]

    async def _move(self, name: str, rng: random.Random, org: str, cert: Cert) -> None:
        cert.busy = True
        patient = rng.random() >= IMPATIENT_SHARE
        others = [s for s in self.suppliers if s != org] + ([self.core] if rng.random() < 0.2 else [])
        action = rng.choice(["transfer", "transfer", "split", "finance"])
        if cert.amount < 4 or not others:
            action = "finance"
        if action == "transfer":
            recipients = rng.sample(others, rng.randint(1, min(2, len(others))))
            budget = cert.amount - (0 if rng.random() < 0.3 else 1)
            parts = _split_amount(rng, budget, len(recipients))
            to = [{"org": o, "amount": a} for o, a in zip(recipients, parts, strict=True)]
            rec = await self.api.submit(name, org, "ecert.transfer", {
                "cert_id": cert.id, "to": to, "trade_docs": self._trade_docs(org, recipients)}, patient)
            if rec.outcome == COMMITTED and rec.result:
                holders = recipients + [org] * (len(rec.result["certs"]) - len(recipients))
                amounts = [*parts, cert.amount - sum(parts)]
                self._children(cert, rec.result["certs"], holders, amounts)
        elif action == "split":
            amounts = _split_amount(rng, cert.amount, rng.randint(2, 3))
            rec = await self.api.submit(name, org, "ecert.split", {"cert_id": cert.id, "amounts": amounts}, patient)
            if rec.outcome == COMMITTED and rec.result:
                self._children(cert, rec.result["certs"], [org] * len(amounts), amounts)
        else:
            rec = await self.api.submit(name, org, "finance.request", {"cert_id": cert.id, "bank": self.bank},
                                        patient)
            if rec.outcome == COMMITTED:
                cert.status = "financing"
                self.world.touch(cert.id)
                with contextlib.suppress(asyncio.QueueFull):
                    self.world.bank_inbox.put_nowait(cert.id)
                return
        if rec.outcome == REJECTED:
            cert.busy = False  # our view was stale or the move was refused: the cert is still ours to use
        # UNKNOWN: leave it busy; its state is no longer known to us.
        if rec.outcome == COMMITTED and rng.random() < DOUBLE_SPEND_SHARE and others:
            # Spend the parent again with a fresh tx: every node must refuse it (value would appear otherwise).
            await self.api.submit(name, org, "ecert.transfer", {
                "cert_id": cert.id, "to": [{"org": others[0], "amount": 1}],
                "trade_docs": self._trade_docs(org, others[:1])})

    def _children(self, parent: Cert, ids: list[str], holders: list[str], amounts: list[int]) -> None:
        parent.status = "split"
        self.world.touch(parent.id)
        for cid, holder, amount in zip(ids, holders, amounts, strict=False):
            self.world.certs[cid] = Cert(cid, holder, amount, "active", maturity=parent.maturity)
            self.world.touch(cid)


def _split_amount(rng: random.Random, total: int, parts: int) -> list[int]:
    """`parts` positive integers summing to `total` (total >= parts)."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
