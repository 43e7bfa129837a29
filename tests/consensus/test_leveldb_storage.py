"""LevelDBStorage: the durable Raft log, hard state and snapshot (real LevelDB in tmp dirs, real kill -9)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import msgpack
import plyvel
import pytest

from consensus.leveldb_storage import LevelDBStorage
from consensus.log_cache import CACHE_ENTRY_OVERHEAD_BYTES
from consensus.log_records import encode_snapshot_record, segment_key
from consensus.messages import Entry, EntryType, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.snapshot_files import MappedSnapshotData, write_snapshot_file
from consensus.storage import CompactedError, CorruptionError, UnavailableError

VOTERS = ("n1", "n2", "n3")


def ents(lo: int, hi: int, term: int) -> tuple[Entry, ...]:
    return tuple(Entry(term=term, index=i, data=f"e{i}t{term}".encode()) for i in range(lo, hi))


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "raft")


def test_fresh_store_reports_bootstrap_configuration(path: str) -> None:
    with LevelDBStorage(path, ("n3", "n1", "n2")) as st:
        hs, meta = st.initial_state()
        assert hs == HardState()
        assert meta == SnapshotMeta(index=0, term=0, voters=VOTERS)
        assert (st.first_index(), st.last_index(), st.term(0)) == (1, 0, 0)
        with pytest.raises(UnavailableError):
            st.term(1)


def test_round_trip_and_reopen(path: str) -> None:
    conf = Entry(term=2, index=4, type=EntryType.CONF_CHANGE, data=b"\x01n4")
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, vote="n1", commit=0), ents(1, 4, 1), None, sync=True)
        st.save(HardState(term=2, vote="n2", commit=3), (conf,), None, sync=True)
        assert st.entries(1, 5, 1 << 20) == [*ents(1, 4, 1), conf]
    with LevelDBStorage(path, ("other",)) as st:
        hs, meta = st.initial_state()
        assert hs == HardState(term=2, vote="n2", commit=3)
        assert meta.voters == VOTERS  # bootstrap voters only apply to a fresh store
        assert st.entries(1, 5, 1 << 20) == [*ents(1, 4, 1), conf]
        assert [st.term(i) for i in range(0, 5)] == [0, 1, 1, 1, 2]


def test_entries_respects_max_bytes_but_returns_at_least_one(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 11, 1), None, sync=True)  # each data is 4-5 bytes
        assert len(st.entries(1, 11, 0)) == 1
        assert [e.index for e in st.entries(1, 11, 11)] == [1, 2]
        assert len(st.entries(3, 11, 1 << 20)) == 8
        with pytest.raises(UnavailableError):
            st.entries(5, 12, 1 << 20)


def test_conflicting_suffix_is_truncated(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, vote="n1"), ents(1, 8, 1), None, sync=True)
        st.save(HardState(term=2, vote="n2"), ents(5, 7, 2), None, sync=True)
        assert st.last_index() == 6
        assert [(e.index, e.term) for e in st.entries(1, 7, 1 << 20)] == [
            (1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    with LevelDBStorage(path, VOTERS) as st:  # entry 7 (term 1) is gone from disk too
        assert st.last_index() == 6
        with pytest.raises(UnavailableError):
            st.term(7)


def test_compaction_drops_prefix_and_keeps_boundary_term(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=3, commit=10), ents(1, 6, 1) + ents(6, 11, 3), None, sync=True)
        snap = Snapshot(SnapshotMeta(index=7, term=3, voters=VOTERS), data=b"app@7")
        st.compact(snap)
        assert (st.first_index(), st.last_index(), st.term(7)) == (8, 10, 3)
        with pytest.raises(CompactedError):
            st.term(6)
        with pytest.raises(CompactedError):
            st.entries(7, 9, 1 << 20)
        st.compact(Snapshot(SnapshotMeta(index=5, term=1, voters=VOTERS)))  # older: ignored
        assert st.snapshot() == snap
        with pytest.raises(UnavailableError):
            st.compact(Snapshot(SnapshotMeta(index=11, term=3, voters=VOTERS)))
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == snap
        assert st.initial_state()[1] == snap.meta
        assert [e.index for e in st.entries(8, 11, 1 << 20)] == [8, 9, 10]
    db = plyvel.DB(path)
    try:  # the one segment (entries 1..10) stays, partly covered by the snapshot
        assert list(db.iterator(prefix=b"g", include_value=False)) == [segment_key(1)]
    finally:
        db.close()


def test_received_snapshot_replaces_the_log_and_entries_follow_it(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1), ents(1, 4, 1), None, sync=True)
        snap = Snapshot(SnapshotMeta(index=20, term=4, voters=("n1", "n2", "n3", "n4"), learners=("n5",)),
                        data=b"state")
        st.save(HardState(term=4, commit=20), ents(18, 23, 4), snap, sync=True)
        assert (st.first_index(), st.last_index()) == (21, 22)
        assert st.term(20) == 4
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == snap
        assert (st.first_index(), st.last_index()) == (21, 22)
        assert st.initial_state()[0] == HardState(term=4, commit=20)


def test_snapshot_data_is_read_back_not_kept_in_memory(path: str) -> None:
    """A snapshot's data is the whole state (hundreds of MB in a long run): the store keeps only its metadata
    in memory and reads the data back when asked (the soak showed RSS tracking the state size)."""
    big = os.urandom(1 << 20)
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, commit=5), ents(1, 6, 1), None, sync=True)
        snap = Snapshot(SnapshotMeta(index=5, term=1, voters=VOTERS), data=big)
        st.compact(snap)
        assert st._snapshot.data == b""  # in memory: metadata only
        assert st.snapshot() == snap
        received = Snapshot(SnapshotMeta(index=9, term=2, voters=VOTERS), data=big[::-1])
        st.save(HardState(term=2, commit=9), (), received, sync=True)
        assert st._snapshot.data == b""
        assert st.snapshot() == received
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == received
        assert isinstance(st.snapshot().data, MappedSnapshotData)  # mapped, not read
    _flip_byte(path, b"s", 10)  # a damaged record is refused on open
    with pytest.raises(CorruptionError):
        LevelDBStorage(path, VOTERS)


def test_snapshot_written_off_the_driver_then_compacted_and_a_crash_in_between(path: str) -> None:
    """The node writes a large snapshot's record on a worker thread, then drops the covered log on its loop."""
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, commit=8), ents(1, 5, 1), None, sync=True)
        st.save(HardState(term=1, commit=8), ents(5, 9, 1), None, sync=True)
        first = Snapshot(SnapshotMeta(index=4, term=1, voters=VOTERS), data=b"state@4")
        st.write_snapshot(first)
        assert st.first_index() == 1  # nothing dropped yet
        assert st.snapshot() == first  # a newer record than the compacted one is as good to ship
        st.compact_written(first.meta)
        assert (st.first_index(), st.last_index(), st.snapshot()) == (5, 8, first)
        second = Snapshot(SnapshotMeta(index=8, term=1, voters=VOTERS), data=b"state@8")
        st.write_snapshot(second)  # ... and the process dies before compact_written
    with LevelDBStorage(path, VOTERS) as st:  # the covered segment is garbage, dropped on open
        assert (st.first_index(), st.last_index(), st.snapshot()) == (9, 8, second)
        st.save(HardState(term=2, commit=9), ents(9, 10, 2), None, sync=True)
    with LevelDBStorage(path, VOTERS) as st:
        assert [e.index for e in st.entries(9, 10, 1 << 20)] == [9]
    db = plyvel.DB(path)
    try:
        assert list(db.iterator(prefix=b"g", include_value=False)) == [segment_key(9)]
    finally:
        db.close()


