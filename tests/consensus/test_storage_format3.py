"""Log storage format 3: one LevelDB record ("segment") per saved batch of entries, columnar, one checksum.

Real LevelDB in tmp dirs. Most tests read with the tail cache off (`cache_bytes_max=0`) so that every read
decodes segments, and reopen the store after each step.
"""

from __future__ import annotations

import random
import tempfile
import threading
import zlib
from pathlib import Path
from unittest import mock

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import log_segments
from consensus.leveldb_storage import LevelDBStorage
from consensus.log_records import segment_key
from consensus.messages import Entry, EntryType, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.storage import CompactedError, CorruptionError, MemoryStorage
from tests.consensus.test_leveldb_storage_model import apply, observe, random_ops

VOTERS = ("n1", "n2", "n3")


def ents(lo: int, hi: int, term: int) -> tuple[Entry, ...]:
    return tuple(Entry(term=term, index=i, type=EntryType(i % 3 == 0), data=b"d%d" % i * (i % 4))
                 for i in range(lo, hi))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "raft")


def segment_starts(path: str) -> list[int]:
    db = plyvel.DB(path)
    try:
        return [int.from_bytes(k[1:], "big") for k in db.iterator(prefix=b"g", include_value=False)]
    finally:
        db.close()


def reopened(path: str) -> list[Entry]:
    """The whole log after reopening, read from LevelDB."""
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        return st.entries(st.first_index(), st.last_index() + 1, 1 << 30)


def test_one_segment_per_save_and_round_trip(path: str) -> None:
    log = ents(1, 6, 1) + ents(6, 9, 2) + ents(9, 10, 4)
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        st.save(HardState(term=1), log[:5], None, sync=True)
        st.save(HardState(term=4), log[5:], None, sync=True)  # two terms in one segment
        assert st.entries(1, 10, 1 << 20) == list(log)
        assert [st.term(i) for i in range(10)] == [0, 1, 1, 1, 1, 1, 2, 2, 2, 4]
        assert st.entries(4, 8, 1 << 20) == list(log[3:7])  # across the segment boundary
    assert segment_starts(path) == [1, 6]
    assert reopened(path) == list(log)


def test_large_batches_are_split_into_segments(path: str) -> None:
    with mock.patch.object(log_segments, "SEGMENT_ENTRIES_MAX", 4), \
            mock.patch.object(log_segments, "SEGMENT_BYTES_MAX", 30):
        with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
            st.save(None, ents(1, 12, 1), None, sync=True)
            big = Entry(1, 12, data=b"x" * 100)  # larger than a segment's byte limit: a segment of its own
            st.save(None, (big, *ents(13, 15, 1)), None, sync=True)
            assert st.entries(1, 15, 1 << 20) == [*ents(1, 12, 1), big, *ents(13, 15, 1)]
        starts = segment_starts(path)
        assert starts[0] == 1 and 12 in starts and 13 in starts and len(starts) >= 5
        assert all(b - a <= 4 for a, b in zip(starts, [*starts[1:], 15], strict=True))
        assert reopened(path) == [*ents(1, 12, 1), big, *ents(13, 15, 1)]


@pytest.mark.parametrize("cache_bytes_max", [0, 1 << 20])
def test_truncation_in_the_middle_of_a_segment(path: str, cache_bytes_max: int) -> None:
    with LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max) as st:
        st.save(None, ents(1, 5, 1), None, sync=True)
        st.save(None, ents(5, 11, 1), None, sync=True)
        st.save(None, ents(11, 14, 1), None, sync=True)
        st.save(HardState(term=2), ents(7, 9, 2), None, sync=True)  # replaces 7..13 with 7..8 of term 2
        want = [*ents(1, 7, 1), *ents(7, 9, 2)]
        assert (st.last_index(), st.entries(1, 9, 1 << 20)) == (8, want)
    assert segment_starts(path) == [1, 5, 7]  # 5..6 rewritten as a shorter segment, 11.. gone
    assert reopened(path) == want


def test_truncation_at_a_segment_start_and_across_segments(path: str) -> None:
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        st.save(None, ents(1, 4, 1), None, sync=True)
        st.save(None, ents(4, 7, 1), None, sync=True)
        st.save(None, ents(7, 9, 1), None, sync=True)
        st.save(None, ents(4, 5, 3), None, sync=True)
        assert st.entries(1, 5, 1 << 20) == [*ents(1, 4, 1), *ents(4, 5, 3)]
    assert segment_starts(path) == [1, 4]
    assert reopened(path) == [*ents(1, 4, 1), *ents(4, 5, 3)]


