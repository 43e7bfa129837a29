"""A throw-away cluster for a chaos run: its own directory, free ports, keys and genesis, one node process per
node started with ``--fault-injection``, and the process-level faults (SIGKILL, SIGSTOP/SIGCONT, restart).

Every process this module starts is remembered and `close()` kills it (also paused ones). Each node also gets
PR_SET_PDEATHSIG, so even a chaos runner killed with SIGKILL takes its nodes with it.

By default nodes listen on 127.0.0.1; with a `NetnsNetwork` (real-network mode, node/chaos/netns.py: selected
by `./scripts/chaos --netns`, i.e. `Options.netns`) each node gets its own network namespace and
address, the network is built by `write_files()` and torn down by `close()`. The multi-host run
(node/chaos/multihost.py) is a subclass: one directory per host (`node_config`, `node_home`), keys from the
genesis ceremony, the same network machinery.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from node.chaos.netns import HTTP_PORT, RAFT_PORT, NetnsNetwork
from node.chaos.workload import CHAIN_PARAMS
from node.client.api import HttpsTrust, Signer
from node.keys import KeyPair, load_org_key
from node.ops import localnet

NODES_MIN = 3
NODES_MAX = 9
STOP_TIMEOUT_S = 5.0
SETTINGS = {"election_ticks": 10, "heartbeat_ticks": 1, "snapshot_entries": 1000}


def orgs_for(n_nodes: int) -> list[localnet.Org]:
    """The shipped consortium's five orgs, one more supplier tier per node beyond five, and the regulator (last:
    it runs no node here; it reads what the checker collects, tx outcomes below a snapshot included)."""
    return localnet.consortium_orgs(max(5, n_nodes), regulator=True)


class ChaosCluster:
    """The node processes of one chaos run."""

    def __init__(self, base_dir: Path, n_nodes: int, chain_id: str = "ecert-chaos", tick_ms: int = 50,
                 netns: bool = False) -> None:
        if not NODES_MIN <= n_nodes <= NODES_MAX:
            raise ValueError(f"--nodes must be in {NODES_MIN}..{NODES_MAX}")
        self.base_dir = Path(base_dir).resolve()
        self.chain_id = chain_id
        self.orgs = orgs_for(n_nodes)
        self.nodes = localnet.local_nodes([(org_id, org_id) for org_id, _, _ in self.orgs[:n_nodes]])
        self.config_path = self.base_dir / "cluster.toml"
        self.tick_ms = tick_ms
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.paused: set[str] = set()
        self.expected_down: set[str] = set()  # stopped or killed on purpose, not yet restarted
        self.crashes_seen: set[int] = set()  # pids already reported as having exited on their own
        self.network: NetnsNetwork | None = NetnsNetwork(self.ids) if netns else None

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    def node(self, node_id: str) -> localnet.LocalNode:
        return next(n for n in self.nodes if n.id == node_id)

    def url(self, node_id: str) -> str:
        if self.network is not None:
            return f"http://{self.network.address(node_id)}:{HTTP_PORT}"
        return self.node(node_id).url

    def https_trust(self) -> HttpsTrust:
        """How the runner's clients verify https:// nodes: the system store (these nodes serve plain HTTP; the
        multi-host run, whose nodes serve HTTPS, pins each host's certificate)."""
        return HttpsTrust()

    def node_home(self, node_id: str) -> Path:
        """The directory a node runs in (its cluster file's): one for the whole cluster on loopback; in
        real-network mode hosts/<id>/, with only that node's two keys (a node on a non-loopback address refuses
        to start beside other orgs' keys: node/custody.py). The runner keeps every org's key in keys/."""
        return self.base_dir / "hosts" / node_id if self.network is not None else self.base_dir

    def node_config(self, node_id: str) -> Path:
        return self.node_home(node_id) / "cluster.toml" if self.network is not None else self.config_path

    def data_dir(self, node_id: str) -> Path:
        return self.node_home(node_id) / self.node(node_id).data_dir

    def write_files(self) -> None:
        """cluster.toml, keys/ and genesis.json, with the project's own tools (as `ecert init` does). In
        real-network mode the namespaces are built first: the file holds their addresses."""
        nodes, run = self.nodes, "one run"
        if self.network is not None:
            self.network.up()
            nodes = [replace(n, host=self.network.address(n.id), http_port=HTTP_PORT, raft_port=RAFT_PORT)
                     for n in self.nodes]
            run = "one real-network run"
        localnet.write_cluster_file(self.base_dir, self.chain_id, self.orgs, nodes,
                                    {"tick_ms": self.tick_ms, **SETTINGS},
                                    comment=f"Written by the chaos runner (node/chaos/cluster.py) for {run}.")
        localnet.init_cluster(self.config_path, params=CHAIN_PARAMS)  # the workload's: a 2 s grace period
        if self.network is not None:
            for n in self.nodes:
                home = self.node_home(n.id)
                (home / "keys").mkdir(parents=True, exist_ok=True)
                for name in ("cluster.toml", "genesis.json"):
                    shutil.copy2(self.base_dir / name, home / name)
                for name in (f"{n.org}.key", f"node-{n.id}.key"):
                    shutil.copy2(self.base_dir / "keys" / name, home / "keys" / name)

    def org_key(self, org_id: str) -> KeyPair:
        return load_org_key(self.base_dir / "keys", org_id)

    def org_seed(self, org_id: str) -> bytes:
        return self.org_key(org_id).seed

    def signer(self, org_id: str, nonces: Callable[[], int | str]) -> Signer:
        return Signer(org_id, self.org_key(org_id), self.chain_id, nonces)

    # -- process faults -------------------------------------------------------------------------------------

    def start(self, node_id: str, fault_injection: bool = True) -> int:
        if self.alive(node_id):
            return self.procs[node_id].pid
        extra = ["--fault-injection"] if fault_injection else []
        if self.network is not None:
            data_dir = self.data_dir(node_id)
            data_dir.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-m", "node", "--config", str(self.node_config(node_id)), "--id", node_id,
                    *extra]
            proc = self.network.start_node(argv, node_id, data_dir / localnet.OUT_FILE, self.node_home(node_id),
                                           localnet.die_with_parent)
        else:
            proc = localnet.start_node(self.node_config(node_id), node_id, self.data_dir(node_id),
                                       cwd=self.node_home(node_id), extra_args=extra)
        self.procs[node_id] = proc
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
                tail = (self.data_dir(node_id) / localnet.OUT_FILE).read_text(errors="replace")[-1500:]
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
        localnet.kill_process(proc)
        self.paused.discard(node_id)

    def stop(self, node_id: str, timeout_s: float = STOP_TIMEOUT_S) -> str:
        """Graceful stop: SIGTERM (after SIGCONT, so a paused node can act on it), SIGKILL at the deadline."""
        proc = self.procs.get(node_id)
        if proc is None or proc.poll() is not None:
            return "not_running"
        self.expected_down.add(node_id)
        self.paused.discard(node_id)
        return localnet.stop_process(proc, timeout_s)

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
        """Kill every process this cluster started (paused ones too) and reap them; tear the network down."""
        self.expected_down.update(self.procs)
        try:
            localnet.kill_all(self.procs.values(), STOP_TIMEOUT_S)
            self.paused.clear()
        finally:
            if self.network is not None:
                self.network.down()

