"""Unit tests for Config validation, MemoryStorage, RaftLog and Progress/Inflights."""

from __future__ import annotations

import pytest

from consensus.config import Config
from consensus.errors import ConfigError
from consensus.invariant import InvariantViolation
from consensus.log import RaftLog
from consensus.messages import Entry, Snapshot, SnapshotMeta
from consensus.progress import Inflights, Progress, ProgressState
from consensus.ready import HardState
from consensus.storage import CompactedError, MemoryStorage, UnavailableError


@pytest.mark.parametrize("kwargs", [
    {"id": ""}, {"election_ticks": 0}, {"heartbeat_ticks": 0}, {"heartbeat_ticks": 10},
    {"max_inflight_msgs": 0}, {"max_msg_bytes": -1}, {"max_snapshot_chunk_bytes": 0},
    {"max_uncommitted_bytes": 10, "max_msg_bytes": 100},
    # Compiled, Config refuses a non-bool flag at construction (TypeError), before its own check runs.
    pytest.param({"pre_vote": 1}, marks=pytest.mark.pure_only), {"election_ticks": True},
])
def test_config_rejects_bad_limits(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"id": "a", **kwargs}
    with pytest.raises(ConfigError):
        Config(**args)  # type: ignore[arg-type]


def test_config_defaults_are_valid() -> None:
    cfg = Config("a")
    assert cfg.election_ticks == 10 and cfg.heartbeat_ticks == 1 and cfg.pre_vote and cfg.check_quorum


def storage_with(n: int, term: int = 1) -> MemoryStorage:
    st = MemoryStorage(("a",))
    st.save(HardState(term=term), tuple(Entry(term, i, data=b"x" * 10) for i in range(1, n + 1)), None, True)
    return st


def test_memory_storage_entries_terms_and_size_limit() -> None:
    st = storage_with(10)
    assert (st.first_index(), st.last_index()) == (1, 10)
    assert [e.index for e in st.entries(2, 6, 25)] == [2, 3]
    assert [e.index for e in st.entries(2, 6, 0)] == [2]  # at least one
    with pytest.raises(UnavailableError):
        st.entries(5, 12, 100)
    with pytest.raises(CompactedError):
        st.entries(0, 2, 100)
    assert st.term(0) == 0


def test_memory_storage_compact_and_truncate() -> None:
    st = storage_with(10)
    st.compact(Snapshot(SnapshotMeta(6, 1, ("a",)), b"state"))
    assert (st.first_index(), st.last_index(), st.term(6)) == (7, 10, 1)
    with pytest.raises(CompactedError):
        st.term(5)
    st.save(None, (Entry(2, 8), Entry(2, 9)), None, True)  # truncates the conflicting suffix 8..10
    assert (st.last_index(), st.term(9)) == (9, 2)
    st.save(None, (), Snapshot(SnapshotMeta(20, 3, ("a",)), b"newer"), True)
    assert (st.first_index(), st.last_index(), st.term(20)) == (21, 20, 3)
    assert st.initial_state()[1].index == 20


def test_memory_storage_rejects_a_gap() -> None:
    st = storage_with(3)
    with pytest.raises(InvariantViolation):
        st.save(None, (Entry(1, 6),), None, True)


def test_raft_log_unstable_tail_over_stable_prefix() -> None:
    log = RaftLog(storage_with(5))
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 5, 1)
    log.append([Entry(2, 4), Entry(2, 5), Entry(2, 6)])
    assert [log.term(i) for i in range(0, 8)] == [0, 1, 1, 1, 2, 2, 2, None]
    assert [e.index for e in log.slice(2, 7, 1 << 20)] == [2, 3, 4, 5, 6]
    assert [e.term for e in log.slice(3, 6, 1 << 20)] == [1, 2, 2]
    log.stable_to(6, 2)
    assert log.unstable.entries == [] and log.unstable.offset == 7
    log.stable_to(6, 1)  # stale (wrong term): ignored


def test_raft_log_never_overwrites_committed() -> None:
    log = RaftLog(storage_with(5))
    log.commit_to(4)
    with pytest.raises(InvariantViolation):
        log.append([Entry(2, 3)])
    with pytest.raises(InvariantViolation):
        log.commit_to(9)


def test_find_conflict_by_term() -> None:
    st = MemoryStorage(("a",))
    st.save(HardState(term=5), tuple(Entry(t, i + 1) for i, t in enumerate([1, 1, 3, 3, 3, 5])), None, True)
    log = RaftLog(st)
    assert log.find_conflict_by_term(6, 4) == (5, 3)
    assert log.find_conflict_by_term(6, 2) == (2, 1)
    assert log.find_conflict_by_term(6, 0) == (0, 0)
    assert log.find_conflict_by_term(4, 9) == (4, 3)


def test_next_committed_entries_respects_applied_and_size() -> None:
    log = RaftLog(storage_with(10))
    log.commit_to(8)
    assert [e.index for e in log.next_committed_entries(25)] == [1, 2]
    log.applied_to(2)
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [3, 4, 5, 6, 7, 8]


def test_inflights_window() -> None:
    inf = Inflights(3)
    for i in (2, 4, 6):
        inf.add(i)
    assert inf.full()
    with pytest.raises(InvariantViolation):
        inf.add(8)
    inf.free_le(4)
    assert inf.count() == 1 and not inf.full()
    inf.free_first_one()
    assert inf.count() == 0


def test_progress_probe_replicate_and_backtrack() -> None:
    pr = Progress(match=0, next_index=11, max_inflight=2, is_learner=False)
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(1, 11)
    assert pr.is_paused()  # one probe at a time
    assert pr.maybe_decr_to(10, 4)
    assert pr.next == 5 and not pr.is_paused()
    assert not pr.maybe_decr_to(10, 2)  # stale rejection
    assert pr.maybe_update(6)
    pr.become_replicate()
    pr.sent_entries(3, 9)
    pr.sent_entries(2, 11)
    assert pr.is_paused() and pr.next == 12
    pr.inflights.free_le(9)
    assert not pr.is_paused()
