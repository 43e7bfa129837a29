"""node/submission.py against real parts: a StateStore on LevelDB with a genesis, the real Proposer (its driver is
a stand-in: no block is cut here), signed txs, and real forwarding frames between a follower's Forwarder and a
leader's `answer_forwarded`. The HTTP answers built from these errors are checked at the end; over real
processes the cluster tests cover them (tests/integration)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from consensus.ready import Role
from ecert import codes
from ecert.executor import EcertExecutor
from ecert.genesis import GenesisDoc, GenesisOrg, genesis_hash, genesis_writes
from ecert.keys import org_keys_from_seed
from ecert.state import CERT_INDEX
from ecert.tx import make_tx, raw_tx_id
from ledger.block import make_block
from ledger.store import StateStore
from node.forward import Forwarder, ForwardFailed, ForwardResults, ForwardTxs, decode_frame, encode_frame
from node.http.api import SUBMISSION_STATUS, submission_http_error
from node.proposer import Proposer
from node.submission import (
    FORWARD_FAILED_STATUS,
    STATUS_ACCEPTED,
    STATUS_REFUSED,
    STATUS_UNKNOWN,
    NotLeader,
    QueueFull,
    SubmissionNode,
    TxRefused,
    Unroutable,
    accept_forwarded,
    admit,
    answer_forwarded,
    enqueue_on_leader,
    route_to_leader,
    submit,
    submit_batch,
)

CHAIN = "sub-chain"
T0 = 1_700_000_000_000
YEAR_MS = 365 * 86_400_000
ORGS = (("boc", "Bank of China", "bank"), ("geely", "Geely", "core"), ("tier1", "Tier 1", "supplier"))


def seed_for(org_id: str) -> bytes:
    return org_id.encode().ljust(32, b"\x00")[:32]


GENESIS = GenesisDoc(CHAIN, T0, tuple(
    GenesisOrg(o, name, role, org_keys_from_seed(seed_for(o)).sign_pk, org_keys_from_seed(seed_for(o)).box_pk)
    for o, name, role in ORGS))


def grant(nonce: int, limit: int = 1_000_000, seed: bytes | None = None, chain_id: str = CHAIN) -> bytes:
    """A signed credit.grant from boc: valid against the genesis state."""
    return make_tx(seed if seed is not None else seed_for("boc"), chain_id, "credit.grant", "boc", nonce,
                   {"core": "geely", "limit": limit, "expires_at": T0 + YEAR_MS})


class FakeDriver:
    """What the Proposer reads of the Raft driver (no block is cut in these tests), and the leader id."""

    def __init__(self, leader_id: str | None) -> None:
        self.leader_id = leader_id
        self.applied_index = 0
        self.halted: str | None = None

    def last_index(self) -> int:
        return 0


@dataclass
class FakeNode:
    """A SubmissionNode of real parts; `forward` stands for the peer transport to the leader."""

    node_id: str
    store: StateStore
    leader_id: str | None
    queue_max: int = 100
    chain_id: str = CHAIN
    forwarder: Forwarder | None = None
    driver: FakeDriver = field(init=False)
    proposer: Proposer = field(init=False)

    def __post_init__(self) -> None:
        self.driver = FakeDriver(self.leader_id)
        self.proposer = Proposer(node_id=self.node_id, driver=self.driver, store=self.store, tx_id_of=raw_tx_id,
                                 block_max_txs=10, block_max_bytes=1 << 20, block_timeout_ms=5,
                                 queue_max=self.queue_max)
        role = Role.LEADER if self.leader_id == self.node_id else Role.FOLLOWER
        self.proposer.on_role_change(role, self.leader_id, 1)

    leader_wait_s: float = 0.05
    leader_learnt: asyncio.Event = field(init=False, default_factory=asyncio.Event)

    async def forward_txs(self, raws: list[bytes]) -> list[dict[str, Any]]:
        assert self.forwarder is not None
        return await self.forwarder.forward(raws)

    async def await_leader(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.leader_learnt.wait(), self.leader_wait_s)

    def learn_leader(self, leader_id: str) -> None:
        """What a heartbeat from a new leader does to the node (Node.on_role_change)."""
        self.driver.leader_id = self.leader_id = leader_id
        self.leader_learnt.set()


def open_store(path: Path) -> StateStore:
    store = StateStore.open(str(path), sync=False, index=CERT_INDEX)
    store.init_genesis(genesis_hash(GENESIS), genesis_writes(GENESIS), chain_id=CHAIN, genesis_time=T0)
    return store


def apply(store: StateStore, *raws: bytes) -> None:
    block = make_block(store.height + 1, store.block_hash, store.last_time + 1, "n1", raws)
    store.apply_block(block, EcertExecutor(CHAIN))


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[StateStore, StateStore]]:
    a, b = open_store(tmp_path / "leader"), open_store(tmp_path / "follower")
    yield a, b
    a.close()
    b.close()


def link(follower: FakeNode, leader: FakeNode) -> None:
    """A Forwarder on the follower whose frames reach the leader's answer_forwarded and come back, encoded."""

    def send_app(dst: str, payload: bytes) -> None:
        assert dst == leader.node_id
        frame = decode_frame(payload)
        assert isinstance(frame, ForwardTxs)
        answer = decode_frame(encode_frame(answer_forwarded(leader, frame)))
        assert isinstance(answer, ForwardResults | ForwardFailed)
        asyncio.get_running_loop().call_soon(follower_fwd.on_frame, leader.node_id, answer)

    follower_fwd = Forwarder(send_app, lambda: follower.driver.leader_id, timeout_s=1.0)
    follower.forwarder = follower_fwd


