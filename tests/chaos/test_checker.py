"""The checker catches what it claims: a clean record passes; each planted fault is reported by name."""

from __future__ import annotations

import dataclasses

from node.chaos.checker import check_run
from node.chaos.history import ReadRecord

from .synthetic import build, h


def kinds(report) -> list[str]:
    return sorted({v.kind for v in report.violations})


def test_clean_record_has_no_violations() -> None:
    hist, dumps = build()
    report = check_run(hist, dumps)
    assert report.violations == [], [v.message for v in report.violations]
    assert report.stats["acked"] == 5 and report.stats["lost"] == 0
    assert report.stats["unknown_committed"] == 1 and report.stats["unknown_absent"] == 1
    assert report.stats["lineages_checked"] == 3 and report.stats["credit_lines_checked"] == 3
    lin = report.stats["linearizability"]
    assert lin["violations"] == 0 and lin["reads"] == 7 and lin["certs"] == 5
    av = report.stats["availability"]
    assert av["leaderless_gaps"] == 1 and av["election_ms_max"] == 2000
    assert 0.85 < av["leader_share"] < 0.95


def test_acked_tx_missing_from_one_nodes_chain_is_lost() -> None:
    hist, dumps = build()
    accept = hist.txs[1]
    victim = dumps[2]
    victim.txs[accept.tx_id] = None
    victim.blocks[2]["tx_ids"] = []
    report = check_run(hist, dumps)
    assert "lost" in kinds(report)
    lost = [v for v in report.violations if v.kind == "lost"]
    assert lost[0].txs == [accept.tx_id] and lost[0].nodes == [victim.node_id]
    assert report.stats["lost"] == 1


def test_acked_tx_with_other_result_on_a_node() -> None:
    hist, dumps = build()
    xfer = hist.txs[2]
    dumps[0].txs[xfer.tx_id] = {"status": "committed", "height": 3, "result": {"certs": ["x", "y"]}}
    assert "outcome_mismatch" in kinds(check_run(hist, dumps))


def test_acked_rejection_later_committed() -> None:
    hist, dumps = build()
    rej = hist.txs[7]
    dumps[1].txs[rej.tx_id] = {"status": "committed", "height": 7, "result": {}}
    assert "outcome_mismatch" in kinds(check_run(hist, dumps))


def test_unknown_tx_committed_on_some_nodes_only() -> None:
    hist, dumps = build()
    split = hist.txs[5]
    dumps[0].txs[split.tx_id] = None
    assert "unknown_divergent" in kinds(check_run(hist, dumps))


def test_state_root_altered_on_one_node() -> None:
    hist, dumps = build()
    dumps[1].status = {**dumps[1].status, "state_root": h("forged")}
    report = check_run(hist, dumps)
    mism = [v for v in report.violations if v.kind == "state_root_mismatch"]
    assert mism and mism[0].nodes == [dumps[1].node_id]


def test_per_height_state_root_altered() -> None:
    hist, dumps = build()
    for d in dumps:
        for b in d.blocks.values():
            b["state_root"] = h(f"root{b['height']}")
    assert check_run(hist, dumps).violations == []
    dumps[2].blocks[4]["state_root"] = h("forged")
    report = check_run(hist, dumps)
    assert [v.kind for v in report.violations] == ["block_mismatch"]
    assert "height 4" in report.violations[0].message


def test_block_hash_altered() -> None:
    hist, dumps = build()
    dumps[0].blocks[3]["hash"] = h("other")
    report = check_run(hist, dumps)
    assert kinds(report) == ["block_mismatch", "chain_broken"]


def test_block_time_going_back() -> None:
    hist, dumps = build()
    for d in dumps:
        d.blocks[5]["time"] = 999
    report = check_run(hist, dumps)
    assert kinds(report) == ["time_went_back"] and len(report.violations) == 3


