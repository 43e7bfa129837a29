"""One test per rule of the Raft paper (Ongaro & Ousterhout 2014) and thesis, citing the section
(like etcd-io/raft's raft_paper_test.go)."""

from __future__ import annotations

import pytest

from consensus.errors import ProposalDroppedError
from consensus.membership import ConfChange, ConfChangeType
from consensus.messages import Entry, Message, MessageType, SnapshotChunk, SnapshotMeta
from consensus.raft import TRANSFER_CONTEXT
from consensus.ready import Role
from tests.consensus.conftest import drain, make_core, make_storage, msgs
from tests.consensus.harness import Network

A, B, C = "a", "b", "c"


def vote_resp(frm: str, to: str, term: int, reject: bool = False) -> Message:
    return Message(MessageType.VOTE_RESP, frm, to, term, reject=reject)


def become_leader(core_id: str = A, voters: tuple[str, ...] = (A, B, C), **cfg: int | bool):  # type: ignore[no-untyped-def]
    core = make_core(core_id, voters, pre_vote=False, **cfg)
    core.campaign()
    for v in voters:
        if v != core_id:
            core.step(vote_resp(v, core_id, core.term))
    assert core.role is Role.LEADER
    drain(core)
    return core


# ---------------------------------------------------------------- §5.1 terms


@pytest.mark.parametrize("setup", ["follower", "candidate", "leader"])
def test_5_1_higher_term_makes_any_role_a_follower(setup: str) -> None:
    """§5.1: if a server sees a larger term, it updates its term and reverts to follower."""
    core = become_leader() if setup == "leader" else make_core(A, pre_vote=False)
    if setup == "candidate":
        core.campaign()
    core.step(Message(MessageType.APPEND, B, A, 5, log_term=0, index=0))
    assert (core.term, core.role, core.leader_id) == (5, Role.FOLLOWER, B)


def test_5_1_stale_term_message_is_ignored() -> None:
    """§5.1: a request with a stale term number is rejected (here: not acted upon; the sender learns our term)."""
    core = make_core(A, term=3)
    core.step(Message(MessageType.APPEND, B, A, 2, entries=(Entry(2, 1),)))
    assert core.last_index == 0 and core.term == 3
    resp = msgs(core, MessageType.APPEND_RESP)
    assert resp and resp[0].term == 3


# ---------------------------------------------------------------- §5.2 election


def test_5_2_servers_start_as_followers() -> None:
    core = make_core(A)
    assert core.role is Role.FOLLOWER and core.term == 0 and core.leader_id is None


def test_5_2_follower_times_out_and_campaigns() -> None:
    """§5.2: on election timeout a follower increments its term, votes for itself, asks every other server."""
    core = make_core(A, pre_vote=False, election_ticks=10)
    for _ in range(9):
        core.tick()
    assert core.role is Role.FOLLOWER
    core.tick()
    assert core.role is Role.CANDIDATE and core.term == 1
    rd = drain(core)
    assert rd.hard_state is not None and rd.hard_state.vote == A and rd.must_sync
    assert sorted((m.to, m.type, m.term) for m in rd.messages) == [
        (B, MessageType.VOTE, 1), (C, MessageType.VOTE, 1)]


@pytest.mark.parametrize(("granted", "rejected", "role"), [
    ((B,), (), Role.LEADER),
    ((B, C), (), Role.LEADER),
    ((), (B, C), Role.FOLLOWER),
    ((), (B,), Role.CANDIDATE),
])
def test_5_2_candidate_wins_with_majority_only(granted: tuple[str, ...], rejected: tuple[str, ...],
                                               role: Role) -> None:
    """§5.2: a candidate wins once it has votes from a majority; it gives up once a majority said no."""
    core = make_core(A, pre_vote=False)
    core.campaign()
    for v in granted:
        core.step(vote_resp(v, A, 1))
    for v in rejected:
        core.step(vote_resp(v, A, 1, reject=True))
    assert core.role is role


