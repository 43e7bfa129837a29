"""A throw-away cluster for a chaos run: its own directory, free ports, keys and genesis, one node process per
node started with ``--fault-injection``, and the process-level faults (SIGKILL, SIGSTOP/SIGCONT, restart).

Every process this module starts is remembered and `close()` kills it (also paused ones). Each node also gets
PR_SET_PDEATHSIG, so even a chaos runner killed with SIGKILL takes its nodes with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

STANDARD_ORGS = (
    ("boc", "Bank of China", "bank"),
    ("geely", "Geely Automobile", "core"),
    ("tier1", "Tier-1 Supplier", "supplier"),
    ("tier2", "Tier-2 Supplier", "supplier"),
    ("tier3", "Tier-3 Supplier", "supplier"),
)
NODES_MIN = 3
NODES_MAX = 9
STOP_TIMEOUT_S = 5.0
PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; held open together so they are distinct."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    org: str
    http_port: int
    raft_port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def orgs_for(n_nodes: int) -> list[tuple[str, str, str]]:
    orgs = list(STANDARD_ORGS)
    for i in range(len(orgs), n_nodes):
        orgs.append((f"tier{i - 1}", f"Tier-{i - 1} Supplier", "supplier"))
    return orgs


def cluster_toml(chain_id: str, nodes: list[NodeInfo], orgs: list[tuple[str, str, str]], tick_ms: int) -> str:
    lines = [
        "# Written by the chaos runner (node/chaos/cluster.py) for one run.",
        "[cluster]",
        f'chain_id = "{chain_id}"',
        f"tick_ms = {tick_ms}",
        "election_ticks = 10",
        "heartbeat_ticks = 1",
        "snapshot_entries = 1000",
        "",
    ]
    for org_id, name, role in orgs:
        lines += ["[[orgs]]", f'id = "{org_id}"', f'name = "{name}"', f'role = "{role}"', ""]
    for n in nodes:
        lines += [
            "[[nodes]]",
            f'id = "{n.id}"',
            f'org = "{n.org}"',
            f'http = "127.0.0.1:{n.http_port}"',
            f'raft = "127.0.0.1:{n.raft_port}"',
            f'data_dir = "data/{n.id}"',
            "",
        ]
    return "\n".join(lines)


class ChaosCluster:
    """The node processes of one chaos run."""

    def __init__(self, base_dir: Path, n_nodes: int, chain_id: str = "ecert-chaos", tick_ms: int = 50) -> None:
        if not NODES_MIN <= n_nodes <= NODES_MAX:
            raise ValueError(f"--nodes must be in {NODES_MIN}..{NODES_MAX}")
        self.base_dir = Path(base_dir).resolve()
        self.chain_id = chain_id
        self.orgs = orgs_for(n_nodes)
        ports = free_ports(2 * n_nodes)
        self.nodes = [
            NodeInfo(org_id, org_id, ports[2 * i], ports[2 * i + 1], self.base_dir / "data" / org_id)
            for i, (org_id, _, _) in enumerate(self.orgs[:n_nodes])
        ]
        self.config_path = self.base_dir / "cluster.toml"
        self.tick_ms = tick_ms
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.all_pids: list[int] = []
        self.expected_down: set[str] = set()  # stopped or killed on purpose, not yet restarted
        self.crashes_seen: set[int] = set()  # pids already reported as having exited on their own

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def node(self, node_id: str) -> NodeInfo:
        return next(n for n in self.nodes if n.id == node_id)

    def url(self, node_id: str) -> str:
        return self.node(node_id).url

    def write_files(self) -> None:
        """cluster.toml, keys/ and genesis.json, with the project's own tools (as `ecert init` does)."""
        from node.cli import write_genesis
        from node.config import load_config
        from node.keys import ensure_cluster_keys

        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(cluster_toml(self.chain_id, self.nodes, self.orgs, self.tick_ms))
        config = load_config(self.config_path)
        ensure_cluster_keys(config)
        if not config.genesis_path.exists():
            write_genesis(config, config.genesis_path)

    def org_seed(self, org_id: str) -> bytes:
        from node.keys import load_key, org_key_path

        return load_key(org_key_path(self.base_dir / "keys", org_id)).seed

    # -- process faults -------------------------------------------------------------------------------------

    def start(self, node_id: str, fault_injection: bool = True) -> int:
        if self.alive(node_id):
            return self.procs[node_id].pid
        node = self.node(node_id)
        node.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "node", "--config", str(self.config_path), "--id", node_id,
                *(["--fault-injection"] if fault_injection else [])]
        with (node.data_dir / "node.out").open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} chaos starts {node_id}\n".encode())
            out.flush()
            proc = subprocess.Popen(argv, cwd=self.base_dir, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                                    preexec_fn=_die_with_parent)
        self.procs[node_id] = proc
        self.all_pids.append(proc.pid)
        self.paused.discard(node_id)
        self.expected_down.discard(node_id)
        return proc.pid

    def unexpected_exits(self) -> list[tuple[str, int, int | None, str]]:
        """Nodes that exited without being stopped or killed: (id, pid, exit code, tail of node.out), once each."""
        out: list[tuple[str, int, int | None, str]] = []
        for node_id, proc in self.procs.items():
            code = proc.poll()
            if code is None or node_id in self.expected_down or proc.pid in self.crashes_seen:
                continue
            self.crashes_seen.add(proc.pid)
            try:
                tail = (self.node(node_id).data_dir / "node.out").read_text(errors="replace")[-1500:]
            except OSError:
                tail = ""
            out.append((node_id, proc.pid, code, tail))
        return out

    def alive(self, node_id: str) -> bool:
        proc = self.procs.get(node_id)
        return proc is not None and proc.poll() is None

    def kill(self, node_id: str) -> None:
        proc = self.procs.get(node_id)
        if proc is None or proc.poll() is not None:
            return
        self.expected_down.add(node_id)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.paused.discard(node_id)

    def stop(self, node_id: str, timeout_s: float = STOP_TIMEOUT_S) -> str:
        """Graceful stop: SIGTERM (after SIGCONT, so a paused node can act on it), SIGKILL at the deadline."""
        proc = self.procs.get(node_id)
        if proc is None or proc.poll() is not None:
            return "not_running"
        self.expected_down.add(node_id)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
        self.paused.discard(node_id)
        try:
            proc.wait(timeout_s)
            return "stopped"
        except subprocess.TimeoutExpired:
            self.kill(node_id)
            return "killed"

    def pause(self, node_id: str) -> None:
        if self.alive(node_id):
            self.procs[node_id].send_signal(signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: str) -> None:
        if self.alive(node_id):
            self.procs[node_id].send_signal(signal.SIGCONT)
        self.paused.discard(node_id)

    def exit_codes(self) -> dict[str, int | None]:
        return {n: p.poll() for n, p in self.procs.items()}

    def close(self) -> None:
        """Kill every process this cluster started (paused ones too) and reap them."""
        self.expected_down.update(self.procs)
        for node_id, proc in list(self.procs.items()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT_S)
            self.paused.discard(node_id)
