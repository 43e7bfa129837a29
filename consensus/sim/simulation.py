"""The deterministic Raft simulator (TigerBeetle's VOPR in miniature).

A discrete-event loop over integer milliseconds runs N Raft instances. Each node ticks on its own (slightly skewed)
clock; messages travel through `Network`; a chaos schedule proposes writes, reads, membership changes,
leadership transfers and compactions, and - for the enabled faults - crashes nodes (losing unsynced writes),
partitions the network and drops, duplicates and delays messages. Every choice comes from one
`random.Random(seed)`, so a seed replays bit for bit (`trace_hash` proves it).

Each Ready is carried out by `consensus.ready_loop.handle_ready`, the routine the node runs, so leaders send
before persisting when its early-send rule allows. A write is synchronous here as in the node: messages go onto
the simulated network and are delivered only as later events, so no acknowledgement is stepped before the write
returned. What the early send does risk is a crash while the write is in flight, with the messages already out;
so some crashes are armed to strike a node's next write instead of striking at once ("crash in write"): the
messages the rule let out are on the wire, the write never reaches the disk, unsynced earlier writes may be lost
too, and the checkers judge what follows. An over-eager rule (a follower acknowledging, or anyone voting, before
the write) is caught that way.

After every step the `Checker` verifies Raft's safety properties. At the end the network heals, every node
restarts, and the cluster must converge with every committed entry in place.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

from consensus.config import Config
from consensus.errors import NotLeaderError, ProposalDroppedError
from consensus.membership import ConfChange, ConfChangeType, decode_conf_change
from consensus.messages import Entry, EntryType, Message, MessageType, NodeId, Snapshot, SnapshotMeta
from consensus.raft import Raft
from consensus.ready import ReadState, Ready, Role
from consensus.ready_loop import handle_ready
from consensus.sim.checkers import Checker, SafetyViolation
from consensus.sim.network import PARTITION_KINDS, LinkFaults, Network, cut_links
from consensus.sim.node import App, Core, CoreFactory, SimNode
from consensus.sim.storage import SimStorage

FAULT_KINDS = ("drop", "duplicate", "reorder", "partition", "crash")


def parse_faults(spec: str) -> frozenset[str]:
    """`all`, `none`, or a comma list of FAULT_KINDS."""
    if spec == "all":
        return frozenset(FAULT_KINDS)
    if spec in ("none", ""):
        return frozenset()
    kinds = frozenset(s.strip() for s in spec.split(","))
    unknown = kinds - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
    return kinds


def faults_spec(faults: frozenset[str]) -> str:
    if faults == frozenset(FAULT_KINDS):
        return "all"
    return ",".join(k for k in FAULT_KINDS if k in faults) or "none"


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int
    nodes: int = 5
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    steps: int = 20_000
    """Events (a tick, a delivery, a chaos action) before the final heal-and-converge phase."""
    tick_ms: int = 10
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    latency_ms_max: int = 8
    fixed_latency_ms: int | None = None
    """If set, every message takes exactly this long one way (benchmarks); otherwise 1 ms without "reorder"."""
    chaos_ms: int = 10
    """Mean interval between chaos actions."""
    # Chance per chaos action, in parts per thousand.
    propose_permille: int = 500
    read_permille: int = 120
    conf_change_permille: int = 15
    transfer_permille: int = 8
    compact_permille: int = 40
    crash_permille: int = 12
    crash_leader_permille: int = 500
    """Of the crashes, how many hit a leader."""
    crash_in_write_permille: int = 500
    """Of the crashes, how many wait for the node's next write and strike while it is in flight (after the
    messages the early-send rule let out, before the write reached the disk)."""
    partition_permille: int = 10
    restart_ms_max: int = 1000
    """A crashed node restarts 20 ms .. this much later."""
    max_msg_bytes: int = 64
    """Entry bytes per AppendEntries: small, so that logs are shipped in several messages."""
    max_inflight_msgs: int = 8
    max_uncommitted_bytes: int = 4096
    max_snapshot_chunk_bytes: int = 16
    """Small: a snapshot (about 30 bytes here) travels in several chunks."""
    pre_vote: int = 1
    check_quorum: int = 1
    extra_nodes_max: int = 2
    """How many nodes beyond `nodes` conf changes may add over a run."""
    converge_ms_max: int = 60_000

    def replay_command(self) -> str:
        """The command line that reruns exactly this configuration (tuning overrides as `--set k=v`)."""
        cmd = f"./scripts/simulate --seed {self.seed} --nodes {self.nodes} --faults {faults_spec(self.faults)}" \
              f" --steps {self.steps}"
        default = SimConfig(seed=self.seed)
        for name in TUNABLES:
            value = getattr(self, name)
            if value != getattr(default, name):
                cmd += f" --set {name}={value}"
        return cmd

    def with_overrides(self, assignments: list[str]) -> SimConfig:
        """Apply `name=int` assignments to tunable fields (raises ValueError on an unknown name or bad value)."""
        changes: dict[str, int] = {}
        for item in assignments:
            name, sep, value = item.partition("=")
            if not sep or name not in TUNABLES:
                raise ValueError(f"--set {item!r}: expected NAME=INT with NAME one of {', '.join(TUNABLES)}")
            changes[name] = int(value)
        return replace(self, **changes)  # type: ignore[arg-type]


TUNABLES = tuple(f.name for f in fields(SimConfig) if f.name not in ("seed", "nodes", "faults", "steps"))


@dataclass(slots=True)
class RunStats:
    seed: int
    steps: int = 0
    elections: int = 0
    committed: int = 0
    crashes: int = 0
    lost_writes: int = 0
    partitions: int = 0
    dropped: int = 0
    duplicated: int = 0
    messages: int = 0
    proposals: int = 0
    reads: int = 0
    conf_changes: int = 0
    transfers: int = 0
    compactions: int = 0
    snapshots_installed: int = 0
    early_sends: int = 0
    """Writes that began after their Ready's messages had left (a leader's early send)."""
    crashes_in_write: int = 0
    """Crashes that struck while a write was in flight (counted in `crashes` too)."""
    crashes_after_early_send: int = 0
    """Of those, how many with the Ready's messages already sent."""
    sim_ms: int = 0
    trace_hash: str = ""


