"""Durable Raft storage on LevelDB (plyvel): the log, the hard state and the latest snapshot.

`LevelDBStorage` composes the parts, each in its own module:

- consensus/log_records.py: the key schema (`v` version, `h` hard state, `s` snapshot record, `g` + u64be
  segments) and the checksummed records; a damaged record raises `CorruptionError` and the node refuses to start.
- consensus/log_segments.py: the columnar segments (format 3) that hold the entries, one per `save`, and the
  check at open that they tile the log.
- consensus/log_cache.py: the in-memory tail of the log that serves nearly all of the core's reads.
- consensus/snapshot_files.py: snapshot data in `<path>.snapshots/<index>.snap`, written from a stream, fsynced
  and renamed into place; the `s` record holds their size and crc32.
- consensus/log_migrate.py: stores of formats 1 and 2, rewritten as format 3 when opened.

This module decides what each write does to the segments: appending adds segments keyed by the batch's first
index; truncating a conflicting suffix deletes the segments after the first replaced index and rewrites the
segment it falls in as its kept prefix; compaction deletes the segments wholly covered by the snapshot (the first
remaining segment may start below the snapshot: its older entries are ignored); installing a snapshot deletes them
all. The whole log is verified when the store is opened (it is short: the application compacts it), and every
read from LevelDB is checked again.

Each `save` is one WriteBatch, written with `sync=True` whenever it carries entries, a snapshot or a term/vote
change, so that nothing the core acknowledges is lost on a crash (Ready contract, consensus/ready.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter

import plyvel

from consensus.invariant import require
from consensus.log import limit_size
from consensus.log_cache import CACHE_BYTES_MAX, TailCache
from consensus.log_migrate import migrate
from consensus.log_records import (
    FORMAT_VERSION,
    KEY_HARD_STATE,
    KEY_SNAPSHOT,
    KEY_VERSION,
    SEGMENT_PREFIX,
    decode_hard_state,
    decode_snapshot_record,
    decode_version,
    encode_hard_state,
    encode_snapshot_file_record,
    encode_snapshot_record,
    encode_version,
    key_index,
    segment_key,
)
from consensus.log_segments import encode_segments, parse_segment, segment_entries, verify_log
from consensus.messages import Entry, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.snapshot_files import SNAPSHOT_DIR_SUFFIX, SnapshotFiles
from consensus.storage import CompactedError, CorruptionError, UnavailableError

_DATA = attrgetter("data")


class LevelDBStorage:
    """`consensus.storage.Storage`, durable. Not thread-safe: one driver owns it.

    `cache_bytes_max` bounds the in-memory tail of the log (0 turns the cache off: every read decodes records).
    """

    def __init__(self, path: str, bootstrap_voters: tuple[NodeId, ...],
                 cache_bytes_max: int = CACHE_BYTES_MAX) -> None:
        self._cache = TailCache(cache_bytes_max)
        self._files = SnapshotFiles(path + SNAPSHOT_DIR_SUFFIX)
        self._pending: PendingSave | None = None
        self._segments: list[int] = []
        """First index of every segment record, ascending (they tile the log; see consensus/log_segments.py)."""
        self._db = plyvel.DB(path, create_if_missing=True)
        try:
            self._open(tuple(sorted(bootstrap_voters)))
        except BaseException:
            self._db.close()
            raise

    def _open(self, bootstrap_voters: tuple[NodeId, ...]) -> None:
        raw_version = self._db.get(KEY_VERSION)
        if raw_version is None:
            # A fresh store: write the version and the bootstrap configuration (the "snapshot" at index 0).
            bootstrap = Snapshot(SnapshotMeta(index=0, term=0, voters=bootstrap_voters))
            self._snapshot = bootstrap
            with self._db.write_batch(sync=True) as wb:
                wb.put(KEY_VERSION, encode_version())
                wb.put(KEY_SNAPSHOT, encode_snapshot_record(bootstrap))
        else:
            version = decode_version(raw_version)
            raw_snap = self._db.get(KEY_SNAPSHOT)
            if raw_snap is None:
                raise CorruptionError("snapshot record missing")
            record = decode_snapshot_record(raw_snap)
            meta = record.snapshot.meta
            self._snapshot = Snapshot(meta=meta)
            self._files.remove_all_but(meta.index if record.in_file else None)
            if record.in_file:
                # Checked once, not at every `snapshot()` (the leader's event loop would read the whole file each
                # time it starts shipping it); the state store that imports a shipped snapshot checks its own
                # checksum and state root end to end.
                self._files.check(meta.index, record.size, record.crc)
            if version != FORMAT_VERSION:
                migrate(self._db, version)
        raw_hs = self._db.get(KEY_HARD_STATE)
        self._hard_state = HardState() if raw_hs is None else decode_hard_state(raw_hs)
        layout = verify_log(self._db.iterator(prefix=SEGMENT_PREFIX), self._snapshot.meta)
        if layout.covered:
            with self._db.write_batch(sync=True) as wb:
                for key in layout.covered:
                    wb.delete(key)
        self._segments = list(layout.firsts)
        self._last_index = layout.last
        self._cache.fill(self._last_index, self._tail_newest_first())
        require(self._cache.first + len(self._cache) == self._last_index + 1, "the cache must end at the last index")

    def _tail_newest_first(self) -> Iterator[list[Entry]]:
        """Each segment's entries above the snapshot, from the newest segment down (read lazily)."""
        snap_index = self._snapshot.meta.index
        for key, value in self._db.iterator(prefix=SEGMENT_PREFIX, reverse=True):
            ents = segment_entries(parse_segment(key, value), value)
            yield ents[max(0, snap_index + 1 - ents[0].index):]

    def close(self) -> None:
        self._db.close()

    def memory_bytes(self) -> dict[str, int]:
        """What this store holds in memory, by part: `raft_log_cache` (the log's tail, bounded by
        `cache_bytes_max`) and `raft_leveldb` (LevelDB's own estimate: memtables and block cache)."""
        leveldb = self._db.get_property(b"leveldb.approximate-memory-usage")
        return {"raft_log_cache": self._cache.cost(), "raft_leveldb": int(leveldb or 0)}

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
        cache = self._cache
        at = index - cache.first
        if 0 <= at < len(cache.entries):
            return cache.entries[at].term
        snap = self._snapshot.meta
        if index < snap.index:
            raise CompactedError(f"entry {index} is compacted (snapshot at {snap.index})")
        if index == snap.index:
            return snap.term
        if index > self._last_index:
            raise UnavailableError(f"entry {index} is after the last index {self._last_index}")
        key, value = self._segment_record(index)
        return parse_segment(key, value).term(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        require(lo <= hi, f"entries: lo {lo} > hi {hi}")
        if lo < self.first_index():
            raise CompactedError(f"entry {lo} is compacted (first index {self.first_index()})")
        if hi > self._last_index + 1:
            raise UnavailableError(f"entries up to {hi - 1} requested, last index {self._last_index}")
        cache = self._cache
        cache_first = cache.first
        if lo >= cache_first:
            return cache.read(lo, hi, max_bytes)
        out = self._read_entries(lo, min(hi, cache_first), max_bytes)
        if hi > cache_first and len(out) == cache_first - lo:
            out = limit_size(out + cache.entries[:hi - cache_first], max_bytes)
        return out

    def snapshot(self) -> Snapshot:
        """The latest snapshot: its data (the whole state machine, possibly hundreds of MB) is not kept in memory
        between the rare calls (a leader starting to ship it, a restart) but mapped from its file."""
        if self._pending is not None and self._pending.snapshot is not None:
            return self._pending.snapshot  # being written on another thread: the record may be either one
        raw = self._db.get(KEY_SNAPSHOT)
        if raw is None:
            raise CorruptionError("snapshot record missing")
        rec = decode_snapshot_record(raw)
        meta = rec.snapshot.meta
        if meta != self._snapshot.meta and meta.index <= self._snapshot.meta.index:
            raise CorruptionError(f"snapshot record holds index {meta.index}, expected {self._snapshot.meta.index}")
        # (A newer one than ours was written by `write_snapshot_chunks` and awaits `compact_written`: as good.)
        if not rec.in_file:
            return rec.snapshot
        return Snapshot(meta, self._files.mapped(meta.index, rec.size))

    def _segment_record(self, index: int) -> tuple[bytes, bytes]:
        """Key and value of the segment holding `index` (which must be in the log)."""
        at = bisect_right(self._segments, index) - 1
        require(at >= 0, f"entry {index} is below the first segment")
        key = segment_key(self._segments[at])
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
        for key, value in self._db.iterator(start=segment_key(self._segments[at]), stop=segment_key(hi)):
            seg = parse_segment(key, value)
            expected = lo + len(out)
            if not seg.first <= expected <= seg.last:
                raise CorruptionError(f"log has a gap at entry {expected}")
            ents = segment_entries(seg, value)[expected - seg.first:hi - seg.first]
            out += ents
            size += sum(map(len, map(_DATA, ents)))
            if size > max_bytes:
                break  # enough to fill max_bytes
        if len(out) != hi - lo and size <= max_bytes:
            raise CorruptionError(f"log has a gap at entry {lo + len(out)}")
        require(not out or (out[0].index == lo and out[-1].index == lo + len(out) - 1),
                f"entries read from {lo} must be contiguous from it")
        return limit_size(out, max_bytes)

    def _segment_entries_at(self, first: int) -> list[Entry]:
        key = segment_key(first)
        value = self._db.get(key)
        if value is None:
            raise CorruptionError(f"segment {first} missing from the log")
        return segment_entries(parse_segment(key, value), value)

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
                    puts += encode_segments(self._segment_entries_at(start)[:first - start])[0]
                    new_segments.append(start)
            records, size, longest = encode_segments(entries)
            puts += records
            new_segments += (key_index(key) for key, _ in records)
        # The segment list stays ascending (lookups bisect it): what is written starts after what is kept.
        require(not new_segments or keep == 0 or self._segments[keep - 1] < new_segments[0],
                "new segments must follow the kept ones")
        self._pending = PendingSave(
            hard_state=hard_state, entries=entries, snapshot=snap if install else None,
            sync=sync or bool(entries) or install,
            deletes=tuple(map(segment_key, self._segments[keep:])),
            puts=tuple(puts), keep=keep, new_segments=tuple(new_segments), data_bytes=size, longest=longest)
        return self._pending

    def write_save(self, pending: PendingSave) -> None:
        """The one LevelDB WriteBatch of a begun save, synced if it must be; a received snapshot's data goes to
        its file first (the record written with the batch points to it). Safe on another thread: it touches
        nothing but LevelDB (which is thread-safe), the snapshot directory and `pending`."""
        record = None
        if pending.snapshot is not None:
            snap = pending.snapshot
            size, crc = self._files.write(snap.meta.index, (snap.data[:],) if snap.data else ())
            record = encode_snapshot_file_record(snap.meta, size, crc)
        with self._db.write_batch(sync=pending.sync) as wb:
            for key in pending.deletes:  # deletes first: a rewritten segment's put under the same key must win
                wb.delete(key)
            if record is not None:
                wb.put(KEY_SNAPSHOT, record)
            for key, value in pending.puts:
                wb.put(key, value)
            hs = pending.hard_state
            if hs is not None:
                wb.put(KEY_HARD_STATE, encode_hard_state(hs))

    def end_save(self, pending: PendingSave) -> None:
        """After `write_save` returned: the store's in-memory state takes the save."""
        require(pending is self._pending, "end_save of a save that is not the pending one")
        self._pending = None
        del self._segments[pending.keep:]
        self._segments += pending.new_segments
        last = self._last_index
        if pending.snapshot is not None:
            self._snapshot = _meta_only(pending.snapshot)
            self._files.remove_all_but(pending.snapshot.meta.index)
            last = pending.snapshot.meta.index
            self._cache.clear(last + 1)
        entries = pending.entries
        if entries:
            self._cache.append(entries, pending.data_bytes, pending.longest)
            last = entries[-1].index
        self._last_index = last
        if pending.hard_state is not None:
            self._hard_state = pending.hard_state
        require(self._cache.first + len(self._cache) == last + 1, "the cache must end at the last index")

    def compact(self, snapshot: Snapshot) -> None:
        self._compact(snapshot.meta, snapshot)

    def write_snapshot_chunks(self, meta: SnapshotMeta, chunks: Iterable[bytes]) -> int:
        """Write a snapshot whose data comes as `chunks` to its file (synced, renamed into place), then its record;
        nothing else, and never more than a chunk in memory; returns the data's size. Safe on another thread
        while the driver goes on saving (plain file I/O and one small LevelDB write): a state of 200 MB took
        ~0.4 s to write as one LevelDB record on the driver's loop, and held the state ~5 times over in memory.
        Then `compact_written(meta)` drops the log it covers and the previous file. The caller must not let a
        received snapshot be saved while this runs (the older record could land last)."""
        size, crc = self._files.write(meta.index, chunks)
        self._db.put(KEY_SNAPSHOT, encode_snapshot_file_record(meta, size, crc), sync=True)
        return size

    def write_snapshot(self, snapshot: Snapshot) -> None:
        """`write_snapshot_chunks` of one chunk."""
        self.write_snapshot_chunks(snapshot.meta, (snapshot.data[:],))

    def compact_written(self, meta: SnapshotMeta) -> None:
        """`compact` for a snapshot whose record `write_snapshot` has written."""
        self._compact(meta, None)

    def _compact(self, meta: SnapshotMeta, record: Snapshot | None) -> None:
        require(self._pending is None, "compact during a save: end_save it first")
        if meta.index <= self._snapshot.meta.index:
            return  # not newer than what we have: nothing to drop (as in MemoryStorage)
        if record is None:  # written by write_snapshot_chunks
            raw = self._db.get(KEY_SNAPSHOT)
            written = None if raw is None else decode_snapshot_record(raw)
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
                wb.delete(segment_key(first))
            if record is not None:
                wb.put(KEY_SNAPSHOT, encode_snapshot_record(record))
        del self._segments[:dropped]
        require(not self._segments or self._segments[0] <= meta.index + 1,
                "the first segment left must hold the entry after the snapshot")
        self._snapshot = Snapshot(meta=meta)
        self._files.remove_all_but(meta.index if record is None else None)
        self._cache.drop_to(meta.index)


def _meta_only(snapshot: Snapshot) -> Snapshot:
    """What the store keeps in memory of a snapshot: its metadata (`snapshot()` maps the file when asked)."""
    return Snapshot(meta=snapshot.meta) if snapshot.data else snapshot


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
