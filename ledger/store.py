"""StateStore: the chain's state, blocks and tx outcomes in one LevelDB (plyvel), advanced one block per batch.

LevelDB key schema (one byte tag, then the rest; full description in docs/STORAGE.md):

    M head            -> msgpack [height, block_hash, state_root, time, applied_index]
    M genesis         -> msgpack [genesis_hash, chain_id, genesis_time]
    M format          -> b"3"  (b"2" is migrated on open; b"1": roots without split buckets, refused)
    S <state key>     -> state value (the executor's keys, verbatim)
    H <sha256(key)>   -> leaf hash of that entry, if its state-root bucket (the first 2 bytes) is unsplit
    P <sha256(key)>   -> the same, if its bucket is split (over 16 entries; ledger/state_root.py)
    R <bucket:2 BE>   -> a split bucket's hash, u32be entry count and 16 sub-bucket hashes
    T <tx_id ascii>   -> msgpack tx record [height, position, tx_id, status, result, error_code, error_message]
    B <height:8 BE>   -> msgpack block record [header row, [raw tx, ...], [tx_id, ...]]

`apply_block` validates the chaining, runs every tx through the executor over one `OverlayView` (a savepoint per
tx, rolled back if rejected), then writes ONE WriteBatch with the state changes, their root index entries, every
new tx record, the block record and the head. The tree above the buckets, and every unsplit bucket's entries,
live in memory too (`RootTree`, 2 MB; entries at most 64 MB of hashes, as an unsplit bucket holds at most 16,
kept as two concatenated byte strings per bucket: ~80 MB with Python's overhead), loaded at
open from the `H` and `R` records and checked against the head's root. LevelDB applies a batch atomically (its
log record is all or nothing), so after a crash the store is at a whole block: the previous one or this one.

Heights are contiguous from 1 (block records of a store restored from a snapshot start at the snapshot's head).
Reads (`get`, `scan`, `tx_outcome`, `block`, `blocks`) see committed blocks only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgpack
import plyvel

from consensus.fsync import fsync_dir, fsync_tree
from consensus.invariant import require
from ledger.block import (
    HASH_BYTES,
    Block,
    BlockHeader,
    block_hash,
    decode_header_row,
    header_problem,
    header_row,
    header_to_json,
    txs_problem,
)
from ledger.errors import (
    BlockDecodeError,
    GenesisMismatchError,
    SnapshotError,
    StaleBlockError,
    StoreClosedError,
)
from ledger.executor import (
    STATUS_REJECTED,
    BlockContext,
    TxExecutor,
    TxOutcome,
    TxRecord,
    decode_tx_record,
    encode_tx_record,
)
from ledger.merkle import tx_root
from ledger.state_root import (
    BUCKET_COUNT,
    EMPTY_ROOT,
    FANOUT,
    SPLIT_ABOVE,
    RootTree,
    bucket_hash,
    decode_summary,
    encode_summary,
    hashed_key,
    leaf_hash,
    split_hash,
    state_root_of,
    sub_buckets,
)
from ledger.state_view import (
    KEY_BYTES_MAX,
    VALUE_BYTES_MAX,
    OverlayView,
    check_key,
    check_value,
    prefix_end,
)

STORE_FORMAT = b"3"
"""Layout version. 3: a leaf entry per key (`H`, or `P` in a split bucket) and a summary `R` per split bucket;
the tree above the buckets in memory only. 2 (same roots; `H` for every key and stored inner nodes `N`) is
migrated on open, in one batch, checked against the head's root. 1 (roots without split buckets) is refused and must be rebuilt (Raft log or snapshot, docs/STORAGE.md)."""
_STORE_FORMAT_2 = b"2"
WRITE_BUFFER_BYTES = 16 << 20
"""LevelDB memtable size (twice this in memory while one is flushed)."""
BUCKET_OVERHEAD_BYTES = 250
"""CPython's cost of one unsplit bucket's in-memory entry beyond its hashes: the dict slot, the 2-byte key, the
tuple and the two bytes objects' headers (measured: ~245 bytes with `sys.getsizeof`)."""
IMPORT_SUFFIX = ".import"
"""A snapshot is imported into a fresh LevelDB at `<path>.import`, then swapped in (see `import_snapshot`)."""
RETIRED_SUFFIX = ".retired"
"""Where the replaced store goes during the swap, removed right after (or at the next open)."""
IMPORT_BATCH_BYTES = 4 << 20
"""Write batch size while filling the import directory: one batch of the whole state held it again in memory
(+349 MB importing a 161 MB snapshot of 1 M keys)."""
BLOCK_CACHE_BYTES = 32 << 20
"""LevelDB block cache (default 8 MB)."""
SNAPSHOT_MAGIC = "ecert-ledger-snapshot"
SNAPSHOT_FORMAT = 2
"""Written by `export_snapshot`. 2: the head carries a split-bucket state root. Format 1 (same stream) is still
imported, its root recomputed, so a store can be rebuilt from a Raft snapshot taken before the change."""
SNAPSHOT_CHUNK_BYTES = 4 << 20
"""`snapshot_stream`'s chunk size: bounds what a snapshot being written holds in memory besides LevelDB's own."""
_SNAPSHOT_FORMAT_1 = 1
TX_ID_CHARS_MAX = 128
BLOCKS_PAGE_MAX = 1000
"""Most block records one `blocks()` call returns."""
GENESIS_WRITES_MAX = 1 << 20

_META = b"M"
_STATE = b"S"
_ENTRY = b"H"
_SPLIT_ENTRY = b"P"
_SUMMARY = b"R"
_NODE_2 = b"N"
_TX = b"T"
_BLOCK = b"B"
_HEAD_KEY = _META + b"head"
_GENESIS_KEY = _META + b"genesis"
_FORMAT_KEY = _META + b"format"

