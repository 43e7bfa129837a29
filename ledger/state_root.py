"""The state root: one 32-byte hash committing to every (key, value) of the state, and the only home of its
hash formulas (every module that hashes for the root calls the functions here).

Design (a fixed-depth hexary Merkle tree over hashed-key buckets):
- Each entry has a leaf hash `sha256(0x00 || u32be(len(key)) || key || value)` (`leaf_hash`), and is placed by
  its hashed key `hk = sha256(key)` (`hashed_key`) in bucket `hk[0:2]` (`bucket_prefix`, `bucket_of`; 65,536
  buckets = 16^DEPTH with DEPTH = 4 nibbles).
- A bucket of at most SPLIT_ABOVE (16) entries hashes as `sha256(0x02 || leaf hashes of its entries in hk
  order)` (`bucket_hash`); an empty bucket hashes as `sha256(0x02)`. A bucket of more entries is split by the
  next nibble of hk (`sub_bucket_of`) into 16 sub-buckets, each hashed like a small bucket, and hashes as
  `sha256(0x03 || sub_0 || ... || sub_15)` (`split_hash`). Whether a bucket is split depends only on its entry
  count, so the root is still a function of the state set; the store keeps, per split bucket, a record of its
  count and 16 sub-bucket hashes (ledger/buckets.py), so a change rereads only its sub-bucket.
- Above the buckets sit DEPTH levels of 16-ary inner nodes: node (level l, prefix p of l nibbles) hashes as
  `sha256(0x01 || child_0 || ... || child_15)` (`node_hash`). The root is node (0, 0). A subtree with no entries
  has a fixed hash per level (`EMPTY[l]`).
- Domain bytes 0x00 / 0x01 / 0x02 / 0x03 keep leaves, inner nodes, buckets and split buckets from passing for one
  another; the length prefix keeps (key, value) splits unambiguous. The root depends only on the set of entries,
  never on the order of writes or blocks, so every node that applies the same history gets the same root.

Two implementations of the tree above the buckets: `state_root_of` / `tree_from_buckets` build it from scratch,
level by level (the reference the paranoid checks and tests compare against); `RootTree` is the incremental one
the store keeps in memory (ledger/buckets.py): every hash above the entries, in flat arrays, updated in place.
Cost per block: for each changed key, rehash its bucket (at most 16 entries) or, in a split bucket, its
sub-bucket (about N/2^20 entries: 4 at 4 M keys, 10 at 10^7) and its 548-byte summary; then DEPTH inner nodes of
16 children, in memory; shared ancestors are updated once per block. Near constant up to ~10^7 keys. (Format 1,
without splitting, reread N/65,536 leaves per changed key: ~61 at 4 M keys, half of block time.)
Storage overhead: a 32-byte leaf-hash entry per key and one 548-byte summary per split bucket (~0.3% of buckets
at 500,000 keys, nearly all from ~2 M keys; at most 65,536, ~36 MB); no inner node is stored.

Properties: collision resistance of the root reduces to sha256's; the tree has no inclusion proofs for light
clients in this version (a bucket proof would be its entries plus 4 x 15 sibling hashes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from consensus.invariant import require

DEPTH = 4
"""Inner levels above the buckets; buckets are addressed by the first DEPTH nibbles (2 bytes) of sha256(key)."""
FANOUT = 16
BUCKET_COUNT = FANOUT**DEPTH
HASH_BYTES = 32
BUCKET_PREFIX_BYTES = DEPTH // 2
"""A bucket is named by the first DEPTH nibbles of its entries' hashed keys: this many bytes."""

_LEAF = b"\x00"
_NODE = b"\x01"
_BUCKET = b"\x02"
_SPLIT = b"\x03"

SPLIT_ABOVE = 16
"""A bucket with more entries than this is hashed as 16 sub-buckets (see the module docstring)."""
_NODE_BYTES = FANOUT * HASH_BYTES

_sha256 = hashlib.sha256


# --- The formulas ------------------------------------------------------------------------------------------------


def hashed_key(key: bytes) -> bytes:
    """Where a key sits in the tree: its bucket and its order within it."""
    return _sha256(key).digest()


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return _sha256(_LEAF + len(key).to_bytes(4, "big") + key + value).digest()


def bucket_prefix(hk: bytes) -> bytes:
    """The bucket of a hashed key, as the bytes that start every hk in it (store keys use these)."""
    return hk[:BUCKET_PREFIX_BYTES]


