"""The state root tree: empty root, order independence, incremental update = from-scratch build."""

from __future__ import annotations

import hashlib
import random as stdlib_random
from pathlib import Path
from unittest import mock

import plyvel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import state_root
from ledger.buckets import SubBucketReader, read_sub_bucket
from ledger.schema import SPLIT_ENTRY, SUMMARY
from ledger.state_root import (
    BUCKET_COUNT,
    EMPTY,
    EMPTY_ROOT,
    SPLIT_ABOVE,
    bucket_entry,
    bucket_hash,
    bucket_hashes,
    bucket_of,
    buckets_from_sorted_leaves,
    hashed_key,
    leaf_hash,
    state_root_of,
    tree_from_buckets,
)


def _apply_to_model(state: dict[bytes, bytes], changes: dict[bytes, bytes | None]) -> set[int]:
    """Apply a block's changes (None = delete) to the model state; returns the buckets they touched."""
    touched: set[int] = set()
    for key, value in changes.items():
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
        touched.add(bucket_of(hashed_key(key)))
    return touched


def _bucket_hashes_from_scratch(state: dict[bytes, bytes], buckets: set[int]) -> dict[int, bytes]:
    """The model: each bucket's hash recomputed from every entry of the state that falls in it."""
    hashes = {}
    for b in buckets:
        leaves = sorted((hashed_key(k), leaf_hash(k, v)) for k, v in state.items() if bucket_of(hashed_key(k)) == b)
        hashes[b] = bucket_entry(leaves)[0]
    return hashes

def test_empty_state_has_the_empty_root() -> None:
    assert state_root_of([]) == EMPTY_ROOT == EMPTY[0]
    assert len(EMPTY) == 5 and len(set(EMPTY)) == 5
    assert BUCKET_COUNT == 65536


def test_root_depends_on_content_not_on_order() -> None:
    items = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(300)]
    shuffled = list(items)
    stdlib_random.Random(4).shuffle(shuffled)
    assert state_root_of(items) == state_root_of(shuffled)
    assert state_root_of(items) != state_root_of(items[:-1])
    changed = [*items[:-1], (items[-1][0], b"other")]
    assert state_root_of(items) != state_root_of(changed)


def test_key_value_split_is_unambiguous() -> None:
    assert leaf_hash(b"ab", b"c") != leaf_hash(b"a", b"bc")
    assert state_root_of([(b"ab", b"c")]) != state_root_of([(b"a", b"bc")])


def test_bucket_hash_of_nothing_is_the_empty_bucket() -> None:
    assert bucket_hash([]) == EMPTY[-1]


def _incremental(steps: list[dict[bytes, bytes | None]]) -> tuple[bytes, dict[bytes, bytes]]:
    """Apply change sets through RootTree.set_buckets, bucket by bucket, like the store does."""
    tree = state_root.RootTree()
    state: dict[bytes, bytes] = {}
    for changes in steps:
        new_buckets = _bucket_hashes_from_scratch(state, _apply_to_model(state, changes))
        root = tree.set_buckets(new_buckets)
        full = bucket_hashes(
            buckets_from_sorted_leaves(sorted((hashed_key(k), leaf_hash(k, v)) for k, v in state.items()))
        )
        full_root, _full_nodes = tree_from_buckets(full)
        assert root == full_root and tree.same_as(state_root.RootTree.from_buckets(full))  # every node the same
    return tree.root, state


_small_keys = st.binary(min_size=1, max_size=2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(_small_keys, st.none() | st.binary(max_size=3), max_size=12), max_size=8))
def test_incremental_root_equals_from_scratch(steps: list[dict[bytes, bytes | None]]) -> None:
    root, state = _incremental(steps)
    assert root == state_root_of(state.items())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.dictionaries(_small_keys, st.none() | st.binary(max_size=3), max_size=40), max_size=6))
def test_incremental_root_equals_from_scratch_with_split_buckets(steps: list[dict[bytes, bytes | None]]) -> None:
    """With a threshold of 0 every non-empty bucket is split, so the split rule is exercised by small states."""
    with mock.patch.object(state_root, "SPLIT_ABOVE", 0):
        root, state = _incremental(steps)
        assert root == state_root_of(state.items())