class Trace:
    """A running hash of every event (for determinism checks) and the most recent lines (for a report)."""

    def __init__(self, keep: int = 60, echo: bool = False) -> None:
        self._hash = hashlib.blake2b(digest_size=16)
        self.recent: deque[str] = deque(maxlen=keep)
        self._echo = echo

    def add(self, line: str) -> None:
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.recent.append(line)
        if self._echo:
            print(line)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _msg_line(m: Message) -> str:
    return (f"{m.type.name} {m.from_id}>{m.to} t{m.term} i{m.index} lt{m.log_term} c{m.commit} "
            f"n{len(m.entries)} r{int(m.reject)}")


class Simulation:
    def __init__(self, cfg: SimConfig, core_factory: CoreFactory | None = None, echo: bool = False,
                 storage_factory: Callable[[NodeId, tuple[NodeId, ...]], SimStorage] | None = None) -> None:
        self.cfg = cfg
        self.storage_factory = storage_factory or (lambda nid, voters: SimStorage(voters))
        self.rng = random.Random(cfg.seed)
        self.core_factory: CoreFactory = core_factory or Raft
        self.trace = Trace(echo=echo)
        self.checker = Checker()
        self.stats = RunStats(seed=cfg.seed)
        self.now = 0
        self._events: list[tuple[int, int, str, NodeId]] = []
        self._seq = 0
        self.initial_voters = tuple(f"n{i}" for i in range(1, cfg.nodes + 1))
        self.nodes: dict[NodeId, SimNode] = {}
        self.net = Network(self.rng, self._draw_link_faults())
        self._tick_ms: dict[NodeId, int] = {}
        self._heal_at: int | None = None
        self._next_id = cfg.nodes + 1
        self._writes = 0
        self._reads = 0
        self._read_started: dict[bytes, int] = {}
        self._chaos = True
        for nid in self.initial_voters:
            self._add_node(nid)
        self._schedule(self.rng.randint(1, cfg.chaos_ms), "chaos", "")

    # -- setup -----------------------------------------------------------------------------------------------

    def _draw_link_faults(self) -> LinkFaults:
        f, rng = self.cfg.faults, self.rng
        fixed = self.cfg.fixed_latency_ms
        latency_min = fixed if fixed is not None else 1
        latency_max = rng.randint(2, self.cfg.latency_ms_max) if "reorder" in f else latency_min
        return LinkFaults(
            drop_permille=rng.randint(5, 120) if "drop" in f else 0,
            duplicate_permille=rng.randint(5, 60) if "duplicate" in f else 0,
            latency_ms_min=latency_min,
            latency_ms_max=max(latency_min, latency_max),
            slow_permille=rng.randint(10, 100) if "reorder" in f else 0,
            slow_ms_max=self.cfg.tick_ms * self.cfg.election_ticks if "reorder" in f else 0,
        )

    def _add_node(self, nid: NodeId) -> SimNode:
        # Every node, also one added later, bootstraps with the initial configuration (the one at index 0)
        # and learns the rest from the log or a snapshot.
        node = SimNode(nid, self.storage_factory(nid, self.initial_voters))
        self.nodes[nid] = node
        self._start(node)
        # Clocks drift a little: each node ticks every tick_ms +- 10%.
        spread = max(1, self.cfg.tick_ms // 10)
        self._tick_ms[nid] = self.cfg.tick_ms + self.rng.randint(-spread, spread)
        self._schedule(self.rng.randint(1, self._tick_ms[nid]), "tick", nid)
        return node

    def _start(self, node: SimNode) -> None:
        cfg = self.cfg
        config = Config(id=node.id, election_ticks=cfg.election_ticks, heartbeat_ticks=cfg.heartbeat_ticks,
                        max_inflight_msgs=cfg.max_inflight_msgs, max_msg_bytes=cfg.max_msg_bytes,
                        max_uncommitted_bytes=cfg.max_uncommitted_bytes,
                        max_snapshot_chunk_bytes=cfg.max_snapshot_chunk_bytes, pre_vote=bool(cfg.pre_vote),
                        check_quorum=bool(cfg.check_quorum))
        node.incarnation += 1
        core_rng = random.Random(self.rng.getrandbits(64))
        node.core = self.core_factory(config, node.storage, core_rng)
        node.app = App.restore(node.storage.snapshot())
        node.commit_seen = node.storage.visible.snap_index
        node.leader_term = None
        node.pending_reads = []

    def _schedule(self, delay_ms: int, kind: str, nid: NodeId) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now + delay_ms, self._seq, kind, nid))

    # -- the loop --------------------------------------------------------------------------------------------

    def run(self) -> RunStats:
        for _ in range(self.cfg.steps):
            self.step()
        self.converge()
        s = self.stats
        s.committed = self.checker.max_committed
        s.dropped, s.duplicated, s.messages = self.net.dropped, self.net.duplicated, self.net.sent
        s.sim_ms = self.now
        s.trace_hash = self.trace.hexdigest()
        return s

    def step(self) -> None:
        """Process the next event (a due message first, on a tie), then check."""
        self.stats.steps += 1
        next_msg = self.net.next_delivery_ms()
        if next_msg is not None and (not self._events or next_msg <= self._events[0][0]):
            self.now = max(self.now, next_msg)
            msg = self.net.pop_due(self.now)
            if msg is not None:
                self._deliver(msg)
            return
        at, _, kind, nid = heapq.heappop(self._events)
        self.now = at
        if kind == "tick":
            self._tick(nid)
        elif kind == "chaos":
            if self._chaos:
                self._chaos_action()
            self._schedule(self.rng.randint(1, 2 * self.cfg.chaos_ms), "chaos", "")
        elif kind == "restart":
            self._restart(nid)
        elif kind == "heal":
            self._heal()

    def _tick(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        self._schedule(self._tick_ms[nid], "tick", nid)
        if node.core is None:
            return
        node.core.tick()
        self._drive(node)

    def _deliver(self, msg: Message) -> None:
        node = self.nodes.get(msg.to)
        if node is None or node.core is None:
            self.net.dropped += 1
            return
        self.trace.add(f"{self.now} recv {_msg_line(msg)}")
        node.core.step(msg)
        self._drive(node)

    # -- the Ready contract ----------------------------------------------------------------------------------

    def _drive(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        try:
            while core.has_ready():
                self._handle_ready(node, core.ready())
        except _CrashedInWrite:
            return  # the node is down; what it had sent is on the wire
        node.leader_term = core.term if core.role == Role.LEADER else None

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        if core.role == Role.LEADER and node.leader_term != core.term:
            self._on_new_leader(node, core.term)
            node.leader_term = core.term
        # What the last write left: term and vote changes are always synced, so this is also what is durable.
        persisted = node.storage.visible.hard_state
        handle_ready(rd, _SimReadyIO(self, node, core), role=core.role, persisted=persisted)

    def _persist(self, node: SimNode, role: Role, rd: Ready, sent_before: int) -> None:
        st, ck = node.storage, self.checker
        if sent_before:
            self.stats.early_sends += 1
        if node.crash_in_write is not None:
            self._crash_in_write(node, sent_before)
        # (Everything before this write is persisted, so a leader now was leader for all of it.)
        leader_last = st.last_index() if role == Role.LEADER else None
        if rd.hard_state is not None:
            ck.on_hard_state(node.id, st.visible.hard_state, rd.hard_state)
        st.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
        new = tuple(e for e in rd.entries if e.index > st.visible.snap_index)
        if new:
            ck.on_append(node.id, st.term(new[0].index - 1), new, leader_last=leader_last)
        if rd.snapshot is not None:
            self.trace.add(f"{self.now} {node.id} persist snapshot@{rd.snapshot.meta.index}")
        if rd.hard_state is not None:
            self._observe_commit(node, rd.hard_state.commit)

    def _crash_in_write(self, node: SimNode, sent_before: int) -> None:
        """The process dies with this write in flight: it never reaches the disk (unsynced earlier writes may
        be lost too), and the `sent_before` messages already sent stay on the wire."""
        restart_after_ms = node.crash_in_write
        self.stats.crashes_in_write += 1
        if sent_before:
            self.stats.crashes_after_early_send += 1
        self.trace.add(f"{self.now} {node.id} crash in write, {sent_before} messages out")
        self.crash(node.id, restart_after_ms)
        raise _CrashedInWrite(node.id)

    def _hand_read_states(self, node: SimNode, read_states: tuple[ReadState, ...]) -> None:
        for rs in read_states:
            started = self._read_started.pop(rs.context, None)
            if started is not None:  # a duplicate answer to a read already served is ignored
                node.pending_reads.append((rs, started))
        self._serve_reads(node)

    def _on_new_leader(self, node: SimNode, term: int) -> None:
        if self.checker.on_leader(node.id, term):
            self.stats.elections += 1
        self.trace.add(f"{self.now} {node.id} leader t{term}")
        v = node.storage.visible
        term_at = {e.index: e.term for e in v.entries}
        snap_state = App.restore(v.snapshot).state
        self.checker.check_leader_completeness(node.id, term, v.snap_index, snap_state, term_at)

    def _observe_commit(self, node: SimNode, commit: int) -> None:
        v = node.storage.visible
        if commit > v.last_index:
            raise SafetyViolation("commit_beyond_log", f"{node.id} commit {commit} > last index {v.last_index}")
        for index in range(max(node.commit_seen, v.snap_index) + 1, commit + 1):
            self.checker.on_commit(node.id, v.entry(index))
        node.commit_seen = max(node.commit_seen, commit)

    def _send(self, node: SimNode, m: Message) -> None:
        if m.type not in (MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP):
            grant = m.to if m.type == MessageType.VOTE_RESP and not m.reject else None
            self.checker.on_send(node.id, m.term, grant)
        self.trace.add(f"{self.now} send {_msg_line(m)}")
        self.net.send(self.now, m)

    def _install_snapshot(self, node: SimNode, snapshot: Snapshot) -> None:
        if snapshot.meta.index <= node.app.applied:
            return
        node.app = App.restore(snapshot)
        self.checker.on_restore(node.id, node.app.applied, node.app.state)
        self.stats.snapshots_installed += 1

    def _apply(self, node: SimNode, e: Entry) -> None:
        assert node.core is not None
        app = node.app
        if e.index <= app.applied:
            self.checker.on_commit(node.id, e)  # re-delivered after a restart: must be the same entry
            return
        if e.index != app.applied + 1:
            raise SafetyViolation("apply_order", f"{node.id} got entry {e.index} to apply after {app.applied}")
        v = node.storage.visible
        if e.index > v.snap_index and (e.index > v.last_index or v.entry(e.index) != e):
            raise SafetyViolation("apply_unpersisted", f"{node.id} was told to apply entry {e.index} that is not "
                                  f"in its persisted log")
        app.apply(e)
        self.checker.on_apply(node.id, e, app.state)
        if e.type == EntryType.CONF_CHANGE:
            cc = decode_conf_change(e.data)
            node.core.apply_conf_change(cc)
            self.trace.add(f"{self.now} {node.id} apply conf {cc.type.name} {cc.node_id} @{e.index}")
        elif e.data[:1] == b"w":
            self.checker.on_write_acked(e.data, e.index)

    def _serve_reads(self, node: SimNode) -> None:
        keep = []
        for rs, acked_before in node.pending_reads:
            if rs.index <= node.app.applied:
                self.checker.check_read(node.id, rs.index, node.app.applied, acked_before)
                self.stats.reads += 1
            else:
                keep.append((rs, acked_before))
        node.pending_reads = keep

    # -- chaos -----------------------------------------------------------------------------------------------

    def leader(self) -> SimNode | None:
        """The live node that believes it leads, in the highest term (None if none)."""
        leaders = [n for n in self.nodes.values() if n.core is not None and n.core.role == Role.LEADER]
        return max(leaders, key=lambda n: (n.core.term, n.id)) if leaders else None  # type: ignore[union-attr]

    def _up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def _chaos_action(self) -> None:
        cfg, rng = self.cfg, self.rng
        roll = rng.randrange(1000)
        for permille, action in (
            (cfg.propose_permille, self._propose),
            (cfg.read_permille, self._read),
            (cfg.conf_change_permille, self._conf_change),
            (cfg.transfer_permille, self._transfer),
            (cfg.compact_permille, self._compact),
            (cfg.crash_permille if "crash" in cfg.faults else 0, self._crash),
            (cfg.partition_permille if "partition" in cfg.faults and self._heal_at is None else 0,
             self._partition),
        ):
            if roll < permille:
                action()
                return
            roll -= permille

    def _propose(self) -> None:
        leader = self.leader()
        up = self._up_nodes()
        # Now and then ask a random node: a follower must refuse (NotLeaderError).
        target = leader if leader is not None and self.rng.randrange(10) else (self.rng.choice(up) if up else None)
        if target is None or target.core is None:
            return
        self._writes += 1
        data = b"w%d" % self._writes
        try:
            index = target.core.propose(data)
        except (NotLeaderError, ProposalDroppedError) as exc:
            self.trace.add(f"{self.now} {target.id} propose refused {type(exc).__name__}")
            return
        self.stats.proposals += 1
        self.trace.add(f"{self.now} {target.id} propose {data.decode()} @{index}")
        self._drive(target)

    def _read(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        assert node.core is not None
        self._reads += 1
        ctx = b"r%d" % self._reads
        self._read_started[ctx] = self.checker.max_acked_index
        try:
            node.core.read_index(ctx)
        except NotLeaderError:
            del self._read_started[ctx]
            return
        self.trace.add(f"{self.now} {node.id} read {ctx.decode()}")
        self._drive(node)

    def _conf_change(self) -> None:
        leader = self.leader()
        if leader is None or leader.core is None:
            return
        core, rng = leader.core, self.rng
        voters, learners = sorted(core.voters), sorted(core.learners)
        choices: list[ConfChange] = []
        if self._next_id <= self.cfg.nodes + self.cfg.extra_nodes_max:
            fresh = f"n{self._next_id}"
            choices += [ConfChange(ConfChangeType.ADD_LEARNER, fresh), ConfChange(ConfChangeType.ADD_VOTER, fresh)]
        choices += [ConfChange(ConfChangeType.ADD_VOTER, n) for n in learners]
        choices += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in learners]
        if len(voters) >= 3:
            choices += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in voters]
        # A removed node that kept its storage may come back (its log only lags; its term and vote are intact).
        removed = sorted(set(self.nodes) - set(voters) - set(learners))
        choices += [ConfChange(t, n) for n in removed for t in (ConfChangeType.ADD_LEARNER, ConfChangeType.ADD_VOTER)]
        if not choices:
            return
        cc = rng.choice(choices)
        if rng.randrange(10) == 0:  # now and then a change that changes nothing
            cc = rng.choice([ConfChange(ConfChangeType.ADD_VOTER, voters[0]),
                             ConfChange(ConfChangeType.ADD_LEARNER, voters[-1]),
                             ConfChange(ConfChangeType.REMOVE_NODE, "n99")])
        try:
            index = core.propose_conf_change(cc)
        except (NotLeaderError, ProposalDroppedError) as exc:
            self.trace.add(f"{self.now} {leader.id} conf refused {type(exc).__name__}")
            return
        if cc.node_id not in self.nodes:
            self._next_id += 1
            self._add_node(cc.node_id)
        self.stats.conf_changes += 1
        self.trace.add(f"{self.now} {leader.id} propose conf {cc.type.name} {cc.node_id} @{index}")
        self._drive(leader)

    def _transfer(self) -> None:
        leader = self.leader()
        if leader is None or leader.core is None:
            return
        others = sorted(n for n in leader.core.voters if n != leader.id)
        if self.rng.randrange(5) == 0:  # to itself, a learner, a removed node: must be refused or ignored
            others = sorted(self.nodes)
        if not others:
            return
        to = self.rng.choice(others)
        self.stats.transfers += 1
        self.trace.add(f"{self.now} {leader.id} transfer to {to}")
        leader.core.transfer_leadership(to)
        self._drive(leader)

    def _compact(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        node = self.rng.choice(up)
        assert node.core is not None
        st, app = node.storage, node.app
        if app.applied - st.visible.snap_index < 8:
            return
        meta = SnapshotMeta(index=app.applied, term=st.term(app.applied), voters=tuple(sorted(node.core.voters)),
                            learners=tuple(sorted(node.core.learners)))
        st.compact(Snapshot(meta, app.snapshot_data()))
        self.stats.compactions += 1
        self.trace.add(f"{self.now} {node.id} compact @{app.applied}")

    def _crash(self) -> None:
        up = self._up_nodes()
        if not up:
            return
        leader = self.leader()
        use_leader = leader is not None and self.rng.randrange(1000) < self.cfg.crash_leader_permille
        node = leader if use_leader and leader is not None else self.rng.choice(up)
        restart_after_ms = self.rng.randint(20, max(20, self.cfg.restart_ms_max))
        if self.rng.randrange(1000) < self.cfg.crash_in_write_permille:
            node.crash_in_write = restart_after_ms
            self.trace.add(f"{self.now} {node.id} crash armed for its next write")
            return
        self.crash(node.id, restart_after_ms=restart_after_ms)

    def crash(self, nid: NodeId, restart_after_ms: int | None) -> None:
        """Crash node `nid` now (losing unsynced writes); restart it later unless `restart_after_ms` is None."""
        node = self.nodes[nid]
        lost = node.storage.crash(self.rng)
        node.core = None
        node.leader_term = None
        node.crash_in_write = None
        node.pending_reads = []
        self.net.drop_to(node.id)
        self.stats.crashes += 1
        self.stats.lost_writes += lost
        self.trace.add(f"{self.now} {node.id} crash lost={lost}")
        if restart_after_ms is not None:
            self._schedule(restart_after_ms, "restart", node.id)

    def _restart(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        if node.core is not None:
            return
        v = node.storage.visible
        hs = v.hard_state
        self.checker.check_restart(nid, hs.term, hs.vote, hs.commit, v.last_index)
        self._start(node)
        self.trace.add(f"{self.now} {nid} restart t{hs.term} commit={hs.commit} last={v.last_index}")

    def _partition(self) -> None:
        ids = sorted(self.nodes)
        if len(ids) < 2:
            return
        kind = self.rng.choice(PARTITION_KINDS)
        leader = self.leader()
        self.net.cut = cut_links(kind, ids, leader.id if leader else None, self.rng)
        self.stats.partitions += 1
        duration = self.rng.randint(5 * self.cfg.tick_ms, 300 * self.cfg.tick_ms)
        self._heal_at = self.now + duration
        self._schedule(duration, "heal", "")
        self.trace.add(f"{self.now} partition {kind} cut={len(self.net.cut)} for {duration}ms")

    def _heal(self) -> None:
        if self._heal_at is not None and self.now >= self._heal_at:
            self.net.cut = set()
            self._heal_at = None
            self.trace.add(f"{self.now} heal")

    # -- scripted scenarios (tests) -------------------------------------------------------------------------

    def run_until(self, done: Callable[[], bool], limit_ms: int) -> bool:
        """Step until `done()` holds (checked after every step) or `limit_ms` of simulated time pass."""
        deadline = self.now + limit_ms
        while not done():
            if self.now >= deadline:
                return False
            self.step()
        return True

    def campaign(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        assert node.core is not None
        node.core.campaign()
        self._drive(node)

    def propose(self, nid: NodeId, data: bytes) -> int:
        node = self.nodes[nid]
        assert node.core is not None
        index = node.core.propose(data)
        self.trace.add(f"{self.now} {nid} propose {data!r} @{index}")
        self._drive(node)
        return index

    def restart(self, nid: NodeId) -> None:
        self._restart(nid)

    def isolate(self, nid: NodeId, keep: tuple[NodeId, ...] = ()) -> None:
        """Cut every link of `nid` except those to `keep`; what is in flight on them is lost."""
        others = [n for n in self.nodes if n != nid and n not in keep]
        self.net.cut |= {(nid, n) for n in others} | {(n, nid) for n in others}
        self.net.drop_on_cut_links()

    def reconnect(self) -> None:
        self.net.cut = set()

    # -- the end ---------------------------------------------------------------------------------------------

    def converge(self) -> None:
        """Heal everything, restart every node, and wait until all members agree on every committed entry."""
        self._chaos = False
        self.net.cut = set()
        self._heal_at = None
        for node in self.nodes.values():
            node.crash_in_write = None  # chaos is over: an armed crash no longer strikes
        self.net.faults = replace(self.net.faults, drop_permille=0, duplicate_permille=0)
        for nid in sorted(self.nodes):
            if self.nodes[nid].core is None:
                self._restart(nid)
        self.trace.add(f"{self.now} converge")
        deadline = self.now + self.cfg.converge_ms_max
        proposed = False
        while self.now < deadline:
            for _ in range(200):
                self.step()
            leader = self.leader()
            if leader is None or leader.core is None:
                continue
            if not proposed:
                # A write in the final term makes every earlier entry committed through it.
                proposed = True
                try:
                    leader.core.propose(b"final")
                    self._drive(leader)
                except (NotLeaderError, ProposalDroppedError):
                    proposed = False
                continue
            members = sorted(leader.core.voters | leader.core.learners)
            apps = [self.nodes[m].app for m in members if m in self.nodes]
            if (len(apps) == len(members) and len({(a.applied, a.state) for a in apps}) == 1
                    and apps[0].applied >= self.checker.max_committed and apps[0].applied > 0):
                for m in members:
                    self.checker.check_final(m, self.nodes[m].app.applied, self.nodes[m].app.state)
                return
        raise SafetyViolation("liveness", f"no convergence within {self.cfg.converge_ms_max} ms after healing: "
                              + "; ".join(f"{n.id}: applied {n.app.applied} role "
                                          f"{n.core.role.value if n.core else 'down'}"
                                          for n in self.nodes.values()))


class _CrashedInWrite(Exception):
    """Unwinds the Ready of a node that crashed in its write (the simulator's "the process died here")."""


@dataclass(slots=True)
class _SimReadyIO:
    """The simulator's `consensus.ready_loop.ReadyIO` for one Ready of one node."""

    sim: Simulation
    node: SimNode
    core: Core
    sent: int = 0
    """Messages of this Ready sent so far (before the write: an early send)."""

    def persist(self, rd: Ready) -> None:
        self.sim._persist(self.node, self.core.role, rd, self.sent)

    def send(self, messages: tuple[Message, ...]) -> None:
        for m in sorted(messages, key=_recipient):  # stable: the core's order per peer is kept
            self.sim._send(self.node, m)
        self.sent += len(messages)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.sim._install_snapshot(self.node, snapshot)

    def apply(self, entries: tuple[Entry, ...]) -> None:
        for e in entries:
            self.sim._apply(self.node, e)

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        self.sim._hand_read_states(self.node, read_states)

    def advance(self, rd: Ready) -> None:
        self.core.advance(rd)


def _recipient(m: Message) -> NodeId:
    return m.to


@dataclass(slots=True)
class Failure:
    seed: int
    prop: str
    detail: str
    replay: str
    recent: list[str] = field(default_factory=list)


def run_seed(cfg: SimConfig, core_factory: CoreFactory | None = None, echo: bool = False,
             ) -> tuple[RunStats, Failure | None]:
    """Run one seed; any safety violation, or any exception out of the core, is a `Failure`."""
    sim = Simulation(cfg, core_factory, echo=echo)
    try:
        return sim.run(), None
    except SafetyViolation as v:
        return sim.stats, Failure(cfg.seed, v.prop, v.detail, cfg.replay_command(), list(sim.trace.recent))
    except Exception as exc:  # a crash of the core under test is a finding too, with its seed
        return sim.stats, Failure(cfg.seed, "exception", f"{type(exc).__name__}: {exc}", cfg.replay_command(),
                                  list(sim.trace.recent))
