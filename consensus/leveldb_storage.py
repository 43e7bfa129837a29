"""Durable Raft storage on LevelDB (plyvel): the log, the hard state and the latest snapshot.

Key schema (one LevelDB per node, `<data_dir>/raft`):

    b"v"                  format version (3)
    b"h"                  HardState            msgpack [term, vote | None, commit]
    b"s"                  latest snapshot      msgpack [index, term, voters, learners, data]
    b"g" + u64be(first)   log segment          the entries first .. first + n - 1, columnar (below)

Every value is `crc32(key + payload)` (4 bytes, big-endian) followed by the payload. Folding the key into the
checksum also catches a record that ended up under the wrong key (a segment's first index lives only in its key).
A record that fails its checksum or does not decode raises `CorruptionError`: a node must refuse to start rather
than apply a damaged log. The whole log is verified when the store is opened (it is short: the application
compacts it), and every read from LevelDB is checked again.

A segment holds the entries of one `save` (etcd's WAL writes one record per Ready the same way), split only when
a batch exceeds `SEGMENT_ENTRIES_MAX` or `SEGMENT_BYTES_MAX`. Its payload is columnar, so that writing thousands of
entries is a few C-level passes and one LevelDB record rather than per-entry Python work and per-entry records
(format 2's one record per entry cost a third of a node's CPU in LevelDB puts, memtable inserts and compaction):

    u32be n, u32be r            entries, term runs
    r x (u64be term, u32be k)   runs of equal terms, k > 0, summing to n, terms increasing
    n bytes                     EntryType of each entry
    n x u32le                   length of each entry's data
    data                        the entries' data, concatenated, to the end of the value

Segments tile the log: each starts right after the previous one ends. Truncating a conflicting suffix deletes the
segments after the first replaced index and rewrites the segment it falls in as its kept prefix. Compaction
deletes the segments wholly covered by the snapshot; the first remaining segment may start below the snapshot
(its older entries are ignored). Installing a snapshot deletes them all. Format 1 (msgpack entry records) and
format 2 (one binary record per entry under b"e") stores are rewritten as format 3 when opened.

The tail of the log is also kept in memory (`cache_bytes_max`; etcd keeps a MemoryStorage beside its WAL for
the same reason): the core reads the entries it sends and applies, and their terms, without decoding LevelDB
records again. The cache is always a suffix of the log, so truncation, compaction and snapshots only cut it.

Each `save` is one WriteBatch, written with `sync=True` whenever it carries entries, a snapshot or a term/vote
change, so that nothing the core acknowledges is lost on a crash (Ready contract, consensus/ready.py).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import sys
import zlib
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, count, groupby, islice, pairwise, repeat
from operator import attrgetter, eq
from typing import Any

import msgpack
import plyvel

from consensus.fsync import fsync_dir
from consensus.invariant import require
from consensus.log import limit_size
from consensus.messages import (
    Entry,
    EntryType,
    NodeId,
    Snapshot,
    SnapshotMeta,
    entries_from_columns,
    entry_columns,
)
from consensus.ready import HardState
from consensus.storage import CompactedError, CorruptionError, UnavailableError

FORMAT_VERSION = 3
CACHE_BYTES_MAX = 64 << 20
"""Default bound of the in-memory log tail; each entry counts `len(data) + CACHE_ENTRY_OVERHEAD_BYTES`."""
CACHE_ENTRY_OVERHEAD_BYTES = 160
"""Roughly what CPython spends on a cached `Entry` beyond its data (the tuple, its ints, the bytes header)."""
SEGMENT_ENTRIES_MAX = 16384
SEGMENT_BYTES_MAX = 4 << 20
"""A save larger than either is split into several segments, so that reading one entry back from LevelDB (a
cache miss) never decodes more than this."""

_KEY_VERSION = b"v"
_KEY_HARD_STATE = b"h"
_KEY_SNAPSHOT = b"s"
_SEGMENT_PREFIX = b"g"
SNAPSHOT_DIR_SUFFIX = ".snapshots"
"""Snapshots are files in `<path>.snapshots/` (`<index>.snap`, etcd keeps `.snap` files beside its WAL the same
way), those this node takes and those it receives from the leader; their `s` record holds no data, but the
file's size and crc32. Writing hundreds of MB into the Raft log's LevelDB instead stalled its synced appends
(memtable switches, level-0 stops) long enough for an election, and held the data again in a memtable. Records
of format 3 stores written before this hold a received snapshot inline; they are still read."""
SNAPSHOT_READ_BYTES = 4 << 20
"""Read size when checking a snapshot file's checksum at open."""
_ENTRY_PREFIX_V2 = b"e"
"""Formats 1 and 2: one record per entry, key b"e" + u64be(index). Read only to migrate."""
_CRC = struct.Struct(">I")
_INDEX_KEY = struct.Struct(">cQ")
_SEGMENT_HEAD = struct.Struct(">II")
_TERM_RUN = struct.Struct(">QI")
_ENTRY_HEAD_V2 = struct.Struct(">QB")
"""Format-2 entry record after the checksum: term, type, then the data to the end of the value."""
_ENTRY_TYPES = tuple(EntryType)
"""EntryType by value: the values are 0..n-1, so a type byte indexes this tuple directly."""
_ENTRY_TYPE_BYTES = bytes(range(len(_ENTRY_TYPES)))
_U32_MAX = (1 << 32) - 1
_DATA = attrgetter("data")
_INDEX = attrgetter("index")
_TERM = attrgetter("term")
_TYPE = attrgetter("type")
assert [int(t) for t in _ENTRY_TYPES] == list(range(len(_ENTRY_TYPES)))
assert array("I").itemsize == 4, "data lengths are stored as 4-byte unsigned ints"


