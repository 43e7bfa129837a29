"""StateStore: the chain's state, blocks and tx outcomes in one LevelDB (plyvel), advanced one block per batch.

A composition of one-concern modules, each with its reason in its docstring:

- ledger/schema.py: the key schema (`M`, `S`, `H`, `P`, `R`, `T`, `B`; docs/STORAGE.md), the record codecs
  (`Head`, `Genesis`, `BlockRecord`) and the LevelDB open options;
- ledger/apply.py: does a block chain onto the head (`check_chaining`), and what its txs do (`run_block`);
- ledger/buckets.py: the state root's bucket index (`H`, `P`, `R`) and the in-memory tree over it
  (`BucketIndex`); the hash formulas themselves are ledger/state_root.py's;
- ledger/derived_index.py: the application's secondary indexes, written in the same batch but not hashed;
- ledger/committed_view.py: read views over the committed state;
- ledger/snapshot.py: export stream, import into a fresh directory, the directory swap and its settling;
- ledger/migrate.py: older store formats, migrated or refused at open.

`apply_block` validates the chaining, runs every tx through the executor, then writes ONE WriteBatch with the
state changes, their root index entries, every new tx record, the block record and the head. LevelDB applies a
batch atomically (its log record is all or nothing), so after a crash the store is at a whole block: the
previous one or this one.

Heights are contiguous from 1 (block records of a store restored from a snapshot start at the snapshot's head).
Reads (`get`, `scan`, `tx_outcome`, `block`, `blocks`) see committed blocks only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from consensus.invariant import require
from ledger.apply import check_chaining, run_block
from ledger.block import HASH_BYTES, Block, block_hash
from ledger.buckets import BucketIndex
from ledger.committed_view import CommittedView
from ledger.derived_index import NO_INDEX, DerivedIndex, check_index, derive_all, rooted
from ledger.errors import GenesisMismatchError, StoreClosedError
from ledger.executor import TxExecutor, TxOutcome, TxRecord, decode_tx_record
from ledger.migrate import to_current_format
from ledger.schema import (
    EMPTY_HEAD,
    GENESIS_KEY,
    HEAD_KEY,
    TX,
    TX_ID_CHARS_MAX,
    BlockRecord,
    BlockSummary,
    Genesis,
    Head,
    decode_block_record,
    decode_block_summary,
    decode_genesis,
    decode_head,
    encode_block_record,
    encode_genesis,
    encode_head,
    height_key,
    open_db,
)
from ledger.snapshot import (
    IMPORT_SUFFIX,
    SNAPSHOT_CHUNK_BYTES,
    export_chunks,
    settle_import,
    swap_in,
    write_import,
)
from ledger.state_root import state_root_of
from ledger.state_view import check_key, check_value

BLOCKS_PAGE_MAX = 1000
"""Most block records one `blocks()` call returns."""
GENESIS_WRITES_MAX = 1 << 20


class PrefixWatch:
    """Counts the times state keys under `prefix` may have changed: every applied block that wrote or deleted
    one, and every genesis write and snapshot import. A reader that caches what it derived from those keys reads
    them again only when `version` moved (the node's membership, read after every applied pass)."""

    __slots__ = ("prefix", "version")

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.version = 0


class StateStore:
    """The ledger over one LevelDB directory. Not thread-safe for writers: one applier at a time."""

    def __init__(self, db: Any, *, paranoid: bool, sync: bool, index: DerivedIndex = NO_INDEX) -> None:
        self._db: Any = db
        self._index = index
        """The application's derived index: its keys are written like state but not hashed (ledger/derived_index.py)."""
        self._path: str | None = None
        """The LevelDB directory, when opened by `open` (needed to import a snapshot)."""
        self._paranoid = paranoid
        self._sync = sync
        self._view = CommittedView(db)
        self._head = EMPTY_HEAD
        self._genesis: Genesis | None = None
        self._buckets = BucketIndex()
        """Derived from the `H` and `R` records at open; changed while a batch is staged (see `_staging`)."""
        self._watches: list[PrefixWatch] = []
        self._load_meta()

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, paranoid: bool = False, sync: bool = True,
             index: DerivedIndex = NO_INDEX) -> StateStore:
        """Open (creating if missing). `paranoid` recomputes the state root from scratch after every block and
        requires it to equal the incremental one (debug: O(state) per block). `sync` fsyncs every batch.
        `index`: the application's derived index; a store is always opened with the one it was created with.
        Finishes or undoes a snapshot import a crash interrupted; migrates or refuses an older format."""
        check_index(index)
        path = os.fspath(path)
        settle_import(path)
        db = open_db(path)
        try:
            to_current_format(db, index, sync=sync)
            store = cls(db, paranoid=paranoid, sync=sync, index=index)
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
        head = db.get(HEAD_KEY)
        self._head = EMPTY_HEAD if head is None else decode_head(head)
        genesis = db.get(GENESIS_KEY)
        self._genesis = None if genesis is None else decode_genesis(genesis)
        self._buckets = BucketIndex.load(db)
        require(
            self._buckets.root == self._head.state_root,
            f"the stored leaf entries hash to {self._buckets.root.hex()}, "
            f"the head says {self._head.state_root.hex()}",
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
        leveldb = self._db.get_property(b"leveldb.approximate-memory-usage") if self._db is not None else None
        return {"state_root_cache": self._buckets.nbytes, "state_leveldb": int(leveldb or 0)}

    def watch(self, prefix: bytes) -> PrefixWatch:
        """A `PrefixWatch` over state keys under `prefix`, counting from now."""
        watch = PrefixWatch(prefix)
        self._watches.append(watch)
        return watch

    def _bump_watches(self, changes: Iterable[bytes] | None) -> None:
        """After a write: `changes` are the state keys written (None: anything may have changed)."""
        for watch in self._watches:
            prefix = watch.prefix
            if changes is None or any(key.startswith(prefix) for key in changes):
                watch.version += 1

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
        batch.put(GENESIS_KEY, encode_genesis(genesis))
        with self._staging():
            root = self._stage_state(batch, changes, {})
            head = Head(0, genesis_hash, root, genesis_time, self._head.applied_index)
            batch.put(HEAD_KEY, encode_head(head))
            batch.write()
        self._genesis, self._head = genesis, head
        self._bump_watches(None)
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
        check_chaining(self._head, block)
        header = block.header
        db = self._live_db()
        run = run_block(db, block, executor, self._context_chain_id(executor))

        key = height_key(header.height)
        require(db.get(key) is None, f"block record at height {header.height} already exists")
        index = self._head.applied_index if applied_index is None else applied_index
        require(index >= self._head.applied_index, "applied index must not go back")
        batch = db.write_batch(sync=self._sync)
        for tx_id, encoded in run.tx_records.items():
            batch.put(TX + tx_id.encode("ascii"), encoded)
        batch.put(key, encode_block_record(block, run.tx_ids))
        with self._staging():
            root = self._stage_state(batch, run.changes, run.read)
            head = Head(header.height, block_hash(header), root, header.time, index)
            require(head.height == self._head.height + 1, "heights must be contiguous")
            batch.put(HEAD_KEY, encode_head(head))
            batch.write()
        self._head = head
        if self._watches:
            self._bump_watches(run.changes)
        self._check_root_if_paranoid()
        return run.outcomes

    def mark_applied(self, applied_index: int) -> None:
        """Record that the node applied Raft entries up to `applied_index` that carried no block."""
        require(applied_index >= self._head.applied_index, "applied index must not go back")
        head = Head(
            self._head.height, self._head.block_hash, self._head.state_root, self._head.time, applied_index
        )
        self._live_db().put(HEAD_KEY, encode_head(head), sync=self._sync)
        self._head = head

    def _context_chain_id(self, executor: TxExecutor) -> str:
        if self.chain_id:
            return self.chain_id
        chain_id = getattr(executor, "chain_id", "")
        return chain_id if isinstance(chain_id, str) else ""

    @contextlib.contextmanager
    def _staging(self) -> Iterator[None]:
        """Around staging and writing a batch: the bucket index changes while staging, before the batch is
        written; if anything fails before the write returns, load it again from the committed records."""
        try:
            yield
        except BaseException:
            if self._db is not None:
                self._buckets = BucketIndex.load(self._db)
            raise

    def _stage_state(
        self, batch: Any, changes: dict[bytes, bytes | None], known: dict[bytes, bytes | None]
    ) -> bytes:
        """Put state changes and their root index entries into `batch` (call inside `_staging`); the new root.
        A method of its own so that node/bench/scale_bench.py can time this step."""
        return self._buckets.stage(batch, self._db, changes, known, self._index.prefixes)

    # invariants

    def recompute_state_root(self) -> bytes:
        """The state root from scratch over every state entry but the derived index's (O(state)); must equal
        `state_root`."""
        return state_root_of(rooted(self.scan(b""), self._index.prefixes))

    def check_integrity(self) -> None:
        """Require the incremental root, the stored root index and the in-memory tree to match a from-scratch
        recomputation over the state, and the derived index to be exactly what the rest of the state implies."""
        db = self._live_db()
        require(self.recompute_state_root() == self._head.state_root, "state root differs from recomputation")
        self._buckets.check(db, rooted(self.scan(b""), self._index.prefixes))
        self._check_derived_index()

    def _check_derived_index(self) -> None:
        prefixes = self._index.prefixes
        if not prefixes:
            return
        stored: dict[bytes, bytes] = {}
        rooted_entries: list[tuple[bytes, bytes]] = []
        for key, value in self.scan(b""):  # one pass: the index keys on one side, what implies them on the other
            if key.startswith(prefixes):
                stored[key] = value
            else:
                rooted_entries.append((key, value))
        derived = derive_all(rooted_entries, self._index)
        if stored != derived:
            missing = sorted(set(derived) - set(stored))[:3]
            extra = sorted(set(stored) - set(derived))[:3]
            require(False, f"height {self._head.height}: the derived index differs from the state: missing "
                           f"{missing!r}, not implied {extra!r}")

    def _check_root_if_paranoid(self) -> None:
        if self._paranoid:
            require(
                self.recompute_state_root() == self._head.state_root,
                f"height {self._head.height}: incremental state root differs from recomputation",
            )
            self._check_derived_index()

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
        data = self._live_db().get(TX + tx_id.encode("ascii"))
        return None if data is None else decode_tx_record(data)

    def block(self, height: int) -> BlockRecord | None:
        """The block at `height` (header, hash, tx ids, raw txs); None if unknown or pruned by a snapshot."""
        if type(height) is not int or not (1 <= height <= self._head.height):
            return None
        data = self._live_db().get(height_key(height))
        return None if data is None else decode_block_record(data)

    def block_summary(self, height: int) -> BlockSummary | None:
        """`block(height)`'s header, hash and tx count, without decoding its txs (a page of headers); None where
        `block` answers None."""
        if type(height) is not int or not (1 <= height <= self._head.height):
            return None
        data = self._live_db().get(height_key(height))
        return None if data is None else decode_block_summary(data)

    def blocks(self, before: int | None = None, limit: int = 20) -> list[BlockRecord]:
        """Up to `limit` blocks with height < `before` (default: from the head), newest first."""
        limit = max(0, min(limit, BLOCKS_PAGE_MAX))
        top = self._head.height + 1 if before is None else min(before, self._head.height + 1)
        if limit == 0 or top <= 1:
            return []
        records = []
        with self._live_db().iterator(start=height_key(1), stop=height_key(top), reverse=True) as it:
            for _key, data in it:
                records.append(decode_block_record(data))
                if len(records) >= limit:
                    break
        return records

    # snapshots (ledger/snapshot.py)

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
        is written; the stream is described in ledger/snapshot.py). The function may run on another thread
        while blocks keep being applied; call it exactly once, consume it to the end, and before the store is
        closed or imports a snapshot (which reopens it). Block bodies other than the last are not included
        (`block(h)` answers None for them after an import)."""
        require(chunk_bytes > 0, "chunk size must be positive")
        snap = self._live_db().snapshot()
        prefixes = self._index.prefixes
        return lambda: export_chunks(snap, chunk_bytes, prefixes)

    def import_snapshot(self, data: bytes) -> None:
        """Replace everything in the store by the snapshot, after checking its checksum and that its state hashes
        to the state root it claims; raises SnapshotError (and changes nothing) otherwise. The derived index is
        not in the snapshot: it is rebuilt from the state it carries.

        Atomic without one WriteBatch of the whole state: the snapshot is written into a fresh LevelDB at
        `<path>.import`, then swapped in for the live directory (ledger/snapshot.py); `open` finishes or undoes
        a swap a crash interrupted."""
        require(self._path is not None, "import_snapshot needs a store opened by StateStore.open")
        assert self._path is not None
        self._live_db()
        target = self._path + IMPORT_SUFFIX
        write_import(target, data, None if self._genesis is None else self._genesis.genesis_hash, self._index)
        self._db.close()
        self._db = None
        swap_in(self._path, target)
        self._db = open_db(self._path)
        self._view.rebind(self._db)  # in place: whoever holds the committed view keeps a live one
        self._load_meta()
        self._bump_watches(None)
        self._check_root_if_paranoid()
