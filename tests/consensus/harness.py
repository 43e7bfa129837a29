"""A tiny deterministic in-memory network of Raft cores (etcd-io/raft's raft_test.go `network`).

Each node has a MemoryStorage; its Readies are carried out by `consensus.ready_loop.handle_ready`, the routine
the node and the simulator run (early send included), with `_HarnessIO` doing the work: save into the storage,
queue the messages, apply (calling `apply_conf_change` for CONF_CHANGE entries), advance. `deliver()` runs until
no node has a Ready and no message is in flight. Faults: `drop(a, b, fraction)` for a link, `cut(a, b)`,
`isolate(a)`, `recover()`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from consensus.codec import decode_message, encode_message
from consensus.config import Config
from consensus.membership import decode_conf_change
from consensus.messages import Entry, EntryType, Message, MessageType, NodeId, Snapshot
from consensus.raft import Raft
from consensus.ready import ReadState, Ready, Role
from consensus.ready_loop import handle_ready
from consensus.storage import MemoryStorage

DELIVER_STEPS_MAX = 100_000


@dataclass
class Node:
    core: Raft
    storage: MemoryStorage
    applied: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    snapshots_installed: int = 0


class Network:
    def __init__(self, ids: Iterable[NodeId], *, seed: int = 1, learners: Iterable[NodeId] = (),
                 wire: bool = True, **config: int | bool) -> None:
        self.ids = list(ids)
        self.learners = list(learners)
        self.config = config
        self.rng = random.Random(seed)
        self.nodes: dict[NodeId, Node] = {}
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        """Every message handed to the network (delivered or not), in order."""
        self.dropped: dict[tuple[NodeId, NodeId], float] = {}
        self.wire = wire
        """Round-trip every message through the codec, as the real transport does."""
        self.msg_filter: Callable[[Message], bool] | None = None
        for nid in self.ids + self.learners:
            self.add_node(nid, MemoryStorage(tuple(self.ids), tuple(self.learners)))

    def add_node(self, nid: NodeId, storage: MemoryStorage) -> Node:
        cfg = Config(id=nid, **self.config)  # type: ignore[arg-type]
        node = Node(Raft(cfg, storage, random.Random(f"{nid}-{self.rng.random()}")), storage)
        self.nodes[nid] = node
        return node

    def restart(self, nid: NodeId) -> None:
        """Crash and restart `nid` from its storage (volatile state lost)."""
        old = self.nodes[nid]
        self.queue = [m for m in self.queue if m.to != nid]
        new = self.add_node(nid, old.storage)
        # The application restarts from its snapshot; the core replays the committed entries after it.
        snap_index = old.storage.snapshot().meta.index
        new.applied = [e for e in old.applied if e.index <= snap_index]

    def core(self, nid: NodeId) -> Raft:
        return self.nodes[nid].core

    # -- fault injection

    def cut(self, a: NodeId, b: NodeId) -> None:
        self.dropped[(a, b)] = 1.0
        self.dropped[(b, a)] = 1.0

    def drop(self, a: NodeId, b: NodeId, fraction: float) -> None:
        self.dropped[(a, b)] = fraction

    def isolate(self, a: NodeId) -> None:
        for b in self.nodes:
            if b != a:
                self.cut(a, b)

    def partition(self, *groups: Iterable[NodeId]) -> None:
        """Only nodes in the same group can talk; a node in no group is isolated."""
        group_of: dict[NodeId, int] = {}
        for g, members in enumerate(groups):
            for nid in members:
                group_of[nid] = g
        self.dropped.clear()
        for a in self.nodes:
            for b in self.nodes:
                if a != b and (a not in group_of or group_of.get(a) != group_of.get(b)):
                    self.dropped[(a, b)] = 1.0

    def recover(self) -> None:
        self.dropped.clear()

    # -- driving

    def process_ready(self, nid: NodeId) -> bool:
        node = self.nodes[nid]
        core = node.core
        if not core.has_ready():
            return False
        # The storage is in memory, so what the last save left is what is durable.
        handle_ready(core.ready(), _HarnessIO(self, node), role=core.role, persisted=node.storage.hard_state)
        return True

    def flush(self) -> None:
        """Process every pending Ready once (no delivery)."""
        for nid in list(self.nodes):
            while self.process_ready(nid):
                pass

    def deliver(self, max_steps: int = DELIVER_STEPS_MAX) -> int:
        """Run until quiet; returns the number of messages delivered."""
        delivered = 0
        for _ in range(max_steps):
            self.flush()
            if not self.queue:
                return delivered
            batch, self.queue = self.queue, []
            for m in batch:
                if self._lost(m):
                    continue
                delivered += 1
                if self.wire:
                    m = decode_message(encode_message(m))
                self.nodes[m.to].core.step(m)
        raise AssertionError("network did not go quiet")

    def _lost(self, m: Message) -> bool:
        if m.to not in self.nodes:
            return True
        if self.msg_filter is not None and not self.msg_filter(m):
            return True
        p = self.dropped.get((m.from_id, m.to), 0.0)
        return p > 0 and (p >= 1.0 or self.rng.random() < p)

    def send(self, *msgs: Message) -> None:
        self.queue.extend(msgs)
        self.deliver()

    def tick(self, nid: NodeId, n: int = 1) -> None:
        for _ in range(n):
            self.core(nid).tick()

    def tick_all(self, n: int = 1, deliver: bool = True) -> None:
        for _ in range(n):
            for nid in list(self.nodes):
                self.nodes[nid].core.tick()
            if deliver:
                self.deliver()

    def elect(self, nid: NodeId) -> None:
        self.core(nid).campaign()
        self.deliver()
        assert self.core(nid).role is Role.LEADER, f"{nid} failed to win: {self.core(nid).status()}"

    def propose(self, nid: NodeId, data: bytes) -> int:
        index = self.core(nid).propose(data)
        self.deliver()
        return index

    def leaders(self) -> list[NodeId]:
        return [nid for nid, n in self.nodes.items() if n.core.role is Role.LEADER]

    def applied_data(self, nid: NodeId) -> list[bytes]:
        return [e.data for e in self.nodes[nid].applied if e.type is EntryType.NORMAL and e.data]

    def count(self, kind: MessageType) -> int:
        return sum(1 for m in self.sent if m.type is kind)


class _HarnessIO:
    """The harness's `consensus.ready_loop.ReadyIO` for one node: MemoryStorage, the queue, `Node.applied`."""

    __slots__ = ("_net", "_node")

    def __init__(self, net: Network, node: Node) -> None:
        self._net = net
        self._node = node

    def persist(self, rd: Ready) -> None:
        self._node.storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)

    def send(self, messages: tuple[Message, ...]) -> None:
        self._net.sent.extend(messages)
        self._net.queue.extend(messages)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        node = self._node
        node.snapshots_installed += 1
        node.applied = [e for e in node.applied if e.index <= snapshot.meta.index]

    def apply(self, entries: tuple[Entry, ...]) -> None:
        node = self._node
        for e in entries:
            node.applied.append(e)
            if e.type is EntryType.CONF_CHANGE:
                node.core.apply_conf_change(decode_conf_change(e.data))

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        self._node.read_states.extend(read_states)

    def advance(self, rd: Ready) -> None:
        self._node.core.advance(rd)