def bucket_of(hk: bytes) -> int:
    """The bucket of a hashed key, as its index 0 .. BUCKET_COUNT - 1."""
    return int.from_bytes(hk[:BUCKET_PREFIX_BYTES], "big")


def sub_bucket_of(hk: bytes) -> int:
    """The sub-bucket of a split bucket: the nibble of hk after the bucket's DEPTH nibbles."""
    return hk[BUCKET_PREFIX_BYTES] >> 4


def sub_bucket_start(prefix: bytes, sub: int) -> bytes:
    """The smallest hk prefix of sub-bucket `sub` of bucket `prefix` (its hks follow in order, until
    `sub_bucket_of` changes)."""
    return prefix + bytes([sub << 4])


def bucket_hash(leaves_in_hk_order: Iterable[bytes]) -> bytes:
    """An unsplit bucket's (or a sub-bucket's) hash. The leaves may come one by one or already concatenated:
    the hash is over their bytes in order."""
    h = _sha256(_BUCKET)
    for leaf in leaves_in_hk_order:
        h.update(leaf)
    return h.digest()


def split_hash(sub_hashes: bytes) -> bytes:
    require(len(sub_hashes) == FANOUT * HASH_BYTES, "a split bucket has 16 sub-bucket hashes")
    return _sha256(_SPLIT + sub_hashes).digest()


def node_hash(children: bytes | bytearray | memoryview) -> bytes:
    """An inner node's hash from its 16 child hashes, concatenated."""
    return _sha256(_NODE + children).digest()


