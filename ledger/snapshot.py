"""Ledger snapshots: the stream a store exports, its import into a fresh directory, and the directory swap.

The stream (msgpack objects, docs/STORAGE.md "Snapshots"): header `[magic, format, head, genesis, last_block |
None]`, then one `[kind, key, value]` per state entry (kind 0) and tx record (kind 1), then the trailer
`["end", record count, sha256 of every byte before the trailer]`. Block bodies other than the last are not
included; outcomes are, so replays still get their first outcome. The bucket index (`H`, `P`, `R`) and the
application's derived index (ledger/derived_index.py) are not shipped: both are derived, and rebuilt on import,
so a sender cannot hand over an index that disagrees with the state the root vouches for.

An import never touches the live store until the whole snapshot has checked out: it is written into a fresh
LevelDB at `<path>.import` (`write_import`), which is closed and fsynced; then `swap_in` renames the live
directory to `<path>.retired` and the import to `<path>`, fsyncs the parent and removes the retired one.
`settle_import` finishes or undoes a swap that a crash interrupted; the store calls it before every open.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from collections.abc import Iterator
from typing import Any

import msgpack

from consensus.fsync import fsync_dir, fsync_tree
from ledger.buckets import bucket_records
from ledger.derived_index import NO_INDEX, DerivedIndex, encode_prefixes
from ledger.errors import SnapshotError
from ledger.executor import decode_tx_record
from ledger.schema import (
    EMPTY_HEAD,
    FORMAT_KEY,
    GENESIS_KEY,
    HEAD_KEY,
    INDEX_KEY,
    STATE,
    STORE_FORMAT,
    TX,
    Genesis,
    Head,
    decode_block_record,
    decode_genesis,
    decode_head,
    encode_genesis,
    encode_head,
    height_key,
    open_db,
)
from ledger.state_root import HASH_BYTES, RootTree, hashed_key, leaf_hash
from ledger.state_view import KEY_BYTES_MAX, VALUE_BYTES_MAX

SNAPSHOT_MAGIC = "ecert-ledger-snapshot"
SNAPSHOT_FORMAT = 3
"""Written by the export. 2: the head carries a split-bucket state root. 3: the state records leave out the
derived index's keys, and the root is over the rest. Format 1 (same stream, roots without split buckets) is
still imported, its root recomputed, and format 2 as it is, so a store can be rebuilt from a Raft snapshot taken
before the change; both only into a store without a derived index (their roots cover the index keys)."""
_SNAPSHOT_FORMAT_1 = 1
_SNAPSHOT_FORMAT_2 = 2
SNAPSHOT_CHUNK_BYTES = 4 << 20
"""The export's chunk size: bounds what a snapshot being written holds in memory besides LevelDB's own."""
IMPORT_SUFFIX = ".import"
"""A snapshot is imported into a fresh LevelDB at `<path>.import`, then swapped in."""
RETIRED_SUFFIX = ".retired"
"""Where the replaced store goes during the swap, removed right after (or at the next open)."""
IMPORT_BATCH_BYTES = 4 << 20
"""Write batch size while filling the import directory: one batch of the whole state held it again in memory
(+349 MB importing a 161 MB snapshot of 1 M keys)."""

_SNAP_STATE = 0
_SNAP_TX = 1


# --- export ------------------------------------------------------------------------------------------------------


def export_chunks(snap: Any, chunk_bytes: int, unrooted: tuple[bytes, ...] = ()) -> Iterator[bytes]:
    """The stream of the store pinned by the LevelDB snapshot `snap`, as consecutive chunks of about
    `chunk_bytes`, without the state keys under the prefixes `unrooted` (a derived index's); closes `snap` once
    consumed."""
    skip = tuple(STATE + prefix for prefix in unrooted)
    packer = msgpack.Packer(use_bin_type=True)
    digest = hashlib.sha256()
    pieces: list[bytes] = []
    size = 0
    count = 0
    try:
        head_bytes = snap.get(HEAD_KEY) or encode_head(EMPTY_HEAD)
        head = decode_head(head_bytes)
        genesis_bytes = snap.get(GENESIS_KEY)
        last_block = snap.get(height_key(head.height)) if head.height > 0 else None
        pieces.append(packer.pack([SNAPSHOT_MAGIC, SNAPSHOT_FORMAT, head_bytes, genesis_bytes, last_block]))
        size = len(pieces[0])
        for tag, kind in ((STATE, _SNAP_STATE), (TX, _SNAP_TX)):
            with snap.iterator(prefix=tag) as it:
                for key, value in it:
                    if key.startswith(skip):
                        continue
                    piece = packer.pack([kind, key[1:], value])
                    pieces.append(piece)
                    size += len(piece)
                    count += 1
                    if size >= chunk_bytes:
                        chunk = b"".join(pieces)
                        digest.update(chunk)
                        yield chunk
                        pieces.clear()
                        size = 0
    finally:
        snap.close()
    chunk = b"".join(pieces)
    digest.update(chunk)
    yield chunk + packer.pack(["end", count, digest.digest()])


# --- import ------------------------------------------------------------------------------------------------------


def write_import(target: str, data: bytes, genesis_hash: bytes | None, index: DerivedIndex = NO_INDEX) -> None:
    """Check the snapshot `data` (checksum, record count, bounds, its state against its root, its genesis
    against `genesis_hash` if given) and write it as a complete store at `target`, closed and fsynced, with
    `index`'s entries derived from its state. Raises SnapshotError, leaving no `target` behind, if it does not
    check out."""
    try:
        fmt, head, genesis, last_block, records = _parse_header(data)
    except SnapshotError:
        raise
    except Exception as exc:  # msgpack errors, or a require() on a malformed head
        raise SnapshotError(f"malformed snapshot header: {type(exc).__name__}") from None
    if genesis_hash is not None and genesis is not None and genesis.genesis_hash != genesis_hash:
        raise SnapshotError("snapshot is of another chain (genesis hash differs)")
    if fmt != SNAPSHOT_FORMAT and index.prefixes:
        raise SnapshotError(f"snapshot format {fmt} hashes every state key into its root; this store keeps a "
                            "derived index beside it (take a new snapshot with this version)")
    shutil.rmtree(target, ignore_errors=True)
    fresh = open_db(target)
    try:
        writer = _ChunkedWriter(fresh)
        writer.put(FORMAT_KEY, STORE_FORMAT)
        writer.put(INDEX_KEY, encode_prefixes(index))
        leaves = _stage_records(writer, data, records, index)
        leaves.sort()
        for i in range(1, len(leaves)):
            if leaves[i - 1][:HASH_BYTES] == leaves[i][:HASH_BYTES]:
                raise SnapshotError("snapshot repeats a state key")
        hashes = bucket_records(((e[:HASH_BYTES], e[HASH_BYTES:]) for e in leaves), writer.put)
        del leaves
        root = RootTree.from_buckets(hashes).root
        if fmt == _SNAPSHOT_FORMAT_1:
            # Its root is of the tree without split buckets, which this code no longer builds; blocks do
            # not commit to the state root, so the one recomputed here is the root of this state. Integrity
            # rests on the trailer checksum alone for these.
            head = Head(head.height, head.block_hash, root, head.time, head.applied_index)
        elif root != head.state_root:
            raise SnapshotError("snapshot state does not hash to its state root")
        writer.put(HEAD_KEY, encode_head(head))
        if genesis is not None:
            writer.put(GENESIS_KEY, encode_genesis(genesis))
        if last_block is not None:
            writer.put(height_key(head.height), last_block)
        writer.flush()
    except BaseException:
        fresh.close()
        shutil.rmtree(target, ignore_errors=True)
        raise
    fresh.close()
    fsync_tree(target)


def swap_in(path: str, target: str) -> None:
    """Replace the (closed) store directory `path` by `target` (complete and durable)."""
    retired = path + RETIRED_SUFFIX
    shutil.rmtree(retired, ignore_errors=True)
    os.rename(path, retired)
    os.rename(target, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))
    shutil.rmtree(retired, ignore_errors=True)


def settle_import(path: str) -> None:
    """Finish or undo a snapshot import that a crash interrupted: an import directory next to a live store is
    unfinished and removed; one without a live store is complete and renamed into place."""
    target, retired = path + IMPORT_SUFFIX, path + RETIRED_SUFFIX
    if os.path.isdir(target):
        if os.path.isdir(path):
            shutil.rmtree(target)  # unfinished: the live store was never replaced
        else:
            os.rename(target, path)  # complete and durable: the crash fell between the two renames
            fsync_dir(os.path.dirname(os.path.abspath(path)))
    if os.path.isdir(retired):
        shutil.rmtree(retired)


class _ChunkedWriter:
    """`put` into WriteBatches of about IMPORT_BATCH_BYTES each, for filling a directory nobody reads yet."""

    __slots__ = ("_batch", "_bytes", "_db")

    def __init__(self, db: Any) -> None:
        self._db = db
        self._batch = db.write_batch()
        self._bytes = 0

    def put(self, key: bytes, value: bytes) -> None:
        self._batch.put(key, value)
        self._bytes += len(key) + len(value)
        if self._bytes >= IMPORT_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        self._batch.write()
        self._batch = self._db.write_batch()
        self._bytes = 0


def _parse_header(data: bytes) -> tuple[int, Head, Genesis | None, bytes | None, Any]:
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, use_list=True, strict_map_key=True)
    row = unpacker.unpack()
    if (
        type(row) is not list
        or len(row) != 5
        or row[0] != SNAPSHOT_MAGIC
        or type(row[1]) is not int
        or row[1] not in (SNAPSHOT_FORMAT, _SNAPSHOT_FORMAT_2, _SNAPSHOT_FORMAT_1)
    ):
        raise SnapshotError("not a ledger snapshot (bad magic or format)")
    _magic, fmt, head_bytes, genesis_bytes, last_block = row
    if type(head_bytes) is not bytes:
        raise SnapshotError("snapshot head is malformed")
    head = decode_head(head_bytes)
    genesis = decode_genesis(genesis_bytes) if genesis_bytes is not None else None
    if last_block is not None:
        if type(last_block) is not bytes:
            raise SnapshotError("snapshot last block is malformed")
        record = decode_block_record(last_block)
        if record.header.height != head.height or record.hash != head.block_hash:
            raise SnapshotError("snapshot last block does not match its head")
    return fmt, head, genesis, last_block, unpacker


def _stage_records(batch: Any, data: bytes, unpacker: Any, index: DerivedIndex) -> list[bytes]:
    """Put every record of the snapshot into `batch`, and the derived index's entries of its state; returns
    hk||leaf entries for the root check."""
    leaves: list[bytes] = []
    prefixes, derive = index.prefixes, index.entries
    count = 0
    while True:
        offset = unpacker.tell()
        try:
            row = unpacker.unpack()
        except msgpack.OutOfData:
            raise SnapshotError("snapshot is truncated (no trailer)") from None
        except Exception as exc:
            raise SnapshotError(f"malformed snapshot record: {type(exc).__name__}") from None
        if type(row) is not list or len(row) != 3:
            raise SnapshotError("malformed snapshot record")
        kind, key, value = row
        if kind == "end":
            if key != count or value != hashlib.sha256(memoryview(data)[:offset]).digest():
                raise SnapshotError("snapshot checksum or record count does not match")
            if unpacker.tell() != len(data):
                raise SnapshotError("bytes after the snapshot trailer")
            return leaves
        if type(key) is not bytes or type(value) is not bytes:
            raise SnapshotError("snapshot record key and value must be bytes")
        if kind == _SNAP_STATE:
            if not (0 < len(key) <= KEY_BYTES_MAX) or len(value) > VALUE_BYTES_MAX:
                raise SnapshotError("snapshot state key or value out of bounds")
            if key.startswith(prefixes):
                raise SnapshotError("snapshot carries a derived index key")
            batch.put(STATE + key, value)
            leaves.append(hashed_key(key) + leaf_hash(key, value))
            try:
                derived = list(derive(key, value))
            except Exception as exc:  # a value the application cannot decode: the root vouched for it
                raise SnapshotError(f"snapshot state entry {key[:64]!r} does not decode: {type(exc).__name__}"
                                    ) from None
            for index_key, index_value in derived:
                batch.put(STATE + index_key, index_value)
        elif kind == _SNAP_TX:
            try:
                record = decode_tx_record(value)
            except Exception:
                raise SnapshotError("malformed tx record in snapshot") from None
            if record.outcome.tx_id.encode("ascii", "replace") != key:
                raise SnapshotError("snapshot tx record filed under another tx id")
            batch.put(TX + key, value)
        else:
            raise SnapshotError(f"unknown snapshot record kind {kind!r}")
        count += 1