def test_the_node_object_is_a_submission_node(stores: tuple[StateStore, StateStore]) -> None:
    node: SubmissionNode = FakeNode("n1", stores[0], "n1")  # also checked by mypy
    assert node.chain_id == CHAIN


# -- admission

def test_a_valid_tx_is_admitted_and_a_bad_one_refused_with_its_code(stores: tuple[StateStore, StateStore]) -> None:
    node = FakeNode("n1", stores[0], "n1")
    raw = grant(1)
    assert admit(node, raw) == (raw_tx_id(raw), None)
    forged = grant(2, seed=seed_for("geely"))
    with pytest.raises(TxRefused) as err:
        admit(node, forged)
    assert err.value.code == codes.BAD_SIGNATURE and err.value.tx_id == raw_tx_id(forged)
    with pytest.raises(TxRefused) as err:
        admit(node, grant(3, chain_id="other-chain"))
    assert err.value.code == codes.WRONG_CHAIN_ID


async def test_a_resubmitted_tx_gets_its_first_outcome_not_a_nonce_refusal(
        stores: tuple[StateStore, StateStore]) -> None:
    store = stores[0]
    raw = grant(1)
    apply(store, raw)
    node = FakeNode("n1", store, "n2")  # a follower: the answer comes from its own store, nothing is routed
    tx_id, known = admit(node, raw)
    assert tx_id == raw_tx_id(raw)
    assert known is not None and known["status"] == "committed" and known["height"] == 1
    assert await submit(node, raw, None) == known
    with pytest.raises(TxRefused) as err:
        admit(node, grant(1, limit=5))  # same nonce, another tx
    assert err.value.code == codes.NONCE_REUSED


# -- the leader

def test_the_leader_queues_and_a_follower_refuses_to(stores: tuple[StateStore, StateStore]) -> None:
    leader, follower = FakeNode("n1", stores[0], "n1"), FakeNode("n2", stores[1], "n1")
    raw = grant(1)
    enqueue_on_leader(leader, [(raw_tx_id(raw), raw)])
    assert list(leader.proposer.pending) == [raw_tx_id(raw)]
    with pytest.raises(NotLeader) as err:
        enqueue_on_leader(follower, [(raw_tx_id(raw), raw)])
    assert err.value.code == "not_leader" and err.value.leader_id == "n1"
    assert not follower.proposer.pending


