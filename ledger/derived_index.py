"""Secondary indexes kept beside the state root: state keys that are a pure function of other state entries.

Why: a key under the state root costs its leaf entry, its bucket's rehash and (in a split bucket) a sub-bucket
read and a 548-byte summary rewrite (docs/PERFORMANCE.md, "Fourth pass"). An index that every node can recompute
from the rest of the state adds nothing the nodes must agree on, so it need not be hashed: the root commits to
the entries it is derived from, and the index follows from them.

The application names its index (`DerivedIndex`): the key prefixes that are index keys, and `entries(key,
value)`, the index entries one state entry implies. The rules still write index keys through the state view
like any other key (so a later tx of the same block reads them), into the same WriteBatch; the store only
leaves them out of the root and out of snapshots, and an import rebuilds them from `entries`. The invariant,
checked by `StateStore.check_integrity`: the stored index keys are exactly the union of `entries` over every
other state entry.

A store remembers the prefixes it was first opened with (`M index`) and refuses to open with others: a tool
that opened an application's store without its index would hash the index keys and fork the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import msgpack

from consensus.invariant import require


class DerivedIndex(Protocol):
    prefixes: tuple[bytes, ...]
    """State keys starting with one of these are index keys: not under the root, not in snapshots."""

    def entries(self, key: bytes, value: bytes) -> Iterable[tuple[bytes, bytes]]:
        """The index entries the state entry (key, value) implies (none for most keys). Must be a pure function
        of its arguments, and yield only index keys."""
        ...


class NoIndex:
    """No derived index: every state key is under the root (the ledger's own tests, and stores of
    applications that keep no secondary index)."""

    __slots__ = ()
    prefixes: tuple[bytes, ...] = ()

    def entries(self, key: bytes, value: bytes) -> Iterable[tuple[bytes, bytes]]:
        return ()


NO_INDEX = NoIndex()


def encode_prefixes(index: DerivedIndex) -> bytes:
    """The `M index` record: the index's prefixes, sorted."""
    record: bytes = msgpack.packb(sorted(index.prefixes), use_bin_type=True)
    return record


def decode_prefixes(record: bytes) -> tuple[bytes, ...]:
    prefixes = msgpack.unpackb(record, raw=False, use_list=False)
    require(type(prefixes) is tuple and all(type(p) is bytes and p for p in prefixes), "bad `M index` record")
    return tuple(prefixes)


def check_index(index: DerivedIndex) -> None:
    """The prefixes are non-empty bytes and none is a prefix of another (a key is an index key of one kind)."""
    prefixes = index.prefixes
    require(type(prefixes) is tuple and all(type(p) is bytes and p for p in prefixes), "index prefixes are bytes")
    for a in prefixes:
        for b in prefixes:
            require(a == b or not b.startswith(a), f"index prefix {a!r} is a prefix of {b!r}")


def rooted(items: Iterable[tuple[bytes, bytes]], prefixes: tuple[bytes, ...]) -> Iterator[tuple[bytes, bytes]]:
    """The state entries under the root: every entry but the index keys (all of them if `prefixes` is empty)."""
    for key, value in items:
        if not key.startswith(prefixes):
            yield key, value


def derive_all(items: Iterable[tuple[bytes, bytes]], index: DerivedIndex) -> dict[bytes, bytes]:
    """The whole index implied by the rooted state entries `items`."""
    derived: dict[bytes, bytes] = {}
    prefixes = index.prefixes
    for key, value in items:
        for index_key, index_value in index.entries(key, value):
            if not index_key.startswith(prefixes):
                require(False, f"index entry {index_key!r} of {key!r} is not under an index prefix")
            require(derived.get(index_key, index_value) == index_value,
                    f"index entry {index_key!r} derived twice with different values")
            derived[index_key] = index_value
    return derived