def test_a_bucket_splits_above_16_entries() -> None:
    """Up to SPLIT_ABOVE entries a bucket hashes its leaves; one more and it hashes 16 sub-bucket hashes, the
    sub-bucket being the nibble of hk after the bucket's 16 bits."""
    assert SPLIT_ABOVE == 16
    entries = [(bytes([0, 0, i * 8]) + bytes(29), hashlib.sha256(bytes([i])).digest()) for i in range(17)]
    small_hash, small_record = bucket_entry(entries[:16])
    assert small_record is None
    assert small_hash == hashlib.sha256(b"\x02" + b"".join(leaf for _hk, leaf in entries[:16])).digest()
    big_hash, record = bucket_entry(entries)
    subs = [hashlib.sha256(b"\x02") for _ in range(16)]
    for hk, leaf in entries:
        subs[hk[2] >> 4].update(leaf)
    sub_hashes = b"".join(h.digest() for h in subs)
    assert record == (17).to_bytes(4, "big") + sub_hashes
    assert big_hash == hashlib.sha256(b"\x03" + sub_hashes).digest()
    assert buckets_from_sorted_leaves(entries) == {0: (big_hash, record)}


def test_deleting_everything_returns_to_the_empty_root() -> None:
    keys = [f"key-{i}".encode() for i in range(50)]
    root, state = _incremental([{k: b"v" for k in keys}, {k: None for k in keys}])
    assert state == {} and root == EMPTY_ROOT


def test_no_change_keeps_the_root() -> None:
    root, _ = _incremental([{b"a": b"1"}])
    buckets = {bucket_of(hashed_key(b"a")): bucket_hash([leaf_hash(b"a", b"1")])}
    tree = state_root.RootTree.from_buckets(buckets)
    assert tree_from_buckets(buckets)[0] == root
    assert tree.set_buckets({}) == root


@settings(max_examples=40, deadline=None)
@given(st.lists(st.dictionaries(_small_keys, st.none() | st.binary(max_size=3), max_size=30), max_size=8),
       st.booleans())
def test_the_in_memory_tree_follows_the_from_scratch_root(
    steps: list[dict[bytes, bytes | None]], split_everything: bool
) -> None:
    """RootTree, updated bucket by bucket as the store does, always has the from-scratch root."""
    with mock.patch.object(state_root, "SPLIT_ABOVE", 0 if split_everything else SPLIT_ABOVE):
        tree = state_root.RootTree()
        assert tree.root == EMPTY_ROOT
        state: dict[bytes, bytes] = {}
        for changes in steps:
            new_hashes = _bucket_hashes_from_scratch(state, _apply_to_model(state, changes))
            assert tree.set_buckets(new_hashes) == state_root_of(state.items()) == tree.root
        rebuilt = state_root.RootTree.from_buckets(
            bucket_hashes(buckets_from_sorted_leaves(sorted((hashed_key(k), leaf_hash(k, v)) for k, v in state.items())))
        )
        assert rebuilt.same_as(tree)


@pytest.mark.parametrize("prefix", [b"\x00\x00", b"\x12\x34", b"\xff\xff"])
def test_a_sub_bucket_read_is_exactly_its_entries(tmp_path: Path, prefix: bytes) -> None:
    """`read_sub_bucket` and a `SubBucketReader` are bounded by their neighbours' keys: entries of the
    sub-buckets beside it, of the buckets beside it (also past the last bucket) and of the other record tags
    never leak in, whichever sub-bucket the reader's one iterator read before."""
    db = plyvel.DB(str(tmp_path / "db"), create_if_missing=True)
    try:
        n = int.from_bytes(prefix, "big")
        wanted: dict[int, dict[bytes, bytes]] = {sub: {} for sub in range(16)}
        neighbours = [p.to_bytes(2, "big") for p in (n - 1, n + 1) if 0 <= p < 1 << 16]
        for i in range(16 * 3):
            sub = i % 16
            hk = prefix + bytes([(sub << 4) | (i % 7)]) + hashlib.sha256(b"%d" % i).digest()[:29]
            wanted[sub][hk] = hashlib.sha256(hk).digest()
            db.put(SPLIT_ENTRY + hk, wanted[sub][hk])
        for other in neighbours:  # the next and the previous bucket, first and last sub-bucket
            for edge in (b"\x00", b"\xff"):
                db.put(SPLIT_ENTRY + other + edge + b"\x00" * 29, b"n" * 32)
        db.put(b"Q" + b"\x00" * 32, b"q" * 32)  # the tag after P: past the last bucket
        db.put(SUMMARY + prefix, b"r" * 32)
        for sub in range(16):
            assert read_sub_bucket(db, prefix, sub) == wanted[sub]
        reader = SubBucketReader(db)
        try:
            for sub in [*range(16), 15, 3, 0]:  # forward, as `stage` reads, then back: a seek goes either way
                assert reader.read(prefix, sub) == wanted[sub]
        finally:
            reader.close()
    finally:
        db.close()
