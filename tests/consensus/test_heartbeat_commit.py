"""A heartbeat's commit hint beyond the follower's log: the core takes only what it holds (it used to be the
node driver's job to clamp the message before stepping it)."""

from __future__ import annotations

import random

from consensus.config import Config
from consensus.messages import Entry, Message, MessageType
from consensus.raft import Raft
from consensus.ready import HardState
from consensus.storage import MemoryStorage


def follower_with(last: int) -> Raft:
    st = MemoryStorage(("a", "b", "c"))
    st.save(HardState(term=1), tuple(Entry(1, i) for i in range(1, last + 1)), None, True)
    return Raft(Config("b"), st, random.Random(1))


def heartbeat(commit: int) -> Message:
    return Message(MessageType.HEARTBEAT, "a", "b", 1, commit=commit)


def test_a_commit_hint_beyond_the_log_commits_only_what_the_follower_holds() -> None:
    core = follower_with(3)
    core.step(heartbeat(10))  # the leader's view of us is stale (we lost our data, or restarted)
    assert core.commit_index == 3
    rd = core.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 3
    assert [m.type for m in rd.messages] == [MessageType.HEARTBEAT_RESP]


def test_a_commit_hint_within_the_log_is_taken_and_never_goes_back() -> None:
    core = follower_with(5)
    core.step(heartbeat(4))
    assert core.commit_index == 4
    core.step(heartbeat(2))
    assert core.commit_index == 4


def test_an_empty_follower_commits_nothing() -> None:
    core = follower_with(0)
    core.step(heartbeat(7))
    assert core.commit_index == 0