_SNAP_STATE = 0
_SNAP_TX = 1


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    block_hash: bytes
    """Hash of the block at `height`; the genesis hash at height 0; b"" before genesis."""
    state_root: bytes
    time: int
    """Time of the block at `height` (the genesis time at height 0): the next block's time may not be less."""
    applied_index: int
    """Raft index of the last entry the node applied into this store (0 if the node never said)."""


@dataclass(frozen=True, slots=True)
class Genesis:
    genesis_hash: bytes
    chain_id: str
    genesis_time: int


@dataclass(frozen=True, slots=True)
class BlockRecord:
    header: BlockHeader
    hash: bytes
    tx_ids: tuple[str, ...]
    txs: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """CONTRACT §4 /v1/blocks/{height}: header fields, `hash`, and the `tx_ids`."""
        answer = header_to_json(self.header)
        answer["tx_ids"] = list(self.tx_ids)
        return answer


_EMPTY_HEAD = Head(0, b"", EMPTY_ROOT, 0, 0)


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True)


def _encode_head(head: Head) -> bytes:
    return _pack([head.height, head.block_hash, head.state_root, head.time, head.applied_index])


def _decode_head(data: bytes) -> Head:
    row = _unpack(data)
    require(type(row) is list and len(row) == 5, "stored head is malformed")
    head = Head(*row)
    require(type(head.height) is int and head.height >= 0, "stored head height is malformed")
    require(type(head.state_root) is bytes and len(head.state_root) == HASH_BYTES, "stored root malformed")
    require(type(head.time) is int and type(head.applied_index) is int, "stored head ints malformed")
    return head


def _encode_genesis(g: Genesis) -> bytes:
    return _pack([g.genesis_hash, g.chain_id, g.genesis_time])


def _decode_genesis(data: bytes) -> Genesis:
    row = _unpack(data)
    require(type(row) is list and len(row) == 3, "stored genesis is malformed")
    g = Genesis(*row)
    require(type(g.genesis_hash) is bytes and len(g.genesis_hash) == HASH_BYTES, "genesis hash malformed")
    require(type(g.chain_id) is str and type(g.genesis_time) is int, "stored genesis malformed")
    return g


def _height_key(height: int) -> bytes:
    return _BLOCK + height.to_bytes(8, "big")


def _encode_block_record(block: Block, tx_ids: list[str]) -> bytes:
    return _pack([header_row(block.header), list(block.txs), tx_ids])


def _decode_block_record(data: bytes) -> BlockRecord:
    row = _unpack(data)
    require(type(row) is list and len(row) == 3, "stored block record is malformed")
    try:
        header = decode_header_row(row[0])
    except BlockDecodeError as exc:
        require(False, f"stored block header is malformed: {exc}")
        raise
    return BlockRecord(header, block_hash(header), tuple(row[2]), tuple(row[1]))


