"""The state root: one 32-byte hash committing to every (key, value) of the state, updated incrementally.

Design (a fixed-depth hexary Merkle tree over hashed-key buckets):
- Each entry has a leaf hash `sha256(0x00 || u32be(len(key)) || key || value)`, and is placed by its hashed key
  `hk = sha256(key)` in bucket `hk[0:2]` (65,536 buckets = 16^DEPTH with DEPTH = 4 nibbles).
- A bucket of at most SPLIT_ABOVE (16) entries hashes as `sha256(0x02 || leaf hashes of its entries in hk
  order)`; an empty bucket hashes as `sha256(0x02)`. A bucket of more entries is split by the next nibble of hk
  (`hk[2] >> 4`) into 16 sub-buckets, each hashed like a small bucket, and hashes as
  `sha256(0x03 || sub_0 || ... || sub_15)`. Whether a bucket is split depends only on its entry count, so the
  root is still a function of the state set; the store keeps, per split bucket, a record of its count and 16
  sub-bucket hashes, so a change rereads only its sub-bucket.
- Above the buckets sit DEPTH levels of 16-ary inner nodes: node (level l, prefix p of l nibbles) hashes as
  `sha256(0x01 || child_0 || ... || child_15)`. The root is node (0, 0). A subtree with no entries has a fixed
  hash per level (`EMPTY[l]`).
- Domain bytes 0x00 / 0x01 / 0x02 / 0x03 keep leaves, inner nodes, buckets and split buckets from passing for one
  another; the length prefix keeps (key, value) splits unambiguous. The root depends only on the set of entries, never on the order
  of writes or blocks, so every node that applies the same history gets the same root.

Two implementations of the same function: `state_root_of` / `tree_from_buckets` / `update_root` build it from
scratch (the reference, and what tests compare against); `RootTree` is the incremental one the store keeps in
memory (store format 3, ledger/store.py): every hash above the entries, in flat arrays, updated in place.
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
from collections.abc import Callable, Iterable, Mapping

from consensus.invariant import require

DEPTH = 4
"""Inner levels above the buckets; buckets are addressed by the first DEPTH nibbles (2 bytes) of sha256(key)."""
FANOUT = 16
BUCKET_COUNT = FANOUT**DEPTH
HASH_BYTES = 32

_LEAF = b"\x00"
_NODE = b"\x01"
_BUCKET = b"\x02"
_SPLIT = b"\x03"

SPLIT_ABOVE = 16
"""A bucket with more entries than this is hashed as 16 sub-buckets (see the module docstring)."""
SPLIT_RECORD_BYTES = 4 + FANOUT * HASH_BYTES
"""Stored per split bucket: u32be entry count, then the 16 sub-bucket hashes."""


def _empty_hashes() -> tuple[bytes, ...]:
    hashes = [hashlib.sha256(_BUCKET).digest()]  # level DEPTH: an empty bucket
    for _ in range(DEPTH):
        hashes.append(hashlib.sha256(_NODE + hashes[-1] * FANOUT).digest())
    return tuple(reversed(hashes))


EMPTY: tuple[bytes, ...] = _empty_hashes()
"""EMPTY[l]: hash of an empty subtree at level l (EMPTY[0] = root of the empty state, EMPTY[DEPTH] = bucket)."""
EMPTY_ROOT = EMPTY[0]


def hashed_key(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def leaf_hash(key: bytes, value: bytes) -> bytes:
    return hashlib.sha256(_LEAF + len(key).to_bytes(4, "big") + key + value).digest()


def bucket_of(hk: bytes) -> int:
    return int.from_bytes(hk[:2], "big")


def bucket_hash(leaves_in_hk_order: Iterable[bytes]) -> bytes:
    h = hashlib.sha256(_BUCKET)
    for leaf in leaves_in_hk_order:
        h.update(leaf)
    return h.digest()


def sub_bucket_of(hk: bytes) -> int:
    """The sub-bucket of a split bucket: the nibble of hk after the bucket's DEPTH nibbles."""
    return hk[2] >> 4


def split_hash(sub_hashes: bytes) -> bytes:
    require(len(sub_hashes) == FANOUT * HASH_BYTES, "a split bucket has 16 sub-bucket hashes")
    return hashlib.sha256(_SPLIT + sub_hashes).digest()


def bucket_entry(entries_in_hk_order: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes | None]:
    """One bucket's (hash, split record or None) from its (hk, leaf_hash) pairs in increasing hk order."""
    if len(entries_in_hk_order) <= SPLIT_ABOVE:
        return bucket_hash(leaf for _hk, leaf in entries_in_hk_order), None
    subs = [hashlib.sha256(_BUCKET) for _ in range(FANOUT)]
    for hk, leaf in entries_in_hk_order:
        subs[sub_bucket_of(hk)].update(leaf)
    sub_hashes = b"".join(h.digest() for h in subs)
    return split_hash(sub_hashes), len(entries_in_hk_order).to_bytes(4, "big") + sub_hashes


TreeNodeId = tuple[int, int]
"""(level, prefix): level 0..DEPTH-1, prefix = the first `level` nibbles of the bucket number."""
NodeLoader = Callable[[TreeNodeId], bytes | None]
"""Reads a stored node record (16 child hashes, 512 bytes), None if the subtree is empty."""


