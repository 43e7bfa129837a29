"""NodeMetrics: the exposition parses, names are conventional, values follow the calls, promtool agrees."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.http.metrics import NodeMetrics


def exercised() -> NodeMetrics:
    m = NodeMetrics()
    m.set_info("n1", "boc", "ecert-local")
    m.set_raft(term=3, role="leader", commit=10, applied=9, leader_changes=2)
    m.set_peer("n2", match_index=9, lag=1, reachable=True, last_contact_seconds=0.05)
    m.set_peer("n3", match_index=2, lag=8, reachable=False, last_contact_seconds=7.5)
    m.observe_rtt("append", 0.0012)
    m.observe_rtt("heartbeat", 0.0004)
    m.count_snapshot_send("n3")
    m.count_message_dropped("n3", 4)
    m.observe_block(txs=3, size_bytes=1500, apply_seconds=0.002, height=4)
    m.count_tx("committed", n=2)
    m.count_tx("rejected", "signature_invalid")
    m.count_tx("rejected", "cert_not_active")
    m.count_tx("rejected", "cert_not_active")
    m.set_apply_halted(True, "invariant")
    m.observe_fsync(0.0031)
    m.set_db_size("raft", 1 << 20)
    m.set_memory({"state_root_cache": 5 << 20, "raft_leveldb": 123})
    m.set_disk(10 << 30, 100 << 30)
    m.set_connections({"http_open": 12, "http_refused": 1, "peer_handshaking": 0, "peer_refused": 0})
    m.observe_request("/v1/tx", 200, 0.02, "POST")
    m.observe_request("/v1/tx", 429, 0.001, "POST")
    m.set_queue_depth(17)
    m.set_alarms([("peer_unreachable", "n3")])
    return m


def samples(m: NodeMetrics) -> dict[tuple[str, tuple], float]:
    body, _ = m.render()
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_render_parses_and_values_follow_calls():
    _body, content_type = exercised().render()
    assert content_type.startswith("text/plain")
    s = samples(exercised())
    assert s[("ecert_raft_term", ())] == 3
    assert s[("ecert_raft_role", (("role", "leader"),))] == 1
    assert s[("ecert_raft_role", (("role", "follower"),))] == 0
    assert s[("ecert_raft_leader_changes_total", ())] == 2
    assert s[("ecert_raft_peer_lag_entries", (("peer", "n3"),))] == 8
    assert s[("ecert_raft_peer_reachable", (("peer", "n3"),))] == 0
    assert s[("ecert_ledger_height", ())] == 4
    assert s[("ecert_ledger_txs_committed_total", ())] == 2
    assert s[("ecert_ledger_txs_rejected_total", (("code", "cert_not_active"),))] == 2
    assert s[("ecert_ledger_apply_halted", ())] == 1
    assert s[("ecert_ledger_apply_errors_total", (("kind", "invariant"),))] == 1
    assert s[("ecert_storage_fsync_seconds_count", ())] == 1
    assert s[("ecert_http_throttled_requests_total", (("route", "/v1/tx"),))] == 1
    assert s[("ecert_http_request_duration_seconds_count",
              (("method", "POST"), ("route", "/v1/tx"), ("status", "200")))] == 1
    assert s[("ecert_api_queue_depth", ())] == 17
    assert s[("ecert_memory_bytes", (("part", "state_root_cache"),))] == 5 << 20
    assert s[("ecert_memory_bytes", (("part", "raft_leveldb"),))] == 123
    assert s[("ecert_alarm_active", (("alarm", "peer_unreachable"), ("subject", "n3")))] == 1


def test_names_are_conventional():
    body, _ = exercised().render()
    fams = list(text_string_to_metric_families(body.decode()))
    ours = [f for f in fams if f.name.startswith("ecert_")]
    assert len(ours) >= 30
    for f in ours:
        assert re.fullmatch(r"ecert_[a-z][a-z0-9_]*", f.name), f.name
        assert f.documentation, f.name
        assert not re.search(r"_(ms|milliseconds|kb|mb|percent)\b", f.name), f.name
        if f.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in f.samples), f.name
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "_bytes", "_txs")), f.name


def test_leader_changes_counter_never_goes_backwards_and_sampling_counts_changes():
    m = NodeMetrics(process=False)
    m.set_raft(1, "follower", 0, 0, leader_changes=5)
    m.set_raft(1, "follower", 0, 0, leader_changes=3)  # a restarted count must not decrease the counter
    assert samples(m)[("ecert_raft_leader_changes_total", ())] == 5
    m2 = NodeMetrics(process=False)
    for leader in ["n1", None, "n1", "n2", "n2", "n3"]:
        m2.update_from_status({"term": 2, "role": "follower", "leader_id": leader, "commit_index": 4,
                               "applied_index": 4, "height": 3})
    s = samples(m2)
    assert s[("ecert_raft_leader_changes_total", ())] == 2
    assert s[("ecert_ledger_height", ())] == 3


def test_alarms_drop_to_zero_when_cleared():
    m = NodeMetrics(process=False)
    m.set_alarms([("no_leader", "n1")])
    m.set_alarms([])
    assert samples(m)[("ecert_alarm_active", (("alarm", "no_leader"), ("subject", "n1")))] == 0


def test_peers_from_source_accept_age_or_wall_clock_contact():
    m = NodeMetrics(process=False)
    now = 1_700_000_000_000
    m.update_from_peers([{"id": "n2", "match_index": 7, "lag": 0, "reachable": True, "last_contact_ms": 250},
                         {"id": "n3", "reachable": False, "last_contact_ms": now - 4000},
                         {"id": 5}], now_ms=now)
    s = samples(m)
    assert s[("ecert_raft_peer_last_contact_seconds", (("peer", "n2"),))] == 0.25
    assert s[("ecert_raft_peer_last_contact_seconds", (("peer", "n3"),))] == 4.0
    assert s[("ecert_raft_peer_match_index", (("peer", "n2"),))] == 7


def test_two_nodes_in_one_process_do_not_collide():
    a, b = NodeMetrics(), NodeMetrics()
    a.set_queue_depth(1)
    b.set_queue_depth(2)
    assert samples(a)[("ecert_api_queue_depth", ())] == 1


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`); .ci should apt-get install it")
def test_promtool_check_metrics_is_clean():
    body, _ = exercised().render()
    proc = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert proc.returncode == 0 and not proc.stdout.strip(), (proc.stdout + proc.stderr).decode()


def test_transport_drop_totals_advance_the_counter_and_queue_depth_follows_status():
    m = NodeMetrics(process=False)
    m.update_from_peers([{"id": "n2", "dropped": 3}])
    m.update_from_peers([{"id": "n2", "dropped": 7}])
    m.update_from_peers([{"id": "n2", "dropped": 2}])  # a restarted transport count never lowers the counter
    m.update_from_status({"queue": 42})
    s = samples(m)
    assert s[("ecert_raft_messages_dropped_total", (("peer", "n2"),))] == 7
    assert s[("ecert_api_queue_depth", ())] == 42
    assert m.rejected_total() == 0
    m.count_tx("rejected", "a")
    m.count_tx("rejected", "b", n=2)
    assert m.rejected_total() == 3


def test_connection_counts_set_gauges_and_refusals_advance_counters_by_what_they_grew():
    m = NodeMetrics()
    m.set_connections({"http_open": 7, "http_refused": 3, "peer_handshaking": 2, "peer_refused": 0})
    m.set_connections({"http_open": 5, "http_refused": 3, "peer_handshaking": 0, "peer_refused": 4})
    m.set_connections({"http_open": 5, "http_refused": 5, "peer_handshaking": 0, "peer_refused": 4})
    s = samples(m)
    assert s[("ecert_connections_open", (("kind", "http"),))] == 5
    assert s[("ecert_connections_open", (("kind", "peer_handshake"),))] == 0
    assert s[("ecert_connections_refused_total", (("kind", "http"),))] == 5
    assert s[("ecert_connections_refused_total", (("kind", "peer_handshake"),))] == 4
