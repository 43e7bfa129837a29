"""ecert/portfolio.py lists (by debtor, holder, status, maturity window; paged, bounded, each certificate filtered
by who may read it) and the issue-14 supervision aggregates (ecert/supervision.py), over real signed txs."""

from __future__ import annotations

from typing import Any

import pytest

from ecert import portfolio as pf
from ecert import state as s
from ecert import supervision as sv
from ecert.access import Reader, can_read_cert
from tests.ecert.world import DAY, World

GRACE = 10 * DAY
REG = Reader("pbc", s.REGULATOR)


def reader(org: str) -> Reader:
    return Reader(org, {"boc": "bank", "icbc": "bank", "geely": "core", "byd": "core"}.get(org, "supplier"))


def chain() -> tuple[World, dict[str, Any]]:
    """geely issues three roots (two to tier1, one to tier2), byd one; tier1 transfers part of one to tier2;
    one root is settled, one defaults, one stays live."""
    w = World(regulator=True)
    w.grant()
    w.grant(core="byd")
    early = w.issue(100, maturity=w.now + 10 * DAY)
    late = w.issue(200, maturity=w.now + 60 * DAY)
    moved = w.issue(300, maturity=w.now + 60 * DAY)
    children = w.ok("tier1", "ecert.transfer", {"cert_id": moved, "to": [{"org": "tier2", "amount": 120}]})["certs"]
    to_tier2 = w.issue(50, to="tier2", maturity=w.now + 90 * DAY)
    byd = w.issue(70, core="byd", maturity=w.now + 90 * DAY)
    w.now += 10 * DAY
    w.ok("geely", "ecert.settle", {"cert_id": early})
    w.now += 50 * DAY + GRACE
    w.ok("tier1", "ecert.default", {"cert_id": late})
    return w, {"early": early, "late": late, "moved": moved, "child": children[0], "rest": children[1],
               "to_tier2": to_tier2, "byd": byd}


def ids(page: dict[str, Any]) -> set[str]:
    return {c["id"] for c in page["certs"]}


