"""Block proposal on the leader, and the tx waiters every node keeps.

Admitted txs wait in a bounded queue. The leader cuts them into blocks the group-commit way: at once when none
of its blocks is in flight (proposed, not yet applied), so a lone tx waits on no timer; otherwise it keeps
filling the next block until the in-flight one is applied or `block_max_txs` / `block_max_bytes` is reached
(Fabric's MaxMessageCount / PreferredMaxBytes), or until the oldest queued tx has waited `block_timeout_ms`
(Fabric's BatchTimeout: a cap on queueing behind a slow block, after which a partial block is pipelined).
Idle: lowest latency; loaded: blocks grow with the load. Blocks are pipelined (up to
`INFLIGHT_BLOCKS_MAX` proposed and not yet applied), each chained onto the previous *proposed* block.

Heights must chain: a new leader proposes nothing until it has applied every entry in its log at the moment it
won (including its own no-op), so the tip it builds on is the committed tip. If one of our blocks is nevertheless
skipped as stale, proposing pauses until every in-flight block has been applied or skipped, the tip is re-read
from the store, and the skipped block's txs are queued again.

Block time = max(wall clock ms, previous block's time): never decreasing, as the rules require.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.errors import NotLeaderError, ProposalDroppedError
from consensus.invariant import require
from consensus.ready import Role
from ledger.block import BLOCK_TXS_BYTES_MAX, BLOCK_TXS_MAX, block_hash, encode_block, make_block

log = logging.getLogger("node.proposer")

INFLIGHT_BLOCKS_MAX = 8


class QueueFullError(Exception):
    code = "queue_full"


@dataclass(slots=True)
class _Tip:
    height: int
    hash: bytes
    time: int


@dataclass(slots=True)
class _Inflight:
    block_hash: bytes
    txs: tuple[tuple[str, bytes], ...]


def outcome_answer(record: Any) -> dict[str, Any]:
    """A TxRecord (store.tx_outcome) as the CONTRACT §4 answer {"tx_id", "status", "height", "result"|"error"}."""
    answer: dict[str, Any] = record.outcome.to_json()
    answer["height"] = record.height
    return answer


class Proposer:
    def __init__(
        self,
        *,
        node_id: str,
        driver: Any,
        store: Any,
        tx_id_of: Callable[[bytes], str],
        block_max_txs: int,
        block_max_bytes: int,
        block_timeout_ms: int,
        queue_max: int,
        clock_skew_ms: Callable[[], int] | None = None,
        metrics: Any = None,
    ) -> None:
        self.node_id = node_id
        self.driver = driver
        self.store = store
        self.tx_id_of = tx_id_of

        # node/config.py refuses values over the ledger's caps at start, so every block we cut encodes.
        require(1 <= block_max_txs <= BLOCK_TXS_MAX, f"block_max_txs {block_max_txs} not in 1..{BLOCK_TXS_MAX}")
        require(1 <= block_max_bytes <= BLOCK_TXS_BYTES_MAX,
                f"block_max_bytes {block_max_bytes} not in 1..{BLOCK_TXS_BYTES_MAX}")
        self.block_max_txs = block_max_txs
        self.block_max_bytes = block_max_bytes
        self.block_timeout_s = block_timeout_ms / 1000
        self._pending_since = 0.0
        """Monotonic time the queue last went from empty to non-empty (or was last partly drained)."""
        self.queue_max = queue_max
        self.clock_skew_ms = clock_skew_ms
        self.metrics = metrics
        self.pending: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.pending_bytes = 0
        self._inflight: dict[int, _Inflight] = {}
        self._proposed_ids: set[str] = set()
        self._tip: _Tip | None = None
        self._sync_index = 0
        self._is_leader = False
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._waiting_raw: dict[str, bytes] = {}
        self._leader_id: str | None = None
        self._kick = asyncio.Event()
        self._stopping = False
        self.blocks_proposed = 0
        self.requeued = 0
        self.on_lost_leadership: Callable[[list[bytes]], None] | None = None
        """Called with txs to forward to the leader: those still queued when this node stops being leader,
        and those awaited here when a new leader appears (the node forwards them)."""

    # -- waiters (every node)

    def wait_for(self, tx_id: str, raw: bytes | None = None) -> asyncio.Future[dict[str, Any]]:
        """A future resolved with the tx's answer once its block is applied here. With `raw`, the tx is sent
        again to each new leader while it waits (a leader that dies can lose what it had queued)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(fut)
        if raw is not None:
            self._waiting_raw[tx_id] = raw
        return fut

    def forget(self, tx_id: str, fut: asyncio.Future[dict[str, Any]]) -> None:
        futs = self._waiters.get(tx_id)
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self._waiters[tx_id]
                self._waiting_raw.pop(tx_id, None)

    def _resolve(self, tx_id: str, answer: dict[str, Any]) -> None:
        self._waiting_raw.pop(tx_id, None)
        for fut in self._waiters.pop(tx_id, ()):
            if not fut.done():
                fut.set_result(answer)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # -- admission (leader)

    def enqueue(self, tx_id: str, raw: bytes) -> None:
        """Queue an admitted tx for the next block. Duplicates of a queued or in-flight tx are absorbed."""
        if tx_id in self.pending or tx_id in self._proposed_ids:
            return
        if len(self.pending) >= self.queue_max:
            raise QueueFullError(f"{len(self.pending)} txs already queued (queue_max)")
        if not self.pending:
            self._pending_since = time.monotonic()
        self.pending[tx_id] = raw
        self.pending_bytes += len(raw)
        self._kick.set()

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def can_propose(self) -> bool:
        return (self._is_leader and self._tip is not None and len(self._inflight) < INFLIGHT_BLOCKS_MAX
                and not self.driver.halted)

    # -- the cutter

    async def run(self) -> None:
        while not self._stopping:
            if self.pending and self.can_propose() and self._should_cut():
                try:
                    self._cut()
                except Exception:
                    log.exception("propose_failed")
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0)
                continue
            self._kick.clear()
            wait_s = self._batch_wait_s()
            if wait_s is None:
                await self._kick.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait_s)

    def _batch_wait_s(self) -> float | None:
        """Seconds until the oldest queued tx reaches `block_timeout_ms`, if that is what we are waiting for."""
        if not self.pending or not self._inflight or not self.can_propose() or self.block_timeout_s <= 0:
            return None
        return max(0.0, self._pending_since + self.block_timeout_s - time.monotonic())

    def _should_cut(self) -> bool:
        """Group commit: cut at once when none of our blocks is in flight (an idle cluster answers a lone tx
        without waiting on a timer), otherwise keep filling the next block until the in-flight one is applied
        (on_block_applied kicks us) or the block is full. Waiting costs a tx nothing: Raft commits in log
        order, so a block cut now could not commit before the one already in flight."""
        if not self._inflight:
            return True
        if len(self.pending) >= self.block_max_txs or self.pending_bytes >= self.block_max_bytes:
            return True
        return self.block_timeout_s > 0 and time.monotonic() - self._pending_since >= self.block_timeout_s

    def stop(self) -> None:
        self._stopping = True
        self._kick.set()

    def _cut(self) -> None:

        tip = self._tip
        assert tip is not None
        txs: list[tuple[str, bytes]] = []
        size = 0
        while self.pending and len(txs) < self.block_max_txs:
            tx_id, raw = next(iter(self.pending.items()))
            if txs and size + len(raw) > self.block_max_bytes:
                break
            del self.pending[tx_id]
            self.pending_bytes -= len(raw)
            txs.append((tx_id, raw))
            size += len(raw)
        self._pending_since = time.monotonic()  # what is left starts a new batch window
        now_ms = time.time_ns() // 1_000_000 + (self.clock_skew_ms() if self.clock_skew_ms else 0)
        block = make_block(tip.height + 1, tip.hash, max(now_ms, tip.time), self.node_id,
                           tuple(raw for _, raw in txs))
        data = encode_block(block)
        try:
            index = self.driver.propose(data)
        except (NotLeaderError, ProposalDroppedError) as exc:
            # Put them back in front; a new leader gets them through on_lost_leadership.
            for tx_id, raw in reversed(txs):
                self.pending[tx_id] = raw
                self.pending.move_to_end(tx_id, last=False)
                self.pending_bytes += len(raw)
            log.info("proposal_dropped", extra={"reason": repr(exc)})
            if isinstance(exc, ProposalDroppedError):
                self._tip = None  # back-pressure: resync after the in-flight blocks are applied
                self._sync_index = self.driver.last_index()
            return
        h = block_hash(block.header)
        self._inflight[index] = _Inflight(h, tuple(txs))
        self._proposed_ids.update(tx_id for tx_id, _ in txs)
        self._tip = _Tip(block.header.height, h, block.header.time)
        self.blocks_proposed += 1
        if self.metrics is not None:
            self.metrics.set_queue_depth(len(self.pending))

    # -- hooks from the driver

    def on_block_applied(self, index: int, block: Any, outcomes: Sequence[Any]) -> None:

        height = block.header.height
        seen = set()
        for o in outcomes:
            seen.add(o.tx_id)
            if o.tx_id in self._waiters:
                answer = o.to_json()
                answer["height"] = height
                self._resolve(o.tx_id, answer)
        if self._waiters and len(seen) < len(block.txs):
            # A tx already applied in an earlier block keeps its first outcome.
            for raw in block.txs:
                tx_id = self.tx_id_of(raw)
                if tx_id not in seen and tx_id in self._waiters:
                    record = self.store.tx_outcome(tx_id)
                    if record is not None:
                        self._resolve(tx_id, outcome_answer(record))
        mine = self._inflight.pop(index, None)
        if mine is not None:
            self._proposed_ids.difference_update(t for t, _ in mine.txs)
            if mine.block_hash != block_hash(block.header):
                self._requeue(mine)
            if self.pending:
                self._kick.set()  # what gathered while this block was in flight goes out now
        self._drop_applied_from_queue(block, outcomes)
        self._maybe_sync()

    def on_block_skipped(self, index: int, block: Any, reason: str) -> None:
        mine = self._inflight.pop(index, None)
        if mine is not None:
            self._proposed_ids.difference_update(t for t, _ in mine.txs)
            log.warning("own_block_skipped", extra={"index": index, "reason": reason})
            self._requeue(mine)
            self._tip = None
            self._sync_index = self.driver.last_index()
        self._maybe_sync()

    def on_snapshot_installed(self) -> None:
        self._maybe_sync()

    def on_role_change(self, role: Role, leader_id: str | None, term: int) -> None:
        new_leader = leader_id is not None and leader_id != self._leader_id
        self._leader_id = leader_id
        was_leader = self._is_leader
        self._is_leader = role == Role.LEADER
        if self._is_leader and not was_leader:
            # Build only on the committed tip: wait until everything in our log (and our no-op) is applied.
            self._tip = None
            self._inflight.clear()
            self._proposed_ids.clear()
            self._sync_index = self.driver.last_index()
            log.info("became_leader", extra={"term": term, "sync_index": self._sync_index})
            self._maybe_sync()
        elif was_leader and not self._is_leader:
            # Hand over what is queued and what we proposed but have not seen applied: our uncommitted
            # blocks may be overwritten by the new leader. Sending a tx twice is harmless (applied at most
            # once by tx id), and it turns many "unknown" answers into committed ones.
            self._tip = None
            unapplied = [raw for inflight in self._inflight.values() for _, raw in inflight.txs]
            self._inflight.clear()
            self._proposed_ids.clear()
            queued = unapplied + list(self.pending.values())
            self.pending.clear()
            self.pending_bytes = 0
            if queued and self.on_lost_leadership is not None:
                self.on_lost_leadership(queued)
        if new_leader and self._waiting_raw:
            self._resubmit_waiting()
        self._kick.set()

    def _resubmit_waiting(self) -> None:
        """A new leader: txs still awaited here go to it again (deduplicated by tx id everywhere)."""
        raws = list(self._waiting_raw.items())
        if self._is_leader:
            for tx_id, raw in raws:
                if self.store.tx_outcome(tx_id) is None:
                    try:
                        self.enqueue(tx_id, raw)
                    except QueueFullError:
                        break
        elif self.on_lost_leadership is not None:
            self.on_lost_leadership([raw for _, raw in raws])
        self.requeued += len(raws)

    def on_applied(self) -> None:
        self._maybe_sync()

    def _maybe_sync(self) -> None:
        if (self._is_leader and self._tip is None and not self._inflight
                and self.driver.applied_index >= self._sync_index):
            self._tip = self._store_tip()
            self._kick.set()

    def _store_tip(self) -> _Tip:
        return _Tip(self.store.height, self.store.block_hash, self.store.last_time)

    def _requeue(self, lost: _Inflight) -> None:
        for tx_id, raw in lost.txs:
            if self.store.tx_outcome(tx_id) is None and tx_id not in self.pending:
                if len(self.pending) >= self.queue_max:
                    break
                if not self.pending:
                    self._pending_since = time.monotonic()
                self.pending[tx_id] = raw
                self.pending_bytes += len(raw)
                self.requeued += 1
        self._kick.set()

    def _drop_applied_from_queue(self, block: Any, outcomes: Sequence[Any]) -> None:
        if not self.pending:
            return
        # The store returns one outcome per tx, in block order, carrying the tx id: no need to decode again.
        ids = ([o.tx_id for o in outcomes] if len(outcomes) == len(block.txs)
               else [self.tx_id_of(raw) for raw in block.txs])
        for tx_id in ids:
            raw_q = self.pending.pop(tx_id, None)
            if raw_q is not None:
                self.pending_bytes -= len(raw_q)
