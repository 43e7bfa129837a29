"""Helpers shared by the consensus tests: single cores over a prepared MemoryStorage."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.config import Config
from consensus.messages import Entry, Message, MessageType
from consensus.raft import Raft
from consensus.ready import HardState, Ready
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


def drain(core: Raft) -> Ready:
    """Take one Ready, persist it into the core's storage, advance; returns it."""
    rd = core.ready()
    core._storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
    core.advance(rd)
    return rd


def msgs(core: Raft, kind: MessageType | None = None) -> list[Message]:
    if not core.has_ready():
        return []
    out = list(drain(core).messages)
    return [m for m in out if kind is None or m.type is kind]