def _segment_key(first: int) -> bytes:
    return _INDEX_KEY.pack(_SEGMENT_PREFIX, first)


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


# -- segments ---------------------------------------------------------------------------------------------------


def _encode_segment(first: int, terms: Sequence[int], types: Sequence[int], datas: Sequence[bytes],
                    lengths: array[int]) -> tuple[bytes, bytes]:
    """Key and value of the segment holding entries first.. with these columns (`lengths` = their data sizes).
    Every per-entry step is a C-level pass (no Python bytecode per entry): a leader writes thousands of entries
    per fsync."""
    n = len(datas)
    if terms.count(terms[0]) == n:
        runs = [(terms[0], n)]  # the usual case, in one pass that compares identical ints
    else:
        runs = [(term, len(list(group))) for term, group in groupby(terms)]
        require(all(a[0] < b[0] for a, b in pairwise(runs)), "a segment's terms must not decrease")
    if sys.byteorder == "big":
        lengths = array("I", lengths)
        lengths.byteswap()
    key = _segment_key(first)
    body = b"".join([_SEGMENT_HEAD.pack(n, len(runs)), *(_TERM_RUN.pack(t, k) for t, k in runs), bytes(types),
                     lengths.tobytes(), *datas])
    return key, _CRC.pack(zlib.crc32(body, zlib.crc32(key))) + body


@dataclass(frozen=True, slots=True)
class _Segment:
    """A segment record, checked and parsed down to its columns (entries are built only when needed)."""

    first: int
    n: int
    term_runs: tuple[tuple[int, int], ...]
    types: bytes
    lengths: array[int]
    data_at: int
    """Offset of the first entry's data in the record's value."""

    @property
    def last(self) -> int:
        return self.first + self.n - 1

    def term(self, index: int) -> int:
        require(self.first <= index <= self.last, f"entry {index} is not in segment {self.first}..{self.last}")
        at = index - self.first
        for term, k in self.term_runs:
            if at < k:
                return term
            at -= k
        raise AssertionError("term runs cover the segment")  # unreachable: checked when parsed


def _parse_segment(key: bytes, value: bytes) -> _Segment:
    """Check a segment record (checksum, key, structure) and parse its columns; `CorruptionError` if damaged."""
    if len(key) != _INDEX_KEY.size or key[:1] != _SEGMENT_PREFIX:
        raise CorruptionError(f"record {key!r}: not a segment key")
    head_end = _CRC.size + _SEGMENT_HEAD.size
    if len(value) < head_end:
        raise CorruptionError(f"segment {key!r}: {len(value)} bytes, shorter than its header")
    if zlib.crc32(memoryview(value)[_CRC.size:], zlib.crc32(key)) != _CRC.unpack_from(value)[0]:
        raise CorruptionError(f"segment {key!r}: checksum mismatch")
    first = _INDEX_KEY.unpack(key)[1]
    n, r = _SEGMENT_HEAD.unpack_from(value, _CRC.size)
    types_at = head_end + r * _TERM_RUN.size
    lengths_at = types_at + n
    data_at = lengths_at + 4 * n
    if n == 0 or r == 0 or r > n or len(value) < data_at:
        raise CorruptionError(f"segment {key!r}: malformed header ({n} entries, {r} term runs)")
    runs = tuple(_TERM_RUN.unpack_from(value, head_end + i * _TERM_RUN.size) for i in range(r))
    terms = [t for t, _ in runs]
    if sum(k for _, k in runs) != n or any(k == 0 for _, k in runs) or terms != sorted(set(terms)):
        raise CorruptionError(f"segment {key!r}: malformed term runs")
    types = value[types_at:lengths_at]
    if types.translate(None, _ENTRY_TYPE_BYTES):
        raise CorruptionError(f"segment {key!r}: unknown entry type")
    lengths = array("I")
    lengths.frombytes(value[lengths_at:data_at])
    if sys.byteorder == "big":
        lengths.byteswap()
    if data_at + sum(lengths) != len(value):
        raise CorruptionError(f"segment {key!r}: data lengths do not match the record's size")
    return _Segment(first, n, runs, types, lengths, data_at)


