"""The storage interface the core reads from, and an in-memory implementation.

Like etcd-io/raft's Storage: the core only *reads* stable state through it; the driver *writes* each Ready into
it (`save`) after persisting. Index 0 / term 0 is the empty-log sentinel; a compacted log keeps the term of
its last compacted entry (`first_index() - 1`) so that AppendEntries consistency checks still work.
"""

from __future__ import annotations

from typing import Protocol

from consensus.messages import Entry, Snapshot, SnapshotMeta
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
