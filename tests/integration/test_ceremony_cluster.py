"""A consortium made the real way, on one machine: three organisations each run `ecert keygen` in their own host
directory, a coordinator builds genesis.json and cluster.toml from the three public files alone (`ecert genesis
add-org`, `ecert genesis build`), each host gets both files and checks `ecert genesis hash`, and three node
processes, each started from its own directory holding only its own two keys, elect a leader and commit a tx
signed with the org key of the host that sends it. Then the custody checks at start, on real processes: a host
directory holding a second org's key, or an org key that is not the chain's, does not start (exit 1, the message
names the file); put right, the same node starts and catches up.

Every command is a separate process (`python -m node.client.cli`), as on separate hosts; addresses are 127.0.0.1
on free ports. Every node process is killed in teardown, also when an assertion fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.keys import load_key
from node.ops.localnet import free_ports, kill_all, start_node, stop_process
from tests.polling import wait_for

pytestmark = pytest.mark.slow

ORGS = [("boc", "bank", "Bank of China"), ("geely", "core", "Geely Automobile"), ("tier1", "supplier", "Tier-1")]
CHAIN_ID = "ecert-ceremony-it"
SETTINGS = "tick_ms = 50\nelection_ticks = 10\nblock_timeout_ms = 5\n"


def ecert(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ECERT_")}
    return subprocess.run([sys.executable, "-m", "node.client.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def status(http: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{http}/v1/status", timeout=2) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except (OSError, urllib.error.URLError, ValueError):
        return None


@pytest.fixture
def procs() -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    running: dict[str, subprocess.Popen[bytes]] = {}
    yield running
    kill_all(running.values())


def out_text(host: Path, node_id: str) -> str:
    path = host / "data" / node_id / "node.out"
    return path.read_text(errors="replace") if path.exists() else ""


def refused_start(host: Path, node_id: str) -> str:
    """Start the node and return what it said on its way out; it must exit 1 (cannot start)."""
    proc = start_node(host / "cluster.toml", node_id, host / "data" / node_id, cwd=host)
    try:
        code = proc.wait(60)
    finally:
        kill_all([proc])
    assert code == 1, out_text(host, node_id)
    return " ".join(out_text(host, node_id).split())


def test_three_hosts_from_the_ceremony_run_a_chain_with_one_orgs_keys_each(
        tmp_path: Path, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    hosts, coordinator = tmp_path / "hosts", tmp_path / "coordinator"
    ports = free_ports(2 * len(ORGS))
    http = {org: f"127.0.0.1:{ports[2 * i + 1]}" for i, (org, _, _) in enumerate(ORGS)}

    # 1. Each host: its own keys, its public file to the coordinator.
    inbox = coordinator / "inbox"
    inbox.mkdir(parents=True)
    for i, (org, role, name) in enumerate(ORGS):
        (hosts / org).mkdir(parents=True)
        ok(ecert("keygen", "--org", org, "--node", org, "--dir", ".", "--role", role, "--name", name,
                 "--raft", f"127.0.0.1:{ports[2 * i]}", "--http", http[org], cwd=hosts / org))
        shutil.copy(hosts / org / f"{org}.public.json", inbox)

    # 2. The coordinator: genesis from the public files (dated a minute back: it bounds block 1's time).
    ok(ecert("genesis", "add-org", *sorted(str(p) for p in inbox.iterdir()), "--ceremony", "c", cwd=coordinator))
    built = ok(ecert("--json", "genesis", "build", "--ceremony", "c", "--chain-id", CHAIN_ID, "--genesis-time",
                     str(int(time.time() * 1000) - 60_000), "--out", "out", cwd=coordinator))
    summary = json.loads(built)
    assert summary["orgs"] == sorted(org for org, _, _ in ORGS)
    assert not (coordinator / "out" / "keys").exists()

    # 3. Each host: both files beside its keys/, the same hashes everywhere.
    cluster_text = (coordinator / "out" / "cluster.toml").read_text().replace(
        "peer_tls = true\n", "peer_tls = true\n" + SETTINGS)
    for org, _, _ in ORGS:
        (hosts / org / "cluster.toml").write_text(cluster_text)
        shutil.copy(coordinator / "out" / "genesis.json", hosts / org)
        assert sorted(p.name for p in (hosts / org / "keys").iterdir()) == sorted([f"{org}.key", f"node-{org}.key"])
    hashes = {json.loads(ok(ecert("--json", "genesis", "hash", cwd=hosts / org)))["genesis_hash"]
              for org, _, _ in ORGS}
    assert hashes == {summary["genesis_hash"]}

    # Three processes, each from its own directory.
    for org, _, _ in ORGS:
        procs[org] = start_node(hosts / org / "cluster.toml", org, hosts / org / "data" / org, cwd=hosts / org)

    def one_leader() -> str | None:
        for org, proc in procs.items():
            assert proc.poll() is None, out_text(hosts / org, org)
        views = [status(http[org]) for org in procs]
        leaders = {v.get("leader_id") for v in views if v is not None}
        return leaders.pop() if len(leaders) == 1 and None not in leaders and None not in views else None

    leader = wait_for(one_leader, 60, "one leader that all three nodes agree on", every_s=0.3)
    assert leader in http

    # A tx signed by boc's key, from boc's own directory (the only org key there: the CLI signs as boc).
    answer = json.loads(ok(ecert("--json", "credit", "grant", "--core", "geely", "--limit", "5000000yuan",
                                 "--expires-at", "+365d", cwd=hosts / "boc")))
    assert answer["status"] == "committed", answer
    tx_id, height = answer["tx_id"], answer["height"]
    with urllib.request.urlopen(f"http://{http['tier1']}/v1/tx/{tx_id}", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "committed"  # every member's node has it
    # And geely's key, from geely's directory, cannot sign for boc there: it has no boc key to sign with.
    refused = ecert("--as", "boc", "credit", "grant", "--core", "geely", "--limit", "1yuan", "--expires-at", "+1d",
                    cwd=hosts / "geely")
    assert refused.returncode == 2 and "boc.key does not exist" in " ".join(refused.stderr.split())

    # Custody at start: geely's host with boc's key beside its own refuses to start, naming the file.
    geely = hosts / "geely"
    assert stop_process(procs.pop("geely"), 15) == "stopped"
    shutil.copy(hosts / "boc" / "keys" / "boc.key", geely / "keys" / "boc.key")
    said = refused_start(geely, "geely")
    assert "cannot start" in said and "boc.key (org boc's key)" in said and "move these out" in said
    (geely / "keys" / "boc.key").unlink()

    # An org key that is not the chain's: refused, naming both keys.
    own = geely / "keys" / "geely.key"
    shutil.move(own, tmp_path / "geely.key.saved")
    ok(ecert("keygen", "--org", "geely", "--node", "geely", "--dir", str(tmp_path / "stray"), "--role", "core",
             "--raft", "127.0.0.1:1", "--http", "127.0.0.1:2", cwd=tmp_path))
    shutil.copy(tmp_path / "stray" / "keys" / "geely.key", own)
    said = refused_start(geely, "geely")
    chain_pk = load_key(tmp_path / "geely.key.saved").sign_pk_hex
    assert f"is {chain_pk[:16]}..." in said and load_key(own).sign_pk_hex[:16] in said
    own.unlink()
    shutil.move(tmp_path / "geely.key.saved", own)

    # Put right, the same node starts again and has the tx.
    procs["geely"] = start_node(geely / "cluster.toml", "geely", geely / "data" / "geely", cwd=geely)

    def caught_up() -> bool:
        assert procs["geely"].poll() is None, out_text(geely, "geely")
        view = status(http["geely"])
        return view is not None and view.get("height", 0) >= height

    wait_for(caught_up, 60, "geely to start again and reach the tx's height", every_s=0.3)
