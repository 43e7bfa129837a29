"""Crash test: a process applying blocks is SIGKILLed mid-sequence, repeatedly. After each kill the store
reopens at a whole block (its height, hash and root are those of an uninterrupted run at that height), and
finishing the sequence gives the same final root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.store import StateStore
from tests.ledger.crash_worker import next_block, open_store
from tests.ledger.kv_executor import KvExecutor

SEED = 7
LAST = 40
ROOT = Path(__file__).resolve().parents[2]


def reference_run(path: Path) -> dict[int, tuple[bytes, bytes]]:
    store = open_store(str(path))
    heads = {0: (store.block_hash, store.state_root)}
    executor = KvExecutor()
    while store.height < LAST:
        store.apply_block(next_block(store, SEED), executor)
        heads[store.height] = (store.block_hash, store.state_root)
    store.close()
    return heads


def run_and_kill(path: Path, kill_after_lines: int, extra_delay_s: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.crash_worker", str(path), str(SEED), str(LAST)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        start = proc.stdout.readline()
        assert start.startswith(b"start"), start + proc.stderr.read()  # type: ignore[union-attr]
        for _ in range(kill_after_lines):
            if not proc.stdout.readline():
                break
        time.sleep(extra_delay_s)  # lands somewhere inside the next block's execution or batch write
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_sigkill_mid_sequence_leaves_a_whole_block(tmp_path: Path) -> None:
    reference = reference_run(tmp_path / "reference")
    path = tmp_path / "crashy"
    heights: list[int] = []
    for kill_after, delay in [(2, 0.0), (3, 0.013), (2, 0.031), (4, 0.005), (1, 0.047)]:
        run_and_kill(path, kill_after, delay)
        with StateStore.open(path, paranoid=True, sync=False) as store:
            h = store.height
            heights.append(h)
            assert (store.block_hash, store.state_root) == reference[h], f"torn state at height {h}"
            store.check_integrity()
            if h >= LAST:
                break
    print("heights after each kill:", heights)
    assert len([h for h in heights if 0 < h < LAST]) >= 3, heights  # really killed mid-sequence
    store = open_store(str(path))
    executor = KvExecutor()
    while store.height < LAST:
        store.apply_block(next_block(store, SEED), executor)
    assert (store.block_hash, store.state_root) == reference[LAST]
    store.close()
