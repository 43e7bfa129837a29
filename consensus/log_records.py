"""The Raft log store's key schema and its small records: the format version, the hard state and the snapshot
record, each checksummed the same way (the segments' layout is in consensus/log_segments.py).

One LevelDB per node, `<data_dir>/raft`:

    b"v"                  format version (3)
    b"h"                  HardState            msgpack [term, vote | None, commit]
    b"s"                  latest snapshot      msgpack [index, term, voters, learners, data], or
                                               [index, term, voters, learners, None, True, size, crc32]
    b"g" + u64be(first)   log segment          the entries first .. first + n - 1, columnar

Every value is `crc32(key + payload)` (4 bytes, big-endian) followed by the payload. Folding the key into the
checksum also catches a record that ended up under the wrong key (a segment's first index lives only in its key).
A record that fails its checksum or does not decode raises `CorruptionError`: a node must refuse to start rather
than apply a damaged log. Kept apart from the store so that every module that reads or writes a record (the
segments, the migration of old formats) seals and checks it with the same code.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from consensus.invariant import require
from consensus.messages import Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.storage import CorruptionError

FORMAT_VERSION = 3
FORMAT_VERSIONS_MIGRATED = (1, 2)
"""Older formats an open rewrites as FORMAT_VERSION (consensus/log_migrate.py)."""

KEY_VERSION = b"v"
KEY_HARD_STATE = b"h"
KEY_SNAPSHOT = b"s"
SEGMENT_PREFIX = b"g"
CRC = struct.Struct(">I")
INDEX_KEY = struct.Struct(">cQ")
"""A one-byte prefix and a u64be index: big-endian, so that LevelDB's byte order is the log's order."""


def segment_key(first: int) -> bytes:
    return INDEX_KEY.pack(SEGMENT_PREFIX, first)


def key_index(key: bytes) -> int:
    """The index in an INDEX_KEY key (a segment's first index)."""
    index: int = INDEX_KEY.unpack(key)[1]
    return index


def seal_bytes(key: bytes, body: bytes) -> bytes:
    """A record's value: the checksum of key and body, then the body."""
    return CRC.pack(zlib.crc32(body, zlib.crc32(key))) + body


def seal_ok(key: bytes, value: bytes) -> bool:
    """Whether `value` (at least CRC.size bytes) carries the checksum of `key` and the rest of it."""
    crc: int = CRC.unpack_from(value)[0]
    return zlib.crc32(memoryview(value)[CRC.size:], zlib.crc32(key)) == crc


def seal(key: bytes, payload: Any) -> bytes:
    """A record holding `payload` as msgpack."""
    body: bytes = msgpack.packb(payload, use_bin_type=True)
    return seal_bytes(key, body)


def unseal(key: bytes, value: bytes) -> Any:
    """The msgpack payload of a sealed record; `CorruptionError` if it is damaged."""
    if len(value) < CRC.size:
        raise CorruptionError(f"record {key!r}: {len(value)} bytes, shorter than its checksum")
    if not seal_ok(key, value):
        raise CorruptionError(f"record {key!r}: checksum mismatch")
    try:
        return msgpack.unpackb(value[CRC.size:], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CorruptionError(f"record {key!r}: undecodable ({exc})") from exc


# -- the version --------------------------------------------------------------------------------------------------


def encode_version() -> bytes:
    return seal(KEY_VERSION, FORMAT_VERSION)


def decode_version(value: bytes) -> int:
    """The store's format version: FORMAT_VERSION or one of FORMAT_VERSIONS_MIGRATED; `CorruptionError` if not."""
    version = unseal(KEY_VERSION, value)
    if isinstance(version, bool) or (version != FORMAT_VERSION and version not in FORMAT_VERSIONS_MIGRATED):
        raise CorruptionError(f"unknown storage format version {version!r}")
    return int(version)


# -- the hard state -----------------------------------------------------------------------------------------------


def encode_hard_state(hs: HardState) -> bytes:
    require(hs.term >= 0 and hs.commit >= 0 and (hs.vote is None or isinstance(hs.vote, str)),
            f"hard state {hs} is not writable")
    return seal(KEY_HARD_STATE, [hs.term, hs.vote, hs.commit])


def decode_hard_state(value: bytes) -> HardState:
    rec = unseal(KEY_HARD_STATE, value)
    try:
        term, vote, commit = rec
        require(vote is None or isinstance(vote, str), "vote is a node id")
        return HardState(term=int(term), vote=vote, commit=int(commit))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CorruptionError("hard state record malformed") from exc


# -- the snapshot record ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    snapshot: Snapshot
    """With its data when stored inline; data b"" when in its file."""
    in_file: bool = False
    size: int = 0
    """The file's size and crc32 (0 when the data is inline)."""
    crc: int = 0


def encode_snapshot_record(snapshot: Snapshot) -> bytes:
    """The record of a snapshot with its data inline (the bootstrap configuration, `compact(snapshot)`)."""
    m = snapshot.meta
    return seal(KEY_SNAPSHOT, [m.index, m.term, list(m.voters), list(m.learners), snapshot.data])


def encode_snapshot_file_record(meta: SnapshotMeta, size: int, crc: int) -> bytes:
    """The record of a snapshot whose data is in its file (consensus/snapshot_files.py), `size` bytes of it."""
    require(size >= 0 and 0 <= crc < 1 << 32, "a snapshot file has a size and a crc32")
    return seal(KEY_SNAPSHOT, [meta.index, meta.term, list(meta.voters), list(meta.learners), None, True,
                               size, crc])


def decode_snapshot_record(value: bytes) -> SnapshotRecord:
    rec = unseal(KEY_SNAPSHOT, value)
    try:
        if len(rec) == 5:  # data inline
            index, term, voters, learners, data = rec
            in_file, size, crc = False, 0, 0
        else:
            index, term, voters, learners, data, in_file, size, crc = rec
            require(data is None and in_file is True and int(size) >= 0, "a file's record has no data inline")
            data = b""
        meta = SnapshotMeta(index=int(index), term=int(term), voters=tuple(str(v) for v in voters),
                            learners=tuple(str(v) for v in learners))
        return SnapshotRecord(Snapshot(meta=meta, data=bytes(data)), bool(in_file), int(size), int(crc))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CorruptionError("snapshot record malformed") from exc
