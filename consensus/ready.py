"""The output of the pure core: what the driver must persist, send and apply.

Contract for the driver (the simulator, and node/ in production), in this order, for each `Ready`:

1. Persist `hard_state`, `entries` and `snapshot` durably (one synced write; `must_sync` says whether an fsync
   is needed). Nothing in step 2 may leave the process before step 1 returned: a vote or an append
   acknowledgement sent before it is on disk can elect two leaders or lose a committed entry after a crash.
2. Send `messages`.
3. If `snapshot` is set, restore the application state from it; then apply `committed_entries` in order.
4. Hand `read_states` to waiting readers once `applied_index >= read_state.index`.
5. Call `core.advance(ready)`.

One exception to step 1, the early send (thesis §10.2.1): a leader whose Ready changes neither its term nor
its vote, and whose commit index covers none of the entries being written, may send `messages` before its
write, so that its disk and the followers' work in parallel. Both drivers run exactly this order, early send
included, through one routine: `consensus.ready_loop.handle_ready` (the rule is its `may_send_early`, with the
reason it is safe). The simulator crashes nodes between an early send and the end of the write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consensus.messages import Entry, Message, NodeId, Snapshot


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"
    LEARNER = "learner"


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash (Figure 2's persistent state, plus commit to speed up restarts)."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile, for observers only: never persisted."""

    leader_id: NodeId | None
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches `index`."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    soft_state: SoftState | None
    """Set when leader or role changed since the last Ready."""
    hard_state: HardState | None
    """Set when it changed; persist before sending `messages`."""
    entries: tuple[Entry, ...]
    """Entries to append to stable storage before sending `messages` (may overwrite a conflicting suffix)."""
    snapshot: Snapshot | None
    """A snapshot received from the leader, to persist and then install into the application."""
    committed_entries: tuple[Entry, ...]
    """Entries known committed and already persisted: apply them, in order."""
    messages: tuple[Message, ...]
    """Send after persisting (a leader may send them first: the early send, above)."""
    read_states: tuple[ReadState, ...]
    must_sync: bool
    """True when hard state term/vote or entries changed: the write must be fsynced."""
