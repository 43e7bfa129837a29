"""Durable Raft storage on LevelDB (plyvel): the log, the hard state and the latest snapshot.

Key schema (one LevelDB per node, `<data_dir>/raft`):

    b"v"                  format version
    b"h"                  HardState            [term, vote | None, commit]
    b"s"                  latest snapshot      [index, term, voters, learners, data]
    b"e" + u64be(index)   log entry            [term, index, type, data]

Every value is `crc32(key + payload)` (4 bytes, big-endian) followed by the msgpack payload. Folding the key into
the checksum also catches a record that ended up under the wrong key. A record that fails its checksum or does
not decode raises `CorruptionError`: a node must refuse to start rather than apply a damaged log. The whole log
is verified when the store is opened (it is short: the application compacts it), and every read is checked again.

Each `save` is one WriteBatch, written with `sync=True` whenever it carries entries, a snapshot or a term/vote
change, so that nothing the core acknowledges is lost on a crash (Ready contract, consensus/ready.py).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack
import plyvel

from consensus.invariant import require
from consensus.messages import Entry, EntryType, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.storage import CompactedError, CorruptionError, UnavailableError

FORMAT_VERSION = 1
_KEY_VERSION = b"v"
_KEY_HARD_STATE = b"h"
_KEY_SNAPSHOT = b"s"
_ENTRY_PREFIX = b"e"
_CRC = struct.Struct(">I")
_INDEX = struct.Struct(">Q")


def _entry_key(index: int) -> bytes:
    return _ENTRY_PREFIX + _INDEX.pack(index)


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


def _decode_entry(key: bytes, value: bytes) -> Entry:
    rec = _unseal(key, value)
    try:
        term, index, type_, data = rec
        entry = Entry(term=int(term), index=int(index), type=EntryType(type_), data=bytes(data))
    except (TypeError, ValueError) as exc:
        raise CorruptionError(f"record {key!r}: malformed entry") from exc
    if key != _entry_key(entry.index):
        raise CorruptionError(f"record {key!r}: holds entry {entry.index}")
    return entry


def _encode_entry(entry: Entry) -> bytes:
    return _seal(_entry_key(entry.index), [entry.term, entry.index, int(entry.type), entry.data])


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


class LevelDBStorage:
    """`consensus.storage.Storage`, durable. Not thread-safe: one driver owns it."""

    def __init__(self, path: str, bootstrap_voters: tuple[NodeId, ...]) -> None:
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
            if version != FORMAT_VERSION:
                raise CorruptionError(f"unknown storage format version {version!r}")
            raw_snap = self._db.get(_KEY_SNAPSHOT)
            if raw_snap is None:
                raise CorruptionError("snapshot record missing")
            self._snapshot = _decode_snapshot(raw_snap)
        raw_hs = self._db.get(_KEY_HARD_STATE)
        self._hard_state = HardState() if raw_hs is None else _decode_hard_state(raw_hs)
        self._last_index = self._verify_log()

    def _verify_log(self) -> int:
        """Check every entry record; the log must be contiguous right after the snapshot. Returns last index."""
        expected = self._snapshot.meta.index + 1
        prev_term = self._snapshot.meta.term
        for key, value in self._db.iterator(prefix=_ENTRY_PREFIX):
            entry = _decode_entry(key, value)
            if entry.index != expected:
                raise CorruptionError(f"log has a gap: expected entry {expected}, found {entry.index}")
            if entry.term < prev_term:
                raise CorruptionError(f"log term goes backwards at entry {entry.index}")
            prev_term = entry.term
            expected += 1
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

    def snapshot(self) -> Snapshot:
        return self._snapshot

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
        with self._db.write_batch(sync=sync or bool(entries) or snapshot is not None) as wb:
            if snapshot is not None and snapshot.meta.index > snap.meta.index:
                # A snapshot from the leader replaces the whole log (etcd's ApplySnapshot); an older one than
                # ours has nothing to add (as in MemoryStorage).
                for index in range(snap.meta.index + 1, last + 1):
                    wb.delete(_entry_key(index))
                snap = snapshot
                last = snap.meta.index
                wb.put(_KEY_SNAPSHOT, _encode_snapshot(snap))
            if entries:
                # Entries already covered by the snapshot are dropped; the rest must connect to the log.
                entries = tuple(e for e in entries if e.index > snap.meta.index)
            if entries:
                first = entries[0].index
                require(first <= last + 1, f"append at {first} leaves a gap after last index {last}")
                for i, e in enumerate(entries):
                    require(e.index == first + i, "appended entries must be contiguous")
                for index in range(entries[-1].index + 1, last + 1):
                    wb.delete(_entry_key(index))
                for e in entries:
                    wb.put(_entry_key(e.index), _encode_entry(e))
                last = entries[-1].index
            if hard_state is not None:
                wb.put(_KEY_HARD_STATE, _seal(_KEY_HARD_STATE, [hard_state.term, hard_state.vote,
                                                                 hard_state.commit]))
        self._snapshot = snap
        self._last_index = last
        if hard_state is not None:
            self._hard_state = hard_state

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