@pytest.mark.parametrize("cache_bytes_max", [0, 1 << 20])
def test_compaction_inside_a_segment_keeps_it_partly(path: str, cache_bytes_max: int) -> None:
    log = ents(1, 5, 1) + ents(5, 11, 2)
    with LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max) as st:
        st.save(None, log[:4], None, sync=True)
        st.save(None, log[4:], None, sync=True)
        st.compact(Snapshot(SnapshotMeta(index=7, term=2, voters=VOTERS), b"app"))
        assert (st.first_index(), st.term(7)) == (8, 2)
        with pytest.raises(CompactedError):
            st.entries(7, 9, 1 << 20)
        assert st.entries(8, 11, 1 << 20) == list(log[7:])
    assert segment_starts(path) == [5]  # 1..4 deleted; 5..10 kept, partly below the snapshot
    assert reopened(path) == list(log[7:])
    with LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max) as st:
        assert (st.first_index(), st.last_index(), st.term(7)) == (8, 10, 2)
        # Truncating right after the snapshot: the partial segment's kept prefix is all compacted: no rewrite.
        st.save(HardState(term=3), ents(8, 9, 3), None, sync=True)
        assert st.entries(8, 9, 1 << 20) == list(ents(8, 9, 3))
        st.save(None, ents(9, 10, 3), None, sync=True)
        st.compact(Snapshot(SnapshotMeta(index=9, term=3, voters=VOTERS)))  # the whole log
        assert (st.first_index(), st.last_index()) == (10, 9)
        st.save(None, ents(10, 12, 3), None, sync=True)
    assert segment_starts(path) == [10]
    assert reopened(path) == list(ents(10, 12, 3))


def test_compaction_at_a_segment_boundary_deletes_whole_segments(path: str) -> None:
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        for lo in (1, 4, 7):
            st.save(None, ents(lo, lo + 3, 1), None, sync=True)
        st.compact(Snapshot(SnapshotMeta(index=6, term=1, voters=VOTERS)))
    assert segment_starts(path) == [7]
    assert reopened(path) == list(ents(7, 10, 1))


def test_installed_snapshot_deletes_every_segment(path: str) -> None:
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        st.save(None, ents(1, 4, 1), None, sync=True)
        st.save(None, ents(4, 6, 1), None, sync=True)
        snap = Snapshot(SnapshotMeta(index=4, term=2, voters=VOTERS), b"s")  # term differs: not our entry 4
        st.save(HardState(term=2), ents(3, 7, 2), snap, sync=True)
        assert (st.first_index(), st.last_index(), st.term(4)) == (5, 6, 2)
    assert segment_starts(path) == [5]
    assert reopened(path) == list(ents(5, 7, 2))


def _reseal(value: bytes, key: bytes, body: bytes) -> bytes:
    return zlib.crc32(key + body).to_bytes(4, "big") + body


def _corruptions() -> list[tuple[str, object]]:
    """Ways to damage the segment of entries 1..3 (the second of two segments starts at 4)."""
    return [
        ("flipped data byte", lambda k, v: v[:-1] + bytes([v[-1] ^ 1])),
        ("flipped header byte", lambda k, v: v[:5] + bytes([v[5] ^ 1]) + v[6:]),
        ("cut short", lambda k, v: v[:-2]),
        ("empty", lambda k, v: b""),
        ("checksum over another key", lambda k, v: _reseal(v, segment_key(9), v[4:])),
        # Well sealed, but lying: entry count, term runs, types, lengths.
        ("count says 4", lambda k, v: _reseal(v, k, (4).to_bytes(4, "big") + v[8:])),
        ("zero term runs", lambda k, v: _reseal(v, k, v[4:8] + (0).to_bytes(4, "big") + v[12:])),
        ("run of 0 entries", lambda k, v: _reseal(v, k, v[4:20] + (0).to_bytes(4, "big") + v[24:])),
        ("unknown type", lambda k, v: _reseal(v, k, v[4:24] + b"\x07" + v[25:])),
        ("lengths overrun", lambda k, v: _reseal(v, k, v[4:27] + (200).to_bytes(4, "little") + v[31:])),
        ("trailing byte", lambda k, v: _reseal(v, k, v[4:] + b"!")),
    ]


