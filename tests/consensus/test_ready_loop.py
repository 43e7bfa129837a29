"""consensus.ready_loop: the one Ready-handling routine of both drivers, step order and the early-send rule."""

from __future__ import annotations

import pytest

from consensus.messages import Entry, Message, MessageType, Snapshot, SnapshotMeta
from consensus.ready import HardState, ReadState, Ready, Role
from consensus.ready_loop import handle_ready, may_send_early

APPEND = Message(MessageType.APPEND, "a", "b", 2, index=4, log_term=2, commit=4,
                 entries=(Entry(2, 5, data=b"x"),))


def ready(*, hard_state: HardState | None = None, entries: tuple[Entry, ...] = (), snapshot: Snapshot | None = None,
          committed: tuple[Entry, ...] = (), messages: tuple[Message, ...] = (APPEND,),
          read_states: tuple[ReadState, ...] = ()) -> Ready:
    return Ready(soft_state=None, hard_state=hard_state, entries=entries, snapshot=snapshot,
                 committed_entries=committed, messages=messages, read_states=read_states,
                 must_sync=bool(entries) or snapshot is not None)


class Recorder:
    """A ReadyIO that records the order of the calls (and can fail at one of them)."""

    def __init__(self, fail_at: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail_at = fail_at

    def _note(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise OSError(f"{name} failed")

    def persist(self, rd: Ready) -> None:
        self._note("persist")

    def send(self, messages: tuple[Message, ...]) -> None:
        self._note("send")

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self._note("install_snapshot")

    def apply(self, entries: tuple[Entry, ...]) -> None:
        self._note("apply")

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        self._note("hand_read_states")

    def advance(self, rd: Ready) -> None:
        self._note("advance")


PERSISTED = HardState(term=2, vote="a", commit=4)


def test_a_follower_persists_before_it_sends_then_applies_reads_and_advances() -> None:
    io = Recorder()
    snap = Snapshot(SnapshotMeta(index=3, term=1, voters=("a", "b")), b"s")
    rd = ready(hard_state=HardState(2, "a", 5), entries=(Entry(2, 5),), snapshot=snap, committed=(Entry(2, 4),))
    after = handle_ready(rd, io, role=Role.FOLLOWER, persisted=PERSISTED)
    assert io.calls == ["persist", "send", "install_snapshot", "apply", "hand_read_states", "advance"]
    assert after == HardState(2, "a", 5)


def test_a_leader_with_unchanged_term_and_vote_sends_before_its_write() -> None:
    io = Recorder()
    rd = ready(entries=(Entry(2, 5, data=b"x"),))
    assert handle_ready(rd, io, role=Role.LEADER, persisted=PERSISTED) == PERSISTED
    assert io.calls == ["send", "persist", "hand_read_states", "advance"]


@pytest.mark.parametrize("role, hard_state, entries, early", [
    (Role.LEADER, None, (), True),
    (Role.LEADER, HardState(2, "a", 5), (Entry(2, 6),), True),  # commit moved, but not onto this write
    (Role.LEADER, HardState(2, "a", 6), (Entry(2, 6),), False),  # a lone voter's commit of its own new entry
    (Role.LEADER, HardState(3, "a", 4), (), False),  # a new term must be durable first
    (Role.LEADER, HardState(2, None, 4), (), False),
    (Role.FOLLOWER, None, (Entry(2, 5),), False),  # an acknowledgement promises the entries are on disk
    (Role.CANDIDATE, HardState(3, "a", 4), (), False),
    (Role.PRE_CANDIDATE, None, (), False),
    (Role.LEARNER, None, (), False),
])
def test_the_early_send_rule(role: Role, hard_state: HardState | None, entries: tuple[Entry, ...],
                             early: bool) -> None:
    assert may_send_early(role, ready(hard_state=hard_state, entries=entries), PERSISTED) is early


def test_nothing_to_write_or_send_skips_those_steps() -> None:
    io = Recorder()
    handle_ready(ready(messages=(), committed=(Entry(2, 4),)), io, role=Role.FOLLOWER, persisted=PERSISTED)
    assert io.calls == ["apply", "hand_read_states", "advance"]


def test_a_failed_write_abandons_the_ready_without_advancing() -> None:
    io = Recorder(fail_at="persist")
    with pytest.raises(OSError):
        handle_ready(ready(entries=(Entry(2, 5),)), io, role=Role.FOLLOWER, persisted=PERSISTED)
    assert io.calls == ["persist"]  # nothing sent, nothing applied, not advanced
