"""Opt-in measurements (`pytest -m bench tests/ledger -s`): block cost does not grow with the state size, and
a ~100 MB state exports and imports in linear time."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from ledger.block import make_block
from ledger.store import StateStore
from tests.ledger.kv_executor import KvExecutor, kv_tx

pytestmark = pytest.mark.bench
GENESIS = b"\x33" * 32


def _fill(store: StateStore, keys: int, value_bytes: int, start: int = 0) -> None:
    """Grow the state through ordinary blocks of 500 txs x 4 puts."""
    executor = KvExecutor()
    value = b"v" * value_bytes
    i = start
    while i < start + keys:
        txs = []
        for _ in range(500):
            ops = [["put", f"fill/{j:09d}".encode(), value] for j in range(i, min(i + 4, start + keys))]
            i += len(ops)
            if ops:
                txs.append(kv_tx(f"fill-{i}", *ops))
        store.apply_block(
            make_block(store.height + 1, store.block_hash, store.height, "b", tuple(txs)), executor
        )


def _time_blocks(store: StateStore, n: int) -> float:
    """Seconds per block of 100 txs x 2 writes each."""
    executor = KvExecutor()
    t0 = time.perf_counter()
    for b in range(n):
        txs = tuple(
            kv_tx(
                f"m-{store.height}-{t}",
                ["put", f"hot/{b}/{t}".encode(), b"x" * 100],
                ["del", f"fill/{t:09d}".encode()],
            )
            for t in range(100)
        )
        store.apply_block(make_block(store.height + 1, store.block_hash, store.height, "b", txs), executor)
    return (time.perf_counter() - t0) / n


def test_block_cost_is_independent_of_state_size(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "db", sync=False)
    store.init_genesis(GENESIS, [])
    rows = []
    filled = 0
    for target in (1_000, 50_000, 200_000):
        _fill(store, target - filled, 200, start=filled)
        filled = target
        rows.append((target, _time_blocks(store, 20)))
    store.close()
    for keys, seconds in rows:
        print(f"state {keys:>7} keys: {seconds * 1000:.1f} ms per block of 100 txs / 200 writes")
    assert rows[-1][1] < rows[0][1] * 3


def test_snapshot_of_100_mb(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "src", sync=False)
    store.init_genesis(GENESIS, [])
    _fill(store, 100_000, 1000)  # 100k keys x 1 KB values = ~100 MB of state
    t0 = time.perf_counter()
    data = store.export_snapshot()
    t_export = time.perf_counter() - t0
    other = StateStore.open(tmp_path / "dst", sync=False)
    t0 = time.perf_counter()
    other.import_snapshot(data)
    t_import = time.perf_counter() - t0
    assert other.head == store.head
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(
        f"snapshot {len(data) / 1e6:.0f} MB: export {t_export:.1f} s, import {t_import:.1f} s, max RSS {rss_mb} MB"
    )
    other.close()
    store.close()
