"""The supply-chain story of the seed (Bank of China and Geely, ../shared/seed), told on chain.

    python -m node.client.demo --config cluster.toml [--node URL] [--maturity-seconds 12]

1. boc grants geely a credit line (credit.grant).
2. tier1 anchors the purchase contract, the delivery note and the invoice it sent geely (trade.anchor: the
   "four streams"; the invoice text is stored only as sealed boxes for tier1, geely, boc and the regulator); geely confirms them.
3. geely issues an E-certificate to tier1 against the confirmed invoice (ecert.issue), tier1 accepts it.
4. tier1 transfers part of it to tier2 and keeps the rest (ecert.transfer).
   Each hop has its trade background: the seller anchors a contract with its buyer, who confirms it, and the
   transfer draws on it (trade_docs; required on chains with transfer_requires_trade_docs).
5. tier2 splits its part in two (ecert.split) and passes one piece to tier3 (ecert.transfer).
6. tier3 finances its piece with boc at a discount, with recourse (finance.request, finance.approve).
7. geely disputes tier2's piece (dispute.open: the certificate is locked), tier2 answers (dispute.respond) and
   boc, the bank named at issue, dismisses it (dispute.resolve): the lock is released.
8. At maturity geely settles tier1's and tier2's pieces in full (ecert.settle), but pays only part of the piece
   boc holds (a `payment` document, then ecert.pay); boc complains (complaint.file), geely answers
   (complaint.respond).
9. Once the chain's grace period is over, boc declares that piece defaulted (ecert.default): it financed it with
   recourse, so its claim for the unpaid principal goes to tier3, who takes the certificate back; tier3 repays
   part (recourse.repay) and boc writes off the rest (recourse.write_off). The local demo's chain has a 5 s grace
   period (node/genesis_file.py); on a chain whose grace period is longer than a minute this step is skipped.
To keep the demo short the certificate matures --maturity-seconds after issue (default 12 s); the demo waits for
it and for the grace period, and says so.

Then it prints the certificate's lineage tree, each org's holdings from this run and what every party is owed
(GET /v1/orgs/{id}/owed, if the node has that route). Every run uses fresh doc ids and nonces, so running it again
tells the story again on the same chain. Progress goes to stderr; the last line on stdout is a JSON summary.

Every read is signed (CONTRACT §6) by the org whose business it is: each org reads its own holdings and the
outcome of its own txs, the core enterprise (the debtor, who sees every piece) reads the lineage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ecert.errors import GenesisError
from ecert.genesis import chain_params_of, genesis_from_json
from ecert.privacy import seal_document
from ecert.state import DEFAULT_CHAIN_PARAMS, ChainParams
from node.client.api import (
    CACERT_ENV,
    ApiError,
    Client,
    HttpsTrust,
    HttpsTrustError,
    Signer,
    Unreachable,
    load_signer,
    node_ids_of,
)
from node.client.cli import fmt_amount, fmt_time, lineage_tree, node_url
from node.config import ClusterConfig, ClusterConfigError, load_config
from node.keys import KeyFileError, org_public_keys

console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

YUAN = 100  # fen per yuan
CREDIT_LIMIT = 50_000_000 * YUAN
INVOICE_AMOUNT = 5_000_000 * YUAN
CERT_AMOUNT = 3_000_000 * YUAN
TO_TIER2 = 1_200_000 * YUAN
TIER2_PIECES = (500_000 * YUAN, 700_000 * YUAN)
DISCOUNT_BPS = 450  # 4.5 % a year
PARTIAL_PAYMENT = 200_000 * YUAN  # of tier3's piece (TIER2_PIECES[0]), paid at maturity before it defaults
DEFAULT_WAIT_MAX_MS = 60_000  # a longer grace period than this: the default and recourse part is skipped
SETTLE_RETRIES_MAX = 20
maturity_seconds_default = 12.0


class DemoError(Exception):
    """A step of the story did not commit; the message names the step and the node's answer."""


