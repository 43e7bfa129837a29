"""The alarm rules of issue 7, one situation per test: pure data in, alarms out."""

from __future__ import annotations

import pytest

from consensus.invariant import InvariantViolation
from node.http.alarms import (
    APPLY_HALTED,
    CRITICAL,
    DISK_NEARLY_FULL,
    FOLLOWER_LAGGING,
    LEADER_FLAPPING,
    NO_LEADER,
    PEER_UNREACHABLE,
    TX_REJECTION_BURST,
    WARNING,
    AlarmInput,
    AlarmRules,
    AlarmTracker,
    PeerInput,
    evaluate,
)

RULES = AlarmRules(election_timeout_ms=500, no_leader_election_timeouts=4, peer_unreachable_ms=2000,
                   follower_lag_entries_max=100, leader_changes_max=3, leader_changes_window_ms=60_000,
                   rejected_burst_max=10, rejected_window_ms=10_000)
NOW = 1_700_000_000_000


def healthy(**changes) -> AlarmInput:
    base = dict(now_ms=NOW, node_id="n1", role="leader", leader_id="n1",
                peers=(PeerInput("n2", True, None, 0), PeerInput("n3", True, None, 5)),
                disk_free_bytes=50 << 30, disk_total_bytes=100 << 30)
    base.update(changes)
    return AlarmInput(**base)


def names(alarms):
    return [(a.name, a.subject) for a in alarms]


def test_healthy_cluster_raises_nothing():
    assert evaluate(healthy(), RULES) == []


def test_no_leader_only_after_n_election_timeouts():
    at_limit = healthy(role="follower", leader_id=None, leaderless_since_ms=NOW - 2000)
    assert evaluate(at_limit, RULES) == []
    past = healthy(role="candidate", leader_id=None, leaderless_since_ms=NOW - 2001)
    [alarm] = evaluate(past, RULES)
    assert (alarm.name, alarm.subject, alarm.severity) == (NO_LEADER, "n1", CRITICAL)
    assert "2001 ms" in alarm.message


def test_peer_unreachable_after_grace_period():
    peers = (PeerInput("n2", False, NOW - 1999), PeerInput("n3", False, NOW - 2000))
    assert names(evaluate(healthy(peers=peers), RULES)) == [(PEER_UNREACHABLE, "n3")]


def test_follower_lagging_only_seen_by_leader():
    peers = (PeerInput("n2", True, None, 100), PeerInput("n3", True, None, 101))
    assert names(evaluate(healthy(peers=peers), RULES)) == [(FOLLOWER_LAGGING, "n3")]
    assert evaluate(healthy(peers=peers, role="follower", leader_id="n2"), RULES) == []


def test_unreachable_peer_is_not_also_reported_lagging():
    peers = (PeerInput("n2", False, NOW - 5000, 10_000),)
    assert names(evaluate(healthy(peers=peers), RULES)) == [(PEER_UNREACHABLE, "n2")]


def test_leader_flapping_counts_changes_inside_window_only():
    old = tuple(NOW - 61_000 - i for i in range(10))
    assert evaluate(healthy(leader_change_times_ms=(*old, NOW - 1, NOW - 2, NOW - 3)), RULES) == []
    [alarm] = evaluate(healthy(leader_change_times_ms=(*old, NOW - 1, NOW - 2, NOW - 3, NOW - 4)), RULES)
    assert (alarm.name, alarm.subject, alarm.severity) == (LEADER_FLAPPING, "cluster", WARNING)


def test_apply_halted_says_why():
    [alarm] = evaluate(healthy(apply_error="invariant: live leaves 90 != root 100"), RULES)
    assert alarm.name == APPLY_HALTED and alarm.severity == CRITICAL
    assert "live leaves 90 != root 100" in alarm.message


