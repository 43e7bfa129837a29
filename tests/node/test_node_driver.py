"""The Raft driver in-process: real Raft, real LevelDB, real StateStore (the peers are the test, stepping their
messages); and the driver carrying out the state membership on the leader."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

import plyvel
import pytest

from consensus.messages import Message, MessageType
from consensus.ready import Role
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_hash, genesis_writes
from ecert.governance import proposal_id_for
from ecert.membership import NodeMember, get_member, membership
from ecert.state import CERT_INDEX
from ecert.tx import raw_tx_id
from ledger.block import block_hash, encode_block, make_block
from ledger.store import StateStore
from node.driver import HANDOVER_ATTEMPTS_MAX, PROMOTE_LAG_ENTRIES_MAX, RaftDriver
from tests.ecert.world import CHAIN, T0, World, genesis_node

GENESIS = b"\x07" * 32


class Hooks:
    def __init__(self) -> None:
        self.applied: list[tuple[int, int, list[str]]] = []
        self.skipped: list[int] = []
        self.roles: list[Role] = []

    def on_block_applied(self, index: int, block: Any, outcomes: Any) -> None:
        self.applied.append((index, block.header.height, [o.status for o in outcomes]))

    def on_block_skipped(self, index: int, block: Any, reason: str) -> None:
        self.skipped.append(index)

    def on_role_change(self, role: Role, leader_id: str | None, term: int) -> None:
        self.roles.append(role)

    def on_conf_change(self, cc: Any) -> None:
        pass

    def on_snapshot_installed(self, index: int) -> None:
        pass

    def on_applied(self, index: int) -> None:
        pass


def open_replica(tmp: Path, hooks: Hooks, snapshot_entries: int = 1000) -> RaftDriver:
    store = StateStore.open(str(tmp / "state"), index=CERT_INDEX)
    store.init_genesis(GENESIS, [], chain_id="t", genesis_time=0)
    r = RaftDriver(node_id="a", raft_dir=tmp / "raft", store=store, executor=EcertExecutor("t"),
                bootstrap_voters=("a",), send=lambda m: None, hooks=hooks, snapshot_entries=snapshot_entries)
    r.core.campaign()
    r.process_ready()
    assert r.role == Role.LEADER
    return r


def close(r: RaftDriver) -> None:
    r.close()
    r.store.close()


def propose_blocks(r: RaftDriver, n: int) -> None:
    for _ in range(n):
        s = r.store
        blk = make_block(s.height + 1, s.block_hash, s.last_time + 1, "a", (b"not a tx",))
        r.propose(encode_block(blk))
        r.process_ready()
        r.wait_snapshot()  # snapshots serialise on a worker thread; here, finish each before the next block


def test_blocks_apply_snapshot_compacts_and_restart_resumes(tmp_path: Path) -> None:
    hooks = Hooks()
    r = open_replica(tmp_path, hooks, snapshot_entries=4)
    propose_blocks(r, 10)
    assert r.store.height == 10
    assert [h for _, h, _ in hooks.applied] == list(range(1, 11))
    assert all(st == ["rejected"] for _, _, st in hooks.applied)  # garbage txs are rejected outcomes
    assert r.snapshot_index >= 8 and r.storage.first_index() == r.snapshot_index + 1
    assert r.store.applied_index == r.applied_index
    top = (r.store.height, r.store.block_hash, r.store.state_root)
    close(r)

    hooks2 = Hooks()
    r = open_replica(tmp_path, hooks2)
    # Nothing is applied twice; the chain continues where it was.
    assert hooks2.applied == [] and hooks2.skipped == []
    assert (r.store.height, r.store.block_hash, r.store.state_root) == top
    propose_blocks(r, 1)
    assert r.store.height == 11
    close(r)


def test_a_store_behind_the_raft_snapshot_is_restored_from_it(tmp_path: Path) -> None:
    hooks = Hooks()
    r = open_replica(tmp_path, hooks, snapshot_entries=3)
    propose_blocks(r, 6)
    snap_index = r.snapshot_index
    assert snap_index > 0
    close(r)
    # As if the process died after persisting a received snapshot but before importing it into the store.
    shutil.rmtree(tmp_path / "state")
    r = open_replica(tmp_path, Hooks())
    assert r.store.height == 6 and r.store.applied_index >= snap_index
    propose_blocks(r, 1)
    assert r.store.height == 7
    close(r)


def test_a_block_that_does_not_chain_is_skipped(tmp_path: Path) -> None:
    hooks = Hooks()
    r = open_replica(tmp_path, hooks)
    propose_blocks(r, 2)
    stale = make_block(2, b"\x00" * 32, 10**6, "a", ())  # height 2 again, wrong parent
    r.propose(encode_block(stale))
    r.process_ready()
    assert hooks.skipped and r.store.height == 2
    good = make_block(3, r.store.block_hash, r.store.last_time, "a", ())
    r.propose(encode_block(good))
    r.process_ready()
    assert r.store.height == 3 and r.store.block_hash == block_hash(good.header)
    assert r.applied_index == r.core.applied_index == r.store.applied_index
    close(r)


def open_replica_ticking(tmp: Path, hooks: Hooks, tick_ms: int) -> RaftDriver:
    store = StateStore.open(str(tmp / "state"), index=CERT_INDEX)
    store.init_genesis(GENESIS, [], chain_id="t", genesis_time=0)
    return RaftDriver(node_id="a", raft_dir=tmp / "raft", store=store, executor=EcertExecutor("t"),
                   bootstrap_voters=("a",), send=lambda m: None, hooks=hooks, tick_ms=tick_ms)


async def test_the_driver_runs_a_ready_when_woken_without_waiting_for_a_tick(tmp_path: Path) -> None:
    hooks = Hooks()
    r = open_replica_ticking(tmp_path, hooks, tick_ms=5)
    task = asyncio.create_task(r.run())
    try:
        # Ticks alone (timer-driven) elect the single voter.
        for _ in range(400):
            if r.role == Role.LEADER:
                break
            await asyncio.sleep(0.005)
        assert r.role == Role.LEADER
        r.tick_s = 3600.0  # takes effect after the pending tick: from then on no tick comes during this test
        await asyncio.sleep(0.02)
        s = r.store
        blk = make_block(s.height + 1, s.block_hash, s.last_time + 1, "a", (b"not a tx",))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        index = r.propose(encode_block(blk))
        assert await r.wait_applied(index, 2.0)
        assert loop.time() - t0 < 1.0  # the proposal woke the driver; no tick was needed
        assert r.store.height == 1 and hooks.applied[-1][1] == 1
    finally:
        r.stop()
        await asyncio.wait_for(task, 2.0)
        close(r)


# -- peer messages and broken invariants ----------------------------------------------------------------------

def open_follower(tmp: Path, hooks: Hooks, **kwargs: Any) -> RaftDriver:
    """Node "b" of a two-voter cluster whose other voter never answers: it only hears what a test steps."""
    store = StateStore.open(str(tmp / "state"), index=CERT_INDEX)
    store.init_genesis(GENESIS, [], chain_id="t", genesis_time=0)
    return RaftDriver(node_id="b", raft_dir=tmp / "raft", store=store, executor=EcertExecutor("t"),
                      bootstrap_voters=("a", "b"), send=lambda m: None, hooks=hooks, **kwargs)


def test_a_heartbeat_commit_beyond_our_log_is_taken_only_up_to_it(tmp_path: Path) -> None:
    """The clamp lives in the core now: the driver steps the message as it came, and nothing breaks."""
    r = open_follower(tmp_path, Hooks())
    r.step(Message(MessageType.HEARTBEAT, "a", "b", 1, commit=10))
    r.process_ready()
    assert r.broken_invariant is None and r.halted is None
    assert r.core.term == 1 and r.leader_id == "a" and r.core.commit_index == r.core.last_index == 0
    close(r)


def test_a_broken_invariant_while_stepping_stops_the_driver(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """Stepping used to swallow every exception (an InvariantViolation included) and go on."""
    armed = {"step"}

    def break_invariant(point: str) -> bool:
        if point in armed:
            armed.discard(point)
            return True
        return False

    r = open_follower(tmp_path, Hooks(), break_invariant=break_invariant)
    with caplog.at_level(logging.CRITICAL, logger="node.driver"):
        r.step(Message(MessageType.HEARTBEAT, "a", "b", 1, commit=0))
    assert r.broken_invariant is not None and r.broken_invariant.startswith("step: fault injection")
    assert r.halted is not None and r.halted.startswith("InvariantViolation")
    assert [rec.message for rec in caplog.records] == ["invariant_violation"]
    assert caplog.records[0].where == "step"  # type: ignore[attr-defined]
    r.step(Message(MessageType.HEARTBEAT, "a", "b", 1, commit=0))  # a stopped driver steps nothing more
    assert r.core.term == 0

    async def reason() -> str:
        return await asyncio.wait_for(r.wait_broken_invariant(), 1.0)

    assert asyncio.run(reason()) == r.broken_invariant
    close(r)


async def test_a_corrupted_state_record_breaks_an_invariant_in_apply_and_stops_the_loop(tmp_path: Path) -> None:
    """A block record already at the next height (a damaged store): the store's own invariant breaks while
    the driver applies the next block; the loop stops for good and says why."""
    r = open_replica(tmp_path, Hooks())
    propose_blocks(r, 2)
    close(r)
    db = plyvel.DB(str(tmp_path / "state"))
    db.put(b"B" + (3).to_bytes(8, "big"), b"not a block record")  # the block record key (docs/STORAGE.md)
    db.close()

    r = open_replica_ticking(tmp_path, Hooks(), tick_ms=5)
    task = asyncio.create_task(r.run())
    try:
        for _ in range(400):
            if r.role == Role.LEADER:
                break
            await asyncio.sleep(0.005)
        assert r.role == Role.LEADER
        s = r.store
        r.propose(encode_block(make_block(s.height + 1, s.block_hash, s.last_time + 1, "a", ())))
        reason = await asyncio.wait_for(r.wait_broken_invariant(), 5.0)
        assert reason.startswith("ready: ") and "already exists" in reason
        await asyncio.wait_for(task, 2.0)  # the loop ended by itself
        assert r.store.height == 2 and r.halted is not None
    finally:
        r.stop()
        await asyncio.wait_for(task, 2.0)
        close(r)


# -- membership: the leader walks the Raft configuration to the state's ---------------------------------------------

class MemberHooks(Hooks):
    def __init__(self) -> None:
        super().__init__()
        self.memberships: list[tuple[NodeMember, ...]] = []

    def on_membership(self, members: tuple[NodeMember, ...]) -> None:
        self.memberships.append(members)


def open_governed(tmp: Path, w: World, node_id: str, voters: tuple[str, ...], hooks: MemberHooks,
                  sent: list[Message] | None = None) -> RaftDriver:
    """A driver whose state starts from `w`'s genesis (its `nodes` are the membership in state)."""
    store = StateStore.open(str(tmp / "state"), index=CERT_INDEX)
    store.init_genesis(genesis_hash(w.genesis), genesis_writes(w.genesis), chain_id=CHAIN, genesis_time=T0)
    return RaftDriver(node_id=node_id, raft_dir=tmp / "raft", store=store, executor=EcertExecutor(CHAIN),
                      bootstrap_voters=voters, send=(sent.append if sent is not None else lambda m: None),
                      hooks=hooks, membership=lambda: membership(store.view()))