def test_5_2_one_vote_per_term_first_come_first_served() -> None:
    core = make_core(C)
    core.step(Message(MessageType.VOTE, A, C, 1, index=0, log_term=0))
    core.step(Message(MessageType.VOTE, B, C, 1, index=0, log_term=0))
    core.step(Message(MessageType.VOTE, A, C, 1, index=0, log_term=0))  # a retransmission is granted again
    got = [(m.to, m.reject) for m in msgs(core, MessageType.VOTE_RESP)]
    assert got == [(A, False), (B, True), (A, False)]


def test_5_2_candidate_accepts_leader_of_same_term() -> None:
    """§5.2: a candidate that receives AppendEntries from a leader of its term returns to follower."""
    core = make_core(A, pre_vote=False)
    core.campaign()
    core.step(Message(MessageType.APPEND, B, A, 1, index=0, log_term=0))
    assert core.role is Role.FOLLOWER and core.leader_id == B and core.term == 1


def test_5_2_election_timeout_is_randomized_in_range() -> None:
    """§5.2: timeouts are drawn from [election_ticks, 2*election_ticks)."""
    import random

    from consensus.config import Config
    from consensus.raft import Raft
    from consensus.storage import MemoryStorage

    seen = set()
    for seed in range(60):
        core = Raft(Config(A, election_ticks=10, pre_vote=False), MemoryStorage((A, B, C)),
                        random.Random(seed))
        ticks = 0
        while core.role is Role.FOLLOWER:
            core.tick()
            ticks += 1
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) < 20 and len(seen) > 5


# ---------------------------------------------------------------- §5.3 replication


def test_5_3_leader_replicates_with_prev_index_and_term() -> None:
    core = become_leader()
    core.step(Message(MessageType.APPEND_RESP, B, A, 1, index=1))
    drain(core)
    index = core.propose(b"x")
    out = msgs(core, MessageType.APPEND)
    to_b = next(m for m in out if m.to == B)
    assert (to_b.index, to_b.log_term, [e.data for e in to_b.entries]) == (1, 1, [b"x"])
    assert index == 2


def test_5_3_entry_committed_once_on_a_majority() -> None:
    """§5.3: an entry is committed once the leader has replicated it on a majority; followers learn the commit
    index from later AppendEntries / heartbeats."""
    core = become_leader()
    index = core.propose(b"x")
    drain(core)
    assert core.commit_index == 0
    core.step(Message(MessageType.APPEND_RESP, B, A, 1, index=index))
    assert core.commit_index == index
    rd = drain(core)
    assert [e.data for e in rd.committed_entries] == [b"", b"x"]
    assert all(m.commit == index for m in rd.messages if m.type is MessageType.APPEND)


def test_5_3_follower_rejects_when_prev_entry_does_not_match() -> None:
    core = make_core(B, log_terms=[1, 2])
    core.step(Message(MessageType.APPEND, A, B, 3, index=2, log_term=3, entries=(Entry(3, 3),)))
    (resp,) = msgs(core, MessageType.APPEND_RESP)
    assert resp.reject and resp.index == 2
    assert (resp.reject_hint, resp.hint_term) == (2, 2)  # the last index whose term is <= 3
    assert core.last_index == 2


def test_5_3_follower_deletes_conflicting_suffix_and_appends() -> None:
    core = make_core(B, log_terms=[1, 2, 2])
    core.step(Message(MessageType.APPEND, A, B, 3, index=1, log_term=1, entries=(Entry(3, 2), Entry(3, 3)),
                      commit=3))
    rd = drain(core)
    assert [(e.term, e.index) for e in rd.entries] == [(3, 2), (3, 3)]
    assert [(e.term, e.index) for e in rd.committed_entries] == [(1, 1), (3, 2), (3, 3)]
    assert core._storage.term(3) == 3


def test_5_3_append_is_idempotent() -> None:
    core = make_core(B, log_terms=[1, 1, 1])
    core.step(Message(MessageType.APPEND, A, B, 1, index=0, log_term=0, entries=(Entry(1, 1), Entry(1, 2))))
    rd = drain(core)
    assert rd.entries == () and core.last_index == 3  # a stale, shorter append never truncates


