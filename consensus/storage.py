"""The storage interface the core reads from, and an in-memory implementation.

Like etcd-io/raft's Storage: the core only *reads* stable state through it; the driver *writes* each Ready into
it (`save`) after persisting. Index 0 / term 0 is the empty-log sentinel; a compacted log keeps the term of
its last compacted entry (`first_index() - 1`) so that AppendEntries consistency checks still work.
"""

from __future__ import annotations

from typing import Protocol

from consensus.invariant import require
from consensus.messages import Entry, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState


class StorageError(Exception):
    """Base of storage errors."""


class CompactedError(StorageError):
    """The requested index is before the first available index (it is in a snapshot)."""


class UnavailableError(StorageError):
    """The requested index is after the last index."""


class CorruptionError(StorageError):
    """A stored record failed its checksum or could not be decoded; the node must not start on it."""


class Storage(Protocol):
    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        """Hard state and the latest snapshot's metadata (index 0, term 0, with the bootstrap voters if none)."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi), at least one if any exist, stopping before `max_bytes` of data are exceeded."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at `index`; valid for first_index()-1 .. last_index()."""
        ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot:
        """The latest snapshot (metadata and application data) to send to a follower that is too far behind."""
        ...

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        """Persist one Ready's durable part atomically: snapshot first, then entries (truncating any
        conflicting suffix at entries[0].index), then hard state."""
        ...

    def compact(self, snapshot: Snapshot) -> None:
        """The application took `snapshot` of its own state: remember it and drop log entries up to its index."""
        ...


class MemoryStorage:
    """`Storage` kept in memory (for tests and the simulator); `save`/`compact` follow the protocol exactly.

    `_ents[0]` is a dummy entry at the snapshot's index carrying its term, so term(first_index()-1) works.
    """

    def __init__(self, voters: tuple[NodeId, ...], learners: tuple[NodeId, ...] = ()) -> None:
        meta = SnapshotMeta(index=0, term=0, voters=tuple(sorted(voters)), learners=tuple(sorted(learners)))
        self._hard_state = HardState()
        self._snapshot = Snapshot(meta)
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self._hard_state, self._snapshot.meta

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def _offset(self) -> int:
        return self._ents[0].index

    def first_index(self) -> int:
        return self._offset() + 1

    def last_index(self) -> int:
        return self._offset() + len(self._ents) - 1

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        offset = self._offset()
        if lo <= offset:
            raise CompactedError(f"entries from {lo}: compacted up to {offset}")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries to {hi}: last index is {self.last_index()}")
        out: list[Entry] = []
        size = 0
        for e in self._ents[lo - offset:hi - offset]:
            size += len(e.data)
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def term(self, index: int) -> int:
        offset = self._offset()
        if index < offset:
            raise CompactedError(f"term of {index}: compacted up to {offset}")
        if index > self.last_index():
            raise UnavailableError(f"term of {index}: last index is {self.last_index()}")
        return self._ents[index - offset].term

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        if snapshot is not None:
            self._apply_snapshot(snapshot)
        if entries:
            self._append(entries)
        if hard_state is not None:
            self._hard_state = hard_state

    def compact(self, snapshot: Snapshot) -> None:
        index = snapshot.meta.index
        offset = self._offset()
        if index <= offset:
            return  # an older snapshot than the one we have: nothing to drop
        if index > self.last_index():
            raise UnavailableError(f"compact to {index}: last index is {self.last_index()}")
        require(self.term(index) == snapshot.meta.term, "compact: snapshot term differs from the log's")
        self._ents = [Entry(term=snapshot.meta.term, index=index), *self._ents[index - offset + 1:]]
        self._snapshot = snapshot

    def _apply_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index <= self._snapshot.meta.index:
            return
        self._snapshot = snapshot
        self._ents = [Entry(term=snapshot.meta.term, index=snapshot.meta.index)]

    def _append(self, entries: tuple[Entry, ...]) -> None:
        first = self.first_index()
        if entries[-1].index < first:
            return  # all compacted already
        ents = list(entries)
        if ents[0].index < first:
            ents = ents[first - ents[0].index:]
        at = ents[0].index - self._offset()
        require(at <= len(self._ents), f"append: missing log entries before {ents[0].index}")
        self._ents = self._ents[:at] + ents