class CommittedView:
    """Read-only StateView over the committed state (the overlay's base during a block, and what queries
    read). State changes only through blocks, so `put`/`delete` here are bugs and raise."""

    __slots__ = ("_db",)

    def __init__(self, db: Any) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(_STATE + key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        require(False, "the committed state is read-only: write through a block")

    def delete(self, key: bytes) -> None:
        require(False, "the committed state is read-only: write through a block")

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = _STATE + prefix
        end = prefix_end(start)
        it = self._db.iterator(start=start, stop=end) if end is not None else self._db.iterator(start=start)
        with it:
            for key, value in it:
                yield key[1:], value


class _BlockReadView:
    """The overlay's base while one block executes: reads the committed state and remembers what it read.

    The committed state cannot change during the block (one applier), so the memo is exact; at commit the store
    uses it to drop no-op writes without a second LevelDB read per changed key."""

    __slots__ = ("_db", "read")

    def __init__(self, db: Any) -> None:
        self._db = db
        self.read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        read = self.read
        if key in read:
            return read[key]
        value: bytes | None = self._db.get(_STATE + key)
        read[key] = value
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return CommittedView(self._db).scan(prefix)


_UNREAD = object()


class StateStore:
    """The ledger over one LevelDB directory. Not thread-safe for writers: one applier at a time."""

    def __init__(self, db: Any, *, paranoid: bool, sync: bool) -> None:
        self._db: Any = db
        self._path: str | None = None
        """The LevelDB directory, when opened by `open` (needed to import a snapshot)."""
        self._paranoid = paranoid
        self._sync = sync
        self._view = CommittedView(db)
        self._head = _EMPTY_HEAD
        self._genesis: Genesis | None = None
        # Derived from the `H` and `R` records at open: the state-root tree, each bucket's entry count (which
        # says where its entries are: `H`, or `P` when split), and every unsplit bucket's entries by 2-byte
        # bucket prefix, as (its hks, its leaf hashes), each concatenated in hk order: rehashing a touched
        # bucket reads nothing and hashes `leaves` as they are. Changed while a batch holding the
        # same writes is staged: if anything fails before it is written, they are loaded again.
        self._tree = RootTree()
        self._counts: list[int] = [0] * BUCKET_COUNT
        self._leaves: dict[bytes, tuple[bytes, bytes]] = {}
        self._load_meta()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, paranoid: bool = False, sync: bool = True) -> StateStore:
        """Open (creating if missing). `paranoid` recomputes the state root from scratch after every block and
        requires it to equal the incremental one (debug: O(state) per block). `sync` fsyncs every batch.
        Finishes or undoes a snapshot import a crash interrupted."""
        path = os.fspath(path)
        _settle_import(path)
        db = _open_db(path)
        try:
            fmt = db.get(_FORMAT_KEY)
            if fmt is None:
                db.put(_FORMAT_KEY, STORE_FORMAT, sync=sync)
            elif fmt == _STORE_FORMAT_2:
                _migrate_from_format_2(db, sync)
            else:
                require(fmt == STORE_FORMAT, f"state store format {fmt!r}, this code reads {STORE_FORMAT!r}")
            store = cls(db, paranoid=paranoid, sync=sync)
        except BaseException:
            db.close()
            raise
        store._path = path
        return store

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _live_db(self) -> Any:
        if self._db is None:
            raise StoreClosedError("state store is closed")
        return self._db

    def _load_meta(self) -> None:
        db = self._live_db()
        head = db.get(_HEAD_KEY)
        self._head = _EMPTY_HEAD if head is None else _decode_head(head)
        genesis = db.get(_GENESIS_KEY)
        self._genesis = None if genesis is None else _decode_genesis(genesis)
        self._tree, self._counts, self._leaves = _load_tree(db)
        require(
            self._tree.root == self._head.state_root,
            f"the stored leaf entries hash to {self._tree.root.hex()}, the head says {self._head.state_root.hex()}",
        )

    # head and genesis

    @property
    def head(self) -> Head:
        return self._head

    @property
    def height(self) -> int:
        return self._head.height

    @property
    def block_hash(self) -> bytes:
        """Hash of the head block; the genesis hash at height 0; b"" before `init_genesis`."""
        return self._head.block_hash

    @property
    def state_root(self) -> bytes:
        return self._head.state_root

    @property
    def last_time(self) -> int:
        return self._head.time

    @property
    def applied_index(self) -> int:
        return self._head.applied_index

    @property
    def genesis_hash(self) -> bytes:
        return b"" if self._genesis is None else self._genesis.genesis_hash

    @property
    def chain_id(self) -> str:
        return "" if self._genesis is None else self._genesis.chain_id

    @property
    def initialized(self) -> bool:
        return self._genesis is not None

    def memory_bytes(self) -> dict[str, int]:
        """What this store holds in memory, by part (for the node's metrics; a few ms at most):
        `state_root_cache`: the tree above the buckets and the unsplit buckets' entries (bounded: at most 16
        entries per bucket), with CPython's per-bucket overhead; `state_leveldb`: LevelDB's own estimate
        (memtables and block cache)."""
        entries = 2 * sum(map(len, map(itemgetter(0), self._leaves.values())))  # hks and leaves: same length
        cache = self._tree.nbytes + entries + BUCKET_OVERHEAD_BYTES * len(self._leaves)
        leveldb = self._db.get_property(b"leveldb.approximate-memory-usage") if self._db is not None else None
        return {"state_root_cache": cache, "state_leveldb": int(leveldb or 0)}

    def init_genesis(
        self,
        genesis_hash: bytes,
        writes: Iterable[tuple[bytes, bytes]],
        *,
        chain_id: str = "",
        genesis_time: int = 0,
    ) -> None:
        """Write the genesis state at height 0. Idempotent for the same genesis hash (a restart); a different
        hash raises GenesisMismatchError. `genesis_time` bounds block 1's time from below."""
        require(
            type(genesis_hash) is bytes and len(genesis_hash) == HASH_BYTES, "genesis hash must be 32 bytes"
        )
        require(type(genesis_time) is int and genesis_time >= 0, "genesis time must be a non-negative int")
        if self._genesis is not None:
            if self._genesis.genesis_hash != genesis_hash:
                raise GenesisMismatchError(
                    f"store holds genesis {self._genesis.genesis_hash.hex()}, given {genesis_hash.hex()}"
                )
            return
        require(self._head.height == 0, "a store with blocks must have a genesis")
        changes: dict[bytes, bytes | None] = {}
        for key, value in writes:
            check_key(key)
            check_value(value)
            require(len(changes) < GENESIS_WRITES_MAX, "too many genesis writes")
            changes[key] = value
        db = self._live_db()
        batch = db.write_batch(sync=self._sync)
        genesis = Genesis(genesis_hash, chain_id, genesis_time)
        batch.put(_GENESIS_KEY, _encode_genesis(genesis))
        with self._staging():
            root = self._stage_state(batch, changes, {})
            head = Head(0, genesis_hash, root, genesis_time, self._head.applied_index)
            batch.put(_HEAD_KEY, _encode_head(head))
            batch.write()
        self._genesis, self._head = genesis, head
        self._check_root_if_paranoid()

    # applying blocks

    def apply_block(
        self, block: Block, executor: TxExecutor, *, applied_index: int | None = None
    ) -> list[TxOutcome]:
        """Validate that `block` extends the head, execute its txs, commit everything in one batch.

        Returns one outcome per tx, in block order; a tx id applied before (in an earlier block or earlier in
        this one) is not executed again and reports its first outcome. Raises StaleBlockError (nothing
        written) if the block does not chain. `applied_index`, if given, is the Raft index carrying the block.
        An exception from the executor propagates and nothing is written.
        """
        require(self._genesis is not None, "apply_block before init_genesis")
        self._check_chaining(block)
        header = block.header
        ctx = BlockContext(header.height, header.time, header.proposer, self._context_chain_id(executor))
        db = self._live_db()
        base = _BlockReadView(db)
        overlay = OverlayView(base)
        outcomes: list[TxOutcome] = []
        tx_ids: list[str] = []
        new_records: dict[str, bytes] = {}
        for position, raw in enumerate(block.txs):
            tx_id = executor.tx_id(raw)
            # `if not ...: require(False, f"...")` on hot paths: the message is formatted only on failure.
            if not (type(tx_id) is str and 0 < len(tx_id) <= TX_ID_CHARS_MAX and tx_id.isascii()):
                require(False, f"executor gave a bad tx id {tx_id!r}")
            tx_ids.append(tx_id)
            earlier = new_records.get(tx_id)
            if earlier is None:
                earlier = db.get(_TX + tx_id.encode("ascii"))
            if earlier is not None:
                outcomes.append(decode_tx_record(earlier).outcome)
                continue
            savepoint = overlay.savepoint()
            outcome = executor.execute(overlay, raw, ctx)
            require(isinstance(outcome, TxOutcome), "executor must return a TxOutcome")
            if outcome.tx_id != tx_id:
                require(False, f"executor outcome tx id {outcome.tx_id} != {tx_id}")
            if outcome.status == STATUS_REJECTED:
                overlay.rollback(savepoint)
            encoded = encode_tx_record(TxRecord(header.height, position, outcome))
            new_records[tx_id] = encoded
            # Hand back what a later read returns (msgpack-normalised), so callers see one shape; a result of
            # str-keyed maps, lists and scalars already has it (the common case: skip the decode).
            outcomes.append(outcome if _plain(outcome.result) else decode_tx_record(encoded).outcome)

        height_key = _height_key(header.height)
        require(db.get(height_key) is None, f"block record at height {header.height} already exists")
        index = self._head.applied_index if applied_index is None else applied_index
        require(index >= self._head.applied_index, "applied index must not go back")
        batch = db.write_batch(sync=self._sync)
        for tx_id, encoded in new_records.items():
            batch.put(_TX + tx_id.encode("ascii"), encoded)
        batch.put(height_key, _encode_block_record(block, tx_ids))
        with self._staging():
            root = self._stage_state(batch, overlay.changes(), base.read)
            head = Head(header.height, block_hash(header), root, header.time, index)
            require(head.height == self._head.height + 1, "heights must be contiguous")
            batch.put(_HEAD_KEY, _encode_head(head))
            batch.write()
        self._head = head
        self._check_root_if_paranoid()
        return outcomes

    def mark_applied(self, applied_index: int) -> None:
        """Record that the node applied Raft entries up to `applied_index` that carried no block."""
        require(applied_index >= self._head.applied_index, "applied index must not go back")
        head = Head(
            self._head.height, self._head.block_hash, self._head.state_root, self._head.time, applied_index
        )
        self._live_db().put(_HEAD_KEY, _encode_head(head), sync=self._sync)
        self._head = head

    def _context_chain_id(self, executor: TxExecutor) -> str:
        if self.chain_id:
            return self.chain_id
        chain_id = getattr(executor, "chain_id", "")
        return chain_id if isinstance(chain_id, str) else ""

    def _check_chaining(self, block: Block) -> None:
        header = block.header
        problem = header_problem(header) or txs_problem(block.txs)
        if problem is not None:
            raise StaleBlockError("malformed", f"block is malformed: {problem}")
        if header.height != self._head.height + 1:
            raise StaleBlockError("height", f"block height {header.height}, expected {self._head.height + 1}")
        if header.prev_hash != self._head.block_hash:
            raise StaleBlockError(
                "prev_hash",
                f"block {header.height} prev_hash {header.prev_hash.hex()[:16]}.. "
                f"does not match head {self._head.block_hash.hex()[:16]}..",
            )
        if header.time < self._head.time:
            raise StaleBlockError("time", f"block time {header.time} before head time {self._head.time}")
        if header.tx_root != tx_root(block.txs):
            raise StaleBlockError("tx_root", f"block {header.height} tx_root does not match its txs")

    @contextlib.contextmanager
    def _staging(self) -> Iterator[None]:
        """Around staging and writing a batch: the in-memory tree and counts change while staging, before the
        batch is written; if anything fails before the write returns, rebuild them from the committed records."""
        try:
            yield
        except BaseException:
            if self._db is not None:
                self._tree, self._counts, self._leaves = _load_tree(self._db)
            raise

    def _stage_state(
        self, batch: Any, changes: dict[bytes, bytes | None], known: dict[bytes, bytes | None]
    ) -> bytes:
        """Put state changes and their root index entries into `batch`, update the in-memory tree
        (call inside `_staging`), return the new root. `known` holds committed values already read in this
        block (key -> value or None): a write of the value a key already has is dropped without hashing. Other
        no-op writes need no read: a bucket whose entries come out unchanged is not rewritten."""
        pending: dict[bytes, dict[bytes, bytes | None]] = {}
        sha256 = hashlib.sha256
        put, delete = batch.put, batch.delete
        for key, value in changes.items():
            if key in known and known[key] == value:
                continue
            hk = sha256(key).digest()
            if value is None:
                delete(_STATE + key)
                leaf = None
            else:
                put(_STATE + key, value)
                leaf = sha256(b"\x00" + len(key).to_bytes(4, "big") + key + value).digest()  # leaf_hash, inlined
            bucket_changes = pending.get(hk[:2])
            if bucket_changes is None:
                pending[hk[:2]] = {hk: leaf}
            else:
                bucket_changes[hk] = leaf
        new_hashes: dict[int, bytes] = {}
        counts = self._counts
        for prefix in sorted(pending):  # LevelDB key order: neighbouring reads share table blocks
            bucket = int.from_bytes(prefix, "big")
            count = counts[bucket]
            if count <= SPLIT_ABOVE:
                changed = self._stage_small_bucket(batch, prefix, count, pending[prefix])
            else:
                changed = self._stage_split_bucket(batch, prefix, count, pending[prefix])
            if changed is not None:
                new_hashes[bucket], counts[bucket] = changed
        return self._tree.set_buckets(new_hashes)

    def _stage_small_bucket(
        self, batch: Any, prefix: bytes, count: int, changes: dict[bytes, bytes | None]
    ) -> tuple[bytes, int] | None:
        """Apply `changes` to an unsplit bucket; (new hash, new count), None if its entries did not change."""
        hks, leaves = self._leaves.get(prefix, (b"", b""))
        if not len(hks) == len(leaves) == count * HASH_BYTES:
            require(False, f"bucket {prefix.hex()} miscounted")
        changed = False
        for hk, leaf in changes.items():
            lo, hi = 0, len(hks) // HASH_BYTES  # binary search for hk among at most 16
            while lo < hi:
                mid = (lo + hi) >> 1
                if hks[mid * HASH_BYTES : (mid + 1) * HASH_BYTES] < hk:
                    lo = mid + 1
                else:
                    hi = mid
            at, end = lo * HASH_BYTES, (lo + 1) * HASH_BYTES
            if hks[at:end] == hk:
                if leaf is None:
                    hks, leaves = hks[:at] + hks[end:], leaves[:at] + leaves[end:]
                    batch.delete(_ENTRY + hk)
                elif leaves[at:end] != leaf:
                    leaves = leaves[:at] + leaf + leaves[end:]
                    batch.put(_ENTRY + hk, leaf)
                else:
                    continue
            elif leaf is not None:
                hks, leaves = hks[:at] + hk + hks[at:], leaves[:at] + leaf + leaves[at:]
                batch.put(_ENTRY + hk, leaf)
            else:
                continue
            changed = True
        if not changed:
            return None
        count = len(hks) // HASH_BYTES
        if count > SPLIT_ABOVE:  # becomes split: its entries move from `H` to `P`
            entries = [(hks[i : i + HASH_BYTES], leaves[i : i + HASH_BYTES]) for i in range(0, len(hks), HASH_BYTES)]
            for hk, _leaf in entries:
                batch.delete(_ENTRY + hk)  # including the ones just put: the batch applies in order
            self._leaves.pop(prefix, None)
            return _put_bucket(batch, prefix, entries), count
        if count:
            self._leaves[prefix] = (hks, leaves)
        else:
            del self._leaves[prefix]
        return hashlib.sha256(b"\x02" + leaves).digest(), count  # bucket_hash

    def _stage_split_bucket(
        self, batch: Any, prefix: bytes, count: int, changes: dict[bytes, bytes | None]
    ) -> tuple[bytes, int] | None:
        """Apply `changes` to a split bucket, rereading only its touched sub-buckets; make it unsplit again if it
        falls to SPLIT_ABOVE entries or fewer. (new hash, new count), None if its entries did not change."""
        summary = self._db.get(_SUMMARY + prefix)
        require(summary is not None, f"split bucket {prefix.hex()} has no summary")
        _old_hash, stored_count, old_subs = decode_summary(summary)
        require(stored_count == count, f"bucket {prefix.hex()} summary disagrees with its count")
        subs = bytearray(old_subs)
        by_sub: dict[int, dict[bytes, bytes | None]] = {}
        for hk, leaf in changes.items():
            by_sub.setdefault(hk[2] >> 4, {})[hk] = leaf
        merged: dict[int, tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes | None]]]] = {}
        for sub, sub_changes in by_sub.items():
            entries: dict[bytes, bytes | None] = dict(self._read_sub_bucket(prefix, sub))
            writes = [(hk, leaf) for hk, leaf in sub_changes.items() if entries.get(hk) != leaf]
            if not writes:
                continue
            count -= len(entries)
            entries.update(writes)
            present = sorted([(hk, leaf) for hk, leaf in entries.items() if leaf is not None])
            count += len(present)
            merged[sub] = (present, writes)
        require(count >= 0, f"split bucket {prefix.hex()} count went negative")
        if not merged:
            return None
        if count > SPLIT_ABOVE:
            for sub, (present, writes) in merged.items():
                for hk, leaf in writes:
                    if leaf is None:
                        batch.delete(_SPLIT_ENTRY + hk)
                    else:
                        batch.put(_SPLIT_ENTRY + hk, leaf)
                subs[sub * HASH_BYTES : (sub + 1) * HASH_BYTES] = bucket_hash([leaf for _hk, leaf in present])
            h = split_hash(bytes(subs))
            batch.put(_SUMMARY + prefix, encode_summary(h, count, bytes(subs)))
            return h, count
        # Fell to SPLIT_ABOVE entries or fewer: it becomes an unsplit bucket (sub order is hk order).
        everything: list[tuple[bytes, bytes]] = []
        for sub in range(FANOUT):
            everything += merged[sub][0] if sub in merged else sorted(self._read_sub_bucket(prefix, sub).items())
        require(len(everything) == count, f"split bucket {prefix.hex()} lost entries while merging")
        with self._db.iterator(prefix=_SPLIT_ENTRY + prefix, include_value=False) as it:
            for key in it:
                batch.delete(key)
        batch.delete(_SUMMARY + prefix)
        if not everything:
            return bucket_hash(()), 0
        self._leaves[prefix] = (b"".join([hk for hk, _ in everything]), b"".join([leaf for _, leaf in everything]))
        return _put_bucket(batch, prefix, everything), count

    def _read_sub_bucket(self, prefix: bytes, sub: int) -> dict[bytes, bytes]:
        """The committed entries {hk: leaf} of one sub-bucket of a split bucket."""
        start = _SPLIT_ENTRY + prefix + bytes([sub << 4])
        entries: dict[bytes, bytes] = {}
        with self._db.iterator(start=start) as it:
            for key, leaf in it:
                if key[:3] != start[:3] or key[3] >> 4 != sub:
                    break
                entries[key[1:]] = leaf
        return entries

    # invariants

    def recompute_state_root(self) -> bytes:
        """The state root from scratch over every state entry (O(state)); must equal `state_root`."""
        return state_root_of(self.scan(b""))

    def check_integrity(self) -> None:
        """Require the incremental root, the stored root index and the in-memory tree to match a from-scratch
        recomputation over the state."""
        db = self._live_db()
        require(self.recompute_state_root() == self._head.state_root, "state root differs from recomputation")
        expected: dict[bytes, bytes] = {}
        hashes = _bucket_records(sorted((hashed_key(k), leaf_hash(k, v)) for k, v in self.scan(b"")),
                                 expected.__setitem__)
        stored = {k: v for tag in (_ENTRY, _SPLIT_ENTRY, _SUMMARY) for k, v in db.iterator(prefix=tag)}
        require(stored == expected, "stored root index (H, P, R) differs from the state")
        require(self._tree.same_as(RootTree.from_buckets(hashes)), "in-memory root tree differs from the state")
        tree, counts, leaves = _load_tree(db)
        require(tree.same_as(self._tree), "in-memory root tree differs from the stored buckets")
        require(counts == self._counts and leaves == self._leaves, "in-memory bucket entries differ")

    def _check_root_if_paranoid(self) -> None:
        if self._paranoid:
            require(
                self.recompute_state_root() == self._head.state_root,
                f"height {self._head.height}: incremental state root differs from recomputation",
            )

    # reads

    def get(self, key: bytes) -> bytes | None:
        self._live_db()
        return self._view.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._live_db()
        return self._view.scan(prefix)

    def view(self) -> CommittedView:
        """A read-only StateView of the committed state (for ecert.queries)."""
        self._live_db()
        return self._view

    def tx_outcome(self, tx_id: str) -> TxRecord | None:
        if not tx_id or len(tx_id) > TX_ID_CHARS_MAX or not tx_id.isascii():
            return None
        data = self._live_db().get(_TX + tx_id.encode("ascii"))
        return None if data is None else decode_tx_record(data)

    def block(self, height: int) -> BlockRecord | None:
        """The block at `height` (header, hash, tx ids, raw txs); None if unknown or pruned by a snapshot."""
        if type(height) is not int or not (1 <= height <= self._head.height):
            return None
        data = self._live_db().get(_height_key(height))
        return None if data is None else _decode_block_record(data)

    def blocks(self, before: int | None = None, limit: int = 20) -> list[BlockRecord]:
        """Up to `limit` blocks with height < `before` (default: from the head), newest first."""
        limit = max(0, min(limit, BLOCKS_PAGE_MAX))
        top = self._head.height + 1 if before is None else min(before, self._head.height + 1)
        if limit == 0 or top <= 1:
            return []
        records = []
        with self._live_db().iterator(start=_height_key(1), stop=_height_key(top), reverse=True) as it:
            for _key, data in it:
                records.append(_decode_block_record(data))
                if len(records) >= limit:
                    break
        return records

    # snapshots

    def export_snapshot(self) -> bytes:
        """The state, tx-outcome index, head and last block record, from one consistent LevelDB snapshot
        (see `snapshot_exporter`)."""
        return self.snapshot_exporter()()

    def snapshot_exporter(self) -> Callable[[], bytes]:
        """`snapshot_stream`, joined into one bytes object."""
        stream = self.snapshot_stream()
        return lambda: b"".join(stream())

    def snapshot_stream(self, chunk_bytes: int = SNAPSHOT_CHUNK_BYTES) -> Callable[[], Iterator[bytes]]:
        """Pin the state as it is now (a LevelDB snapshot: cheap) and return the function that serialises it,
        as consecutive chunks of about `chunk_bytes` (so a large state is never held whole in memory while it
        is written). The function may run on another thread while blocks keep being applied; call it exactly
        once, consume it to the end, and before the store is closed or imports a snapshot (which reopens it).

        Stream of msgpack objects: header `[magic, format, head, genesis, last_block | None]`, then one
        `[kind, key, value]` per state entry (kind 0) and tx record (kind 1), then the trailer
        `["end", record count, sha256 of every byte before the trailer]`. Block bodies other than the last are
        not included (`block(h)` answers None for them after an import); outcomes are, so replays still get
        their first outcome.
        """
        require(chunk_bytes > 0, "chunk size must be positive")
        snap = self._live_db().snapshot()

        def export() -> Iterator[bytes]:
            packer = msgpack.Packer(use_bin_type=True)
            digest = hashlib.sha256()
            pieces: list[bytes] = []
            size = 0
            count = 0
            try:
                head_bytes = snap.get(_HEAD_KEY) or _encode_head(_EMPTY_HEAD)
                head = _decode_head(head_bytes)
                genesis_bytes = snap.get(_GENESIS_KEY)
                last_block = snap.get(_height_key(head.height)) if head.height > 0 else None
                pieces.append(
                    packer.pack([SNAPSHOT_MAGIC, SNAPSHOT_FORMAT, head_bytes, genesis_bytes, last_block])
                )
                size = len(pieces[0])
                for tag, kind in ((_STATE, _SNAP_STATE), (_TX, _SNAP_TX)):
                    with snap.iterator(prefix=tag) as it:
                        for key, value in it:
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

        return export

    def import_snapshot(self, data: bytes) -> None:
        """Replace everything in the store by the snapshot, after checking its checksum and that its state hashes
        to the state root it claims; raises SnapshotError (and changes nothing) otherwise.

        Atomic without one WriteBatch of the whole state: the snapshot is written, in batches of about
        IMPORT_BATCH_BYTES, into a fresh LevelDB at `<path>.import`, which is closed and fsynced; then the live
        directory is renamed to `<path>.retired`, the import to `<path>`, the parent directory fsynced, and the
        retired one removed. `open` finishes or undoes a swap a crash interrupted (`_settle_import`): an import
        directory next to a live store is unfinished and removed; one without a live store is complete."""
        require(self._path is not None, "import_snapshot needs a store opened by StateStore.open")
        assert self._path is not None
        self._live_db()
        try:
            fmt, head, genesis, last_block, records = _parse_snapshot_header(data)
        except SnapshotError:
            raise
        except Exception as exc:  # msgpack errors, or a require() on a malformed head
            raise SnapshotError(f"malformed snapshot header: {type(exc).__name__}") from None
        if self._genesis is not None and genesis is not None and genesis.genesis_hash != self.genesis_hash:
            raise SnapshotError("snapshot is of another chain (genesis hash differs)")
        target = self._path + IMPORT_SUFFIX
        shutil.rmtree(target, ignore_errors=True)
        fresh = _open_db(target)
        try:
            writer = _ChunkedWriter(fresh)
            writer.put(_FORMAT_KEY, STORE_FORMAT)
            leaves = _stage_snapshot_records(writer, data, records)
            leaves.sort()
            for i in range(1, len(leaves)):
                if leaves[i - 1][:HASH_BYTES] == leaves[i][:HASH_BYTES]:
                    raise SnapshotError("snapshot repeats a state key")
            hashes = _bucket_records(((e[:HASH_BYTES], e[HASH_BYTES:]) for e in leaves), writer.put)
            del leaves
            root = RootTree.from_buckets(hashes).root
            if fmt == _SNAPSHOT_FORMAT_1:
                # Its root is of the tree without split buckets, which this code no longer builds; blocks do
                # not commit to the state root, so the one recomputed here is the root of this state. Integrity
                # rests on the trailer checksum alone for these.
                head = Head(head.height, head.block_hash, root, head.time, head.applied_index)
            elif root != head.state_root:
                raise SnapshotError("snapshot state does not hash to its state root")
            writer.put(_HEAD_KEY, _encode_head(head))
            if genesis is not None:
                writer.put(_GENESIS_KEY, _encode_genesis(genesis))
            if last_block is not None:
                writer.put(_height_key(head.height), last_block)
            writer.flush()
        except BaseException:
            fresh.close()
            shutil.rmtree(target, ignore_errors=True)
            raise
        fresh.close()
        fsync_tree(target)
        self._swap_in(target)
        self._check_root_if_paranoid()

    def _swap_in(self, target: str) -> None:
        """Replace the live LevelDB directory by `target` (complete and durable) and reopen."""
        assert self._path is not None and self._db is not None
        self._db.close()
        self._db = None
        retired = self._path + RETIRED_SUFFIX
        shutil.rmtree(retired, ignore_errors=True)
        os.rename(self._path, retired)
        os.rename(target, self._path)
        fsync_dir(os.path.dirname(os.path.abspath(self._path)))
        shutil.rmtree(retired, ignore_errors=True)
        self._db = _open_db(self._path)
        self._view._db = self._db  # in place: whoever holds the committed view keeps a live one
        self._load_meta()


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


