"""Raft messages and log entries: frozen, slotted values with no behaviour.

Vocabulary follows the Raft paper (Ongaro & Ousterhout, 2014) and etcd-io/raft. One `Message` type carries
every kind (like etcd's raftpb.Message) so that transport and simulator handle a single shape; which fields
matter for which `MessageType` is documented on each field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NodeId = str
"""A node's id as written in cluster.toml (`[[nodes]] id`)."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    """Application data (a block), or empty data for the no-op a new leader appends (§5.4.2)."""
    CONF_CHANGE = 1
    """`data` is an encoded `ConfChange` (see consensus.membership)."""


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


class MessageType(enum.IntEnum):
    # Sent between nodes.
    APPEND = 1
    """AppendEntries (§5.3): `index`/`log_term` are prevLogIndex/prevLogTerm, `entries`, `commit`."""
    APPEND_RESP = 2
    """`index` = highest index known to match on success; on `reject`, `reject_hint` (conflict index) and
    `hint_term` (conflict term) let the leader skip a whole term at a time (fast backtracking)."""
    VOTE = 3
    """RequestVote (§5.2): `index`/`log_term` are the candidate's lastLogIndex/lastLogTerm."""
    VOTE_RESP = 4
    PRE_VOTE = 5
    """Pre-vote (thesis §9.6): sent with term+1 without incrementing our own term."""
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    """`commit` = min(leader commit, follower match); `context` echoes a ReadIndex round."""
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    """InstallSnapshot (§7) chunk: `snapshot` metadata plus `chunk` (offset, data, done)."""
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    """Leadership transfer (thesis §3.10): the target starts an election at once, skipping pre-vote."""
    READ_INDEX = 12
    """Follower → leader: ask for the leader's commit index to serve a linearizable read (`context`)."""
    READ_INDEX_RESP = 13
    """Leader → follower: `index` is the read index for `context`."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    """Last log index the snapshot covers."""
    term: int
    """Term of the entry at `index`."""
    voters: tuple[NodeId, ...]
    """Configuration at `index` (sorted)."""
    learners: tuple[NodeId, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes = b""
    """The application's state at `meta.index`, opaque to Raft."""


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    offset: int
    data: bytes
    done: bool
    total_size: int


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    from_id: NodeId
    to: NodeId
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    hint_term: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None
    chunk: SnapshotChunk | None = None
    extra: dict[str, int] = field(default_factory=dict, compare=False, hash=False)
    """Reserved; must stay empty on the wire today. Lets a later version add fields without a new shape."""
