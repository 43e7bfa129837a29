"""Whole-cluster scenarios on the in-memory network (etcd-io/raft's raft_test.go style)."""

from __future__ import annotations

import pytest

from consensus.errors import NotLeaderError, ProposalDroppedError
from consensus.membership import ConfChange, ConfChangeType
from consensus.messages import MessageType, Snapshot, SnapshotMeta
from consensus.progress import ProgressState
from consensus.ready import Role
from tests.consensus.conftest import make_storage
from tests.consensus.harness import Network

A, B, C, D, E = "a", "b", "c", "d", "e"


def tick_until_leader(net: Network, rounds: int = 100) -> str:
    for _ in range(rounds):
        net.tick_all()
        leaders = net.leaders()
        if len(leaders) == 1 and all(n.core.leader_id == leaders[0] for n in net.nodes.values()
                                     if (n.core.id, leaders[0]) not in net.dropped):
            return leaders[0]
    raise AssertionError("no leader")


def assert_logs_agree(net: Network, ids: list[str]) -> None:
    data = [net.applied_data(nid) for nid in ids]
    assert all(d == data[0] for d in data), data


@pytest.mark.parametrize(("n", "seed"), [(1, 1), (3, 1), (3, 2), (5, 3), (5, 4)])
def test_initial_election_by_timeout(n: int, seed: int) -> None:
    ids = [f"n{i}" for i in range(n)]
    net = Network(ids, seed=seed)
    leader = tick_until_leader(net)
    assert net.leaders() == [leader]
    assert len({net.core(x).term for x in ids}) == 1


def test_single_node_commits_immediately() -> None:
    net = Network([A])
    net.elect(A)
    index = net.propose(A, b"solo")
    assert net.core(A).commit_index == index and net.applied_data(A) == [b"solo"]


def test_reelection_after_leader_is_isolated() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.isolate(A)
    for _ in range(40):
        net.tick_all()
        if any(net.core(x).role is Role.LEADER for x in (B, C)):
            break
    new = next(x for x in (B, C) if net.core(x).role is Role.LEADER)
    assert net.core(new).term == 2
    # Within two election timeouts the old leader notices it lost its quorum (check-quorum) and steps down.
    net.tick_all(20)
    assert net.core(A).role is not Role.LEADER and net.core(A).term == 1  # pre-vote: no term bump


def test_no_agreement_without_a_majority() -> None:
    net = Network([A, B, C, D, E])
    net.elect(A)
    net.partition([A, B], [C, D, E])
    index = net.core(A).propose(b"lonely")
    net.deliver()
    assert net.core(A).commit_index < index
    assert b"lonely" not in net.applied_data(A)


def test_concurrent_proposals_are_applied_in_one_order_everywhere() -> None:
    net = Network([A, B, C], max_msg_bytes=64, max_inflight_msgs=3, seed=7)
    net.elect(A)
    for i in range(200):
        net.core(A).propose(b"p%03d" % i)
        if i % 17 == 0:
            net.deliver()
    net.deliver()
    net.tick_all(2)
    assert net.applied_data(A) == [b"p%03d" % i for i in range(200)]
    assert_logs_agree(net, [A, B, C])


def test_stale_leader_rejoins_and_its_uncommitted_entries_are_discarded() -> None:
    net = Network([A, B, C, D, E])
    net.elect(A)
    net.propose(A, b"committed")
    net.partition([A, B], [C, D, E])
    net.core(A).propose(b"stale-1")
    net.core(A).propose(b"stale-2")
    net.deliver()
    net.tick_all(10)  # the leader lease of C, D, E expires
    net.elect(C)
    net.propose(C, b"new")
    net.recover()
    net.tick_all(3)
    assert net.leaders() == [C]
    for nid in (A, B, C, D, E):
        assert net.applied_data(nid) == [b"committed", b"new"]


def test_fast_backup_over_many_conflicting_entries_is_bounded() -> None:
    """A follower with 60 entries of a stale term is brought in line in a handful of appends (term skipping),
    not one per entry."""
    net = Network([A, B, C], pre_vote=False)
    leader_terms = [1] * 5 + [3] * 60
    follower_terms = [1] * 5 + [2] * 70
    net.add_node(A, make_storage([A, B, C], leader_terms, term=3))
    net.add_node(B, make_storage([A, B, C], follower_terms, term=3))
    net.add_node(C, make_storage([A, B, C], leader_terms[:6], term=3))
    net.elect(A)
    net.deliver()
    b_appends = [m for m in net.sent if m.type is MessageType.APPEND and m.to == B]
    assert [net.core(B)._log.term(i) for i in range(1, 67)] == [*leader_terms, 4]
    assert len(b_appends) <= 4, len(b_appends)


