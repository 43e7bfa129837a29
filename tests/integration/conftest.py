"""Real multi-process clusters for integration tests.

    def test_something(cluster_factory):
        c = cluster_factory(3)                 # writes cluster.toml + keys + genesis.json, starts 3 nodes,
        leader = c.wait_leader()               # waits for a leader; every process is killed in teardown
        c.submit(c.nodes[1], c.anchor_tx("boc"))
        joiner = c.joining_node("tier3", "tier3")   # a node not in the cluster file: its own cluster file,
        c.start(joiner.id)                          #   genesis.json copied; member.propose admits it

Each cluster lives in its own tmp dir with free 127.0.0.1 ports. Nodes are `python -m node --config F --id ID`
processes (own session, SIGKILLed if pytest itself dies: PR_SET_PDEATHSIG), stdout/stderr in <data_dir>/node.out.
The cluster file, keys, genesis and process handling are node/ops/localnet.py's, shared with the chaos runner and the
bench; `Cluster` adds the HTTP helpers tests want and is plain Python (no pytest): `Cluster.create(root, n, ...)`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecert.tx import make_tx
from node.config import CLUSTER_INT_KEYS, ClusterConfig, load_config
from node.keys import load_or_create_key, load_org_key, node_key_path, node_public_key
from node.ops.localnet import (
    REGULATOR_ORG,
    LocalNode,
    consortium_orgs,
    init_cluster,
    kill_all,
    kill_process,
    local_nodes,
    start_node,
    stop_process,
    write_cluster_file,
)
from node.request_auth import fresh_nonce, sign_request

REPO = Path(__file__).resolve().parents[2]
NODES_MAX = 9
CHAIN_ID = "ecert-test"
_nonce = itertools.count(int(time.time() * 1000))


def http_json(method: str, url: str, body: bytes | None = None, *, content_type: str = "application/json",
              timeout: float = 15.0, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, decoded JSON body or raw text) without raising on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": content_type, "Accept": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data.decode("utf-8", "replace")


@dataclass
class NodeHandle:
    id: str
    org: str
    http_url: str
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, root: Path, config_path: Path, fault_injection: bool = False) -> None:
        self.root = root
        self.config_path = config_path
        self.config: ClusterConfig = load_config(config_path)
        self.fault_injection = fault_injection
        self.nodes: dict[str, NodeHandle] = {
            n.id: NodeHandle(n.id, n.org, n.http_url, n.data_dir) for n in self.config.nodes}
        self.config_paths: dict[str, Path] = {n.id: config_path for n in self.config.nodes}
        """The cluster file each node runs with (a joining node has its own)."""
        self.all_pids: list[int] = []

    # -- creation

    @classmethod
    def create(cls, root: Path, n: int = 3, *, learners: int = 0, fault_injection: bool = False,
               orgs: int = 5, regulator: bool = False, **cluster_keys: Any) -> Cluster:
        """Write cluster.toml (n voters + `learners` nodes with voter = false; at least `orgs` genesis orgs:
        boc (bank), geely (core), tier1.. (suppliers); node i runs org i; with `regulator`, also the regulator
        pbc and its learner node pbc, as in the shipped cluster), keys/ and genesis.json (whose `nodes` are all
        of these: the genesis membership)."""
        total = n + learners + (1 if regulator else 0)
        if not 1 <= total <= NODES_MAX:
            raise ValueError(f"between 1 and {NODES_MAX} nodes")
        members = consortium_orgs(max(n + learners, orgs), regulator=regulator)
        runs = [(o, o) for o, _, _ in members[:n + learners]]
        if regulator:
            runs.append((REGULATOR_ORG[0], REGULATOR_ORG[0]))
        nodes = local_nodes(runs, voters=n)
        path = write_cluster_file(root, CHAIN_ID, members, nodes, cls.settings(cluster_keys))
        # Dated a minute back: genesis_time bounds block 1's time from below.
        init_cluster(path, genesis_time_ms=int(time.time() * 1000) - 60_000)
        return cls(root, path, fault_injection)

    @staticmethod
    def settings(cluster_keys: dict[str, Any]) -> dict[str, Any]:
        return {"tick_ms": 50, "election_ticks": 10, "block_timeout_ms": 5, **cluster_keys}

    def joining_node(self, node_id: str, org: str) -> NodeHandle:
        """A node that is not in the cluster file: its own directory (joiners/<id>/) with a cluster file that
        lists the cluster's nodes and itself (voter = false, fresh ports), a copy of genesis.json and its own
        node key. It can start at once; its peers refuse it until a member.propose add_learner is approved."""
        root = self.root / "joiners" / node_id
        existing = [LocalNode(n.id, n.org, n.http.port, n.raft.port, n.voter, n.http.host) for n in self.config.nodes]
        new = local_nodes([(node_id, org)], voters=0)[0]
        orgs = [(o.id, o.name, o.role) for o in self.config.orgs]
        settings = {key: getattr(self.config, key) for key in CLUSTER_INT_KEYS}
        path = write_cluster_file(root, CHAIN_ID, orgs, [*existing, new], settings)
        shutil.copyfile(self.config.genesis_path, root / "genesis.json")
        load_or_create_key(node_key_path(root / "keys", node_id))
        config = load_config(path)
        spec = config.node(node_id)
        self.nodes[node_id] = h = NodeHandle(node_id, org, spec.http_url, spec.data_dir)
        self.config_paths[node_id] = path
        return h

    def node_pk(self, node_id: str) -> str:
        """The hex transport key of a node (a joining node's from its own keys/)."""
        return node_public_key(load_config(self.config_paths[node_id]), node_id).hex()

    # -- processes

    def start(self, node_id: str) -> NodeHandle:
        h = self.nodes[node_id]
        if h.alive:
            return h
        h.proc = start_node(self.config_paths[node_id], node_id, h.data_dir, cwd=REPO,
                            extra_args=["--fault-injection"] if self.fault_injection else [])
        self.all_pids.append(h.proc.pid)
        return h

    def start_all(self, voters_only: bool = True) -> None:
        for n in self.config.nodes:
            if n.voter or not voters_only:
                self.start(n.id)

    def wait_up(self, node_id: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        h = self.nodes[node_id]
        while time.monotonic() < deadline:
            if h.proc is not None and h.proc.poll() is not None:
                raise RuntimeError(f"{node_id} exited with {h.proc.returncode}:\n{self.tail(node_id)}")
            st = self.try_status(node_id)
            if st is not None:
                return st
            time.sleep(0.1)
        raise TimeoutError(f"{node_id} not answering after {timeout}s:\n{self.tail(node_id)}")

    def signal(self, node_id: str, sig: int) -> None:
        h = self.nodes[node_id]
        if h.proc is not None and h.proc.poll() is None:
            os.kill(h.proc.pid, sig)

    def kill(self, node_id: str) -> None:
        """SIGKILL (no cleanup at all), and reap."""
        h = self.nodes[node_id]
        if h.proc is not None:
            kill_process(h.proc)

    def stop(self, node_id: str, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait for a graceful exit (SIGKILL after `timeout`); returns the exit code."""
        h = self.nodes[node_id]
        if h.proc is None:
            return None
        stop_process(h.proc, timeout)
        return h.proc.returncode

    def wipe(self, node_id: str) -> None:
        """Delete a (stopped) node's data directory."""
        assert not self.nodes[node_id].alive
        shutil.rmtree(self.nodes[node_id].data_dir, ignore_errors=True)

    def close(self) -> None:
        """Kill every process this cluster ever started (teardown; also after failures)."""
        kill_all(h.proc for h in self.nodes.values() if h.proc is not None)
        for pid in self.all_pids:  # belt and braces: a pid we started that is somehow still ours
            with contextlib.suppress(ProcessLookupError, PermissionError, ChildProcessError):
                os.kill(pid, 0)
                os.kill(pid, signal.SIGKILL)

    def tail(self, node_id: str, lines: int = 30) -> str:
        d = self.nodes[node_id].data_dir
        out = []
        for name in ("node.out", "node.log"):
            with contextlib.suppress(OSError):
                out.append(f"--- {name}\n" + "\n".join((d / name).read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    # -- HTTP

    def url(self, node_id: str, path: str) -> str:
        return self.nodes[node_id].http_url + path

    def try_status(self, node_id: str) -> dict[str, Any] | None:
        try:
            status, body = http_json("GET", self.url(node_id, "/v1/status"), timeout=2.0)
        except (OSError, urllib.error.URLError):
            return None
        return body if status == 200 and isinstance(body, dict) else None

    def status(self, node_id: str) -> dict[str, Any]:
        st = self.try_status(node_id)
        if st is None:
            raise RuntimeError(f"{node_id} has no status:\n{self.tail(node_id)}")
        return st

    def wait_leader(self, timeout: float = 30.0, among: list[str] | None = None) -> str:
        """The id of a leader that every live node in `among` agrees on."""
        ids = among or [i for i, h in self.nodes.items() if h.alive]
        deadline = time.monotonic() + timeout
        last: list[Any] = []
        while time.monotonic() < deadline:
            for i in ids:
                h = self.nodes[i]
                if h.proc is not None and h.proc.poll() is not None:
                    raise RuntimeError(f"{i} exited with {h.proc.returncode}:\n{self.tail(i)}")
            sts = [self.try_status(i) for i in ids]
            last = sts
            if all(sts):
                leaders = {s["leader_id"] for s in sts}  # type: ignore[index]
                roles = [s["role"] for s in sts]  # type: ignore[index]
                if len(leaders) == 1 and None not in leaders and roles.count("leader") == 1:
                    return leaders.pop()
            time.sleep(0.1)
        raise TimeoutError(f"no agreed leader among {ids} after {timeout}s: {last}")

    def wait_converged(self, ids: list[str] | None = None, timeout: float = 30.0,
                       min_height: int = 0) -> dict[str, Any]:
        """Every node in `ids` at the same height >= min_height with the same block hash and state root."""
        ids = ids or [i for i, h in self.nodes.items() if h.alive]
        deadline = time.monotonic() + timeout
        last: list[Any] = []
        while time.monotonic() < deadline:
            sts = [self.try_status(i) for i in ids]
            last = sts
            if all(sts):
                keys = {(s["height"], s["block_hash"], s["state_root"]) for s in sts}  # type: ignore[index]
                if len(keys) == 1 and sts[0]["height"] >= min_height:  # type: ignore[index]
                    return sts[0]  # type: ignore[return-value]
            time.sleep(0.1)
        raise TimeoutError(f"nodes {ids} did not converge: {last}")

    def signed(self, org: str, method: str, node_id: str, path: str, body: bytes | None = None,
               **kw: Any) -> tuple[int, Any]:
        """`http_json` signed by `org` for node `node_id` (CONTRACT §6: reads are bounded by who asks)."""
        header = sign_request(self.org_seed(org), self.config.chain_id, node_id, org, method, path, body or b"",
                              time.time_ns() // 1_000_000, fresh_nonce())
        return http_json(method, self.url(node_id, path), body, headers={"Authorization": header}, **kw)

    def submit(self, node_id: str, raw: bytes, *, wait: str = "commit", timeout_ms: int = 10_000
               ) -> tuple[int, Any]:
        return http_json("POST", self.url(node_id, f"/v1/tx?wait={wait}&timeout_ms={timeout_ms}"), raw,
                         content_type="application/msgpack", timeout=timeout_ms / 1000 + 10)

    # -- transactions

    def org_seed(self, org_id: str) -> bytes:
        return load_org_key(self.config.keys_dir, org_id).seed

    def anchor_tx(self, signer: str = "tier1", counterparty: str = "geely", amount: int = 1000,
                  doc_id: str | None = None) -> bytes:
        """A signed `trade.anchor` (valid for any active genesis org): cheap and unique per call. A delivery
        note, which needs no contract under a new chain's rules (node/genesis_file.py), unlike an invoice."""
        nonce = next(_nonce)
        doc = doc_id or f"dn-{signer}-{nonce}"
        return make_tx(self.org_seed(signer), CHAIN_ID, "trade.anchor", signer, nonce,
                       {"doc_id": doc, "kind": "delivery", "doc_hash": hashlib.sha256(doc.encode()).hexdigest(),
                        "counterparty": counterparty, "amount": amount})


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Any]:
    """`cluster_factory(n=3, *, learners=0, fault_injection=False, start=True, orgs=5, regulator=False,
    **cluster_keys)`: a running cluster (its voters; learners too with `start_learners`) with an elected leader.
    Every process is killed at teardown, even on failure."""
    made: list[Cluster] = []

    def make(n: int = 3, *, learners: int = 0, fault_injection: bool = False, start: bool = True,
             orgs: int = 5, regulator: bool = False, start_learners: bool = False, **cluster_keys: Any) -> Cluster:
        c = Cluster.create(tmp_path / f"cluster{len(made)}", n, learners=learners, fault_injection=fault_injection,
                           orgs=orgs, regulator=regulator, **cluster_keys)
        made.append(c)
        if start:
            c.start_all(voters_only=not start_learners)
            c.wait_leader(among=[i for i in c.nodes if c.config.node(i).voter])
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()
