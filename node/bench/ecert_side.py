"""Our side of the benchmark: a temporary cluster, a business set-up, and pre-signed E-certificate transfers.

Each client owns one accepted certificate held by `tier1` and walks a chain of transfers: 1 fen to `tier2`, the
remainder back to `tier1` as a child whose id is known in advance (`cert_id_for(tx_id, 1)`), so every transfer
can be signed before the clock starts and the client spends no CPU on signing during the run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

from ecert.rules import cert_id_for
from ecert.tx import make_tx, tx_id_of
from node.bench.loadgen import Request
from node.config import ClusterConfig, load_config
from node.keys import load_org_key

ORGS = (("boc", "Bank of China", "bank"), ("geely", "Geely Automobile", "core"),
        ("tier1", "Tier-1 Supplier", "supplier"), ("tier2", "Tier-2 Supplier", "supplier"),
        ("tier3", "Tier-3 Supplier", "supplier"))
MSGPACK = "application/msgpack"
ROOT_AMOUNT = 10**12
YEAR_MS = 365 * 86_400_000


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_cluster_file(root: Path, nodes: int, block_timeout_ms: int = 2) -> Path:
    """A cluster of `nodes` nodes; the five orgs exist in genesis, the first `nodes` of them run a node
    (beyond five, extra nodes are run by the suppliers' org `tier3`)."""
    ports = free_ports(2 * nodes)
    lines = ["[cluster]", 'chain_id = "ecert-bench"', "block_max_txs = 1000", f"block_timeout_ms = {block_timeout_ms}",
             "snapshot_entries = 5000", "queue_max = 50000", ""]
    for org_id, name, role in ORGS:
        lines += ["[[orgs]]", f'id = "{org_id}"', f'name = "{name}"', f'role = "{role}"', ""]
    for i in range(nodes):
        node_id = ORGS[i][0] if i < len(ORGS) else f"n{i}"
        org = ORGS[i][0] if i < len(ORGS) else "tier3"
        lines += ["[[nodes]]", f'id = "{node_id}"', f'org = "{org}"', f'http = "127.0.0.1:{ports[2 * i]}"',
                  f'raft = "127.0.0.1:{ports[2 * i + 1]}"', f'data_dir = "data/{node_id}"', ""]
    path = root / "cluster.toml"
    path.write_text("\n".join(lines))
    return path


def run_tool(module: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True, stdout=subprocess.DEVNULL)


@dataclass
class EcertCluster:
    config_path: Path

    def up(self) -> ClusterConfig:
        run_tool("node.cli", "--config", str(self.config_path), "init")
        run_tool("node.control", "up", "--config", str(self.config_path))
        return load_config(self.config_path)

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "node.control", "down", "--config", str(self.config_path)],
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


async def submit(session: aiohttp.ClientSession, url: str, raw: bytes) -> dict[str, Any]:
    async with session.post(url + "/v1/tx?wait=commit", data=raw, headers={"Content-Type": MSGPACK}) as resp:
        doc = await resp.json()
    if resp.status != 200 or doc.get("status") != "committed":
        raise RuntimeError(f"set-up tx refused: HTTP {resp.status} {doc}")
    return doc


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


def presign_chain(signer: Signer, root: str, length: int) -> list[bytes]:
    """`length` transfers, each spending the remainder child of the previous one."""
    txs = []
    cert = root
    for _ in range(length):
        tx_id, raw = signer.tx("ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})
        txs.append(raw)
        cert = cert_id_for(tx_id, 1)
    return txs


def transfer_worker(urls: list[str], chain: list[bytes], offset: int) -> Callable[[], Request | None]:
    """Requests of one chain, sent round-robin to the nodes (followers forward to the leader)."""
    position = 0

    def next_request() -> Request | None:
        nonlocal position
        if position >= len(chain):
            return None
        raw = chain[position]
        url = urls[(offset + position) % len(urls)]
        position += 1

        async def send(session: aiohttp.ClientSession) -> bool:
            async with session.post(url + "/v1/tx?wait=commit", data=raw,
                                    headers={"Content-Type": MSGPACK}) as resp:
                doc = await resp.json(content_type=None)
                return resp.status == 200 and doc.get("status") == "committed"

        return send

    return next_request