def _open_db(path: str) -> Any:
    # Bloom filters make the per-tx "applied before?" lookup of a new tx id (a miss) and reads of new
    # state keys cheap once they have left the memtable. No compression: most bytes written are hashes
    # (bucket entries), which snappy cannot shrink, and compacting them through it was ~30% of the CPU of
    # applying small blocks. Both are per-table options: a store written with other options opens. A 16 MB
    # memtable (default 4) cut compaction CPU per block by ~40% for ~10% slower inserts; 8 and 32-64 MB cost
    # more in total (node/bench/apply_bench.py, transfers). A 32 MB block cache (default 8) keeps the
    # state's hot table blocks of a few 100k keys.
    return plyvel.DB(
        path,
        create_if_missing=True,
        bloom_filter_bits=10,
        compression=None,
        write_buffer_size=WRITE_BUFFER_BYTES,
        lru_cache_size=BLOCK_CACHE_BYTES,
    )


def _settle_import(path: str) -> None:
    """Finish or undo a snapshot import that a crash interrupted (see `StateStore.import_snapshot`)."""
    target, retired = path + IMPORT_SUFFIX, path + RETIRED_SUFFIX
    if os.path.isdir(target):
        if os.path.isdir(path):
            shutil.rmtree(target)  # unfinished: the live store was never replaced
        else:
            os.rename(target, path)  # complete and durable: the crash fell between the two renames
            fsync_dir(os.path.dirname(os.path.abspath(path)))
    if os.path.isdir(retired):
        shutil.rmtree(retired)


