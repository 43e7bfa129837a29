"""EcertExecutor through the real ledger: StateStore over LevelDB in a tmp dir, blocks of signed txs.

Two stores fed the same blocks must agree on every outcome and on the state root; a reopened store answers the
same queries; a resubmitted tx id keeps its first outcome.
"""

from __future__ import annotations

from pathlib import Path

from ecert import codes, queries
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_hash, genesis_writes
from ecert.invariants import check_invariants
from ecert.rules import cert_id_for
from ecert.state import CERT_INDEX
from ecert.tx import decode_envelope, tx_id_of
from ledger.block import make_block
from ledger.store import StateStore
from tests.ecert.world import CHAIN, DAY, T0, World


def _blocks(w: World) -> list[list[bytes]]:
    now = T0 + 1000
    grant = w.raw("boc", "credit.grant", {"core": "geely", "limit": 10_000, "expires_at": now + 365 * DAY})
    anchor = w.raw("tier1", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                             "counterparty": "geely", "amount": 5000})
    confirm = w.raw("geely", "trade.confirm", {"doc_id": "INV-1"})
    issue = w.raw("geely", "ecert.issue", {"to": "tier1", "amount": 4000, "maturity": now + 30 * DAY,
                                           "bank": "boc", "invoice_ids": ["INV-1"]})
    root = cert_id_for(tx_id_of(decode_envelope(issue).payload), 0)
    accept = w.raw("tier1", "ecert.accept", {"cert_id": root})
    transfer = w.raw("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 1500}]})
    bad = w.raw("tier2", "ecert.split", {"cert_id": root, "amounts": [1, 2]})  # not the holder
    return [[grant, anchor, confirm], [issue, accept, accept, b"\xc1garbage"], [transfer, bad, transfer]]


def _run(path: Path, blocks: list[list[bytes]]) -> tuple[StateStore, list[list[tuple[str, str | None]]]]:
    w = World(check=False)
    store = StateStore.open(path, paranoid=True, index=CERT_INDEX)
    store.init_genesis(genesis_hash(w.genesis), genesis_writes(w.genesis), chain_id=CHAIN, genesis_time=T0)
    executor = EcertExecutor(CHAIN)
    results = []
    for height, txs in enumerate(blocks, start=1):
        block = make_block(height, store.block_hash, T0 + 1000 * height, "n1", tuple(txs))
        outcomes = store.apply_block(block, executor)
        results.append([(o.status, o.error_code) for o in outcomes])
        check_invariants(store)
    return store, results


def test_same_blocks_same_state_root(tmp_path: Path) -> None:
    blocks = _blocks(World())
    a, out_a = _run(tmp_path / "a", blocks)
    b, out_b = _run(tmp_path / "b", blocks)
    try:
        assert out_a == out_b
        assert out_a[0] == [("committed", None)] * 3
        # The repeated accept keeps its first outcome (ledger dedup); garbage is rejected, not fatal.
        assert out_a[1] == [("committed", None), ("committed", None), ("committed", None),
                            ("rejected", codes.MALFORMED_ENVELOPE)]
        assert out_a[2] == [("committed", None), ("rejected", codes.NOT_HOLDER), ("committed", None)]
        assert a.state_root == b.state_root and a.block_hash == b.block_hash and a.height == 3
    finally:
        a.close()
        b.close()


def test_reopened_store_answers_queries(tmp_path: Path) -> None:
    store, _ = _run(tmp_path / "s", _blocks(World()))
    root_hash = store.state_root
    store.close()
    with StateStore.open(tmp_path / "s", paranoid=True, index=CERT_INDEX) as store:
        assert store.state_root == root_hash
        tier2 = queries.get_holdings(store, "tier2")
        assert tier2 is not None and [c["amount"] for c in tier2["certs"]] == [1500]
        root_id = tier2["certs"][0]["root_id"]
        lineage = queries.get_lineage(store, root_id)
        assert lineage is not None
        assert [(c["holder"], c["amount"], c["status"]) for c in lineage["certs"]] == [
            ("tier1", 4000, "split"), ("tier2", 1500, "active"), ("tier1", 2500, "active")]
        assert queries.get_credit_line(store, "boc", "geely")["used"] == 4000  # type: ignore[index]
        assert queries.get_trade_doc(store, "INV-1")["backed"] == 4000  # type: ignore[index]
        check_invariants(store)