@pytest.mark.parametrize("follower_terms", [
    [1, 1, 1, 4, 4, 5, 5, 6, 6],           # (a) missing entries
    [1, 1, 1, 4],                          # (b)
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],     # (c) extra entries of the leader's prior term
    [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # (d) extra uncommitted entries of another term
    [1, 1, 1, 4, 4, 4, 4],                 # (e)
    [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],     # (f)
])
def test_5_3_figure_7_leader_brings_any_follower_log_in_line(follower_terms: list[int]) -> None:
    """§5.3, Figure 7: whatever the follower's log, AppendEntries' consistency check brings it in line."""
    leader_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    net = Network([A, B, C], pre_vote=False)
    for nid, terms in ((A, leader_terms), (B, follower_terms), (C, [])):
        net.add_node(nid, make_storage([A, B, C], terms, term=7))
    # C (empty log) votes for A; B's vote does not matter.
    net.elect(A)
    a_log = [net.core(A)._log.term(i) for i in range(1, net.core(A).last_index + 1)]
    b_log = [net.core(B)._log.term(i) for i in range(1, net.core(B).last_index + 1)]
    assert a_log == b_log and a_log == [*leader_terms, 8]


# ---------------------------------------------------------------- §5.4.1 election restriction


@pytest.mark.parametrize(("cand_index", "cand_term", "granted"), [
    (2, 2, True), (3, 2, True), (1, 2, False),  # same last term: longer-or-equal wins
    (1, 3, True), (5, 1, False), (3, 1, False),  # last term decides first
])
def test_5_4_1_vote_only_for_up_to_date_log(cand_index: int, cand_term: int, granted: bool) -> None:
    core = make_core(C, log_terms=[1, 2])
    core.step(Message(MessageType.VOTE, A, C, 5, index=cand_index, log_term=cand_term))
    (resp,) = msgs(core, MessageType.VOTE_RESP)
    assert resp.reject is not granted


# ---------------------------------------------------------------- §5.4.2 commit rule (Figure 8)


def test_5_4_2_leader_only_commits_entries_of_its_term_by_counting() -> None:
    """§5.4.2: entries from previous terms are committed only indirectly, through an entry of the current term."""
    core = make_core(A, log_terms=[1, 2], pre_vote=False)
    core.campaign()
    core.step(vote_resp(B, A, 3))
    assert core.role is Role.LEADER
    drain(core)
    # B acks the old-term entry 2 only: a majority holds it, but it is of term 2 (Figure 8 (c)).
    core.step(Message(MessageType.APPEND_RESP, B, A, 3, index=2))
    assert core.commit_index == 0
    # B acks the leader's no-op at index 3 (term 3): now 1..3 commit together.
    core.step(Message(MessageType.APPEND_RESP, B, A, 3, index=3))
    assert core.commit_index == 3


def test_5_4_2_figure_8_scenario_never_loses_a_committed_entry() -> None:
    """Figure 8 end to end: S1 replicates an old-term entry to a majority but does not commit it; S5 may then
    overwrite it; once S1 commits an entry of its own term, no one can."""
    ids = ["s1", "s2", "s3", "s4", "s5"]
    net = Network(ids, pre_vote=False, check_quorum=False)
    net.elect("s1")
    # (a) s1 (term 1) replicates entry 2 only to s2.
    net.partition(["s1", "s2"])
    net.propose("s1", b"e2-t1")
    # (b) s5 becomes leader of term 2 with s3, s4 (and itself) and takes an entry only locally.
    net.partition(["s3", "s4", "s5"])
    net.msg_filter = lambda m: m.from_id != "s5" or m.type is MessageType.VOTE
    net.elect("s5")
    net.core("s5").propose(b"e3-t2")
    net.deliver()
    net.msg_filter = None
    # (c) s1 comes back as leader of term 3 and replicates entry 2 (term 1) to s3: a majority, not committed.
    net.partition(["s1", "s2", "s3"])
    net.restart("s1")  # s1 crashed and restarts as a follower of term 1
    net.core("s1").campaign()  # term 2: s3 already voted for s5 in term 2, so this round fails
    net.deliver()
    net.elect("s1")  # term 3
    s1 = net.core("s1")
    assert s1.commit_index >= 2 and s1._log.term(s1.commit_index) == s1.term
    # Entry 2 was committed only together with s1's own no-op: every later leader must have it.
    net.recover()
    for _ in range(5):
        net.tick_all(3)
    for nid in ids:
        assert b"e2-t1" in net.applied_data(nid)
        assert b"e3-t2" not in net.applied_data(nid)


