"""node/forward.py: the forwarding frames (strict decoding) and the follower's Forwarder (coalescing, answers,
deadlines, leader changes). The leader's side (answer_forwarded) and a follower-to-leader round trip over
encoded frames are in test_submission.py; the wiring over real processes is covered by the cluster tests (txs
posted to followers)."""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.forward import (
    FORWARD_BATCH_BYTES_MAX,
    FORWARD_BATCH_TXS_MAX,
    Forwarder,
    ForwardError,
    ForwardFailed,
    ForwardFrameError,
    ForwardResults,
    ForwardTxs,
    decode_frame,
    encode_frame,
)


def test_frames_round_trip() -> None:
    for frame in (ForwardTxs(1, (b"a", b"bc")),
                  ForwardResults(7, ({"tx_id": "x", "status": "accepted"},)),
                  ForwardFailed(9, 429, "queue_full", "full")):
        assert decode_frame(encode_frame(frame)) == frame


@pytest.mark.parametrize("obj", [
    [], {}, "txs", ["txs"], ["txs", -1, [b"a"]], ["txs", 1, []], ["txs", 1, ["not bytes"]], ["txs", True, [b"a"]],
    ["txs", 1, [b"a"] * (FORWARD_BATCH_TXS_MAX + 1)], ["results", 1, [1]], ["error", 1, 200, "c", "m"],
    ["error", 1, 503, 5, "m"], ["nope", 1, []], ["txs", (1 << 63), [b"a"]],
])
def test_malformed_frames_are_refused(obj: object) -> None:
    with pytest.raises(ForwardFrameError):
        decode_frame(msgpack.packb(obj, use_bin_type=True))


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(payload: bytes) -> None:
    with contextlib.suppress(ForwardFrameError):
        decode_frame(payload)


class _Leader:
    """Records what the Forwarder sends; answers on demand."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ForwardTxs]] = []
        self.leader: str | None = "L"

    def send(self, dst: str, payload: bytes) -> None:
        frame = decode_frame(payload)
        assert isinstance(frame, ForwardTxs)
        self.sent.append((dst, frame))


async def test_callers_of_one_turn_share_a_frame_and_get_their_own_answers() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader)
    a = asyncio.ensure_future(fwd.forward([b"1", b"2"]))
    b = asyncio.ensure_future(fwd.forward([b"3"]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(net.sent) == 1
    dst, frame = net.sent[0]
    assert dst == "L" and frame.raws == (b"1", b"2", b"3")
    results = tuple({"tx_id": r.decode(), "status": "accepted"} for r in frame.raws)
    fwd.on_frame("L", ForwardResults(frame.batch_id, results))
    assert await a == list(results[:2])
    assert await b == [results[2]]
    assert fwd.in_flight == 0


async def test_answers_from_another_peer_or_of_the_wrong_size_are_not_taken() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader)
    call = asyncio.ensure_future(fwd.forward([b"1"]))
    await asyncio.sleep(0.01)
    batch_id = net.sent[0][1].batch_id
    fwd.on_frame("M", ForwardResults(batch_id, ({"status": "accepted"},)))  # not the peer it went to
    fwd.on_frame("L", ForwardResults(batch_id + 1, ({"status": "accepted"},)))  # unknown batch
    assert not call.done()
    fwd.on_frame("L", ForwardResults(batch_id, ()))
    with pytest.raises(ForwardError) as err:
        await call
    assert err.value.status == 503 and err.value.code == "forward_failed"


async def test_a_batch_failed_by_the_leader_fails_every_caller_with_its_status() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader)
    call = asyncio.ensure_future(fwd.forward([b"1"]))
    await asyncio.sleep(0.01)
    fwd.on_frame("L", ForwardFailed(net.sent[0][1].batch_id, 429, "queue_full", "the queue is full"))
    with pytest.raises(ForwardError) as err:
        await call
    assert (err.value.status, err.value.code, err.value.leader_id) == (429, "queue_full", "L")


async def test_lost_frames_time_out_and_a_leader_change_fails_at_once() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader, timeout_s=0.05)
    with pytest.raises(ForwardError) as err:
        await fwd.forward([b"1"])
    assert err.value.code == "leader_unreachable"
    slow = Forwarder(net.send, lambda: net.leader, timeout_s=30)
    call = asyncio.ensure_future(slow.forward([b"2"]))
    await asyncio.sleep(0.01)
    slow.on_leader_change("L")  # same leader: nothing happens
    assert not call.done()
    slow.on_leader_change("M")
    with pytest.raises(ForwardError) as err:
        await call
    assert err.value.code == "leader_changed" and slow.in_flight == 0


async def test_no_leader_known_refuses_without_sending() -> None:
    net = _Leader()
    net.leader = None
    fwd = Forwarder(net.send, lambda: net.leader)
    with pytest.raises(ForwardError) as err:
        await fwd.forward([b"1"])
    assert err.value.code == "no_leader" and net.sent == []


async def test_a_burst_larger_than_a_frame_goes_out_as_several() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader)
    calls = [asyncio.ensure_future(fwd.forward([b"x"] * 600)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert [len(f.raws) for _, f in net.sent] == [600, 600, 600]
    for _, frame in net.sent:
        fwd.on_frame("L", ForwardResults(frame.batch_id, tuple({"status": "accepted"} for _ in frame.raws)))
    assert [len(await c) for c in calls] == [600, 600, 600]
    fwd.close()


async def test_frames_stay_under_the_byte_limit_even_for_one_large_caller() -> None:
    net = _Leader()
    fwd = Forwarder(net.send, lambda: net.leader)
    big = b"x" * (1 << 20)
    count = FORWARD_BATCH_BYTES_MAX // len(big) * 2 + 1  # one caller, more than two frames' worth
    call = asyncio.ensure_future(fwd.forward([big] * count))
    other = asyncio.ensure_future(fwd.forward([b"small"]))
    await asyncio.sleep(0.01)
    assert all(sum(map(len, f.raws)) <= FORWARD_BATCH_BYTES_MAX for _, f in net.sent)
    assert sum(len(f.raws) for _, f in net.sent) == count + 1
    for _, frame in net.sent:
        fwd.on_frame("L", ForwardResults(frame.batch_id, tuple({"n": len(r)} for r in frame.raws)))
    assert await call == [{"n": len(big)}] * count
    assert await other == [{"n": 5}]
