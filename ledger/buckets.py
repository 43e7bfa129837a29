"""The state root's bucket index: the `H`, `P` and `R` records of the store, and the in-memory tree over them.

What is here and why it is one thing: a changed state key changes its leaf entry (`H` in an unsplit bucket, `P`
in a split one), its bucket's hash (and a split bucket's `R` summary), and the bucket's ancestors in the tree.
`BucketIndex` keeps in memory what makes that cheap (docs/STORAGE.md, "One block = one WriteBatch"): the tree
above the buckets (`RootTree`, 2 MB), each bucket's entry count (which says where its entries are), every
unsplit bucket's entries as two concatenated byte strings, hks and leaf hashes in hk order (at most 16 per
bucket: at most 64 MB of hashes, ~80 MB with Python's overhead), and every split bucket's summary `R` as stored
(548 bytes: at most ~44 MB when all 65,536 buckets are split, by which time few buckets' entries are held). It
is loaded at open from the `H` and `R` records; `stage` puts a block's state changes and their index records
into the block's WriteBatch and updates the in-memory part to match. Every hash it computes comes from
ledger/state_root.py.

A split bucket's touched sub-buckets are read back from LevelDB; nothing else is. (Its summary was read back
too until a soak showed buckets starting to split at ~1 M state keys, each touched one costing a LevelDB get
more: docs/PERFORMANCE.md, "Fourth pass".)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from consensus.invariant import require
from ledger.schema import ENTRY, SPLIT_ENTRY, STATE, SUMMARY
from ledger.state_root import (
    BUCKET_COUNT,
    BUCKET_PREFIX_BYTES,
    FANOUT,
    HASH_BYTES,
    SPLIT_ABOVE,
    RootTree,
    bucket_hash,
    bucket_of,
    bucket_prefix,
    hashed_key,
    leaf_hash,
    split_hash,
    sub_bucket_hashes,
    sub_bucket_of,
    sub_bucket_start,
)

BUCKET_OVERHEAD_BYTES = 250
"""CPython's cost of one unsplit bucket's in-memory entry beyond its hashes: the dict slot, the 2-byte key, the
tuple and the two bytes objects' headers (measured: ~245 bytes with `sys.getsizeof`)."""
SUMMARY_BYTES = HASH_BYTES + 4 + FANOUT * HASH_BYTES
"""A split bucket's summary `R` as stored: its hash, its u32be entry count, its 16 sub-bucket hashes."""
SUMMARY_OVERHEAD_BYTES = 120
"""CPython's cost of one held summary beyond its bytes: the dict slot, the 2-byte key, the bytes header."""


def is_split(count: int) -> bool:
    """Whether a bucket of `count` entries is split (its entries under `P`, with a summary `R`)."""
    return count > SPLIT_ABOVE


def encode_summary(bucket_hash_: bytes, count: int, sub_hashes: bytes) -> bytes:
    require(count > SPLIT_ABOVE and len(sub_hashes) == FANOUT * HASH_BYTES, "a summary is of a split bucket")
    return bucket_hash_ + count.to_bytes(4, "big") + sub_hashes


def decode_summary(record: bytes) -> tuple[bytes, int, bytes]:
    """A split bucket's (hash, entry count, 16 sub-bucket hashes)."""
    count = int.from_bytes(record[HASH_BYTES : HASH_BYTES + 4], "big")
    require(len(record) == SUMMARY_BYTES and count > SPLIT_ABOVE, "bad split bucket summary")
    return record[:HASH_BYTES], count, record[HASH_BYTES + 4 :]


