"""node/exit_status.py and how `scripts/cluster status` reads a node's exit record (no node processes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from node.config import load_config
from node.exit_status import (
    EXIT_FILE,
    EXIT_INVARIANT_VIOLATION,
    clear_exit_record,
    read_exit_record,
    write_exit_record,
)
from node.ops import control

REPO = Path(__file__).resolve().parents[2]


def test_the_record_round_trips_and_is_cleared(tmp_path: Path) -> None:
    write_exit_record(tmp_path, EXIT_INVARIANT_VIOLATION, "invariant_violation", "ready: x" * 1000)
    record = read_exit_record(tmp_path)
    assert record is not None and record["status"] == 70 and record["reason"] == "invariant_violation"
    assert len(record["detail"]) == 2000 and record["ts_ms"] > 0
    assert not list(tmp_path.glob("*.tmp"))
    clear_exit_record(tmp_path)
    clear_exit_record(tmp_path)  # twice: nothing to remove is fine
    assert read_exit_record(tmp_path) is None


@pytest.mark.parametrize("text", ["", "not json", "[70]", '{"status": "70", "reason": "x"}', '{"status": 70}'])
def test_a_file_that_is_not_a_record_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / EXIT_FILE).write_text(text)
    assert read_exit_record(tmp_path) is None


def test_cluster_status_shows_a_node_stopped_by_a_broken_invariant(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  ) -> None:
    shutil.copy(REPO / "cluster.toml", tmp_path / "cluster.toml")
    cluster = load_config(tmp_path / "cluster.toml")
    stopped, *others = cluster.nodes
    stopped.data_dir.mkdir(parents=True)
    write_exit_record(stopped.data_dir, EXIT_INVARIANT_VIOLATION, "invariant_violation", "ready: heights differ")

    assert control.main(["status", "--config", str(cluster.path)]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    rows = {r["id"]: r for r in summary["nodes"]}
    assert rows[stopped.id]["state"] == "stopped"
    assert rows[stopped.id]["exit"]["status"] == 70 and rows[stopped.id]["exit"]["detail"] == "ready: heights differ"
    assert all(rows[n.id]["state"] == "down" and "exit" not in rows[n.id] for n in others)
    assert summary["running"] == 0
    assert f"{stopped.id}: stopped: invariant violation (exit 70): ready: heights differ" in err