def _segment_entries(seg: _Segment, value: bytes) -> list[Entry]:
    """The entries of a parsed segment (its `value`), built in C-level passes."""
    ends = list(accumulate(seg.lengths, initial=seg.data_at))
    datas = map(value.__getitem__, map(slice, ends, islice(ends, 1, None)))
    terms = chain.from_iterable(repeat(t, k) for t, k in seg.term_runs)
    types = map(_ENTRY_TYPES.__getitem__, seg.types)
    return entries_from_columns(terms, range(seg.first, seg.first + seg.n), types, datas)


def _encode_segments(entries: Sequence[Entry]) -> tuple[list[tuple[bytes, bytes]], int, int]:
    """Records for `entries` (contiguous, from entries[0].index): one segment unless the batch exceeds a segment's
    limits. Also returns the batch's data bytes and its largest entry's data bytes (for the cache)."""
    first = entries[0].index
    n = len(entries)
    terms, indexes, types, datas = entry_columns(entries)
    require(indexes == tuple(range(first, first + n)), "appended entries must be contiguous")
    lengths = array("I", map(len, datas))  # OverflowError for data over 4 GiB
    size = sum(lengths)
    longest = max(lengths)
    if n <= SEGMENT_ENTRIES_MAX and size <= SEGMENT_BYTES_MAX:
        return [_encode_segment(first, terms, types, datas, lengths)], size, longest
    records = []
    start, run_bytes = 0, 0
    for i, k in enumerate(lengths):
        if i > start and (i - start >= SEGMENT_ENTRIES_MAX or run_bytes + k > SEGMENT_BYTES_MAX):
            records.append(_encode_segment(first + start, terms[start:i], types[start:i], datas[start:i],
                                           lengths[start:i]))
            start, run_bytes = i, 0
        run_bytes += k
    records.append(_encode_segment(first + start, terms[start:], types[start:], datas[start:], lengths[start:]))
    return records, size, longest


# -- formats 1 and 2 (migration only) ---------------------------------------------------------------------------


def _decode_entry_v2(key: bytes, value: bytes) -> Entry:
    """A format-2 record: u64be term, u8 type, data."""
    data_at = _CRC.size + _ENTRY_HEAD_V2.size
    if len(value) < data_at:
        raise CorruptionError(f"record {key!r}: {len(value)} bytes, shorter than an entry header")
    if zlib.crc32(memoryview(value)[_CRC.size:], zlib.crc32(key)) != _CRC.unpack_from(value)[0]:
        raise CorruptionError(f"record {key!r}: checksum mismatch")
    if len(key) != _INDEX_KEY.size or key[:1] != _ENTRY_PREFIX_V2:
        raise CorruptionError(f"record {key!r}: not an entry key")
    term, kind = _ENTRY_HEAD_V2.unpack_from(value, _CRC.size)
    if kind >= len(_ENTRY_TYPES):
        raise CorruptionError(f"record {key!r}: unknown entry type {kind}")
    return Entry(term=term, index=_INDEX_KEY.unpack(key)[1], type=_ENTRY_TYPES[kind], data=value[data_at:])


def _decode_entry_v1(key: bytes, value: bytes) -> Entry:
    """A format-1 record (msgpack [term, index, type, data])."""
    rec = _unseal(key, value)
    try:
        term, index, type_, data = rec
        entry = Entry(term=int(term), index=int(index), type=EntryType(type_), data=bytes(data))
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"record {key!r}: malformed entry") from exc
    if key != _INDEX_KEY.pack(_ENTRY_PREFIX_V2, entry.index):
        raise CorruptionError(f"record {key!r}: holds entry {entry.index}")
    return entry


# -- other records ----------------------------------------------------------------------------------------------


def _decode_hard_state(value: bytes) -> HardState:
    rec = _unseal(_KEY_HARD_STATE, value)
    try:
        term, vote, commit = rec
        require(vote is None or isinstance(vote, str), "vote is a node id")
        return HardState(term=int(term), vote=vote, commit=int(commit))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CorruptionError("hard state record malformed") from exc


@dataclass(frozen=True, slots=True)
class _SnapshotRecord:
    snapshot: Snapshot
    """With its data when stored inline; data b"" when in its file."""
    in_file: bool = False
    size: int = 0
    crc: int = 0


def _decode_snapshot(value: bytes) -> _SnapshotRecord:
    rec = _unseal(_KEY_SNAPSHOT, value)
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
        return _SnapshotRecord(Snapshot(meta=meta, data=bytes(data)), bool(in_file), int(size), int(crc))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CorruptionError("snapshot record malformed") from exc