class BucketIndex:
    """The in-memory side of the bucket index (see the module docstring). Changed while a batch holding the
    same writes is staged: if anything fails before that batch is written, the caller loads it again."""

    __slots__ = ("counts", "leaves", "summaries", "tree")

    def __init__(self) -> None:
        self.tree = RootTree()
        self.counts: list[int] = [0] * BUCKET_COUNT
        """Entries per bucket; over SPLIT_ABOVE: split, entries under `P`."""
        self.leaves: dict[bytes, tuple[bytes, bytes]] = {}
        """Every unsplit bucket's entries by 2-byte bucket prefix, as (its hks, its leaf hashes), each
        concatenated in hk order: rehashing a touched bucket reads nothing and hashes `leaves` as they are."""
        self.summaries: dict[bytes, bytes] = {}
        """Every split bucket's summary `R` record by 2-byte bucket prefix, exactly as stored."""

    @classmethod
    def load(cls, db: Any) -> BucketIndex:
        """From the `H` and `R` records (`H` holds at most 16 entries per bucket: at most ~1 M records, 64 MB)."""
        index = cls()
        hashes: dict[int, bytes] = {}
        counts, leaves, summaries = index.counts, index.leaves, index.summaries
        with db.iterator(prefix=ENTRY) as it:
            for prefix, members in by_bucket((key[1:], leaf) for key, leaf in it):
                require(not is_split(len(members)), f"unsplit bucket {prefix.hex()} has {len(members)} entries")
                require(all(len(leaf) == HASH_BYTES for _hk, leaf in members), f"bucket {prefix.hex()}: bad leaf")
                bucket = bucket_of(prefix)
                leaves[prefix] = (b"".join([hk for hk, _ in members]), b"".join([leaf for _, leaf in members]))
                hashes[bucket] = bucket_hash([leaves[prefix][1]])
                counts[bucket] = len(members)
        with db.iterator(prefix=SUMMARY) as it:
            for key, record in it:
                require(len(key) == len(SUMMARY) + BUCKET_PREFIX_BYTES, "bucket summary key is malformed")
                bucket = bucket_of(key[1:])
                require(counts[bucket] == 0, f"bucket {bucket} is both split and unsplit")
                hashes[bucket], counts[bucket], _subs = decode_summary(record)
                summaries[key[1:]] = record
        index.tree.set_buckets(hashes)
        return index

    @property
    def root(self) -> bytes:
        return self.tree.root

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: the tree, the unsplit buckets' entries and the split buckets' summaries, with
        CPython's per-bucket overhead."""
        entries = 2 * sum(map(len, map(itemgetter(0), self.leaves.values())))  # hks and leaves: same length
        summaries = (SUMMARY_BYTES + SUMMARY_OVERHEAD_BYTES) * len(self.summaries)
        return self.tree.nbytes + entries + BUCKET_OVERHEAD_BYTES * len(self.leaves) + summaries

    def stage(self, batch: Any, db: Any, changes: dict[bytes, bytes | None], known: dict[bytes, bytes | None],
              unrooted: tuple[bytes, ...] = ()) -> bytes:
        """Put state changes (`S`) and their index records into `batch`, update the in-memory index, return the
        new root. `known` holds committed values already read in this block (key -> value or None): a write of
        the value a key already has is dropped without hashing. Other no-op writes need no read: a bucket whose
        entries come out unchanged is not rewritten. `db` is read for split buckets' touched sub-buckets only.
        Keys starting with one of `unrooted` (a derived index's, ledger/derived_index.py) are written as they
        are and not hashed."""
        pending: dict[bytes, dict[bytes, bytes | None]] = {}
        put, delete = batch.put, batch.delete
        key_hash, leaf_of, prefix_of = hashed_key, leaf_hash, bucket_prefix
        for key, value in changes.items():
            if key in known and known[key] == value:
                continue
            if value is None:
                delete(STATE + key)
            else:
                put(STATE + key, value)
            if key.startswith(unrooted):
                continue
            hk = key_hash(key)
            leaf = None if value is None else leaf_of(key, value)
            prefix = prefix_of(hk)
            bucket_changes = pending.get(prefix)
            if bucket_changes is None:
                pending[prefix] = {hk: leaf}
            else:
                bucket_changes[hk] = leaf
        new_hashes: dict[int, bytes] = {}
        counts = self.counts
        reader = SubBucketReader(db)
        try:
            for prefix in sorted(pending):  # LevelDB key order: the reader's seeks mostly go forward
                bucket = bucket_of(prefix)
                count = counts[bucket]
                if count <= SPLIT_ABOVE:
                    changed = self._stage_small_bucket(batch, prefix, count, pending[prefix])
                else:
                    changed = self._stage_split_bucket(batch, reader, prefix, count, pending[prefix])
                if changed is not None:
                    new_hashes[bucket], counts[bucket] = changed
        finally:
            reader.close()
        return self.tree.set_buckets(new_hashes)

    def _stage_small_bucket(
        self, batch: Any, prefix: bytes, count: int, changes: dict[bytes, bytes | None]
    ) -> tuple[bytes, int] | None:
        """Apply `changes` to an unsplit bucket; (new hash, new count), None if its entries did not change."""
        hks, leaves = self.leaves.get(prefix, (b"", b""))
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
                    batch.delete(ENTRY + hk)
                elif leaves[at:end] != leaf:
                    leaves = leaves[:at] + leaf + leaves[end:]
                    batch.put(ENTRY + hk, leaf)
                else:
                    continue
            elif leaf is not None:
                hks, leaves = hks[:at] + hk + hks[at:], leaves[:at] + leaf + leaves[at:]
                batch.put(ENTRY + hk, leaf)
            else:
                continue
            changed = True
        if not changed:
            return None
        count = len(hks) // HASH_BYTES
        if count > SPLIT_ABOVE:  # becomes split: its entries move from `H` to `P`
            entries = [(hks[i : i + HASH_BYTES], leaves[i : i + HASH_BYTES]) for i in range(0, len(hks), HASH_BYTES)]
            for hk, _leaf in entries:
                batch.delete(ENTRY + hk)  # including the ones just put: the batch applies in order
            self.leaves.pop(prefix, None)
            return self._put_bucket(batch, prefix, entries), count
        if count:
            self.leaves[prefix] = (hks, leaves)
        else:
            del self.leaves[prefix]
        return bucket_hash((leaves,)), count

    def _stage_split_bucket(
        self, batch: Any, reader: SubBucketReader, prefix: bytes, count: int, changes: dict[bytes, bytes | None]
    ) -> tuple[bytes, int] | None:
        """Apply `changes` to a split bucket, rereading only its touched sub-buckets; make it unsplit again if it
        falls to SPLIT_ABOVE entries or fewer. (new hash, new count), None if its entries did not change."""
        summary = self.summaries.get(prefix)
        require(summary is not None, f"split bucket {prefix.hex()} has no summary")
        assert summary is not None
        _old_hash, stored_count, old_subs = decode_summary(summary)
        require(stored_count == count, f"bucket {prefix.hex()} summary disagrees with its count")
        subs = bytearray(old_subs)
        by_sub: dict[int, dict[bytes, bytes | None]] = {}
        for hk, leaf in changes.items():
            by_sub.setdefault(sub_bucket_of(hk), {})[hk] = leaf
        merged: dict[int, tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes | None]]]] = {}
        for sub, sub_changes in by_sub.items():
            entries: dict[bytes, bytes | None] = dict(reader.read(prefix, sub))
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
                        batch.delete(SPLIT_ENTRY + hk)
                    else:
                        batch.put(SPLIT_ENTRY + hk, leaf)
                subs[sub * HASH_BYTES : (sub + 1) * HASH_BYTES] = bucket_hash([leaf for _hk, leaf in present])
            h = split_hash(bytes(subs))
            record = self.summaries[prefix] = encode_summary(h, count, bytes(subs))
            batch.put(SUMMARY + prefix, record)
            return h, count
        # Fell to SPLIT_ABOVE entries or fewer: it becomes an unsplit bucket (sub order is hk order).
        everything: list[tuple[bytes, bytes]] = []
        for sub in range(FANOUT):
            everything += merged[sub][0] if sub in merged else sorted(reader.read(prefix, sub).items())
        require(len(everything) == count, f"split bucket {prefix.hex()} lost entries while merging")
        with reader.db.iterator(prefix=SPLIT_ENTRY + prefix, include_value=False) as it:
            for key in it:
                batch.delete(key)
        batch.delete(SUMMARY + prefix)
        del self.summaries[prefix]
        if not everything:
            return bucket_hash(()), 0
        self.leaves[prefix] = (b"".join([hk for hk, _ in everything]), b"".join([leaf for _, leaf in everything]))
        return self._put_bucket(batch, prefix, everything), count

    def _put_bucket(self, batch: Any, prefix: bytes, entries_in_hk_order: list[tuple[bytes, bytes]]) -> bytes:
        """`put_bucket`, and the summary it writes (if it writes one) held in memory."""
        return put_bucket(batch, prefix, entries_in_hk_order, self.summaries.__setitem__)

    def check(self, db: Any, state: Iterable[tuple[bytes, bytes]]) -> None:
        """Require the stored index (H, P, R) and this in-memory index to match a from-scratch build over
        `state` (every (key, value) of the committed state), and a reload of the stored records."""
        expected: dict[bytes, bytes] = {}
        hashes = bucket_records(sorted((hashed_key(k), leaf_hash(k, v)) for k, v in state), expected.__setitem__)
        stored = {k: v for tag in (ENTRY, SPLIT_ENTRY, SUMMARY) for k, v in db.iterator(prefix=tag)}
        require(stored == expected, "stored root index (H, P, R) differs from the state")
        require(self.tree.same_as(RootTree.from_buckets(hashes)), "in-memory root tree differs from the state")
        loaded = BucketIndex.load(db)
        require(loaded.tree.same_as(self.tree), "in-memory root tree differs from the stored buckets")
        require(loaded.counts == self.counts and loaded.leaves == self.leaves, "in-memory bucket entries differ")
        require(loaded.summaries == self.summaries, "in-memory split bucket summaries differ from the stored ones")


