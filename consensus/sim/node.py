"""One simulated node: a Raft, its SimStorage and a tiny application, driven by the Ready contract.

The application is a hash chain over the applied entries: its state after index i is a digest of every entry
1..i, so two nodes that applied different entries anywhere end up with different states. Client writes are
NORMAL entries whose data starts with b"w"; reads are ReadIndex reads served from that state.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import msgpack

from consensus.config import Config
from consensus.invariant import require
from consensus.membership import ConfChange
from consensus.messages import Entry, Message, NodeId, Snapshot
from consensus.ready import ReadState, Ready, Role
from consensus.sim.storage import SimStorage

GENESIS_STATE = bytes(16)
_INDEX = struct.Struct(">QB")


class Core(Protocol):
    """The part of consensus.raft.Raft the simulator drives (a test may plant a faulty one)."""

    @property
    def term(self) -> int: ...
    @property
    def role(self) -> Role: ...
    @property
    def commit_index(self) -> int: ...
    @property
    def voters(self) -> frozenset[NodeId]: ...
    @property
    def learners(self) -> frozenset[NodeId]: ...
    def tick(self) -> None: ...
    def campaign(self) -> None: ...
    def step(self, msg: Message) -> None: ...
    def propose(self, data: bytes) -> int: ...
    def propose_conf_change(self, cc: ConfChange) -> int: ...
    def apply_conf_change(self, cc: ConfChange) -> None: ...
    def read_index(self, context: bytes) -> None: ...
    def transfer_leadership(self, to: NodeId) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, ready: Ready) -> None: ...


CoreFactory = Callable[[Config, SimStorage, random.Random], Core]


@dataclass(slots=True)
class App:
    applied: int = 0
    state: bytes = GENESIS_STATE
    writes: int = 0

    def apply(self, entry: Entry) -> None:
        require(entry.index == self.applied + 1, f"apply {entry.index} after {self.applied}")
        h = hashlib.blake2b(self.state, digest_size=16)
        h.update(_INDEX.pack(entry.index, int(entry.type)))
        h.update(entry.data)
        self.state = h.digest()
        self.applied = entry.index
        if entry.data[:1] == b"w":
            self.writes += 1

    def snapshot_data(self) -> bytes:
        data: bytes = msgpack.packb([self.applied, self.state, self.writes])
        return data

    @classmethod
    def restore(cls, snapshot: Snapshot) -> App:
        if snapshot.meta.index == 0:
            return cls()
        applied, state, writes = msgpack.unpackb(snapshot.data[:])
        require(applied == snapshot.meta.index, "snapshot data must be the state at the snapshot's index")
        return cls(applied, state, writes)


@dataclass(slots=True)
class SimNode:
    id: NodeId
    storage: SimStorage
    core: Core | None = None
    app: App = field(default_factory=App)
    leader_term: int | None = None
    """The term this node was leader in at the end of its last step (None if it was not leader)."""
    commit_seen: int = 0
    """Highest commit index already reported to the checker."""
    pending_reads: list[tuple[ReadState, int]] = field(default_factory=list)
    """ReadStates waiting for the applied index, with the acknowledged index when each read started."""
    incarnation: int = 0
    crash_in_write: int | None = None
    """Set (to the restart delay in ms) when a crash is armed to strike this node's next write."""

    @property
    def up(self) -> bool:
        return self.core is not None
