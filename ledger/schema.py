"""The state store's LevelDB layout: its key schema, the codecs of its records, and how a directory is opened.

One byte tag, then the rest (full description in docs/STORAGE.md):

    M head            -> msgpack [height, block_hash, state_root, time, applied_index]
    M genesis         -> msgpack [genesis_hash, chain_id, genesis_time]
    M format          -> b"4"  (older formats: ledger/migrate.py)
    M index           -> msgpack list of the derived index's key prefixes (ledger/derived_index.py)
    S <state key>     -> state value (the executor's keys, verbatim; those under a derived index's prefixes
                         are not hashed into the root)
    H <sha256(key)>   -> leaf hash of that entry, if its state-root bucket (the first 2 bytes) is unsplit
    P <sha256(key)>   -> the same, if its bucket is split (over 16 entries; ledger/state_root.py)
    R <bucket:2 BE>   -> a split bucket's summary: its hash, u32be entry count and 16 sub-bucket hashes
                         (its codec is the bucket index's, ledger/buckets.py)
    T <tx_id ascii>   -> msgpack tx record [height, position, tx_id, status, result, error_code, error_message]
    B <height:8 BE>   -> msgpack block record [header row, [raw tx, ...], [tx_id, ...]]

Kept apart from the code that writes these records so that the store, the bucket index, snapshots and the
migrations agree on one definition. Every decoder checks what it read back (`require`): a malformed record is
a broken store, not bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import plyvel

from consensus.invariant import require
from ledger.block import (
    HASH_BYTES,
    Block,
    BlockHeader,
    block_hash,
    decode_header_row,
    header_row,
    header_to_json,
)
from ledger.errors import BlockDecodeError
from ledger.state_root import EMPTY_ROOT

STORE_FORMAT = b"4"
"""Layout version. 3: a leaf entry per key (`H`, or `P` in a split bucket) and a summary `R` per split bucket;
the tree above the buckets in memory only. 4: the same, and `M index` names the state keys of a derived index,
which are not hashed. Older layouts are migrated or refused at open (ledger/migrate.py)."""
TX_ID_CHARS_MAX = 128
"""Longest tx id (ASCII): bounds the `T` keys."""

META = b"M"
STATE = b"S"
ENTRY = b"H"
SPLIT_ENTRY = b"P"
SUMMARY = b"R"
TX = b"T"
BLOCK = b"B"
HEAD_KEY = META + b"head"
GENESIS_KEY = META + b"genesis"
FORMAT_KEY = META + b"format"
INDEX_KEY = META + b"index"

WRITE_BUFFER_BYTES = 16 << 20
"""LevelDB memtable size (twice this in memory while one is flushed)."""
BLOCK_CACHE_BYTES = 32 << 20
"""LevelDB block cache (default 8 MB)."""


def open_db(path: str) -> Any:
    # Bloom filters make the per-tx "applied before?" lookup of a new tx id (a miss) and reads of new
    # state keys cheap once they have left the memtable. No compression: most bytes written are hashes
    # (bucket entries), which snappy cannot shrink, and compacting them through it was ~30% of the CPU of
    # applying small blocks. Both are per-table options: a store written with other options opens. A 16 MB
    # memtable (default 4) cut compaction CPU per block by ~40% for ~10% slower inserts; 8 and 32-64 MB cost
    # more in total (node/bench/apply_bench.py, transfers). A 32 MB block cache (default 8) keeps the
    # state's hot table blocks of a few 100k keys.
    return plyvel.DB(
        path,
        create_if_missing=True,
        bloom_filter_bits=10,
        compression=None,
        write_buffer_size=WRITE_BUFFER_BYTES,
        lru_cache_size=BLOCK_CACHE_BYTES,
    )


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    block_hash: bytes
    """Hash of the block at `height`; the genesis hash at height 0; b"" before genesis."""
    state_root: bytes
    time: int
    """Time of the block at `height` (the genesis time at height 0): the next block's time may not be less."""
    applied_index: int
    """Raft index of the last entry the node applied into this store (0 if the node never said)."""


