"""The limits the node's layers share (docs/CONTRACT.md "Limits"): a block fits in a Raft message, a Raft message
and a forwarded batch fit in a peer frame. node/transport.py and node/forward.py assert these at import; here the
checking functions are called with values that break them, and the allowances are measured on real encodings."""

from __future__ import annotations

import pytest

from consensus.codec import encode_message
from consensus.config import MSG_BYTES_MAX_DEFAULT, SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT, Config
from consensus.invariant import InvariantViolation
from consensus.messages import Entry, EntryType, Message, MessageType, SnapshotChunk, SnapshotMeta
from ledger.block import BLOCK_BYTES_MAX, TX_BYTES_MAX, encode_block, make_block
from node.forward import (
    FORWARD_ANSWER_BYTES_MAX,
    FORWARD_BATCH_BYTES_MAX,
    FORWARD_BATCH_TXS_MAX,
    ForwardResults,
    ForwardTxs,
    check_forward_limits,
)
from node.forward import encode_frame as encode_forward_frame
from node.http.openapi import HTTP_BLOCKS_PAGE_MAX, openapi_document
from node.transport import (
    APP_FRAME_MARK,
    FRAME_BYTES_MAX,
    HANDSHAKE_FRAME_BYTES_MAX,
    RAFT_MSG_OVERHEAD_BYTES_MAX,
    check_frame_limits,
)

U64 = (1 << 64) - 1
ID = "n" * 256  # the codec's longest node id
FRAME = (FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX, BLOCK_BYTES_MAX, MSG_BYTES_MAX_DEFAULT,
         SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT, RAFT_MSG_OVERHEAD_BYTES_MAX)
FORWARD = (FRAME_BYTES_MAX, TX_BYTES_MAX, FORWARD_BATCH_TXS_MAX, FORWARD_BATCH_BYTES_MAX, FORWARD_ANSWER_BYTES_MAX)


def test_the_node_runs_raft_with_the_defaults_the_frame_limit_is_checked_against() -> None:
    cfg = Config(id="n1")
    assert cfg.max_msg_bytes == MSG_BYTES_MAX_DEFAULT
    assert cfg.max_snapshot_chunk_bytes == SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT
    check_frame_limits(*FRAME)
    check_forward_limits(*FORWARD)


@pytest.mark.parametrize(("index", "value", "match"), [
    (0, BLOCK_BYTES_MAX, "does not fit"),                  # the old 16 MiB frame could not carry a 16 MiB block
    (2, FRAME_BYTES_MAX, "does not fit"),                  # a block as large as a frame
    (3, FRAME_BYTES_MAX, "does not fit"),                  # max_msg_bytes as large as a frame
    (4, FRAME_BYTES_MAX, "does not fit"),                  # a snapshot chunk as large as a frame
    (1, FRAME_BYTES_MAX + 1, "handshake"),
])
def test_frame_limits_that_disagree_fail(index: int, value: int, match: str) -> None:
    bad = list(FRAME)
    bad[index] = value
    with pytest.raises(InvariantViolation, match=match):
        check_frame_limits(*bad)


@pytest.mark.parametrize(("index", "value", "match"), [
    (1, FORWARD_BATCH_BYTES_MAX + 1, "would not fit in a forwarded batch"),
    (3, FRAME_BYTES_MAX, "forwarded batch frame"),
    (2, FRAME_BYTES_MAX // FORWARD_ANSWER_BYTES_MAX + 1, "results frame"),
    (0, 8 << 20, "forwarded batch frame"),
])
def test_forward_limits_that_disagree_fail(index: int, value: int, match: str) -> None:
    bad = list(FORWARD)
    bad[index] = value
    with pytest.raises(InvariantViolation, match=match):
        check_forward_limits(*bad)


def _overhead(msg: Message, data_bytes: int) -> int:
    size = len(encode_message(msg))
    assert size <= FRAME_BYTES_MAX
    return size - data_bytes


def test_the_raft_overhead_allowance_covers_the_worst_messages() -> None:
    # One block of BLOCK_BYTES_MAX, alone (the codec does not look inside an entry's data).
    lone = Message(MessageType.APPEND, ID, ID, U64, U64, U64, commit=U64, reject_hint=U64, hint_term=U64,
                   entries=(Entry(U64, U64, EntryType.NORMAL, bytes(BLOCK_BYTES_MAX)),))
    # max_msg_bytes of the smallest blocks (one 1-byte tx), each in its own term: the most per-entry columns.
    small = encode_block(make_block(1, bytes(32), 0, "p", (b"t",)))
    count = MSG_BYTES_MAX_DEFAULT // len(small)
    many = Message(MessageType.APPEND, ID, ID, U64, U64, U64, commit=U64,
                   entries=tuple(Entry(U64 - i, U64 - count + i, EntryType.NORMAL, small) for i in range(count)))
    snapshot = Message(MessageType.SNAPSHOT, ID, ID, U64, U64, U64, commit=U64,
                       snapshot=SnapshotMeta(U64, U64, tuple(f"{i:0256d}" for i in range(1024)), ()),
                       chunk=SnapshotChunk(U64, bytes(SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT), True, U64))
    for msg, data_bytes in [(lone, BLOCK_BYTES_MAX), (many, count * len(small)),
                            (snapshot, SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT)]:
        assert _overhead(msg, data_bytes) <= RAFT_MSG_OVERHEAD_BYTES_MAX


def test_the_largest_forwarded_frames_fit_in_a_peer_frame() -> None:
    for size in (FORWARD_BATCH_BYTES_MAX // FORWARD_BATCH_TXS_MAX, 1 << 16):  # 3- and 5-byte bin headers
        count = min(FORWARD_BATCH_TXS_MAX, FORWARD_BATCH_BYTES_MAX // size)
        frame = APP_FRAME_MARK + encode_forward_frame(ForwardTxs((1 << 63) - 1, (b"t" * size,) * count))
        assert len(frame) <= FRAME_BYTES_MAX
        assert len(frame) - count * size <= 64 + count * 5  # the bound check_forward_limits assumes
    answer = {"tx_id": "f" * 64, "status": "rejected", "error": {"code": "x" * 64, "message": "m" * 500}}
    results = APP_FRAME_MARK + encode_forward_frame(ForwardResults(1, (answer,) * FORWARD_BATCH_TXS_MAX))
    assert len(results) <= 64 + FORWARD_BATCH_TXS_MAX * FORWARD_ANSWER_BYTES_MAX <= FRAME_BYTES_MAX


def test_the_blocks_page_limit_is_the_one_the_api_describes() -> None:
    params = openapi_document()["paths"]["/v1/blocks"]["get"]["parameters"]
    assert [p["schema"].get("maximum") for p in params if p["name"] == "limit"] == [HTTP_BLOCKS_PAGE_MAX]
