"""node/bench/snapshot_bench.py at a toy scale: it measures all three steps and the snapshot reads back equal."""

from __future__ import annotations

import importlib


def test_snapshot_bench_measures_every_step() -> None:
    out = importlib.import_module("node.bench.snapshot_bench").run(8)
    assert out["mb"] == 8
    for key in ("leader_snapshot_ms", "follower_save_ms", "follower_reopen_ms"):
        assert out[key] >= 0