@dataclass(frozen=True, slots=True)
class Cast:
    """Who plays which part: the first bank, the first core enterprise and three suppliers of the cluster file."""

    bank: str
    core: str
    tier1: str
    tier2: str
    tier3: str

    @staticmethod
    def of(cluster: ClusterConfig) -> Cast:
        banks = [o.id for o in cluster.orgs if o.role == "bank"]
        cores = [o.id for o in cluster.orgs if o.role == "core"]
        suppliers = [o.id for o in cluster.orgs if o.role == "supplier"]
        if not banks or not cores or len(suppliers) < 3:
            raise DemoError("the demo needs a bank, a core enterprise and three suppliers in [[orgs]]")
        return Cast(banks[0], cores[0], suppliers[0], suppliers[1], suppliers[2])

    @property
    def orgs(self) -> tuple[str, ...]:
        return (self.bank, self.core, self.tier1, self.tier2, self.tier3)


@dataclass(slots=True)
class Story:
    cluster: ClusterConfig
    client: Client
    cast: Cast
    signers: dict[str, Signer]
    run_id: str
    params: ChainParams = DEFAULT_CHAIN_PARAMS
    steps: list[dict[str, Any]] = field(default_factory=list)
    clients: dict[str, Client] = field(default_factory=dict)

    def as_org(self, org: str) -> Client:
        """The client with its reads signed for `org` (one per org, so each keeps the node that answered first)."""
        client = self.clients.get(org)
        if client is None:
            client = self.clients[org] = self.client.speaking_for(self.signers[org])
        return client

    def tx(self, org: str, kind: str, body: Mapping[str, object], say: str) -> dict[str, Any]:
        """Sign, submit with wait=commit, print one line; raise DemoError unless it committed."""
        envelope = self.signers[org].sign(kind, body)
        started = time.monotonic()
        try:
            doc = self.as_org(org).submit(envelope)  # a poll after a timeout reads the outcome as its signer
        except ApiError as e:
            raise DemoError(f"{say}: the node refused {kind}: {e}") from None
        ms = (time.monotonic() - started) * 1000
        status = doc.get("status")
        self.steps.append({"kind": kind, "signer": org, "tx_id": doc.get("tx_id"), "status": status,
                           "height": doc.get("height"), "ms": round(ms, 1)})
        if status != "committed":
            error = doc.get("error") or {}
            raise DemoError(f"{say}: {kind} is {status}: {error.get('code', '')} {error.get('message', '')}".strip())
        console.print(f"  [green]✓[/green] {say}  [dim]{kind} · block {doc.get('height')} · {ms:.0f} ms[/dim]")
        return doc.get("result") or {}

    def doc_id(self, name: str) -> str:
        return f"{name}-{self.run_id}"


def sealed_for(cluster: ClusterConfig, org_ids: Sequence[str], content: bytes) -> dict[str, bytes]:
    """The document sealed to each party's X25519 key: the chain stores only what they can open."""
    return dict(seal_document(content, {org: org_public_keys(cluster, org)[1] for org in org_ids}).ciphertexts)