def test_flow_control_limits_inflight_appends_and_message_size() -> None:
    max_inflight, max_bytes = 4, 100
    net = Network([A, B, C], max_inflight_msgs=max_inflight, max_msg_bytes=max_bytes)
    net.elect(A)
    sent_before = len(net.sent)
    # Hold B's acknowledgements: the leader may have at most `max_inflight` appends to B outstanding.
    net.msg_filter = lambda m: not (m.from_id == B and m.type is MessageType.APPEND_RESP)
    for i in range(60):
        net.core(A).propose(bytes(30) + b"%02d" % i)
    net.core(A).propose(bytes(250))  # a single entry larger than max_msg_bytes still goes, alone
    net.deliver()
    to_b = [m for m in net.sent[sent_before:] if m.type is MessageType.APPEND and m.to == B and m.entries]
    assert 0 < len(to_b) <= max_inflight
    assert net.core(A).status().progress[B].state is ProgressState.REPLICATE
    net.msg_filter = None
    for _ in range(40):
        net.tick_all()
    appends = [m for m in net.sent if m.type is MessageType.APPEND and m.entries]
    for m in appends:
        size = sum(len(e.data) for e in m.entries)
        assert size <= max_bytes or len(m.entries) == 1
    assert any(len(m.entries) == 1 and len(m.entries[0].data) == 250 for m in appends)
    assert net.applied_data(B) == net.applied_data(A) and len(net.applied_data(B)) == 61


def test_uncommitted_bytes_limit_drops_proposals() -> None:
    net = Network([A, B, C], max_msg_bytes=100, max_uncommitted_bytes=1000)
    net.elect(A)
    net.isolate(A)
    for _ in range(10):
        net.core(A).propose(bytes(100))
    with pytest.raises(ProposalDroppedError):
        net.core(A).propose(bytes(100))


def test_followers_reject_proposals_with_the_leader_hint() -> None:
    net = Network([A, B, C])
    net.elect(A)
    with pytest.raises(NotLeaderError) as exc:
        net.core(B).propose(b"x")
    assert exc.value.leader_id == A


def test_learner_catches_up_never_votes_then_is_promoted() -> None:
    net = Network([A, B, C])
    net.elect(A)
    for i in range(20):
        net.propose(A, b"e%d" % i)
    net.add_node(D, make_storage([A, B, C]))
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, D))
    net.deliver()
    net.tick_all(2)
    assert net.core(D).role is Role.LEARNER and net.core(D).learners == {D}
    assert net.applied_data(D) == net.applied_data(A)
    # A learner never campaigns, and does not count for the quorum: with B and C down, nothing commits.
    net.partition([A, D])
    index = net.core(A).propose(b"needs voters")
    net.deliver()
    assert net.core(A).commit_index < index
    net.core(D).campaign()
    net.tick(D, 100)
    assert net.core(D).role is Role.LEARNER and net.core(D).term == 1
    net.recover()
    net.tick_all(2)
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    net.deliver()
    assert net.core(D).voters == {A, B, C, D} and net.core(D).role is Role.FOLLOWER
    # Now D counts: A + D + one of B/C are a majority of four.
    net.partition([A, B, D])
    index = net.propose(A, b"after promotion")
    assert net.core(D).commit_index >= index


def test_partially_connected_node_does_not_depose_a_healthy_leader() -> None:
    """C cannot reach the leader A but can reach B: pre-vote + check-quorum keep A leading and terms unchanged."""
    net = Network([A, B, C])
    net.elect(A)
    net.cut(A, C)
    for _ in range(200):
        net.tick_all()
    assert net.leaders() == [A]
    assert net.core(A).term == net.core(B).term == 1
    assert net.core(C).term == 1
    net.propose(A, b"still works")
    assert b"still works" in net.applied_data(B)


def test_partially_connected_without_prevote_does_disrupt() -> None:
    """The control for the test above: without pre-vote and check-quorum, C's elections bump the term."""
    net = Network([A, B, C], pre_vote=False, check_quorum=False)
    net.elect(A)
    net.cut(A, C)
    for _ in range(100):
        net.tick_all()
    assert net.core(B).term > 1