def read_sub_bucket(db: Any, prefix: bytes, sub: int) -> dict[bytes, bytes]:
    """The committed entries {hk: leaf} of one sub-bucket of a split bucket (one read; `stage` reads many
    through a `SubBucketReader`)."""
    start, stop = _sub_bucket_bounds(prefix, sub)
    with db.iterator(start=start, stop=stop) as it:
        return {key[1:]: leaf for key, leaf in it}


class SubBucketReader:
    """Reads committed sub-buckets during one `stage`, through one LevelDB iterator that seeks from one to the
    next. A new iterator per sub-bucket was ~40% dearer than a seek at 2 M entries (docs/PERFORMANCE.md, "Sixth
    pass"), and a block whose txs touch split buckets reads one per changed key. The iterator is made at the
    first read and reads the state as it was then: nothing is written to `db` before the block's batch, after
    `stage` has closed the reader."""

    __slots__ = ("_it", "db")

    def __init__(self, db: Any) -> None:
        self.db = db
        self._it: Any = None

    def read(self, prefix: bytes, sub: int) -> dict[bytes, bytes]:
        start, stop = _sub_bucket_bounds(prefix, sub)
        it = self._it
        if it is None:
            it = self._it = self.db.iterator()
        it.seek(start)
        entries: dict[bytes, bytes] = {}
        for key, leaf in it:
            if key >= stop:
                break
            entries[key[1:]] = leaf
        return entries

    def close(self) -> None:
        if self._it is not None:
            self._it.close()
            self._it = None