def everything(w: World, who: Reader, flt: pf.CertFilter, limit: int = pf.LIST_PAGE_MAX, **kw: Any
               ) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = pf.list_certs(w.view, who, flt, w.now, cursor=cursor, limit=limit, **kw)
        assert len(page["certs"]) <= limit
        got += page["certs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return got


def test_by_holder_live_uses_the_holdings_and_settled_ones_the_party_index() -> None:
    w, c = chain()
    live = pf.list_certs(w.view, reader("tier1"), pf.CertFilter(holder="tier1", status=s.ACTIVE), w.now)
    assert live["index"] == pf.HOLDINGS and ids(live) == {c["rest"], c["byd"]}
    assert pf.list_certs(w.view, reader("tier1"), pf.CertFilter(holder="tier1", status=s.DEFAULTED),
                         w.now)["certs"][0]["id"] == c["late"]
    settled = pf.list_certs(w.view, reader("tier1"), pf.CertFilter(holder="tier1", status=s.SETTLED), w.now)
    assert settled["index"] == pf.PARTY and ids(settled) == {c["early"]}
    every = pf.list_certs(w.view, reader("tier1"), pf.CertFilter(holder="tier1"), w.now)
    # what tier1 holds now (its transferred parent stays with it as `split`; the child went to tier2)
    assert ids(every) == {c["early"], c["late"], c["moved"], c["rest"], c["byd"]}


def test_by_debtor_walks_its_roots_and_lineages_and_each_reader_sees_its_part() -> None:
    w, c = chain()
    flt = pf.CertFilter(debtor="geely")
    mine = {c[k] for k in ("early", "late", "moved", "child", "rest", "to_tier2")}
    assert {x["id"] for x in everything(w, reader("geely"), flt)} == mine
    assert {x["id"] for x in everything(w, REG, flt)} == mine
    assert {x["id"] for x in everything(w, reader("boc"), flt)} == mine  # the bank named at issue
    assert pf.list_certs(w.view, reader("geely"), flt, w.now)["index"] == pf.DEBTOR
    # tier2 sees the path to what it received and its own root; tier3 and icbc nothing, not even that they exist.
    assert {x["id"] for x in everything(w, reader("tier2"), flt)} == {c["moved"], c["child"], c["to_tier2"]}
    assert everything(w, reader("tier3"), flt) == [] and everything(w, reader("icbc"), flt) == []
    for who in ("tier1", "tier2", "tier3", "icbc", "byd"):
        for cert in everything(w, reader(who), pf.CertFilter(debtor="geely")):
            assert can_read_cert(w.view, reader(who), cert["id"])


def test_status_and_maturity_window_filter_and_the_regulator_scans_everything() -> None:
    w, c = chain()
    all_ids = {x["id"] for x in everything(w, REG, pf.CertFilter())}
    assert all_ids == set(c.values())
    assert pf.list_certs(w.view, REG, pf.CertFilter(), w.now)["index"] == pf.ALL
    assert {x["id"] for x in everything(w, REG, pf.CertFilter(status=s.SPLIT))} == {c["moved"]}
    start = s.get_cert(w.view, c["to_tier2"]).maturity  # type: ignore[union-attr]
    window = pf.CertFilter(maturity_from=start, maturity_to=start + 1)
    assert {x["id"] for x in everything(w, REG, window)} == {c["to_tier2"], c["byd"]}
    assert {x["id"] for x in everything(w, REG, pf.CertFilter(debtor="geely", maturity_from=start))} == {c["to_tier2"]}
    assert all(x["overdue"] is False for x in everything(w, REG, window))
    # An org without filters lists what it holds, held or was asked to finance.
    assert {x["id"] for x in everything(w, reader("tier2"), pf.CertFilter())} == {c["child"], c["to_tier2"]}


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_pages_of_any_size_join_up(limit: int) -> None:
    w, _c = chain()
    for flt in (pf.CertFilter(), pf.CertFilter(debtor="geely"), pf.CertFilter(holder="tier1")):
        whole = pf.list_certs(w.view, REG, flt, w.now, limit=pf.LIST_PAGE_MAX)
        assert whole["next_cursor"] is None
        assert everything(w, REG, flt, limit=limit) == whole["certs"]


def test_the_read_bound_ends_a_page_early_with_a_cursor() -> None:
    w, _c = chain()
    page = pf.list_certs(w.view, reader("tier3"), pf.CertFilter(debtor="geely"), w.now, scan_max=2)
    assert page["certs"] == [] and page["scanned"] == 2 and page["next_cursor"] is not None
    assert everything(w, REG, pf.CertFilter(debtor="geely"), scan_max=1) == everything(
        w, REG, pf.CertFilter(debtor="geely"))
    for bad in ("", "a b", "x" * 200, "é"):
        with pytest.raises(ValueError):
            pf.list_certs(w.view, REG, pf.CertFilter(), w.now, cursor=bad)
    # Any cursor of the key alphabet reads as "past it": a bare root id skips that whole root's lineage.
    first_root = pf.list_certs(w.view, REG, pf.CertFilter(debtor="geely"), w.now)["certs"][0]["root_id"]
    skipped = pf.list_certs(w.view, REG, pf.CertFilter(debtor="geely"), w.now, cursor=first_root)
    assert skipped["certs"] and all(x["root_id"] > first_root for x in skipped["certs"])
    assert pf.list_certs(w.view, REG, pf.CertFilter(debtor="geely"), w.now, cursor="zz/0")["certs"] == []
    with pytest.raises(Exception, match="limit"):
        pf.list_certs(w.view, REG, pf.CertFilter(), w.now, limit=0)


def test_supervision_aggregates_overdue_defaulted_roots_and_exposure() -> None:
    w, c = chain()
    w.ok("tier2", "finance.request", {"cert_id": c["to_tier2"], "bank": "icbc"})
    w.ok("icbc", "finance.approve", {"cert_id": c["to_tier2"], "discount_bps": 100})
    got = sv.supervision(w.view, now=w.now)
    # past maturity: the moved root's two leaves (120 + 180), not the defaulted one (it has its own total)
    assert got["overdue"] == {"count": 2, "unpaid": 300}
    assert got["defaulted"]["count"] == 1 and got["defaulted"]["unpaid"] == 200
    assert got["defaulted"]["penalty"] == 200 * 5 * 10 // 10_000  # 5 bps a day, 10 days past maturity
    roots = {r["root_id"]: r for r in got["roots"]}
    assert set(roots) == {c["late"], c["moved"], c["to_tier2"], c["byd"]}  # roots with live certificates
    assert roots[c["moved"]] == {"root_id": c["moved"], "debtor": "geely", "depth_max": 1, "live_certs": 2,
                                 "unpaid": 300, "lineage_size": 3}
    assert got["exposure_by_bank"] == [{"bank": "icbc", "orgs": [
        {"org": "geely", "used": 50, "limit": None}, {"org": "tier2", "used": 50, "limit": None}]}]
    assert got["at"] == w.now and sv.supervision(w.view)["overdue"] is None
