"""Our side of the benchmark: a temporary cluster, a business set-up, and pre-signed E-certificate transfers.

Each client owns one accepted certificate held by `tier1` and walks a chain of transfers: 1 fen to `tier2`, the
remainder back to `tier1` as a child whose id is known in advance (`cert_id_for(tx_id, 1)`), so every transfer
can be signed before the clock starts and the client spends no CPU on signing during the run. A new chain's rules
hold (node/genesis_file.py): the invoice belongs to a confirmed contract tier1-geely and every transfer draws on
the confirmed contract tier2-tier1 (`TRANSFER_CONTRACT`), both anchored at set-up. `CLIENT` sends no
Authorization header: POST /v1/tx needs none (each envelope is its own signature, CONTRACT §6), so signed
requests add nothing to the tx path; the bench reads only public routes (/v1/status, /metrics).
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ecert.rules import cert_id_for
from node.bench.loadgen import Refused, Request
from node.client.api import AsyncClient, CounterNonces, Signer, error_code, load_signer
from node.config import ClusterConfig, load_config
from node.ops import localnet
from node.ops.localnet import free_ports as free_ports  # re-exported: node/bench/raw.py imports it from here

ORGS = localnet.consortium_orgs(5)
CLIENT = AsyncClient()
ROOT_AMOUNT = 10**12
YEAR_MS = 365 * 86_400_000
INVOICE_CONTRACT = "CT-bench-tier1-geely"  # the invoice's contract
TRANSFER_CONTRACT = "CT-bench-tier2-tier1"  # every transfer's trade background (1 fen each: never drawn dry)
CONTRACT_AMOUNT = 10**15


def write_cluster_file(root: Path, nodes: int, block_timeout_ms: int = 2, **settings: int) -> Path:
    """A cluster of `nodes` nodes; the five orgs exist in genesis, the first `nodes` of them run a node
    (beyond five, extra nodes are run by the suppliers' org `tier3`). `settings`: more [cluster] keys."""
    members = [(ORGS[i][0], ORGS[i][0]) if i < len(ORGS) else (f"n{i}", "tier3") for i in range(nodes)]
    return localnet.write_cluster_file(root, "ecert-bench", ORGS, localnet.local_nodes(members), {
        "block_max_txs": 1000, "block_timeout_ms": block_timeout_ms, "snapshot_entries": 5000, "queue_max": 50000,
        **settings})


def run_tool(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True, stdout=subprocess.DEVNULL)


@dataclass
class EcertCluster:
    config_path: Path

    def up(self) -> ClusterConfig:
        run_tool("node.client.cli", "--config", str(self.config_path), "init")
        run_tool("node.ops.control", "up", "--config", str(self.config_path))
        return load_config(self.config_path)

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "node.ops.control", "down", "--config", str(self.config_path)],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_signer(cluster: ClusterConfig, org_id: str) -> Signer:
    """A signer whose nonces count from this moment's clock: cheap to sign with, unique across runs."""
    return load_signer(cluster, org_id, nonces=CounterNonces(str(time.time_ns())))


def refusal_reason(status: int, doc: Any) -> str:
    """HTTP status, answer status and error code: what the load generator counts a failure under."""
    if not isinstance(doc, dict):
        return f"HTTP {status}"
    return f"HTTP {status} {doc.get('status', '')} {error_code(doc) or ''}".strip()


def committed(status: int, doc: Any) -> bool:
    return status == 200 and isinstance(doc, dict) and doc.get("status") == "committed"


async def submit(session: aiohttp.ClientSession, url: str, raw: bytes) -> dict[str, Any]:
    status, doc = await CLIENT.post_tx(session, url, raw)
    if not committed(status, doc):
        raise RuntimeError(f"set-up tx refused: HTTP {status} {doc}")
    return doc  # type: ignore[no-any-return]


