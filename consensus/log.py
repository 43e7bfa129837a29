"""The Raft log as the core sees it: stable entries in `Storage` plus an unstable tail not yet persisted
(etcd-io/raft's raftLog and unstable).

    storage:   [snapshot] first_index ... storage.last_index()
    unstable:                         [snapshot?] offset ... last_index()

Unstable entries may overwrite a suffix of stable ones (a follower truncating a conflicting tail); the driver's
`save` truncates storage at the first entry it writes.
"""

from __future__ import annotations

from operator import attrgetter

from consensus.invariant import require
from consensus.messages import Entry, Snapshot
from consensus.storage import CompactedError, Storage, UnavailableError

_DATA = attrgetter("data")


class Unstable:
    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        """Index of entries[0] (or where the next entry would go)."""

    def maybe_first_index(self) -> int | None:
        return self.snapshot.meta.index + 1 if self.snapshot is not None else None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        return self.snapshot.meta.index if self.snapshot is not None else None

    def maybe_term(self, index: int) -> int | None:
        if index < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == index:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or index > last:
            return None
        return self.entries[index - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries through `index` (of `term`) are persisted: drop them, unless they were since replaced."""
        if self.maybe_term(index) != term or index < self.offset:
            return
        self.entries = self.entries[index + 1 - self.offset:]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.meta.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replaces everything unstable (and, once saved, the stable suffix from `after`).
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[:after - self.offset] + ents


def limit_size(ents: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix whose data fits in `max_bytes`, but always at least one entry."""
    if sum(map(len, map(_DATA, ents))) <= max_bytes:
        return ents  # the usual case, in one C-level pass
    size = 0
    for i, e in enumerate(ents):
        size += len(e.data)
        if i > 0 and size > max_bytes:
            return ents[:i]
    return ents


class RaftLog:
    __slots__ = ("applied", "committed", "storage", "unstable")

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        self.unstable = Unstable(storage.last_index() + 1)
        self.committed = first - 1
        self.applied = first - 1

    # -- indices and terms

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, or None if it is compacted away or beyond the log."""
        if index < self.first_index() - 1 or index > self.last_index():
            return None
        t = self.unstable.maybe_term(index)
        if t is not None:
            return t
        try:
            return self.storage.term(index)
        except (CompactedError, UnavailableError):
            return None

    def last_term(self) -> int:
        t = self.term(self.last_index())
        require(t is not None, "the last entry's term must be known")
        assert t is not None
        return t

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up-to-date as ours."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    # -- appending

    def maybe_append(self, index: int, log_term: int, committed: int, ents: tuple[Entry, ...]) -> int | None:
        """AppendEntries' consistency check (§5.3); on success returns the index of the last new entry."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        conflict = self.find_conflict(ents)
        if conflict:
            require(conflict > self.committed, f"entry {conflict} conflicts with committed entry {self.committed}")
            self.append(list(ents[conflict - (index + 1):]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        require(ents[0].index - 1 >= self.committed, "cannot overwrite committed entries")
        require(ents[0].index <= self.last_index() + 1, "append leaves a gap in the log")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or conflicts with ours; 0 if all are already present."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, and that term (fast backtracking hint).
        Stops at the compaction point, returning (index, 0) when terms are no longer known."""
        while True:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term or index == 0:
                return index, t
            index -= 1

    # -- commit and apply

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            require(index <= self.last_index(), f"commit {index} is beyond the last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Figure 8: only an entry of the current term is committed by counting replicas."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        require(self.applied <= index <= self.committed,
                f"applied {index} out of range [{self.applied}, {self.committed}]")
        self.applied = index

    def has_next_committed_entries(self) -> bool:
        if self.unstable.snapshot is not None:
            return False  # the snapshot must be installed first
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed_entries(self, max_bytes: int) -> list[Entry]:
        if not self.has_next_committed_entries():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1, max_bytes)

    # -- reading

    def entries_from(self, index: int, max_bytes: int) -> list[Entry] | None:
        """Entries from `index` to the end (size-limited); None if `index` is compacted."""
        if index > self.last_index():
            return []
        if index < self.first_index():
            return None
        try:
            return self.slice(index, self.last_index() + 1, max_bytes)
        except CompactedError:
            return None

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        require(self.first_index() <= lo <= hi <= self.last_index() + 1, f"slice [{lo}, {hi}) out of range")
        ents: list[Entry] = []
        offset = self.unstable.offset
        if lo < offset:
            stop = min(hi, offset)
            stored = self.storage.entries(lo, stop, max_bytes)
            if len(stored) < stop - lo:
                return stored  # storage hit the size limit
            if hi <= offset:
                return stored  # all from storage, which already kept to max_bytes
            ents.extend(stored)
        if hi > offset:
            ents.extend(self.unstable.entries[max(lo, offset) - offset:hi - offset])
        return limit_size(ents, max_bytes)

    def unstable_entries(self) -> list[Entry]:
        return list(self.unstable.entries)

    # -- snapshots

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.meta.index
        self.unstable.restore(snapshot)

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)
