"""Real addresses with real processes: three nodes, one directory ("host") each holding only its own org key and
node key, every node binding a wildcard and advertising another address: boc 127.0.0.1 (binds 0.0.0.0), geely
the name localhost (binds 0.0.0.0, serves HTTPS with a self-signed certificate), tier1 [::1] (binds [::]; on a
machine without ::1 it is a plain 127.0.0.1 node and the IPv6 test is skipped). Peer links are TLS (the default).

- the cluster elects a leader and commits a tx sent to each node: peers dial the advertised addresses (a name
  resolved at connect time, an IPv6 literal) while each process binds the wildcard;
- `ecert status` verifies the HTTPS node with --cacert or $ECERT_CACERT; without it, or through an address the
  certificate does not name, the request is refused with a certificate verify error that says what to do;
- the Client verifies it with the node's https_ca from the cluster file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ecert.tx import make_tx
from node.client.api import Client, HttpsTrust, Unreachable
from node.config import ClusterConfig, load_config
from node.keys import load_key, load_org_key, node_key_path, org_key_path
from node.ops import localnet
from node.tls import write_self_signed_https_cert

REPO = Path(__file__).resolve().parents[2]
CHAIN_ID = "ecert-addr"
IPV6 = localnet.has_ipv6_loopback()

pytestmark = pytest.mark.slow


@dataclass
class Hosts:
    root: Path
    configs: dict[str, ClusterConfig]
    """Each node's own cluster file (its host directory's copy)."""
    cert: Path
    """geely's self-signed HTTPS certificate: the CA a client must be given."""
    procs: list[Any]

    def client(self, node_id: str, trust: HttpsTrust) -> Client:
        return Client([self.configs[node_id].node(node_id).http_url], timeout_s=10, trust=trust)

    def tail(self) -> str:
        out = []
        for node_id, cfg in self.configs.items():
            path = cfg.node(node_id).data_dir / localnet.OUT_FILE
            if path.exists():
                out.append(f"--- {node_id}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)


def build_hosts(root: Path) -> Hosts:
    """The ceremony in one directory (all keys, genesis), then one directory per node with only its own keys."""
    base = localnet.local_nodes([("boc", "boc"), ("geely", "geely")])
    third = localnet.local_nodes([("tier1", "tier1")], host=localnet.IPV6_LOOPBACK if IPV6 else localnet.LOOPBACK)
    nodes = [replace(base[0], listen_host="0.0.0.0"),
             replace(base[1], host="localhost", listen_host="0.0.0.0", https_cert="https/https-cert.pem",
                     https_key="https/https-key.pem"),
             replace(third[0], listen_host="::" if IPV6 else None)]
    ceremony = root / "ceremony"
    path = localnet.write_cluster_file(ceremony, CHAIN_ID, localnet.consortium_orgs(3), nodes,
                                       {"tick_ms": 50, "election_ticks": 10, "block_timeout_ms": 5})
    localnet.init_cluster(path, genesis_time_ms=int(time.time() * 1000) - 60_000)
    configs = {}
    for n in nodes:
        host = root / n.id
        (host / "keys").mkdir(parents=True)
        for name in ("cluster.toml", "genesis.json"):
            shutil.copy(ceremony / name, host / name)
        for key in (org_key_path(ceremony / "keys", n.org), node_key_path(ceremony / "keys", n.id)):
            shutil.copy(key, host / "keys" / key.name)
        configs[n.id] = load_config(host / "cluster.toml")
    cert, _ = write_self_signed_https_cert(root / "geely" / "https", ["localhost"])
    return Hosts(root, configs, cert, [])


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    h = build_hosts(tmp_path_factory.mktemp("hosts"))
    try:
        for node_id, cfg in h.configs.items():
            h.procs.append(localnet.start_node(cfg.path, node_id, cfg.node(node_id).data_dir, cwd=REPO))
        wait_leader(h)
        yield h
    finally:
        localnet.kill_all(h.procs)


def wait_leader(h: Hosts, timeout_s: float = 30.0) -> str:
    trust = HttpsTrust(h.cert)
    deadline = time.monotonic() + timeout_s
    last: list[Any] = []
    while time.monotonic() < deadline:
        for p in h.procs:
            if p.poll() is not None:
                raise RuntimeError(f"a node exited with {p.returncode}:\n{h.tail()}")
        last = []
        for node_id in h.configs:
            try:
                last.append(h.client(node_id, trust).get("/v1/status"))
            except Unreachable as e:
                last.append(str(e))
        leaders = {s.get("leader_id") for s in last if isinstance(s, dict)}
        if all(isinstance(s, dict) for s in last) and len(leaders) == 1 and None not in leaders:
            return str(leaders.pop())
        time.sleep(0.2)
    raise TimeoutError(f"no agreed leader: {last}\n{h.tail()}")


def anchor(h: Hosts, org: str) -> bytes:
    seed = load_org_key(h.configs[org].keys_dir, org).seed
    doc = f"inv-{org}-{time.time_ns()}"
    return make_tx(seed, CHAIN_ID, "trade.anchor", org, time.time_ns(),
                   {"doc_id": doc, "kind": "delivery", "doc_hash": hashlib.sha256(doc.encode()).hexdigest(),
                    "counterparty": "boc" if org != "boc" else "geely", "amount": 1000})


def ecert(h: Hosts, node_id: str, *argv: str, env: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """The CLI with --json, run from a node's host directory: (exit code, last stdout line as JSON, stderr)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ECERT_")}
    proc = subprocess.run([sys.executable, "-m", "node.client.cli", "--config", str(h.configs[node_id].path),
                           "--json", *argv], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=environ | (env or {}))
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr


def test_each_host_holds_only_its_own_keys_and_binds_a_wildcard(hosts: Hosts) -> None:
    for node_id, cfg in hosts.configs.items():
        assert sorted(p.name for p in cfg.keys_dir.iterdir()) == sorted([f"{node_id}.key", f"node-{node_id}.key"])
        spec = cfg.node(node_id)
        assert spec.raft_bind.is_wildcard == (node_id != "tier1" or IPV6) and not spec.raft.is_wildcard
    boc = hosts.configs["boc"]
    assert boc.node("geely").http_url.startswith("https://localhost:")
    assert boc.node("boc").http_url.startswith("http://127.0.0.1:")


def test_txs_sent_to_every_node_commit_over_the_advertised_addresses(hosts: Hosts) -> None:
    trust = HttpsTrust(hosts.cert)
    for node_id in hosts.configs:
        got = hosts.client(node_id, trust).submit(anchor(hosts, node_id))
        assert got["status"] == "committed", (node_id, got)
    deadline = time.monotonic() + 20
    while True:
        tops = {(s["height"], s["block_hash"]) for s in
                (hosts.client(i, trust).get("/v1/status") for i in hosts.configs)}
        if len(tops) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(tops) == 1 and next(iter(tops))[0] >= 3, tops


def test_cli_verifies_https_with_cacert_and_refuses_without(hosts: Hosts) -> None:
    geely = hosts.configs["boc"].node("geely")
    # Without a CA for the self-signed certificate: the HTTPS node is refused, the others answer.
    code, doc, _ = ecert(hosts, "boc", "status")
    rows = {r.get("node_id") or r["http"]: r for r in doc["nodes"]}
    assert "height" in rows["boc"] and "height" in rows["tier1"], rows
    assert "certificate verify failed" in rows["geely"]["error"] and "--cacert" in rows["geely"]["error"], rows
    # With --cacert, and with $ECERT_CACERT: verified, every node answers.
    for args, env in (((f"--cacert={hosts.cert}", "status"), None), (("status",), {"ECERT_CACERT": str(hosts.cert)})):
        code, doc, err = ecert(hosts, "boc", *args, env=env)
        assert code == 0 and all("height" in r for r in doc["nodes"]), (doc, err)
    code, doc, err = ecert(hosts, "boc", "--node", geely.http_url, "--cacert", str(hosts.cert), "block", "1")
    assert code == 0, err
    # The certificate names localhost only: the same node through 127.0.0.1 fails the host name check.
    by_ip = geely.http_url.replace("localhost", "127.0.0.1")
    code, doc, err = ecert(hosts, "boc", "--node", by_ip, "--cacert", str(hosts.cert), "block", "1")
    assert code == 2 and "certificate verify failed" in err and "127.0.0.1" in err, err
    # Plain HTTP to the HTTPS listener gets nothing useful either (the node serves HTTPS only).
    code, doc, err = ecert(hosts, "boc", "--node", geely.http_url.replace("https", "http"), "block", "1")
    assert code != 0, (doc, err)
    # A --cacert that does not exist is a usage error naming it.
    code, doc, err = ecert(hosts, "boc", "--cacert", "/nonexistent/ca.pem", "status")
    assert code == 2 and "/nonexistent/ca.pem not found" in err, err


def test_the_client_uses_the_https_ca_of_the_cluster_file(hosts: Hosts) -> None:
    base = hosts.configs["geely"]
    text = base.path.read_text().replace('https_key = "https/https-key.pem"',
                                         'https_key = "https/https-key.pem"\nhttps_ca = "https/https-cert.pem"')
    pinned_path = base.base_dir / "client-cluster.toml"
    pinned_path.write_text(text)
    pinned = load_config(pinned_path)
    url = pinned.node("geely").http_url
    status = Client([url], timeout_s=10, trust=HttpsTrust.of_cluster(pinned)).get("/v1/status")
    assert status["node_id"] == "geely"
    with pytest.raises(Unreachable, match="certificate verify failed"):
        Client([url], timeout_s=10, trust=HttpsTrust.of_cluster(hosts.configs["boc"])).get("/v1/status")


@pytest.mark.skipif(not IPV6, reason="this machine has no ::1 (no IPv6 on loopback): tier1 ran on 127.0.0.1")
def test_the_ipv6_node_advertises_brackets_and_binds_every_ipv6_address(hosts: Hosts) -> None:
    tier1 = hosts.configs["tier1"].node("tier1")
    assert str(tier1.raft).startswith("[::1]:") and str(tier1.raft_bind).startswith("[::]:")
    assert tier1.http_url.startswith("http://[::1]:")
    members = Client([tier1.http_url], timeout_s=10).get("/v1/cluster")
    record = json.dumps(members)
    assert f'"{tier1.raft}"' in record, members  # genesis and the membership hold the bracketed form
    assert load_key(node_key_path(hosts.configs["tier1"].keys_dir, "tier1"))


def test_a_node_whose_https_files_are_missing_refuses_to_start_naming_the_key(tmp_path: Path) -> None:
    """Checked at start, not at load (the key lives on the node's host only): the node exits, saying which."""
    node = replace(localnet.local_nodes([("boc", "boc")])[0], https_cert="https/cert.pem", https_key="https/key.pem")
    path = localnet.write_cluster_file(tmp_path, CHAIN_ID, localnet.consortium_orgs(2), [node])
    localnet.init_cluster(path)
    assert load_config(path).node("boc").https_cert == tmp_path.resolve() / "https" / "cert.pem"  # loads fine
    proc = subprocess.run([sys.executable, "-m", "node", "--config", str(path), "--id", "boc"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"nodes.https_cert of boc: {tmp_path.resolve() / 'https' / 'cert.pem'} not found" in proc.stderr, \
        proc.stderr
