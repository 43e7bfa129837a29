"""The leader's view of each follower (etcd-io/raft's tracker.Progress and Inflights).

A follower is in one of three states:
- PROBE: we do not know where its log matches ours; send one append at a time and wait for the answer.
- REPLICATE: its log matches through `match`; stream appends optimistically, at most `max_inflight_msgs` unacked.
- SNAPSHOT: it needs entries we compacted; send the snapshot in chunks and wait until it is installed.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from consensus.invariant import require
from consensus.messages import Snapshot


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class PeerProgress:
    """A read-only copy of one peer's Progress, for `Raft.status()`."""

    match_index: int
    next_index: int
    state: ProgressState
    recent_active: bool
    is_learner: bool = False
    inflight: int = 0


class Inflights:
    """Last indices of the appends sent but not yet acknowledged, oldest first, bounded by `capacity`."""

    __slots__ = ("_capacity", "_indices")

    def __init__(self, capacity: int) -> None:
        require(capacity > 0, "inflights capacity must be positive")
        self._capacity = capacity
        self._indices: deque[int] = deque()

    def add(self, last_index: int) -> None:
        require(not self.full(), "inflights: add while full")
        require(not self._indices or self._indices[-1] <= last_index, "inflights: indices must not decrease")
        self._indices.append(last_index)

    def free_le(self, index: int) -> None:
        """The follower acknowledged everything through `index`: those appends are no longer in flight."""
        while self._indices and self._indices[0] <= index:
            self._indices.popleft()

    def free_first_one(self) -> None:
        if self._indices:
            self._indices.popleft()

    def full(self) -> bool:
        return len(self._indices) >= self._capacity

    def count(self) -> int:
        return len(self._indices)

    def reset(self) -> None:
        self._indices.clear()


class Progress:
    __slots__ = ("inflights", "is_learner", "match", "next", "pending_snapshot", "probe_sent", "recent_active",
                 "snapshot", "snapshot_offset", "snapshot_progressed", "state")

    def __init__(self, match: int, next_index: int, max_inflight: int, is_learner: bool) -> None:
        self.match = match
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        """In PROBE: an append is in flight; send nothing more until it is answered or a heartbeat is answered."""
        self.recent_active = False
        """Heard from within the last election timeout (check-quorum)."""
        self.pending_snapshot = 0
        self.snapshot: Snapshot | None = None
        """In SNAPSHOT: the snapshot being sent (kept so a later compaction does not change it mid-transfer)."""
        self.snapshot_offset = 0
        """In SNAPSHOT: bytes of `snapshot.data` the follower has acknowledged."""
        self.snapshot_progressed = True
        """In SNAPSHOT: a chunk was acknowledged since the last heartbeat response (else resend the current one)."""
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot = None
        self.snapshot_offset = 0
        self.snapshot_progressed = True
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            # The follower may have installed the snapshot: probe from just after it.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot: Snapshot) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot.meta.index
        self.snapshot = snapshot

    def maybe_update(self, index: int) -> bool:
        """The follower acknowledged a log matching ours through `index`; says whether `match` moved."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """The follower rejected an append whose previous index was `rejected`; move `next` back using its hint.
        Says False when the rejection is stale (answers an older append)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True

    def sent_entries(self, count: int, last_index: int) -> None:
        """Update after sending an append carrying `count` entries ending at `last_index`."""
        if self.state is ProgressState.REPLICATE:
            if count:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def view(self) -> PeerProgress:
        return PeerProgress(match_index=self.match, next_index=self.next, state=self.state,
                            recent_active=self.recent_active, is_learner=self.is_learner,
                            inflight=self.inflights.count())