def _snapshot_files(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path + ".snapshots"))
    except FileNotFoundError:
        return []


def test_a_snapshot_written_to_its_file_reads_back_and_old_files_go(path: str) -> None:
    chunks = [os.urandom(1000), b"", os.urandom(7)]
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, commit=9), ents(1, 10, 1), None, sync=True)
        meta4 = SnapshotMeta(index=4, term=1, voters=VOTERS)
        assert st.write_snapshot_chunks(meta4, iter(chunks)) == 1007
        st.compact_written(meta4)
        assert st.snapshot() == Snapshot(meta4, b"".join(chunks))
        meta8 = SnapshotMeta(index=8, term=1, voters=VOTERS)
        st.write_snapshot_chunks(meta8, [b"a", b"b"])
        st.compact_written(meta8)  # the file of the snapshot at 4 is removed
        assert _snapshot_files(path) == [f"{8:020d}.snap"]
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == Snapshot(meta8, b"ab")
    # What a crash mid-write leaves: a partial file, a newer file without its record. Open removes both.
    for name in (f"{9:020d}.snap.partial", f"{10:020d}.snap"):
        with open(os.path.join(path + ".snapshots", name), "wb") as f:
            f.write(b"junk")
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == Snapshot(meta8, b"ab")
        assert _snapshot_files(path) == [f"{8:020d}.snap"]
        # A received snapshot goes to its own file and replaces ours.
        received = Snapshot(SnapshotMeta(index=20, term=2, voters=VOTERS), data=b"theirs")
        st.save(HardState(term=2, commit=20), (), received, sync=True)
        assert st.snapshot() == received
        assert _snapshot_files(path) == [f"{20:020d}.snap"]
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == received
        # An empty received snapshot is a file of 0 bytes.
        empty = Snapshot(SnapshotMeta(index=30, term=3, voters=VOTERS))
        st.save(HardState(term=3, commit=30), (), empty, sync=True)
        assert st.snapshot() == empty and _snapshot_files(path) == [f"{30:020d}.snap"]
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == empty and len(st.snapshot().data) == 0


