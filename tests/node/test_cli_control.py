"""node/ops/control.py without node processes: leader agreement, /proc parsing, pid trust, command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from node.ops import control

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> control.ClusterConfig:
    shutil.copy(REPO / "cluster.toml", tmp_path / "cluster.toml")
    return load_config(tmp_path / "cluster.toml")


def st(role: str, leader: str | None) -> dict[str, object]:
    return {"role": role, "leader_id": leader}


def test_agreed_leader_needs_a_quorum_and_the_leader_itself(cluster: control.ClusterConfig) -> None:
    assert control.quorum(cluster) == 3
    agreed = {"boc": st("leader", "boc"), "geely": st("follower", "boc"), "tier1": st("follower", "boc"),
              "tier2": None, "tier3": None}
    assert control.agreed_leader(cluster, agreed) == "boc"
    # Two votes are not a quorum of five.
    assert control.agreed_leader(cluster, {**agreed, "tier1": st("follower", None)}) is None
    # Followers still name an old leader that no longer says it leads (it stepped down or is partitioned).
    assert control.agreed_leader(cluster, {**agreed, "boc": st("follower", None)}) is None
    assert control.agreed_leader(cluster, dict.fromkeys(agreed)) is None


def test_proc_state_reads_our_own_process_and_missing_ones() -> None:
    assert control._proc_state(os.getpid()) in ("R", "S")
    assert control._proc_state(2**22 + 12345) is None  # above pid_max: never a process


def test_a_pid_is_trusted_only_for_the_matching_node_process(cluster: control.ClusterConfig) -> None:
    boc = cluster.node("boc")
    boc.data_dir.mkdir(parents=True)
    # A process whose command line looks like the node's (python -m node --config FILE --id boc) but sleeps.
    fake = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "node", "--config",
                             str(cluster.path), "--id", "boc"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "node", "--config",
                              str(cluster.path), "--id", "geely"])
    try:
        control.pid_file(boc).write_text(f"{fake.pid}\n")
        assert control.running_pid(cluster, boc) == fake.pid
        control.pid_file(boc).write_text(f"{other.pid}\n")  # a live process, but another node's
        assert control.running_pid(cluster, boc) is None
        control.pid_file(boc).write_text("garbage\n")
        assert control.running_pid(cluster, boc) is None
        control.pid_file(boc).write_text(f"{fake.pid}\n")
        assert control.stop_node(cluster, boc, timeout_s=5) == "stopped"  # SIGTERM ends the sleeper
        assert fake.wait(5) != 0 and not control.pid_file(boc).exists()
        assert control.stop_node(cluster, boc) == "not_running"
    finally:
        for p in (fake, other):
            p.kill()
            p.wait()


def test_command_line(capsys: pytest.CaptureFixture[str], cluster: control.ClusterConfig) -> None:
    with pytest.raises(SystemExit):
        control.main(["--help"])
    assert "start" in capsys.readouterr().out
    assert control.main(["start", "nosuch", "--config", str(cluster.path)]) == 1
    assert "nosuch" in capsys.readouterr().out
    assert control.main(["status", "--config", str(cluster.path.parent / "missing.toml")]) == 1
    assert control.main(["status", "--config", str(cluster.path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"running": 0' in out and '"leader": null' in out
