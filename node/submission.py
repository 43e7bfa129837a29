"""Tx submission: admission where a tx arrives, queueing on the leader, forwarding from a follower.

Every node checks a tx at admission (decode, chain id, signature, signer active: ecert.admission.precheck), so
bad input is refused where it arrives and never reaches consensus. The leader queues an admitted tx in its
proposer for the next block; a follower forwards it to the leader over the peer transport (node/forward.py), and
the leader admits it again: nothing a peer sends is trusted. With a wait, the answer comes once the tx's block is
applied on *this* node, or is `unknown` at the deadline (a leader change can lose an uncommitted block): never a
false success.

Answers are CONTRACT §4 dicts (`{"tx_id", "status", ...}`). A failure is a `SubmissionError` with a stable
`code`; which HTTP status it gets is the HTTP layer's business (node/http/api.py), except where the forwarding
protocol itself carries one (`FORWARD_FAILED_STATUS`, `Unroutable.status`).

Every function takes the node as a `SubmissionNode`: exactly what submission reads of it, so this module never
imports node.server (which implements it) and the tests can hand it a small real one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

from consensus.invariant import InvariantViolation, require
from ecert.admission import precheck
from ecert.errors import TxRejected
from ecert.tx import raw_tx_id
from ledger.executor import TxRecord
from ledger.state_view import StateView
from node.forward import ForwardError, ForwardFailed, ForwardResults, ForwardTxs
from node.proposer import Proposer, QueueFullError, outcome_answer

STATUS_ACCEPTED = "accepted"
"""Queued on the leader (or forwarded to it); not applied yet. A submission that does not wait answers this."""
STATUS_UNKNOWN = "unknown"
"""Not applied here by the deadline: the client polls GET /v1/tx/{tx_id} (the tx may still commit)."""
STATUS_REFUSED = "refused"
"""One tx of a batch failed admission (here or at the leader); its answer carries the error."""

Answer = dict[str, Any]
Admitted = tuple[str, bytes]
"""(tx id, raw envelope) of a tx that passed admission."""


# -- what submission needs of the node ----------------------------------------------------------------------------


class TxLedger(Protocol):
    """The committed state admission checks against (ledger.store.StateStore)."""

    def view(self) -> StateView: ...

    def tx_outcome(self, tx_id: str) -> TxRecord | None: ...


class LeaderView(Protocol):
    """Who this node believes leads (node.driver.RaftDriver)."""

    @property
    def leader_id(self) -> str | None: ...


class SubmissionNode(Protocol):
    """What submission reads of the node (node.server.Node implements it). `proposer` and `driver` are None
    only before Node.start() has built them, and neither the HTTP API nor peer frames arrive before that."""

    @property
    def chain_id(self) -> str: ...

    @property
    def store(self) -> TxLedger: ...

    @property
    def proposer(self) -> Proposer | None: ...

    @property
    def driver(self) -> LeaderView | None: ...

    async def forward_txs(self, raws: list[bytes]) -> list[Answer]:
        """The leader's answer per tx (node/forward.py); raises ForwardError when the batch failed whole."""
        ...

    async def await_leader(self) -> None:
        """Returns once some leader is known, or after a bounded wait (about two election timeouts) if none
        is: a node that just started, or whose leader just went, learns the new one within that time."""
        ...


# -- errors -------------------------------------------------------------------------------------------------------


class SubmissionError(Exception):
    """A submission refused or failed: `code` is stable (clients match on it), `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TxRefused(SubmissionError):
    """The tx itself is refused: by admission here, or by the leader's admission of a forwarded tx. The code is
    the admission check's (ecert.errors.TxRejected)."""

    def __init__(self, code: str, message: str, tx_id: str) -> None:
        super().__init__(code, message)
        self.tx_id = tx_id


class NotLeader(SubmissionError):
    """Queueing was asked of a node that does not lead (a forwarded batch that raced a leader change)."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__("not_leader", "this node is not the leader")
        self.leader_id = leader_id


class QueueFull(SubmissionError):
    """The leader's proposer queue is at `queue_max`: the client retries later."""

    def __init__(self, message: str, tx_id: str) -> None:
        super().__init__(QueueFullError.code, message)
        self.tx_id = tx_id


class Unroutable(SubmissionError):
    """Forwarding to the leader failed as a whole: no leader known, the frame or its answer lost, a leader
    change, or the leader's own NotLeader / QueueFull. `status` is the one the forwarding protocol carried
    (node/forward.py: the forwarder's 503, or the leader's FORWARD_FAILED_STATUS)."""

    def __init__(self, status: int, code: str, message: str, leader_id: str | None) -> None:
        super().__init__(code, message)
        self.status = status
        self.leader_id = leader_id


