"""Blocks: header, hash, canonical encoding and strict decoding.

A block is a header plus the raw tx envelopes in the order the proposer chose. The header commits to the txs
through `tx_root` (ledger/merkle.py) and to the chain through `prev_hash` (block 1's prev_hash is the genesis hash).

Encoding (msgpack, canonical): `[BLOCK_FORMAT, [height, prev_hash, tx_root, time, proposer], [tx, ...]]`.
The block hash is sha256(HEADER_DOMAIN || msgpack([height, prev_hash, tx_root, time, proposer])).
msgpack-python always writes the shortest form of each int/str/bin, and `decode_block` re-encodes what it decoded
and rejects the input unless the bytes are identical: one block has exactly one encoding, so equal blocks have
equal bytes everywhere. Anything malformed raises `BlockDecodeError` and nothing else.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.invariant import require
from ledger.errors import BlockDecodeError
from ledger.merkle import tx_root

BLOCK_FORMAT = 1
HEADER_DOMAIN = b"ecert-chain/block-header/v1\x00"
HASH_BYTES = 32

# --- limits (docs/CONTRACT.md "Limits"): the ledger owns the block caps and the size of one tx in a block -------
BLOCK_TXS_MAX = 10_000
"""Most txs in one block (cluster.toml `block_max_txs` is validated against it by node/config.py)."""
TX_BYTES_MAX = 256 << 10
"""Largest raw tx a block carries. ecert/tx.py imports it as the envelope limit (CONTRACT §3: `tx_too_large`
above 256 KiB), so a tx that ecert admits always fits in a block that the ledger accepts."""
BLOCK_BYTES_MAX = 16 << 20
"""Largest encoded block: one Raft entry, so the peer transport's frame limit is asserted to hold it."""
BLOCK_FRAMING_BYTES_MAX = 64 << 10
"""Room an encoded block needs beyond its raw txs (header, array headers, a bin header per tx), asserted below
to cover the worst case of BLOCK_TXS_MAX txs."""
BLOCK_TXS_BYTES_MAX = BLOCK_BYTES_MAX - BLOCK_FRAMING_BYTES_MAX
"""Most raw tx bytes in one block: the cap of cluster.toml `block_max_bytes`, which the proposer fills up to."""
PROPOSER_BYTES_MAX = 128
"""Longest proposer node id, in UTF-8 bytes."""
HEIGHT_MAX = (1 << 63) - 1
TIME_MAX = (1 << 63) - 1
_TX_BIN_HEADER_BYTES_MAX = 5
"""msgpack's bin32 header; a shorter tx gets a 2- or 3-byte header."""


@dataclass(frozen=True, slots=True)
class BlockHeader:
    height: int
    """1 for the first block after genesis; each block is its predecessor's height + 1."""
    prev_hash: bytes
    """Hash of the previous block's header (for height 1: the genesis hash). 32 bytes."""
    tx_root: bytes
    """Merkle root over sha256 of each raw tx (`ledger.merkle.tx_root`). 32 bytes."""
    time: int
    """Milliseconds since the Unix epoch, set by the proposing leader; never less than the previous block's."""
    proposer: str
    """Node id of the leader that proposed the block."""


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]
    """Raw tx envelopes exactly as submitted."""


def _header_row(header: BlockHeader) -> list[Any]:
    return [header.height, header.prev_hash, header.tx_root, header.time, header.proposer]


def header_problem(header: BlockHeader) -> str | None:
    """Why `header` is out of bounds, or None if it is well-formed."""
    return header_row_problem(_header_row(header))


def header_row_problem(row: list[Any]) -> str | None:
    """Why a header's fields `[height, prev_hash, tx_root, time, proposer]` are out of bounds, or None. Checked
    before a header is built from untrusted fields: a compiled `BlockHeader` (setup.py) refuses a field of the
    wrong type with a TypeError, and a decoder must raise its own error, and only that."""
    height, prev_hash, root, time, proposer = row
    if type(height) is not int or not (1 <= height <= HEIGHT_MAX):
        return "height must be an int in 1..2^63-1"
    if type(prev_hash) is not bytes or len(prev_hash) != HASH_BYTES:
        return "prev_hash must be 32 bytes"
    if type(root) is not bytes or len(root) != HASH_BYTES:
        return "tx_root must be 32 bytes"
    if type(time) is not int or not (0 <= time <= TIME_MAX):
        return "time must be an int in 0..2^63-1 (ms)"
    if type(proposer) is not str or not proposer:
        return "proposer must be a non-empty str"
    try:
        proposer_bytes = proposer.encode("utf-8")
    except UnicodeEncodeError:
        return "proposer must be valid UTF-8"
    if len(proposer_bytes) > PROPOSER_BYTES_MAX:
        return f"proposer longer than {PROPOSER_BYTES_MAX} bytes"
    return None


def txs_problem(txs: Any) -> str | None:
    if len(txs) > BLOCK_TXS_MAX:
        return f"more than {BLOCK_TXS_MAX} txs"
    for tx in txs:
        if type(tx) is not bytes or not (1 <= len(tx) <= TX_BYTES_MAX):
            return f"each tx must be 1..{TX_BYTES_MAX} bytes"
    return None


def encode_header(header: BlockHeader) -> bytes:
    problem = header_problem(header)
    require(problem is None, f"encoding a malformed header: {problem}")
    return msgpack.packb(_header_row(header), use_bin_type=True)  # type: ignore[no-any-return]


