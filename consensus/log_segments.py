"""Log segments (storage format 3): the records that hold the Raft log's entries, their columnar layout, and the
check at open that they tile the log.

A segment holds the entries of one `save` (etcd's WAL writes one record per Ready the same way), split only when
a batch exceeds `SEGMENT_ENTRIES_MAX` or `SEGMENT_BYTES_MAX`. Its key is b"g" + u64be(first index)
(consensus/log_records.py); its value, after the checksum, is columnar, so that writing thousands of entries is a
few C-level passes and one LevelDB record rather than per-entry Python work and per-entry records (format 2's one
record per entry cost a third of a node's CPU in LevelDB puts, memtable inserts and compaction):

    u32be n, u32be r            entries, term runs
    r x (u64be term, u32be k)   runs of equal terms, k > 0, summing to n, terms increasing
    n bytes                     EntryType of each entry
    n x u32le                   length of each entry's data
    data                        the entries' data, concatenated, to the end of the value

Segments tile the log: each starts right after the previous one ends, and the first at or below the snapshot's
index + 1 (its entries at or below the snapshot are ignored). Pure functions over bytes, apart from the store
that decides which segments to write and delete (consensus/leveldb_storage.py), so that the encoding's hot
path has no layer between a save and these passes.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, groupby, islice, pairwise, repeat

from consensus.invariant import require
from consensus.log_records import CRC, INDEX_KEY, SEGMENT_PREFIX, key_index, seal_bytes, seal_ok, segment_key
from consensus.messages import Entry, EntryType, SnapshotMeta, entries_from_columns, entry_columns
from consensus.storage import CorruptionError

SEGMENT_ENTRIES_MAX = 16384
SEGMENT_BYTES_MAX = 4 << 20
"""A save larger than either is split into several segments, so that reading one entry back from LevelDB (a
cache miss) never decodes more than this."""

ENTRY_TYPES = tuple(EntryType)
"""EntryType by value: the values are 0..n-1, so a type byte indexes this tuple directly."""
_ENTRY_TYPE_BYTES = bytes(range(len(ENTRY_TYPES)))
_SEGMENT_HEAD = struct.Struct(">II")
_TERM_RUN = struct.Struct(">QI")
assert [int(t) for t in ENTRY_TYPES] == list(range(len(ENTRY_TYPES)))
assert array("I").itemsize == 4, "data lengths are stored as 4-byte unsigned ints"


def _encode_segment(first: int, terms: Sequence[int], types: Sequence[int], datas: Sequence[bytes],
                    lengths: array[int]) -> tuple[bytes, bytes]:
    """Key and value of the segment holding entries first.. with these columns (`lengths` = their data sizes).
    Every per-entry step is a C-level pass (no Python bytecode per entry): a leader writes thousands of entries
    per fsync."""
    n = len(datas)
    require(n > 0 and len(terms) == len(types) == len(lengths) == n, "a segment's columns must have n > 0 rows")
    if terms.count(terms[0]) == n:
        runs = [(terms[0], n)]  # the usual case, in one pass that compares identical ints
    else:
        runs = [(term, len(list(group))) for term, group in groupby(terms)]
        require(all(a[0] < b[0] for a, b in pairwise(runs)), "a segment's terms must not decrease")
    if sys.byteorder == "big":
        lengths = array("I", lengths)
        lengths.byteswap()
    key = segment_key(first)
    body = b"".join([_SEGMENT_HEAD.pack(n, len(runs)), *(_TERM_RUN.pack(t, k) for t, k in runs), bytes(types),
                     lengths.tobytes(), *datas])
    return key, seal_bytes(key, body)


def encode_segments(entries: Sequence[Entry]) -> tuple[list[tuple[bytes, bytes]], int, int]:
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


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment record, checked and parsed down to its columns (entries are built only when needed)."""

    first: int
    n: int
    term_runs: tuple[tuple[int, int], ...]
    """(term, k): k > 0 entries of that term; terms strictly increasing, the k summing to n."""
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


def parse_segment(key: bytes, value: bytes) -> Segment:
    """Check a segment record (checksum, key, structure) and parse its columns; `CorruptionError` if damaged."""
    if len(key) != INDEX_KEY.size or key[:1] != SEGMENT_PREFIX:
        raise CorruptionError(f"record {key!r}: not a segment key")
    head_end = CRC.size + _SEGMENT_HEAD.size
    if len(value) < head_end:
        raise CorruptionError(f"segment {key!r}: {len(value)} bytes, shorter than its header")
    if not seal_ok(key, value):
        raise CorruptionError(f"segment {key!r}: checksum mismatch")
    first = key_index(key)
    n, r = _SEGMENT_HEAD.unpack_from(value, CRC.size)
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
    return Segment(first, n, runs, types, lengths, data_at)


def segment_entries(seg: Segment, value: bytes) -> list[Entry]:
    """The entries of a parsed segment (its `value`), built in C-level passes."""
    ends = list(accumulate(seg.lengths, initial=seg.data_at))
    datas = map(value.__getitem__, map(slice, ends, islice(ends, 1, None)))
    terms = chain.from_iterable(repeat(t, k) for t, k in seg.term_runs)
    types = map(ENTRY_TYPES.__getitem__, seg.types)
    return entries_from_columns(terms, range(seg.first, seg.first + seg.n), types, datas)


@dataclass(frozen=True, slots=True)
class LogLayout:
    """What the segments found at open hold, once checked against the snapshot."""

    firsts: tuple[int, ...]
    """First index of every live segment, ascending, tiling the log up to `last`."""
    covered: tuple[bytes, ...]
    """Keys of segments wholly at or below the snapshot: garbage to delete."""
    last: int
    """The log's last index (the snapshot's if no segment is live)."""


def verify_log(records: Iterable[tuple[bytes, bytes]], snap: SnapshotMeta) -> LogLayout:
    """Check every segment (`records` in key order): they must tile the log from at or below the snapshot onward,
    with terms that never decrease and that agree with the snapshot; `CorruptionError` if not."""
    expected: int | None = None
    prev_term = 0
    firsts: list[int] = []
    covered: list[bytes] = []
    for key, value in records:
        seg = parse_segment(key, value)
        if expected is None:
            if seg.first > snap.index + 1:
                raise CorruptionError(f"log has a gap: expected entry {snap.index + 1}, found {seg.first}")
        elif seg.first != expected:
            raise CorruptionError(f"log has a gap: expected entry {expected}, found {seg.first}")
        if seg.last <= snap.index:
            # Left by a crash between `write_snapshot` and `compact_written` (the record is written first, off
            # the driver's thread): garbage under the snapshot.
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
        firsts.append(seg.first)
    return LogLayout(tuple(firsts), tuple(covered), snap.index if expected is None else expected - 1)
