"""The workload: concurrent clients, one or more per organisation, doing real E-certificate business through
random nodes, and recording every request with its outcome (committed / rejected / unknown) and its timings.

The business (CONTRACT §3): a supplier anchors an invoice against the core enterprise, the core confirms it and
issues a certificate backed by it, the supplier accepts it, then moves it: transfers with splits to other
suppliers, splits, or asks the bank for financing, which the bank approves. Clients of different orgs hand each
other work through bounded queues (the core's inbox of invoices, a supplier's inbox of certificates to accept,
the bank's inbox of financing requests), so txs of all orgs interleave.

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
from node.client.api import JSON, AsyncClient, Signer, error_code, tx_json

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


@dataclass(slots=True)
class World:
    """What the clients know from acknowledged outcomes: certificates, inboxes, counters."""

    certs: dict[str, Cert] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)  # recently written cert ids, for readers
    core_inbox: asyncio.Queue[tuple[str, str, int]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))  # (supplier, invoice id, amount)
    accept_inbox: dict[str, asyncio.Queue[str]] = field(default_factory=dict)
    bank_inbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=INBOX_MAX))

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
    `reader`: the signer of the reads (None: anonymous)."""

    def __init__(self, session: aiohttp.ClientSession, urls: dict[str, str], history: History,
                 clock: Callable[[], float], signers: dict[str, Signer], rng: random.Random,
                 reader: Signer | None = None) -> None:
        self.session = session
        self.urls = urls
        self.history = history
        self.clock = clock
        self.signers = signers
        self.rng = rng
        self.http = AsyncClient()  # tx submissions: never signed
        self.reads = AsyncClient(reader, {url: node for node, url in urls.items()})

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
    """The clients of one run. `run()` returns when `stop` is set and every client has finished its op."""

    def __init__(self, api: Api, orgs: list[tuple[str, str, str]], seed: int, stop: asyncio.Event,
                 workers_per_org: int = 1, readers: int = 2) -> None:
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
        self.doc_counter = 0
        self.errors: list[str] = []

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"workload:{self.seed}:{name}")

    async def setup(self, deadline_s: float = 60.0) -> None:
        """The bank opens a credit line to the core enterprise (retried until committed)."""
        t_end = time.monotonic() + deadline_s
        while time.monotonic() < t_end:
            rec = await self.api.submit(f"{self.bank}-setup", self.bank, "credit.grant", {
                "core": self.core, "limit": CREDIT_LIMIT, "expires_at": _now_ms() + 10 * MATURITY_MS})
            if rec.outcome == COMMITTED:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("could not open the credit line: no tx committed within the setup deadline")

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

    # -- the orgs' steps: each returns whether it did something ------------------------------------------

    async def _core_step(self, name: str, rng: random.Random) -> bool:
        try:
            supplier, doc_id, amount = self.world.core_inbox.get_nowait()
        except asyncio.QueueEmpty:
            return False
        rec = await self.api.submit(name, self.core, "trade.confirm", {"doc_id": doc_id})
        if rec.outcome != COMMITTED:
            return True
        issue_amount = rng.randint(max(1, amount // 2), amount)
        rec = await self.api.submit(name, self.core, "ecert.issue", {
            "to": supplier, "amount": issue_amount, "maturity": _now_ms() + MATURITY_MS, "bank": self.bank,
            "invoice_ids": [doc_id]})
        if rec.outcome == COMMITTED and rec.result and rec.result.get("certs"):
            cert_id = rec.result["certs"][0]
            self.world.certs[cert_id] = Cert(cert_id, supplier, issue_amount, "issued", busy=True)
            self.world.touch(cert_id)
            with contextlib.suppress(asyncio.QueueFull):
                self.world.accept_inbox[supplier].put_nowait(cert_id)
        return True

    async def _bank_step(self, name: str, rng: random.Random) -> bool:
        try:
            cert_id = self.world.bank_inbox.get_nowait()
        except asyncio.QueueEmpty:
            return False
        rec = await self.api.submit(name, self.bank, "finance.approve",
                                    {"cert_id": cert_id, "discount_bps": rng.randint(*DISCOUNT_BPS)})
        cert = self.world.certs[cert_id]
        if rec.outcome == COMMITTED:
            cert.holder, cert.status = self.bank, "financed"
            self.world.touch(cert_id)
        return True

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
        mine = [c for c in self.world.certs.values() if c.holder == org and c.status == "active" and not c.busy]
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
            "counterparty": self.core, "amount": amount})
        if rec.outcome == COMMITTED:
            with contextlib.suppress(asyncio.QueueFull):
                self.world.core_inbox.put_nowait((org, doc_id, amount))
        return True

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
            rec = await self.api.submit(name, org, "ecert.transfer", {"cert_id": cert.id, "to": to}, patient)
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
            await self.api.submit(name, org, "ecert.transfer",
                                  {"cert_id": cert.id, "to": [{"org": others[0], "amount": 1}]})

    def _children(self, parent: Cert, ids: list[str], holders: list[str], amounts: list[int]) -> None:
        parent.status = "split"
        self.world.touch(parent.id)
        for cid, holder, amount in zip(ids, holders, amounts, strict=False):
            self.world.certs[cid] = Cert(cid, holder, amount, "active")
            self.world.touch(cid)


def _split_amount(rng: random.Random, total: int, parts: int) -> list[int]:
    """`parts` positive integers summing to `total` (total >= parts)."""
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