@dataclass(frozen=True, slots=True)
class Genesis:
    genesis_hash: bytes
    chain_id: str
    genesis_time: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    header: BlockHeader
    hash: bytes
    tx_ids: tuple[str, ...]
    txs: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """CONTRACT §4 /v1/blocks/{height}: header fields, `hash`, `tx_count` and the `tx_ids`."""
        answer = header_to_json(self.header)
        answer["tx_count"] = len(self.tx_ids)
        answer["tx_ids"] = list(self.tx_ids)
        return answer


@dataclass(frozen=True, slots=True)
class BlockSummary:
    """A stored block's header and how many txs it holds: what a page of headers shows (`GET /v1/blocks`)."""

    header: BlockHeader
    hash: bytes
    tx_count: int
    """The length of the record's raw-tx array (its tx-id array is as long: both are written from one block)."""

    def to_json(self) -> dict[str, Any]:
        """Header fields, `hash` and `tx_count`: `BlockRecord.to_json` without the tx ids."""
        answer = header_to_json(self.header)
        answer["tx_count"] = self.tx_count
        return answer


EMPTY_HEAD = Head(0, b"", EMPTY_ROOT, 0, 0)
"""The head of a store before genesis."""


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True)


def encode_head(head: Head) -> bytes:
    return _pack([head.height, head.block_hash, head.state_root, head.time, head.applied_index])


def decode_head(data: bytes) -> Head:
    row = _unpack(data)
    require(type(row) is list and len(row) == 5, "stored head is malformed")
    head = Head(*row)
    require(type(head.height) is int and head.height >= 0, "stored head height is malformed")
    require(type(head.state_root) is bytes and len(head.state_root) == HASH_BYTES, "stored root malformed")
    require(type(head.time) is int and type(head.applied_index) is int, "stored head ints malformed")
    return head


def encode_genesis(g: Genesis) -> bytes:
    return _pack([g.genesis_hash, g.chain_id, g.genesis_time])


def decode_genesis(data: bytes) -> Genesis:
    row = _unpack(data)
    require(type(row) is list and len(row) == 3, "stored genesis is malformed")
    g = Genesis(*row)
    require(type(g.genesis_hash) is bytes and len(g.genesis_hash) == HASH_BYTES, "genesis hash malformed")
    require(type(g.chain_id) is str and type(g.genesis_time) is int, "stored genesis malformed")
    return g


def height_key(height: int) -> bytes:
    return BLOCK + height.to_bytes(8, "big")


def encode_block_record(block: Block, tx_ids: list[str]) -> bytes:
    return _pack([header_row(block.header), list(block.txs), tx_ids])


def decode_block_record(data: bytes) -> BlockRecord:
    row = _unpack(data)
    require(type(row) is list and len(row) == 3, "stored block record is malformed")
    try:
        header = decode_header_row(row[0])
    except BlockDecodeError as exc:
        require(False, f"stored block header is malformed: {exc}")
        raise
    return BlockRecord(header, block_hash(header), tuple(row[2]), tuple(row[1]))


def decode_block_summary(data: bytes) -> BlockSummary:
    """The header and tx count of a stored block record, read without building its txs and tx ids: msgpack puts
    an array's length before its items, so the count is the raw-tx array's header. Same record, same format as
    `decode_block_record` (measured on a block of 400 300-byte txs: ~8 µs instead of ~45)."""
    unpacker = msgpack.Unpacker(raw=False, use_list=True, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        fields = unpacker.read_array_header()
        header = decode_header_row(unpacker.unpack())
        tx_count = unpacker.read_array_header()
    except (msgpack.UnpackException, ValueError, BlockDecodeError) as exc:  # not an array, or cut short
        require(False, f"stored block record is malformed: {exc}")
        raise
    require(fields == 3, "stored block record is malformed")
    return BlockSummary(header, block_hash(header), tx_count)