def test_a_crash_between_a_received_snapshot_file_and_its_record_leaves_the_old_snapshot(path: str) -> None:
    """write_save writes the file first and the record with the batch: if the process dies in between, the old
    record still holds, and open removes the orphaned file."""
    meta8 = SnapshotMeta(index=8, term=1, voters=VOTERS)
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, commit=9), ents(1, 10, 1), None, sync=True)
        st.write_snapshot_chunks(meta8, [b"ours"])
        st.compact_written(meta8)
        # write_save's first step for a snapshot received at 20; then the process dies before the batch.
        write_snapshot_file(path + ".snapshots", os.path.join(path + ".snapshots", f"{20:020d}.snap"), [b"theirs"])
        assert _snapshot_files(path) == [f"{8:020d}.snap", f"{20:020d}.snap"]
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == Snapshot(meta8, b"ours")
        assert (st.first_index(), st.last_index()) == (9, 9)
        assert _snapshot_files(path) == [f"{8:020d}.snap"]


def test_a_received_snapshot_stored_inline_by_an_older_build_still_reads(path: str) -> None:
    received = Snapshot(SnapshotMeta(index=20, term=2, voters=VOTERS), data=b"theirs")
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=2, commit=20), (), None, sync=True)
        st._db.put(b"s", encode_snapshot_record(received), sync=True)  # the record as it was written before
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot() == received and st.first_index() == 21