_PLAIN_SCALARS = (str, int, bytes, bool, type(None))


def _plain(value: Any) -> bool:
    """True if msgpack (use_bin_type, raw=False, use_list) round-trips `value` to an equal value of the same
    types: maps with str keys, lists, str, int, bytes, bool, None."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def _put_bucket(batch: Any, prefix: bytes, entries_in_hk_order: list[tuple[bytes, bytes]]) -> bytes:
    """Put a non-empty bucket's records (an `H` per entry; or, over SPLIT_ABOVE entries, a `P` per entry and
    its summary `R`); return its hash. Does not delete records of its previous shape."""
    count = len(entries_in_hk_order)
    require(count > 0, "an empty bucket has no records")
    if count <= SPLIT_ABOVE:
        for hk, leaf in entries_in_hk_order:
            batch.put(_ENTRY + hk, leaf)
        return bucket_hash([leaf for _hk, leaf in entries_in_hk_order])
    for hk, leaf in entries_in_hk_order:
        batch.put(_SPLIT_ENTRY + hk, leaf)
    sub_hashes = b"".join(bucket_hash([leaf for _hk, leaf in entries]) for entries in sub_buckets(entries_in_hk_order))
    h = split_hash(sub_hashes)
    batch.put(_SUMMARY + prefix, encode_summary(h, count, sub_hashes))
    return h


class _PutOnly:
    """`_put_bucket`'s batch when only the records are wanted."""

    __slots__ = ("put",)

    def __init__(self, put: Callable[[bytes, bytes], None]) -> None:
        self.put = put


