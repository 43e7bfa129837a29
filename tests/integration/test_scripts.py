"""./scripts/run and ./scripts/cluster end to end, on a temp copy of the shipped cluster.toml cut to 3 voting nodes
and the regulator's learner on free ports (all 6 genesis orgs kept: the demo needs three suppliers).

One story, in order: run (init + up + demo) -> CLI reads the lineage and holdings -> the README's plain
PyNaCl + msgpack client commits a tx through a follower -> kill + start one node, it
rejoins and converges -> pause / resume -> a second run reuses keys and running nodes and tells the story again
-> run --stop leaves no process. Every pid ever seen is SIGKILLed in teardown, also when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.ops.localnet import free_ports

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")
README_MARKER = "<!-- the block below is executed by tests/integration/test_scripts.py -->"

pytestmark = pytest.mark.slow

NODES = ["boc", "geely", "tier1", "pbc"]
"""The nodes of the cut-down copy (three_node_copy(regulator=True)): three voters and the regulator's learner."""


def three_node_copy(root: Path, spares: int = 0, regulator: bool = False) -> Path:
    """The shipped cluster.toml with its first three [[nodes]] on free ports (+ spare nodes, voter = false: genesis
    learners), and with `regulator` the regulator's learner node pbc last, as in the shipped file."""
    head, _, rest = (REPO / "cluster.toml").read_text().partition("[[nodes]]")
    shipped = ("[[nodes]]" + rest).split("[[nodes]]")[1:]
    pbc = next(b for b in shipped if 'id = "pbc"' in b)
    blocks = [b for b in shipped if b is not pbc][:3 + spares] + ([pbc] if regulator else [])
    ports = free_ports(2 * len(blocks))
    text = head
    for i, block in enumerate(blocks):
        block = re.sub(r'http = "127\.0\.0\.1:\d+"', f'http = "127.0.0.1:{ports[2 * i]}"', block)
        block = re.sub(r'raft = "127\.0\.0\.1:\d+"', f'raft = "127.0.0.1:{ports[2 * i + 1]}"', block)
        block = "\n".join(line for line in block.rstrip().splitlines() if not line.startswith("#"))
        spare = 3 <= i < 3 + spares
        text += "[[nodes]]" + block + ("\nvoter = false" if spare else "") + "\n\n"
    path = root / "cluster.toml"
    path.write_text(text)
    return path