def test_memory_bytes_reports_the_tail_cache_and_leveldb(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        empty = st.memory_bytes()
        st.save(HardState(term=1, commit=5), ents(1, 6, 1), None, sync=True)
        grown = st.memory_bytes()
    assert set(grown) == {"raft_log_cache", "raft_leveldb"}
    assert empty["raft_log_cache"] == 0 and grown["raft_log_cache"] >= 5 * CACHE_ENTRY_OVERHEAD_BYTES
    assert grown["raft_leveldb"] > 0


def test_a_damaged_or_missing_snapshot_file_is_detected(path: str) -> None:
    meta = SnapshotMeta(index=3, term=1, voters=VOTERS)
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, commit=5), ents(1, 6, 1), None, sync=True)
        st.write_snapshot_chunks(meta, [b"hello", b"world"])
        st.compact_written(meta)
        name = os.path.join(path + ".snapshots", f"{3:020d}.snap")
        with open(name, "r+b") as f:
            f.write(b"J")
    # Checked once, at open (not each time a leader starts shipping it: the importing store checks its own
    # checksum and state root end to end).
    with pytest.raises(CorruptionError, match="checksum"):
        LevelDBStorage(path, VOTERS)
    with open(name, "r+b") as f:
        f.write(b"h")
    with LevelDBStorage(path, VOTERS) as st:
        assert st.snapshot().data == b"helloworld"
        os.unlink(name)
        with pytest.raises(CorruptionError, match="unreadable"):
            st.snapshot()
        with open(name, "wb") as f:
            f.write(b"hello")
        with pytest.raises(CorruptionError, match="size"):
            st.snapshot()
    with pytest.raises(CorruptionError, match="checksum"):
        LevelDBStorage(path, VOTERS)


def test_append_with_a_gap_is_refused(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 3, 1), None, sync=True)
        with pytest.raises(AssertionError, match="gap"):
            st.save(None, ents(5, 6, 1), None, sync=True)
        assert st.last_index() == 2


def _flip_byte(path: str, key: bytes, at: int) -> None:
    db = plyvel.DB(path)
    try:
        value = bytearray(db.get(key))
        value[at] ^= 0x40
        db.put(key, bytes(value))
    finally:
        db.close()


@pytest.mark.parametrize("key", [segment_key(1), segment_key(3), b"h", b"s"])
def test_corrupted_record_is_detected_on_open(path: str, key: bytes) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1, vote="n1", commit=2), ents(1, 3, 1), None, sync=True)
        st.save(None, ents(3, 5, 1), None, sync=True)
    _flip_byte(path, key, -1)
    with pytest.raises(CorruptionError):
        LevelDBStorage(path, VOTERS)


def test_corruption_after_open_is_detected_on_read(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 3, 1), None, sync=True)
        st.save(None, ents(3, 4, 1), None, sync=True)  # a second segment, holding entry 3
    st = LevelDBStorage(path, VOTERS, cache_bytes_max=0)  # every read goes to LevelDB
    try:
        # Damage the record underneath the open store (another handle is not allowed by LevelDB's lock,
        # so go through the store's own handle).
        raw = bytearray(st._db.get(segment_key(3)))
        raw[5] ^= 0x01
        st._db.put(segment_key(3), bytes(raw))
        with pytest.raises(CorruptionError):
            st.entries(1, 4, 1 << 20)
        with pytest.raises(CorruptionError):
            st.term(3)
        assert st.term(2) == 1
    finally:
        st.close()


def test_record_moved_under_another_key_is_detected(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 3, 1), None, sync=True)
        st.save(None, ents(3, 5, 1), None, sync=True)
    db = plyvel.DB(path)
    try:  # a well-formed segment of two entries, under the key of the other one
        db.put(segment_key(1), db.get(segment_key(3)))
    finally:
        db.close()
    with pytest.raises(CorruptionError):
        LevelDBStorage(path, VOTERS)


_WRITER = textwrap.dedent("""
    import sys
    from consensus.leveldb_storage import LevelDBStorage
    from consensus.messages import Entry
    from consensus.ready import HardState
    st = LevelDBStorage(sys.argv[1], ("n1", "n2", "n3"))
    i = st.last_index()
    print("ready", i, flush=True)
    while True:
        i += 1
        term = i // 7 + 1
        st.save(HardState(term=term, vote="n2", commit=i - 1),
                (Entry(term=term, index=i, data=b"x" * (i % 300)),), None, sync=True)
        print(i, flush=True)
""")