def tell(story: Story, maturity_s: float) -> dict[str, Any]:
    c = story.cast
    now_ms = time.time_ns() // 1_000_000

    console.rule("[bold]1. credit line")
    story.tx(c.bank, "credit.grant", {"core": c.core, "limit": CREDIT_LIMIT, "expires_at": now_ms + 365 * 86_400_000},
             f"{c.bank} grants {c.core} a credit line of {fmt_amount(CREDIT_LIMIT)}")

    console.rule("[bold]2. the four streams: contract, delivery, invoice")
    invoice_id, contract_id = story.doc_id("INV"), story.doc_id("PO")
    for name, kind, what in (("PO", "contract", "purchase contract"), ("DN", "delivery", "delivery note"),
                             ("INV", "invoice", "invoice")):
        text = json.dumps({"doc": story.doc_id(name), "kind": kind, "seller": c.tier1, "buyer": c.core,
                           "amount_fen": INVOICE_AMOUNT, "goods": "20,000 brake assemblies"}).encode()
        body: dict[str, object] = {"doc_id": story.doc_id(name), "kind": kind,
                                   "doc_hash": hashlib.sha256(text).hexdigest(), "counterparty": c.core,
                                   "amount": INVOICE_AMOUNT}
        extra = ""
        if kind == "invoice":
            # Sealed for the regulator too when the consortium has one (CONTRACT §6: it reads everything).
            readers = (c.tier1, c.core, c.bank, *(o.id for o in story.cluster.orgs if o.role == "regulator"))
            body["ciphertext"] = sealed_for(story.cluster, readers, text)
            body["contract_id"] = contract_id  # an invoice belongs to a confirmed contract (RULES §10)
            extra = f" under {contract_id}, sealed for {', '.join(readers[:-1])} and {readers[-1]}"
        story.tx(c.tier1, "trade.anchor", body, f"{c.tier1} anchors {what} {story.doc_id(name)}{extra}")
        if kind == "contract":  # confirmed before the invoice can name it
            story.tx(c.core, "trade.confirm", {"doc_id": contract_id}, f"{c.core} confirms {contract_id}")
    for name in ("DN", "INV"):
        story.tx(c.core, "trade.confirm", {"doc_id": story.doc_id(name)}, f"{c.core} confirms {story.doc_id(name)}")

    console.rule("[bold]3. issue")
    maturity = time.time_ns() // 1_000_000 + int(maturity_s * 1000)
    root = story.tx(c.core, "ecert.issue", {"to": c.tier1, "amount": CERT_AMOUNT, "maturity": maturity,
                                            "bank": c.bank, "invoice_ids": [invoice_id]},
                    f"{c.core} issues an E-certificate of {fmt_amount(CERT_AMOUNT)} to {c.tier1}, "
                    f"maturing {fmt_time(maturity)} ({maturity_s:.0f} s from now, to keep the demo short)")["certs"][0]
    story.tx(c.tier1, "ecert.accept", {"cert_id": root}, f"{c.tier1} accepts {root}")

    console.rule("[bold]4. transfer and split down the chain, each hop on a confirmed contract")
    hop12 = hop_contract(story, buyer=c.tier1, seller=c.tier2, amount=TO_TIER2, goods="brake castings")
    to_t2, t1_rest = story.tx(c.tier1, "ecert.transfer", {"cert_id": root, "to": [{"org": c.tier2,
                                                                                     "amount": TO_TIER2}],
                                                          "trade_docs": [hop12]},
                              f"{c.tier1} transfers {fmt_amount(TO_TIER2)} to {c.tier2} against {hop12} and keeps "
                              f"{fmt_amount(CERT_AMOUNT - TO_TIER2)}")["certs"]
    piece_t3, piece_t2 = story.tx(c.tier2, "ecert.split", {"cert_id": to_t2, "amounts": list(TIER2_PIECES)},
                                  f"{c.tier2} splits its certificate into "
                                  f"{' + '.join(fmt_amount(a) for a in TIER2_PIECES)}")["certs"]
    hop23 = hop_contract(story, buyer=c.tier2, seller=c.tier3, amount=TIER2_PIECES[0], goods="cast iron")
    (at_t3,) = story.tx(c.tier2, "ecert.transfer", {"cert_id": piece_t3, "to": [{"org": c.tier3,
                                                                                   "amount": TIER2_PIECES[0]}],
                                                    "trade_docs": [hop23]},
                        f"{c.tier2} passes {fmt_amount(TIER2_PIECES[0])} on to {c.tier3} against {hop23}")["certs"]

    console.rule("[bold]5. financing, with recourse")
    story.tx(c.tier3, "finance.request", {"cert_id": at_t3, "bank": c.bank},
             f"{c.tier3} asks {c.bank} to finance {at_t3}")
    financed = story.tx(c.bank, "finance.approve", {"cert_id": at_t3, "discount_bps": DISCOUNT_BPS,
                                                    "recourse": True},
                        f"{c.bank} finances it at {DISCOUNT_BPS / 100:.2f} % a year, with recourse to {c.tier3}")
    console.print(f"    principal {fmt_amount(financed.get('principal'))}, discount {fmt_amount(financed.get('discount'))}"
                  f" for {financed.get('days')} day(s), {fmt_amount(financed.get('disbursed'))} paid to {c.tier3}")
    holdings = show_holdings(story, root)

    console.rule("[bold]6. a dispute, resolved before maturity")
    opened = story.tx(c.core, "dispute.open", {"cert_id": piece_t2, "against": c.tier2,
                                               "reason": "200 castings failed incoming inspection",
                                               "evidence_hash": evidence(story, "inspection report")},
                      f"{c.core} disputes {piece_t2} against {c.tier2}: 200 castings failed inspection "
                      "(the certificate is locked)")
    dispute_id = opened["dispute_id"]
    story.tx(c.tier2, "dispute.respond", {"dispute_id": dispute_id, "statement": "replaced within the warranty",
                                          "evidence_hash": evidence(story, "replacement delivery note")},
             f"{c.tier2} answers: the castings were replaced under warranty")
    resolved = story.tx(c.bank, "dispute.resolve", {"dispute_id": dispute_id, "outcome": "dismissed",
                                                    "reason": "replacement delivery confirmed"},
                        f"{c.bank} (the bank named at issue) dismisses {dispute_id}: the lock is released")

    console.rule("[bold]7. maturity: settled in full, and paid in part")
    wait_until(maturity, "maturity")
    for cert_id in (t1_rest, piece_t2):
        settle(story, cert_id)
    payment_id = story.doc_id("PAY")
    story.tx(c.core, "trade.anchor", {"doc_id": payment_id, "kind": "payment", "counterparty": c.bank,
                                      "amount": PARTIAL_PAYMENT,
                                      "doc_hash": evidence(story, f"bank transfer {fmt_amount(PARTIAL_PAYMENT)}")},
             f"{c.core} anchors the payment order {payment_id} for {fmt_amount(PARTIAL_PAYMENT)} to {c.bank}")
    paid = story.tx(c.core, "ecert.pay", {"cert_id": at_t3, "amount": PARTIAL_PAYMENT, "payment": payment_id},
                    f"{c.core} pays {fmt_amount(PARTIAL_PAYMENT)} of {fmt_amount(TIER2_PIECES[0])} on {at_t3}")
    console.print(f"    paid {fmt_amount(paid.get('paid'))}, outstanding {fmt_amount(paid.get('outstanding'))}")
    complaint = story.tx(c.bank, "complaint.file", {"against": c.core, "subject": f"{at_t3} paid in part at maturity",
                                                    "evidence_hash": evidence(story, "statement of account")},
                         f"{c.bank} files a complaint against {c.core}: {at_t3} paid in part")
    story.tx(c.core, "complaint.respond", {"complaint_id": complaint["complaint_id"],
                                           "statement": "cash shortfall this quarter; the rest follows",
                                           "evidence_hash": evidence(story, "cash plan")},
             f"{c.core} answers the complaint before its deadline")

    recovered = default_and_recourse(story, at_t3, maturity)
    return {"root": root, "maturity": maturity, "invoice": invoice_id, "financed": financed, "holdings": holdings,
            "settled": [t1_rest, piece_t2], "part_paid": at_t3, "dispute": {"id": dispute_id, **resolved},
            "complaint": complaint["complaint_id"], "recourse": recovered}