def run(*argv: str, timeout: float = 90, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run a script; (exit code, its last stdout line as JSON, stderr)."""
    proc = subprocess.run(list(argv), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    lines = proc.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else {}
    except ValueError:
        summary = {"unparsed": proc.stdout}
    return proc.returncode, summary, proc.stderr


def pids_of(cluster_dir: Path) -> dict[str, int]:
    out = {}
    for pid_file in cluster_dir.glob("data/*/node.pid"):
        with contextlib.suppress(ValueError, OSError):
            out[pid_file.parent.name] = int(pid_file.read_text().strip())
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def ours(pid: int, config: Path) -> bool:
    with contextlib.suppress(OSError):
        return str(config) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return False


@pytest.fixture
def cluster_file(tmp_path: Path) -> Iterator[tuple[Path, set[int]]]:
    config = three_node_copy(tmp_path, regulator=True)
    seen: set[int] = set()
    try:
        yield config, seen
    finally:
        seen |= set(pids_of(tmp_path).values())
        for pid in seen:
            if alive(pid) and ours(pid, config):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def wait_converged(config: Path, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, summary, _ = run("./scripts/cluster", "status", "--config", str(config))
        if (code == 0 and summary["converged"] and summary["leader"]) or time.monotonic() > deadline:
            return summary
        time.sleep(0.5)


def ecert_json(config: Path, *argv: str) -> Any:
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ecert"), "--config", str(config), "--json", *argv],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_run_cluster_kill_start_rerun_stop(cluster_file: tuple[Path, set[int]]) -> None:
    config, seen = cluster_file
    env = {"ECERT_DEMO_MATURITY_SECONDS": "4"}

    code, summary, err = run("./scripts/run", "--config", str(config), env=env)
    seen |= set(pids_of(config.parent).values())
    assert code == 0, err
    assert summary["run"] == "ok" and summary["demo"]["demo"] == "ok", summary
    assert summary["started"] == NODES and summary["keys_created"] == 6 + len(NODES)  # org keys + node keys
    assert summary["dashboard"] == summary["nodes"]["boc"] + "/"
    # Each node's one-time dashboard login link, for its own org (the node writes it at start).
    assert set(summary["dashboard_login"]) == set(NODES)
    for node_id, link in summary["dashboard_login"].items():
        assert link.startswith(summary["nodes"][node_id] + "/login?code="), link
    root = summary["demo"]["root_cert"]

    # The story's certificate on chain, read with the CLI from any node.
    lineage = ecert_json(config, "lineage", root)
    certs = {c["id"]: c for c in lineage["certs"]}
    assert len(certs) == 6 and certs[root]["status"] == "split"
    leaves = [c for c in certs.values() if not any(d["parent_id"] == c["id"] for d in certs.values())]
    assert sum(c["amount"] for c in leaves) == certs[root]["amount"]
    # tier1's and tier2's pieces settled; the piece boc financed with recourse was paid in part, defaulted, and
    # went back to tier3 with the bank's claim (repaid in part, the rest written off).
    assert sorted(c["status"] for c in leaves) == ["defaulted", "settled", "settled"]
    assert {c["paid_to"] for c in leaves if c["status"] == "settled"} == {"tier1", "tier2"}
    assert [c["holder"] for c in leaves if c["status"] == "defaulted"] == ["tier3"]
    assert summary["demo"]["demo"] == "ok"
    assert ecert_json(config, "--as", "tier3", "holdings", "tier3")["org_id"] == "tier3"

    # The README's client (plain PyNaCl + msgpack, none of our code) commits a tx sent to a follower.
    readme = (REPO / "README.md").read_text()
    snippet = readme.split(README_MARKER)[1].split("```python\n", 1)[1].split("```", 1)[0]
    follower = next(node_id for node_id in summary["nodes"] if node_id != summary["leader"])
    proc = subprocess.run([PY, "-c", snippet], cwd=config.parent, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ECERT_NODE": summary["nodes"][follower]})
    assert proc.returncode == 0 and "'status': 'committed'" in proc.stdout, proc.stdout + proc.stderr

    # SIGKILL a node, start it again with its data: it rejoins and converges.
    pids = pids_of(config.parent)
    code, killed, _ = run("./scripts/cluster", "kill", "tier1", "--config", str(config))
    assert code == 0 and killed["result"] == "killed"
    assert not alive(pids["tier1"])
    code, status, _ = run("./scripts/cluster", "status", "--config", str(config))
    assert {n["id"]: n["state"] for n in status["nodes"]}["tier1"] == "down"
    code, started, err = run("./scripts/cluster", "start", "tier1", "--config", str(config))
    assert code == 0 and started["result"] == "started", err
    seen.add(started["pid"])
    converged = wait_converged(config)
    assert converged["converged"] and converged["running"] == len(NODES), converged
    assert {n["height"] for n in converged["nodes"]} == {summary["demo"]["height"] + 1}  # + the README's tx

    # Pause and resume one node.
    code, paused, _ = run("./scripts/cluster", "pause", "geely", "--config", str(config))
    assert code == 0 and paused["result"] == "paused"
    code, status, _ = run("./scripts/cluster", "status", "--config", str(config))
    assert {n["id"]: n["state"] for n in status["nodes"]}["geely"] == "paused"
    assert run("./scripts/cluster", "resume", "geely", "--config", str(config))[0] == 0

    # A second run reuses keys, genesis and the running nodes, and tells the story again.
    before = pids_of(config.parent)
    code, again, err = run("./scripts/run", "--config", str(config), env=env)
    assert code == 0, err
    assert again["already_running"] == NODES and again["started"] == []
    assert again["keys_created"] == 0 and again["genesis_created"] is False
    assert again["demo"]["root_cert"] != root and again["demo"]["height"] > summary["demo"]["height"]
    assert pids_of(config.parent) == before

    # --stop leaves no process behind.
    code, down, _ = run("./scripts/run", "--stop", "--config", str(config))
    assert code == 0 and sorted(down["stopped"] + down["killed"]) == sorted(NODES)
    assert not any(alive(pid) for pid in seen)
    assert pids_of(config.parent) == {}


def test_stale_pid_file_is_not_trusted(cluster_file: tuple[Path, set[int]]) -> None:
    """A pid file naming some other live process (pid reuse) is neither reported as a node nor signalled."""
    config, _ = cluster_file
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = config.parent / "data" / "geely" / "node.pid"
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{stranger.pid}\n")
        code, status, _ = run("./scripts/cluster", "status", "--config", str(config))
        assert code == 0 and {n["id"]: n["state"] for n in status["nodes"]}["geely"] == "down"
        code, result, _ = run("./scripts/cluster", "kill", "geely", "--config", str(config))
        assert code == 0 and result["result"] == "not_running"
        code, down, _ = run("./scripts/cluster", "down", "--config", str(config))
        assert code == 0 and down["not_running"] == NODES
        assert stranger.poll() is None  # still alive: never signalled
    finally:
        stranger.kill()
        stranger.wait()


def test_help_and_bad_usage() -> None:
    for script in ("./scripts/run", "./scripts/cluster"):
        proc = subprocess.run([script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0 and "usage" in proc.stdout
    proc = subprocess.run(["./scripts/cluster", "start", "nosuchnode"], cwd=REPO, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and "nosuchnode" in json.loads(proc.stdout.splitlines()[-1])["error"]
    proc = subprocess.run(["./scripts/run", "--bogus"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2


def test_node_started_by_hand_is_recognised_and_stopped(cluster_file: tuple[Path, set[int]]) -> None:
    """A node started by hand (relative --config, its own pid file) is seen by status and stopped by stop."""
    config, seen = cluster_file
    assert run(str(REPO / ".venv" / "bin" / "ecert"), "--config", str(config), "init")[0] == 0
    proc = subprocess.Popen([PY, "-m", "node", "--config", "cluster.toml", "--id", "boc"], cwd=config.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    seen.add(proc.pid)
    try:
        deadline = time.monotonic() + 20
        state = None
        while time.monotonic() < deadline:
            code, status, _ = run("./scripts/cluster", "status", "--config", str(config))
            boc = next(n for n in status["nodes"] if n["id"] == "boc")
            state = boc["state"]
            if state == "running" and boc.get("role"):
                break
            time.sleep(0.3)
        assert state == "running" and boc["pid"] == proc.pid, status
        code, stopped, _ = run("./scripts/cluster", "stop", "boc", "--config", str(config))
        assert code == 0 and stopped["result"] == "stopped" and stopped["pid"] == proc.pid
        assert proc.wait(5) == 0  # a graceful exit
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_membership_from_the_command_line(tmp_path: Path) -> None:
    """A spare node (voter = false: a learner from genesis) is promoted to voter, then removed, with `ecert member`:
    each change a member.propose and member.approve tx (membership is governance, CONTRACT §6), carried out by
    the cluster; the Raft view (`ecert member raft`) follows."""
    config = three_node_copy(tmp_path, spares=1)
    ecert = [str(REPO / ".venv" / "bin" / "ecert"), "--config", str(config), "--json"]

    def raft_voters() -> set[str]:
        return {n["id"] for n in run(*ecert, "member", "raft")[1]["nodes"] if n["voter"]}

    def wait_raft(voters: set[str], timeout: float = 30) -> set[str]:
        deadline = time.monotonic() + timeout
        while (seen := raft_voters()) != voters and time.monotonic() < deadline:
            time.sleep(0.3)
        return seen

    try:
        assert run(ecert[0], "--config", str(config), "init")[0] == 0
        code, up, err = run("./scripts/cluster", "up", "--config", str(config))
        assert code == 0 and up["leader"] in ("boc", "geely", "tier1"), err
        members = run(*ecert, "member", "list")[1]["membership"]  # read as boc, the org of the first node
        assert {m["id"]: m["status"] for m in members["members"]} == {
            "boc": "voter", "geely": "voter", "tier1": "voter", "tier2": "learner"}
        assert wait_raft({"boc", "geely", "tier1"}) == {"boc", "geely", "tier1"}

        code, proposed, err = run(*ecert, "member", "promote", "tier2", "--as", "boc")  # = member propose promote
        assert code == 0 and proposed["status"] == "committed", (proposed, err)
        proposal = proposed["result"]
        assert (proposal["approvals"], proposal["needed"], proposal["effective"]) == (1, 2, False)
        code, approved, err = run(*ecert, "member", "approve", proposal["proposal_id"], "--as", "geely")
        assert code == 0 and approved["result"]["effective"] is True, (approved, err)
        assert wait_raft({"boc", "geely", "tier1", "tier2"}) == {"boc", "geely", "tier1", "tier2"}
        shown = run(*ecert, "member", "show", proposal["proposal_id"])[1]
        assert shown["status"] == "effective" and shown["approved_by"] == ["boc", "geely"]

        code, proposed, err = run(*ecert, "member", "propose", "remove", "tier2", "--as", "tier1")
        assert code == 0 and proposed["result"]["needed"] == 3, (proposed, err)  # four voting orgs now
        for org in ("boc", "geely"):
            code, approved, err = run(*ecert, "member", "approve", proposed["result"]["proposal_id"], "--as", org)
            assert code == 0, (approved, err)
        assert approved["result"]["effective"] is True
        assert run(*ecert, "member", "list")[1]["membership"]["voters"] == ["boc", "geely", "tier1"]
        assert wait_raft({"boc", "geely", "tier1"}) == {"boc", "geely", "tier1"}
        code, bad, _ = run(*ecert, "member", "promote", "nosuch", "--as", "boc")
        assert code == 1 and bad["error"]["code"] == "unknown_node"
    finally:
        code, down, _ = run("./scripts/cluster", "down", "--config", str(config))
        for pid in pids_of(tmp_path).values():  # only if down failed
            if alive(pid) and ours(pid, config):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert code == 0 and sorted(down["stopped"] + down["killed"]) == ["boc", "geely", "tier1", "tier2"]
    assert pids_of(tmp_path) == {}