def test_snapshot_sent_in_chunks_to_a_follower_too_far_behind() -> None:
    chunk_max = 100
    net = Network([A, B, C], max_snapshot_chunk_bytes=chunk_max)
    net.elect(A)
    net.isolate(C)
    for i in range(30):
        net.propose(A, b"v%d" % i)
    # The application snapshots its state and compacts the log on A (and B).
    state = bytes(range(256)) * 3
    for nid in (A, B):
        core = net.core(nid)
        meta = SnapshotMeta(core.applied_index, core._log.term(core.applied_index) or 0,
                            tuple(sorted(core.voters)), tuple(sorted(core.learners)))
        net.nodes[nid].storage.compact(Snapshot(meta, state))
    snap_index = net.core(A).applied_index
    net.recover()
    for _ in range(5):
        net.tick_all()
    chunks = [m for m in net.sent if m.type is MessageType.SNAPSHOT and m.to == C]
    assert chunks and all(m.chunk is not None and len(m.chunk.data) <= chunk_max for m in chunks)
    assert len({m.chunk.offset for m in chunks if m.chunk}) == -(-len(state) // chunk_max)
    c = net.nodes[C]
    assert c.snapshots_installed == 1 and c.storage.snapshot().data == state
    assert c.storage.snapshot().meta.index == snap_index
    net.propose(A, b"after snapshot")
    assert net.applied_data(C)[-1] == b"after snapshot"
    assert net.core(C).commit_index == net.core(A).commit_index


def test_snapshot_transfer_survives_lost_chunks() -> None:
    net = Network([A, B, C], max_snapshot_chunk_bytes=50, seed=5)
    net.elect(A)
    net.isolate(C)
    for i in range(10):
        net.propose(A, b"v%d" % i)
    core = net.core(A)
    meta = SnapshotMeta(core.applied_index, core.term, tuple(sorted(core.voters)))
    net.nodes[A].storage.compact(Snapshot(meta, bytes(1000)))
    net.recover()
    net.drop(A, C, 0.3)
    net.drop(C, A, 0.3)
    for _ in range(200):
        net.tick_all()
        if net.nodes[C].snapshots_installed:
            break
    assert net.nodes[C].snapshots_installed == 1
    net.recover()
    net.tick_all(3)
    assert net.core(C).commit_index == net.core(A).commit_index


def test_restart_keeps_term_vote_and_log() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.propose(A, b"x")
    before = net.core(B).status()
    net.restart(B)
    after = net.core(B).status()
    assert (after.term, after.vote, after.commit, after.last_index) == (
        before.term, before.vote, before.commit, before.last_index)
    net.tick_all(2)
    assert net.applied_data(B) == [b"x"]


def test_ready_order_hard_state_before_votes() -> None:
    """The vote is in the same Ready as the VOTE_RESP that depends on it, marked must_sync."""
    net = Network([A, B, C], pre_vote=False)
    net.core(A).campaign()
    rd = net.core(A).ready()
    net.core(A).advance(rd)
    for m in rd.messages:
        net.core(m.to).step(m)
    rd_b = net.core(B).ready()
    assert rd_b.hard_state is not None and rd_b.hard_state.vote == A and rd_b.must_sync
    assert [m.type for m in rd_b.messages] == [MessageType.VOTE_RESP]


def test_proposals_between_readies_are_batched_into_one_append_per_follower() -> None:
    net = Network([A, B, C])
    net.elect(A)
    sent_before = len(net.sent)
    for i in range(10):
        net.core(A).propose(b"b%d" % i)
    net.flush()
    appends = [m for m in net.sent[sent_before:] if m.type is MessageType.APPEND]
    assert sorted(m.to for m in appends) == [B, C]
    assert all(len(m.entries) == 10 for m in appends)
    net.deliver()
    assert len(net.applied_data(C)) == 10


def test_restart_replays_committed_conf_changes_after_the_snapshot() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.add_node(D, make_storage([A, B, C]))
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, D))
    net.deliver()
    net.restart(B)
    assert net.core(B).learners == frozenset()  # configuration at the (empty) snapshot
    net.flush()  # the driver re-applies the committed log, including the conf change
    assert net.core(B).learners == {D}
    # After compaction the configuration comes from the snapshot itself.
    core = net.core(C)
    meta = SnapshotMeta(core.applied_index, core.term, tuple(sorted(core.voters)), tuple(sorted(core.learners)))
    net.nodes[C].storage.compact(Snapshot(meta, b"state"))
    net.restart(C)
    assert net.core(C).learners == {D} and net.core(C).applied_index == meta.index


def test_propose_many_appends_all_or_nothing() -> None:
    net = Network([A, B, C], max_msg_bytes=100, max_uncommitted_bytes=300)
    net.elect(A)
    last = net.core(A).propose_many([b"1", b"2", b"3"])
    assert last == 4
    net.deliver()
    assert net.applied_data(C) == [b"1", b"2", b"3"]
    net.isolate(A)
    net.core(A).propose_many([bytes(100)] * 3)
    before = net.core(A).last_index
    with pytest.raises(ProposalDroppedError):
        net.core(A).propose_many([bytes(10)] * 2)
    assert net.core(A).last_index == before


def test_reset_progress_reprobes_a_follower_that_lost_its_log() -> None:
    """A follower restarted with an empty disk rejects appends below the leader's recorded match; those look
    stale to the leader until `reset_progress` (called by the node on reconnection) makes it probe again."""
    net = Network([A, B, C], seed=7)
    leader = tick_until_leader(net)
    follower = next(x for x in (A, B, C) if x != leader)
    for i in range(5):
        net.propose(leader, f"x{i}".encode())
    net.deliver()
    assert net.core(leader).status().progress[follower].match_index == net.core(leader).last_index
    net.queue = [m for m in net.queue if m.to != follower]
    net.add_node(follower, make_storage([A, B, C]))  # wiped: empty log, no vote
    net.core(leader).reset_progress(follower)
    assert net.core(leader).status().progress[follower].match_index == 0
    net.propose(leader, b"after")
    for _ in range(20):
        net.tick_all()
    assert_logs_agree(net, [A, B, C])
    with pytest.raises(NotLeaderError):
        net.core(follower).reset_progress(leader)
