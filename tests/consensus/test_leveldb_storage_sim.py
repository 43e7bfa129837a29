"""LevelDBStorage under the simulator: the real core reads its log from LevelDB through elections, truncations,
snapshots, compaction, membership changes and crashes (a crash closes and reopens the store)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from consensus.leveldb_storage import LevelDBStorage
from consensus.messages import Entry, NodeId, Snapshot, SnapshotMeta
from consensus.ready import HardState
from consensus.sim.simulation import SimConfig, Simulation
from consensus.sim.storage import SimStorage


class LevelDBBacked(SimStorage):
    """The core reads from LevelDB; the simulator's checkers read the in-memory model, kept equal to it.

    A process crash loses nothing LevelDB acknowledged, so the model keeps every write too.
    """

    def __init__(self, voters: tuple[NodeId, ...], path: str) -> None:
        super().__init__(voters)
        self.path = path
        self.db = LevelDBStorage(path, voters)
        self.reopens = 0

    def initial_state(self) -> tuple[HardState, SnapshotMeta]:
        return self.db.initial_state()

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        return self.db.entries(lo, hi, max_bytes)

    def term(self, index: int) -> int:
        return self.db.term(index)

    def first_index(self) -> int:
        return self.db.first_index()

    def last_index(self) -> int:
        return self.db.last_index()

    def snapshot(self) -> Snapshot:
        return self.db.snapshot()

    def save(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None,
             sync: bool) -> None:
        self.db.save(hard_state, entries, snapshot, sync)
        super().save(hard_state, entries, snapshot, sync=True)
        self._same()

    def compact(self, snapshot: Snapshot) -> None:
        self.db.compact(snapshot)
        super().compact(snapshot)
        self._flush(len(self._unsynced))
        self._same()

    def crash(self, rng: random.Random) -> int:
        self.db.close()
        self.db = LevelDBStorage(self.path, ("ignored-after-first-open",))
        self.reopens += 1
        self._same()
        return 0

    def _same(self) -> None:
        v = self.visible
        assert (self.db.first_index(), self.db.last_index()) == (v.snap_index + 1, v.last_index)
        assert self.db.initial_state() == (v.hard_state, v.snapshot.meta)
        assert self.db.snapshot() == v.snapshot
        if v.entries:
            assert self.db.entries(v.snap_index + 1, v.last_index + 1, 1 << 30) == v.entries


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_raft_on_leveldb_survives_the_simulator(tmp_path: Path, seed: int) -> None:
    stores: list[LevelDBBacked] = []

    def factory(nid: NodeId, voters: tuple[NodeId, ...]) -> SimStorage:
        store = LevelDBBacked(voters, str(tmp_path / nid))
        stores.append(store)
        return store

    sim = Simulation(SimConfig(seed=seed, nodes=3, steps=3000, crash_permille=40, compact_permille=80,
                               conf_change_permille=30), storage_factory=factory)
    try:
        stats = sim.run()
    finally:
        for store in stores:
            store.db.close()
    assert stats.crashes > 0 and stats.compactions > 0 and stats.committed > 10
    assert sum(s.reopens for s in stores) == stats.crashes
