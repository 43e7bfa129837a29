"""Dashboard routes through aiohttp's real test server and client: over a fake NodeSource (public views, alarms,
paging), and over a real StateStore with real signed txs (who sees what: SSE by party, block txs, latest
certificate, supervision, the one-time login link). The identity gate is the node's (node/http/auth_gate.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ledger.state_view import StateView
from node.http import dashboard as dash_mod
from node.http import login as login_mod
from node.http.alarms import AlarmRules
from node.http.api import error_middleware
from node.http.auth_gate import AUTH_GATE_KEY, AuthGate, access_middleware
from node.http.dashboard import DASHBOARD_KEY, Dashboard, setup_dashboard
from node.http.metrics import NodeMetrics
from node.request_auth import LOGIN_LINK_TTL_MS, fresh_nonce, session_cookie, sign_request
from tests.ecert.world import CHAIN, World
from tests.node.chain_source import Chain, grow

ROOT = "aa" * 32
KID1, KID2 = "bb" * 32, "cc" * 32


class FakeSource:
    """A NodeSource with scripted answers (the Protocol of node/source.py)."""

    def __init__(self) -> None:
        self.st: dict[str, Any] = {"node_id": "n1", "org": "boc", "pid": 1, "role": "leader", "term": 2,
                                   "leader_id": "n1", "commit_index": 12, "applied_index": 12, "height": 3,
                                   "block_hash": "ab" * 32, "state_root": "cd" * 32}
        self.peer_list: list[dict[str, Any]] = [
            {"id": "n2", "org": "geely", "http": None, "match_index": 12, "lag": 0, "last_contact_ms": 40,
             "reachable": True},
            {"id": "n3", "org": "tier1", "http": None, "match_index": 3, "lag": 9, "last_contact_ms": 30_000,
             "reachable": False}]
        self.txs = {
            1: [{"tx_id": "01" * 32, "status": "committed", "type": "ecert.issue", "result": {"certs": [ROOT]}}],
            2: [{"tx_id": "02" * 32, "status": "committed", "type": "ecert.transfer",
                 "result": {"certs": [KID1, KID2]}}],
            3: [{"tx_id": "03" * 32, "status": "rejected", "type": "ecert.transfer", "error_code": "not_holder"}],
        }
        self.node_alarms: list[dict[str, Any]] = []
        self.apply_error: str | None = None

    def status(self) -> dict[str, Any]:
        return dict(self.st)

    def peers(self) -> list[dict[str, Any]]:
        return [dict(p) for p in self.peer_list]

    def recent_blocks(self, before: int | None, limit: int, tx_ids: bool = False) -> list[dict[str, Any]]:
        top = self.st["height"] if before is None else before - 1
        rows = []
        for h in range(top, max(0, top - limit), -1):
            ids = [t["tx_id"] for t in self.txs.get(h, [])]
            row = {"height": h, "time": 1_700_000_000_000 + h, "proposer": "n1", "hash": f"{h:064x}",
                   "tx_count": len(ids)}
            rows.append({**row, "tx_ids": ids} if tx_ids else row)
        return rows

    def block_txs(self, height: int) -> list[dict[str, Any]]:
        return self.txs.get(height, [])

    def alarms(self) -> list[dict[str, Any]]:
        return self.node_alarms


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        return self.t


def gated_app(view: StateView, node_id: str = "n1") -> tuple[web.Application, AuthGate]:
    """An app with the node's middlewares and identity gate, over `view` for the orgs."""
    app = web.Application(middlewares=[error_middleware, access_middleware])
    gate = AuthGate(chain_id=CHAIN, node_id=node_id, started_ms=0, view=lambda: view, read_access="signed",
                    body_bytes_max=1 << 20)
    app[AUTH_GATE_KEY] = gate
    return app, gate


def bearer(gate: AuthGate, org: str) -> dict[str, str]:
    token, _ = gate.sessions.issue(org, gate.clock())
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def served():
    source = FakeSource()
    metrics = NodeMetrics(process=False)
    app, gate = gated_app(World(regulator=True).view)
    dash = setup_dashboard(app, source, metrics, probe_peers=False, sample_loop=False, clock=Clock(),
                           rules=AlarmRules(peer_unreachable_ms=1000, rejected_burst_max=1))
    client = TestClient(TestServer(app))
    await client.start_server()
    dash.regulator = bearer(gate, "pbc")  # type: ignore[attr-defined]
    dash.member = bearer(gate, "tier1")  # type: ignore[attr-defined]
    try:
        yield client, source, dash
    finally:
        await client.close()


