"""ecert/risk.py: deterministic, explainable risk summaries over real signed txs, and who may read them."""

from __future__ import annotations

from typing import Any

from ecert import risk
from ecert import state as s
from ecert.access import Reader
from tests.ecert.world import DAY, World

GRACE = 10 * DAY
EVIDENCE = "ee" * 32


def reader(org: str) -> Reader:
    return Reader(org, {"boc": "bank", "icbc": "bank", "geely": "core", "byd": "core", "pbc": "regulator"}.get(
        org, "supplier"))


def fig(summary: dict[str, Any], name: str) -> dict[str, Any]:
    found = [f for f in summary["figures"] if f["name"] == name]
    assert len(found) == 1, name
    return found[0]


def history_of_geely() -> tuple[World, dict[str, str]]:
    """geely's record: one settled on time, one settled late, one defaulted, one overdue, one not due yet."""
    w = World(regulator=True, params={"dispute_resolution_ms": 10 * DAY, "complaint_response_ms": 10 * DAY})
    w.grant()
    w.grant(core="byd")
    on_time = w.issue(100, maturity=w.now + 5 * DAY)
    late = w.issue(200, maturity=w.now + 5 * DAY)
    defaulted = w.issue(300, maturity=w.now + 5 * DAY)
    overdue = w.issue(400, maturity=w.now + 20 * DAY)
    byd = w.issue(1000, core="byd", maturity=w.now + 60 * DAY)
    w.now += 5 * DAY
    w.ok("geely", "ecert.settle", {"cert_id": on_time})
    w.now += GRACE
    w.ok("geely", "ecert.settle", {"cert_id": late})
    w.ok("tier1", "ecert.default", {"cert_id": defaulted})
    w.now += 10 * DAY  # the 400 is 5 days overdue now
    fresh = w.issue(500, maturity=w.now + 30 * DAY)
    return w, {"on_time": on_time, "late": late, "defaulted": defaulted, "overdue": overdue, "byd": byd,
               "fresh": fresh}


def test_the_debtors_record_counts_each_way_a_certificate_ended() -> None:
    w, _c = history_of_geely()
    record = risk.settlement_record(w.view, "geely", w.now)
    assert record["counts"] == {"on_time": 1, "late": 1, "defaulted": 1, "overdue": 1, "not_due": 1}
    assert record["amounts"] == {"on_time": 100, "late": 200, "defaulted": 300, "overdue": 400, "not_due": 500}
    assert record["figure"]["value"] == 1 * 10_000 // 4 and record["figure"]["inputs"]["late"] == 1
    assert record["complete"] is True
    cut = risk.settlement_record(w.view, "geely", w.now, certs_max=2)
    assert cut["complete"] is False and cut["certs_read"] == 2
    assert risk.settlement_record(w.view, "byd", w.now)["figure"]["value"] is None  # nothing fell due yet


def test_a_certificate_summary_explains_each_figure() -> None:
    w, c = history_of_geely()
    child = w.ok("tier1", "ecert.transfer", {"cert_id": c["fresh"], "to": [{"org": "tier2", "amount": 200}]})["certs"][0]
    got = risk.cert_risk(w.view, child, w.now)
    assert got is not None and got["advisory"] is True and got["debtor"] == "geely" and got["holder"] == "tier2"
    assert fig(got, "debtor_on_time_rate_bps")["value"] == 2500
    assert fig(got, "lineage_depth") == {"name": "lineage_depth", "value": 1, "how": fig(got, "lineage_depth")["how"],
                                         "inputs": {"lineage_size": 3}}
    assert fig(got, "days_to_maturity")["value"] == 30
    assert fig(got, "unpaid")["value"] == 200 and fig(got, "disputed")["value"] is False
    w.ok("tier2", "dispute.open", {"cert_id": child, "against": "geely", "reason": "short", "evidence_hash": EVIDENCE})
    assert fig(risk.cert_risk(w.view, child, w.now) or {}, "disputed")["value"] is True  # type: ignore[arg-type]
    assert risk.cert_risk(w.view, child, w.now) == risk.cert_risk(w.view, child, w.now)  # deterministic
    overdue = risk.cert_risk(w.view, c["overdue"], w.now)
    assert overdue is not None and fig(overdue, "days_to_maturity")["value"] == -5
    assert risk.cert_risk(w.view, "EC" + "0" * 32, w.now) is None