FORWARD_FAILED_STATUS: dict[type[SubmissionError], int] = {NotLeader: 503, QueueFull: 429}
"""The status a leader's whole-batch failure travels with in a forwarding frame, so the follower answers its
client as the leader's own HTTP API would (node/http/api.py asserts its statuses agree)."""


# -- admission (every node) ---------------------------------------------------------------------------------------


def admit(node: SubmissionNode, raw: bytes) -> tuple[str, Answer | None]:
    """Cheap checks; returns (tx id, first outcome if the tx was already applied). Raises TxRefused."""
    # A resubmission returns the first outcome (before precheck, which would refuse the used nonce).
    tx_id = raw_tx_id(raw)  # envelope decode + sha256 only: cheap
    record = node.store.tx_outcome(tx_id)
    if record is not None:
        return record.outcome.tx_id, outcome_answer(record)
    try:
        tx_id = precheck(node.store.view(), raw, node.chain_id)
    except TxRejected as exc:
        raise TxRefused(exc.code, exc.message, tx_id) from None
    return tx_id, None


def refusal_answer(tx_id: str, code: str, message: str) -> Answer:
    return {"tx_id": tx_id, "status": STATUS_REFUSED, "error": {"code": code, "message": message}}


def admit_batch(node: SubmissionNode, raws: list[bytes]) -> tuple[list[Answer | None], list[tuple[int, str, bytes]]]:
    """`admit` for each tx: (answer per tx, or None where it was admitted; the admitted (position, tx id, raw))."""
    results: list[Answer | None] = [None] * len(raws)
    admitted: list[tuple[int, str, bytes]] = []
    for i, raw in enumerate(raws):
        try:
            tx_id, known = admit(node, raw)
        except TxRefused as e:
            results[i] = refusal_answer(e.tx_id, e.code, e.message)
            continue
        if known is not None:
            results[i] = known
        else:
            admitted.append((i, tx_id, raw))
    return results, admitted


# -- the leader ---------------------------------------------------------------------------------------------------


def _proposer(node: SubmissionNode) -> Proposer:
    proposer = node.proposer
    if proposer is None:
        raise InvariantViolation("tx submission before Node.start() built the proposer")
    return proposer


def _leader_id(node: SubmissionNode) -> str | None:
    driver = node.driver
    return driver.leader_id if driver is not None else None


def enqueue_on_leader(node: SubmissionNode, admitted: list[Admitted]) -> None:
    """Queue admitted txs in this leader's proposer; NotLeader if this node does not lead, QueueFull if full."""
    proposer = _proposer(node)
    if not proposer.is_leader:
        raise NotLeader(_leader_id(node))
    for tx_id, raw in admitted:
        try:
            proposer.enqueue(tx_id, raw)
        except QueueFullError as exc:
            raise QueueFull(str(exc), tx_id) from None


def accept_forwarded(node: SubmissionNode, raws: list[bytes]) -> list[Answer]:
    """The leader's side of node/forward.py: a follower's batch gets the same admission as one posted here
    (signatures verified again) and the same answers as a submission that does not wait. Raises NotLeader or
    QueueFull when the batch fails as a whole."""
    results, admitted = admit_batch(node, raws)
    enqueue_on_leader(node, [(tx_id, raw) for _, tx_id, raw in admitted])
    accepted = {i: {"tx_id": tx_id, "status": STATUS_ACCEPTED} for i, tx_id, _ in admitted}
    return [accepted[i] if r is None else r for i, r in enumerate(results)]


def answer_forwarded(node: SubmissionNode, frame: ForwardTxs) -> ForwardResults | ForwardFailed:
    """The frame a leader sends back for a follower's ForwardTxs frame."""
    try:
        return ForwardResults(frame.batch_id, tuple(accept_forwarded(node, list(frame.raws))))
    except (NotLeader, QueueFull) as exc:
        return ForwardFailed(frame.batch_id, FORWARD_FAILED_STATUS[type(exc)], exc.code, exc.message)


# -- routing and waiting (every node) -----------------------------------------------------------------------------