def hop_contract(story: Story, buyer: str, seller: str, amount: int, goods: str) -> str:
    """The trade background of one hop (RULES §10): a contract the seller anchors with its buyer, who confirms."""
    doc_id = story.doc_id(f"CT-{buyer}-{seller}")
    text = json.dumps({"doc": doc_id, "kind": "contract", "seller": seller, "buyer": buyer, "amount_fen": amount,
                       "goods": goods}).encode()
    story.tx(seller, "trade.anchor", {"doc_id": doc_id, "kind": "contract", "doc_hash": hashlib.sha256(text).hexdigest(),
                                      "counterparty": buyer, "amount": amount},
             f"{seller} anchors its contract {doc_id} with {buyer} ({goods}, {fmt_amount(amount)})")
    story.tx(buyer, "trade.confirm", {"doc_id": doc_id}, f"{buyer} confirms {doc_id}")
    return doc_id


def evidence(story: Story, what: str) -> str:
    """The sha256 of an evidence document kept off chain (the chain records only the hash)."""
    return hashlib.sha256(f"{story.run_id}: {what}".encode()).hexdigest()


def wait_until(when_ms: int, what: str) -> None:
    wait_s = when_ms / 1000 - time.time()
    if wait_s > 0:
        with console.status(f"waiting {wait_s:.1f} s for {what} ({fmt_time(when_ms)}) ..."):
            time.sleep(wait_s + 0.05)


