"""Real-network mode (node/chaos/netns.py): a 3-node cluster in its own network namespaces; a partition made with
tc really cuts node-to-node traffic (the isolated leader loses its followers, the others elect a new leader) and
heal restores it; teardown leaves no namespace, veth, bridge or process. Root only: skipped otherwise, or when
the kernel refuses `ip netns add`. A full `--netns` chaos run is under `-m soak`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from node.chaos import netns
from node.chaos.cluster import ChaosCluster
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "real-network mode needs root"
    try:
        netns.require_netns()
    except netns.NetnsError as exc:
        return str(exc)
    probe = f"{netns.PREFIX}probe{os.getpid()}"
    proc = subprocess.run([netns.IP, "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`ip netns add` fails here: {proc.stderr.strip()}"
    subprocess.run([netns.IP, "netns", "delete", probe], capture_output=True)
    return None


REASON = _netns_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"netns mode unavailable: {REASON}")


def status(cluster: ChaosCluster, node: str) -> dict | None:
    try:
        with urllib.request.urlopen(cluster.url(node) + "/v1/status", timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def leader_seen_by_all(cluster: ChaosCluster, nodes: list[str]) -> str | None:
    sts = [status(cluster, n) for n in nodes]
    leaders = {(s or {}).get("leader_id") for s in sts}
    if None in sts or len(leaders) != 1:
        return None
    (lead,) = leaders
    return lead if lead in nodes and (status(cluster, lead) or {}).get("role") == "leader" else None


def tcp_connect(ns: str, host: str, port: int) -> bool:
    """Connect from inside namespace `ns` (so the path goes through that node's eth0)."""
    code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)\n"
            "except OSError: sys.exit(1)\n")
    return subprocess.run([netns.IP, "netns", "exec", ns, sys.executable, "-c", code, host, str(port)],
                          capture_output=True, timeout=10).returncode == 0


def test_netns_partition_blocks_and_heal_restores(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path / "cluster", 3, netns=True)
    net = cluster.network
    assert net is not None
    pids: list[int] = []
    try:
        cluster.write_files()
        assert "10.77." in cluster.config_path.read_text()
        for n in cluster.ids:
            pids.append(cluster.start(n))
        ids = cluster.ids
        lead = wait_for(lambda: leader_seen_by_all(cluster, ids), 30, "a leader")
        others = [n for n in ids if n != lead]
        term0 = status(cluster, lead)["term"]
        # Before: the leader reaches a follower's Raft port through the kernel.
        assert tcp_connect(net.namespace(lead), net.address(others[0]), netns.RAFT_PORT)

        net.apply({"partition": [[lead], others]})
        # The kernel drops the leader's packets to its peers: a TCP connect from its namespace fails...
        assert not tcp_connect(net.namespace(lead), net.address(others[0]), netns.RAFT_PORT)
        # ...while the runner (on the bridge) still reaches everyone, and the majority elects someone else.
        new = wait_for(lambda: leader_seen_by_all(cluster, others), 20, "a new leader on the majority side")
        assert new != lead and status(cluster, new)["term"] > term0
        assert status(cluster, lead) is not None  # the isolated node is up, only cut off

        net.heal()
        assert tcp_connect(net.namespace(lead), net.address(others[0]), netns.RAFT_PORT)
        # The fault layer's admin route (loopback only) is reached from inside the namespace; not from the bridge.
        assert net.post_admin(lead, {"heal": True})
        req = urllib.request.Request(cluster.url(lead) + "/admin/faults", data=b'{"heal": true}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(req, timeout=2)
        healed = wait_for(lambda: leader_seen_by_all(cluster, ids), 20, "the old leader to rejoin")
        assert healed in others
    finally:
        cluster.close()
    assert net.leftovers() == []
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(f"{netns.PREFIX}{net.run}-")]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_one_way_block_cuts_one_direction_only(tmp_path: Path) -> None:
    net = netns.NetnsNetwork(["a", "b"])
    listener: subprocess.Popen[bytes] | None = None
    try:
        net.up()
        serve = ("import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                 "s.bind((sys.argv[1], 7000)); s.listen(16)\nwhile True: s.accept()[0].close()\n")
        listener = subprocess.Popen(net.command("b", [sys.executable, "-c", serve, net.address("b")]))
        wait_for(lambda: tcp_connect(net.namespace("a"), net.address("b"), 7000), 10, "b's listener")
        net.apply({"block": [["b", "a"]]})  # what b sends a is dropped: a's SYN arrives, b's SYN-ACK does not
        assert not tcp_connect(net.namespace("a"), net.address("b"), 7000)
        with socket.create_connection((net.address("b"), 7000), timeout=2):
            pass  # the host (bridge) is not a peer: never cut
        net.heal()
        assert tcp_connect(net.namespace("a"), net.address("b"), 7000)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(5)
        net.down()
    assert net.leftovers() == []


def test_cleanup_removes_a_crashed_runs_namespaces() -> None:
    # A run whose owner died: its namespace, bridge and the process inside are all removed.
    net = netns.NetnsNetwork(["a"])
    net.up()
    sleeper = subprocess.Popen(net.command("a", ["sleep", "60"]))
    try:
        (netns.STATE_DIR / f"{net.run}.pid").write_text("999999999")  # no such process: stale
        assert net.run in netns.cleanup_stale()
        assert net.leftovers() == []
        assert sleeper.wait(5) is not None
    finally:
        sleeper.kill()
        net.down()


def test_refused_without_root_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsError, match="needs root"):
        netns.require_netns()


@pytest.mark.soak
def test_netns_chaos_run(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "node.chaos", "--quiet", "--netns", "--duration", "30", "--seed", "7",
                           "--report", str(tmp_path / "report")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    summary = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    assert proc.returncode == 0, (summary, proc.stderr[-3000:])
    assert summary["lost"] == 0 and summary["violations"] == 0 and summary["acked"] > 50
    assert not [ns for ns in netns.list_namespaces() if not netns._owner_alive(netns._run_of(ns) or 0)]