def _sub_bucket_bounds(prefix: bytes, sub: int) -> tuple[bytes, bytes]:
    """The `P` keys of one sub-bucket are those in [start, stop): stop is the next sub-bucket's first key (the
    next bucket's, or the next tag's, for the last), so that a scan never hands back an entry of the neighbour."""
    start = SPLIT_ENTRY + sub_bucket_start(prefix, sub)
    stop = SPLIT_ENTRY + sub_bucket_start(prefix, sub + 1) if sub + 1 < FANOUT else _after_bucket(prefix)
    return start, stop


def _after_bucket(prefix: bytes) -> bytes:
    """The first `P` key past every entry of bucket `prefix` (the next bucket's first, or the next tag)."""
    n = int.from_bytes(prefix, "big") + 1
    if n < BUCKET_COUNT:
        return SPLIT_ENTRY + n.to_bytes(BUCKET_PREFIX_BYTES, "big")
    return bytes([SPLIT_ENTRY[0] + 1])


def put_bucket(batch: Any, prefix: bytes, entries_in_hk_order: list[tuple[bytes, bytes]],
               summary_written: Callable[[bytes, bytes], None] | None = None) -> bytes:
    """Put a non-empty bucket's records (an `H` per entry; or, over SPLIT_ABOVE entries, a `P` per entry and
    its summary `R`, also handed to `summary_written(prefix, record)`); return its hash. Does not delete
    records of its previous shape."""
    count = len(entries_in_hk_order)
    require(count > 0, "an empty bucket has no records")
    if count <= SPLIT_ABOVE:
        for hk, leaf in entries_in_hk_order:
            batch.put(ENTRY + hk, leaf)
        return bucket_hash([leaf for _hk, leaf in entries_in_hk_order])
    for hk, leaf in entries_in_hk_order:
        batch.put(SPLIT_ENTRY + hk, leaf)
    sub_hashes = sub_bucket_hashes(entries_in_hk_order)
    h = split_hash(sub_hashes)
    record = encode_summary(h, count, sub_hashes)
    batch.put(SUMMARY + prefix, record)
    if summary_written is not None:
        summary_written(prefix, record)
    return h


class _PutOnly:
    """`put_bucket`'s batch when only the records are wanted."""

    __slots__ = ("put",)

    def __init__(self, put: Callable[[bytes, bytes], None]) -> None:
        self.put = put


def by_bucket(entries_in_hk_order: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """(bucket prefix, its entries) for each non-empty bucket, from all (hk, leaf) entries in strictly
    increasing hk order. Streams: one bucket in memory at a time."""
    members: list[tuple[bytes, bytes]] = []
    last_hk = last_prefix = b""
    prefix_of = bucket_prefix
    for entry in entries_in_hk_order:
        hk = entry[0]
        if not (hk > last_hk and len(hk) == HASH_BYTES):
            require(False, "entries must come in strictly increasing hk order")
        prefix = prefix_of(hk)
        if members and prefix != last_prefix:
            yield last_prefix, members
            members = []
        members.append(entry)
        last_hk, last_prefix = hk, prefix
    if members:
        yield last_prefix, members


def bucket_records(
    entries_in_hk_order: Iterable[tuple[bytes, bytes]], put: Callable[[bytes, bytes], None]
) -> dict[int, bytes]:
    """Every bucket's records from all (hk, leaf) entries in strictly increasing hk order, through `put`;
    returns the non-empty buckets' hashes."""
    target = _PutOnly(put)
    return {bucket_of(prefix): put_bucket(target, prefix, members) for prefix, members in by_bucket(entries_in_hk_order)}