def default_and_recourse(story: Story, cert_id: str, maturity: int) -> dict[str, Any]:
    """Past maturity and the chain's grace period, the bank declares the part-paid certificate defaulted; it
    financed it with recourse, so its claim goes to the seller, who repays part; the bank writes off the rest.
    Skipped (and said so) when the grace period is longer than the demo waits."""
    c = story.cast
    grace_ms = story.params.grace_period_ms
    console.rule("[bold]8. default and recourse")
    if grace_ms > DEFAULT_WAIT_MAX_MS:
        console.print(f"    [yellow]skipped[/yellow]: this chain's grace period is {grace_ms // 1000} s (genesis "
                      f"params), longer than the demo waits; {cert_id} stays part-paid with {c.bank}")
        return {"skipped": f"grace period {grace_ms} ms"}
    wait_until(maturity + grace_ms, f"the end of the {grace_ms / 1000:.0f} s grace period")
    declared = retry_early(story, lambda: story.tx(
        c.bank, "ecert.default", {"cert_id": cert_id},
        f"{c.bank} declares {cert_id} defaulted: the claim for the unpaid principal goes to {c.tier3}"), "grace_not_over")
    claim = declared.get("claim") or {}
    owed = int(claim.get("amount") or 0)
    repay = owed * 2 // 5
    story.tx(c.tier3, "recourse.repay", {"cert_id": cert_id, "amount": repay},
             f"{c.tier3} repays {fmt_amount(repay)} of {c.bank}'s claim of {fmt_amount(owed)}")
    written = story.tx(c.bank, "recourse.write_off", {"cert_id": cert_id, "reason": "seller insolvent"},
                       f"{c.bank} writes off the rest of its claim ({fmt_amount(owed - repay)})")
    console.print(f"    {cert_id} is back with {declared.get('holder')}, {declared.get('status')}: {c.core} still owes "
                  f"it {fmt_amount(declared.get('unpaid'))} plus penalty")
    return {"claim": owed, "repaid": repay, "written_off": written.get("written_off"), "holder": declared.get("holder")}


def retry_early(story: Story, step: Any, code: str) -> dict[str, Any]:
    """Run a tx step, retried while the chain says `code`: block time (the leader's clock) may trail ours."""
    for _ in range(SETTLE_RETRIES_MAX):
        try:
            result: dict[str, Any] = step()
            return result
        except DemoError as e:
            if code not in str(e):
                raise
            story.steps.pop()
            time.sleep(0.25)
    raise DemoError(f"still {code} after {SETTLE_RETRIES_MAX} tries")


def settle(story: Story, cert_id: str) -> None:
    """The debtor settles; block time (the leader's clock) may trail ours by a tick, so not_matured is retried."""
    c = story.cast
    retry_early(story, lambda: story.tx(c.core, "ecert.settle", {"cert_id": cert_id}, f"{c.core} settles {cert_id}"),
                "not_matured")


def show_owed(story: Story) -> dict[str, Any] | None:
    """What every party is owed at the end (GET /v1/orgs/{id}/owed, each org its own), or None if the node has
    no such route."""
    table = Table(title="what every party is owed now", title_justify="left")
    for col in ("org", "by debtors", "penalty", "by sellers (recourse)", "owes banks"):
        table.add_column(col, justify="left" if col == "org" else "right")
    owed: dict[str, Any] = {}
    for org in story.cast.orgs:
        try:
            doc = story.as_org(org).get(f"/v1/orgs/{org}/owed")
        except ApiError as e:
            if e.status in (404, 405) and e.code in ("not_found", "method_not_allowed"):
                console.print("    [dim](this node has no /v1/orgs/{id}/owed route: what each party is owed is not "
                              "shown)[/dim]")
                return None
            raise
        debtors, sellers, banks = (doc.get(k) or {} for k in ("from_debtors", "from_sellers", "owes_banks"))
        owed[org] = {"principal": debtors.get("principal"), "penalty": debtors.get("penalty"),
                     "recourse": sellers.get("total"), "owes_banks": banks.get("total")}
        table.add_row(org, fmt_amount(debtors.get("principal")), fmt_amount(debtors.get("penalty")),
                      fmt_amount(sellers.get("total")), fmt_amount(banks.get("total")))
    console.print(table)
    return owed


