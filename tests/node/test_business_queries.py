"""The business queries of issue 14 on a real node: history, lists, what is owed, risk summaries, supervision,
business alarms and metrics, and the CLI commands over them.

One real single-voter node (node.server.Node: LevelDB, Raft, proposer, HTTP API, dashboard) on its own event loop
in a thread, so that the blocking CLI can call it. The story (real signed txs over HTTP):

    credit line boc -> geely, limit 1000; contracts PO-R (tier1-geely) and CT-R (tier2-tier1); invoice INV-R
    R  geely's certificate to tier1 under boc, 1000, accepted
    +- A  tier2, 600   (tier1 transfers 600 of R to tier2, on CT-R); geely pays 100 of A early
    +- B  tier1, 400   tier1 asks icbc to finance B; icbc approves with recourse (through the CLI, risk first)

Every route is tried by a reader who may, one who may not (401 / 403 / 404 as CONTRACT §6 says), with its
paging bounds. The credit line ends at 900 / 1000 = 90%: the `credit_near_limit` business alarm and gauge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.client import cli
from tests.node.live_node import ORGS, LiveNode, issue_and_transfer

CHAIN = "ecert-business-test"


class Live(LiveNode):
    """The node of this module's chain."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, CHAIN)


def story(live: Live) -> None:
    issue_and_transfer(live, credit_limit=1000)
    live.tx("geely", "ecert.pay", {"cert_id": live.ids["A"], "amount": 100})
    live.tx("tier1", "finance.request", {"cert_id": live.ids["B"], "bank": "icbc"})


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    node = Live(tmp_path_factory.mktemp("business"))
    node.start()
    try:
        story(node)
        yield node
    finally:
        node.stop()


def ecert(live: Live, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[Any]]:
    code = cli.main(["--config", str(live.cluster_file), "--node", live.base, "--json", *argv])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, lines