async def test_index_and_static_assets_are_served(served):
    client, _, _ = served
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert "/static/app.js" in html and "cluster-table" in html and "lineage-tree" in html
    assert "http://" not in html and "https://" not in html  # no CDN: works offline
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = await client.get(f"/static/{name}")
        assert r.status == 200 and r.content_type == ctype and len(await r.read()) > 500
        assert "https://" not in await r.text()


async def test_static_refuses_traversal_and_unknown_files(served):
    client, _, _ = served
    for bad in ("../dashboard.py", "%2e%2e%2fdashboard.py", ".hidden", "nope.js"):
        r = await client.get(f"/static/{bad}")
        assert r.status == 404, bad
        if r.content_type == "application/json":
            assert (await r.json())["error"]["code"] == "not_found"


async def test_metrics_endpoint_parses_and_counts_requests(served):
    client, _, dash = served
    await client.get("/v1/alarms", headers=dash.member)
    await client.get("/v1/certs-nowhere")
    r = await client.get("/metrics")
    assert r.status == 200 and r.content_type == "text/plain"
    fams = {f.name: f for f in text_string_to_metric_families(await r.text())}
    assert "ecert_raft_term" in fams and "ecert_http_request_duration_seconds" in fams
    statuses = {(s.labels["route"], s.labels["status"]) for s in fams["ecert_http_request_duration_seconds"].samples
                if s.name.endswith("_count")}
    assert ("/v1/alarms", "200") in statuses and ("unmatched", "404") in statuses


def test_sampling_exports_the_memory_the_source_accounts_for(tmp_path):
    source = FakeSource()
    source.memory = lambda: {"state_root_cache": 7 << 20, "raft_log_cache": 4096}  # type: ignore[attr-defined]
    metrics = NodeMetrics(process=False)
    Dashboard(source, metrics, data_dir=tmp_path, probe_peers=False, clock=Clock()).sample()
    fams = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    got = {s.labels["part"]: s.value for s in fams["ecert_memory_bytes"].samples}
    assert got == {"state_root_cache": 7 << 20, "raft_log_cache": 4096}


async def test_alarms_route_reports_unreachable_peer_after_grace(served):
    client, source, dash = served
    clock = dash.clock
    dash.sample()
    clock.t += 999
    dash.sample()
    assert (await (await client.get("/v1/alarms", headers=dash.member)).json())["alarms"] == []
    clock.t += 1
    dash.sample()
    body = await (await client.get("/v1/alarms", headers=dash.member)).json()
    assert [(a["name"], a["subject"]) for a in body["alarms"]] == [("peer_unreachable", "n3")]
    assert body["alarms"][0]["since_ms"] == clock.t
    # The node's own alarms (NodeSource.alarms) are shown too, the apply error from the source as well.
    source.node_alarms = [{"name": "snapshot_failed", "severity": "warning", "subject": "n1", "message": "x"}]
    source.apply_error = "invariant: leaves 90 != root 100"
    dash.sample()
    names = {a["name"] for a in (await (await client.get("/v1/alarms", headers=dash.member)).json())["alarms"]}
    assert names == {"peer_unreachable", "snapshot_failed", "apply_halted"}
    # Alarms are for member orgs: anonymous is 401 (CONTRACT §6, "every other route").
    r = await client.get("/v1/alarms")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"


async def test_alarm_transitions_are_logged(served, caplog):
    _, source, dash = served
    dash.sample()
    with caplog.at_level(logging.INFO, logger="node.http.alarms"):
        source.apply_error = "apply failed at height 4"
        dash.sample()
        source.apply_error = None
        dash.sample()
    msgs = [r.getMessage() for r in caplog.records if r.name == "node.http.alarms"]
    assert any(m.startswith("alarm raised: apply_halted") and "height 4" in m for m in msgs)
    assert any(m.startswith("alarm cleared: apply_halted") for m in msgs)


async def test_rejection_burst_from_the_rejected_counter(served):
    _, _, dash = served
    dash.metrics.count_tx("rejected", "bad_signature", n=5)
    dash.sample()  # what was rejected before the dashboard started is not a burst
    assert "tx_rejection_burst" not in {a["name"] for a in dash.sample()["alarms"]}
    dash.metrics.count_tx("rejected", "bad_signature")
    dash.metrics.count_tx("rejected", "not_holder")
    assert "tx_rejection_burst" in {a["name"] for a in dash.sample()["alarms"]}


async def test_cluster_view_rows(served):
    client, _, _ = served
    body = await (await client.get("/v1/cluster/view")).json()
    rows = {r["id"]: r for r in body["nodes"]}
    assert body["leader_id"] == "n1" and set(rows) == {"n1", "n2", "n3"}
    assert rows["n1"]["is_leader"] and rows["n1"]["self"] and rows["n1"]["health"] == "ok"
    assert rows["n2"]["health"] == "ok" and rows["n2"]["last_contact_ms"] == 40
    assert rows["n3"]["health"] == "down" and rows["n3"]["lag"] == 9