def test_outcome_recorded_at_a_block_without_the_tx() -> None:
    hist, dumps = build()
    accept = hist.txs[1]
    dumps[1].txs[accept.tx_id] = {**dumps[1].txs[accept.tx_id], "height": 5}
    assert "phantom_outcome" in kinds(check_run(hist, dumps))


def test_nodes_at_different_heights() -> None:
    hist, dumps = build()
    dumps[0].status = {**dumps[0].status, "height": 6}
    assert "not_converged" in kinds(check_run(hist, dumps))


def test_tx_applied_twice() -> None:
    hist, dumps = build()
    accept = hist.txs[1]
    for d in dumps:
        d.blocks[4]["tx_ids"].append(accept.tx_id)  # a duplicate inclusion is fine if it was skipped ...
    assert check_run(hist, dumps).violations == []
    dumps[0].txs[accept.tx_id] = {**dumps[0].txs[accept.tx_id], "height": 4}  # ... not if applied again
    report = check_run(hist, dumps)
    assert "applied_twice" in kinds(report)


def test_value_created_from_nothing() -> None:
    hist, dumps = build()
    lineage = dumps[1].lineages["c1"]
    for c in lineage["certs"]:
        if c["id"] == "c5":
            c["amount"] = 301
    report = check_run(hist, dumps)
    assert "conservation" in kinds(report)
    assert all(v.nodes == [dumps[1].node_id] for v in report.violations if v.kind == "conservation")


def test_credit_used_not_matching_outstanding() -> None:
    hist, dumps = build()
    dumps[2].credit["boc/geely"]["used"] = 400
    assert kinds(check_run(hist, dumps)) == ["credit"]


def test_stale_linearizable_read_is_caught() -> None:
    hist, dumps = build()
    # After the accept was acknowledged (2.1), a linearizable read still sees "issued".
    hist.reads.append(ReadRecord("c1", "tier1", "r", 2.7, 2.8, True, ("tier1", "issued")))
    report = check_run(hist, dumps)
    assert kinds(report) == ["linearizability"]
    v = report.violations[0]
    assert v.certs == ["c1"] and "read@tier1" in v.message


def test_read_going_back_in_time_across_an_unknown_write() -> None:
    hist, dumps = build()
    # c3 was seen split at 9.0; seeing it active again later is going back in time.
    hist.reads.append(ReadRecord("c3", "geely", "r", 9.5, 9.6, True, ("tier1", "active")))
    assert kinds(check_run(hist, dumps)) == ["linearizability"]


def test_final_state_disagreeing_with_the_last_write() -> None:
    hist, dumps = build()
    for d in dumps:
        d.certs["c2"] = {**d.certs["c2"], "holder": "geely"}
    assert "linearizability" in kinds(check_run(hist, dumps))


def test_unreachable_node_is_reported() -> None:
    hist, dumps = build()
    dumps[0] = dataclasses.replace(dumps[0], status=None)
    assert "node_unreachable" in kinds(check_run(hist, dumps))


def test_node_exiting_on_its_own_is_reported() -> None:
    hist, dumps = build()
    hist.crashes.append({"node": "geely", "pid": 4242, "exit_code": 1, "t": 3.5,
                         "output_tail": "InvariantViolation: applied index went back"})
    report = check_run(hist, dumps)
    assert kinds(report) == ["node_crashed"]
    assert "InvariantViolation" in report.violations[0].message and report.violations[0].nodes == ["geely"]


def test_a_node_that_never_answered_is_unverified_not_lost() -> None:
    hist, dumps = build()
    accept = hist.txs[1]
    del dumps[2].txs[accept.tx_id]  # the request timed out: no answer at all
    del dumps[2].lineages["c1"]
    dumps[2].errors = [f"/v1/tx/{accept.tx_id}: TimeoutError", "/v1/certs/c1/lineage: TimeoutError"]
    report = check_run(hist, dumps)
    assert kinds(report) == ["unverified"] and report.stats["lost"] == 0
    assert report.violations[0].nodes == [dumps[2].node_id]