def ack(r: RaftDriver, *peers: str) -> None:
    """Each peer acknowledges the leader's whole log (as its append responses would)."""
    for peer in peers:
        r.step(Message(MessageType.APPEND_RESP, peer, r.node_id, r.core.term, index=r.core.last_index))
    r.process_ready()


def apply_txs(r: RaftDriver, txs: list[bytes], acks: tuple[str, ...] = ()) -> list[str]:
    """Propose one block of `txs`, have `acks` acknowledge it, apply it; the outcomes' error codes (None: ok)."""
    s = r.store
    before = len(r.hooks.applied)  # type: ignore[attr-defined]
    r.propose(encode_block(make_block(s.height + 1, s.block_hash, max(s.last_time, T0) + 1000, r.node_id,
                                      tuple(txs))))
    r.process_ready()
    ack(r, *acks)
    assert len(r.hooks.applied) == before + 1  # type: ignore[attr-defined]
    return [s.tx_outcome(raw_tx_id(raw)).outcome.error_code for raw in txs]  # type: ignore[union-attr]


def test_the_leader_adds_genesis_learners_then_promotes_only_a_caught_up_learner_once(tmp_path: Path) -> None:
    w = World(nodes=[genesis_node("a", "boc"), genesis_node("b", "geely", voter=False)])
    hooks = MemberHooks()
    r = open_governed(tmp_path, w, "a", ("a",), hooks)
    r.core.campaign()
    r.process_ready()
    assert r.role == Role.LEADER
    # The genesis learner is added to Raft as a learner, by one change (its no-op applied first).
    for _ in range(3):
        r.process_ready()
    assert r.core.learners == {"b"} and r.core.voters == {"a"}
    assert r.stats.conf_changes_proposed == 1
    assert [[m.id for m in ms] for ms in hooks.memberships] == [["a", "b"]]

    # boc is the only voting org: its proposal carries itself out. Raft must wait for b to catch up.
    assert apply_txs(r, [w.raw("boc", "member.propose", {"action": "promote", "node_id": "b"})]) == [None]
    assert [m.status for m in hooks.memberships[-1]] == ["voter", "voter"]
    for _ in range(3):
        r.process_ready()
    assert r.core.voters == {"a"} and r.stats.conf_changes_proposed == 1
    # Not yet caught up: more than PROMOTE_LAG_ENTRIES_MAX behind.
    assert r.core.last_index - 1 <= PROMOTE_LAG_ENTRIES_MAX  # a short log: an ack of index 1 is caught up
    r.step(Message(MessageType.APPEND_RESP, "b", "a", r.core.term, index=1))
    r.recheck_membership()  # (a tick)
    r.process_ready()
    r.process_ready()
    assert r.core.voters == {"a", "b"} and not r.core.learners
    assert r.stats.conf_changes_proposed == 2
    # Carried out once: nothing more to do however often the leader looks.
    for _ in range(5):
        r.recheck_membership()
        r.process_ready()
    assert r.stats.conf_changes_proposed == 2
    close(r)