async def route_to_leader(node: SubmissionNode, admitted: list[Admitted]) -> list[Answer | None]:
    """Queue on this node if it leads, else forward to the leader. Returns, per tx, None if accepted or the
    leader's refusal answer; raises Unroutable (forwarding failed), NotLeader or QueueFull (queueing here
    failed) when the whole batch failed."""
    if not admitted:
        return []
    if not _proposer(node).is_leader and node.driver is not None and node.driver.leader_id is None:
        # Between leaders (an election, or a node just started that has not heard a heartbeat yet) the
        # answer would be `no_leader` at once; holding the txs for the election's length turns most of those
        # into commits, and the wait is bounded, so a node cut off from a majority still answers 503.
        await node.await_leader()
    if _proposer(node).is_leader:
        enqueue_on_leader(node, admitted)
        return [None] * len(admitted)
    try:
        results = await node.forward_txs([raw for _, raw in admitted])
    except ForwardError as exc:
        raise Unroutable(exc.status, exc.code, exc.message, exc.leader_id) from None
    return [r if isinstance(r, dict) and r.get("status") == STATUS_REFUSED else None for r in results]


async def wait_outcome(node: SubmissionNode, tx_id: str, fut: asyncio.Future[Answer], timeout_s: float
                       ) -> Answer | None:
    """The tx's answer once applied here, or its stored outcome at the deadline, or None (not applied here).
    `fut` is this caller's own (Proposer.wait_for makes one per waiter), so the deadline may cancel it. Awaited
    directly it wakes the handler in fewer loop turns than `wait_for(shield(fut))` (an extra future and two
    callbacks), and every turn lets the peers' messages be stepped before the answer: from the end of the apply
    to the answer 0.31 / 0.27 -> 0.22 / 0.20 ms p50 on a leader (docs/PERFORMANCE.md, "Sixth pass")."""
    try:
        async with asyncio.timeout(timeout_s):
            return await fut
    except TimeoutError:
        record = node.store.tx_outcome(tx_id)
        return outcome_answer(record) if record is not None else None
    finally:
        _proposer(node).forget(tx_id, fut)


async def submit(node: SubmissionNode, raw: bytes, wait_s: float | None) -> Answer:
    """One tx: its first outcome if already applied; else admitted and routed to the leader, then (with
    `wait_s`) its outcome once applied here, or STATUS_UNKNOWN at the deadline; without, STATUS_ACCEPTED.
    Raises TxRefused (here or at the leader), Unroutable, NotLeader or QueueFull."""
    tx_id, known = admit(node, raw)
    if known is not None:
        return known
    proposer = _proposer(node)
    # Waiting starts before routing, so a block applied while the tx is being forwarded is not missed.
    fut = proposer.wait_for(tx_id, raw) if wait_s is not None else None
    try:
        refused = (await route_to_leader(node, [(tx_id, raw)]))[0]
        if refused is not None:
            err = refused.get("error") or {}
            raise TxRefused(err.get("code", "refused"), err.get("message", "the leader refused the tx"), tx_id)
    except SubmissionError:
        if fut is not None:
            proposer.forget(tx_id, fut)
        raise
    if fut is None or wait_s is None:
        return {"tx_id": tx_id, "status": STATUS_ACCEPTED}
    answer = await wait_outcome(node, tx_id, fut, wait_s)
    return answer if answer is not None else {"tx_id": tx_id, "status": STATUS_UNKNOWN}


async def submit_batch(node: SubmissionNode, raws: list[bytes], wait_s: float | None) -> list[Answer]:
    """Several txs: an answer per tx, in order; a tx refused at admission (here or at the leader) answers
    STATUS_REFUSED in place. `wait_s` bounds the whole batch's wait. Raises Unroutable, NotLeader or QueueFull
    when the batch as a whole could not be queued."""
    results, admitted = admit_batch(node, raws)
    proposer = _proposer(node)
    futs = {tx_id: proposer.wait_for(tx_id, raw) for _, tx_id, raw in admitted} if wait_s is not None else {}
    try:
        refusals = await route_to_leader(node, [(t, r) for _, t, r in admitted])
    except SubmissionError:
        for tx_id, fut in futs.items():
            proposer.forget(tx_id, fut)
        raise
    deadline = time.monotonic() + (wait_s or 0.0)
    for (i, tx_id, _), refused in zip(admitted, refusals, strict=True):
        if refused is not None:
            results[i] = refused
            if tx_id in futs:
                proposer.forget(tx_id, futs[tx_id])
            continue
        if wait_s is None:
            results[i] = {"tx_id": tx_id, "status": STATUS_ACCEPTED}
            continue
        answer = await wait_outcome(node, tx_id, futs[tx_id], max(0.0, deadline - time.monotonic()))
        results[i] = answer if answer is not None else {"tx_id": tx_id, "status": STATUS_UNKNOWN}
    answers = [r for r in results if r is not None]
    require(len(answers) == len(raws), "every tx of a batch has an answer")
    return answers
