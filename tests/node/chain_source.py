"""A real chain for the dashboard's tests: a StateStore grown block by block with real signed txs (the keys of
tests/ecert/world.py), read by the dashboard as a NodeSource with `store` as its ledger, the shape
node.server.Node gives it. Shared by tests/node/test_dashboard.py and tests/integration/test_dashboard_browser.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ecert.executor import EcertExecutor
from ecert.genesis import genesis_hash, genesis_writes
from ecert.state import CERT_INDEX
from ledger.block import make_block
from ledger.store import StateStore
from node.proposer import outcome_answer
from tests.ecert.world import CHAIN, DAY, World


class Chain:
    """A real StateStore grown block by block with real signed txs (World's keys), read as a NodeSource by the
    dashboard (the shape node.server.Node gives it: status, block_txs from the store, `store` as its ledger)."""

    def __init__(self, path: Path, node_id: str = "n1", org: str = "tier1") -> None:
        self.w = World(regulator=True, check=False)
        self.store = StateStore.open(path, sync=False, index=CERT_INDEX)
        self.store.init_genesis(genesis_hash(self.w.genesis), genesis_writes(self.w.genesis), chain_id=CHAIN,
                                genesis_time=self.w.now - 1000)
        self.executor = EcertExecutor(CHAIN)
        self.node_id, self.org = node_id, org
        self.tx_ids: dict[str, str] = {}

    def block(self, *txs: tuple[str, str, str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply one block of (name, signer, kind, body); each tx must commit. Their results by order."""
        raws = [self.w.raw(signer, kind, body) for _, signer, kind, body in txs]
        self.w.now += 1000
        block = make_block(self.store.height + 1, self.store.block_hash, self.w.now, self.node_id, tuple(raws))
        outcomes = self.store.apply_block(block, self.executor)
        for (name, *_), o in zip(txs, outcomes, strict=True):
            assert o.status == "committed", (name, o.error_code, o.error_message)
            self.tx_ids[name] = o.tx_id
        return [dict(o.result or {}) for o in outcomes]

    def status(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "org": self.org, "role": "leader", "term": 1, "leader_id": self.node_id,
                "commit_index": self.store.height, "applied_index": self.store.height, "height": self.store.height,
                "chain_id": CHAIN}

    def peers(self) -> list[dict[str, Any]]:
        return []

    def recent_blocks(self, before: int | None, limit: int, tx_ids: bool = False) -> list[dict[str, Any]]:
        top = self.store.height if before is None else before - 1
        out = []
        for h in range(top, max(0, top - limit), -1):
            record = self.store.block(h) if tx_ids else self.store.block_summary(h)
            assert record is not None
            out.append(record.to_json())
        return out

    def block_txs(self, height: int) -> list[dict[str, Any]]:
        record = self.store.block(height)
        rows = []
        for tx_id in record.tx_ids if record is not None else ():
            applied = self.store.tx_outcome(tx_id)
            assert applied is not None
            rows.append(outcome_answer(applied))
        return rows

    def alarms(self) -> list[dict[str, Any]]:
        return []


def grow(chain: Chain) -> dict[str, str]:
    """boc's line to geely; a certificate geely issues to tier1 who passes 600 on to tier2; a second lineage,
    byd's to tier3 under icbc, none of tier1's or tier2's business."""
    w = chain.w
    year, quarter = w.now + 365 * DAY, w.now + 90 * DAY
    chain.block(("grant", "boc", "credit.grant", {"core": "geely", "limit": 10_000_000, "expires_at": year}),
                ("grant_byd", "icbc", "credit.grant", {"core": "byd", "limit": 10_000, "expires_at": year}),
                ("anchor", "tier1", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                                     "counterparty": "geely", "amount": 1000}),
                ("anchor_x", "tier3", "trade.anchor", {"doc_id": "INV-X", "kind": "invoice", "doc_hash": "cd" * 32,
                                                       "counterparty": "byd", "amount": 500}))
    chain.block(("confirm", "geely", "trade.confirm", {"doc_id": "INV-1"}),
                ("confirm_x", "byd", "trade.confirm", {"doc_id": "INV-X"}))
    root, x = (r["certs"][0] for r in chain.block(
        ("issue", "geely", "ecert.issue", {"to": "tier1", "amount": 1000, "bank": "boc", "maturity": quarter,
                                           "invoice_ids": ["INV-1"]}),
        ("issue_x", "byd", "ecert.issue", {"to": "tier3", "amount": 500, "bank": "icbc", "maturity": quarter,
                                           "invoice_ids": ["INV-X"]})))
    chain.block(("accept", "tier1", "ecert.accept", {"cert_id": root}),
                ("accept_x", "tier3", "ecert.accept", {"cert_id": x}))
    [transfer] = chain.block(("transfer", "tier1", "ecert.transfer",
                              {"cert_id": root, "to": [{"org": "tier2", "amount": 600}]}))
    a, b = transfer["certs"]
    return {"root": root, "x": x, "a": a, "b": b}
