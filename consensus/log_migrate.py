"""Migration of Raft log stores of formats 1 and 2 to format 3, when such a store is opened.

Both older formats keep one record per entry, under b"e" + u64be(index): format 1 a sealed msgpack
[term, index, type, data], format 2 the checksum, u64be term, u8 type, then the data to the end of the value.
Format 3 keeps the entries in segments (consensus/log_segments.py); the version, hard state and snapshot records
did not change. Nothing else reads these records: once every store in the field is format 3 this module can go.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import count
from operator import attrgetter, eq

import plyvel

from consensus.invariant import require
from consensus.log_records import (
    CRC,
    FORMAT_VERSIONS_MIGRATED,
    INDEX_KEY,
    KEY_VERSION,
    encode_version,
    key_index,
    seal_ok,
    unseal,
)
from consensus.log_segments import ENTRY_TYPES, encode_segments
from consensus.messages import Entry, EntryType
from consensus.storage import CorruptionError

ENTRY_PREFIX_V2 = b"e"
"""Formats 1 and 2: the prefix of the per-entry records."""
_ENTRY_HEAD_V2 = struct.Struct(">QB")
"""Format-2 entry record after the checksum: term, type, then the data to the end of the value."""
_INDEX = attrgetter("index")


def _decode_entry_v2(key: bytes, value: bytes) -> Entry:
    """A format-2 record: u64be term, u8 type, data."""
    data_at = CRC.size + _ENTRY_HEAD_V2.size
    if len(value) < data_at:
        raise CorruptionError(f"record {key!r}: {len(value)} bytes, shorter than an entry header")
    if not seal_ok(key, value):
        raise CorruptionError(f"record {key!r}: checksum mismatch")
    if len(key) != INDEX_KEY.size or key[:1] != ENTRY_PREFIX_V2:
        raise CorruptionError(f"record {key!r}: not an entry key")
    term, kind = _ENTRY_HEAD_V2.unpack_from(value, CRC.size)
    if kind >= len(ENTRY_TYPES):
        raise CorruptionError(f"record {key!r}: unknown entry type {kind}")
    return Entry(term=term, index=key_index(key), type=ENTRY_TYPES[kind], data=value[data_at:])


def _decode_entry_v1(key: bytes, value: bytes) -> Entry:
    """A format-1 record (msgpack [term, index, type, data])."""
    rec = unseal(key, value)
    try:
        term, index, type_, data = rec
        entry = Entry(term=int(term), index=int(index), type=EntryType(type_), data=bytes(data))
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"record {key!r}: malformed entry") from exc
    if key != INDEX_KEY.pack(ENTRY_PREFIX_V2, entry.index):
        raise CorruptionError(f"record {key!r}: holds entry {entry.index}")
    return entry


_DECODERS: dict[int, Callable[[bytes, bytes], Entry]] = {1: _decode_entry_v1, 2: _decode_entry_v2}
require(tuple(_DECODERS) == FORMAT_VERSIONS_MIGRATED, "every format the store accepts to migrate has a decoder")


def migrate(db: plyvel.DB, version: int) -> None:
    """Rewrite every per-entry record of a format-1 or -2 store as format-3 segments, and the
    version, in one synced batch: a crash leaves either the old store or the new one."""
    require(version in _DECODERS, f"no migration from storage format {version}")
    decode = _DECODERS[version]
    with db.write_batch(sync=True, transaction=True) as wb:
        old: list[Entry] = []
        for key, value in db.iterator(prefix=ENTRY_PREFIX_V2):
            old.append(decode(key, value))
            wb.delete(key)
        if old:
            if not all(map(eq, map(_INDEX, old), count(old[0].index))):
                raise CorruptionError("log has a gap")
            for key, value in encode_segments(old)[0]:
                wb.put(key, value)
        wb.put(KEY_VERSION, encode_version())
