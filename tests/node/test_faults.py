"""The fault layer: partition geometry, one-way blocks, seeded loss, delay, and the loopback-only admin route."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from node.faults import FaultRuleError, FaultRules, setup_admin_routes

IDS = ["n1", "n2", "n3", "n4", "n5"]


def cut_matrix(doc: dict) -> set[tuple[str, str]]:
    """Which directed links are cut, as seen by the sender's outbound and the receiver's inbound check."""
    nodes = {i: FaultRules(i, seed=1) for i in IDS}
    for r in nodes.values():
        r.apply(doc)
    cut = set()
    for src in IDS:
        for dst in IDS:
            if src == dst:
                continue
            out_drop, _ = nodes[src].outbound(dst)
            in_drop, _ = nodes[dst].inbound(src)
            assert out_drop == in_drop, (src, dst)
            if out_drop:
                cut.add((src, dst))
    return cut


def test_no_rules_pass_everything() -> None:
    r = FaultRules("n1")
    assert not r.active
    assert r.outbound("n2") == (False, 0)
    assert r.inbound("n2") == (False, 0)


def test_partition_halves_cuts_both_directions_across_only() -> None:
    cut = cut_matrix({"partition": [["n1", "n2"], ["n3", "n4", "n5"]]})
    across = {(a, b) for a in ("n1", "n2") for b in ("n3", "n4", "n5")}
    assert cut == across | {(b, a) for a, b in across}


def test_bridge_node_talks_to_both_sides() -> None:
    cut = cut_matrix({"partition": [["n1", "n2", "n3"], ["n3", "n4", "n5"]]})
    assert not any("n3" in link for link in cut)
    assert ("n1", "n4") in cut and ("n5", "n2") in cut
    assert len(cut) == 2 * 2 * 2


def test_isolated_node() -> None:
    cut = cut_matrix({"partition": [["n1"], ["n2", "n3", "n4", "n5"]]})
    assert cut == {("n1", x) for x in IDS[1:]} | {(x, "n1") for x in IDS[1:]}


def test_one_way_block_is_one_way() -> None:
    cut = cut_matrix({"block": [["n1", "n2"], ["n1", "n3"]]})
    assert cut == {("n1", "n2"), ("n1", "n3")}


def test_heal_forgets_everything() -> None:
    r = FaultRules("n1")
    r.apply({"partition": [["n1"], ["n2"]], "loss": 0.5, "delay_ms": 10, "fsync_delay_ms": 5})
    assert r.active
    r.apply({"heal": True})
    assert not r.active and r.fsync_delay_ms == 0
    assert r.outbound("n2") == (False, 0)


def test_loss_is_seeded_and_near_its_rate() -> None:
    def run(seed: int) -> list[bool]:
        r = FaultRules("n1", seed=seed)
        r.apply({"loss": 0.3})
        return [r.outbound("n2")[0] for _ in range(4000)]

    a, b = run(7), run(7)
    assert a == b
    assert a != run(8)
    assert 0.25 < sum(a) / len(a) < 0.35


def test_reseeding_replays_the_same_draws() -> None:
    a, b = FaultRules("n1", seed=1), FaultRules("n1", seed=2)
    for r in (a, b):
        r.apply({"loss": 0.5, "seed": 99})
    assert [a.outbound("n2")[0] for _ in range(200)] == [b.outbound("n2")[0] for _ in range(200)]
    with pytest.raises(FaultRuleError):
        a.apply({"seed": "x"})


def test_delay_and_jitter_bounds() -> None:
    r = FaultRules("n1", seed=3)
    r.apply({"delay_ms": 20, "jitter_ms": 10})
    delays = [r.outbound("n2")[1] for _ in range(500)]
    assert min(delays) >= 20 and max(delays) <= 30 and len(set(delays)) > 5
    assert r.inbound("n2") == (False, 0)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        [],
        {"partition": "n1"},
        {"partition": [[]]},
        {"block": [["n1", "n1"]]},
        {"block": [["n1"]]},
        {"loss": 1.5},
        {"loss": True},
        {"delay_ms": -1},
        {"delay_ms": 1.5},
        {"heal": False},
        {"bogus": 1},
        {"loss": 0.5, "partition": [[1]]},
        {"break_invariant": "apply"},
        {"break_invariant": {"node": "n1", "at": "commit"}},
        {"break_invariant": {"node": "", "at": "apply"}},
        {"break_invariant": {"node": "n1"}},
        {"break_invariant": {"node": "n1", "at": "apply"}, "loss": 2},
    ],
)
def test_bad_documents_are_refused_and_change_nothing(doc: object) -> None:
    r = FaultRules("n1")
    with pytest.raises(FaultRuleError):
        r.apply(doc)
    assert not r.active and r.invariant_break is None


def test_break_invariant_is_for_the_named_node_and_strikes_once() -> None:
    rule = {"break_invariant": {"node": "n2", "at": "apply"}}
    n1, n2 = FaultRules("n1"), FaultRules("n2")
    for r in (n1, n2):
        r.apply(rule)
    assert n1.invariant_break is None and not n1.take_invariant_break("apply")
    assert n2.describe()["invariant_break"] == "apply"
    assert not n2.take_invariant_break("step")  # armed for another point
    assert n2.take_invariant_break("apply") and not n2.take_invariant_break("apply")
    assert not n2.active  # frames are not affected
    n2.apply({"break_invariant": {"node": "n2", "at": "step"}})
    n2.apply({"heal": True})
    assert not n2.take_invariant_break("step")


async def test_admin_route_applies_and_reports() -> None:
    rules = FaultRules("n1", seed=1)
    app = web.Application()
    setup_admin_routes(app, rules)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/admin/faults", json={"partition": [["n1"], ["n2", "n3"]]})
        assert resp.status == 200
        assert (await resp.json())["partition"] == [["n1"], ["n2", "n3"]]
        assert rules.outbound("n2") == (True, 0)
        resp = await client.post("/admin/faults", json={"loss": 2})
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_fault_rule"
        resp = await client.post("/admin/faults", data=b"{not json", headers={"Content-Type": "application/json"})
        assert resp.status == 400
        resp = await client.post("/admin/faults", json={"heal": True})
        assert resp.status == 200 and not rules.active
        resp = await client.get("/admin/faults")
        assert (await resp.json())["node_id"] == "n1"


async def test_admin_route_refuses_non_loopback_clients() -> None:
    rules = FaultRules("n1")
    app = web.Application()

    @web.middleware
    async def pretend_remote(request: web.Request, handler):  # type: ignore[no-untyped-def]
        return await handler(request.clone(remote="10.1.2.3"))

    app.middlewares.append(pretend_remote)
    setup_admin_routes(app, rules)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/admin/faults", json={"partition": [["n1"], ["n2"]]})
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
        assert not rules.active
