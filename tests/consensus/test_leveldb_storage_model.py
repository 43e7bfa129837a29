"""LevelDBStorage behaves exactly like MemoryStorage (the reference) under random save/compact sequences,
before and after reopening."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.leveldb_storage import LevelDBStorage
from consensus.messages import Entry, EntryType, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.sim.storage import SimStorage
from consensus.storage import MemoryStorage, StorageError

VOTERS = ("n1", "n2", "n3")


def observe(s: object) -> list[object]:
    """Everything the core can read, with errors as their type names."""
    def call(f: object, *args: object) -> object:
        try:
            return f(*args)  # type: ignore[operator]
        except StorageError as exc:
            return type(exc).__name__

    first, last = s.first_index(), s.last_index()  # type: ignore[attr-defined]
    out: list[object] = [first, last, s.initial_state(), s.snapshot()]  # type: ignore[attr-defined]
    out += [call(s.term, i) for i in range(max(0, first - 2), last + 3)]  # type: ignore[attr-defined]
    for lo in range(max(1, first - 1), last + 2):
        for hi in (lo, lo + 1, last + 1, last + 2):
            if hi >= lo:
                out += [call(s.entries, lo, hi, mb) for mb in (0, 5, 1 << 20)]  # type: ignore[attr-defined]
    return out


def random_ops(rng: random.Random, n: int, model: MemoryStorage) -> list[tuple[str, object]]:
    """Valid writes (a follower's view of a well-behaved leader), generated against the model as it goes."""
    ops: list[tuple[str, object]] = []
    term = 1
    for _ in range(n):
        first, last = model.first_index(), model.last_index()
        roll = rng.randrange(10)
        if roll < 6:
            term += rng.randrange(2)
            start = rng.randint(max(1, first - 2), last + 1)
            ents = tuple(Entry(term, i, EntryType(rng.randrange(2)), bytes(rng.randrange(8)))
                         for i in range(start, start + rng.randint(1, 4)))
            hs = HardState(term, rng.choice((None, "n1", "n2")), rng.randint(0, first - 1)) if rng.randrange(2) \
                else None
            op: tuple[str, object] = ("save", (hs, ents, None))
        elif roll < 8 and last >= first:
            index = rng.randint(first, last)
            op = ("compact", Snapshot(SnapshotMeta(index, model.term(index), VOTERS), b"app%d" % index))
        else:
            term += 1
            index = last + rng.randint(0, 3)
            snap = Snapshot(SnapshotMeta(index, term, (*VOTERS, "n4"), ("n5",)), bytes(rng.randrange(20)))
            ents = tuple(Entry(term, i, data=b"x") for i in range(index + 1, index + 1 + rng.randrange(3)))
            op = ("save", (HardState(term, "n2", index), ents, snap))
        apply(model, op)
        ops.append(op)
    return ops


def apply(s: object, op: tuple[str, object]) -> None:
    kind, arg = op
    if kind == "save":
        hs, ents, snap = arg  # type: ignore[misc]
        s.save(hs, ents, snap, sync=True)  # type: ignore[attr-defined]
    else:
        s.compact(arg)  # type: ignore[attr-defined]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 30), cache_bytes_max=st.sampled_from([0, 400, 1 << 20]))
def test_leveldb_storage_matches_memory_storage(seed: int, n: int, cache_bytes_max: int) -> None:
    """With the tail cache off, trimmed often (400 bytes is two or three entries) and holding everything."""
    ops = random_ops(random.Random(seed), n, MemoryStorage(VOTERS))
    model, sim = MemoryStorage(VOTERS), SimStorage(VOTERS)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "raft")
        db = LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max)
        try:
            for op in ops:
                for s in (model, db, sim):
                    apply(s, op)
                assert observe(db) == observe(model)
                assert observe(sim) == observe(model)
        finally:
            db.close()
        with LevelDBStorage(path, VOTERS, cache_bytes_max=cache_bytes_max) as reopened:
            assert observe(reopened) == observe(model)
