"""benchmarks/snapshot_bench.py at a toy scale: it measures all three steps and the snapshot reads back equal."""

from __future__ import annotations

from tests.benchmark_module import load_benchmark


def test_snapshot_bench_measures_every_step() -> None:
    out = load_benchmark("snapshot_bench").run(8)
    assert out["mb"] == 8
    for key in ("leader_snapshot_ms", "follower_save_ms", "follower_reopen_ms"):
        assert out[key] >= 0