def block_hash(header: BlockHeader) -> bytes:
    return hashlib.sha256(HEADER_DOMAIN + encode_header(header)).digest()


def make_block(height: int, prev_hash: bytes, time: int, proposer: str, txs: tuple[bytes, ...]) -> Block:
    """A block over `txs` with its tx_root computed (what a proposer builds)."""
    return Block(BlockHeader(height, prev_hash, tx_root(txs), time, proposer), tuple(txs))


def encode_block(block: Block) -> bytes:
    problem = header_problem(block.header) or txs_problem(block.txs)
    require(problem is None, f"encoding a malformed block: {problem}")
    data: bytes = msgpack.packb([BLOCK_FORMAT, _header_row(block.header), list(block.txs)], use_bin_type=True)
    require(len(data) <= BLOCK_BYTES_MAX, f"encoded block of {len(data)} bytes over {BLOCK_BYTES_MAX}")
    return data


def decode_block(data: object) -> Block:
    """Strictly decode an encoded block. Raises BlockDecodeError, and only that, on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BlockDecodeError(f"block must be bytes, got {type(data).__name__}")
    data = bytes(data)  # (`object`, not `bytes`: a compiled build would refuse a str with a TypeError)
    if len(data) > BLOCK_BYTES_MAX:
        raise BlockDecodeError(f"block of {len(data)} bytes over {BLOCK_BYTES_MAX}")
    try:
        row = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=TX_BYTES_MAX,
            max_str_len=PROPOSER_BYTES_MAX,
            max_array_len=BLOCK_TXS_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many kinds (ExtraData, FormatError, ValueError, ...)
        raise BlockDecodeError(f"not a msgpack block: {type(exc).__name__}") from None
    block = _block_from_row(row)
    try:
        canonical = encode_block(block)
    except AssertionError:  # cannot happen after _block_from_row's checks; kept so decode never leaks it
        raise BlockDecodeError("block does not re-encode") from None
    if canonical != data:
        raise BlockDecodeError("block encoding is not canonical")
    return block


def _block_from_row(row: Any) -> Block:
    if type(row) is not list or len(row) != 3:
        raise BlockDecodeError("block must be a 3-element array")
    fmt, header_row, txs = row
    if type(fmt) is not int or fmt != BLOCK_FORMAT:
        raise BlockDecodeError(f"unknown block format {fmt!r}")
    if type(header_row) is not list or len(header_row) != 5:
        raise BlockDecodeError("header must be a 5-element array")
    if type(txs) is not list:
        raise BlockDecodeError("txs must be an array")
    problem = header_row_problem(header_row) or txs_problem(txs)
    if problem is not None:
        raise BlockDecodeError(problem)
    return Block(BlockHeader(*header_row), tuple(txs))


def header_to_json(header: BlockHeader) -> dict[str, Any]:
    """CONTRACT §4 /v1/blocks/{height} header fields (hashes as lowercase hex), with the block `hash`."""
    return {
        "height": header.height,
        "prev_hash": header.prev_hash.hex(),
        "tx_root": header.tx_root.hex(),
        "time": header.time,
        "proposer": header.proposer,
        "hash": block_hash(header).hex(),
    }


def decode_header_row(row: Any) -> BlockHeader:
    """A header from its stored array form (used by the store); raises BlockDecodeError if malformed."""
    if type(row) is not list or len(row) != 5:
        raise BlockDecodeError("header must be a 5-element array")
    problem = header_row_problem(row)
    if problem is not None:
        raise BlockDecodeError(problem)
    return BlockHeader(*row)


def header_row(header: BlockHeader) -> list[Any]:
    return _header_row(header)


# --- relations between the limits, asserted at import (they hold for any block the proposer may build) ---------
def block_framing_bytes(txs: int) -> int:
    """The most bytes an encoded block of `txs` txs adds to the sum of their raw sizes."""
    widest = BlockHeader(HEIGHT_MAX, b"\xff" * HASH_BYTES, b"\xff" * HASH_BYTES, TIME_MAX, "p" * PROPOSER_BYTES_MAX)
    head: bytes = msgpack.packb([BLOCK_FORMAT, _header_row(widest)], use_bin_type=True)
    txs_array_header = 5  # array32: the widest an array header gets
    return len(head) + txs_array_header + txs * _TX_BIN_HEADER_BYTES_MAX


def check_block_limits(tx_bytes_max: int, block_txs_max: int, block_bytes_max: int,
                       block_framing_bytes_max: int) -> None:
    """Raise InvariantViolation unless the block limits agree with each other."""
    require(tx_bytes_max > 0 and block_txs_max > 0, "block limits must be positive")
    require(block_framing_bytes(block_txs_max) <= block_framing_bytes_max,
            f"{block_txs_max} txs need {block_framing_bytes(block_txs_max)} bytes of block framing, "
            f"over BLOCK_FRAMING_BYTES_MAX {block_framing_bytes_max}")
    require(tx_bytes_max <= block_bytes_max - block_framing_bytes_max,
            f"a tx of TX_BYTES_MAX {tx_bytes_max} bytes does not fit in a block of {block_bytes_max} bytes")


check_block_limits(TX_BYTES_MAX, BLOCK_TXS_MAX, BLOCK_BYTES_MAX, BLOCK_FRAMING_BYTES_MAX)
