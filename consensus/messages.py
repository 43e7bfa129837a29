"""Raft messages and log entries: frozen, slotted values with no behaviour.

Vocabulary follows the Raft paper (Ongaro & Ousterhout, 2014) and etcd-io/raft. One `Message` type carries
every kind (like etcd's raftpb.Message) so that transport and simulator handle a single shape; which fields
matter for which `MessageType` is documented on each field.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import NamedTuple, Protocol

NodeId = str
"""A node's id as written in cluster.toml (`[[nodes]] id`)."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    """Application data (a block), or empty data for the no-op a new leader appends (§5.4.2)."""
    CONF_CHANGE = 1
    """`data` is an encoded `ConfChange` (see consensus.membership)."""


class Entry(NamedTuple):
    """One log entry. Immutable, with the API of a frozen dataclass (keywords, attributes, equality only between
    entries, `dataclasses.replace` / `asdict`), but a tuple underneath: a node builds one per entry it proposes
    or receives, hundreds of thousands per second, and a tuple is built in C (`entries_from_columns`) where a
    frozen dataclass's `__init__` runs Python bytecode and one `object.__setattr__` per field."""

    term: int
    index: int  # type: ignore[assignment]  # shadows tuple.index, as intended
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    # Equal only to another Entry, as a dataclass would be (a plain tuple with the same items is not an entry).
    def __eq__(self, other: object) -> bool:
        if other.__class__ is Entry:
            return tuple.__eq__(self, other)
        return False if isinstance(other, tuple) else NotImplemented

    def __ne__(self, other: object) -> bool:
        if other.__class__ is Entry:
            return tuple.__ne__(self, other)
        return True if isinstance(other, tuple) else NotImplemented


@dataclass(frozen=True)
class _EntryFields:
    """Entry's fields as dataclass metadata, lent to Entry so that `dataclasses.replace/asdict/fields` work."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


for _name in ("__dataclass_fields__", "__dataclass_params__"):
    setattr(Entry, _name, getattr(_EntryFields, _name))


def entries_from_columns(terms: Iterable[int], indexes: Iterable[int], types: Iterable[EntryType],
                         datas: Iterable[bytes]) -> list[Entry]:
    """Entries built from parallel columns without Python bytecode per entry (tuple.__new__ mapped in C); the
    columns must have equal lengths; the caller guarantees the field types, as `Entry(...)` would not check them
    either."""
    return list(map(_new_tuple, repeat(Entry), zip(terms, indexes, types, datas, strict=True)))


_new_tuple: Callable[[type[Entry], tuple[int, int, EntryType, bytes]], Entry] = tuple.__new__


def entry_columns(entries: Sequence[Entry]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[EntryType, ...],
                                                     tuple[bytes, ...]]:
    """The terms, indexes, types and datas of `entries`, in one C-level pass (a transpose of the tuples)."""
    if not entries:
        return (), (), (), ()
    terms, indexes, types, datas = zip(*entries, strict=True)
    return terms, indexes, types, datas


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


class SnapshotBytes(Protocol):
    """What the core needs of a snapshot's data: its length and slices of it as bytes (to cut chunks). A storage
    may hand out something lighter than `bytes` for a large snapshot (LevelDBStorage maps its file)."""

    def __len__(self) -> int: ...
    def __getitem__(self, key: slice, /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes | SnapshotBytes = b""
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
