"""The Raft driver: feeds time and peer messages into the pure `Raft` and carries out each `Ready`.

Order per Ready: consensus/ready.py's contract, carried out by `consensus.ready_loop.handle_ready` - the routine
the simulator runs too - with this module's `_DriverIO` doing the work:
    (a leader's early send) -> persist (LevelDBStorage.save, fsync when must_sync) -> send -> install snapshot
    -> apply committed entries into the StateStore -> hand read states to waiting readers -> core.advance().
Everything from "persist" to "advance" runs without an await, so no other coroutine observes a half-done Ready.

A broken invariant (`consensus.invariant.InvariantViolation`) anywhere in the loop - stepping a message, a tick,
a Ready, applying a block, a snapshot - stops the driver for good: it logs `invariant_violation`, sets
`broken_invariant` (and `halted`, which the status and alarms show) and wakes `wait_broken_invariant()`, on which
the process exits with status 70 (node/exit_status.py). Any other error in a Ready only halts the driver
(`halted`): the node stays up and says why.

Applying: a NORMAL entry with data carries one encoded Block. A block that does not chain (`StaleBlockError`, e.g.
proposed by a deposed leader) is skipped — every replica skips it identically, since it depends only on the
chain. After a restart the core replays committed entries above the last Raft snapshot; blocks already in the
StateStore are stale by height and skipped, so apply is idempotent.

Snapshots: every `snapshot_entries` applied entries the StateStore is exported and the log compacted up to the
applied index; a follower too far behind receives that state (in chunks, by the core) and imports it.

Membership (CONTRACT §6, docs/RULES.md §8): the membership in state (`membership()`, changed only by approved
`member.*` txs) is the desired configuration, the Raft configuration the actual one. After a pass that applied
something, and on every tick, the driver reads the state membership, tells the node when it changed
(`Hooks.on_membership`: the transport's peer table follows it), and on the leader proposes the one Raft change
`ecert.reconcile.next_conf_change` names, unless a change is pending (the core allows one at a time, and none
before the leader's first entry is applied). A promotion waits until the learner has caught up
(PROMOTE_LAG_ENTRIES_MAX); removing the leader itself first hands leadership to another voter. Followers never
propose. The plan depends only on applied state, so a change already made is not proposed again: each approved
change is carried out once, by whichever node leads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from consensus.config import Config
from consensus.errors import ProposalDroppedError, RaftError
from consensus.invariant import InvariantViolation, require
from consensus.leveldb_storage import LevelDBStorage
from consensus.membership import ConfChange, ConfChangeType, decode_conf_change
from consensus.messages import Entry, EntryType, Message, Snapshot, SnapshotMeta
from consensus.raft import Raft
from consensus.ready import ReadState, Ready, Role
from consensus.ready_loop import handle_ready
from consensus.storage import CompactedError, UnavailableError
from ecert.membership import ADD_LEARNER, PROMOTE, REMOVE, VOTER, NodeMember
from ecert.reconcile import ConfStep, next_conf_change
from ledger.block import decode_block
from ledger.errors import BlockDecodeError, StaleBlockError

SNAPSHOT_AMORTISE_BYTES_MIN = 8 << 20
"""Below this size a snapshot costs milliseconds and is taken every `snapshot_entries`; above it, also only once
the log since the last one holds half its size in bytes."""

log = logging.getLogger("node.driver")

READ_INDEX_TIMEOUT_S = 5.0

PEER_MESSAGE_ERRORS = (RaftError, CompactedError, UnavailableError)
"""What stepping a malformed or unexpected peer message can raise: the message is dropped, the node goes on.
Never `InvariantViolation`: that one stops the node."""

PROMOTE_LAG_ENTRIES_MAX = 64
"""A learner is promoted only once its log is within this many entries of the leader's last index, and it
answered within the last election timeout (etcd promotes a learner at 90% of the leader's log, for the same
reason: a voter that cannot keep up would weaken the quorum it joins)."""

HANDOVER_ATTEMPTS_MAX = 3
"""A leader to be removed tries this many leadership transfers (each given up after an election timeout); then it
proposes its own removal and steps down when that is applied, so a transfer that never succeeds cannot stall
the change."""

CONF_CHANGE_OF_STEP = {ADD_LEARNER: ConfChangeType.ADD_LEARNER, PROMOTE: ConfChangeType.ADD_VOTER,
                       REMOVE: ConfChangeType.REMOVE_NODE}
"""The Raft change that carries out each ecert.reconcile step."""


class Hooks(Protocol):
    """What the node wants to hear from the driver (all called synchronously, inside a Ready)."""

    def on_block_applied(self, index: int, block: Any, outcomes: Sequence[Any]) -> None: ...
    def on_block_skipped(self, index: int, block: Any, reason: str) -> None: ...
    def on_role_change(self, role: Role, leader_id: str | None, term: int) -> None: ...
    def on_conf_change(self, cc: Any) -> None: ...
    def on_snapshot_installed(self, index: int) -> None: ...
    def on_applied(self, index: int) -> None: ...
    def on_membership(self, members: tuple[NodeMember, ...]) -> None:
        """The state membership changed (or is read for the first time); empty for an ungoverned chain."""
        ...


@dataclass(slots=True)
class DriverStats:
    readies: int = 0
    fsyncs: int = 0
    fsync_seconds_total: float = 0.0
    fsync_seconds_max: float = 0.0
    entries_applied: int = 0
    blocks_applied: int = 0
    blocks_skipped: int = 0
    snapshots_taken: int = 0
    snapshots_installed: int = 0
    messages_sent: int = 0
    conf_changes_proposed: int = 0


class RaftDriver:
    def __init__(
        self,
        *,
        node_id: str,
        raft_dir: Path,
        store: Any,
        executor: Any,
        bootstrap_voters: tuple[str, ...],
        send: Callable[[Message], None],
        hooks: Hooks,
        tick_ms: int = 50,
        election_ticks: int = 10,
        heartbeat_ticks: int = 1,
        snapshot_entries: int = 2000,
        fsync_delay_ms: Callable[[], int] | None = None,
        break_invariant: Callable[[str], bool] | None = None,
        metrics: Any = None,
        membership: Callable[[], Sequence[NodeMember]] | None = None,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self.executor = executor
        self.send = send
        self.hooks = hooks
        self.tick_s = tick_ms / 1000
        self.snapshot_entries = snapshot_entries
        self.fsync_delay_ms = fsync_delay_ms
        self.break_invariant = break_invariant
        """Fault injection only (node/faults.py): asked at "step" and "apply"; True breaks an invariant there."""
        self.metrics = metrics
        self.membership = membership
        """The membership in state (ecert.membership.membership over the store); None: Raft follows nothing."""
        self._members: tuple[NodeMember, ...] | None = None
        """The state membership as last read (None before the first read)."""
        self._membership_due = True
        """Set when something was applied or a tick passed: the state membership is read at the end of the pass."""
        self._promotion_waits: str | None = None
        """The learner whose promotion waits for it to catch up (logged once)."""
        self._handovers = 0
        """Leadership transfers started because this leader is the node to remove (HANDOVER_ATTEMPTS_MAX)."""
        raft_dir.mkdir(parents=True, exist_ok=True)
        self.storage = LevelDBStorage(str(raft_dir), tuple(sorted(bootstrap_voters)))
        try:
            config = Config(id=node_id, election_ticks=election_ticks, heartbeat_ticks=heartbeat_ticks)
            self.core = Raft(config, self.storage, random.Random(os.urandom(16)))
        except BaseException:
            self.storage.close()
            raise
        self.stats = DriverStats()
        hard_state, snap_meta = self.storage.initial_state()
        self._persisted = hard_state
        """The hard state of the last finished write (the early-send rule compares against it)."""
        if store.applied_index < snap_meta.index and snap_meta.index > 0:
            # We crashed between persisting a received Raft snapshot and importing it into the store: the
            # entries it replaced are gone from the log, so the store can only catch up from the snapshot.
            log.warning("snapshot_reimport", extra={"index": snap_meta.index, "store_index": store.applied_index})
            store.import_snapshot(self.storage.snapshot().data[:])
            if store.applied_index < snap_meta.index:
                store.mark_applied(snap_meta.index)
        # The store records the Raft index of the last entry it applied (in the block's own batch).
        self.applied_index = max(snap_meta.index, min(store.applied_index, self.storage.last_index()))
        self.snapshot_index = snap_meta.index
        self._snapshot_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot")
        self._snapshot_pending: tuple[concurrent.futures.Future[int], SnapshotMeta, float] | None = None
        self._snapshot_bytes_last = 0
        self._log_bytes_since_snapshot = 0
        self.role: Role = self.core.role
        self.leader_id: str | None = self.core.leader_id
        self.term: int = self.core.term
        self.leader_changes = 0
        self.halted: str | None = None
        """Set (with the reason) if a Ready failed (a disk error, a broken invariant while applying); the
        driver stops rather than diverge."""
        self.broken_invariant: str | None = None
        """Set (where, and the invariant's message) when an invariant broke: the driver never runs again and
        the process must exit (`wait_broken_invariant`)."""
        self._broken = asyncio.Event()
        self._io = _DriverIO(self)
        self._wake = asyncio.Event()
        self._stopping = False
        self._applied_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._reads: dict[bytes, asyncio.Future[int]] = {}

    # -- inputs

    def step(self, msg: Message) -> None:
        if self.broken_invariant is not None:
            return
        try:
            if self.break_invariant is not None and self.break_invariant("step"):
                require(False, f"fault injection: invariant broken stepping {msg.type.name} from {msg.from_id}")
            self.core.step(msg)
        except PEER_MESSAGE_ERRORS as exc:  # a malformed or unexpected message must not kill the node
            log.warning("step_failed", extra={"peer": msg.from_id, "type": int(msg.type), "reason": repr(exc)})
            return
        except InvariantViolation as exc:
            self._invariant_broken("step", exc)
            return
        self._wake.set()

    def reset_peer_progress(self, peer: str) -> bool:
        """Leader only: forget what we know of `peer`'s log and probe it again, as a new leader would (Raft
        §5.3: nextIndex = last + 1, matchIndex = 0). Called when the peer (re)connects: a peer that restarted
        with a wiped data dir would otherwise never be re-sent the entries it lost (a rejection at or below
        `match` counts as stale). Safe: lowering `match` only delays commitment, never advances it.
        """
        if self.core.role != Role.LEADER or peer not in self.core.status().progress:
            return False
        with self._stop_on_broken_invariant("reset_progress"):
            self.core.reset_progress(peer)
        self._wake.set()
        return True

    def propose(self, data: bytes) -> int:
        """Append `data` as a log entry (leader only). Returns its index; raises NotLeaderError & co."""
        with self._stop_on_broken_invariant("propose"):
            index = self.core.propose(data)
        self._wake.set()
        return index

    def propose_conf_change(self, cc: Any) -> int:
        with self._stop_on_broken_invariant("propose_conf_change"):
            index = self.core.propose_conf_change(cc)
        self._wake.set()
        return index

    def last_index(self) -> int:
        last: int = max(self.core.last_index, self.storage.last_index(), self.applied_index)
        return last

    def wake(self) -> None:
        self._wake.set()

    def recheck_membership(self) -> None:
        """Read the state membership (and, on the leader, carry out the next change) at the end of the next pass,
        as every tick does (tests and tools that drive the loop by hand call this instead)."""
        self._membership_due = True
        self._wake.set()

    # -- waiting

    async def wait_applied(self, index: int, timeout_s: float) -> bool:
        """True once applied_index >= index; False on timeout."""
        if self.applied_index >= index:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._applied_waiters, (index, next(self._seq), fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            if not fut.done():
                fut.cancel()

    async def read_barrier(self, timeout_s: float = READ_INDEX_TIMEOUT_S) -> int:
        """Linearizable read (ReadIndex, thesis §6.4): returns once the state reflects every write committed
        before the call. Raises NotLeaderError if no leader is known, TimeoutError if no quorum answered."""
        context = os.urandom(16)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads[context] = fut
        try:
            with self._stop_on_broken_invariant("read_index"):
                self.core.read_index(context)
            self._wake.set()
            index = await asyncio.wait_for(fut, timeout_s)
        finally:
            self._reads.pop(context, None)
        if not await self.wait_applied(index, timeout_s):
            raise TimeoutError("read index not applied in time")
        return index

    # -- the loop

    async def wait_broken_invariant(self) -> str:
        """Return (the reason) once an invariant broke in the driver; never returns otherwise."""
        await self._broken.wait()
        assert self.broken_invariant is not None
        return self.broken_invariant

    @contextlib.contextmanager
    def _stop_on_broken_invariant(self, where: str) -> Iterator[None]:
        """Around a call into the core from outside the loop (a proposal, a read): a broken invariant stops
        the driver, then reaches the caller too."""
        try:
            yield
        except InvariantViolation as exc:
            self._invariant_broken(where, exc)
            raise

    def _invariant_broken(self, where: str, exc: InvariantViolation) -> None:
        """Stop for good: the core's or the store's state can no longer be trusted. The process exits on it."""
        if self.broken_invariant is not None:
            return
        self.broken_invariant = f"{where}: {exc}"
        self.halted = f"{type(exc).__name__}: {exc}"
        self._stopping = True
        log.critical("invariant_violation", exc_info=exc,
                     extra={"where": where, "reason": str(exc), "applied_index": self.applied_index,
                            "term": self.term})
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.set_apply_halted(True, "invariant")
        self._broken.set()
        self._wake.set()

    async def run(self) -> None:
        # The tick is a timer that sets the same event a message or a proposal sets: a wake-up runs the Ready
        # loop at once, with no per-wait task or timeout object (asyncio.wait_for cost a task per wake-up).
        loop = asyncio.get_running_loop()
        due = [False]

        def tick_due() -> None:
            due[0] = True
            self._wake.set()

        next_tick = loop.time() + self.tick_s
        timer = loop.call_at(next_tick, tick_due)
        try:
            while not self._stopping:
                if self._wake.is_set():
                    await asyncio.sleep(0)  # woken during the last Ready: let the transport and HTTP run once
                else:
                    await self._wake.wait()
                self._wake.clear()
                if self.broken_invariant is not None:
                    break
                if due[0]:
                    due[0] = False
                    try:
                        self.core.tick()
                    except InvariantViolation as exc:
                        self._invariant_broken("tick", exc)
                        break
                    self.recheck_membership()  # a learner catching up, or a leader elected by ticks
                    now = loop.time()
                    next_tick += self.tick_s
                    if next_tick < now:  # we were starved: do not burst ticks (that would fake elapsed time)
                        next_tick = now + self.tick_s
                    timer = loop.call_at(next_tick, tick_due)
                if not self.halted:
                    self._drive()
        finally:
            timer.cancel()

    def _drive(self) -> None:
        try:
            self.process_ready()
        except InvariantViolation as exc:
            self._invariant_broken("ready", exc)
        except Exception as exc:
            # A Ready that failed (a disk error, ...): stop driving Raft rather than diverge.
            self.halted = f"{type(exc).__name__}: {exc}"
            log.exception("driver_halted", extra={"reason": self.halted})
            if self.metrics is not None:
                with contextlib.suppress(Exception):
                    self.metrics.set_apply_halted(True, type(exc).__name__)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        # A snapshot being serialised reads the state store through a LevelDB snapshot: let it finish before
        # anything is closed (the server closes the store after us).
        self._snapshot_pool.shutdown(wait=True)
        self.storage.close()

    def process_ready(self) -> None:
        rounds = 0
        while self._has_ready() and rounds < 64:
            rounds += 1
            rd = self.core.ready()
            self._handle_ready(rd)
        self._maybe_snapshot()
        if self._membership_due:
            self._follow_membership()

    def _has_ready(self) -> bool:
        hr = self.core.has_ready  # a property on our core; a method in etcd's shape
        return bool(hr() if callable(hr) else hr)

    def _handle_ready(self, rd: Ready) -> None:
        self.stats.readies += 1
        applied_before = self.applied_index
        # Role and leader are for observers only. Nothing awaits until the Ready is done, so no coroutine
        # sees the new role before the write (a new leader's no-op) is on disk.
        if rd.soft_state is not None:
            if rd.soft_state.leader_id != self.leader_id:
                self.leader_changes += 1
            self.role = rd.soft_state.role
            self.leader_id = rd.soft_state.leader_id
        term_changed = self.core.term != self.term
        self.term = self.core.term
        self._persisted = handle_ready(rd, self._io, role=self.core.role, persisted=self._persisted)
        if rd.soft_state is not None or term_changed:
            self.hooks.on_role_change(self.role, self.leader_id, self.term)
        self._notify_applied()
        if self.applied_index != applied_before:
            self._membership_due = True
            self.hooks.on_applied(self.applied_index)

    def _persist(self, rd: Ready) -> None:
        # A snapshot from the leader replaces our snapshot record: our own, still being written on the worker
        # thread, must land first (rare: a follower far behind that was also snapshotting).
        if rd.snapshot is not None and self._snapshot_pending is not None:
            self.wait_snapshot()
        t0 = time.perf_counter()
        if self.fsync_delay_ms is not None and rd.must_sync:
            delay = self.fsync_delay_ms()
            if delay > 0:
                time.sleep(delay / 1000)  # chaos only: a slow disk stalls the driver as a real one would
        # Synchronous on this thread: when it returns the write is durable, and no acknowledgement has been
        # stepped meanwhile - what makes a leader's early send safe (consensus/ready_loop.py).
        self.storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
        dt = time.perf_counter() - t0
        if rd.must_sync or rd.entries or rd.snapshot is not None:
            self.stats.fsyncs += 1
            self.stats.fsync_seconds_total += dt
            self.stats.fsync_seconds_max = max(self.stats.fsync_seconds_max, dt)
            if self.metrics is not None:
                self.metrics.observe_fsync(dt)

    def _send_messages(self, messages: tuple[Message, ...]) -> None:
        send = self.send
        for m in messages:
            send(m)
        self.stats.messages_sent += len(messages)

    def _apply_committed(self, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            if entry.index <= self.applied_index:
                # Replayed after a restart: the store already holds its block, but the core must still
                # learn the configuration changes (it restores only the snapshot's configuration).
                if entry.type == EntryType.CONF_CHANGE:
                    self._apply_conf_change(entry)
                continue
            self._apply(entry)

    def _hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        for rs in read_states:
            fut = self._reads.get(rs.context)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)

    def _install_snapshot(self, snap: Snapshot) -> None:
        self.store.import_snapshot(snap.data)
        if self.store.applied_index < snap.meta.index:
            self.store.mark_applied(snap.meta.index)
        self.applied_index = snap.meta.index
        self.snapshot_index = snap.meta.index
        self._snapshot_bytes_last = len(snap.data)
        self._log_bytes_since_snapshot = 0
        self.stats.snapshots_installed += 1
        log.info("snapshot_installed", extra={"index": snap.meta.index, "bytes": len(snap.data),
                                              "height": self.store.height})
        self.hooks.on_snapshot_installed(snap.meta.index)

    def _apply(self, entry: Entry) -> None:
        if self.break_invariant is not None and self.break_invariant("apply"):
            require(False, f"fault injection: invariant broken applying entry {entry.index}")
        self._log_bytes_since_snapshot += len(entry.data)
        if entry.type == EntryType.CONF_CHANGE:
            self._apply_conf_change(entry)
        elif entry.data:
            try:
                block = decode_block(entry.data)
            except BlockDecodeError as exc:
                # Only a buggy leader could propose this; every replica skips it the same way.
                log.error("entry_not_a_block", extra={"index": entry.index, "reason": str(exc)})
                self.stats.blocks_skipped += 1
            else:
                t0 = time.perf_counter()
                try:
                    outcomes = self.store.apply_block(block, self.executor, applied_index=entry.index)
                except StaleBlockError as exc:
                    self.stats.blocks_skipped += 1
                    log.info("block_skipped", extra={"index": entry.index, "height": block.header.height,
                                                     "reason": str(exc)})
                    self._mark_applied(entry.index)
                    self.hooks.on_block_skipped(entry.index, block, str(exc))
                    return
                self.stats.blocks_applied += 1
                if self.metrics is not None:
                    self.metrics.observe_block(len(block.txs), len(entry.data), time.perf_counter() - t0,
                                               block.header.height)
                self.applied_index = entry.index
                self.hooks.on_block_applied(entry.index, block, outcomes)
                return
        self._mark_applied(entry.index)
        self.stats.entries_applied += 1

    def _mark_applied(self, index: int) -> None:
        """An entry without a block (no-op, conf change, skipped block) was applied: the store records the
        index too, so after a restart it is never behind a Raft snapshot we take."""
        self.store.mark_applied(index)
        self.applied_index = index

    def _apply_conf_change(self, entry: Entry) -> None:
        cc = decode_conf_change(entry.data)
        self.core.apply_conf_change(cc)
        log.info("conf_change_applied", extra={"index": entry.index, "change": cc.type.name,
                                               "node_id": cc.node_id})
        self.hooks.on_conf_change(cc)

    # -- membership: Raft follows the state

    def _follow_membership(self) -> None:
        """Read the state membership; tell the node if it changed; on the leader, carry out the next change."""
        self._membership_due = False
        if self.membership is None:
            return
        members = tuple(self.membership())
        if members != self._members:
            self._members = members
            self.hooks.on_membership(members)
        if self.core.role is Role.LEADER and not self._stopping:
            self._carry_out(members)

    def _carry_out(self, members: tuple[NodeMember, ...]) -> None:
        step = next_conf_change(members, self.core.voters, self.core.learners)
        if step is None:
            self._promotion_waits = None
            self._handovers = 0
            return
        if step.action == PROMOTE and not self._caught_up(step.node_id):
            if self._promotion_waits != step.node_id:
                self._promotion_waits = step.node_id
                log.info("promotion_waits", extra={"node_id": step.node_id, "last_index": self.core.last_index})
            return
        self._promotion_waits = None
        if step.action == REMOVE and step.node_id == self.node_id and self._hand_over_before_leaving(members):
            return
        self._propose_step(step)

    def _propose_step(self, step: ConfStep) -> None:
        try:
            index = self.core.propose_conf_change(ConfChange(CONF_CHANGE_OF_STEP[step.action], step.node_id))
        except ProposalDroppedError:
            return  # one change is pending (or our first entry is not applied yet): we look again once it is
        self.stats.conf_changes_proposed += 1
        log.info("conf_change_proposed", extra={"index": index, "action": step.action, "node_id": step.node_id,
                                                "term": self.core.term})
        self._wake.set()

    def _caught_up(self, node_id: str) -> bool:
        pr = self.core.status().progress.get(node_id)
        return (pr is not None and pr.recent_active
                and self.core.last_index - pr.match_index <= PROMOTE_LAG_ENTRIES_MAX)

    def _hand_over_before_leaving(self, members: tuple[NodeMember, ...]) -> bool:
        """We lead and are the node to remove: hand leadership to the most up-to-date active voter that stays
        (it then removes us), so the cluster does not wait an election timeout after we step down. False if
        there is none, or HANDOVER_ATTEMPTS_MAX transfers came to nothing: then we propose our own removal (the
        core steps down when it is applied)."""
        status = self.core.status()
        if status.lead_transferee is not None:
            return True  # under way; the core gives up after an election timeout and we try again
        staying = {m.id for m in members if m.status == VOTER}
        choices = [(pr.match_index, pid) for pid, pr in status.progress.items()
                   if pid != self.node_id and pid in self.core.voters and pid in staying and pr.recent_active]
        if not choices or self._handovers >= HANDOVER_ATTEMPTS_MAX:
            return False
        target = max(choices)[1]
        self._handovers += 1
        self.core.transfer_leadership(target)
        log.info("leadership_handed_over_before_removal", extra={"to": target, "term": self.core.term,
                                                                 "attempt": self._handovers})
        self._wake.set()
        return True

    def _notify_applied(self) -> None:
        w = self._applied_waiters
        while w and w[0][0] <= self.applied_index:
            _, _, fut = heapq.heappop(w)
            if not fut.done():
                fut.set_result(None)

    def _maybe_snapshot(self) -> None:
        """Snapshot the state and compact the log every `snapshot_entries` applied entries, but not before the
        log since the last snapshot holds half that snapshot's size in bytes: the cost stays amortised as the
        state grows (etcd's snapshot-count plays the same part). The state is pinned here, on the loop, at a
        known index (a LevelDB snapshot, cheap); serialising it takes seconds for a state of 100 MB, so that
        runs on a worker thread while heartbeats and appends keep flowing. The log is compacted when it is done."""
        if self._snapshot_pending is not None:
            if self._snapshot_pending[0].done():
                self._finish_snapshot()
            return
        # Never past what the core itself has applied: after a restart our store may be ahead of the core's
        # commit (the hard state's commit is written lazily), and the core must still read those entries.
        index = min(self.applied_index, self.core.applied_index, self.storage.last_index())
        if index - self.snapshot_index < self.snapshot_entries:
            return
        if (self._snapshot_bytes_last > SNAPSHOT_AMORTISE_BYTES_MIN
                and 2 * self._log_bytes_since_snapshot < self._snapshot_bytes_last):
            return
        meta = SnapshotMeta(index=index, term=self.storage.term(index),
                            voters=tuple(sorted(self.core.voters)), learners=tuple(sorted(self.core.learners)))
        stream = self.store.snapshot_stream()
        storage = self.storage

        def serialise_and_write() -> int:
            # Seconds for a large state; touches only LevelDB (thread-safe), its own snapshot file and this
            # closure, and holds one ~4 MiB chunk at a time.
            return storage.write_snapshot_chunks(meta, stream())

        future = self._snapshot_pool.submit(serialise_and_write)
        with contextlib.suppress(RuntimeError):  # no running loop: a synchronous caller (tests, tools)
            loop = asyncio.get_running_loop()
            future.add_done_callback(lambda _f: loop.call_soon_threadsafe(self._wake.set))
        self._snapshot_pending = (future, meta, time.perf_counter())

    def wait_snapshot(self) -> None:
        """Block until a snapshot being serialised is done and the log compacted (tests and tools)."""
        if self._snapshot_pending is not None:
            concurrent.futures.wait([self._snapshot_pending[0]])
            self._finish_snapshot()

    def _finish_snapshot(self) -> None:
        assert self._snapshot_pending is not None
        future, meta, t0 = self._snapshot_pending
        self._snapshot_pending = None
        size = future.result()  # an export or write that failed raises here: the driver halts and says why
        if meta.index <= self.snapshot_index:
            return  # a newer snapshot was installed from the leader meanwhile
        self.storage.compact_written(meta)
        self.snapshot_index = meta.index
        self._snapshot_bytes_last = size
        self._log_bytes_since_snapshot = 0
        self.stats.snapshots_taken += 1
        log.info("snapshot_taken", extra={"index": meta.index, "bytes": size, "height": self.store.height,
                                          "ms": int((time.perf_counter() - t0) * 1000)})


class _DriverIO:
    """The driver's `consensus.ready_loop.ReadyIO`: LevelDB, the peer transport and the StateStore."""

    __slots__ = ("_d",)

    def __init__(self, driver: RaftDriver) -> None:
        self._d = driver

    def persist(self, rd: Ready) -> None:
        self._d._persist(rd)

    def send(self, messages: tuple[Message, ...]) -> None:
        self._d._send_messages(messages)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        if snapshot.meta.index > self._d.applied_index:
            self._d._install_snapshot(snapshot)

    def apply(self, entries: tuple[Entry, ...]) -> None:
        self._d._apply_committed(entries)

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        if read_states:
            self._d._hand_read_states(read_states)

    def advance(self, rd: Ready) -> None:
        self._d.core.advance(rd)