# ---------------------------------------------------------------- heartbeats, check-quorum, lease


def test_leader_sends_heartbeats_every_heartbeat_ticks() -> None:
    core = become_leader(heartbeat_ticks=2)
    core.tick()
    assert not msgs(core, MessageType.HEARTBEAT)
    core.tick()
    beats = msgs(core, MessageType.HEARTBEAT)
    assert sorted(m.to for m in beats) == [B, C]


def test_check_quorum_leader_steps_down_without_majority() -> None:
    """Thesis §6.2: a leader that hears from no majority within an election timeout steps down."""
    core = become_leader(election_ticks=10)
    for _ in range(10):
        core.step(Message(MessageType.HEARTBEAT_RESP, B, A, 1))
        core.tick()
    assert core.role is Role.LEADER  # B + self is a majority
    for _ in range(10):
        core.tick()
    assert core.role is Role.FOLLOWER and core.term == 1


def test_leader_lease_follower_ignores_votes_but_not_transfer() -> None:
    """Thesis §4.2.3: a follower that heard from a leader within the minimum election timeout ignores (pre)votes,
    except a campaign caused by TIMEOUT_NOW."""
    core = make_core(C)
    core.step(Message(MessageType.HEARTBEAT, A, C, 1))
    drain(core)
    core.step(Message(MessageType.PRE_VOTE, B, C, 2, index=5, log_term=1))
    core.step(Message(MessageType.VOTE, B, C, 2, index=5, log_term=1))
    assert not msgs(core) and core.term == 1
    core.step(Message(MessageType.VOTE, B, C, 2, index=5, log_term=1, context=TRANSFER_CONTEXT))
    (resp,) = msgs(core, MessageType.VOTE_RESP)
    assert not resp.reject and core.term == 2


# ---------------------------------------------------------------- §9.6 pre-vote


def test_9_6_pre_vote_does_not_bump_terms() -> None:
    """Thesis §9.6: a pre-candidate asks with term+1 but neither it nor the voters change term; only after a
    majority of pre-votes does it start a real election."""
    core = make_core(A, pre_vote=True)
    core.campaign()
    assert core.role is Role.PRE_CANDIDATE and core.term == 0
    pre = msgs(core, MessageType.PRE_VOTE)
    assert {m.term for m in pre} == {1}
    voter = make_core(B)
    voter.step(pre[0])
    (resp,) = msgs(voter, MessageType.PRE_VOTE_RESP)
    assert not resp.reject and voter.term == 0 and voter.status().vote is None
    core.step(resp)
    assert core.role is Role.CANDIDATE and core.term == 1


def test_9_6_partitioned_node_rejoins_without_disrupting() -> None:
    net = Network([A, B, C], pre_vote=True)
    net.elect(A)
    net.isolate(C)
    net.tick_all(50)
    assert net.core(C).term == 1 and net.core(C).role is Role.PRE_CANDIDATE
    net.recover()
    net.tick_all(3)
    assert net.leaders() == [A] and {net.core(x).term for x in (A, B, C)} == {1}


# ---------------------------------------------------------------- §6 membership


def test_6_only_one_conf_change_pending() -> None:

    net = Network([A, B, C])
    net.elect(A)
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "d"))
    with pytest.raises(ProposalDroppedError):
        net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "e"))
    net.deliver()
    assert net.core(A).learners == {"d"}
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "e"))


def test_6_new_leader_cannot_change_membership_before_its_noop_is_applied() -> None:

    core = become_leader()
    with pytest.raises(ProposalDroppedError):
        core.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, C))


def test_6_removed_leader_steps_down_after_apply() -> None:

    net = Network([A, B, C])
    net.elect(A)
    net.core(A).propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, A))
    net.deliver()
    assert net.core(A).role is Role.FOLLOWER and net.core(A).voters == {B, C}
    assert net.core(B).voters == {B, C}
    for _ in range(30):
        net.tick_all()
        if net.leaders():
            break
    assert net.leaders() and net.leaders()[0] in (B, C)
    for _ in range(30):
        net.tick_all()
    assert net.core(A).role is Role.FOLLOWER  # a removed node never campaigns