class MappedSnapshotData:
    """A snapshot file's bytes, mapped read-only. A leader slices the chunks it ships out of it: reading the whole
    file into memory to ship it held the driver's event loop ~0.2 s and the state's size in RSS for a 200 MB
    state; mapped pages are read on demand and belong to the page cache. Slices are bytes (`SnapshotBytes`);
    equality compares contents. The mapping stays valid if the file is removed meanwhile (a newer snapshot)."""

    __slots__ = ("_map",)

    def __init__(self, path: str, size: int) -> None:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise CorruptionError(f"snapshot file {path} does not match its record (size)")
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def __len__(self) -> int:
        return 0 if self._map is None else len(self._map)

    def __getitem__(self, key: slice, /) -> bytes:
        return b"" if self._map is None else self._map[key]

    def __bytes__(self) -> bytes:
        return self[:]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MappedSnapshotData | bytes | bytearray | memoryview):
            return bytes(self) == bytes(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _write_snapshot_file(directory: str, final: str, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Write `chunks` to `final` crash-safely (a `.partial` file, fsync, rename, directory fsync); (size, crc32)."""
    os.makedirs(directory, exist_ok=True)
    partial = final + ".partial"
    crc = size = 0
    with open(partial, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, final)
    fsync_dir(directory)
    return size, crc


def _file_record(meta: SnapshotMeta, size: int, crc: int) -> bytes:
    return _seal(_KEY_SNAPSHOT, [meta.index, meta.term, list(meta.voters), list(meta.learners), None, True,
                                 size, crc])


def _meta_only(snapshot: Snapshot) -> Snapshot:
    """What the store keeps in memory of a snapshot: its metadata (`snapshot()` maps the file when asked)."""
    return Snapshot(meta=snapshot.meta) if snapshot.data else snapshot


def _encode_snapshot(snapshot: Snapshot) -> bytes:
    m = snapshot.meta
    return _seal(_KEY_SNAPSHOT, [m.index, m.term, list(m.voters), list(m.learners), snapshot.data])


class LevelDBStorage:
    """`consensus.storage.Storage`, durable. Not thread-safe: one driver owns it.

    `cache_bytes_max` bounds the in-memory tail of the log (0 turns the cache off: every read decodes records).
    """

    def __init__(self, path: str, bootstrap_voters: tuple[NodeId, ...],
                 cache_bytes_max: int = CACHE_BYTES_MAX) -> None:
        require(cache_bytes_max >= 0, "cache_bytes_max must not be negative")
        self._cache_bytes_max = cache_bytes_max
        self._snapshot_dir = path + SNAPSHOT_DIR_SUFFIX
        self._cache: list[Entry] = []
        """Entries cache_first .. last_index (a suffix of the log, possibly empty)."""
        self._cache_first = 1
        self._cache_bytes = 0
        """Data bytes of the cached entries."""
        self._cache_longest = 0
        """At least the data bytes of the longest cached entry: if n * longest fits a read's size limit, the read
        needs no pass over its entries to find where to cut."""
        self._cache_runs: deque[list[int]] = deque()
        """[count, data bytes] of each run of cached entries as they were appended, oldest first (they add up to
        the cache), so that trimming drops whole runs without measuring their entries again."""
        self._pending: PendingSave | None = None
        self._segments: list[int] = []
        """First index of every segment record, ascending (they tile the log; see the module docstring)."""
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
            bootstrap = Snapshot(SnapshotMeta(index=0, term=0, voters=bootstrap_voters))
            self._snapshot = bootstrap
            with self._db.write_batch(sync=True) as wb:
                wb.put(_KEY_VERSION, _seal(_KEY_VERSION, FORMAT_VERSION))
                wb.put(_KEY_SNAPSHOT, _encode_snapshot(bootstrap))
        else:
            version = _unseal(_KEY_VERSION, raw_version)
            if version not in (1, 2, FORMAT_VERSION) or isinstance(version, bool):
                raise CorruptionError(f"unknown storage format version {version!r}")
            raw_snap = self._db.get(_KEY_SNAPSHOT)
            if raw_snap is None:
                raise CorruptionError("snapshot record missing")
            record = _decode_snapshot(raw_snap)
            self._snapshot = Snapshot(meta=record.snapshot.meta)
            self._remove_snapshot_files(record.snapshot.meta.index if record.in_file else None)
            if record.in_file:
                self._check_file(record)
            if version != FORMAT_VERSION:
                self._migrate(_decode_entry_v1 if version == 1 else _decode_entry_v2)
        raw_hs = self._db.get(_KEY_HARD_STATE)
        self._hard_state = HardState() if raw_hs is None else _decode_hard_state(raw_hs)
        self._last_index = self._verify_log()
        self._fill_cache()

    def _migrate(self, decode: Any) -> None:
        """Rewrite every per-entry record (format 1 or 2) as format-3 segments, and the version, in one synced
        batch: a crash leaves either the old store or the new one."""
        with self._db.write_batch(sync=True, transaction=True) as wb:
            old: list[Entry] = []
            for key, value in self._db.iterator(prefix=_ENTRY_PREFIX_V2):
                old.append(decode(key, value))
                wb.delete(key)
            if old:
                if not all(map(eq, map(_INDEX, old), count(old[0].index))):
                    raise CorruptionError("log has a gap")
                for key, value in _encode_segments(old)[0]:
                    wb.put(key, value)
            wb.put(_KEY_VERSION, _seal(_KEY_VERSION, FORMAT_VERSION))

    def _verify_log(self) -> int:
        """Check every segment: they must tile the log from at or below the snapshot onward, with terms that never
        decrease and that agree with the snapshot. Records the segments; returns the last index."""
        snap = self._snapshot.meta
        expected: int | None = None
        prev_term = 0
        covered: list[bytes] = []
        for key, value in self._db.iterator(prefix=_SEGMENT_PREFIX):
            seg = _parse_segment(key, value)
            if expected is None:
                if seg.first > snap.index + 1:
                    raise CorruptionError(f"log has a gap: expected entry {snap.index + 1}, found {seg.first}")
            elif seg.first != expected:
                raise CorruptionError(f"log has a gap: expected entry {expected}, found {seg.first}")
            if seg.last <= snap.index:
                # Left by a crash between `write_snapshot` and `compact_written` (the record is written first,
                # off the driver's thread): garbage under the snapshot, dropped below.
                if seg.last == snap.index and seg.term(snap.index) != snap.term:
                    raise CorruptionError(f"entry {snap.index} disagrees with the snapshot's term {snap.term}")
                covered.append(key)
                continue
            if seg.term_runs[0][0] < prev_term:
                raise CorruptionError(f"log term goes backwards at entry {seg.first}")
            if seg.first <= snap.index and seg.term(snap.index) != snap.term:
                raise CorruptionError(f"entry {snap.index} disagrees with the snapshot's term {snap.term}")
            if seg.term(max(seg.first, snap.index + 1)) < snap.term:
                raise CorruptionError(f"log term goes below the snapshot's at entry {snap.index + 1}")
            prev_term = seg.term_runs[-1][0]
            expected = seg.last + 1
            self._segments.append(seg.first)
        if covered:
            with self._db.write_batch(sync=True) as wb:
                for key in covered:
                    wb.delete(key)
        return snap.index if expected is None else expected - 1

    def _fill_cache(self) -> None:
        """Fill the cache with the log's tail, newest segments first, until the bound."""
        snap_index = self._snapshot.meta.index
        self._clear_cache(self._last_index + 1)
        if self._cache_bytes_max == 0:
            return
        tail: list[list[Entry]] = []
        cost = 0
        for key, value in self._db.iterator(prefix=_SEGMENT_PREFIX, reverse=True):
            ents = _segment_entries(_parse_segment(key, value), value)
            if ents[0].index <= snap_index:
                ents = ents[snap_index + 1 - ents[0].index:]
            tail.append(ents)
            cost += sum(map(len, map(_DATA, ents))) + CACHE_ENTRY_OVERHEAD_BYTES * len(ents)
            if cost > self._cache_bytes_max:
                break
        tail.reverse()
        cached = list(chain.from_iterable(tail))
        if cached:
            self._cache_first = self._last_index + 1 - len(cached)
            lengths = list(map(len, map(_DATA, cached)))
            self._cache_append(cached, sum(lengths), max(lengths))

    def close(self) -> None:
        self._db.close()

    def memory_bytes(self) -> dict[str, int]:
        """What this store holds in memory, by part: `raft_log_cache` (the log's tail, bounded by
        `cache_bytes_max`) and `raft_leveldb` (LevelDB's own estimate: memtables and block cache)."""
        leveldb = self._db.get_property(b"leveldb.approximate-memory-usage")
        return {"raft_log_cache": self._cache_cost(), "raft_leveldb": int(leveldb or 0)}

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
        if index > self._last_index:
            raise UnavailableError(f"entry {index} is after the last index {self._last_index}")
        key, value = self._segment_record(index)
        return _parse_segment(key, value).term(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        require(lo <= hi, f"entries: lo {lo} > hi {hi}")
        if lo < self.first_index():
            raise CompactedError(f"entry {lo} is compacted (first index {self.first_index()})")
        if hi > self._last_index + 1:
            raise UnavailableError(f"entries up to {hi - 1} requested, last index {self._last_index}")
        cache_first = self._cache_first
        if lo >= cache_first:
            return self._cached(lo - cache_first, hi - cache_first, max_bytes)
        out = self._read_entries(lo, min(hi, cache_first), max_bytes)
        if hi > cache_first and len(out) == cache_first - lo:
            out = limit_size(out + self._cache[:hi - cache_first], max_bytes)
        return out

    def snapshot(self) -> Snapshot:
        """The latest snapshot, read back from LevelDB: its data (the whole state machine, possibly hundreds of
        MB) is not kept in memory between the rare calls (a leader starting to ship it, a restart)."""
        if self._pending is not None and self._pending.snapshot is not None:
            return self._pending.snapshot  # being written on another thread: the record may be either one
        raw = self._db.get(_KEY_SNAPSHOT)
        if raw is None:
            raise CorruptionError("snapshot record missing")
        rec = _decode_snapshot(raw)
        meta = rec.snapshot.meta
        if meta != self._snapshot.meta and meta.index <= self._snapshot.meta.index:
            raise CorruptionError(f"snapshot record holds index {meta.index}, expected {self._snapshot.meta.index}")
        # (A newer one than ours was written by `write_snapshot_chunks` and awaits `compact_written`: as good.)
        if not rec.in_file:
            return rec.snapshot
        name = self._snapshot_file(meta.index)
        try:
            return Snapshot(meta, MappedSnapshotData(name, rec.size))
        except (OSError, ValueError) as exc:
            raise CorruptionError(f"snapshot file {name} unreadable: {exc}") from None

    def _check_file(self, rec: _SnapshotRecord) -> None:
        """At open: the snapshot file must have its record's size and crc32. Checked once, not at every
        `snapshot()` (the leader's event loop would read the whole file each time it starts shipping it); the
        state store that imports a shipped snapshot checks its own checksum and state root end to end."""
        name = self._snapshot_file(rec.snapshot.meta.index)
        crc = size = 0
        try:
            with open(name, "rb") as f:
                while chunk := f.read(SNAPSHOT_READ_BYTES):
                    crc = zlib.crc32(chunk, crc)
                    size += len(chunk)
        except OSError as exc:
            raise CorruptionError(f"snapshot file {name} unreadable: {exc}") from None
        if size != rec.size or crc != rec.crc:
            raise CorruptionError(f"snapshot file {name} does not match its record (size or checksum)")

    def _snapshot_file(self, index: int) -> str:
        return os.path.join(self._snapshot_dir, f"{index:020d}.snap")

    def _remove_snapshot_files(self, keep_index: int | None) -> None:
        """Files of every snapshot but the one at `keep_index` (a crash can leave a newer half-written one, or
        an older one not yet removed)."""
        try:
            names = os.listdir(self._snapshot_dir)
        except FileNotFoundError:
            return
        keep = None if keep_index is None else os.path.basename(self._snapshot_file(keep_index))
        for name in names:
            if name != keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._snapshot_dir, name))

    def _cached(self, a: int, b: int, max_bytes: int) -> list[Entry]:
        """cache[a:b], cut to the longest prefix within `max_bytes` but at least one entry."""
        ents = self._cache[a:b]
        if (b - a) * self._cache_longest <= max_bytes:
            return ents  # fits whatever the entries hold: no pass over them
        return limit_size(ents, max_bytes)

    def _segment_record(self, index: int) -> tuple[bytes, bytes]:
        """Key and value of the segment holding `index` (which must be in the log)."""
        at = bisect_right(self._segments, index) - 1
        require(at >= 0, f"entry {index} is below the first segment")
        key = _segment_key(self._segments[at])
        value = self._db.get(key)
        if value is None:
            raise CorruptionError(f"segment {self._segments[at]} (holding entry {index}) missing from the log")
        return key, value

    def _read_entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) decoded from LevelDB, size-limited like `entries`."""
        at = bisect_right(self._segments, lo) - 1
        require(at >= 0, f"entry {lo} is below the first segment")
        out: list[Entry] = []
        size = 0
        for key, value in self._db.iterator(start=_segment_key(self._segments[at]), stop=_segment_key(hi)):
            seg = _parse_segment(key, value)
            expected = lo + len(out)
            if not seg.first <= expected <= seg.last:
                raise CorruptionError(f"log has a gap at entry {expected}")
            ents = _segment_entries(seg, value)[expected - seg.first:hi - seg.first]
            out += ents
            size += sum(map(len, map(_DATA, ents)))
            if size > max_bytes:
                break  # enough to fill max_bytes
        if len(out) != hi - lo and size <= max_bytes:
            raise CorruptionError(f"log has a gap at entry {lo + len(out)}")
        return limit_size(out, max_bytes)

    def _segment_entries_at(self, first: int) -> list[Entry]:
        key = _segment_key(first)
        value = self._db.get(key)
        if value is None:
            raise CorruptionError(f"segment {first} missing from the log")
        seg = _parse_segment(key, value)
        return _segment_entries(seg, value)

    # -- writes (the driver) ---------------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        pending = self.begin_save(hard_state, entries, snapshot, sync)
        self.write_save(pending)
        self.end_save(pending)

    # A save in three steps, so that a driver can run the slow middle one (the synced LevelDB write, which
    # releases the GIL) on another thread while its event loop keeps serving the network, as etcd's raft node
    # runs its storage writes beside the raft goroutine. Between begin and end the store keeps answering reads
    # as before the save (the core reads the entries being saved from its own unstable log until `advance`);
    # nothing else may write it.

    def begin_save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
                   sync: bool) -> PendingSave:
        """Check and encode a save (`save`'s arguments) without changing anything; raises if it is refused."""
        require(self._pending is None, "one save at a time: end_save the previous one first")
        snap = self._snapshot
        last = self._last_index
        keep = len(self._segments)
        """Segments left as they are (a prefix of the list); the batch deletes the others."""
        puts: list[tuple[bytes, bytes]] = []
        new_segments: list[int] = []
        size = longest = 0
        # Decide everything first, so that a refused save writes nothing.
        install = snapshot is not None and snapshot.meta.index > snap.meta.index
        if install:
            assert snapshot is not None
            # A snapshot from the leader replaces the whole log (etcd's ApplySnapshot); an older one than ours
            # has nothing to add (as in MemoryStorage).
            keep = 0
            snap = snapshot
            last = snap.meta.index
        if entries and entries[0].index <= snap.meta.index:
            # Entries already covered by the snapshot are dropped; the rest must connect to the log.
            entries = entries[min(len(entries), snap.meta.index + 1 - entries[0].index):]
        if entries:
            first = entries[0].index
            require(first <= last + 1, f"append at {first} leaves a gap after last index {last}")
            prev_term = snap.meta.term if first - 1 == snap.meta.index else self.term(first - 1)
            require(prev_term <= entries[0].term, f"entry {first}'s term is below its predecessor's")
            if first <= last:
                # Truncate the conflicting suffix: drop the segments from the one holding `first` on, and keep
                # that segment's entries before `first` (unless the snapshot covers them all) as a shorter one.
                keep = bisect_right(self._segments, first) - 1
                start = self._segments[keep]
                if start < first and first - 1 > snap.meta.index:
                    puts += _encode_segments(self._segment_entries_at(start)[:first - start])[0]
                    new_segments.append(start)
            records, size, longest = _encode_segments(entries)
            puts += records
            new_segments += (_INDEX_KEY.unpack(key)[1] for key, _ in records)
        self._pending = PendingSave(
            hard_state=hard_state, entries=entries, snapshot=snap if install else None,
            sync=sync or bool(entries) or install,
            deletes=tuple(map(_segment_key, self._segments[keep:])),
            puts=tuple(puts), keep=keep, new_segments=tuple(new_segments), data_bytes=size, longest=longest)
        return self._pending

    def write_save(self, pending: PendingSave) -> None:
        """The one LevelDB WriteBatch of a begun save, synced if it must be; a received snapshot's data goes to
        its file first (the record written with the batch points to it). Safe on another thread: it touches
        nothing but LevelDB (which is thread-safe), the snapshot directory and `pending`."""
        record = None
        if pending.snapshot is not None:
            snap = pending.snapshot
            size, crc = _write_snapshot_file(self._snapshot_dir, self._snapshot_file(snap.meta.index),
                                             (bytes(snap.data),) if snap.data else ())
            record = _file_record(snap.meta, size, crc)
        with self._db.write_batch(sync=pending.sync) as wb:
            for key in pending.deletes:  # deletes first: a rewritten segment's put under the same key must win
                wb.delete(key)
            if record is not None:
                wb.put(_KEY_SNAPSHOT, record)
            for key, value in pending.puts:
                wb.put(key, value)
            hs = pending.hard_state
            if hs is not None:
                wb.put(_KEY_HARD_STATE, _seal(_KEY_HARD_STATE, [hs.term, hs.vote, hs.commit]))

    def end_save(self, pending: PendingSave) -> None:
        """After `write_save` returned: the store's in-memory state takes the save."""
        require(pending is self._pending, "end_save of a save that is not the pending one")
        self._pending = None
        del self._segments[pending.keep:]
        self._segments += pending.new_segments
        last = self._last_index
        if pending.snapshot is not None:
            self._snapshot = _meta_only(pending.snapshot)
            self._remove_snapshot_files(pending.snapshot.meta.index)
            last = pending.snapshot.meta.index
            self._clear_cache(last + 1)
        entries = pending.entries
        if entries:
            self._cache_append(entries, pending.data_bytes, pending.longest)
            last = entries[-1].index
        self._last_index = last
        if pending.hard_state is not None:
            self._hard_state = pending.hard_state
        require(self._cache_first + len(self._cache) == last + 1, "the cache must end at the last index")

    def compact(self, snapshot: Snapshot) -> None:
        self._compact(snapshot.meta, snapshot)

    def write_snapshot_chunks(self, meta: SnapshotMeta, chunks: Iterable[bytes]) -> int:
        """Write a snapshot whose data comes as `chunks` to its file (synced, renamed into place), then its record;
        nothing else, and never more than a chunk in memory; returns the data's size. Safe on another thread
        while the driver goes on saving (plain file I/O and one small LevelDB write): a state of 200 MB took
        ~0.4 s to write as one LevelDB record on the driver's loop, and held the state ~5 times over in memory.
        Then `compact_written(meta)` drops the log it covers and the previous file. The caller must not let a
        received snapshot be saved while this runs (the older record could land last)."""
        size, crc = _write_snapshot_file(self._snapshot_dir, self._snapshot_file(meta.index), chunks)
        self._db.put(_KEY_SNAPSHOT, _file_record(meta, size, crc), sync=True)
        return size

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """`write_snapshot_chunks` of one chunk."""
        self.write_snapshot_chunks(snapshot.meta, (snapshot.data,))

    def compact_written(self, meta: SnapshotMeta) -> None:
        """`compact` for a snapshot whose record `write_snapshot` has written."""
        self._compact(meta, None)

    def _compact(self, meta: SnapshotMeta, record: Snapshot | None) -> None:
        require(self._pending is None, "compact during a save: end_save it first")
        if meta.index <= self._snapshot.meta.index:
            return  # not newer than what we have: nothing to drop (as in MemoryStorage)
        if record is None:  # written by write_snapshot_chunks
            raw = self._db.get(_KEY_SNAPSHOT)
            written = None if raw is None else _decode_snapshot(raw)
            require(written is not None and written.snapshot.meta == meta and written.in_file,
                    f"compact_written({meta.index}) without its record written")
        if meta.index > self._last_index:
            raise UnavailableError(f"snapshot at {meta.index} is after the last index {self._last_index}")
        require(self.term(meta.index) == meta.term, f"snapshot term {meta.term} does not match the log")
        # Segments wholly at or below the snapshot go; the one holding meta.index + 1 (if any) stays, partly
        # covered.
        if meta.index < self._last_index:
            dropped = bisect_right(self._segments, meta.index + 1) - 1
        else:
            dropped = len(self._segments)
        with self._db.write_batch(sync=True) as wb:
            for first in self._segments[:dropped]:
                wb.delete(_segment_key(first))
            if record is not None:
                wb.put(_KEY_SNAPSHOT, _encode_snapshot(record))
        del self._segments[:dropped]
        self._snapshot = Snapshot(meta=meta)
        self._remove_snapshot_files(meta.index if record is None else None)
        self._cache_drop_to(meta.index)

    # -- the cache of the log's tail -------------------------------------------------------------------------

    def _clear_cache(self, first: int) -> None:
        self._cache = []
        self._cache_first = first
        self._cache_bytes = 0
        self._cache_longest = 0
        self._cache_runs = deque()

    def _cache_append(self, entries: Sequence[Entry], data_bytes: int, longest: int) -> None:
        """`entries` (holding `data_bytes`, at most `longest` each) were just written: they replace the cached
        suffix from entries[0].index."""
        at = entries[0].index - self._cache_first
        if at < 0:
            self._clear_cache(entries[0].index)  # they replace more than we cache
        elif at < len(self._cache):
            self._cache_drop_suffix(len(self._cache) - at)
        self._cache += entries
        self._cache_bytes += data_bytes
        self._cache_runs.append([len(entries), data_bytes])
        self._cache_longest = max(self._cache_longest, longest)
        if self._cache_cost() > self._cache_bytes_max:
            self._trim_cache()

    def _cache_cost(self) -> int:
        return self._cache_bytes + CACHE_ENTRY_OVERHEAD_BYTES * len(self._cache)

    def _cache_drop_to(self, index: int) -> None:
        """Entries through `index` are compacted away."""
        cut = min(len(self._cache), index + 1 - self._cache_first)
        if cut > 0:
            self._cache_cut(cut)
        self._cache_first = max(self._cache_first, index + 1)

    def _cache_cut(self, cut: int) -> None:
        """Drop the oldest `cut` cached entries. Whole runs leave by their recorded size; only a run cut in two
        is measured."""
        runs = self._cache_runs
        left = cut
        while left:
            k, size = runs[0]
            if k > left:
                part = sum(map(len, map(_DATA, islice(self._cache, cut - left, cut))))
                runs[0] = [k - left, size - part]
                self._cache_bytes -= part
                break
            runs.popleft()
            self._cache_bytes -= size
            left -= k
        del self._cache[:cut]
        self._cache_first += cut
        if not self._cache:
            self._cache_longest = 0

    def _cache_drop_suffix(self, n: int) -> None:
        """Drop the newest `n` cached entries (a truncated suffix)."""
        runs = self._cache_runs
        while n:
            k, size = runs[-1]
            if k > n:
                part = sum(map(len, map(_DATA, islice(self._cache, len(self._cache) - n, None))))
                runs[-1] = [k - n, size - part]
                self._cache_bytes -= part
                del self._cache[len(self._cache) - n:]
                return
            runs.pop()
            self._cache_bytes -= size
            del self._cache[len(self._cache) - k:]
            n -= k

    def _trim_cache(self) -> None:
        """Drop the oldest runs of cached entries until the rest cost at most 3/4 of the bound (so that trimming is
        not paid every save). No pass over the entries, except to split a run: runs know their size."""
        target = self._cache_bytes_max * 3 // 4
        while self._cache and self._cache_cost() > target:
            runs = self._cache_runs
            cost = self._cache_cost()
            cut = 0
            for k, size in islice(runs, len(runs) - 1):
                if cost <= target:
                    break
                cost -= size + CACHE_ENTRY_OVERHEAD_BYTES * k
                cut += k
            if cost > target:
                # The newest run alone is over: cut into it at its average cost per entry (again if its oldest
                # entries turn out smaller than the average).
                k, size = runs[-1]
                average = (size + CACHE_ENTRY_OVERHEAD_BYTES * k) // k
                cut += min(k, -(-(cost - target) // average))
            self._cache_cut(cut)


@dataclass(frozen=True, slots=True)
class PendingSave:
    """A save between `begin_save` and `end_save`: what `write_save` writes and what the store then records."""

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    """The entries written (those the snapshot does not cover)."""
    snapshot: Snapshot | None
    """The snapshot installed (None if none, or if it was not newer than the store's)."""
    sync: bool
    deletes: tuple[bytes, ...]
    puts: tuple[tuple[bytes, bytes], ...]
    keep: int
    """Segments of the store kept as they are; the others are in `deletes`."""
    new_segments: tuple[int, ...]
    data_bytes: int
    longest: int
