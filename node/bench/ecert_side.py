"""Our side of the benchmark: a temporary cluster, a business set-up, and pre-signed E-certificate transfers.

Each client owns one accepted certificate held by `tier1` and walks a chain of transfers: 1 fen to `tier2`, the
remainder back to `tier1` as a child whose id is known in advance (`cert_id_for(tx_id, 1)`), so every transfer
can be signed before the clock starts and the client spends no CPU on signing during the run.
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
import msgpack

from ecert.rules import cert_id_for
from ecert.tx import make_tx, tx_id_of
from node.bench.loadgen import Refused, Request
from node.config import ClusterConfig, load_config
from node.keys import load_org_key
from node.ops import localnet
from node.ops.localnet import free_ports as free_ports  # re-exported: node/bench/raw.py imports it from here

ORGS = localnet.consortium_orgs(5)
MSGPACK = "application/msgpack"
ROOT_AMOUNT = 10**12
YEAR_MS = 365 * 86_400_000


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


class Signer:
    def __init__(self, cluster: ClusterConfig, org_id: str) -> None:
        self.org_id = org_id
        self.seed = load_org_key(cluster.keys_dir, org_id).seed
        self.chain_id = cluster.chain_id
        self.counter = 0
        self.run = time.time_ns()

    def tx(self, kind: str, body: dict[str, Any]) -> tuple[str, bytes]:
        self.counter += 1
        raw = make_tx(self.seed, self.chain_id, kind, self.org_id, f"{self.run}-{self.counter}", body)
        payload = msgpack.unpackb(raw, raw=False)["payload"]
        return tx_id_of(payload), raw


async def post_tx(session: aiohttp.ClientSession, url: str, raw: bytes) -> tuple[int, Any]:
    """POST one signed tx to the node at `url`, waiting for its commit: (HTTP status, the JSON answer)."""
    async with session.post(url + "/v1/tx?wait=commit", data=raw, headers={"Content-Type": MSGPACK}) as resp:
        return resp.status, await resp.json(content_type=None)


def refusal_reason(status: int, doc: Any) -> str:
    """HTTP status, answer status and error code: what the load generator counts a failure under."""
    if not isinstance(doc, dict):
        return f"HTTP {status}"
    code = doc.get("error", {}).get("code") if isinstance(doc.get("error"), dict) else None
    return f"HTTP {status} {doc.get('status', '')} {code or ''}".strip()


def committed(status: int, doc: Any) -> bool:
    return status == 200 and isinstance(doc, dict) and doc.get("status") == "committed"


async def submit(session: aiohttp.ClientSession, url: str, raw: bytes) -> dict[str, Any]:
    status, doc = await post_tx(session, url, raw)
    if not committed(status, doc):
        raise RuntimeError(f"set-up tx refused: HTTP {status} {doc}")
    return doc  # type: ignore[no-any-return]


async def prepare_roots(cluster: ClusterConfig, url: str, count: int) -> list[str]:
    """Credit line, a confirmed invoice, `count` issued and accepted certificates held by tier1."""
    boc, geely, tier1 = (Signer(cluster, o) for o in ("boc", "geely", "tier1"))
    now = int(time.time() * 1000)
    total = ROOT_AMOUNT * count
    async with aiohttp.ClientSession() as session:
        await submit(session, url, boc.tx("credit.grant", {"core": "geely", "limit": total,
                                                            "expires_at": now + 2 * YEAR_MS})[1])
        doc_id = f"INV-bench-{tier1.run}"
        await submit(session, url, tier1.tx("trade.anchor", {
            "doc_id": doc_id, "kind": "invoice", "doc_hash": "00" * 32, "counterparty": "geely", "amount": total})[1])
        await submit(session, url, geely.tx("trade.confirm", {"doc_id": doc_id})[1])
        roots = []
        for _ in range(count):
            doc = await submit(session, url, geely.tx("ecert.issue", {
                "to": "tier1", "amount": ROOT_AMOUNT, "maturity": now + YEAR_MS, "bank": "boc",
                "invoice_ids": [doc_id]})[1])
            cert_id = doc["result"]["certs"][0]
            await submit(session, url, tier1.tx("ecert.accept", {"cert_id": cert_id})[1])
            roots.append(cert_id)
    return roots


def transfer_chain(signer: Signer, root: str) -> Iterator[bytes]:
    """Endless transfers of 1 fen to tier2, each spending the remainder child of the previous one."""
    cert = root
    while True:
        tx_id, raw = signer.tx("ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})
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
            status, doc = await post_tx(session, url, raw)
            if status == 200 and isinstance(doc, dict) and doc.get("status") in ("committed", "rejected"):
                unanswered = None
            if not committed(status, doc):
                raise Refused(refusal_reason(status, doc))
            return True

        return send

    return next_request