@pytest.mark.slow
def test_kill_minus_9_keeps_every_acknowledged_entry(path: str) -> None:
    """A writer acknowledges each save on stdout; SIGKILL at a random moment; reopen holds every ack."""
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    acked_total = 0
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, path], stdout=subprocess.PIPE, text=True,
                                cwd=Path(__file__).resolve().parents[2])
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().split()
            assert first[0] == "ready" and int(first[1]) >= acked_total
            acked = int(proc.stdout.readline())  # writing has begun (the machine may be busy)
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            for line in proc.stdout:
                acked = int(line)
        finally:
            proc.kill()
            proc.wait()
        assert acked > acked_total, "the writer acknowledged nothing before it was killed"
        with LevelDBStorage(path, VOTERS) as st:
            hs, _ = st.initial_state()
            assert st.last_index() >= acked
            assert hs.term >= acked // 7 + 1 and hs.commit >= acked - 1 and hs.vote == "n2"
            got = st.entries(1, acked + 1, 1 << 30)
            assert [e.index for e in got] == list(range(1, acked + 1))
            assert all(e.term == e.index // 7 + 1 and e.data == b"x" * (e.index % 300) for e in got)
        acked_total = acked


# -- the in-memory tail cache ---------------------------------------------------------------------------------


def _erase_entries_underneath(st: LevelDBStorage, lo: int, hi: int) -> None:
    """Delete the segments holding entries lo..hi-1 behind the store's back: a read that still succeeds was
    served from the cache."""
    starts = st._segments
    for first, end in zip(starts, [*starts[1:], st.last_index() + 1], strict=True):
        if first < hi and end > lo:
            st._db.delete(segment_key(first))


def test_cache_serves_the_tail_without_touching_leveldb(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1), ents(1, 11, 1), None, sync=True)
        _erase_entries_underneath(st, 1, 11)
        assert st.entries(1, 11, 1 << 20) == list(ents(1, 11, 1))
        assert [st.term(i) for i in range(1, 11)] == [1] * 10
        assert [e.index for e in st.entries(3, 11, 11)] == [3, 4]  # size limit: stops before exceeding
        assert len(st.entries(3, 11, 0)) == 1
    with LevelDBStorage(path + "-uncached", VOTERS, cache_bytes_max=0) as st:
        st.save(None, ents(1, 3, 1), None, sync=True)
        _erase_entries_underneath(st, 1, 3)
        with pytest.raises(CorruptionError):
            st.entries(1, 3, 1 << 20)


def test_cache_is_bounded_and_reads_fall_back_to_leveldb(path: str) -> None:
    cost = CACHE_ENTRY_OVERHEAD_BYTES + 5  # data "e{i}t1" is 4-5 bytes
    with LevelDBStorage(path, VOTERS, cache_bytes_max=10 * cost) as st:
        st.save(None, ents(1, 101, 1), None, sync=True)
        assert 0 < len(st._cache) <= 10 and st._cache.cost() <= 10 * cost
        assert st._cache.first + len(st._cache) == 101  # always the tail
        assert st.entries(1, 101, 1 << 20) == list(ents(1, 101, 1))  # LevelDB part, then the cached part
        assert [e.index for e in st.entries(85, 101, 1 << 20)] == list(range(85, 101))
        assert st.term(1) == st.term(100) == 1


