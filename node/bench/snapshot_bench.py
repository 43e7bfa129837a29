"""Snapshot I/O benchmark (not a test): how long the driver is held, and how much memory it takes, when (a) a
leader gets its snapshot to ship it (`LevelDBStorage.snapshot()` and one chunk sliced out of it), (b) a follower
saves a snapshot received from the leader, and (c) that follower's Raft storage is opened again.

    .venv/bin/python -m node.bench.snapshot_bench [--mb 200]

Prints one line per step and ends with one line of JSON. RSS is the process's resident set before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from consensus.leveldb_storage import LevelDBStorage
from consensus.messages import Entry, EntryType, Snapshot, SnapshotMeta
from consensus.ready import HardState

VOTERS = ("a", "b", "c")
CHUNK = 4 << 20


def rss_mb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def run(mb: int) -> dict[str, float]:
    """The three measurements for a snapshot of `mb` MiB (at least one 4 MiB chunk), in a temporary directory."""
    root = tempfile.mkdtemp(prefix="snapshot-bench-")
    out: dict[str, float] = {"mb": mb}
    try:
        chunk = os.urandom(CHUNK)
        chunks = max(1, (mb << 20) // CHUNK)
        leader = LevelDBStorage(os.path.join(root, "leader"), VOTERS)
        entries = tuple(Entry(term=1, index=i, type=EntryType.NORMAL, data=b"x" * 100) for i in range(1, 11))
        leader.save(HardState(1, "a", 10), entries, None, True)
        meta = SnapshotMeta(index=10, term=1, voters=VOTERS)
        leader.write_snapshot_chunks(meta, (chunk for _ in range(chunks)))
        leader.compact_written(meta)

        before, t0 = rss_mb(), time.perf_counter()
        snap = leader.snapshot()
        size = len(snap.data)
        snap.data[size // 2:size // 2 + (1 << 20)]  # one chunk, as the core cuts it
        out["leader_snapshot_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        out["leader_snapshot_rss_mb"] = rss_mb() - before
        print(f"leader snapshot() + one chunk: {out['leader_snapshot_ms']} ms, RSS +{out['leader_snapshot_rss_mb']} MB",
              file=sys.stderr)
        del snap
        leader.close()

        follower_path = os.path.join(root, "follower")
        follower = LevelDBStorage(follower_path, VOTERS)
        data = chunk * chunks
        received = Snapshot(SnapshotMeta(index=100, term=2, voters=VOTERS), data)
        before, t0 = rss_mb(), time.perf_counter()
        follower.save(HardState(2, None, 100), (), received, True)
        out["follower_save_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        out["follower_save_rss_mb"] = rss_mb() - before
        print(f"follower save(received): {out['follower_save_ms']} ms, RSS +{out['follower_save_rss_mb']} MB",
              file=sys.stderr)
        follower.close()

        t0 = time.perf_counter()
        follower = LevelDBStorage(follower_path, VOTERS)
        out["follower_reopen_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        same = follower.snapshot().data == data
        follower.close()
        print(f"follower reopen: {out['follower_reopen_ms']} ms (snapshot reads back equal: {same})",
              file=sys.stderr)
        if not same:
            raise SystemExit("the snapshot read back differs from what was saved")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="snapshot size in MiB (default 200)")
    print(json.dumps(run(parser.parse_args().mb)))


if __name__ == "__main__":
    main()