def test_6_quorum_follows_the_new_configuration() -> None:
    """After removing two of five voters, three voters decide: two of them are a majority."""

    ids = [A, B, C, "d", "e"]
    net = Network(ids)
    net.elect(A)
    for gone in ("d", "e"):
        net.core(A).propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, gone))
        net.deliver()
    net.partition([A, B])
    index = net.propose(A, b"two of three")
    assert net.core(A).commit_index >= index


# ---------------------------------------------------------------- §8 ReadIndex


def test_8_read_index_waits_for_leader_commit_in_its_term() -> None:
    """§8: a new leader must commit an entry of its term (its no-op) before serving a read."""
    core = become_leader()
    core.read_index(b"r1")
    assert not drain(core).read_states
    core.step(Message(MessageType.APPEND_RESP, B, A, 1, index=1))
    beats = msgs(core, MessageType.HEARTBEAT)
    assert {m.context for m in beats} == {b"r1"}
    assert not core.ready().read_states


def test_8_read_index_confirms_leadership_with_a_heartbeat_round() -> None:
    core = become_leader()
    core.step(Message(MessageType.APPEND_RESP, B, A, 1, index=1))
    drain(core)
    core.read_index(b"r1")
    core.read_index(b"r2")
    assert not drain(core).read_states
    core.step(Message(MessageType.HEARTBEAT_RESP, C, A, 1, context=b"r2"))
    rd = drain(core)
    # r2's quorum confirms r1 too (it was queued earlier).
    assert [(r.index, r.context) for r in rd.read_states] == [(1, b"r1"), (1, b"r2")]


def test_8_follower_read_index_is_forwarded_to_leader() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.propose(A, b"x")
    net.core(B).read_index(b"ctx")
    net.deliver()
    (rs,) = net.nodes[B].read_states
    assert rs.context == b"ctx" and rs.index == net.core(A).commit_index


def test_8_deposed_leader_cannot_serve_a_read() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.isolate(A)
    net.core(A).read_index(b"stale")
    net.deliver()
    assert not net.nodes[A].read_states


# ---------------------------------------------------------------- thesis §3.10 leadership transfer


def test_3_10_transfer_to_up_to_date_follower() -> None:
    net = Network([A, B, C])
    net.elect(A)
    net.core(A).transfer_leadership(B)
    net.deliver()
    assert net.leaders() == [B] and net.core(B).term == 2


def test_3_10_transfer_catches_target_up_first_and_blocks_proposals() -> None:

    net = Network([A, B, C])
    net.elect(A)
    net.cut(A, C)
    net.propose(A, b"x")
    net.recover()
    net.core(A).transfer_leadership(C)
    with pytest.raises(ProposalDroppedError):
        net.core(A).propose(b"y")
    net.deliver()
    assert net.leaders() == [C] and b"x" in net.applied_data(C)


def test_3_10_transfer_aborts_after_an_election_timeout() -> None:
    net = Network([A, B, C], election_ticks=10)
    net.elect(A)
    net.partition([A, B])
    net.core(A).transfer_leadership(C)
    net.deliver()
    assert net.core(A).status().lead_transferee == C
    for _ in range(10):
        net.tick(A)
    assert net.core(A).status().lead_transferee is None and net.core(A).role is Role.LEADER
    net.core(A).propose(b"ok again")


# ---------------------------------------------------------------- §7 snapshots


def test_7_follower_whose_log_contains_the_snapshot_keeps_its_log_and_acks_only_committed() -> None:
    """§7: "If the follower already has the entry at lastIncludedIndex, it retains the entries after it"; those may
    be from another term, so the ack must not claim them."""

    core = make_core(B, log_terms=[1, 1, 2, 2])
    meta = SnapshotMeta(2, 1, (A, B, C))
    core.step(Message(MessageType.SNAPSHOT, A, B, 3, index=2, log_term=1, snapshot=meta,
                      chunk=SnapshotChunk(0, b"s", True, 1)))
    rd = drain(core)
    assert rd.snapshot is None and core.commit_index == 2 and core.last_index == 4
    (resp,) = [m for m in rd.messages if m.type is MessageType.APPEND_RESP]
    assert resp.index == 2 and not resp.reject


