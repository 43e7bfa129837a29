"""The checker's issue-14 checks: payments against credit, recourse claims, and each node's own state read from its
data directory (node/chaos/state_check.py, on a real LevelDB store grown with real signed txs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.schema import STATE, open_db
from node.chaos.checker import check_run, tx_effects
from node.chaos.history import COMMITTED, History, NodeDump, SubmitRecord
from node.chaos.state_check import check_node_state
from tests.node.chain_source import Chain

from .synthetic import build, h


def kinds(report: Any) -> list[str]:
    return sorted({v.kind for v in report.violations})


def add_tx(hist: History, dumps: list[NodeDump], name: str, kind: str, signer: str, body: dict[str, Any],
           result: dict[str, Any]) -> None:
    """Append one acknowledged committed tx in its own block on every node."""
    height = max(dumps[0].blocks) + 1
    tx_id = h(name)
    hist.txs.append(SubmitRecord(tx_id, kind, f"{signer}-0", signer, body, invoke=10.0 + height,
                                 complete=10.1 + height, outcome=COMMITTED, height=height, result=result))
    for d in dumps:
        d.blocks[height] = {"height": height, "hash": h(f"block{height}"), "prev_hash": h(f"block{height - 1}"),
                            "time": 1_000 + height, "tx_ids": [tx_id]}
        d.txs[tx_id] = {"tx_id": tx_id, "status": COMMITTED, "height": height, "result": result}
        d.status = {**(d.status or {}), "height": height, "block_hash": h(f"block{height}")}


def pay(hist: History, dumps: list[NodeDump], amount: int) -> None:
    add_tx(hist, dumps, "pay", "ecert.pay", "geely", {"cert_id": "c4", "amount": amount},
           {"cert_id": "c4", "status": "active", "paid_to": "tier1", "amount": amount, "principal": amount,
            "penalty": 0, "paid": amount, "outstanding": 100 - amount})


def test_a_partial_payment_lowers_the_credit_used() -> None:
    hist, dumps = build()
    pay(hist, dumps, 40)
    assert kinds(check_run(hist, dumps)) == ["credit"]  # used still 1000: the payment did not give credit back
    for d in dumps:
        d.credit["boc/geely"]["used"] = 960
    assert check_run(hist, dumps).violations == []
    dumps[1].lineages["c1"]["certs"][3]["paid"] = 30  # c4 as one node shows it
    report = check_run(hist, dumps)
    assert kinds(report) == ["payment"] and report.violations[0].nodes == [dumps[1].node_id]


def test_a_live_leaf_paid_in_full_is_reported() -> None:
    hist, dumps = build()
    pay(hist, dumps, 100)  # c4 is 100: paid in full, yet every node still shows it active
    for d in dumps:
        d.credit["boc/geely"]["used"] = 900
    assert kinds(check_run(hist, dumps)) == ["payment"]


def default_with_claim(hist: History, dumps: list[NodeDump]) -> None:
    add_tx(hist, dumps, "default", "ecert.default", "boc", {"cert_id": "c2"},
           {"cert_id": "c2", "status": "defaulted", "holder": "geely", "unpaid": 600, "penalty": 0,
            "claim": {"bank": "boc", "seller": "geely", "amount": 600}})


def test_recourse_within_the_claim_and_closed_when_nothing_is_left() -> None:
    hist, dumps = build()
    default_with_claim(hist, dumps)
    add_tx(hist, dumps, "repay", "recourse.repay", "geely", {"cert_id": "c2", "amount": 250},
           {"cert_id": "c2", "bank": "boc", "amount": 250, "repaid": 250, "outstanding": 350, "status": "open"})
    add_tx(hist, dumps, "write_off", "recourse.write_off", "boc", {"cert_id": "c2"},
           {"cert_id": "c2", "seller": "geely", "written_off": 350, "status": "closed"})
    for d in dumps:  # the defaulted cert went back to its seller, still owed
        for c in d.lineages["c1"]["certs"]:
            if c["id"] == "c2":
                c.update(status="defaulted", holder="geely")
        d.certs["c2"] = {**d.certs["c2"], "status": "defaulted", "holder": "geely"}
    report = check_run(hist, dumps)
    assert report.violations == [], [v.message for v in report.violations]
    assert report.stats["recourse_claims"] == 1
    assert tx_effects(hist.txs[-3], hist.txs[-3].result) == [("c2", ("geely", "defaulted"))]

    # A write-off of more than was left breaks the claim.
    last = hist.txs[-1]
    for d in dumps:
        d.txs[last.tx_id]["result"] = {**d.txs[last.tx_id]["result"], "written_off": 400}
    last.result = dumps[0].txs[last.tx_id]["result"]
    assert kinds(check_run(hist, dumps)) == ["recourse"]


def test_recourse_without_a_claim_is_reported() -> None:
    hist, dumps = build()
    add_tx(hist, dumps, "repay", "recourse.repay", "geely", {"cert_id": "c2", "amount": 1},
           {"cert_id": "c2", "bank": "boc", "amount": 1, "repaid": 1, "outstanding": 0, "status": "closed"})
    assert kinds(check_run(hist, dumps)) == ["recourse"]


def test_what_the_data_directories_hold_is_checked() -> None:
    hist, dumps = build()
    for d in dumps:
        d.state_check = {"height": 7, "state_root": "00", "invariants": "ok", "error": None}
    report = check_run(hist, dumps)
    assert report.violations == [] and report.stats["states_checked"] == 3
    dumps[0].state_check = {"height": 7, "state_root": "00", "error": None,
                            "invariants": "root c1: paid + outstanding 900, amount 1000"}
    dumps[1].state_check = {"height": 5, "state_root": "00", "invariants": "ok", "error": None}
    dumps[2].state_check = {"height": None, "state_root": None, "invariants": None, "error": "no state directory"}
    report = check_run(hist, dumps)
    assert kinds(report) == ["invariant", "state_behind", "unverified"]
    by_kind = {v.kind: v.nodes for v in report.violations}
    assert by_kind == {"invariant": [dumps[0].node_id], "state_behind": [dumps[1].node_id],
                       "unverified": [dumps[2].node_id]}


def test_a_real_data_directory_clean_then_tampered(tmp_path: Path) -> None:
    data_dir = tmp_path / "node1"
    data_dir.mkdir()
    chain = Chain(data_dir / "state")
    chain.block(("grant", "boc", "credit.grant", {"core": "geely", "limit": 10_000,
                                                  "expires_at": chain.w.now + 86_400_000}))
    height = chain.store.height
    chain.store.close()
    found = check_node_state(data_dir)
    assert found["invariants"] == "ok" and found["error"] is None and found["height"] == height

    db = open_db(str(data_dir / "state"))  # a record changed behind the ledger's back
    try:
        key, value = next(iter(db.iterator(prefix=STATE)))
        db.put(key, value + b"\x00")
    finally:
        db.close()
    tampered = check_node_state(data_dir)
    assert tampered["error"] is None and tampered["invariants"] not in (None, "ok")
    assert check_node_state(tmp_path / "missing")["error"].startswith("no state directory")
