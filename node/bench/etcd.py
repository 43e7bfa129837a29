"""A throwaway 3..7-member etcd cluster on loopback, with etcd's default durability (fsync on every commit)."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from node.bench.loadgen import Refused, Request

ETCD_PACKAGE = "etcd-server"


def ensure_etcd() -> str:
    """Path of the etcd binary; installs Debian's etcd-server if it is missing (needs root)."""
    found = shutil.which("etcd")
    if found:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", ETCD_PACKAGE],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    # The Debian package starts a system etcd on 2379/2380; we never use those ports, but do not leave it running.
    subprocess.run(["systemctl", "stop", "etcd"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError(f"{ETCD_PACKAGE} installed but no etcd binary on PATH")
    return found


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


@dataclass
class EtcdCluster:
    binary: str
    root: Path
    members: int
    base_port: int
    procs: list[subprocess.Popen[bytes]]

    @property
    def client_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.base_port + 2 * i}" for i in range(self.members)]

    def start(self) -> None:
        names = [f"e{i}" for i in range(self.members)]
        peers = ",".join(f"{n}=http://127.0.0.1:{self.base_port + 2 * i + 1}" for i, n in enumerate(names))
        for i, name in enumerate(names):
            data = self.root / name
            data.mkdir(parents=True, exist_ok=True)
            client = f"http://127.0.0.1:{self.base_port + 2 * i}"
            peer = f"http://127.0.0.1:{self.base_port + 2 * i + 1}"
            log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
            self.procs.append(subprocess.Popen(
                [self.binary, "--name", name, "--data-dir", str(data),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", peers, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{self.base_port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 30) -> None:
        """Every member answers /health with health true (one healthy member says little about the others)."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.client_urls)
        while time.monotonic() < deadline:
            for url in list(pending):
                try:
                    with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                        if b'"true"' in resp.read():
                            pending.remove(url)
                except OSError:
                    pass
            if not pending:
                return
            time.sleep(0.2)
        raise RuntimeError(f"etcd cluster not healthy after {timeout_s}s; logs in {self.root}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()


def put_request(url: str, key: bytes, value: bytes) -> Request:
    body = {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}

    async def send(session: aiohttp.ClientSession) -> bool:
        async with session.post(url + "/v3/kv/put", json=body) as resp:
            answer = await resp.read()
            if resp.status != 200:
                raise Refused(f"HTTP {resp.status}: {answer[:80].decode(errors='replace')}")
            return True

    return send
