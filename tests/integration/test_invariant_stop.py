"""A broken invariant in a running node process stops it loudly: exit status 70 (EXIT_INVARIANT_VIOLATION), an
`invariant_violation` line in node.log, a readable reason in node.out, <data_dir>/node.exit, and
`scripts/cluster status` reporting "stopped: invariant violation (exit 70)". The rest of the cluster goes on."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from node.exit_status import EXIT_INVARIANT_VIOLATION, read_exit_record
from tests.integration.conftest import REPO, Cluster, http_json

pytestmark = pytest.mark.slow


def log_events(c: Cluster, node_id: str, event: str) -> list[dict[str, Any]]:
    text = (c.nodes[node_id].data_dir / "node.log").read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def cluster_status(c: Cluster) -> tuple[dict[str, Any], str]:
    out = subprocess.run([str(REPO / "scripts" / "cluster"), "status", "--config", str(c.config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_a_broken_invariant_in_apply_stops_the_node_with_exit_status_70(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, fault_injection=True)
    leader = c.wait_leader()
    victim = next(i for i in c.nodes if i != leader)
    h = c.nodes[victim]
    rule = {"break_invariant": {"node": victim, "at": "apply"}}
    status, body = http_json("POST", c.url(victim, "/admin/faults"), json.dumps(rule).encode())
    assert status == 200 and body["invariant_break"] == "apply", body

    # The next committed block reaches the victim's apply path, where the invariant breaks.
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body
    assert h.proc is not None
    assert h.proc.wait(timeout=30) == EXIT_INVARIANT_VIOLATION == 70

    [line] = log_events(c, victim, "invariant_violation")
    assert line["level"] == "critical" and line["where"] == "ready"
    assert "fault injection: invariant broken applying entry" in line["reason"]
    assert log_events(c, victim, "node_exit")[0]["status"] == 70
    out = (h.data_dir / "node.out").read_text(errors="replace")
    assert f"node {victim}: stopped: invariant violation: ready: fault injection" in out and "(exit 70)" in out
    record = read_exit_record(h.data_dir)
    assert record is not None and record["status"] == 70 and record["reason"] == "invariant_violation"
    assert "fault injection" in record["detail"]

    summary, human = cluster_status(c)
    row = next(r for r in summary["nodes"] if r["id"] == victim)
    assert row["state"] == "stopped" and row["pid"] is None
    assert row["exit"]["status"] == 70 and row["exit"]["reason"] == "invariant_violation"
    assert summary["running"] == 2 and not summary["converged"]
    assert "stopped: invariant violation (exit 70)" in human

    # The two others still commit.
    status, body = c.submit(leader, c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body

    # Nothing of the block was applied before the invariant broke, so the victim restarts from its data,
    # catches up, and no longer shows as stopped.
    c.start(victim)
    c.wait_up(victim)
    assert read_exit_record(h.data_dir) is None
    top = c.wait_converged(list(c.nodes))
    assert top["height"] >= 2
    summary, _ = cluster_status(c)
    assert next(r for r in summary["nodes"] if r["id"] == victim)["state"] == "running"
