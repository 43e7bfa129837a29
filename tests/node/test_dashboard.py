"""Dashboard routes over a fake NodeSource, through aiohttp's real test server and client."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from node.http import dashboard as dash_mod
from node.http.alarms import AlarmRules
from node.http.dashboard import DASHBOARD_KEY, Dashboard, setup_dashboard
from node.http.metrics import NodeMetrics

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

    def recent_blocks(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        top = self.st["height"] if before is None else before - 1
        return [{"height": h, "time": 1_700_000_000_000 + h, "proposer": "n1", "hash": f"{h:064x}",
                 "tx_ids": [t["tx_id"] for t in self.txs.get(h, [])]}
                for h in range(top, max(0, top - limit), -1)]

    def block_txs(self, height: int) -> list[dict[str, Any]]:
        return self.txs.get(height, [])

    def alarms(self) -> list[dict[str, Any]]:
        return self.node_alarms


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000

    def __call__(self) -> int:
        return self.t


@pytest.fixture
async def served():
    source = FakeSource()
    metrics = NodeMetrics(process=False)
    app = web.Application()
    dash = setup_dashboard(app, source, metrics, probe_peers=False, sample_loop=False, clock=Clock(),
                           rules=AlarmRules(peer_unreachable_ms=1000, rejected_burst_max=1))
    client = TestClient(TestServer(app))
    await client.start_server()
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
    client, _, _dash = served
    await client.get("/v1/alarms")
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
    assert (await (await client.get("/v1/alarms")).json())["alarms"] == []
    clock.t += 1
    dash.sample()
    body = await (await client.get("/v1/alarms")).json()
    assert [(a["name"], a["subject"]) for a in body["alarms"]] == [("peer_unreachable", "n3")]
    assert body["alarms"][0]["since_ms"] == clock.t
    # The node's own alarms (NodeSource.alarms) are shown too, the apply error from the source as well.
    source.node_alarms = [{"name": "snapshot_failed", "severity": "warning", "subject": "n1", "message": "x"}]
    source.apply_error = "invariant: leaves 90 != root 100"
    dash.sample()
    names = {a["name"] for a in (await (await client.get("/v1/alarms")).json())["alarms"]}
    assert names == {"peer_unreachable", "snapshot_failed", "apply_halted"}


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


async def test_events_stream_sends_snapshots(served):
    client, _, _ = served
    resp = await client.get("/v1/events")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    events = []
    buf = b""
    async with asyncio.timeout(5):
        while len(events) < 2:
            buf += await resp.content.readany()
            while b"\n\n" in buf:
                chunk, buf = buf.split(b"\n\n", 1)
                lines = dict(line.split(": ", 1) for line in chunk.decode().splitlines() if ": " in line)
                if lines.get("event") == "snapshot":
                    events.append(json.loads(lines["data"]))
    resp.close()
    assert events[0]["node"] == "n1" and events[0]["status"]["role"] == "leader"
    assert {r["id"] for r in events[0]["cluster"]} == {"n1", "n2", "n3"}
    assert "alarms" in events[0]


async def test_events_stream_limit(served, monkeypatch):
    client, _, _dash = served
    monkeypatch.setattr(dash_mod, "sse_clients_max", 0)
    r = await client.get("/v1/events")
    assert r.status == 429 and (await r.json())["error"]["code"] == "too_many_streams"


async def test_blocks_paging_and_block_txs(served):
    client, _, _ = served
    page = await (await client.get("/v1/blocks?limit=2")).json()
    assert [b["height"] for b in page["blocks"]] == [3, 2]
    older = await (await client.get("/v1/blocks?before=2&limit=2")).json()
    assert [b["height"] for b in older["blocks"]] == [1]
    for bad in ("limit=0", "limit=1000", "before=x", "before=-1"):
        r = await client.get(f"/v1/blocks?{bad}")
        assert r.status == 400 and (await r.json())["error"]["code"] == "bad_query"
    txs = await (await client.get("/v1/blocks/3/txs")).json()
    assert txs["txs"][0]["error_code"] == "not_holder"
    assert (await client.get("/v1/blocks/9/txs")).status == 404
    assert (await client.get("/v1/blocks/x/txs")).status == 400


async def test_latest_cert_is_newest_created(served):
    client, source, _ = served
    body = await (await client.get("/v1/dashboard/latest-cert")).json()
    assert body == {"cert_id": KID2, "height": 3}  # block 3's tx was rejected: its certs do not count
    # New blocks without certificates keep the last one found; a new certificate replaces it.
    source.st["height"] = 5
    assert (await (await client.get("/v1/dashboard/latest-cert")).json())["cert_id"] == KID2
    source.txs[6] = [{"tx_id": "06" * 32, "status": "committed", "result": {"certs": [ROOT[:-2] + "ff"]}}]
    source.st["height"] = 6
    assert (await (await client.get("/v1/dashboard/latest-cert")).json())["cert_id"] == ROOT[:-2] + "ff"
    source.txs = {}
    source.st["height"] = 1  # the chain restarted below what was seen: forget
    assert (await (await client.get("/v1/dashboard/latest-cert")).json())["cert_id"] is None


async def test_node_routes_win_over_dashboard_fallbacks():
    app = web.Application()

    async def node_blocks(request: web.Request) -> web.Response:
        return web.json_response({"blocks": "the node's"})

    app.router.add_get("/v1/blocks", node_blocks)
    setup_dashboard(app, FakeSource(), NodeMetrics(process=False), probe_peers=False)
    async with TestClient(TestServer(app)) as client:
        assert (await (await client.get("/v1/blocks")).json())["blocks"] == "the node's"
        assert (await client.get("/v1/alarms")).status == 200
        assert app[DASHBOARD_KEY].snapshot  # sampler ran (or /v1/alarms sampled)


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
