"""Throw-away local clusters on 127.0.0.1 (or [::1]), for tests, chaos runs and benchmarks.

    nodes = local_nodes([("boc", "boc"), ("geely", "geely"), ("tier1", "tier1")])   # each on two free ports
    path = write_cluster_file(root, "ecert-test", consortium_orgs(5), nodes, {"tick_ms": 50})
    config = init_cluster(path)               # keys/ and genesis.json, as `ecert init` writes them
    proc = start_node(path, "boc", config.node("boc").data_dir, cwd=root)
    stop_process(proc, 5.0)

Loopback is this launcher's assumption, not the node's (node/config.py takes any address): `local_nodes(...,
host=IPV6_LOOPBACK)` builds the cluster on [::1] where the machine has it (`has_ipv6_loopback`), and a LocalNode
may bind another address than it advertises (`listen_host`, e.g. "0.0.0.0") and serve HTTPS (`https_cert`).

A node started here runs in its own session (signals to the caller's group do not reach it), appends its
stdout/stderr to <data_dir>/node.out, and by default gets PR_SET_PDEATHSIG: if the process that started it dies,
even by SIGKILL, the kernel SIGKILLs the node too, so no orphan outlives a crashed test or runner.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from node.config import ClusterConfig, load_config
from node.genesis_file import ChainParamValues, init_cluster_files

LOOPBACK = "127.0.0.1"
IPV6_LOOPBACK = "::1"
PR_SET_PDEATHSIG = 1
OUT_FILE = "node.out"
REAP_TIMEOUT_S = 10.0

Org = tuple[str, str, str]
"""(org id, name, role), as in an [[orgs]] table."""


def has_ipv6_loopback() -> bool:
    """Whether a socket can bind [::1] here (containers and some CI hosts run without IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind((IPV6_LOOPBACK, 0))
    except OSError:
        return False
    return True


def host_port(host: str, port: int) -> str:
    """"HOST:PORT" as cluster.toml writes it: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """`count` distinct ports the kernel hands out now on `host` (held open together so they differ; closed
    before returning, so another process could take one first: good enough for loopback tests)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


REGULATOR_ORG: Org = ("pbc", "People's Bank of China", "regulator")
"""The shipped cluster's regulator: its node is a learner that is never promoted (CONTRACT §6)."""


def consortium_orgs(count: int, *, regulator: bool = False) -> list[Org]:
    """The shipped cluster.toml's consortium (boc the bank, geely the core enterprise, suppliers tier1..tier3),
    cut to `count` orgs or extended with more supplier tiers; with `regulator`, the regulator pbc after them
    (the shipped cluster is consortium_orgs(5, regulator=True), each org running one node)."""
    orgs: list[Org] = [("boc", "Bank of China", "bank"), ("geely", "Geely Automobile", "core")]
    orgs += [(f"tier{k}", f"Tier-{k} Supplier", "supplier") for k in range(1, count - 1)]
    return orgs[:count] + ([REGULATOR_ORG] if regulator else [])


@dataclass(frozen=True, slots=True)
class LocalNode:
    """One [[nodes]] entry of a local cluster; its data directory is data/<id> beside the cluster file."""

    id: str
    org: str
    http_port: int
    raft_port: int
    voter: bool = True
    host: str = LOOPBACK
    """The address both ports are advertised on, and listen on unless `listen_host` is set (a network
    namespace's own address in the chaos real-network mode). An IPv6 address without brackets."""
    listen_host: str | None = None
    """What both ports bind instead (raft_listen / http_listen), e.g. "0.0.0.0" or "::"."""
    https_cert: str | None = None
    """HTTPS for the client API: PEM paths relative to the cluster file (https_cert, https_key, https_ca)."""
    https_key: str | None = None
    https_ca: str | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https_cert else 'http'}://{host_port(self.host, self.http_port)}"

    @property
    def data_dir(self) -> str:
        return f"data/{self.id}"


def local_nodes(members: Sequence[tuple[str, str]], voters: int | None = None,
                host: str = LOOPBACK) -> list[LocalNode]:
    """One node per (node id, org id), each on two fresh ports of `host` (LOOPBACK, or IPV6_LOOPBACK where
    `has_ipv6_loopback()`); those after the first `voters` are learners (voter = false: genesis lists them as
    learners and the leader adds them to Raft as such; the regulator's node, ("pbc", "pbc"), goes there)."""
    ports = free_ports(2 * len(members), host)
    return [LocalNode(node_id, org, ports[2 * i], ports[2 * i + 1], voters is None or i < voters, host)
            for i, (node_id, org) in enumerate(members)]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a basic TOML string: JSON's escapes are TOML's