async def ensure(session: aiohttp.ClientSession, url: str, raw: bytes, done_code: str) -> None:
    """Submit a set-up tx that an earlier set-up on the same chain may have done already (`done_code`)."""
    status, doc = await CLIENT.post_tx(session, url, raw)
    if not committed(status, doc) and error_code(doc) != done_code:
        raise RuntimeError(f"set-up tx refused: HTTP {status} {doc}")


async def prepare_roots(cluster: ClusterConfig, url: str, count: int) -> list[str]:
    """Credit line, the two contracts (once per chain), a confirmed invoice under the first, `count` issued and
    accepted certificates held by tier1."""
    boc, geely, tier1, tier2 = (bench_signer(cluster, o) for o in ("boc", "geely", "tier1", "tier2"))
    now = int(time.time() * 1000)
    total = ROOT_AMOUNT * count
    async with aiohttp.ClientSession() as session:
        await submit(session, url, boc.sign("credit.grant", {"core": "geely", "limit": total,
                                                              "expires_at": now + 2 * YEAR_MS}))
        for doc_id, seller, buyer in ((INVOICE_CONTRACT, tier1, geely), (TRANSFER_CONTRACT, tier2, tier1)):
            await ensure(session, url, seller.sign("trade.anchor", {
                "doc_id": doc_id, "kind": "contract", "doc_hash": "00" * 32, "counterparty": buyer.org_id,
                "amount": CONTRACT_AMOUNT}), "doc_exists")
            await ensure(session, url, buyer.sign("trade.confirm", {"doc_id": doc_id}), "invalid_status_transition")
        doc_id = f"INV-bench-{time.time_ns()}"
        await submit(session, url, tier1.sign("trade.anchor", {
            "doc_id": doc_id, "kind": "invoice", "doc_hash": "00" * 32, "counterparty": "geely", "amount": total,
            "contract_id": INVOICE_CONTRACT}))
        await submit(session, url, geely.sign("trade.confirm", {"doc_id": doc_id}))
        roots = []
        for _ in range(count):
            doc = await submit(session, url, geely.sign("ecert.issue", {
                "to": "tier1", "amount": ROOT_AMOUNT, "maturity": now + YEAR_MS, "bank": "boc",
                "invoice_ids": [doc_id]}))
            cert_id = doc["result"]["certs"][0]
            await submit(session, url, tier1.sign("ecert.accept", {"cert_id": cert_id}))
            roots.append(cert_id)
    return roots


def transfer_chain(signer: Signer, root: str) -> Iterator[bytes]:
    """Endless transfers of 1 fen to tier2, each spending the remainder child of the previous one and drawing on
    the contract tier2-tier1."""
    cert = root
    while True:
        tx_id, raw = signer.signed("ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}],
                                                      "trade_docs": [TRANSFER_CONTRACT]})
        yield raw
        cert = cert_id_for(tx_id, 1)


def presign_chain(signer: Signer, root: str, length: int) -> list[bytes]:
    """The first `length` transfers of `transfer_chain`, signed before the clock starts."""
    return list(itertools.islice(transfer_chain(signer, root), length))


def transfer_worker(urls: list[str], chain: Iterable[bytes], offset: int) -> Callable[[], Request | None]:
    """Requests of one chain, sent round-robin to the nodes (followers forward to the leader). A tx without a
    definite answer (timeout, 503, connection lost) is sent again, to the next node, before the chain moves on:
    the next transfer spends its child, and a resubmission is answered with the first outcome (tx ids apply once)."""
    txs = iter(chain)
    position = 0
    unanswered: bytes | None = None

    def next_request() -> Request | None:
        nonlocal position, unanswered
        raw = unanswered if unanswered is not None else next(txs, None)
        if raw is None:
            return None
        url = urls[(offset + position) % len(urls)]
        position += 1

        async def send(session: aiohttp.ClientSession) -> bool:
            nonlocal unanswered
            unanswered = raw
            status, doc = await CLIENT.post_tx(session, url, raw)
            if status == 200 and isinstance(doc, dict) and doc.get("status") in ("committed", "rejected"):
                unanswered = None
            if not committed(status, doc):
                raise Refused(refusal_reason(status, doc))
            return True

        return send

    return next_request