def test_a_promotion_waits_while_the_learner_lags(tmp_path: Path) -> None:
    w = World(nodes=[genesis_node("a", "boc"), genesis_node("b", "geely", voter=False)])
    r = open_governed(tmp_path, w, "a", ("a",), MemberHooks())
    r.core.campaign()
    for _ in range(3):
        r.process_ready()
    assert r.core.learners == {"b"}
    s = r.store
    for _ in range(PROMOTE_LAG_ENTRIES_MAX + 2):  # a log longer than the lag the leader tolerates
        r.propose(encode_block(make_block(s.height + 1, s.block_hash, max(s.last_time, T0) + 1, "a", ())))
        r.process_ready()
    assert apply_txs(r, [w.raw("boc", "member.propose", {"action": "promote", "node_id": "b"})]) == [None]
    r.step(Message(MessageType.APPEND_RESP, "b", "a", r.core.term, index=2))  # active, but far behind
    r.recheck_membership()
    r.process_ready()
    assert r.core.voters == {"a"} and r.stats.conf_changes_proposed == 1
    ack(r, "b")  # caught up
    r.recheck_membership()
    r.process_ready()
    r.process_ready()
    assert r.core.voters == {"a", "b"} and r.stats.conf_changes_proposed == 2
    close(r)


def test_a_follower_never_proposes_a_conf_change(tmp_path: Path) -> None:
    w = World(nodes=[genesis_node("a", "boc"), genesis_node("b", "geely"), genesis_node("c", "tier1", voter=False)])
    hooks = MemberHooks()
    r = open_governed(tmp_path, w, "b", ("a", "b"), hooks)
    r.step(Message(MessageType.HEARTBEAT, "a", "b", 1, commit=0))
    for _ in range(3):
        r.process_ready()
    assert r.role == Role.FOLLOWER and r.leader_id == "a"
    assert r.stats.conf_changes_proposed == 0 and r.core.learners == frozenset()
    assert [[m.id for m in ms] for ms in hooks.memberships] == [["a", "b", "c"]]  # told once, not per pass
    close(r)


