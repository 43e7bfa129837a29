"""Forwarding clients' txs from a follower to the leader over the peer transport (application frames).

A follower that admits a tx (signature and cheap checks done) hands it to the leader, whose proposer alone cuts
blocks. Before this module it did so with an HTTP request per batch (`POST /v1/txs` on the leader): a second
HTTP stack on the critical path of two txs in three. Now it writes one frame on the authenticated connection it
already keeps open to the leader:

    follower -> leader   ["txs", batch_id, [raw tx, ...]]
    leader -> follower   ["results", batch_id, [answer per tx, ...]]         (answers as POST /v1/txs?wait=none)
                         ["error", batch_id, status, code, message]          (the whole batch failed: 429, 503)

Txs submitted at a follower in the same event-loop turn share one frame (no timer: the frame leaves at the end
of the turn). Frames can be lost like any Raft frame (partition, lost connection, full queue), so every batch has
a deadline; a batch in flight when the leader changes fails at once. Either way the caller answers 503 and the
client resends: tx ids apply once, so a tx that did reach the old leader is not applied twice.

The leader trusts nothing in a forwarded batch: each tx goes through the same admission (signature included) as
one posted to its own HTTP API. A malformed frame from a peer is logged and dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.invariant import require
from ledger.block import TX_BYTES_MAX
from node.transport import FRAME_BYTES_MAX

log = logging.getLogger("node.forward")

FORWARD_BATCH_TXS_MAX = 1000
"""Txs per frame; a larger burst goes out as several frames."""
FORWARD_BATCH_BYTES_MAX = 8 << 20
"""Tx bytes per frame, well under the transport's FRAME_BYTES_MAX (asserted below: a larger frame would close
the connection, Raft traffic included). A lone tx over it would go alone, so TX_BYTES_MAX must not exceed it."""
FORWARD_ANSWER_BYTES_MAX = 4 << 10
"""Allowance per answer in a results frame (tx id, status, error code and a message of a few hundred bytes)."""
FORWARD_TIMEOUT_S = 3.0
"""A batch without an answer by then fails with 503 leader_unreachable (the frame or its answer was lost)."""
_BATCH_ID_MAX = (1 << 63) - 1
_FRAME_HEAD_BYTES_MAX = 64
"""A frame's bytes around its list of txs or answers: the app mark, the kind, the batch id, the list header."""
_TX_HEADER_BYTES_MAX = 5
"""msgpack's bin32 header around each tx."""


def check_forward_limits(frame_bytes_max: int, tx_bytes_max: int, batch_txs_max: int, batch_bytes_max: int,
                         answer_bytes_max: int) -> None:
    """Raise InvariantViolation unless the largest txs frame and the largest results frame fit in a transport
    frame, and any one tx fits in a txs frame."""
    require(tx_bytes_max <= batch_bytes_max, f"a tx of {tx_bytes_max} bytes would not fit in a forwarded batch")
    txs_frame = _FRAME_HEAD_BYTES_MAX + batch_bytes_max + batch_txs_max * _TX_HEADER_BYTES_MAX
    require(txs_frame <= frame_bytes_max, f"a forwarded batch frame of {txs_frame} bytes is over {frame_bytes_max}")
    results_frame = _FRAME_HEAD_BYTES_MAX + batch_txs_max * answer_bytes_max
    require(results_frame <= frame_bytes_max, f"a results frame of {results_frame} bytes is over {frame_bytes_max}")


check_forward_limits(FRAME_BYTES_MAX, TX_BYTES_MAX, FORWARD_BATCH_TXS_MAX, FORWARD_BATCH_BYTES_MAX,
                     FORWARD_ANSWER_BYTES_MAX)


