"""One real single-voter node (node.server.Node: LevelDB, Raft, proposer, HTTP API, dashboard) on its own event
loop in a thread, so that blocking clients (requests, the CLI, schemathesis) can call it while it serves; and
signed txs and signed reads to it. Shared by the tests that need a live API but not a cluster of processes."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from pathlib import Path
from typing import Any

import requests

from consensus.ready import Role
from ecert.tx import make_tx
from node.config import load_config
from node.keys import load_org_key
from node.ops.localnet import init_cluster, local_nodes, write_cluster_file
from node.request_auth import fresh_nonce, sign_request
from node.server import Node

NODE = "boc"
DAY_MS = 86_400_000
ORGS = [("boc", "Bank of China", "bank"), ("geely", "Geely Automobile", "core"),
        ("tier1", "Tier-1 Supplier", "supplier"), ("tier2", "Tier-2 Supplier", "supplier"),
        ("tier3", "Tier-3 Supplier", "supplier"), ("icbc", "ICBC", "bank"),
        ("pbc", "People's Bank of China", "regulator")]
_nonces = itertools.count(time.time_ns())


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveNode:
    """A real node of chain `chain` on its own event loop in a thread (`start`, then always `stop`)."""

    def __init__(self, root: Path, chain: str, settings: dict[str, object] | None = None) -> None:
        """`settings`: cluster-file keys over this harness's fast ticks (block_max_txs, say)."""
        self.chain = chain
        self.cluster_file = write_cluster_file(root, chain, ORGS, local_nodes([(NODE, NODE)]),
                                               {"tick_ms": 20, "election_ticks": 10, "block_timeout_ms": 2,
                                                **(settings or {})})
        init_cluster(self.cluster_file, genesis_time_ms=now_ms() - 60_000)
        self.config = load_config(self.cluster_file)
        self.node = Node(self.config, NODE)
        self.base = self.node.spec.http_url
        self.ids: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"{chain}-node", daemon=True)

    def _run(self, coro: Any, timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def start(self) -> None:
        self._thread.start()
        self._run(self.node.start())
        deadline = time.monotonic() + 20
        while self.node.driver is None or self.node.driver.role != Role.LEADER:
            assert time.monotonic() < deadline, "the single node did not become leader"
            time.sleep(0.02)

    def stop(self) -> None:
        try:
            self._run(self.node.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def seed(self, org: str) -> bytes:
        return load_org_key(self.config.keys_dir, org).seed

    def authorization(self, org: str, method: str, path: str, body: bytes = b"") -> str:
        """The Authorization header of `org`'s signed request (CONTRACT §6), dated now."""
        return sign_request(self.seed(org), self.chain, NODE, org, method, path, body, now_ms(), fresh_nonce())

    def get(self, path: str, org: str | None = None) -> tuple[int, Any]:
        """GET `path`, signed by `org` (anonymous if None): (status, JSON body or text)."""
        headers = {"Accept": "application/json"}
        if org is not None:
            headers["Authorization"] = self.authorization(org, "GET", path)
        got = requests.get(self.base + path, headers=headers, timeout=30)
        return got.status_code, got.json() if got.headers.get("Content-Type", "").startswith("application/json") \
            else got.text

    def raw_tx(self, signer: str, kind: str, body: dict[str, Any]) -> bytes:
        return make_tx(self.seed(signer), self.chain, kind, signer, next(_nonces), body)

    def tx(self, signer: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a signed tx and wait for its block; it must commit."""
        got = requests.post(self.base + "/v1/tx?wait=commit", data=self.raw_tx(signer, kind, body),
                            headers={"Content-Type": "application/msgpack"}, timeout=30)
        assert got.status_code == 200 and got.json()["status"] == "committed", (kind, got.text)
        answer: dict[str, Any] = got.json()
        return answer


def issue_and_transfer(live: LiveNode, credit_limit: int, invoice_extra: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
    """The story both API test modules start from, on a new chain's rules (node/genesis_file.py): a credit line
    boc -> geely; contracts PO-R (tier1-geely) and CT-R (tier2-tier1); tier1's invoice INV-R to geely under PO-R
    (with `invoice_extra` fields), confirmed; geely's certificate R to tier1 under boc, 1000, accepted; tier1
    transfers 600 of it to tier2 on CT-R (A), keeping B. Sets live.ids R, A, B; returns the transfer's answer."""
    t = now_ms()
    live.tx("boc", "credit.grant", {"core": "geely", "limit": credit_limit, "expires_at": t + 365 * DAY_MS})
    for doc_id, seller, buyer in (("PO-R", "tier1", "geely"), ("CT-R", "tier2", "tier1")):
        live.tx(seller, "trade.anchor", {"doc_id": doc_id, "kind": "contract", "doc_hash": "cd" * 32,
                                         "counterparty": buyer, "amount": 1000})
        live.tx(buyer, "trade.confirm", {"doc_id": doc_id})
    live.tx("tier1", "trade.anchor", {"doc_id": "INV-R", "kind": "invoice", "doc_hash": "ab" * 32,
                                      "counterparty": "geely", "amount": 1000, "contract_id": "PO-R",
                                      **(invoice_extra or {})})
    live.tx("geely", "trade.confirm", {"doc_id": "INV-R"})
    issued = live.tx("geely", "ecert.issue", {"to": "tier1", "amount": 1000, "bank": "boc",
                                              "maturity": t + 90 * DAY_MS, "invoice_ids": ["INV-R"]})
    live.ids["R"] = issued["result"]["certs"][0]
    live.tx("tier1", "ecert.accept", {"cert_id": live.ids["R"]})
    moved = live.tx("tier1", "ecert.transfer", {"cert_id": live.ids["R"], "to": [{"org": "tier2", "amount": 600}],
                                               "trade_docs": ["CT-R"]})
    live.ids["A"], live.ids["B"] = moved["result"]["certs"]
    return moved