def update_root(
    changed_buckets: Mapping[int, bytes], load_node: NodeLoader
) -> tuple[bytes, dict[TreeNodeId, bytes | None]]:
    """Fold new bucket hashes into the stored tree.

    Returns the new root and the node records to write (None = delete: the subtree became empty). Touches
    each ancestor of a changed bucket once: DEPTH levels x (number of distinct ancestors).
    """
    if not changed_buckets:
        top = load_node((0, 0))
        return (EMPTY_ROOT if top is None else hashlib.sha256(_NODE + top).digest()), {}
    writes: dict[TreeNodeId, bytes | None] = {}
    child_hashes: dict[int, bytes] = dict(changed_buckets)  # prefix at level `level + 1` -> its new hash
    for level in range(DEPTH - 1, -1, -1):
        by_parent: dict[int, list[tuple[int, bytes]]] = {}
        for child_prefix, h in child_hashes.items():
            by_parent.setdefault(child_prefix // FANOUT, []).append((child_prefix % FANOUT, h))
        next_hashes: dict[int, bytes] = {}
        empty_record = EMPTY[level + 1] * FANOUT
        for parent, children in by_parent.items():
            record = bytearray(load_node((level, parent)) or empty_record)
            require(len(record) == FANOUT * HASH_BYTES, f"node ({level}, {parent}) record has bad length")
            for slot, h in children:
                record[slot * HASH_BYTES : (slot + 1) * HASH_BYTES] = h
            if record == empty_record:
                writes[(level, parent)] = None
                next_hashes[parent] = EMPTY[level]
            else:
                writes[(level, parent)] = bytes(record)
                next_hashes[parent] = hashlib.sha256(_NODE + record).digest()
        child_hashes = next_hashes
    require(set(child_hashes) <= {0}, "root level must have a single node")
    return child_hashes.get(0, EMPTY_ROOT), writes


def tree_from_buckets(bucket_hashes: Mapping[int, bytes]) -> tuple[bytes, dict[TreeNodeId, bytes]]:
    """Build the whole tree from the non-empty buckets' hashes: (root, every non-empty node record)."""
    root, writes = update_root(bucket_hashes, lambda _node: None)
    return root, {node: record for node, record in writes.items() if record is not None}


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


# --- The tree kept in memory, and the bucket encodings the store uses (store format 3) ---------------------------

ENTRY_BYTES = 2 * HASH_BYTES
"""A bucket entry as stored: hashed key (32 bytes) then leaf hash (32 bytes)."""
SUMMARY_BYTES = HASH_BYTES + 4 + FANOUT * HASH_BYTES
"""A split bucket's summary as stored: its hash, its u32be entry count, its 16 sub-bucket hashes."""
_NODE_BYTES = FANOUT * HASH_BYTES


class RootTree:
    """Every hash of the tree above the entries, in memory: one flat array of 32-byte hashes per level (level
    DEPTH holds the 65,536 bucket hashes: 2 MB; levels 0-3 together ~140 KB).

    Built from the bucket hashes (the store persists those, one small record per non-empty bucket) and updated
    in place: a changed bucket rehashes only its DEPTH ancestors, each one sha256 over a 512-byte slice of the
    level below, with no record read or written. An empty subtree needs no special case: the arrays start as
    EMPTY[level], and EMPTY[l] is by definition the node hash of sixteen EMPTY[l + 1]."""

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
        sha256 = hashlib.sha256
        for level in range(DEPTH - 1, -1, -1):
            hashes_here = self._levels[level]
            parents: set[int] = set()
            with memoryview(self._levels[level + 1]) as below:
                for node in dirty:
                    start = node * _NODE_BYTES
                    hashes_here[node * HASH_BYTES : (node + 1) * HASH_BYTES] = sha256(
                        _NODE + below[start : start + _NODE_BYTES]
                    ).digest()
                    parents.add(node >> 4)
            dirty = parents
        return self.root

    def same_as(self, other: RootTree) -> bool:
        return self._levels == other._levels


def decode_entries(record: bytes) -> dict[bytes, bytes]:
    """A stored entry list (hk || leaf, ...) as {hk: leaf}."""
    require(len(record) % ENTRY_BYTES == 0, "bucket entry record has a bad length")
    return {record[i : i + HASH_BYTES]: record[i + HASH_BYTES : i + ENTRY_BYTES]
            for i in range(0, len(record), ENTRY_BYTES)}


def encode_entries(entries_in_hk_order: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(hk + leaf for hk, leaf in entries_in_hk_order)


def encode_summary(bucket_hash_: bytes, count: int, sub_hashes: bytes) -> bytes:
    require(count > SPLIT_ABOVE and len(sub_hashes) == _NODE_BYTES, "a summary is of a split bucket")
    return bucket_hash_ + count.to_bytes(4, "big") + sub_hashes


def decode_summary(record: bytes) -> tuple[bytes, int, bytes]:
    """A split bucket's (hash, entry count, 16 sub-bucket hashes)."""
    count = int.from_bytes(record[HASH_BYTES : HASH_BYTES + 4], "big")
    require(len(record) == SUMMARY_BYTES and count > SPLIT_ABOVE, "bad split bucket summary")
    return record[:HASH_BYTES], count, record[HASH_BYTES + 4 :]


def sub_buckets(entries_in_hk_order: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
    """A split bucket's entries by sub-bucket (16 lists, each in hk order)."""
    subs: list[list[tuple[bytes, bytes]]] = [[] for _ in range(FANOUT)]
    for entry in entries_in_hk_order:
        subs[entry[0][2] >> 4].append(entry)
    return subs