def test_a_full_queue_is_refused_with_the_tx_it_stopped_at(stores: tuple[StateStore, StateStore]) -> None:
    leader = FakeNode("n1", stores[0], "n1", queue_max=1)
    a, b = grant(1), grant(2)
    with pytest.raises(QueueFull) as err:
        enqueue_on_leader(leader, [(raw_tx_id(a), a), (raw_tx_id(b), b)])
    assert err.value.code == "queue_full" and err.value.tx_id == raw_tx_id(b)


def test_a_forwarded_batch_gets_admission_again_and_answers_in_order(stores: tuple[StateStore,
                                                                                  StateStore]) -> None:
    leader = FakeNode("n1", stores[0], "n1")
    good, forged = grant(1), grant(2, seed=seed_for("tier1"))
    answers = accept_forwarded(leader, [good, forged])
    assert answers[0] == {"tx_id": raw_tx_id(good), "status": STATUS_ACCEPTED}
    assert answers[1]["status"] == STATUS_REFUSED and answers[1]["error"]["code"] == codes.BAD_SIGNATURE
    assert list(leader.proposer.pending) == [raw_tx_id(good)]


def test_a_forwarded_batch_that_fails_whole_answers_a_failed_frame(stores: tuple[StateStore,
                                                                                StateStore]) -> None:
    not_leader = FakeNode("n2", stores[1], "n1")
    answer = answer_forwarded(not_leader, ForwardTxs(7, (grant(1),)))
    assert answer == ForwardFailed(7, 503, "not_leader", "this node is not the leader")
    full = FakeNode("n1", stores[0], "n1", queue_max=0)
    answer = answer_forwarded(full, ForwardTxs(8, (grant(1),)))
    assert isinstance(answer, ForwardFailed) and (answer.status, answer.code) == (429, "queue_full")


# -- routing and waiting

async def test_a_follower_forwards_to_the_leader_over_frames(stores: tuple[StateStore, StateStore]) -> None:
    leader, follower = FakeNode("n1", stores[0], "n1"), FakeNode("n2", stores[1], "n1")
    link(follower, leader)
    raw = grant(1)
    assert await submit(follower, raw, None) == {"tx_id": raw_tx_id(raw), "status": STATUS_ACCEPTED}
    assert list(leader.proposer.pending) == [raw_tx_id(raw)]
    assert not follower.proposer.pending


async def test_a_tx_the_leader_refuses_is_refused_at_the_follower(stores: tuple[StateStore,
                                                                               StateStore]) -> None:
    leader_store, follower_store = stores
    apply(leader_store, grant(1))  # the follower lags: it has not applied nonce 1 yet
    leader, follower = FakeNode("n1", leader_store, "n1"), FakeNode("n2", follower_store, "n1")
    link(follower, leader)
    other = grant(1, limit=7)
    with pytest.raises(TxRefused) as err:
        await submit(follower, other, 5.0)
    assert err.value.code == codes.NONCE_REUSED and err.value.tx_id == raw_tx_id(other)
    assert follower.proposer.waiting == 0  # the waiter was dropped with the refusal


async def test_the_leaders_whole_batch_failure_reaches_the_follower_with_its_status(
        stores: tuple[StateStore, StateStore]) -> None:
    leader, follower = FakeNode("n1", stores[0], "n1", queue_max=0), FakeNode("n2", stores[1], "n1")
    link(follower, leader)
    raw = grant(1)
    with pytest.raises(Unroutable) as err:
        await route_to_leader(follower, [(raw_tx_id(raw), raw)])
    assert (err.value.status, err.value.code, err.value.leader_id) == (429, "queue_full", "n1")