def test_a_supplier_summary_trade_holdings_concentration_financing_disputes() -> None:
    w, c = history_of_geely()
    w.ok("tier1", "finance.request", {"cert_id": c["byd"], "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": c["byd"], "discount_bps": 300, "recourse": True})
    w.ok("tier1", "complaint.file", {"against": "geely", "subject": "late", "evidence_hash": EVIDENCE})
    w.ok("geely", "complaint.file", {"against": "tier1", "subject": "rude", "evidence_hash": EVIDENCE})
    w.ok("tier1", "dispute.open", {"cert_id": c["overdue"], "against": "geely", "reason": "r",
                                   "evidence_hash": EVIDENCE})
    got = risk.org_risk(w.view, "tier1", w.now, reader("boc"))
    assert got is not None and got["complete"] is True and got["role"] == "supplier"
    # every issue drew on a confirmed invoice tier1 anchored with its core: 100+200+300+400+1000+500
    assert fig(got, "trade_confirmed")["value"] == 2500
    assert fig(got, "trade_confirmed")["inputs"]["by_kind"] == {"invoice": {"count": 6, "amount": 2500}}
    held = fig(got, "held_unpaid")
    assert held["value"] == 300 + 400 + 500  # defaulted, overdue, fresh (byd's was sold to boc)
    assert held["inputs"]["by_status"] == {"active": {"count": 2, "unpaid": 900},
                                           "defaulted": {"count": 1, "unpaid": 300}}
    assert fig(got, "held_overdue")["value"] == 400
    assert got["concentration"] == [{"debtor": "geely", "unpaid": 1200, "share_bps": 10_000}]
    assert fig(got, "debtor_hhi_bps")["value"] == 10_000 and fig(got, "top_debtor_share_bps")["value"] == 10_000
    sold = fig(got, "financed_principal")
    assert sold["value"] == 1000 and sold["inputs"]["with_recourse"] == 1 and sold["inputs"]["count"] == 1
    assert fig(got, "recourse_outstanding")["value"] == 0
    assert fig(got, "disputes_unresolved")["value"] == 1 and fig(got, "disputes_unresolved")["inputs"]["opened"] == 1
    assert fig(got, "complaints_against")["value"] == 1
    assert fig(got, "your_exposure")["value"] == 1000
    assert risk.org_risk(w.view, "nobody", w.now) is None
    assert "your_exposure" not in {f["name"] for f in (risk.org_risk(w.view, "tier1", w.now) or {})["figures"]}


def test_who_may_read_a_risk_summary() -> None:
    w, c = history_of_geely()
    view = w.view
    assert risk.can_read_org_risk(view, reader("pbc"), "tier1")
    assert risk.can_read_org_risk(view, reader("tier1"), "tier1")  # its own
    assert not risk.can_read_org_risk(view, reader("tier2"), "tier1")  # another supplier
    assert not risk.can_read_org_risk(view, reader("geely"), "tier1")  # a core
    assert not risk.can_read_org_risk(view, reader("icbc"), "tier1")  # a bank it never dealt with
    assert risk.can_read_org_risk(view, reader("boc"), "geely")  # boc's credit line
    w.ok("tier1", "finance.request", {"cert_id": c["fresh"], "bank": "icbc"})
    assert risk.can_read_org_risk(w.view, reader("icbc"), "tier1")  # asked to finance
    assert risk.can_read_cert_risk(w.view, reader("icbc"), c["fresh"])
    assert not risk.can_read_cert_risk(w.view, reader("icbc"), c["on_time"])  # not its certificate
    assert not risk.can_read_cert_risk(w.view, reader("tier1"), c["fresh"])  # not a bank
    assert risk.can_read_cert_risk(w.view, reader("pbc"), c["on_time"])
    w.ok("icbc", "finance.decline", {"cert_id": c["fresh"]})
    assert not risk.can_read_org_risk(w.view, reader("icbc"), "tier1")  # the request is gone
    w.ok("icbc", "finance.limit", {"org": "tier1", "limit": 10_000})
    assert risk.can_read_org_risk(w.view, reader("icbc"), "tier1")  # a limit set for it
    assert s.get_org(w.view, "tier1") is not None