def test_cache_follows_truncation_compaction_and_snapshots(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=1), ents(1, 9, 1), None, sync=True)
        st.save(HardState(term=2), ents(5, 7, 2), None, sync=True)  # a new leader's conflicting suffix
        assert (st._cache.first, len(st._cache)) == (1, 6)
        assert [st.term(i) for i in range(1, 7)] == [1, 1, 1, 1, 2, 2]
        with pytest.raises(UnavailableError):
            st.term(7)
        st.compact(Snapshot(SnapshotMeta(index=4, term=1, voters=VOTERS)))
        assert st._cache.first == 5 and st.entries(5, 7, 1 << 20) == list(ents(5, 7, 2))
        with pytest.raises(CompactedError):
            st.entries(4, 7, 1 << 20)
        st.save(HardState(term=3), (), Snapshot(SnapshotMeta(index=30, term=3, voters=VOTERS)), sync=True)
        assert (st._cache.first, st._cache.entries, st.last_index()) == (31, [], 30)
        assert st.term(30) == 3
        st.save(None, ents(31, 33, 3), None, sync=True)
        _erase_entries_underneath(st, 31, 33)
        assert st.entries(31, 33, 1 << 20) == list(ents(31, 33, 3))


def test_reopen_fills_the_cache_with_the_verified_tail(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(HardState(term=2), ents(1, 6, 2), None, sync=True)
    with LevelDBStorage(path, VOTERS) as st:
        assert st._cache.entries == list(ents(1, 6, 2)) and st._cache.first == 1


def test_a_refused_save_writes_nothing(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, ents(1, 4, 1), None, sync=True)
        snap = Snapshot(SnapshotMeta(index=9, term=2, voters=VOTERS))
        with pytest.raises(AssertionError, match="contiguous"):
            st.save(HardState(term=2), (Entry(2, 10), Entry(2, 12)), snap, sync=True)
        assert (st.last_index(), st.snapshot().meta.index, st.initial_state()[0]) == (3, 0, HardState())
    with LevelDBStorage(path, VOTERS) as st:
        assert (st.last_index(), st.snapshot().meta.index) == (3, 0)


# -- record format ------------------------------------------------------------------------------------------


def test_segment_record_is_checksum_and_columns(path: str) -> None:
    with LevelDBStorage(path, VOTERS) as st:
        st.save(None, (Entry(term=7, index=1, type=EntryType.CONF_CHANGE, data=b"abc"), Entry(term=7, index=2),
                       Entry(term=8, index=3, data=b"de")), None, sync=True)
        raw = st._db.get(segment_key(1))
    assert raw[4:] == (
        (3).to_bytes(4, "big") + (2).to_bytes(4, "big")                    # 3 entries, 2 term runs
        + (7).to_bytes(8, "big") + (2).to_bytes(4, "big") + (8).to_bytes(8, "big") + (1).to_bytes(4, "big")
        + b"\x01\x00\x00"                                                   # types
        + (3).to_bytes(4, "little") + (0).to_bytes(4, "little") + (2).to_bytes(4, "little")  # data lengths
        + b"abcde")
    assert int.from_bytes(raw[:4], "big") == zlib.crc32(segment_key(1) + raw[4:])


def _seal_v1(key: bytes, payload: object) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return zlib.crc32(key + body).to_bytes(4, "big") + body


def test_format_1_store_is_migrated_on_open(path: str) -> None:
    db = plyvel.DB(path, create_if_missing=True)
    try:
        db.put(b"v", _seal_v1(b"v", 1))
        db.put(b"s", _seal_v1(b"s", [0, 0, list(VOTERS), [], b""]))
        db.put(b"h", _seal_v1(b"h", [2, "n1", 2]))
        for e in ents(1, 4, 2):
            key = b"e" + e.index.to_bytes(8, "big")
            db.put(key, _seal_v1(key, [e.term, e.index, int(e.type), e.data]))
    finally:
        db.close()
    with LevelDBStorage(path, VOTERS) as st:
        assert st.initial_state()[0] == HardState(term=2, vote="n1", commit=2)
        assert st.entries(1, 4, 1 << 20) == list(ents(1, 4, 2))
    with LevelDBStorage(path, VOTERS, cache_bytes_max=0) as st:  # now format 3 on disk
        assert st.entries(1, 4, 1 << 20) == list(ents(1, 4, 2))
        assert list(st._db.iterator(prefix=b"e")) == []
        assert list(st._db.iterator(prefix=b"g", include_value=False)) == [segment_key(1)]