async def test_no_leader_is_unroutable_and_forgets_the_waiters(stores: tuple[StateStore, StateStore]) -> None:
    follower = FakeNode("n2", stores[1], None)
    link(follower, FakeNode("n1", stores[0], "n1"))
    with pytest.raises(Unroutable) as err:
        await submit_batch(follower, [grant(1), grant(2)], 5.0)
    assert (err.value.status, err.value.code, err.value.leader_id) == (503, "no_leader", None)
    assert follower.proposer.waiting == 0


async def test_a_tx_sent_between_leaders_waits_for_the_next_one(stores: tuple[StateStore, StateStore]) -> None:
    """A node that knows no leader yet (just started, or an election running) holds the tx for a bounded
    time: once a leader is learnt the tx goes there, rather than the client getting `no_leader`."""
    leader = FakeNode("n1", stores[0], "n1")
    follower = FakeNode("n2", stores[1], None, leader_wait_s=5.0)
    link(follower, leader)
    raw = grant(1)
    routed = asyncio.ensure_future(route_to_leader(follower, [(raw_tx_id(raw), raw)]))
    await asyncio.sleep(0.02)
    assert not routed.done() and not leader.proposer.pending
    follower.learn_leader("n1")
    assert await asyncio.wait_for(routed, 2.0) == [None]
    assert list(leader.proposer.pending) == [raw_tx_id(raw)]


async def test_waiting_ends_with_the_outcome_or_unknown_at_the_deadline(stores: tuple[StateStore,
                                                                                     StateStore]) -> None:
    store = stores[0]
    leader = FakeNode("n1", store, "n1")
    raw = grant(1)
    assert await submit(leader, raw, 0.01) == {"tx_id": raw_tx_id(raw), "status": STATUS_UNKNOWN}
    assert leader.proposer.waiting == 0
    other = grant(2)
    waiting = asyncio.ensure_future(submit(leader, other, 5.0))
    await asyncio.sleep(0)
    block = make_block(1, store.block_hash, store.last_time + 1, "n1", (other,))
    outcomes = store.apply_block(block, EcertExecutor(CHAIN))
    leader.proposer.on_block_applied(1, block, outcomes)
    answer = await waiting
    assert answer["tx_id"] == raw_tx_id(other) and answer["status"] == "committed" and answer["height"] == 1


async def test_a_batch_answers_each_tx_in_place(stores: tuple[StateStore, StateStore]) -> None:
    store = stores[0]
    done = grant(1)
    apply(store, done)
    leader = FakeNode("n1", store, "n1")
    new, forged = grant(2), grant(3, seed=seed_for("geely"))
    answers = await submit_batch(leader, [new, done, forged], None)
    assert answers[0] == {"tx_id": raw_tx_id(new), "status": STATUS_ACCEPTED}
    assert answers[1]["status"] == "committed" and answers[1]["height"] == 1
    assert answers[2]["status"] == STATUS_REFUSED and answers[2]["tx_id"] == raw_tx_id(forged)
    assert list(leader.proposer.pending) == [raw_tx_id(new)]


# -- the HTTP answers (node/http/api.py renders these errors as before the move)

def test_http_answers_keep_their_status_code_and_subject() -> None:
    cases = [
        (TxRefused(codes.BAD_SIGNATURE, "bad", "ab" * 32), 400, {"tx_id": "ab" * 32}),
        (NotLeader("n3"), 503, {"leader_id": "n3"}),
        (NotLeader(None), 503, {"leader_id": None}),
        (QueueFull("10 txs already queued (queue_max)", "cd" * 32), 429, {"tx_id": "cd" * 32}),
        (Unroutable(503, "no_leader", "no leader", None), 503, {"leader_id": None}),
        (Unroutable(429, "queue_full", "full", "n1"), 429, {"leader_id": "n1"}),
    ]
    for exc, status, extra in cases:
        http = submission_http_error(exc)
        assert (http.status, http.code, http.message, http.extra) == (status, exc.code, exc.message, extra)
    assert all(SUBMISSION_STATUS[cls] == status for cls, status in FORWARD_FAILED_STATUS.items())
