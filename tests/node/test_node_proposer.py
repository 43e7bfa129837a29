"""Block cutting on the leader with a fake driver and store (real blocks, real encoding)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest

from consensus.errors import NotLeaderError
from consensus.invariant import InvariantViolation
from consensus.ready import Role
from ledger.block import BLOCK_TXS_BYTES_MAX, BLOCK_TXS_MAX, block_hash, decode_block
from node.proposer import Proposer, QueueFullError


class FakeReplica:
    def __init__(self) -> None:
        self.proposed: list[bytes] = []
        self.applied_index = 0
        self.halted = None
        self.leader = True
        self.log_last = 1  # the new leader's no-op

    def propose(self, data: bytes) -> int:
        if not self.leader:
            raise NotLeaderError(None)
        self.proposed.append(data)
        self.log_last += 1
        return self.log_last

    def last_index(self) -> int:
        return self.log_last


class FakeStore:
    height = 4
    block_hash = b"\x11" * 32
    last_time = 2**40  # far in the future: block time must not go below it

    def tx_outcome(self, tx_id: str) -> Any:
        return None


def tx_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def make(**kw: Any) -> tuple[Proposer, FakeReplica]:
    driver = FakeReplica()
    args = {"block_max_txs": 3, "block_max_bytes": 1 << 20, "block_timeout_ms": 20, "queue_max": 10} | kw
    p = Proposer(node_id="boc", driver=driver, store=FakeStore(), tx_id_of=tx_id_of, **args)
    return p, driver


def put(p: Proposer, n: int, size: int = 10) -> list[bytes]:
    raws = [bytes([i]) * size for i in range(n)]
    for r in raws:
        p.enqueue(tx_id_of(r), r)
    return raws


async def run_for(p: Proposer, seconds: float) -> None:
    task = asyncio.create_task(p.run())
    await asyncio.sleep(seconds)
    p.stop()
    await task


async def test_a_new_leader_waits_until_its_log_is_applied() -> None:
    p, driver = make()
    p.on_role_change(Role.LEADER, "boc", 2)
    put(p, 3)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.05)
    assert driver.proposed == []  # the no-op at index 1 is not applied yet
    driver.applied_index = 1
    p.on_applied()
    await asyncio.sleep(0.05)
    p.stop()
    await task
    assert len(driver.proposed) == 1


async def test_a_lone_tx_is_cut_at_once_when_nothing_is_in_flight() -> None:
    p, driver = make(block_timeout_ms=10_000)
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 2)
    put(p, 1)
    await run_for(p, 0.05)
    assert len(driver.proposed) == 1  # no timer: block_timeout_ms (10 s) is not waited for


async def test_group_commit_full_blocks_at_once_the_rest_after_the_in_flight_block_is_applied() -> None:
    p, driver = make(block_timeout_ms=10_000)
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 2)
    raws = put(p, 7)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.1)
    blocks = [decode_block(d) for d in driver.proposed]
    assert [len(b.txs) for b in blocks] == [3, 3]  # full blocks go at once; the last tx waits for an apply
    assert len(p.pending) == 1
    p.on_block_applied(2, blocks[0], [])
    await asyncio.sleep(0.05)
    assert len(driver.proposed) == 2  # one of ours is still in flight
    p.on_block_applied(3, blocks[1], [])
    await asyncio.sleep(0.05)
    p.stop()
    await task
    blocks = [decode_block(d) for d in driver.proposed]
    assert [len(b.txs) for b in blocks] == [3, 3, 1]
    assert sum((b.txs for b in blocks), ()) == tuple(raws)
    assert blocks[0].header.height == 5 and blocks[0].header.prev_hash == FakeStore.block_hash
    assert blocks[1].header.height == 6 and blocks[1].header.prev_hash == block_hash(blocks[0].header)
    assert blocks[2].header.height == 7 and blocks[2].header.prev_hash == block_hash(blocks[1].header)
    assert all(b.header.time >= FakeStore.last_time for b in blocks)  # never below the last block time
    assert blocks[1].header.time >= blocks[0].header.time


async def test_block_timeout_pipelines_a_partial_block_behind_a_slow_one() -> None:
    """BatchTimeout: a tx queued behind an in-flight block waits at most block_timeout_ms, then goes out in a
    partial block chained onto the in-flight one (pipelined), without waiting for it to be applied."""
    p, driver = make(block_timeout_ms=30)
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 2)
    put(p, 1)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.01)
    assert len(driver.proposed) == 1  # nothing in flight: cut at once
    put(p, 1, size=11)
    await asyncio.sleep(0.005)
    assert len(driver.proposed) == 1  # behind the in-flight block, within the batch timeout
    await asyncio.sleep(0.1)
    p.stop()
    await task
    blocks = [decode_block(d) for d in driver.proposed]
    assert [len(b.txs) for b in blocks] == [1, 1]  # cut by the timeout, the first block still not applied
    assert blocks[1].header.prev_hash == block_hash(blocks[0].header)


async def test_cut_by_bytes() -> None:
    p, driver = make(block_max_txs=100, block_max_bytes=1000, block_timeout_ms=10_000)
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 2)
    put(p, 5, size=400)
    await run_for(p, 0.1)
    # Two full blocks by bytes; the last tx waits for an in-flight block to be applied (none is, here).
    assert [len(decode_block(d).txs) for d in driver.proposed] == [2, 2]
    assert len(p.pending) == 1


@pytest.mark.parametrize("over", [{"block_max_txs": BLOCK_TXS_MAX + 1}, {"block_max_txs": 0},
                                  {"block_max_bytes": BLOCK_TXS_BYTES_MAX + 1}, {"block_max_bytes": 0}])
def test_limits_over_the_ledger_caps_are_a_broken_invariant_not_a_clamp(over: dict[str, int]) -> None:
    # node/config.py refuses such values at start; reaching the proposer with one is a bug.
    with pytest.raises(InvariantViolation):
        make(**over)
    p, _ = make(block_max_txs=BLOCK_TXS_MAX, block_max_bytes=BLOCK_TXS_BYTES_MAX)
    assert (p.block_max_txs, p.block_max_bytes) == (BLOCK_TXS_MAX, BLOCK_TXS_BYTES_MAX)


async def test_queue_is_bounded_and_deduplicates() -> None:
    p, _ = make(queue_max=4)
    raws = put(p, 4)
    p.enqueue(tx_id_of(raws[0]), raws[0])  # a duplicate is absorbed
    with pytest.raises(QueueFullError):
        p.enqueue("x" * 64, b"new")
    assert len(p.pending) == 4


async def test_losing_leadership_hands_the_queue_over() -> None:
    p, driver = make()
    handed: list[list[bytes]] = []
    p.on_lost_leadership = handed.append
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 2)
    raws = put(p, 2)
    p.on_role_change(Role.FOLLOWER, "geely", 3)
    assert handed == [raws] and not p.pending and not p.is_leader
    waiter = p.wait_for("t1")
    assert not waiter.done()
    p.forget("t1", waiter)
    assert p.waiting == 0


async def test_awaited_txs_go_again_to_each_new_leader() -> None:
    p, driver = make()
    sent: list[list[bytes]] = []
    p.on_lost_leadership = sent.append
    raw = b"tx-bytes"
    fut = p.wait_for(tx_id_of(raw), raw)
    p.on_role_change(Role.FOLLOWER, "geely", 2)
    assert sent == [[raw]]
    p.on_role_change(Role.FOLLOWER, "geely", 2)  # same leader: nothing again
    assert sent == [[raw]]
    driver.applied_index = 1
    p.on_role_change(Role.LEADER, "boc", 3)  # we lead now: it is queued here
    assert tx_id_of(raw) in p.pending
    p.forget(tx_id_of(raw), fut)
    p.on_role_change(Role.FOLLOWER, "tier1", 4)
    assert sent[-1] == [raw]  # handed over as queued, but no longer awaited
    p.on_role_change(Role.FOLLOWER, "geely", 5)
    assert len(sent) == 2