class Stream:
    """One open /v1/events stream, read event by event."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.buf = b""

    async def next(self, kind: str | None = None, timeout_s: float = 5.0) -> tuple[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                while b"\n\n" in self.buf:
                    chunk, self.buf = self.buf.split(b"\n\n", 1)
                    lines = dict(line.split(": ", 1) for line in chunk.decode().splitlines() if ": " in line)
                    if "event" in lines and (kind is None or lines["event"] == kind):
                        return lines["event"], json.loads(lines["data"])
                self.buf += await self.resp.content.readany()

    def close(self) -> None:
        self.resp.close()


async def test_events_stream_sends_snapshots(served):
    client, _, dash = served
    resp = await client.get("/v1/events", headers=dash.member)
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    stream = Stream(resp)
    events = [(await stream.next("snapshot"))[1] for _ in range(2)]
    stream.close()
    assert events[0]["node"] == "n1" and events[0]["status"]["role"] == "leader"
    assert {r["id"] for r in events[0]["cluster"]} == {"n1", "n2", "n3"}
    assert "alarms" in events[0]


async def test_anonymous_events_carry_public_data_only(served, monkeypatch):
    client, source, dash = served
    monkeypatch.setattr(dash_mod, "sse_interval_s", 0.05)
    dash.sample()
    stream = Stream(await client.get("/v1/events"))
    _, snap = await stream.next("snapshot")
    assert set(snap) == {"time_ms", "node", "status", "cluster"}  # what /v1/status and /v1/cluster show
    source.st["height"] = 4
    source.txs[4] = [{"tx_id": "04" * 32, "status": "committed", "type": "ecert.issue", "result": {"certs": [ROOT]}}]
    dash.sample()
    _, block = await stream.next("block")
    stream.close()
    assert block == {"height": 4, "time": 1_700_000_000_004, "proposer": "n1", "hash": f"{4:064x}",
                     "tx_count": 1, "tx_ids": ["04" * 32]}  # the header and tx ids of /v1/blocks/{h}: no outcome


async def test_events_stream_limit(served, monkeypatch):
    client, _, _dash = served
    monkeypatch.setattr(dash_mod, "sse_clients_max", 0)
    r = await client.get("/v1/events")
    assert r.status == 429 and (await r.json())["error"]["code"] == "too_many_streams"


async def test_blocks_paging_and_block_txs(served):
    client, _, dash = served
    page = await (await client.get("/v1/blocks?limit=2")).json()
    assert [b["height"] for b in page["blocks"]] == [3, 2]
    assert [b["tx_count"] for b in page["blocks"]] == [1, 1] and not any("tx_ids" in b for b in page["blocks"])
    older = await (await client.get("/v1/blocks?before=2&limit=2&tx_ids=true")).json()
    assert [(b["height"], b["tx_ids"]) for b in older["blocks"]] == [(1, ["01" * 32])]
    # The fallback reads its parameters with the API's definitions (node/http/openapi.py): the same refusals.
    for bad in ("limit=0", "limit=1000", "before=x", "before=-1", "tx_ids=1", "tx_ids=True"):
        r = await client.get(f"/v1/blocks?{bad}")
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_parameter"
    txs = await (await client.get("/v1/blocks/3/txs", headers=dash.regulator)).json()
    assert txs["txs"][0]["error_code"] == "not_holder"
    assert (await client.get("/v1/blocks/9/txs", headers=dash.regulator)).status == 404
    assert (await client.get("/v1/blocks/x/txs", headers=dash.regulator)).status == 400
    # Without the state to decide on, another org sees only what anyone learns of a tx; anonymous nothing.
    other = await (await client.get("/v1/blocks/3/txs", headers=dash.member)).json()
    assert other["txs"] == [{"tx_id": "03" * 32, "status": "rejected"}]
    assert (await client.get("/v1/blocks/3/txs")).status == 401
    # What the dashboard's public block view lists instead (app.js publicBlockTxs): the ids, anonymously.
    public = await client.get("/v1/blocks?before=4&limit=1&tx_ids=true")
    assert public.status == 200 and (await public.json())["blocks"] == [{**page["blocks"][0], "tx_ids": ["03" * 32]}]


async def test_latest_cert_is_newest_created(served):
    client, source, dash = served

    async def latest() -> Any:
        return await (await client.get("/v1/dashboard/latest-cert", headers=dash.regulator)).json()

    body = await latest()
    assert body == {"cert_id": KID2, "height": 3}  # block 3's tx was rejected: its certs do not count
    # New blocks without certificates keep the last one found; a new certificate replaces it.
    source.st["height"] = 5
    assert (await latest())["cert_id"] == KID2
    source.txs[6] = [{"tx_id": "06" * 32, "status": "committed", "result": {"certs": [ROOT[:-2] + "ff"]}}]
    source.st["height"] = 6
    assert (await latest())["cert_id"] == ROOT[:-2] + "ff"
    source.txs = {}
    source.st["height"] = 1  # the chain restarted below what was seen: forget
    assert (await latest())["cert_id"] is None
    # Without the state to decide on, only the regulator sees certificates here; anonymous is 401.
    source.st["height"] = 6
    source.txs[6] = [{"tx_id": "06" * 32, "status": "committed", "result": {"certs": [ROOT]}}]
    other = await (await client.get("/v1/dashboard/latest-cert", headers=dash.member)).json()
    assert other == {"cert_id": None, "height": 6}
    assert (await client.get("/v1/dashboard/latest-cert")).status == 401


async def test_node_routes_win_over_dashboard_fallbacks():
    app = web.Application()

    async def node_blocks(request: web.Request) -> web.Response:
        return web.json_response({"blocks": "the node's"})

    app.router.add_get("/v1/blocks", node_blocks)
    setup_dashboard(app, FakeSource(), NodeMetrics(process=False), probe_peers=False)
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/v1/blocks")).json())["blocks"] == "the node's"
        assert (await client.get("/v1/cluster/view")).status == 200
        assert app[DASHBOARD_KEY].snapshot  # sampler ran (or /v1/cluster/view sampled)
        # Mounted without the node's identity gate, every request is anonymous: member routes stay closed.
        assert (await client.get("/v1/alarms")).status == 401


async def test_sampler_survives_a_failing_source():
    class Broken(FakeSource):
        def peers(self):
            raise RuntimeError("transport gone")

    app = web.Application()
    dash = setup_dashboard(app, Broken(), NodeMetrics(process=False), probe_peers=False)
    async with TestClient(TestServer(app)) as client:
        body = await (await client.get("/v1/cluster/view")).json()
        assert [r["id"] for r in body["nodes"]] == ["n1"]
        assert dash.snapshot["status"]["node_id"] == "n1"


def test_peers_judged_by_http_probe_on_followers_and_by_both_on_the_leader():
    source = FakeSource()
    source.peer_list = [{"id": "n2", "org": "geely", "http": "127.0.0.1:1", "reachable": False, "lag": 0},
                        {"id": "n3", "org": "tier1", "http": "127.0.0.1:2", "reachable": True, "lag": 0}]
    clock = Clock()
    dash = dash_mod.Dashboard(source, NodeMetrics(process=False), probe_peers=True, clock=clock,
                              rules=AlarmRules(peer_unreachable_ms=1000))
    dash.peer_status = {"n2": {"role": "follower", "term": 2, "applied_index": 12}}  # n2 answers HTTP, n3 not
    dash.peer_seen_ms = {"n2": clock.t}

    def down_after_grace() -> set[str]:
        dash.sample()
        clock.t += 1000
        return {a["subject"] for a in dash.sample()["alarms"] if a["name"] == "peer_unreachable"}

    # On the leader: n2 is silent in Raft, n3 refuses the probe: both count as unreachable.
    assert down_after_grace() == {"n2", "n3"}
    # On a follower, Raft silence between followers is normal: only the probe counts.
    source.st.update(role="follower", leader_id="n9")
    dash.tracker = dash_mod.AlarmTracker("n1", dash.rules, started_ms=clock.t)
    assert down_after_grace() == {"n3"}
    rows = {r["id"]: r for r in dash.snapshot["cluster"]}
    assert rows["n2"]["health"] == "ok" and rows["n2"]["term"] == 2 and rows["n3"]["health"] == "down"


# --- who sees what, over a real chain ------------------------------------------------------------------------------

@pytest.fixture
async def chained(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Chain, Dashboard, AuthGate, dict[str, str]]]:
    chain = Chain(tmp_path / "state")
    ids = grow(chain)
    app, gate = gated_app(chain.store.view())
    dash = setup_dashboard(app, chain, NodeMetrics(process=False), probe_peers=False, sample_loop=False,
                           data_dir=tmp_path / "data", login_base_url="http://127.0.0.1:8799")
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, chain, dash, gate, ids
    finally:
        await client.close()
        chain.store.close()


async def test_events_by_party(chained, monkeypatch):
    """An anonymous subscriber never receives an outcome; a party receives its own, and nothing else."""
    client, chain, dash, gate, ids = chained
    monkeypatch.setattr(dash_mod, "sse_interval_s", 0.05)
    dash.sample()
    streams = {who: Stream(await client.get("/v1/events", headers=bearer(gate, who) if who else None))
               for who in ("", "tier1", "tier2", "tier3", "pbc")}
    for s in streams.values():
        await s.next("snapshot")
    chain.block(("split_a", "tier2", "ecert.split", {"cert_id": ids["a"], "amounts": [100, 500]}),
                ("anchor_3", "tier3", "trade.anchor", {"doc_id": "INV-3", "kind": "invoice", "doc_hash": "ee" * 32,
                                                       "counterparty": "byd", "amount": 7}))
    dash.sample()
    got = {}
    for who, s in streams.items():
        _, event = await s.next("block")
        got[who] = {o["tx_id"]: o for o in event.get("outcomes", [])} if "outcomes" in event else None
        assert event["height"] == 6 and event["tx_ids"] == [chain.tx_ids["split_a"], chain.tx_ids["anchor_3"]]
        s.close()
    split, anchor = chain.tx_ids["split_a"], chain.tx_ids["anchor_3"]
    assert got[""] is None  # anonymous: the header and tx ids only, no outcome key at all
    assert set(got["tier2"]) == {split}  # its own split
    assert set(got["tier1"]) == {split}  # it holds the split certificate's ancestor: above it on the path
    assert set(got["tier3"]) == {anchor}  # its own document; tier2's split is none of its business
    assert set(got["pbc"]) == {split, anchor}  # the regulator reads everything
    assert got["tier2"][split]["result"]["certs"] and got["tier2"][split]["height"] == 6


async def test_a_stream_reconnecting_gets_the_blocks_it_missed(chained, monkeypatch):
    client, chain, dash, gate, ids = chained
    monkeypatch.setattr(dash_mod, "sse_interval_s", 0.05)
    dash.sample()
    first = Stream(await client.get("/v1/events", headers=bearer(gate, "tier2")))
    await first.next("snapshot")
    dash.sample()
    first.close()  # the browser dropped; the block comes while it is away
    chain.block(("split_a", "tier2", "ecert.split", {"cert_id": ids["a"], "amounts": [100, 500]}))
    dash.sample()
    stream = Stream(await client.get("/v1/events", headers={**bearer(gate, "tier2"), "Last-Event-ID": "5"}))
    _, event = await stream.next("block")
    stream.close()
    assert event["height"] == 6 and [o["tx_id"] for o in event["outcomes"]] == [chain.tx_ids["split_a"]]


async def test_nobody_watching_costs_no_block_reads(chained):
    _, chain, dash, _, ids = chained
    dash.sample()
    chain.block(("split_a", "tier2", "ecert.split", {"cert_id": ids["a"], "amounts": [100, 500]}))
    dash.sample()
    assert dash.fed_height == 6 and not dash.feed


async def test_block_txs_by_party(chained):
    client, chain, _, gate, ids = chained

    async def rows(who: str, height: int = 5) -> list[dict[str, Any]]:
        r = await client.get(f"/v1/blocks/{height}/txs", headers=bearer(gate, who))
        assert r.status == 200
        return (await r.json())["txs"]

    whole = await rows("tier2")
    assert whole[0]["tx_id"] == chain.tx_ids["transfer"] and whole[0]["result"]["certs"] == [ids["a"], ids["b"]]
    assert await rows("pbc") == whole
    # byd and tier3 are not party to tier1's lineage: only what anyone learns of the tx.
    assert await rows("tier3") == [{"tx_id": chain.tx_ids["transfer"], "status": "committed", "height": 5}]
    assert (await rows("byd"))[0].keys() == {"tx_id", "status", "height"}
    assert (await client.get("/v1/blocks/5/txs")).status == 401


async def test_latest_cert_is_the_newest_the_reader_may_see(chained):
    client, _, _, gate, ids = chained

    async def latest(who: str) -> Any:
        return (await (await client.get("/v1/dashboard/latest-cert", headers=bearer(gate, who))).json())["cert_id"]

    assert await latest("tier2") == ids["a"]  # its own; the transfer's remainder b is tier1's business
    assert await latest("tier1") == ids["b"]  # both children are below the root it held
    assert await latest("geely") == ids["b"]  # the debtor sees its whole lineage
    assert await latest("tier3") == ids["x"]  # nothing of tier1's lineage: its own, two blocks back
    assert await latest("pbc") == ids["b"]
    assert (await client.get("/v1/dashboard/latest-cert")).status == 401


async def test_supervision_is_the_regulators(chained):
    client, _, _, gate, _ = chained
    r = await client.get("/v1/supervision", headers=bearer(gate, "pbc"))
    assert r.status == 200
    body = await r.json()
    assert body["height"] == 5 and body["complete"] is True
    assert {row["core"]: row["outstanding"] for row in body["outstanding_by_core"]} == {"byd": 500, "geely": 1000}
    assert body["certs_by_depth"] == [{"depth": 0, "count": 1, "amount": 500},  # x
                                      {"depth": 1, "count": 2, "amount": 1000}]  # a (tier2) and b (tier1)
    for who, status in (("tier1", 403), ("boc", 403), ("geely", 403)):
        refused = await client.get("/v1/supervision", headers=bearer(gate, who))
        assert refused.status == status and (await refused.json())["error"]["code"] == "forbidden"
    assert (await client.get("/v1/supervision")).status == 401


async def test_whoami(chained):
    client, _, _, gate, _ = chained
    assert await (await client.get("/v1/dashboard/whoami")).json() == {
        "org_id": None, "role": None, "open_reads": False, "node_id": "n1"}
    assert await (await client.get("/v1/dashboard/whoami", headers=bearer(gate, "pbc"))).json() == {
        "org_id": "pbc", "role": "regulator", "open_reads": False, "node_id": "n1"}
    # A signed request works as well as a session (the same identity gate).
    header = sign_request(chain_seed("tier2"), CHAIN, "n1", "tier2", "GET", "/v1/dashboard/whoami", b"",
                          gate.clock(), fresh_nonce())
    assert (await (await client.get("/v1/dashboard/whoami", headers={"Authorization": header})).json())[
        "org_id"] == "tier2"
    # A bad header is a 401, never a silent anonymous answer.
    r = await client.get("/v1/dashboard/whoami", headers={"Authorization": "Bearer ecs1~n1~pbc~1~" + "A" * 43})
    assert r.status == 401


def chain_seed(org: str) -> bytes:
    return World().key(org).seed


async def test_login_link_works_once(chained, tmp_path):
    client = chained[0]
    path = tmp_path / "data" / login_mod.LOGIN_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    url = path.read_text().strip()
    assert url.startswith("http://127.0.0.1:8799/login?code=") and len(url.splitlines()) == 1
    login = url.removeprefix("http://127.0.0.1:8799")
    r = await client.get(login, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/"
    SESSION_COOKIE = session_cookie("n1")  # the gated app's node id: one cookie per node
    cookie = r.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    # The cookie reads as the node's own org (tier1), on every GET the page makes.
    jar = {"Cookie": f"{SESSION_COOKIE}={cookie.value}"}
    assert (await (await client.get("/v1/dashboard/whoami", headers=jar)).json())["org_id"] == "tier1"
    assert (await client.get("/v1/dashboard/latest-cert", headers=jar)).status == 200
    # Spent: the same link again is refused, and the file already holds a fresh one.
    again = await client.get(login, allow_redirects=False)
    assert again.status == 401 and "refused" in await again.text() and SESSION_COOKIE not in again.cookies
    fresh = path.read_text().strip()
    assert fresh != url and fresh.startswith("http://127.0.0.1:8799/login?code=")
    for bad in ("/login", "/login?code=nothex", "/login?code=" + "0" * 32):
        assert (await client.get(bad, allow_redirects=False)).status == 401
    # Log out drops the cookie.
    out = await client.post("/logout")
    assert out.status == 204 and out.cookies[SESSION_COOKIE].value == ""


async def test_an_expired_login_link_is_replaced(chained, tmp_path):
    _, _, _, gate, _ = chained
    desk = gate_desk(chained)
    first = desk.url
    assert not desk.renew_if_expired()
    desk.clock = lambda: gate.clock() + LOGIN_LINK_TTL_MS + 1
    assert desk.renew_if_expired()
    assert desk.url != first and (tmp_path / "data" / login_mod.LOGIN_FILE).read_text().strip() == desk.url


def gate_desk(chained: Any) -> login_mod.LoginDesk:
    client = chained[0]
    return client.server.app[login_mod.LOGIN_DESK_KEY]


async def test_the_leaders_alarms_are_fetched_signed_as_the_nodes_org(tmp_path):
    """/v1/alarms is for members, so a follower's dashboard signs its probe of the leader's alarms with the key
    of the org that runs it (keys/<org>.key); without that key it shows only its own alarms."""
    world = World(regulator=True)
    leader_source = FakeSource()
    leader_source.st.update(node_id="n2", leader_id="n2")
    leader_source.node_alarms = [{"name": "snapshot_failed", "severity": "warning", "subject": "n2", "message": "x"}]
    app, _ = gated_app(world.view, node_id="n2")
    setup_dashboard(app, leader_source, NodeMetrics(process=False), probe_peers=False, sample_loop=False)
    async with TestClient(TestServer(app)) as client:
        (tmp_path / "keys").mkdir()
        (tmp_path / "keys" / "tier1.key").write_text(world.key("tier1").seed.hex() + "\n")

        class Config:
            keys_dir = tmp_path / "keys"
            chain_id = CHAIN

        follower = FakeSource()
        follower.st.update(org="tier1", role="follower", leader_id="n2")
        follower.peer_list = [{"id": "n2", "org": "boc", "http": f"127.0.0.1:{client.port}", "reachable": True}]
        follower.config = Config()  # type: ignore[attr-defined]
        signer = dash_mod._org_probe_signer(follower)
        assert signer is not None
        dash = Dashboard(follower, NodeMetrics(process=False), probe_signer=signer, clock=Clock())
        try:
            await dash.probe()
            assert [(a["name"], a["reported_by"]) for a in dash.leader_alarms] == [("snapshot_failed", "n2")]
            # Without the org's key: no signer, and no leader alarms (the probe would be a 401).
            Config.keys_dir = tmp_path / "nowhere"
            assert dash_mod._org_probe_signer(follower) is None
            unsigned = Dashboard(follower, NodeMetrics(process=False), clock=Clock())
            await unsigned.probe()
            assert unsigned.leader_alarms == []
            await unsigned.close()
        finally:
            await dash.close()


# --- how the probe reaches its peers: the cluster file's URL and HTTPS trust ----------------------------------------

def _node_spec(node_id: str, http: str, *, https_cert: Path | None = None, https_ca: Path | None = None) -> Any:
    from node.config import NodeSpec, parse_address

    return NodeSpec(node_id, node_id, parse_address(http, "http"), parse_address("127.0.0.1:1", "raft"), Path("."),
                    https_cert=https_cert, https_key=https_cert, https_ca=https_ca)


def test_peer_urls_come_from_the_cluster_file_else_this_nodes_scheme(tmp_path):
    ca = tmp_path / "n2-ca.pem"

    class Config:
        nodes = (_node_spec("n1", "10.0.0.1:8700", https_cert=tmp_path / "c.pem"),
                 _node_spec("n2", "10.0.0.2:8700", https_cert=tmp_path / "c.pem", https_ca=ca),
                 _node_spec("n3", "[::1]:8700"))

    source = FakeSource()
    source.config = Config()  # type: ignore[attr-defined]
    source.spec = Config.nodes[0]  # type: ignore[attr-defined]
    apis = dash_mod.PeerApis.of_source(source)
    assert apis.scheme == "https" and apis.cas == {"n2": ca}
    # The cluster file's entry wins over the membership's bare address (it says which scheme the node serves).
    assert apis.base({"id": "n2", "http": "10.0.0.2:8700"}) == "https://10.0.0.2:8700"
    assert apis.base({"id": "n3", "http": "[::1]:8700"}) == "http://[::1]:8700"
    # Known only from the membership (added by governance): this node's own scheme.
    assert apis.base({"id": "n9", "http": "10.0.0.9:8700"}) == "https://10.0.0.9:8700"
    assert apis.base({"id": "n9", "http": None}) is None
    assert dash_mod.PeerApis.of_source(FakeSource()).base({"id": "n9", "http": "h:1"}) == "http://h:1"
    # A pinned CA that is not on this host: the error names the file (the probe logs it once and skips).
    with pytest.raises(dash_mod.TlsError, match=r"https_ca of node n2: CA file .*n2-ca\.pem not found"):
        apis.tls("n2", "https://10.0.0.2:8700")
    assert apis.tls("n3", "http://[::1]:8700") is None


def test_plain_http_counts_as_between_hosts_unless_loopback():
    between = dash_mod.plain_between_hosts
    assert between("http://10.0.0.1:8700") and between("http://node1.example:8700") and between("http://[fd00::1]:1")
    assert not any(between(u) for u in ("http://127.0.0.1:1", "http://127.9.9.9:1", "http://[::1]:1",
                                        "http://localhost:1", "https://10.0.0.1:8700"))


@pytest.fixture
def https_pair(tmp_path):
    """A certificate for 127.0.0.1 (node/tls.py, as `ecert keygen --https-host` writes it) and another one."""
    from node.tls import write_self_signed_https_cert

    cert, key = write_self_signed_https_cert(tmp_path / "tls", ["127.0.0.1"])
    other, _ = write_self_signed_https_cert(tmp_path / "other", ["127.0.0.1"])
    return cert, key, other


async def test_the_probe_reads_an_https_peer_verified_by_its_pinned_certificate(tmp_path, https_pair):
    """Status and the signed alarms of an HTTPS leader, verified with the cluster file's https_ca; a peer whose
    certificate is not the pinned one is not read at all (it shows as down)."""
    from node.tls import http_server_context

    cert, key, other = https_pair
    world = World(regulator=True)
    leader_source = FakeSource()
    leader_source.st.update(node_id="n2", leader_id="n2")
    leader_source.node_alarms = [{"name": "snapshot_failed", "severity": "warning", "subject": "n2", "message": "x"}]
    app, _ = gated_app(world.view, node_id="n2")

    async def status(request: web.Request) -> web.Response:  # the node's own route (node/http/api.py)
        return web.json_response(leader_source.status())

    app.router.add_get("/v1/status", status)
    setup_dashboard(app, leader_source, NodeMetrics(process=False), probe_peers=False, sample_loop=False)
    server = TestServer(app)
    await server.start_server(ssl=http_server_context(cert, key))
    try:
        assert server.scheme == "https"
        http = f"127.0.0.1:{server.port}"
        signed: list[str] = []

        def signer(node_id: str, path: str) -> str:
            signed.append(f"{node_id} {path}")
            return sign_request(world.key("tier1").seed, CHAIN, node_id, "tier1", "GET", path, b"",
                                dash_mod.now_ms(), fresh_nonce())

        def follower(ca: Path) -> FakeSource:
            class Config:
                nodes = (_node_spec("n1", "127.0.0.1:1", https_cert=cert, https_ca=cert),
                         _node_spec("n2", http, https_cert=cert, https_ca=ca))

            source = FakeSource()
            source.st.update(org="tier1", role="follower", leader_id="n2")
            # The membership's row has the bare address: the scheme comes from the cluster file.
            source.peer_list = [{"id": "n2", "org": "boc", "http": http, "reachable": True}]
            source.config = Config()  # type: ignore[attr-defined]
            source.spec = Config.nodes[0]  # type: ignore[attr-defined]
            return source

        dash = Dashboard(follower(cert), NodeMetrics(process=False), probe_signer=signer, clock=Clock())
        wrong = Dashboard(follower(other), NodeMetrics(process=False), probe_signer=signer, clock=Clock())
        try:
            await dash.probe()
            assert dash.peer_status["n2"]["node_id"] == "n2"
            assert [(a["name"], a["reported_by"]) for a in dash.leader_alarms] == [("snapshot_failed", "n2")]
            assert signed == ["n2 /v1/alarms"]
            await wrong.probe()
            assert "n2" not in wrong.peer_status and wrong.leader_alarms == []
        finally:
            await dash.close()
            await wrong.close()
    finally:
        await server.close()


async def test_a_plain_http_peer_between_hosts_is_warned_of_once_and_never_sent_a_signed_probe(caplog, capsys):
    """CONTRACT §6: between hosts, signed requests belong on the API's TLS listener. 192.0.2.0/24 is TEST-NET-1:
    nothing answers there, which is all this needs (the public status probe is still tried)."""
    signed: list[str] = []
    source = FakeSource()
    source.st.update(role="follower", leader_id="n2")
    source.peer_list = [{"id": "n2", "org": "geely", "http": "192.0.2.1:8700", "reachable": True},
                        {"id": "n3", "org": "tier1", "http": "127.0.0.1:1", "reachable": True}]
    dash = Dashboard(source, NodeMetrics(process=False), clock=Clock(),
                     probe_signer=lambda node_id, path: signed.append(node_id) or "x")
    caplog.set_level(logging.WARNING, logger="node.http.alarms")
    try:
        await dash.probe()
        await dash.probe()
    finally:
        await dash.close()
    assert signed == []
    warnings = [r for r in caplog.records if r.getMessage() == "dashboard_plain_http"]
    assert len(warnings) == 1 and warnings[0].peers == ["n2"]  # type: ignore[attr-defined]
    err = capsys.readouterr().err
    assert err.count("warning: the client API of n2 (http://192.0.2.1:8700) is plain HTTP between hosts") == 1
    # The same leader on loopback is asked, signed (test_the_leaders_alarms_are_fetched_signed_as_the_nodes_org).
    source.st.update(leader_id="n3")
    again = Dashboard(source, NodeMetrics(process=False), clock=Clock(),
                      probe_signer=lambda node_id, path: signed.append(node_id) or "x")
    try:
        await again.probe()
    finally:
        await again.close()
    assert signed == ["n3"]
