"""Durable Raft storage on LevelDB (plyvel): the log, the hard state and the latest snapshot.

Key schema (one LevelDB per node, `<data_dir>/raft`):

    b"v"                  format version
    b"h"                  HardState            msgpack [term, vote | None, commit]
    b"s"                  latest snapshot      msgpack [index, term, voters, learners, data]
    b"e" + u64be(index)   log entry            u64be(term) + u8(type) + data          (format 2)

Every value is `crc32(key + payload)` (4 bytes, big-endian) followed by the payload. Folding the key into the
checksum also catches a record that ended up under the wrong key (the entry's index lives only in its key). A
record that fails its checksum or does not decode raises `CorruptionError`: a node must refuse to start rather
than apply a damaged log. The whole log is verified when the store is opened (it is short: the application
compacts it), and every read from LevelDB is checked again.

Entry records are a fixed binary header, not msgpack, because a leader writes thousands per fsync and their
encoding was a third to half of a node's CPU time. Format 1 stored them as msgpack [term, index, type, data]; a
format-1 store is rewritten to format 2 when it is opened.

The tail of the log is also kept in memory (`cache_bytes_max`; etcd keeps a MemoryStorage beside its WAL for
the same reason): the core reads the entries it sends and applies, and their terms, without decoding LevelDB
records again. The cache is always a suffix of the log, so truncation, compaction and snapshots only cut it.

Each `save` is one WriteBatch, written with `sync=True` whenever it carries entries, a snapshot or a term/vote
change, so that nothing the core acknowledges is lost on a crash (Ready contract, consensus/ready.py).
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from itertools import accumulate, count, islice, repeat
from operator import add, attrgetter, eq
from typing import Any

import msgpack
import plyvel

from consensus.invariant import require
from consensus.messages import Entry, EntryType, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.storage import CompactedError, CorruptionError, UnavailableError

FORMAT_VERSION = 2
CACHE_BYTES_MAX = 64 << 20
"""Default bound of the in-memory log tail; each entry counts `len(data) + CACHE_ENTRY_OVERHEAD_BYTES`."""
CACHE_ENTRY_OVERHEAD_BYTES = 160
"""Roughly what CPython spends on an `Entry` beyond its data (the object, its ints, the bytes header)."""
_KEY_VERSION = b"v"
_KEY_HARD_STATE = b"h"
_KEY_SNAPSHOT = b"s"
_ENTRY_PREFIX = b"e"
_CRC = struct.Struct(">I")
_ENTRY_KEY = struct.Struct(">cQ")
_ENTRY_HEAD = struct.Struct(">QB")
"""Entry record after the checksum: term, type, then the data to the end of the value."""
_ENTRY_DATA_AT = _CRC.size + _ENTRY_HEAD.size
_ENTRY_TYPES = {int(t): t for t in EntryType}
_DATA = attrgetter("data")
_INDEX = attrgetter("index")
_TERM = attrgetter("term")
_TYPE = attrgetter("type")


def _entry_key(index: int) -> bytes:
    return _ENTRY_KEY.pack(_ENTRY_PREFIX, index)


def _seal(key: bytes, payload: Any) -> bytes:
    body: bytes = msgpack.packb(payload, use_bin_type=True)
    return _CRC.pack(zlib.crc32(key + body)) + body


def _unseal(key: bytes, value: bytes) -> Any:
    if len(value) < _CRC.size:
        raise CorruptionError(f"record {key!r}: {len(value)} bytes, shorter than its checksum")
    (crc,) = _CRC.unpack_from(value)
    body = value[_CRC.size:]
    if zlib.crc32(key + body) != crc:
        raise CorruptionError(f"record {key!r}: checksum mismatch")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise CorruptionError(f"record {key!r}: undecodable ({exc})") from exc


def _encode_entries(entries: Sequence[Entry]) -> tuple[list[bytes], list[bytes]]:
    """Keys and values of the entries' records. A leader writes thousands per fsync, so every step is a C-level
    `map` over the batch (no Python bytecode per entry): about a third of a loop calling a function per entry."""
    keys = list(map(_ENTRY_KEY.pack, repeat(_ENTRY_PREFIX, len(entries)), map(_INDEX, entries)))
    bodies = list(map(add, map(_ENTRY_HEAD.pack, map(_TERM, entries), map(_TYPE, entries)), map(_DATA, entries)))
    # crc32(key + body), computed as crc32(body, start=crc32(key)) to avoid the concatenation.
    values = list(map(add, map(_CRC.pack, map(zlib.crc32, bodies, map(zlib.crc32, keys))), bodies))
    return keys, values


def _decode_entry(key: bytes, value: bytes) -> Entry:
    if len(value) < _ENTRY_DATA_AT:
        raise CorruptionError(f"record {key!r}: {len(value)} bytes, shorter than an entry header")
    if zlib.crc32(memoryview(value)[_CRC.size:], zlib.crc32(key)) != _CRC.unpack_from(value)[0]:
        raise CorruptionError(f"record {key!r}: checksum mismatch")
    if len(key) != _ENTRY_KEY.size or key[:1] != _ENTRY_PREFIX:
        raise CorruptionError(f"record {key!r}: not an entry key")
    term, kind = _ENTRY_HEAD.unpack_from(value, _CRC.size)
    entry_type = _ENTRY_TYPES.get(kind)
    if entry_type is None:
        raise CorruptionError(f"record {key!r}: unknown entry type {kind}")
    return Entry(term=term, index=_ENTRY_KEY.unpack(key)[1], type=entry_type, data=value[_ENTRY_DATA_AT:])


def _decode_entry_v1(key: bytes, value: bytes) -> Entry:
    """A format-1 record (msgpack [term, index, type, data]); only read to migrate an old store."""
    rec = _unseal(key, value)
    try:
        term, index, type_, data = rec
        entry = Entry(term=int(term), index=int(index), type=EntryType(type_), data=bytes(data))
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"record {key!r}: malformed entry") from exc
    if key != _entry_key(entry.index):
        raise CorruptionError(f"record {key!r}: holds entry {entry.index}")
    return entry


def _decode_hard_state(value: bytes) -> HardState:
    rec = _unseal(_KEY_HARD_STATE, value)
    try:
        term, vote, commit = rec
        require(vote is None or isinstance(vote, str), "vote is a node id")
        return HardState(term=int(term), vote=vote, commit=int(commit))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CorruptionError("hard state record malformed") from exc


def _decode_snapshot(value: bytes) -> Snapshot:
    rec = _unseal(_KEY_SNAPSHOT, value)
    try:
        index, term, voters, learners, data = rec
        meta = SnapshotMeta(index=int(index), term=int(term), voters=tuple(str(v) for v in voters),
                            learners=tuple(str(v) for v in learners))
        return Snapshot(meta=meta, data=bytes(data))
    except (TypeError, ValueError) as exc:
        raise CorruptionError("snapshot record malformed") from exc


def _encode_snapshot(snapshot: Snapshot) -> bytes:
    m = snapshot.meta
    return _seal(_KEY_SNAPSHOT, [m.index, m.term, list(m.voters), list(m.learners), snapshot.data])


def _cache_cost(entries: list[Entry]) -> int:
    return sum(map(len, map(_DATA, entries))) + CACHE_ENTRY_OVERHEAD_BYTES * len(entries)


def _limit_size(ents: list[Entry], max_bytes: int) -> list[Entry]:
    """The longest prefix whose data fits in `max_bytes`, but at least one entry (one C-level pass if all fit)."""
    if sum(map(len, map(_DATA, ents))) <= max_bytes:
        return ents
    size = 0
    for i, e in enumerate(ents):
        size += len(e.data)
        if i > 0 and size > max_bytes:
            return ents[:i]
    return ents


class LevelDBStorage:
    """`consensus.storage.Storage`, durable. Not thread-safe: one driver owns it.

    `cache_bytes_max` bounds the in-memory tail of the log (0 turns the cache off: every read decodes records).
    """

    def __init__(self, path: str, bootstrap_voters: tuple[NodeId, ...],
                 cache_bytes_max: int = CACHE_BYTES_MAX) -> None:
        require(cache_bytes_max >= 0, "cache_bytes_max must not be negative")
        self._cache_bytes_max = cache_bytes_max
        self._cache: list[Entry] = []
        """Entries cache_first .. last_index (a suffix of the log, possibly empty)."""
        self._cache_first = 1
        self._cache_bytes = 0
        self._db = plyvel.DB(path, create_if_missing=True)
        try:
            self._open(tuple(sorted(bootstrap_voters)))
        except BaseException:
            self._db.close()
            raise

    def _open(self, bootstrap_voters: tuple[NodeId, ...]) -> None:
        raw_version = self._db.get(_KEY_VERSION)
        if raw_version is None:
            # A fresh store: write the version and the bootstrap configuration (the "snapshot" at index 0).
            self._snapshot = Snapshot(SnapshotMeta(index=0, term=0, voters=bootstrap_voters))
            with self._db.write_batch(sync=True) as wb:
                wb.put(_KEY_VERSION, _seal(_KEY_VERSION, FORMAT_VERSION))
                wb.put(_KEY_SNAPSHOT, _encode_snapshot(self._snapshot))
        else:
            version = _unseal(_KEY_VERSION, raw_version)
            if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
                raise CorruptionError(f"unknown storage format version {version!r}")
            raw_snap = self._db.get(_KEY_SNAPSHOT)
            if raw_snap is None:
                raise CorruptionError("snapshot record missing")
            self._snapshot = _decode_snapshot(raw_snap)
            if version == 1:
                self._migrate_from_v1()
        raw_hs = self._db.get(_KEY_HARD_STATE)
        self._hard_state = HardState() if raw_hs is None else _decode_hard_state(raw_hs)
        self._last_index = self._verify_log()

    def _migrate_from_v1(self) -> None:
        """Rewrite every format-1 entry record as format 2, and the version, in one synced batch."""
        with self._db.write_batch(sync=True, transaction=True) as wb:
            old = [_decode_entry_v1(key, value) for key, value in self._db.iterator(prefix=_ENTRY_PREFIX)]
            for key, value in zip(*_encode_entries(old), strict=True):
                wb.put(key, value)
            wb.put(_KEY_VERSION, _seal(_KEY_VERSION, FORMAT_VERSION))

    def _verify_log(self) -> int:
        """Check every entry record; the log must be contiguous right after the snapshot. Returns last index.
        Fills the cache with the tail it reads."""
        expected = self._snapshot.meta.index + 1
        prev_term = self._snapshot.meta.term
        self._cache_first = expected
        for key, value in self._db.iterator(prefix=_ENTRY_PREFIX):
            entry = _decode_entry(key, value)
            if entry.index != expected:
                raise CorruptionError(f"log has a gap: expected entry {expected}, found {entry.index}")
            if entry.term < prev_term:
                raise CorruptionError(f"log term goes backwards at entry {entry.index}")
            prev_term = entry.term
            expected += 1
            self._cache.append(entry)
            self._cache_bytes += len(entry.data) + CACHE_ENTRY_OVERHEAD_BYTES
            if self._cache_bytes > self._cache_bytes_max:
                self._trim_cache()
        return expected - 1

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LevelDBStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads (the core) ------------------------------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self._hard_state, self._snapshot.meta

    def first_index(self) -> int:
        return self._snapshot.meta.index + 1

    def last_index(self) -> int:
        return self._last_index

    def term(self, index: int) -> int:
        at = index - self._cache_first
        if 0 <= at < len(self._cache):
            return self._cache[at].term
        snap = self._snapshot.meta
        if index < snap.index:
            raise CompactedError(f"entry {index} is compacted (snapshot at {snap.index})")
        if index == snap.index:
            return snap.term
        return self._get_entry(index).term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        require(lo <= hi, f"entries: lo {lo} > hi {hi}")
        if lo < self.first_index():
            raise CompactedError(f"entry {lo} is compacted (first index {self.first_index()})")
        if hi > self._last_index + 1:
            raise UnavailableError(f"entries up to {hi - 1} requested, last index {self._last_index}")
        cache_first = self._cache_first
        if lo >= cache_first:
            return _limit_size(self._cache[lo - cache_first:hi - cache_first], max_bytes)
        out = self._read_entries(lo, min(hi, cache_first), max_bytes)
        if hi > cache_first and len(out) == cache_first - lo:
            out = _limit_size(out + self._cache[:hi - cache_first], max_bytes)
        return out

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def _read_entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) decoded from LevelDB, size-limited like `entries`."""
        out: list[Entry] = []
        size = 0
        for key, value in self._db.iterator(start=_entry_key(lo), stop=_entry_key(hi)):
            entry = _decode_entry(key, value)
            if entry.index != lo + len(out):
                raise CorruptionError(f"log has a gap at entry {lo + len(out)}")
            size += len(entry.data)
            if out and size > max_bytes:
                return out
            out.append(entry)
        if len(out) != hi - lo:
            raise CorruptionError(f"log has a gap at entry {lo + len(out)}")
        return out

    def _get_entry(self, index: int) -> Entry:
        if index > self._last_index:
            raise UnavailableError(f"entry {index} is after the last index {self._last_index}")
        key = _entry_key(index)
        value = self._db.get(key)
        if value is None:
            raise CorruptionError(f"entry {index} missing from the log")
        return _decode_entry(key, value)

    # -- writes (the driver) ---------------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        snap = self._snapshot
        last = self._last_index
        # Decide everything first, so that a refused save writes nothing.
        install = snapshot is not None and snapshot.meta.index > snap.meta.index
        if install:
            assert snapshot is not None
            # A snapshot from the leader replaces the whole log (etcd's ApplySnapshot); an older one than ours
            # has nothing to add (as in MemoryStorage).
            dropped = range(snap.meta.index + 1, last + 1)
            snap = snapshot
            last = snap.meta.index
        else:
            dropped = range(0)
        if entries and entries[0].index <= snap.meta.index:
            # Entries already covered by the snapshot are dropped; the rest must connect to the log.
            entries = entries[min(len(entries), snap.meta.index + 1 - entries[0].index):]
        if entries:
            first = entries[0].index
            require(first <= last + 1, f"append at {first} leaves a gap after last index {last}")
            require(all(map(eq, map(_INDEX, entries), count(first))), "appended entries must be contiguous")
            truncated = range(entries[-1].index + 1, last + 1)
        else:
            truncated = range(0)
        with self._db.write_batch(sync=sync or bool(entries) or install) as wb:
            for index in dropped:
                wb.delete(_entry_key(index))
            if install:
                wb.put(_KEY_SNAPSHOT, _encode_snapshot(snap))
            for index in truncated:
                wb.delete(_entry_key(index))
            # One put per entry, consumed in C (a deque of length 0 drops map's results).
            deque(map(wb.put, *_encode_entries(entries)), maxlen=0)
            if hard_state is not None:
                wb.put(_KEY_HARD_STATE, _seal(_KEY_HARD_STATE, [hard_state.term, hard_state.vote,
                                                                 hard_state.commit]))
        if install:
            self._clear_cache(snap.meta.index + 1)
        if entries:
            self._cache_append(entries)
            last = entries[-1].index
        self._snapshot = snap
        self._last_index = last
        if hard_state is not None:
            self._hard_state = hard_state
        require(self._cache_first + len(self._cache) == last + 1, "the cache must end at the last index")

    def compact(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if meta.index <= self._snapshot.meta.index:
            return  # not newer than what we have: nothing to drop (as in MemoryStorage)
        if meta.index > self._last_index:
            raise UnavailableError(f"snapshot at {meta.index} is after the last index {self._last_index}")
        require(self.term(meta.index) == meta.term, f"snapshot term {meta.term} does not match the log")
        with self._db.write_batch(sync=True) as wb:
            for index in range(self._snapshot.meta.index + 1, meta.index + 1):
                wb.delete(_entry_key(index))
            wb.put(_KEY_SNAPSHOT, _encode_snapshot(snapshot))
        self._snapshot = snapshot
        self._cache_drop_to(meta.index)

    # -- the cache of the log's tail -------------------------------------------------------------------------

    def _clear_cache(self, first: int) -> None:
        self._cache = []
        self._cache_first = first
        self._cache_bytes = 0

    def _cache_append(self, entries: tuple[Entry, ...]) -> None:
        """`entries` were just written: they replace the cached suffix from entries[0].index."""
        at = entries[0].index - self._cache_first
        if at < 0:
            self._clear_cache(entries[0].index)  # they replace more than we cache
        elif at < len(self._cache):
            self._cache_bytes -= _cache_cost(self._cache[at:])
            del self._cache[at:]
        self._cache.extend(entries)
        self._cache_bytes += _cache_cost(list(entries))
        if self._cache_bytes > self._cache_bytes_max:
            self._trim_cache()

    def _cache_drop_to(self, index: int) -> None:
        """Entries through `index` are compacted away."""
        cut = min(len(self._cache), index + 1 - self._cache_first)
        if cut > 0:
            self._cache_bytes -= _cache_cost(self._cache[:cut])
            del self._cache[:cut]
            self._cache_first += cut
        self._cache_first = max(self._cache_first, index + 1)

    def _trim_cache(self) -> None:
        """Drop the oldest cached entries down to 3/4 of the bound, so that trimming is not paid every save."""
        excess = self._cache_bytes - self._cache_bytes_max * 3 // 4
        if excess <= 0:
            return
        # Running cost of the oldest entries (C-level passes); cut the shortest prefix that covers the excess.
        # Every entry costs at least the overhead, so the prefix is at most this long.
        prefix = islice(self._cache, excess // CACHE_ENTRY_OVERHEAD_BYTES + 1)
        costs = accumulate(map(len, map(_DATA, prefix)), initial=0)
        running = list(map(add, costs, count(0, CACHE_ENTRY_OVERHEAD_BYTES)))
        cut = min(bisect_left(running, excess), len(running) - 1)
        del self._cache[:cut]
        self._cache_first += cut
        self._cache_bytes -= running[cut]