def test_finance_approve_in_the_cli_shows_the_risk_summary_first(live: Live,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, docs = ecert(live, capsys, "finance", "approve", live.ids["B"], "--discount-bps", "300", "--recourse",
                       "--as", "icbc")
    assert code == 0, docs
    risk, answer = docs
    assert risk["risk"]["cert_id"] == live.ids["B"] and risk["risk"]["advisory"] is True
    assert {f["name"] for f in risk["risk"]["figures"]} >= {"debtor_on_time_rate_bps", "lineage_depth"}
    assert answer["status"] == "committed" and answer["result"]["recourse"] is True
    code, docs = ecert(live, capsys, "risk", "cert", live.ids["B"], "--as", "icbc")
    assert code == 0 and docs[0]["cert_id"] == live.ids["B"]
    code, _ = ecert(live, capsys, "risk", "cert", live.ids["B"], "--as", "tier1")
    assert code == 1  # a supplier: 403
    code, docs = ecert(live, capsys, "cert", "history", live.ids["B"], "--as", "tier1", "--limit", "2")
    assert code == 0 and len(docs[0]["entries"]) == 2 and docs[0]["next_cursor"]
    code, docs = ecert(live, capsys, "cert", "list", "--debtor", "geely", "--as", "geely")
    assert code == 0 and {c["id"] for c in docs[0]["certs"]} == {live.ids["R"], live.ids["A"], live.ids["B"]}
    code, docs = ecert(live, capsys, "org", "owed", "tier2", "--as", "tier2")
    assert code == 0 and docs[0]["from_debtors"]["principal"] == 500


def test_history_route(live: Live) -> None:
    b, a = live.ids["B"], live.ids["A"]
    status, doc = live.get(f"/v1/certs/{b}/history", "tier1")
    assert status == 200 and doc["next_cursor"] is None
    types = [e["type"] for e in doc["entries"]]
    assert types[:2] == ["ecert.transfer", "finance.request"] and set(types) <= {
        "ecert.transfer", "finance.request", "finance.approve"}
    assert all(isinstance(e["height"], int) and isinstance(e["index"], int) for e in doc["entries"])
    status, doc = live.get(f"/v1/certs/{a}/history", "tier2")
    assert status == 200 and [e["type"] for e in doc["entries"]] == ["ecert.transfer", "ecert.pay"]
    assert doc["entries"][1]["result"]["principal"] == 100
    hidden = live.get(f"/v1/certs/{b}/history", "tier2")  # B is tier2's sibling: not its to see
    unknown = live.get("/v1/certs/EC" + "0" * 32 + "/history", "tier2")
    assert hidden[0] == unknown[0] == 404 and hidden[1]["error"]["code"] == unknown[1]["error"]["code"]
    assert live.get(f"/v1/certs/{b}/history", "tier3")[0] == 404
    assert live.get(f"/v1/certs/{b}/history")[0] == 401
    for bad in ("limit=0", "limit=101", "cursor=x", "cursor=h12.0"):
        status, doc = live.get(f"/v1/certs/{b}/history?{bad}", "pbc")
        assert status == 400, (bad, doc)
    pages, cursor = [], None
    while True:
        status, doc = live.get(f"/v1/certs/{live.ids['R']}/history?limit=1" + (f"&cursor={cursor}" if cursor else ""),
                               "pbc")
        assert status == 200 and len(doc["entries"]) <= 1
        pages += doc["entries"]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert [e["type"] for e in pages] == ["ecert.issue", "ecert.accept", "ecert.transfer"]


def test_list_route(live: Live) -> None:
    r, a, b = live.ids["R"], live.ids["A"], live.ids["B"]

    def listed(query: str, org: str) -> set[str]:
        status, doc = live.get(f"/v1/certs?{query}" if query else "/v1/certs", org)
        assert status == 200, doc
        return {c["id"] for c in doc["certs"]}

    assert listed("debtor=geely", "geely") == {r, a, b}
    assert listed("debtor=geely", "boc") == {r, a, b}  # the bank named at issue
    assert listed("debtor=geely", "tier2") == {r, a}  # its path, not its sibling
    assert listed("debtor=geely", "tier3") == set()  # a stranger learns nothing
    assert listed("holder=tier2&status=active", "tier2") == {a}
    assert listed("holder=tier2&status=active", "tier1") == {a}  # tier1 held A's parent: it reads A
    assert listed("holder=tier2&status=active", "tier3") == set()
    assert listed("status=split", "pbc") == {r} and listed("", "pbc") == {r, a, b}
    assert listed("", "tier2") == {a}  # without filters: what the reader holds, held or was asked to finance
    maturity = live.get(f"/v1/certs/{a}", "pbc")[1]["maturity"]
    assert listed(f"maturity_from={maturity}&maturity_to={maturity + 1}", "pbc") == {r, a, b}
    assert listed(f"maturity_from={maturity + 1}", "pbc") == set()
    joined: list[str] = []
    cursor = None
    while True:
        status, doc = live.get("/v1/certs?debtor=geely&limit=1" + (f"&cursor={cursor}" if cursor else ""), "pbc")
        assert status == 200 and len(doc["certs"]) <= 1
        joined += [c["id"] for c in doc["certs"]]
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert sorted(joined) == sorted({r, a, b}) and len(joined) == 3
    assert live.get("/v1/certs?debtor=geely")[0] == 401
    for bad in ("limit=0", "limit=101", "status=lost", "debtor=-x", "maturity_from=-1", "cursor=a%20b"):
        assert live.get(f"/v1/certs?{bad}", "pbc")[0] == 400, bad


def test_owed_route(live: Live) -> None:
    status, doc = live.get("/v1/orgs/tier2/owed", "tier2")
    assert status == 200 and doc["from_debtors"]["principal"] == 500
    assert live.get("/v1/orgs/tier2/owed", "pbc")[0] == 200
    assert live.get("/v1/orgs/tier2/owed", "tier1")[0] == 403
    assert live.get("/v1/orgs/tier2/owed", "geely")[0] == 403
    assert live.get("/v1/orgs/nobody/owed", "tier1")[0] == 404
    assert live.get("/v1/orgs/tier2/owed")[0] == 401


def test_risk_routes(live: Live) -> None:
    b, a = live.ids["B"], live.ids["A"]
    status, doc = live.get(f"/v1/risk/certs/{b}", "icbc")  # the bank asked to finance it
    assert status == 200 and doc["advisory"] is True
    assert live.get(f"/v1/risk/certs/{b}", "boc")[0] == 200  # the bank named at issue reads it
    assert live.get(f"/v1/risk/certs/{b}", "pbc")[0] == 200
    assert live.get(f"/v1/risk/certs/{b}", "tier1")[0] == 403  # not a bank
    assert live.get(f"/v1/risk/certs/{a}", "icbc")[0] == 404  # a bank that may not read it: as unknown
    assert live.get("/v1/risk/certs/EC" + "0" * 32, "icbc")[0] == 404
    assert live.get(f"/v1/risk/certs/{b}")[0] == 401
    status, doc = live.get("/v1/risk/orgs/tier1", "icbc")  # asked (and, after the CLI test, financed) by tier1
    assert status == 200 and {f["name"] for f in doc["figures"]} >= {"trade_confirmed", "held_unpaid",
                                                                     "debtor_hhi_bps", "your_exposure"}
    assert live.get("/v1/risk/orgs/tier1", "tier1")[0] == 200
    assert live.get("/v1/risk/orgs/tier1", "pbc")[0] == 200
    assert live.get("/v1/risk/orgs/geely", "boc")[0] == 200  # its credit line
    assert live.get("/v1/risk/orgs/tier2", "boc")[0] == 403  # no dealings
    assert live.get("/v1/risk/orgs/tier1", "tier2")[0] == 403
    assert live.get("/v1/risk/orgs/nobody", "icbc")[0] == 404
    assert live.get("/v1/risk/orgs/tier1")[0] == 401


def test_supervision_alarms_and_metrics(live: Live) -> None:
    status, doc = live.get("/v1/supervision", "pbc")
    assert status == 200 and doc["overdue"] == {"count": 0, "unpaid": 0} and doc["defaulted"]["count"] == 0
    assert {row["root_id"] for row in doc["roots"]} == {live.ids["R"]}
    assert doc["roots"][0]["depth_max"] == 1 and doc["roots"][0]["lineage_size"] == 3
    assert live.get("/v1/supervision", "tier1")[0] == 403
    # boc's line to geely is at 900 / 1000: the business alarm, for members, naming no org.
    deadline = time.monotonic() + 30
    while True:
        status, doc = live.get("/v1/alarms", "tier3")
        assert status == 200
        business = [a for a in doc["alarms"] if a["name"] == "credit_near_limit"]
        if business or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert business and business[0]["subject"] == "business", doc
    assert not any(org in business[0]["message"] for org, _, _ in ORGS)
    status, text = live.get("/metrics")
    assert status == 200
    lines = [line for line in text.splitlines() if line.startswith("ecert_business_")]
    assert "ecert_business_credit_lines_near_limit 1.0" in lines and "ecert_business_scan_complete 1.0" in lines
    assert all("{" not in line for line in lines)  # no labels at all


# --- the business alarms as pure functions over a hand-built chain (tests/ecert/world.py, real signed txs) ------


def test_business_counts_and_alarms_over_real_txs() -> None:
    from node.http import alarms as al
    from tests.ecert.world import DAY, World

    w = World(regulator=True, params={"dispute_resolution_ms": 10 * DAY, "complaint_response_ms": 10 * DAY})
    w.grant(limit=1000, expires_at=w.now + 200 * DAY)
    w.grant(limit=10_000, core="byd", expires_at=w.now + 100 * DAY)
    overdue = w.issue(400, maturity=w.now + 5 * DAY)
    defaulted = w.issue(500, maturity=w.now + 5 * DAY)
    w.issue(50, core="byd", maturity=w.now + 80 * DAY)
    evidence = "ee" * 32
    w.ok("tier1", "dispute.open", {"cert_id": overdue, "against": "geely", "reason": "r", "evidence_hash": evidence})
    w.ok("tier1", "complaint.file", {"against": "geely", "subject": "late", "evidence_hash": evidence})
    rules = al.BusinessRules()
    assert al.business_alarms(al.business_counts(w.view, w.now, rules), rules) == [
        al.Alarm(al.CREDIT_NEAR_LIMIT, al.WARNING, "business",
                 "1 credit lines and 0 financing limits at 90% or more of their limit")]
    w.now += 5 * DAY + 10 * DAY
    w.ok("tier1", "ecert.default", {"cert_id": defaulted})
    w.now += 60 * DAY  # byd's line expires within 30 days now; the dispute and complaint are past their deadline
    counts = al.business_counts(w.view, w.now, rules)
    assert counts == al.BusinessCounts(
        certs_overdue=1, overdue_unpaid=400, certs_defaulted=1, defaulted_unpaid=500, credit_near_limit=1,
        credit_expiring=1, disputes_open=1, disputes_overdue=1, complaints_open=1, complaints_overdue=1)
    raised = al.business_alarms(counts, rules)
    assert [a.name for a in raised] == list(al.BUSINESS_ALARM_NAMES)
    assert all(a.subject == "business" for a in raised)
    assert not any(org in a.message for a in raised for org in ("geely", "byd", "boc", "tier1", overdue))
    cut = al.business_counts(w.view, w.now, al.BusinessRules(certs_max=1))
    assert cut.complete is False and cut.certs_overdue + cut.certs_defaulted == 1
    assert "at least" in al.business_alarms(cut, rules)[0].message
    # The watch rescans only for a new height, and at most once per business_every_ms.
    watch = al.BusinessWatch(al.BusinessRules(business_every_ms=1000))
    assert [a.name for a in watch.sample(0, 5, w.view, w.now)] == [a.name for a in raised]
    first = watch.counts
    assert watch.sample(2000, 5, w.view, w.now + 10 * DAY) == raised and watch.counts is first  # same height
    watch.sample(2500, 6, w.view, w.now)
    assert watch.counts is not first  # a new height, the interval passed
    again = watch.counts
    watch.sample(2600, 7, w.view, w.now)
    assert watch.counts is again  # too soon
    assert watch.sample(3000, None, None, None) == watch.alarms  # no ledger: the last alarms