def show_holdings(story: Story, root: str) -> dict[str, list[str]]:
    """Each org's live certificates of this run's lineage (before settlement, when there is something to hold)."""
    lineage: dict[str, Any] = story.as_org(story.cast.core).get(f"/v1/certs/{root}/lineage")
    in_story = {c["id"] for c in lineage.get("certs", [])}
    table = Table(title="holdings before maturity (this run's certificates)", title_justify="left")
    for col in ("org", "cert", "amount", "status", "debtor"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    holdings: dict[str, list[str]] = {}
    for org in story.cast.orgs:
        doc = story.as_org(org).get(f"/v1/orgs/{org}/certs")  # an org's holdings: its own to read
        mine = [c for c in doc.get("certs", []) if c.get("id") in in_story]
        holdings[org] = [c["id"] for c in mine]
        for c in mine:
            table.add_row(org, c["id"], fmt_amount(c.get("amount")), str(c.get("status")), str(c.get("debtor")))
        if not mine:
            table.add_row(org, "[dim]none[/dim]", "", "", "")
    console.print(table)
    return holdings


def show_lineage(story: Story, root: str) -> dict[str, Any]:
    lineage: dict[str, Any] = story.as_org(story.cast.core).get(f"/v1/certs/{root}/lineage")
    console.rule("[bold]lineage")
    console.print(lineage_tree(lineage))
    return lineage


def chain_params(cluster: ClusterConfig) -> ChainParams:
    """The chain's parameters, from the genesis.json beside the cluster file (what every node starts from); the
    defaults if there is none here (the story supplies what the stricter rules ask for anyway)."""
    try:
        text = cluster.genesis_path.read_text()
    except FileNotFoundError:
        return DEFAULT_CHAIN_PARAMS
    try:
        return chain_params_of(genesis_from_json(json.loads(text)))
    except (ValueError, GenesisError) as e:
        raise DemoError(f"{cluster.genesis_path} is not a genesis document: {e}") from None


def run(cluster: ClusterConfig, client: Client, maturity_s: float) -> dict[str, Any]:
    cast = Cast.of(cluster)
    try:
        signers = {org: load_signer(cluster, org) for org in cast.orgs}
    except KeyFileError as e:
        raise DemoError(str(e)) from None
    run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
    story = Story(cluster=cluster, client=client, cast=cast, signers=signers, run_id=run_id,
                  params=chain_params(cluster))
    started = time.monotonic()
    console.print(f"[bold]supply-chain demo[/bold] on {cluster.chain_id} via {client.urls[0]} (run {run_id})")
    told = tell(story, maturity_s)
    committed = sum(s["status"] == "committed" for s in story.steps)
    certs = show_lineage(story, told["root"]).get("certs", [])
    parents = {c.get("parent_id") for c in certs}
    leaves = [c for c in certs if c["id"] not in parents]
    owed = show_owed(story)
    status = client.get("/v1/status")
    return {
        "demo": "ok",
        "run_id": run_id,
        "root_cert": told["root"],
        "certs": len(certs),
        "leaves_sum_equals_root": sum(int(c["amount"]) for c in leaves) == CERT_AMOUNT,
        "settled": sorted(c["id"] for c in leaves if c.get("status") == "settled"),
        "defaulted": sorted(c["id"] for c in leaves if c.get("status") == "defaulted"),
        "part_paid": told["part_paid"],
        "dispute": told["dispute"],
        "complaint": told["complaint"],
        "recourse": told["recourse"],
        "owed": owed,
        "txs": len(story.steps),
        "committed": committed,
        "holdings_before_maturity": told["holdings"],
        "height": status.get("height"),
        "seconds": round(time.monotonic() - started, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.client.demo", description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (python -m pydoc node.client.demo) for the story.")
    parser.add_argument("--config", default="cluster.toml", help="cluster file (default: cluster.toml)")
    parser.add_argument("--node", default=None, help="node URL or HOST:PORT (default: the cluster's nodes, first that "
                        "answers)")
    parser.add_argument("--cacert", default=os.environ.get(CACERT_ENV) or None, metavar="FILE",
                        help="PEM file of CA certificates to verify https:// nodes with, besides each node's "
                             f"https_ca in the cluster file (default: ${CACERT_ENV})")
    parser.add_argument("--maturity-seconds", type=float, default=maturity_seconds_default,
                        help="the certificate matures this long after issue; the demo waits for it (default 12)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each tx (default 30)")
    args = parser.parse_args(argv)
    try:
        cluster = load_config(args.config)
        urls = [node_url(args.node, cluster)] if args.node else [n.http_url for n in cluster.nodes]
        trust = HttpsTrust.of_cluster(cluster, args.cacert)  # https:// nodes: their https_ca, as the CLI does
        summary = run(cluster, Client(urls, args.timeout, node_ids=node_ids_of(cluster), trust=trust),
                      args.maturity_seconds)
    except (DemoError, Unreachable, ClusterConfigError, ApiError, HttpsTrustError) as e:
        console.print(f"[red]demo failed:[/red] {e}")
        print(json.dumps({"demo": "failed", "error": str(e)}), flush=True)
        return 1
    console.print(f"[green]demo done[/green]: {summary['committed']} transactions committed in "
                  f"{summary['seconds']} s, chain height {summary['height']}")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