def _by_bucket(entries_in_hk_order: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """(bucket prefix, its entries) for each non-empty bucket, from all (hk, leaf) entries in strictly
    increasing hk order. Streams: one bucket in memory at a time."""
    members: list[tuple[bytes, bytes]] = []
    last_hk = b""
    for entry in entries_in_hk_order:
        hk = entry[0]
        require(hk > last_hk and len(hk) == HASH_BYTES, "entries must come in strictly increasing hk order")
        if members and hk[:2] != last_hk[:2]:
            yield last_hk[:2], members
            members = []
        members.append(entry)
        last_hk = hk
    if members:
        yield last_hk[:2], members


def _bucket_records(
    entries_in_hk_order: Iterable[tuple[bytes, bytes]], put: Callable[[bytes, bytes], None]
) -> dict[int, bytes]:
    """Every bucket's records from all (hk, leaf) entries in strictly increasing hk order, through `put`;
    returns the non-empty buckets' hashes."""
    target = _PutOnly(put)
    return {int.from_bytes(prefix, "big"): _put_bucket(target, prefix, members)
            for prefix, members in _by_bucket(entries_in_hk_order)}


def _load_tree(db: Any) -> tuple[RootTree, list[int], dict[bytes, tuple[bytes, bytes]]]:
    """The in-memory tree, bucket counts and unsplit buckets' entries from the `H` and `R` records (`H` holds
    at most 16 entries per bucket: at most ~1 M records, 64 MB)."""
    hashes: dict[int, bytes] = {}
    counts = [0] * BUCKET_COUNT
    leaves: dict[bytes, tuple[bytes, bytes]] = {}
    with db.iterator(prefix=_ENTRY) as it:
        for prefix, members in _by_bucket((key[1:], leaf) for key, leaf in it):
            require(len(members) <= SPLIT_ABOVE, f"unsplit bucket {prefix.hex()} has {len(members)} entries")
            require(all(len(leaf) == HASH_BYTES for _hk, leaf in members), f"bucket {prefix.hex()}: bad leaf")
            bucket = int.from_bytes(prefix, "big")
            leaves[prefix] = (b"".join([hk for hk, _ in members]), b"".join([leaf for _, leaf in members]))
            hashes[bucket] = bucket_hash([leaves[prefix][1]])
            counts[bucket] = len(members)
    with db.iterator(prefix=_SUMMARY) as it:
        for key, record in it:
            require(len(key) == 3, "bucket summary key is malformed")
            bucket = int.from_bytes(key[1:], "big")
            require(counts[bucket] == 0, f"bucket {bucket} is both split and unsplit")
            hashes[bucket], counts[bucket], _subs = decode_summary(record)
    return RootTree.from_buckets(hashes), counts, leaves


def _migrate_from_format_2(db: Any, sync: bool) -> None:
    """Rewrite a format 2 store's root index in format 3, in one batch: its `H` entries stay, except those of
    split buckets, which move to `P` with an `R` summary; its stored inner nodes `N` go. Same state, same root
    (checked against the head before anything is written)."""
    batch = db.write_batch(sync=sync)
    hashes: dict[int, bytes] = {}
    with db.iterator(prefix=_ENTRY) as it:
        for prefix, members in _by_bucket((key[1:], leaf) for key, leaf in it):
            if len(members) > SPLIT_ABOVE:
                for hk, _leaf in members:
                    batch.delete(_ENTRY + hk)
                hashes[int.from_bytes(prefix, "big")] = _put_bucket(batch, prefix, members)
            else:
                hashes[int.from_bytes(prefix, "big")] = bucket_hash([leaf for _hk, leaf in members])
    head = db.get(_HEAD_KEY)
    claimed = EMPTY_ROOT if head is None else _decode_head(head).state_root
    require(RootTree.from_buckets(hashes).root == claimed, "format 2 store: its leaf index does not hash to its root")
    with db.iterator(prefix=_NODE_2, include_value=False) as it:
        for key in it:
            batch.delete(key)
    batch.put(_FORMAT_KEY, STORE_FORMAT)
    batch.write()


def _parse_snapshot_header(data: bytes) -> tuple[int, Head, Genesis | None, bytes | None, Any]:
    unpacker = msgpack.Unpacker(io.BytesIO(data), raw=False, use_list=True, strict_map_key=True)
    row = unpacker.unpack()
    if (
        type(row) is not list
        or len(row) != 5
        or row[0] != SNAPSHOT_MAGIC
        or type(row[1]) is not int
        or row[1] not in (SNAPSHOT_FORMAT, _SNAPSHOT_FORMAT_1)
    ):
        raise SnapshotError("not a ledger snapshot (bad magic or format)")
    _magic, fmt, head_bytes, genesis_bytes, last_block = row
    if type(head_bytes) is not bytes:
        raise SnapshotError("snapshot head is malformed")
    head = _decode_head(head_bytes)
    genesis = _decode_genesis(genesis_bytes) if genesis_bytes is not None else None
    if last_block is not None:
        if type(last_block) is not bytes:
            raise SnapshotError("snapshot last block is malformed")
        record = _decode_block_record(last_block)
        if record.header.height != head.height or record.hash != head.block_hash:
            raise SnapshotError("snapshot last block does not match its head")
    return fmt, head, genesis, last_block, unpacker


def _stage_snapshot_records(batch: Any, data: bytes, unpacker: Any) -> list[bytes]:
    """Put every record of the snapshot into `batch`; returns hk||leaf entries for the root check."""
    leaves: list[bytes] = []
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
            hk = hashed_key(key)
            leaf = leaf_hash(key, value)
            batch.put(_STATE + key, value)
            leaves.append(hk + leaf)
        elif kind == _SNAP_TX:
            try:
                record = decode_tx_record(value)
            except Exception:
                raise SnapshotError("malformed tx record in snapshot") from None
            if record.outcome.tx_id.encode("ascii", "replace") != key:
                raise SnapshotError("snapshot tx record filed under another tx id")
            batch.put(_TX + key, value)
        else:
            raise SnapshotError(f"unknown snapshot record kind {kind!r}")
        count += 1