def test_the_leader_to_be_removed_hands_leadership_over_before_it_removes_itself(tmp_path: Path) -> None:
    nodes = [genesis_node("a", "boc"), genesis_node("b", "geely"), genesis_node("c", "tier1"),
             genesis_node("d", "tier2")]
    w = World(nodes=nodes)
    sent: list[Message] = []
    r = open_governed(tmp_path, w, "a", ("a", "b", "c", "d"), MemberHooks(), sent)
    r.core.campaign()
    r.process_ready()
    for kind in (MessageType.PRE_VOTE_RESP, MessageType.VOTE_RESP):
        term = r.core.term + (1 if kind == MessageType.PRE_VOTE_RESP else 0)
        for peer in ("b", "c"):
            r.step(Message(kind, peer, "a", term))
        r.process_ready()
    assert r.role == Role.LEADER
    ack(r, "b", "c")  # the no-op commits
    propose = w.raw("boc", "member.propose", {"action": "remove", "node_id": "a"})
    assert apply_txs(r, [propose], acks=("b", "c")) == [None]
    proposal_id = proposal_id_for(raw_tx_id(propose))
    approvals = [w.raw(org, "member.approve", {"proposal_id": proposal_id}) for org in ("geely", "tier1")]
    sent.clear()
    assert apply_txs(r, approvals, acks=("b", "c")) == [None, None]
    assert get_member(r.store.view(), "a").status == "removed"  # type: ignore[union-attr]
    r.process_ready()
    # Not its own removal: leadership goes to an up-to-date voter that stays, which then removes it.
    assert r.stats.conf_changes_proposed == 0 and r.core.voters == {"a", "b", "c", "d"}
    assert r.core.status().lead_transferee in ("b", "c")
    assert any(m.type == MessageType.TIMEOUT_NOW and m.to in ("b", "c") for m in sent)
    # Here nobody takes over (the peers are this test): each transfer is given up after an election timeout,
    # and after HANDOVER_ATTEMPTS_MAX of them the leader proposes its own removal and steps down once applied.
    for _ in range(HANDOVER_ATTEMPTS_MAX * r.core.config.election_ticks + 1):
        r.core.tick()
        ack(r, "b", "c")  # (they stay in touch, so check-quorum keeps it leading)
        r.recheck_membership()
        r.process_ready()
        if r.stats.conf_changes_proposed:
            break
    assert r.stats.conf_changes_proposed == 1 and r._handovers == HANDOVER_ATTEMPTS_MAX
    ack(r, "b", "c")
    assert r.core.voters == {"b", "c", "d"} and r.role != Role.LEADER
    close(r)
