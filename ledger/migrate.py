"""Older store layouts, brought to the current one (`ledger.schema.STORE_FORMAT`) when a store is opened.

Kept apart so that the code which reads and writes the current layout knows nothing of the older ones; what
each older format was is in docs/STORAGE.md, "Store formats".

- No `M format` record: a new (empty) directory; it is stamped with the current format.
- Format 3 (no `M index`: every state key under the root): stamped format 4 as it is, and bound to the index it
  is opened with (`bind_index`) if it holds none of that index's keys: its root is then the same. One that
  does hashed them into its root: refused, it is rebuilt from the Raft log or a snapshot (docs/STORAGE.md).
- Format 2 (same tree and roots; an `H` for every key, and the tree's inner nodes stored as `N` records): its
  root index is rewritten in format 3 in one batch, checked against the head's root before anything is written;
  then as format 3.
- Format 1 (roots without split buckets): refused. Its roots differ, so it cannot be rewritten in place; the
  node rebuilds its state from the Raft log or a snapshot.
"""

from __future__ import annotations

from typing import Any

from consensus.invariant import require
from ledger.buckets import by_bucket, is_split, put_bucket
from ledger.derived_index import DerivedIndex, decode_prefixes, encode_prefixes
from ledger.schema import ENTRY, FORMAT_KEY, HEAD_KEY, INDEX_KEY, STATE, STORE_FORMAT, decode_head
from ledger.state_root import EMPTY_ROOT, RootTree, bucket_hash, bucket_of

STORE_FORMAT_2 = b"2"
STORE_FORMAT_3 = b"3"
NODE_2 = b"N"
"""Format 2's stored inner nodes (`N` + level + bucket prefix): removed by the migration."""


def to_current_format(db: Any, index: DerivedIndex, *, sync: bool) -> None:
    """Bring the store in `db` to STORE_FORMAT bound to `index`, or refuse it (InvariantViolation) with nothing
    written."""
    fmt = db.get(FORMAT_KEY)
    if fmt == STORE_FORMAT_2:
        _migrate_from_format_2(db, sync)
        fmt = STORE_FORMAT_3
    if fmt is None or fmt == STORE_FORMAT_3:
        bind_index(db, index, fmt, sync=sync)
        return
    require(fmt == STORE_FORMAT, f"state store format {fmt!r}, this code reads {STORE_FORMAT!r}")
    record = db.get(INDEX_KEY)
    require(record is not None, "format 4 store without its `M index` record")
    stored = decode_prefixes(record)
    require(stored == tuple(sorted(index.prefixes)),
            f"the store's derived index is {stored!r}, it is opened with {tuple(sorted(index.prefixes))!r}: "
            "open it with the application's index (a store opened with another would fork its state root)")


def bind_index(db: Any, index: DerivedIndex, fmt: bytes | None, *, sync: bool) -> None:
    """Stamp a new or format 3 store format 4 with `index`'s prefixes, after requiring that it holds none of
    their keys (a format 3 store hashed every state key into its root)."""
    if fmt is not None:
        for prefix in index.prefixes:
            with db.iterator(prefix=STATE + prefix, include_value=False) as it:
                found = next(it, None)
            require(found is None,
                    f"format {fmt.decode()} store holds {prefix!r} keys under its state root, which this code keeps "
                    "beside it as a derived index: rebuild the store from the Raft log or a snapshot "
                    "(docs/STORAGE.md, \"Store formats\")")
    batch = db.write_batch(sync=sync)
    batch.put(INDEX_KEY, encode_prefixes(index))
    batch.put(FORMAT_KEY, STORE_FORMAT)
    batch.write()


def _migrate_from_format_2(db: Any, sync: bool) -> None:
    """Rewrite a format 2 store's root index in format 3, in one batch: its `H` entries stay, except those of
    split buckets, which move to `P` with an `R` summary; its stored inner nodes `N` go. Same state, same root
    (checked against the head before anything is written)."""
    batch = db.write_batch(sync=sync)
    hashes: dict[int, bytes] = {}
    with db.iterator(prefix=ENTRY) as it:
        for prefix, members in by_bucket((key[1:], leaf) for key, leaf in it):
            if is_split(len(members)):
                for hk, _leaf in members:
                    batch.delete(ENTRY + hk)
                hashes[bucket_of(prefix)] = put_bucket(batch, prefix, members)
            else:
                hashes[bucket_of(prefix)] = bucket_hash([leaf for _hk, leaf in members])
    head = db.get(HEAD_KEY)
    claimed = EMPTY_ROOT if head is None else decode_head(head).state_root
    require(RootTree.from_buckets(hashes).root == claimed, "format 2 store: its leaf index does not hash to its root")
    with db.iterator(prefix=NODE_2, include_value=False) as it:
        for key in it:
            batch.delete(key)
    batch.put(FORMAT_KEY, STORE_FORMAT_3)
    batch.write()