class ForwardError(Exception):
    """Forwarding to the leader failed as a whole: the HTTP status, code and message to answer with."""

    def __init__(self, status: int, code: str, message: str, leader_id: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.leader_id = leader_id


class ForwardFrameError(Exception):
    """An application frame that is not a well-formed forwarding message."""


@dataclass(frozen=True, slots=True)
class ForwardTxs:
    batch_id: int
    raws: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class ForwardResults:
    batch_id: int
    results: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class ForwardFailed:
    batch_id: int
    status: int
    code: str
    message: str


ForwardFrame = ForwardTxs | ForwardResults | ForwardFailed


def encode_frame(frame: ForwardFrame) -> bytes:
    if isinstance(frame, ForwardTxs):
        obj: list[Any] = ["txs", frame.batch_id, list(frame.raws)]
    elif isinstance(frame, ForwardResults):
        obj = ["results", frame.batch_id, list(frame.results)]
    else:
        obj = ["error", frame.batch_id, frame.status, frame.code, frame.message]
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def decode_frame(payload: bytes) -> ForwardFrame:
    """Strict: anything but the three shapes above raises ForwardFrameError."""
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ForwardFrameError(f"undecodable forwarding frame: {exc}") from None
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise ForwardFrameError("a forwarding frame is a list starting with its kind")
    kind = obj[0]
    if len(obj) < 2 or type(obj[1]) is not int or not 0 <= obj[1] <= _BATCH_ID_MAX:
        raise ForwardFrameError("bad batch id")
    if kind == "txs" and len(obj) == 3 and isinstance(obj[2], list):
        raws = obj[2]
        if not raws or len(raws) > FORWARD_BATCH_TXS_MAX or not all(type(r) is bytes for r in raws):
            raise ForwardFrameError(f"txs must be 1..{FORWARD_BATCH_TXS_MAX} byte strings")
        return ForwardTxs(obj[1], tuple(raws))
    if kind == "results" and len(obj) == 3 and isinstance(obj[2], list):
        if not all(isinstance(r, dict) for r in obj[2]):
            raise ForwardFrameError("results must be maps")
        return ForwardResults(obj[1], tuple(obj[2]))
    if (kind == "error" and len(obj) == 5 and type(obj[2]) is int and 400 <= obj[2] < 600
            and isinstance(obj[3], str) and isinstance(obj[4], str)):
        return ForwardFailed(obj[1], obj[2], obj[3][:64], obj[4][:500])
    raise ForwardFrameError(f"unknown or malformed forwarding frame {kind[:32]!r}")


@dataclass(slots=True)
class _Batch:
    leader_id: str
    raws: list[bytes]
    waiters: list[tuple[int, asyncio.Future[list[dict[str, Any]]]]]
    timer: asyncio.TimerHandle | None = None
    size: int = 0


class Forwarder:
    """The follower's side: coalesces, sends, and matches answers to waiting callers."""

    def __init__(self, send_app: Callable[[str, bytes], None], leader_id: Callable[[], str | None],
                 timeout_s: float = FORWARD_TIMEOUT_S) -> None:
        self._send_app = send_app
        self._leader_id = leader_id
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._open: _Batch | None = None
        self._in_flight: dict[int, _Batch] = {}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def forward(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """The leader's answer per tx (as POST /v1/txs?wait=none); ForwardError if a batch failed as a whole.
        Txs beyond a frame's count or byte limit go in further frames."""
        parts: list[list[bytes]] = [[]]
        size = 0
        for raw in raws:
            if parts[-1] and (len(parts[-1]) >= FORWARD_BATCH_TXS_MAX or size + len(raw) > FORWARD_BATCH_BYTES_MAX):
                parts.append([])
                size = 0
            parts[-1].append(raw)
            size += len(raw)
        if len(parts) == 1:
            return await self._forward_part(raws)
        answers = await asyncio.gather(*(self._forward_part(part) for part in parts))
        return [answer for part in answers for answer in part]

    async def _forward_part(self, raws: list[bytes]) -> list[dict[str, Any]]:
        leader = self._leader_id()
        if leader is None:
            raise ForwardError(503, "no_leader", "no leader is known right now; retry shortly", None)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[dict[str, Any]]] = loop.create_future()
        batch = self._open
        size = sum(map(len, raws))
        if (batch is None or batch.leader_id != leader or len(batch.raws) + len(raws) > FORWARD_BATCH_TXS_MAX
                or batch.size + size > FORWARD_BATCH_BYTES_MAX):
            if batch is not None:
                self._flush()
            batch = self._open = _Batch(leader, [], [])
            loop.call_soon(self._flush_batch, batch)
        batch.waiters.append((len(raws), fut))
        batch.raws.extend(raws)
        batch.size += size
        return await fut

    def _flush(self) -> None:
        if self._open is not None:
            self._flush_batch(self._open)

    def _flush_batch(self, batch: _Batch) -> None:
        if self._open is batch:
            self._open = None
        if batch.timer is not None or not batch.waiters:
            return  # already sent
        batch_id = next(self._ids)
        self._in_flight[batch_id] = batch
        batch.timer = asyncio.get_running_loop().call_later(self._timeout_s, self._expire, batch_id)
        self._send_app(batch.leader_id, encode_frame(ForwardTxs(batch_id, tuple(batch.raws))))

    def _expire(self, batch_id: int) -> None:
        batch = self._in_flight.get(batch_id)
        if batch is not None:
            self._fail(batch_id, ForwardError(503, "leader_unreachable",
                                              f"no answer from leader {batch.leader_id} within "
                                              f"{self._timeout_s:g} s; retry", batch.leader_id))

    def _fail(self, batch_id: int, error: ForwardError) -> None:
        batch = self._in_flight.pop(batch_id)
        if batch.timer is not None:
            batch.timer.cancel()
        for _, fut in batch.waiters:
            if not fut.done():
                fut.set_exception(error)

    def on_frame(self, peer: str, frame: ForwardResults | ForwardFailed) -> None:
        """An answer from `peer`; answers to unknown batches, or from a peer the batch was not sent to, are
        ignored (late, after a timeout, or forged by a confused peer)."""
        batch = self._in_flight.get(frame.batch_id)
        if batch is None or batch.leader_id != peer:
            return
        if isinstance(frame, ForwardFailed):
            self._fail(frame.batch_id, ForwardError(frame.status, frame.code, frame.message, peer))
            return
        if len(frame.results) != len(batch.raws):
            self._fail(frame.batch_id, ForwardError(503, "forward_failed",
                                                    "leader answered a malformed batch result", peer))
            return
        del self._in_flight[frame.batch_id]
        if batch.timer is not None:
            batch.timer.cancel()
        at = 0
        for count, fut in batch.waiters:
            if not fut.done():
                fut.set_result(list(frame.results[at:at + count]))
            at += count

    def on_leader_change(self, leader_id: str | None) -> None:
        """Batches sent to another leader fail now rather than at their deadline (clients resend sooner)."""
        for batch_id, batch in list(self._in_flight.items()):
            if batch.leader_id != leader_id:
                self._fail(batch_id, ForwardError(503, "leader_changed",
                                                  f"leader changed from {batch.leader_id} while forwarding; "
                                                  "retry", leader_id))

    def close(self) -> None:
        for batch_id in list(self._in_flight):
            self._fail(batch_id, ForwardError(503, "shutting_down", "the node is stopping", None))
