"""ecert/supervision.py: the regulator's views (outstanding per core, live certificates per depth, financed
totals per bank) over a real chain of txs."""

from __future__ import annotations

from typing import Any

import pytest

from ecert import supervision as sv
from tests.ecert.world import DAY, World


def chain() -> tuple[World, dict[str, Any]]:
    w = World(regulator=True)
    w.grant(bank="boc", core="geely")
    w.grant(limit=5000, bank="icbc", core="byd")
    root = w.issue(1000, to="tier1")  # depth 0, held by tier1
    a, b = w.ok("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 600}]})["certs"]
    e, f = w.ok("tier2", "ecert.transfer", {"cert_id": a, "to": [{"org": "tier3", "amount": 200}]})["certs"]
    w.ok("tier3", "finance.request", {"cert_id": e, "bank": "icbc"})
    financed = w.ok("icbc", "finance.approve", {"cert_id": e, "discount_bps": 2000})
    x = w.issue(500, to="tier2", core="byd", bank="icbc", maturity=w.now + 30 * DAY)
    return w, {"root": root, "a": a, "b": b, "e": e, "f": f, "x": x, "disbursed": financed["disbursed"]}


def test_the_three_views() -> None:
    w, ids = chain()
    got = sv.supervision(w.view)
    assert got["complete"] is True and got["live_certs"] == 4  # b (tier1), f (tier2), e (icbc), x (tier2)
    outstanding = {row["core"]: row for row in got["outstanding_by_core"]}
    assert [row["core"] for row in got["outstanding_by_core"]] == ["byd", "geely"]
    assert outstanding["geely"]["outstanding"] == 1000 and outstanding["byd"]["outstanding"] == 500
    assert [(line["bank"], line["used"], line["limit"]) for line in outstanding["byd"]["lines"]] == [
        ("icbc", 500, 5000)]
    # depth 0: x; depth 1: b (the remainder of the root's transfer); depth 2: e and f
    assert got["certs_by_depth"] == [{"depth": 0, "count": 1, "amount": 500},
                                     {"depth": 1, "count": 1, "amount": 400},
                                     {"depth": 2, "count": 2, "amount": 600}]
    assert got["financed_by_bank"] == [{"bank": "icbc", "count": 1, "principal": 200,
                                        "disbursed": ids["disbursed"]}]
    assert 0 < ids["disbursed"] < 200


def test_settled_certificates_leave_every_view() -> None:
    w, ids = chain()
    w.now += 95 * DAY
    w.ok("geely", "ecert.settle", {"cert_id": ids["e"]})
    got = sv.supervision(w.view)
    assert got["financed_by_bank"] == []
    assert {row["core"]: row["outstanding"] for row in got["outstanding_by_core"]} == {"byd": 500, "geely": 800}
    assert sum(row["amount"] for row in got["certs_by_depth"]) == 500 + 800


def test_a_bounded_read_says_it_is_incomplete() -> None:
    w, _ = chain()
    got = sv.supervision(w.view, certs_max=2)
    assert got["complete"] is False and got["live_certs"] == 2
    assert sum(row["count"] for row in got["certs_by_depth"]) == 2
    # The credit totals never depend on the bound.
    assert got["outstanding_by_core"] == sv.supervision(w.view)["outstanding_by_core"]
    with pytest.raises(Exception, match="at least one"):
        sv.supervision(w.view, certs_max=0)


def test_an_empty_chain() -> None:
    got = sv.supervision(World().view)
    assert got == {"outstanding_by_core": [], "certs_by_depth": [], "financed_by_bank": [], "live_certs": 0,
                   "complete": True, "overdue": None, "defaulted": {"count": 0, "unpaid": 0, "penalty": None},
                   "roots": [], "roots_listed_all": True, "exposure_by_bank": [], "exposures_complete": True,
                   "at": None}
