"""deploy/ceremony.py for real: the `ecert keygen` / `ecert genesis` commands, one host directory per
organisation holding exactly its own org key and node key, the same genesis hash everywhere, and one real node
started from a host directory through the image's entry point (deploy/docker/ecert-node), checked by the image's
healthcheck script and stopped with SIGTERM. No container engine: the process runs here, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.config import load_config
from node.keys import load_key
from node.ops.localnet import die_with_parent, free_ports, kill_process
from tests.deploy import ROOT
from tests.polling import wait_for

pytestmark = pytest.mark.slow

CEREMONY = ROOT / "deploy" / "ceremony.py"
ENTRYPOINT = ROOT / "deploy" / "docker" / "ecert-node"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
GENESIS_TIME_MS = 1_750_000_000_000
SHIPPED = tomllib.loads((ROOT / "cluster.toml").read_text(encoding="utf-8"))
NODES = {n["id"]: n["org"] for n in SHIPPED["nodes"]}
SHIPPED_ROLE = {o["id"]: o["role"] for o in SHIPPED["orgs"]}
IMAGE_UID = 10001


def ceremony(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CEREMONY), "--out", str(out), "--genesis-time", str(GENESIS_TIME_MS),
                           *extra], cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def compose_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("compose")
    proc = ceremony(out, "--target", "compose")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_each_host_holds_exactly_its_own_org_key_and_node_key(compose_run: tuple[Path, dict[str, Any], str]) -> None:
    out, summary, _ = compose_run
    assert summary["ceremony"] == "ok" and sorted(summary["hosts"]) == sorted(NODES.values())
    seeds: dict[Path, str] = {}
    for node, org in NODES.items():
        keys = out / "hosts" / org / "keys"
        assert sorted(p.name for p in keys.iterdir()) == sorted([f"{org}.key", f"node-{node}.key"])
        for key in keys.iterdir():
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
            if os.geteuid() == 0:
                assert (key.stat().st_uid, key.stat().st_gid) == (IMAGE_UID, IMAGE_UID), key
            seeds[key] = load_key(key).seed.hex()
    assert len(set(seeds.values())) == len(seeds)  # every key is its own
    # No private key appears anywhere but in its own file: not in the public files, the coordinator's
    # directory, the built cluster file or another host.
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            leaked = [k for k, seed in seeds.items() if seed in text and k != path]
            assert not leaked, f"{path} holds the private key of {leaked}"


def test_every_host_has_the_same_genesis_and_its_own_listen_addresses(
        compose_run: tuple[Path, dict[str, Any], str]) -> None:
    out, summary, stderr = compose_run
    genesis = {(out / "hosts" / org / "genesis.json").read_bytes() for org in NODES.values()}
    assert len(genesis) == 1 and summary["genesis_hash"]
    assert json.loads(genesis.pop())["genesis_time"] == GENESIS_TIME_MS
    for node, org in NODES.items():
        config = load_config(out / "hosts" / org / "cluster.toml")
        assert config.chain_id == "ecert-compose"
        for spec in config.nodes:
            assert (spec.raft.host, spec.raft.port, spec.http.host, spec.http.port) == (spec.id, 9700, spec.id, 8700)
            own = spec.id == node
            assert str(spec.raft_bind) == ("0.0.0.0:9700" if own else f"{spec.id}:9700"), (org, spec.id)
            assert str(spec.http_bind) == ("0.0.0.0:8700" if own else f"{spec.id}:8700"), (org, spec.id)
        spec = config.node(node)
        assert spec.node_pk == load_key(out / "hosts" / org / "keys" / f"node-{node}.key").sign_pk_hex
        assert spec.voter == (SHIPPED_ROLE[org] != "regulator")
    assert "docker compose up" in stderr


def test_a_second_ceremony_never_overwrites_keys(compose_run: tuple[Path, dict[str, Any], str]) -> None:
    out, _, _ = compose_run
    before = {p: p.read_bytes() for p in (out / "hosts").rglob("*.key")}
    proc = ceremony(out, "--target", "compose")
    assert proc.returncode == 1 and "never overwritten" in proc.stderr
    assert {p: p.read_bytes() for p in (out / "hosts").rglob("*.key")} == before


def test_kubernetes_ceremony_advertises_the_pods_dns_names(tmp_path: Path) -> None:
    proc = ceremony(tmp_path, "--target", "k8s", "--namespace", "consortium")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    config = load_config(tmp_path / "hosts" / "geely" / "cluster.toml")
    assert str(config.node("boc").raft) == "boc-0.boc.consortium.svc.cluster.local:9700"
    assert str(config.node("geely").raft_bind) == "0.0.0.0:9700"
    for org in NODES.values():
        assert f"create secret generic ecert-{org}-keys --from-file={tmp_path}/hosts/{org}/keys/" in proc.stderr


# --- one real node from a host directory ---------------------------------------------------------------------------


def as_secret_volume(keys: Path) -> None:
    """Lay keys/ out as Kubernetes projects a Secret volume: the files in a timestamped directory, `..data`
    linking to it, and one link per key beside it (what the StatefulSets of deploy/k8s/ mount at /ecert/keys)."""
    stamp = keys / "..2025_01_01_00_00_00.000000001"
    stamp.mkdir()
    for key in sorted(p for p in keys.iterdir() if p.is_file()):
        key.rename(stamp / key.name)
        (stamp / key.name).chmod(0o440)
        (keys / key.name).symlink_to(f"..data/{key.name}")
    (keys / "..data").symlink_to(stamp.name)


def local_copy(host: Path, dest: Path, node: str) -> tuple[Path, int, int]:
    """The host directory copied (keys and modes kept) with the node's listen addresses moved to 127.0.0.1 on
    free ports: the advertised ones (service names, unresolvable here) stay as genesis has them."""
    shutil.copytree(host, dest, symlinks=True)
    raft_port, http_port = free_ports(2)
    path = dest / "cluster.toml"
    text = path.read_text(encoding="utf-8")
    assert text.count('raft_listen = "0.0.0.0:9700"') == 1 and text.count('http_listen = "0.0.0.0:8700"') == 1
    text = text.replace('raft_listen = "0.0.0.0:9700"', f'raft_listen = "127.0.0.1:{raft_port}"')
    text = text.replace('http_listen = "0.0.0.0:8700"', f'http_listen = "127.0.0.1:{http_port}"')
    path.write_text(text, encoding="utf-8")
    assert str(load_config(path).node(node).http_bind) == f"127.0.0.1:{http_port}"
    return path, raft_port, http_port


def container_env(config: Path, node: str) -> dict[str, str]:
    return dict(os.environ, ECERT_CONFIG=str(config), ECERT_NODE_ID=node, PYTHONUNBUFFERED="1")


def healthcheck(config: Path, node: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=container_env(config, node), capture_output=True,
                          text=True, timeout=30, check=False)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        kill_process(proc)


def start(config: Path, node: str, out: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, str(ENTRYPOINT)], cwd=config.parent, env=container_env(config, node),
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    procs.append(proc)
    return proc


@pytest.mark.parametrize("layout", ["bind-mount", "secret-volume"])
def test_a_node_starts_from_its_host_directory_and_drains_on_sigterm(
        compose_run: tuple[Path, dict[str, Any], str], tmp_path: Path,
        processes: list[subprocess.Popen[bytes]], layout: str) -> None:
    out, _, _ = compose_run
    config, _, http_port = local_copy(out / "hosts" / "boc", tmp_path / "boc", "boc")
    if layout == "secret-volume":
        as_secret_volume(tmp_path / "boc" / "keys")
    assert healthcheck(config, "boc").returncode == 1  # nothing listens yet: unhealthy
    proc = start(config, "boc", tmp_path / "node.out", processes)

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "node.out").read_text(errors="replace")
        return healthcheck(config, "boc").returncode == 0

    wait_for(healthy, 60, "the healthcheck to pass", every_s=0.5)
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/status", timeout=5) as resp:
        status = json.loads(resp.read())
    # Alone of five voters it has no leader, and /v1/status still answers: what the probes rely on.
    assert status["node_id"] == "boc" and status["chain_id"] == "ecert-compose" and status["leader_id"] is None
    assert status["pid"] == proc.pid  # the entry point exec'd the node: it is the process that gets SIGTERM
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, (tmp_path / "node.out").read_text(errors="replace")
    assert healthcheck(config, "boc").returncode == 1


def test_a_host_directory_with_another_orgs_key_is_refused(
        compose_run: tuple[Path, dict[str, Any], str], tmp_path: Path,
        processes: list[subprocess.Popen[bytes]]) -> None:
    out, _, _ = compose_run
    config, _, _ = local_copy(out / "hosts" / "geely", tmp_path / "geely", "geely")
    shutil.copy2(out / "hosts" / "boc" / "keys" / "boc.key", tmp_path / "geely" / "keys" / "boc.key")
    proc = start(config, "geely", tmp_path / "node.out", processes)
    assert proc.wait(60) == 1
    assert "boc.key" in (tmp_path / "node.out").read_text(errors="replace")


def test_the_entry_point_refuses_a_missing_node_id_and_fault_injection(tmp_path: Path) -> None:
    env = dict(os.environ, ECERT_CONFIG=str(ROOT / "cluster.toml"))
    env.pop("ECERT_NODE_ID", None)
    proc = subprocess.run([sys.executable, str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode == 2 and "ECERT_NODE_ID" in proc.stderr
    proc = subprocess.run([sys.executable, str(ENTRYPOINT), "--fault-injection"], env={**env, "ECERT_NODE_ID": "boc"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and "fault-injection" in proc.stderr
    proc = subprocess.run([sys.executable, str(ENTRYPOINT)],
                          env={**env, "ECERT_NODE_ID": "boc", "ECERT_CONFIG": str(tmp_path / "none.toml")},
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and "no cluster file" in proc.stderr


@pytest.fixture(scope="module")
def https_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("https")
    proc = ceremony(out, "--target", "compose", "--https", "--owner", "none")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


def test_with_https_a_node_serves_its_api_on_a_certificate_its_clients_pin(
        https_run: Path, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    tls = https_run / "hosts" / "boc" / "tls"
    assert sorted(p.name for p in tls.iterdir()) == sorted(
        ["https-cert.pem", "https-key.pem", *(f"{node}-ca.pem" for node in NODES)])
    assert stat.S_IMODE((tls / "https-key.pem").stat().st_mode) == 0o600
    for org in NODES.values():  # every host pins the same certificate for boc; only boc has its key
        assert (https_run / "hosts" / org / "tls" / "boc-ca.pem").read_bytes() == (tls / "https-cert.pem").read_bytes()
        other_key = (https_run / "hosts" / org / "tls" / "https-key.pem").read_bytes()
        assert (other_key == (tls / "https-key.pem").read_bytes()) == (org == "boc")
    config, _, http_port = local_copy(https_run / "hosts" / "boc", tmp_path / "boc", "boc")
    spec = load_config(config).node("boc")
    assert spec.http_url == "https://boc:8700" and spec.https_ca == (tmp_path / "boc" / "tls" / "boc-ca.pem")
    proc = start(config, "boc", tmp_path / "node.out", processes)

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "node.out").read_text(errors="replace")
        return healthcheck(config, "boc").returncode == 0

    wait_for(healthy, 60, "the healthcheck to pass over HTTPS", every_s=0.5)
    # A client that pins boc's certificate verifies it, host name included (127.0.0.1 is in it).
    context = ssl.create_default_context(cafile=str(spec.https_ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/v1/status", timeout=5, context=context) as resp:
        assert json.loads(resp.read())["node_id"] == "boc"
    # Pinning another node's certificate fails: the pin is per node.
    other = ssl.create_default_context(cafile=str(tmp_path / "boc" / "tls" / "geely-ca.pem"))
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"https://127.0.0.1:{http_port}/v1/status", timeout=5, context=other)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, (tmp_path / "node.out").read_text(errors="replace")