def test_7_follower_installs_a_snapshot_it_lacks_and_surfaces_it_in_ready() -> None:

    core = make_core(B, log_terms=[1, 1, 2, 2])
    meta = SnapshotMeta(9, 3, (A, B, C, "d"))
    core.step(Message(MessageType.SNAPSHOT, A, B, 3, snapshot=meta, chunk=SnapshotChunk(0, b"ab", False, 4)))
    (ack,) = msgs(core, MessageType.SNAPSHOT_RESP)
    assert ack.reject_hint == 2 and core.last_index == 4
    core.step(Message(MessageType.SNAPSHOT, A, B, 3, snapshot=meta, chunk=SnapshotChunk(2, b"cd", True, 4)))
    rd = drain(core)
    assert rd.snapshot is not None and rd.snapshot.data == b"abcd" and rd.snapshot.meta == meta
    assert rd.committed_entries == ()
    assert core.last_index == 9 and core.commit_index == 9 and core.applied_index == 9
    assert core.voters == {A, B, C, "d"}
    assert [m.index for m in rd.messages if m.type is MessageType.APPEND_RESP] == [9]


def test_7_out_of_order_chunk_is_rejected_with_the_offset_needed() -> None:

    core = make_core(B)
    meta = SnapshotMeta(9, 3, (A, B, C))
    core.step(Message(MessageType.SNAPSHOT, A, B, 3, snapshot=meta, chunk=SnapshotChunk(2, b"cd", True, 4)))
    (resp,) = msgs(core, MessageType.SNAPSHOT_RESP)
    assert resp.reject and resp.reject_hint == 0 and core.last_index == 0


def test_8_pending_reads_are_bounded() -> None:

    core = become_leader(max_pending_reads=2)
    core.read_index(b"1")
    core.read_index(b"2")
    with pytest.raises(ProposalDroppedError):
        core.read_index(b"3")


@pytest.mark.parametrize("entries", [
    (Entry(3, 5),),                 # gap after prevLogIndex
    (Entry(3, 3), Entry(3, 5)),     # gap inside
    (Entry(9, 3),),                 # term above the leader's
    (Entry(3, 3), Entry(2, 4)),     # decreasing terms
])
def test_malformed_append_is_dropped(entries: tuple[Entry, ...]) -> None:
    core = make_core(B, log_terms=[1, 1])
    core.step(Message(MessageType.APPEND, A, B, 3, index=2, log_term=1, entries=entries))
    assert core.last_index == 2 and not msgs(core, MessageType.APPEND_RESP)


def test_learners_count_neither_for_check_quorum_nor_for_read_quorum() -> None:
    core = become_leader(voters=(A, B, C), election_ticks=10)
    core.apply_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "d"))
    core.step(Message(MessageType.APPEND_RESP, B, A, 1, index=1))  # commit the no-op
    drain(core)
    core.read_index(b"r")
    drain(core)
    core.step(Message(MessageType.HEARTBEAT_RESP, "d", A, 1, context=b"r"))
    assert not drain(core).read_states  # a learner's ack does not confirm leadership
    for _ in range(20):
        core.step(Message(MessageType.HEARTBEAT_RESP, "d", A, 1))
        core.tick()
    assert core.role is Role.FOLLOWER  # only a learner was heard: no quorum


def test_6_candidate_removed_mid_campaign_stops_campaigning() -> None:
    core = make_core(A, pre_vote=False)
    core.campaign()
    core.apply_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, A))
    core.step(vote_resp(B, A, 1))
    core.step(vote_resp(C, A, 1))
    assert core.role is Role.FOLLOWER


def test_8_read_index_needs_a_context() -> None:
    from consensus.errors import InvalidRequestError

    core = become_leader()
    with pytest.raises(InvalidRequestError):
        core.read_index(b"")
