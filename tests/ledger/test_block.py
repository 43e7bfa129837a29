"""Block header hash, canonical encoding and strict decoding (fuzzed: BlockDecodeError and nothing else)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.invariant import InvariantViolation
from ledger.block import (
    BLOCK_BYTES_MAX,
    BLOCK_FORMAT,
    BLOCK_FRAMING_BYTES_MAX,
    BLOCK_TXS_BYTES_MAX,
    BLOCK_TXS_MAX,
    HEIGHT_MAX,
    PROPOSER_BYTES_MAX,
    TIME_MAX,
    TX_BYTES_MAX,
    Block,
    BlockHeader,
    block_framing_bytes,
    block_hash,
    check_block_limits,
    decode_block,
    encode_block,
    header_to_json,
    make_block,
)
from ledger.errors import BlockDecodeError
from ledger.merkle import tx_root

PREV = bytes(range(32))


def sample_block() -> Block:
    return make_block(7, PREV, 1_700_000_000_000, "node-1", (b"tx-a", b"tx-bb", b"\x00"))


def test_roundtrip_and_tx_root() -> None:
    block = sample_block()
    assert block.header.tx_root == tx_root(block.txs)
    assert decode_block(encode_block(block)) == block
    empty = make_block(1, PREV, 0, "n", ())
    assert decode_block(encode_block(empty)) == empty


def test_hash_commits_to_every_header_field() -> None:
    header = sample_block().header
    variants = [
        dataclasses.replace(header, height=8),
        dataclasses.replace(header, prev_hash=b"\x01" * 32),
        dataclasses.replace(header, tx_root=b"\x02" * 32),
        dataclasses.replace(header, time=header.time + 1),
        dataclasses.replace(header, proposer="node-2"),
    ]
    hashes = {block_hash(h) for h in [header, *variants]}
    assert len(hashes) == 6
    assert len(block_hash(header)) == 32
    assert block_hash(header) == block_hash(BlockHeader(**dataclasses.asdict(header)))


def test_header_json() -> None:
    header = sample_block().header
    j = header_to_json(header)
    assert j == {
        "height": 7,
        "prev_hash": PREV.hex(),
        "tx_root": header.tx_root.hex(),
        "time": header.time,
        "proposer": "node-1",
        "hash": block_hash(header).hex(),
    }


def _encode_row(row: object) -> bytes:
    return msgpack.packb(row, use_bin_type=True)


GOOD_HEADER = [7, PREV, b"\x03" * 32, 5, "p"]


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ([BLOCK_FORMAT, GOOD_HEADER], "two elements"),
        ([BLOCK_FORMAT, GOOD_HEADER, [], 1], "four elements"),
        ([2, GOOD_HEADER, []], "unknown format"),
        ([True, GOOD_HEADER, []], "bool format"),
        ([BLOCK_FORMAT, [*GOOD_HEADER, 1], []], "header with extra field"),
        ([BLOCK_FORMAT, [0, PREV, b"\x03" * 32, 5, "p"], []], "height 0"),
        ([BLOCK_FORMAT, [-1, PREV, b"\x03" * 32, 5, "p"], []], "negative height"),
        ([BLOCK_FORMAT, [True, PREV, b"\x03" * 32, 5, "p"], []], "bool height"),
        ([BLOCK_FORMAT, [7, PREV[:31], b"\x03" * 32, 5, "p"], []], "short prev_hash"),
        ([BLOCK_FORMAT, [7, "x" * 32, b"\x03" * 32, 5, "p"], []], "str prev_hash"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 33, 5, "p"], []], "long tx_root"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 32, -5, "p"], []], "negative time"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 32, 5.0, "p"], []], "float time"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 32, 5, ""], []], "empty proposer"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 32, 5, b"p"], []], "bin proposer"),
        ([BLOCK_FORMAT, [7, PREV, b"\x03" * 32, 5, "p" * (PROPOSER_BYTES_MAX + 1)], []], "long proposer"),
        ([BLOCK_FORMAT, GOOD_HEADER, [b""]], "empty tx"),
        ([BLOCK_FORMAT, GOOD_HEADER, ["tx"]], "str tx"),
        ([BLOCK_FORMAT, GOOD_HEADER, {"a": 1}], "map txs"),
        ([BLOCK_FORMAT, GOOD_HEADER, [b"x" * (TX_BYTES_MAX + 1)]], "tx over the limit"),
        ([BLOCK_FORMAT, GOOD_HEADER, [b"x"] * (BLOCK_TXS_MAX + 1)], "too many txs"),
        ({"format": 1}, "map"),
        (None, "nil"),
    ],
)
def test_decode_rejects_malformed(row: object, why: str) -> None:
    with pytest.raises(BlockDecodeError):
        decode_block(_encode_row(row))


def test_decode_rejects_non_canonical_and_trailing_bytes() -> None:
    data = encode_block(sample_block())
    with pytest.raises(BlockDecodeError):
        decode_block(data + b"\x00")
    # height 7 as a uint64 (0xcf) instead of a positive fixint: same value, not the canonical bytes
    header = b"\x95\xcf" + (7).to_bytes(8, "big")
    rest = msgpack.packb(GOOD_HEADER[1:], use_bin_type=True)[1:]
    wide = b"\x93\x01" + header + rest + b"\x90"
    assert msgpack.unpackb(wide)[1][0] == 7
    with pytest.raises(BlockDecodeError, match="canonical"):
        decode_block(wide)
    with pytest.raises(BlockDecodeError):
        decode_block(b"")
    with pytest.raises(BlockDecodeError):
        decode_block("not bytes")  # type: ignore[arg-type]


def test_encode_refuses_a_malformed_block() -> None:
    bad = Block(BlockHeader(0, PREV, PREV, 0, "p"), ())
    with pytest.raises(InvariantViolation):
        encode_block(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_raise_block_decode_error(data: bytes) -> None:
    try:
        block = decode_block(data)
    except BlockDecodeError:
        return
    assert encode_block(block) == data


_any_msgpack = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_any_msgpack)
def test_fuzz_structured_values_only_raise_block_decode_error(value: object) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    try:
        block = decode_block(data)
    except BlockDecodeError:
        return
    assert encode_block(block) == data


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_blocks(data: st.DataObject) -> None:
    encoded = bytearray(encode_block(sample_block()))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    mutated = bytes(encoded[:cut]) if data.draw(st.booleans()) else bytes(encoded)
    try:
        block = decode_block(mutated)
    except BlockDecodeError:
        return
    assert encode_block(block) == mutated


_blocks = st.builds(
    make_block,
    st.integers(1, 2**63 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**63 - 1),
    st.text(min_size=1, max_size=20).filter(lambda p: len(p.encode()) <= PROPOSER_BYTES_MAX),
    st.lists(st.binary(min_size=1, max_size=64), max_size=12).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(_blocks)
def test_every_valid_block_roundtrips_canonically(block: Block) -> None:
    data = encode_block(block)
    assert decode_block(data) == block
    assert encode_block(decode_block(data)) == data


# --- the limits and their relations (asserted at import; here the checking function with bad values) -------------
def test_the_limits_agree() -> None:
    check_block_limits(TX_BYTES_MAX, BLOCK_TXS_MAX, BLOCK_BYTES_MAX, BLOCK_FRAMING_BYTES_MAX)
    assert TX_BYTES_MAX == 256 << 10  # CONTRACT §3 / docs/RULES.md: tx_too_large above 256 KiB
    assert BLOCK_TXS_BYTES_MAX == BLOCK_BYTES_MAX - BLOCK_FRAMING_BYTES_MAX


@pytest.mark.parametrize(("args", "match"), [
    ((BLOCK_BYTES_MAX, BLOCK_TXS_MAX, BLOCK_BYTES_MAX, BLOCK_FRAMING_BYTES_MAX), "does not fit in a block"),
    ((TX_BYTES_MAX, BLOCK_TXS_MAX * 2, BLOCK_BYTES_MAX, BLOCK_FRAMING_BYTES_MAX), "block framing"),
    ((TX_BYTES_MAX, BLOCK_TXS_MAX, BLOCK_BYTES_MAX, 1024), "block framing"),
    ((0, BLOCK_TXS_MAX, BLOCK_BYTES_MAX, BLOCK_FRAMING_BYTES_MAX), "positive"),
])
def test_limits_that_disagree_fail(args: tuple[int, int, int, int], match: str) -> None:
    with pytest.raises(InvariantViolation, match=match):
        check_block_limits(*args)


def _widest(txs: tuple[bytes, ...]) -> Block:
    return make_block(HEIGHT_MAX, b"\xff" * 32, TIME_MAX, "p" * PROPOSER_BYTES_MAX, txs)


def test_framing_bound_covers_real_blocks() -> None:
    for txs in [(), (b"x",) * BLOCK_TXS_MAX, (b"y" * 300,) * 20, (b"z" * 70_000,) * 3]:
        framing = len(encode_block(_widest(txs))) - sum(map(len, txs))
        assert framing <= block_framing_bytes(len(txs)) <= block_framing_bytes(BLOCK_TXS_MAX)


def test_a_block_filled_to_the_byte_cap_with_the_largest_txs_encodes_and_decodes() -> None:
    """What the proposer may build at cluster.toml's highest block_max_bytes: it stays under BLOCK_BYTES_MAX."""
    count, rest = divmod(BLOCK_TXS_BYTES_MAX, TX_BYTES_MAX)
    txs = (*(bytes([i]) * TX_BYTES_MAX for i in range(count)), b"r" * rest)
    assert sum(map(len, txs)) == BLOCK_TXS_BYTES_MAX
    data = encode_block(_widest(txs))
    assert len(data) <= BLOCK_BYTES_MAX
    assert decode_block(data).txs == txs