@pytest.mark.parametrize(("name", "damage"), _corruptions())
def test_a_corrupt_segment_raises_corruption_error(path: str, name: str, damage: object) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1), ents(1, 4, 1), None, sync=True)
        st.save(None, ents(4, 6, 1), None, sync=True)
    db = plyvel.DB(path)
    try:
        key = segment_key(1)
        db.put(key, damage(key, db.get(key)))  # type: ignore[operator]
    finally:
        db.close()
    with pytest.raises(CorruptionError):
        LevelDBStorage(path, VOTERS)


def test_segments_must_tile_the_log(path: str) -> None:
    """A missing segment (a gap) is refused on open."""
    with LevelDBStorage(path, VOTERS) as st:
        for lo in (1, 3, 5):
            st.save(None, ents(lo, lo + 2, 1), None, sync=True)
    db = plyvel.DB(path)
    try:
        db.delete(segment_key(3))
    finally:
        db.close()
    with pytest.raises(CorruptionError, match="gap"):
        LevelDBStorage(path, VOTERS)


def test_a_segment_wholly_below_the_snapshot_is_dropped_on_open(path: str) -> None:
    """What a crash between write_snapshot and compact_written leaves: harmless garbage, deleted on open."""
    with LevelDBStorage(path, VOTERS) as st:
        for lo in (1, 3, 5):
            st.save(None, ents(lo, lo + 2, 1), None, sync=True)
        old = st._db.get(segment_key(1))
        st.compact(Snapshot(SnapshotMeta(index=4, term=1, voters=VOTERS)))
        st._db.put(segment_key(1), old)  # as if compaction had not deleted it
    with LevelDBStorage(path, VOTERS) as st:
        assert (st.first_index(), st.last_index()) == (5, 6)
        assert st._db.get(segment_key(1)) is None


def test_a_covered_segment_disagreeing_with_the_snapshot_term_is_refused(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 5, 1), None, sync=True)
        st.save(None, ents(5, 7, 1), None, sync=True)
        st.write_snapshot(Snapshot(SnapshotMeta(index=4, term=3, voters=VOTERS)))  # entry 4 has term 1
    with pytest.raises(CorruptionError, match="disagrees with the snapshot's term"):
        LevelDBStorage(path, VOTERS)


def _write_format2_store(path: str, snapshot_index: int, log: tuple[Entry, ...]) -> None:
    """A store as format 2 wrote it: one record per entry under b"e" + u64be(index)."""
    import msgpack

    def seal(key: bytes, payload: object) -> bytes:
        body = msgpack.packb(payload, use_bin_type=True)
        return zlib.crc32(key + body).to_bytes(4, "big") + body

    db = plyvel.DB(path, create_if_missing=True)
    try:
        db.put(b"v", seal(b"v", 2))
        db.put(b"s", seal(b"s", [snapshot_index, 1, list(VOTERS), [], b"app"]))
        db.put(b"h", seal(b"h", [2, "n2", 6]))
        for e in log:
            key = b"e" + e.index.to_bytes(8, "big")
            body = e.term.to_bytes(8, "big") + bytes([int(e.type)]) + e.data
            db.put(key, zlib.crc32(body, zlib.crc32(key)).to_bytes(4, "big") + body)
    finally:
        db.close()


def test_format_2_store_is_migrated_on_open(path: str) -> None:
    log = ents(4, 7, 1) + ents(7, 10, 2)
    _write_format2_store(path, 3, log)
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:
        assert st.initial_state() == (HardState(term=2, vote="n2", commit=6),
                                      SnapshotMeta(index=3, term=1, voters=VOTERS))
        assert st.entries(4, 10, 1 << 20) == list(log)
        assert [st.term(i) for i in range(3, 10)] == [1, 1, 1, 1, 2, 2, 2]
    db = plyvel.DB(path)
    try:
        assert list(db.iterator(prefix=b"e")) == []
        assert db.get(b"v")[4:] == b"\x03"  # msgpack 3
    finally:
        db.close()
    assert segment_starts(path) == [4]
    assert reopened(path) == list(log)