@pytest.mark.parametrize(("free", "total", "expected"), [
    (50 << 30, 100 << 30, None),
    (9 << 30, 100 << 30, WARNING),          # below 10 %
    (2 << 30, 100 << 30, CRITICAL),         # below 3 %
    (100 << 20, 200 << 20, WARNING),        # 50 % free but under the 256 MiB floor
    (None, None, None),                     # unknown: no alarm
])
def test_disk_nearly_full(free, total, expected):
    alarms = evaluate(healthy(disk_free_bytes=free, disk_total_bytes=total), RULES)
    assert [a.severity for a in alarms if a.name == DISK_NEARLY_FULL] == ([expected] if expected else [])


def test_rejection_burst_within_window():
    old = ((NOW - 10_000, 100),)  # just outside the window
    assert evaluate(healthy(rejected_txs=(*old, (NOW - 5, 10))), RULES) == []
    [alarm] = evaluate(healthy(rejected_txs=(*old, (NOW - 5, 6), (NOW, 5))), RULES)
    assert alarm.name == TX_REJECTION_BURST and "11 txs rejected" in alarm.message


def test_rules_are_validated():
    with pytest.raises(InvariantViolation):
        AlarmRules(election_timeout_ms=0)
    with pytest.raises(InvariantViolation):
        AlarmRules(rejected_burst_max=-1)


# --- tracker ----------------------------------------------------------------------------------------------------

def status(leader, role="follower"):
    return {"node_id": "n1", "role": role, "leader_id": leader, "term": 1}


def test_tracker_no_leader_clock_starts_at_start_and_resets_on_leader():
    t = AlarmTracker("n1", RULES, started_ms=0)
    assert evaluate(t.sample(2000, status(None), []), RULES) == []
    assert names(evaluate(t.sample(2001, status(None), []), RULES)) == [(NO_LEADER, "n1")]
    assert evaluate(t.sample(2002, status("n2"), []), RULES) == []
    # Losing the leader again restarts the clock from that moment.
    assert evaluate(t.sample(5000, status(None), []), RULES) == []
    assert names(evaluate(t.sample(7001, status(None), []), RULES)) == [(NO_LEADER, "n1")]


def test_tracker_peer_outage_and_recovery():
    t = AlarmTracker("n1", RULES, started_ms=0)
    down = [{"id": "n2", "reachable": False}, {"id": "n1", "reachable": False}]  # self is ignored
    assert evaluate(t.sample(10_000, status("n1", "leader"), down), RULES) == []
    assert names(evaluate(t.sample(12_000, status("n1", "leader"), down), RULES)) == [(PEER_UNREACHABLE, "n2")]
    up = [{"id": "n2", "reachable": True, "lag": 0}]
    assert evaluate(t.sample(12_500, status("n1", "leader"), up), RULES) == []


def test_tracker_counts_leader_changes_and_rejections():
    t = AlarmTracker("n1", RULES, started_ms=0)
    for i, leader in enumerate(["n1", "n2", "n3", "n1", "n2"]):
        snap = t.sample(1000 * (i + 1), status(leader), [])
    assert snap.leader_change_times_ms == (2000, 3000, 4000, 5000)
    assert names(evaluate(snap, RULES)) == [(LEADER_FLAPPING, "cluster")]
    t.note_rejected(6000, 11)
    assert (TX_REJECTION_BURST, "n1") in names(evaluate(t.sample(6000, status("n2"), []), RULES))
    assert (TX_REJECTION_BURST, "n1") not in names(evaluate(t.sample(16_001, status("n2"), []), RULES))


def test_tracker_update_keeps_since_and_reports_transitions():
    t = AlarmTracker("n1", RULES, started_ms=0)
    a = evaluate(healthy(apply_error="boom"), RULES)
    active, trans = t.update(100, a)
    assert [x.since_ms for x in active] == [100] and [(x.raised, x.alarm.name) for x in trans] == [(True, APPLY_HALTED)]
    active, trans = t.update(200, a)
    assert [x.since_ms for x in active] == [100] and trans == []
    active, trans = t.update(300, [])
    assert active == [] and [(x.raised, x.alarm.since_ms) for x in trans] == [(False, 100)]
