"""In-memory Raft storage with a durable/volatile split, so that a simulated crash can lose unsynced writes.

Every write is applied to the *visible* state at once (what the running node reads). A write with `sync=True`
also makes itself and every earlier write durable (a disk flushes in order). A crash keeps a random prefix of the
unsynced writes - like a LevelDB log whose tail did not reach the platter - and the node restarts from that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consensus.invariant import require
from consensus.messages import Entry, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.storage import CompactedError, UnavailableError


@dataclass(slots=True)
class LogState:
    """Hard state, snapshot and the entries after it: `entries[k].index == snapshot.meta.index + 1 + k`."""

    hard_state: HardState
    snapshot: Snapshot
    entries: list[Entry] = field(default_factory=list)

    def copy(self) -> LogState:
        return LogState(self.hard_state, self.snapshot, list(self.entries))

    @property
    def snap_index(self) -> int:
        return self.snapshot.meta.index

    @property
    def last_index(self) -> int:
        return self.snapshot.meta.index + len(self.entries)

    def term(self, index: int) -> int:
        if index < self.snap_index:
            raise CompactedError(f"entry {index} is compacted (snapshot at {self.snap_index})")
        if index == self.snap_index:
            return self.snapshot.meta.term
        if index > self.last_index:
            raise UnavailableError(f"entry {index} is after the last index {self.last_index}")
        return self.entries[index - self.snap_index - 1].term

    def entry(self, index: int) -> Entry:
        require(self.snap_index < index <= self.last_index, f"entry {index} not in the log")
        return self.entries[index - self.snap_index - 1]

    def apply_save(self, hard_state: HardState | None, entries: tuple[Entry, ...],
                   snapshot: Snapshot | None) -> None:
        if snapshot is not None and snapshot.meta.index > self.snap_index:
            self.snapshot = snapshot
            self.entries = []
        new = [e for e in entries if e.index > self.snap_index]
        if new:
            first = new[0].index
            require(first <= self.last_index + 1, f"append at {first} leaves a gap after {self.last_index}")
            del self.entries[first - self.snap_index - 1:]
            self.entries.extend(new)
            require(self.entries[-1].index == self.last_index, "appended entries must be contiguous")
        if hard_state is not None:
            self.hard_state = hard_state

    def apply_compact(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        if index <= self.snap_index:
            return  # an older compaction replayed after a newer received snapshot: nothing to drop
        require(index <= self.last_index, f"compaction at {index} beyond last index {self.last_index}")
        require(self.term(index) == snapshot.meta.term, "compaction snapshot term must match the log")
        del self.entries[:index - self.snap_index]
        self.snapshot = snapshot


_Write = tuple[HardState | None, tuple[Entry, ...], Snapshot | None] | Snapshot


class SimStorage:
    """`consensus.storage.Storage` for the simulator."""

    def __init__(self, bootstrap_voters: tuple[NodeId, ...]) -> None:
        initial = LogState(HardState(), Snapshot(SnapshotMeta(index=0, term=0, voters=tuple(sorted(
            bootstrap_voters)))))
        self.durable = initial
        self.visible = initial.copy()
        self._unsynced: list[_Write] = []

    # -- reads -----------------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self.visible.hard_state, self.visible.snapshot.meta

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        v = self.visible
        require(lo <= hi, f"entries: lo {lo} > hi {hi}")
        if lo <= v.snap_index:
            raise CompactedError(f"entry {lo} is compacted (snapshot at {v.snap_index})")
        if hi > v.last_index + 1:
            raise UnavailableError(f"entries up to {hi - 1} requested, last index {v.last_index}")
        out: list[Entry] = []
        size = 0
        for e in v.entries[lo - v.snap_index - 1:hi - v.snap_index - 1]:
            size += len(e.data)
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def term(self, index: int) -> int:
        return self.visible.term(index)

    def first_index(self) -> int:
        return self.visible.snap_index + 1

    def last_index(self) -> int:
        return self.visible.last_index

    def snapshot(self) -> Snapshot:
        return self.visible.snapshot

    # -- writes ----------------------------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        self.visible.apply_save(hard_state, entries, snapshot)
        self._unsynced.append((hard_state, entries, snapshot))
        if sync:
            self._flush(len(self._unsynced))

    def compact(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        if index <= self.visible.snap_index:
            return  # not newer than what we have: nothing to drop (as in MemoryStorage)
        if index > self.visible.last_index:
            raise UnavailableError(f"snapshot at {index} is after the last index {self.visible.last_index}")
        self.visible.apply_compact(snapshot)
        self._unsynced.append(snapshot)

    def _flush(self, count: int) -> None:
        for write in self._unsynced[:count]:
            if isinstance(write, Snapshot):
                self.durable.apply_compact(write)
            else:
                self.durable.apply_save(*write)
        del self._unsynced[:count]

    def crash(self, rng: random.Random) -> int:
        """Lose a random suffix of the unsynced writes; the visible state becomes the durable one.

        Returns how many writes were lost.
        """
        keep = rng.randrange(len(self._unsynced) + 1)
        lost = len(self._unsynced) - keep
        self._flush(keep)
        self._unsynced.clear()
        self.visible = self.durable.copy()
        return lost