def sub_bucket_hashes(entries_in_hk_order: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A split bucket's 16 sub-bucket hashes, concatenated, from its (hk, leaf_hash) pairs in hk order."""
    subs: list[list[bytes]] = [[] for _ in range(FANOUT)]
    for hk, leaf in entries_in_hk_order:
        subs[sub_bucket_of(hk)].append(leaf)
    return b"".join(bucket_hash(leaves) for leaves in subs)


def _empty_hashes() -> tuple[bytes, ...]:
    hashes = [bucket_hash(())]  # level DEPTH: an empty bucket
    for _ in range(DEPTH):
        hashes.append(node_hash(hashes[-1] * FANOUT))
    return tuple(reversed(hashes))


EMPTY: tuple[bytes, ...] = _empty_hashes()
"""EMPTY[l]: hash of an empty subtree at level l (EMPTY[0] = root of the empty state, EMPTY[DEPTH] = bucket)."""
EMPTY_ROOT = EMPTY[0]


# --- From scratch: the reference -------------------------------------------------------------------------------


def bucket_entry(entries_in_hk_order: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes | None]:
    """One bucket's (hash, split record or None) from its (hk, leaf_hash) pairs in increasing hk order; the
    split record is the u32be entry count, then the 16 sub-bucket hashes."""
    if len(entries_in_hk_order) <= SPLIT_ABOVE:
        return bucket_hash(leaf for _hk, leaf in entries_in_hk_order), None
    sub_hashes = sub_bucket_hashes(entries_in_hk_order)
    return split_hash(sub_hashes), len(entries_in_hk_order).to_bytes(4, "big") + sub_hashes


TreeNodeId = tuple[int, int]
"""(level, prefix): level 0..DEPTH-1, prefix = the first `level` nibbles of the bucket number."""


def tree_from_buckets(bucket_hashes: Mapping[int, bytes]) -> tuple[bytes, dict[TreeNodeId, bytes]]:
    """Build the whole tree from the non-empty buckets' hashes, level by level: (root, the 16 child hashes of
    every non-empty inner node). Independent of `RootTree`, so each checks the other."""
    nodes: dict[TreeNodeId, bytes] = {}
    hashes: dict[int, bytes] = {}
    for bucket, h in bucket_hashes.items():
        require(0 <= bucket < BUCKET_COUNT and len(h) == HASH_BYTES, f"bad bucket hash for {bucket}")
        hashes[bucket] = h
    for level in range(DEPTH - 1, -1, -1):
        empty_record = EMPTY[level + 1] * FANOUT
        records: dict[int, bytearray] = {}
        for child, h in hashes.items():
            record = records.get(child // FANOUT)
            if record is None:
                record = records[child // FANOUT] = bytearray(empty_record)
            slot = child % FANOUT
            record[slot * HASH_BYTES : (slot + 1) * HASH_BYTES] = h
        hashes = {}
        for parent, record in records.items():
            if record == empty_record:
                hashes[parent] = EMPTY[level]
            else:
                nodes[(level, parent)] = bytes(record)
                hashes[parent] = node_hash(record)
    require(set(hashes) <= {0}, "root level must have a single node")
    return hashes.get(0, EMPTY_ROOT), nodes


def buckets_from_sorted_leaves(
    entries: Iterable[tuple[bytes, bytes]],
) -> dict[int, tuple[bytes, bytes | None]]:
    """Each non-empty bucket's (hash, split record or None) from (hk, leaf_hash) pairs given in increasing hk
    order (streams; one bucket in memory)."""
    buckets: dict[int, tuple[bytes, bytes | None]] = {}
    current: int | None = None
    members: list[tuple[bytes, bytes]] = []
    last_hk = b""
    for hk, leaf in entries:
        require(hk > last_hk, "leaves must come in strictly increasing hashed-key order")
        last_hk = hk
        b = bucket_of(hk)
        if b != current:
            if current is not None:
                buckets[current] = bucket_entry(members)
            current, members = b, []
        members.append((hk, leaf))
    if current is not None:
        buckets[current] = bucket_entry(members)
    return buckets


def bucket_hashes(buckets: Mapping[int, tuple[bytes, bytes | None]]) -> dict[int, bytes]:
    return {b: entry[0] for b, entry in buckets.items()}


def state_root_of(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The state root computed from scratch over (key, value) pairs (the reference the incremental root must
    equal)."""
    leaves = sorted((hashed_key(k), leaf_hash(k, v)) for k, v in items)
    root, _nodes = tree_from_buckets(bucket_hashes(buckets_from_sorted_leaves(leaves)))
    return root


# --- Incremental: the tree kept in memory ------------------------------------------------------------------------


class RootTree:
    """Every hash of the tree above the entries, in memory: one flat array of 32-byte hashes per level (level
    DEPTH holds the 65,536 bucket hashes: 2 MB; levels 0-3 together ~140 KB).

    Built from the bucket hashes and updated in place: a changed bucket rehashes only its DEPTH ancestors, each
    one `node_hash` over a 512-byte slice of the level below, with no record read or written. An empty subtree
    needs no special case: the arrays start as EMPTY[level], and EMPTY[l] is by definition the node hash of
    sixteen EMPTY[l + 1]."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels = [bytearray(EMPTY[level] * FANOUT**level) for level in range(DEPTH + 1)]

    @classmethod
    def from_buckets(cls, hashes: Mapping[int, bytes]) -> RootTree:
        tree = cls()
        tree.set_buckets(hashes)
        return tree

    @property
    def root(self) -> bytes:
        return bytes(self._levels[0])

    @property
    def nbytes(self) -> int:
        """Bytes of hashes held (levels 0 to DEPTH)."""
        return sum(map(len, self._levels))

    def bucket_hash(self, bucket: int) -> bytes:
        return bytes(self._levels[DEPTH][bucket * HASH_BYTES : (bucket + 1) * HASH_BYTES])

    def set_buckets(self, hashes: Mapping[int, bytes]) -> bytes:
        """Set these buckets' hashes, rehash their ancestors once each, return the new root."""
        buckets = self._levels[DEPTH]
        dirty: set[int] = set()
        for bucket, h in hashes.items():
            if not (0 <= bucket < BUCKET_COUNT and len(h) == HASH_BYTES):
                require(False, f"bad bucket hash for {bucket}")  # formatted only on failure: a hot loop
            buckets[bucket * HASH_BYTES : (bucket + 1) * HASH_BYTES] = h
            dirty.add(bucket >> 4)
        hash_node = node_hash
        for level in range(DEPTH - 1, -1, -1):
            hashes_here = self._levels[level]
            parents: set[int] = set()
            with memoryview(self._levels[level + 1]) as below:
                for node in dirty:
                    start = node * _NODE_BYTES
                    hashes_here[node * HASH_BYTES : (node + 1) * HASH_BYTES] = hash_node(
                        below[start : start + _NODE_BYTES]
                    )
                    parents.add(node >> 4)
            dirty = parents
        return self.root

    def same_as(self, other: RootTree) -> bool:
        return self._levels == other._levels
