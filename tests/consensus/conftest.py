"""Helpers shared by the consensus tests: single cores over a prepared MemoryStorage."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.config import Config
from consensus.messages import Entry, Message, MessageType, Snapshot
from consensus.raft import Raft
from consensus.ready import HardState, ReadState, Ready
from consensus.ready_loop import handle_ready
from consensus.storage import MemoryStorage


class FixedRng:
    """Always draws `value` offset: the randomized election timeout becomes election_ticks + value."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def randrange(self, start: int, stop: int) -> int:
        return min(start + self.value, stop - 1)


def make_storage(voters: Sequence[str], log_terms: Sequence[int] = (), term: int = 0,
                 learners: Sequence[str] = ()) -> MemoryStorage:
    """A storage holding entries with the given terms at indices 1.. and hard state `term`."""
    st = MemoryStorage(tuple(voters), tuple(learners))
    ents = tuple(Entry(t, i + 1) for i, t in enumerate(log_terms))
    st.save(HardState(term=max([term, *log_terms])), ents, None, True)
    return st


def make_core(nid: str, voters: Sequence[str] = ("a", "b", "c"), log_terms: Sequence[int] = (), term: int = 0,
              rng_value: int = 0, learners: Sequence[str] = (), **cfg: int | bool) -> Raft:
    storage = make_storage(voters, log_terms, term, learners)
    return Raft(Config(id=nid, **cfg), storage, FixedRng(rng_value))  # type: ignore[arg-type]


class _PersistOnly:
    """A `consensus.ready_loop.ReadyIO` that saves into the core's storage and advances; sending, applying and
    reads are left to the test, which looks at the Ready `drain` returns."""

    __slots__ = ("_core",)

    def __init__(self, core: Raft) -> None:
        self._core = core

    def persist(self, rd: Ready) -> None:
        self._core._storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)

    def send(self, messages: tuple[Message, ...]) -> None:
        pass

    def install_snapshot(self, snapshot: Snapshot) -> None:
        pass

    def apply(self, entries: tuple[Entry, ...]) -> None:
        pass

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        pass

    def advance(self, rd: Ready) -> None:
        self._core.advance(rd)


def drain(core: Raft) -> Ready:
    """Take one Ready and carry it out through `handle_ready` (persisted into the core's storage, then
    advanced); returns it, for the test to read its messages and committed entries."""
    rd = core.ready()
    persisted, _ = core._storage.initial_state()
    handle_ready(rd, _PersistOnly(core), role=core.role, persisted=persisted)
    return rd


def msgs(core: Raft, kind: MessageType | None = None) -> list[Message]:
    if not core.has_ready():
        return []
    out = list(drain(core).messages)
    return [m for m in out if kind is None or m.type is kind]