def cluster_toml(chain_id: str, orgs: Sequence[Org], nodes: Sequence[LocalNode],
                 settings: Mapping[str, object] | None = None, comment: str | None = None) -> str:
    """The text of a cluster file: [cluster] with `settings` (cluster.toml keys), then [[orgs]], then [[nodes]]."""
    lines = [f"# {comment}"] if comment else []
    lines += ["[cluster]", f"chain_id = {_toml_value(chain_id)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in (settings or {}).items()]
    for org_id, name, role in orgs:
        lines += ["", "[[orgs]]", f"id = {_toml_value(org_id)}", f"name = {_toml_value(name)}",
                  f"role = {_toml_value(role)}"]
    for n in nodes:
        lines += ["", "[[nodes]]", f"id = {_toml_value(n.id)}", f"org = {_toml_value(n.org)}",
                  f"http = {_toml_value(host_port(n.host, n.http_port))}",
                  f"raft = {_toml_value(host_port(n.host, n.raft_port))}",
                  f"data_dir = {_toml_value(n.data_dir)}"]
        if n.listen_host is not None:
            lines += [f"http_listen = {_toml_value(host_port(n.listen_host, n.http_port))}",
                      f"raft_listen = {_toml_value(host_port(n.listen_host, n.raft_port))}"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in
                  (("https_cert", n.https_cert), ("https_key", n.https_key), ("https_ca", n.https_ca))
                  if value is not None]
        if not n.voter:
            lines.append("voter = false")
    return "\n".join(lines) + "\n"


def write_cluster_file(root: Path, chain_id: str, orgs: Sequence[Org], nodes: Sequence[LocalNode],
                       settings: Mapping[str, object] | None = None, comment: str | None = None,
                       peer_tls: bool = True) -> Path:
    """<root>/cluster.toml (root created if missing); returns its path. `peer_tls = False` writes
    `[cluster] peer_tls = false` (clear-text peer links, for measuring what TLS costs); True leaves the key out
    (the default, TLS 1.3) unless `settings` names it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "cluster.toml"
    merged = dict(settings or {})
    if not peer_tls:
        merged["peer_tls"] = False
    path.write_text(cluster_toml(chain_id, orgs, nodes, merged, comment), encoding="utf-8")
    return path


def init_cluster(config_path: Path, genesis_time_ms: int | None = None,
                 params: ChainParamValues | None = None) -> ClusterConfig:
    """keys/ and genesis.json beside the cluster file, each only if missing (what `ecert init` does; `params`:
    the chain parameters, default the local demo's, node/genesis_file.py)."""
    config = load_config(config_path)
    init_cluster_files(config, genesis_time_ms, params)
    return config


def die_with_parent() -> None:
    """preexec_fn: the kernel SIGKILLs the child when its parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


SOURCE_TREE = Path(__file__).resolve().parents[2]
"""The tree this launcher's modules come from (a checkout, or .build/compiled), if it is one (has pyproject.toml)."""


def node_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a node process: ours, with PYTHONPATH made absolute and led by our own source tree.

    A node runs in another directory than its launcher, so a relative entry (`PYTHONPATH=.`) would name another
    place, and the editable install would hand it the checkout's pure modules: `cd .build/compiled &&
    PYTHONPATH=. python -m node.bench` measured compiled clients against pure nodes. Led by the launcher's tree,
    a node imports exactly the modules its launcher does (pure or compiled). An installed package (no
    pyproject.toml above it) adds nothing, so site-packages never goes ahead of the standard library."""
    env = dict(os.environ if environ is None else environ)
    entries = [str(Path(e).resolve()) for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    if (SOURCE_TREE / "pyproject.toml").is_file():
        entries = [str(SOURCE_TREE)] + [e for e in entries if e != str(SOURCE_TREE)]
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(entries)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_node(config_path: Path, node_id: str, data_dir: Path, *, cwd: Path, extra_args: Sequence[str] = (),
               outlive_parent: bool = False) -> subprocess.Popen[bytes]:
    """`python -m node --config F --id ID [extra_args]` in its own session, output appended to
    <data_dir>/node.out after a line saying when and how it started. Unless `outlive_parent`, it dies with us."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "node", "--config", str(config_path), "--id", node_id, *extra_args]
    with (data_dir / OUT_FILE).open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {' '.join(argv)}\n".encode())
        out.flush()
        return subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=node_env(), start_new_session=True,
                                preexec_fn=None if outlive_parent else die_with_parent)


def kill_process(proc: subprocess.Popen[bytes], timeout_s: float = REAP_TIMEOUT_S) -> None:
    """SIGKILL (no clean-up at all; works on a paused process too) and reap."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait(timeout_s)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """Graceful stop: SIGTERM, and SIGCONT so a paused process can act on it; SIGKILL after `timeout_s`.
    Returns "not_running", "stopped" or "killed"."""
    if proc.poll() is not None:
        return "not_running"
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        kill_process(proc)
        return "killed"
    return "stopped"


def kill_all(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = REAP_TIMEOUT_S) -> None:
    """Teardown: SIGKILL every live process first (they die in parallel), then reap each; never raises for one
    that will not die."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout_s)