def test_format_2_store_with_a_damaged_record_is_not_migrated(path: str) -> None:
    _write_format2_store(path, 0, ents(1, 4, 1))
    db = plyvel.DB(path)
    try:
        key = b"e" + (2).to_bytes(8, "big")
        value = db.get(key)
        db.put(key, value[:-1] + bytes([value[-1] ^ 1]))
    finally:
        db.close()
    with pytest.raises(CorruptionError):
        LevelDBStorage(path, VOTERS)
    db = plyvel.DB(path)
    try:  # the failed migration wrote nothing: still format 2, every record in place
        assert len(list(db.iterator(prefix=b"e"))) == 3 and list(db.iterator(prefix=b"g")) == []
    finally:
        db.close()


def test_save_in_three_steps_with_the_write_on_another_thread(path: str) -> None:
    """begin_save / write_save (another thread) / end_save: reads in between see the store as before."""
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1), ents(1, 5, 1), None, sync=True)
        pending = st.begin_save(HardState(term=2), ents(3, 7, 2), None, sync=True)
        with pytest.raises(AssertionError, match="one save at a time"):
            st.begin_save(None, ents(5, 6, 1), None, sync=True)
        writer = threading.Thread(target=st.write_save, args=(pending,))
        writer.start()
        assert (st.last_index(), st.term(4), st.initial_state()[0].term) == (4, 1, 1)
        writer.join()
        assert st.entries(1, 5, 1 << 20) == list(ents(1, 5, 1))  # still the old view until end_save
        st.end_save(pending)
        assert (st.last_index(), st.entries(1, 7, 1 << 20)) == (6, [*ents(1, 3, 1), *ents(3, 7, 2)])
    assert reopened(path) == [*ents(1, 3, 1), *ents(3, 7, 2)]


def test_terms_going_backwards_are_refused(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 3, 2), None, sync=True)
        with pytest.raises(AssertionError, match="below its predecessor"):
            st.save(None, ents(3, 4, 1), None, sync=True)
        with pytest.raises(AssertionError, match="must not decrease"):
            st.save(None, (Entry(3, 3), Entry(2, 4)), None, sync=True)
        assert st.last_index() == 2


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 25), cache_bytes_max=st.sampled_from([0, 400, 1 << 20]),
       segment_entries_max=st.sampled_from([1, 2, 3, 16384]))
def test_matches_memory_storage_with_small_segments_and_reopens(seed: int, n: int, cache_bytes_max: int,
                                                                segment_entries_max: int) -> None:
    """The model test of test_leveldb_storage_model, with batches split into tiny segments (so truncation and
    compaction cut through segments of every shape) and the store reopened at random points."""
    rng = random.Random(seed)
    ops = random_ops(rng, n, MemoryStorage(VOTERS))
    model = MemoryStorage(VOTERS)
    with tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(log_segments, "SEGMENT_ENTRIES_MAX", segment_entries_max):
        path = str(Path(tmp) / "raft")
        db = LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max)
        try:
            for op in ops:
                apply(model, op)
                apply(db, op)
                if rng.randrange(3) == 0:
                    db.close()
                    db = LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max)
                assert observe(db) == observe(model)
        finally:
            db.close()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 40), cache_bytes_max=st.sampled_from([170, 400, 1000, 4000]))
def test_the_tail_cache_accounts_for_its_bytes_and_stays_bounded(seed: int, n: int, cache_bytes_max: int) -> None:
    """The cache keeps per-run sizes instead of measuring entries when it trims: they must stay exact."""
    rng = random.Random(seed)
    ops = random_ops(rng, n, MemoryStorage(VOTERS))
    model = MemoryStorage(VOTERS)
    with tempfile.TemporaryDirectory() as tmp:
        db = LevelDBStorage(str(Path(tmp) / "raft"), VOTERS, cache_bytes_max=cache_bytes_max)
        try:
            for op in ops:
                apply(model, op)
                apply(db, op)
                cache = db._cache.entries
                assert db._cache.data_bytes == sum(len(e.data) for e in cache)
                assert [sum(r[0] for r in db._cache.runs), sum(r[1] for r in db._cache.runs)] == \
                    [len(cache), db._cache.data_bytes]
                assert all(k > 0 for k, _ in db._cache.runs)
                assert db._cache.cost() <= cache_bytes_max
                assert db._cache.first + len(cache) == db.last_index() + 1
                if cache:
                    assert cache == model.entries(db._cache.first, db.last_index() + 1, 1 << 30)
        finally:
            db.close()
