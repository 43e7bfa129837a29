"""The raw benchmark end to end: three real node processes of our Raft on loopback, briefly, with the synced
writes on a writer thread (the default) and on the event loop."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.bench import raw


@pytest.mark.slow
@pytest.mark.parametrize("write_thread", [True, False])
def test_three_raw_nodes_commit_entries(tmp_path: Path, write_thread: bool) -> None:
    settings = raw.RawSettings(duration_s=1.0, warmup_s=0.5, write_thread=write_thread)
    result = raw.run_system(tmp_path, "ours", settings)  # stops every process it started, also on failure
    assert result["entries"] > 1000 and result["role_changes"] == 0
    assert result["write_thread"] is write_thread
    assert result["fsyncs"] > 0 and result["entries_per_fsync"] > 1
    for log in tmp_path.glob("ours-*.out"):
        # The transport's readers are cancelled at shutdown (asyncio logs those); nothing else may have failed.
        errors = [line for line in log.read_text().splitlines()
                  if re.match(r"^[\w.]+(Error|Exception)(:|$)", line) and "CancelledError" not in line]
        assert errors == [], log.read_text()
