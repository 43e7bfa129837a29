"""A multi-host run (root only): one network namespace per organisation, each a "host" with its own address on a
bridge and its own directory holding only its own private keys; genesis made by the ceremony commands; peer TLS
and HTTPS for every client API on; the chaos workload and checker; a kernel partition of the leader and a node
restart; a capture of the bridge searched for what the workload sent.

    ./scripts/multihost [--hosts N] [--duration S] [--seed K] [--keep] [--no-tls]

Layout of one run (a temp dir; kept with --keep or when anything failed):

    cluster/coordinator/inbox/ORG.public.json  what each host handed the coordinator (public material only)
    cluster/coordinator/inbox/tls/NODE-ca.pem  and each host's HTTPS certificate (public), which clients pin
    cluster/coordinator/ceremony/       `ecert genesis add-org ... --ceremony` state
    cluster/coordinator/out/            `ecert genesis build` output: genesis.json, cluster.toml
    cluster/coordinator/cluster.toml    the clients' copy (the workload's and the checker's), tls/ beside it
    cluster/hosts/ORG/                  one host: cluster.toml + genesis.json (copied), keys/ (its own two keys,
                                        written there by `ecert keygen` run inside its namespace), tls/ (its
                                        HTTPS certificate and key from the same `ecert keygen --https-host`, and
                                        every node's certificate as NODE-ca.pem), data/ORG/
    cluster/capture/peer.pcap           tcpdump of the bridge: every packet between hosts
    report/                             the chaos report (index.html, history.json)

Hosts are the shipped consortium's orgs (boc the bank, geely the core, tier1.. the suppliers), one voting node
each, plus the regulator pbc, whose host runs a learner node (as in the shipped cluster) and whose key signs the
checker's reads. The network is node/chaos/netns.py's, the same machinery as `./scripts/chaos --netns`: host i is
10.77.R.(i+1) on the bridge ecert-R-br; every node binds 0.0.0.0 (when the config has listen addresses) and
advertises its host address. The workload runs in the coordinator's namespace (the bridge address) and signs for
each org with the key it reads from that org's host directory: the hosts' namespaces hold the processes and the
addresses, the directories hold the keys.

HTTPS: each host's `ecert keygen` also gets `--https-host <its address>`, so it writes a self-signed certificate
and key for its API to tls/; the coordinator hands every host every node's certificate (tls/NODE-ca.pem), and
every [[nodes]] entry gets https_cert / https_key (read by that node only) and its https_ca (what clients and
the other nodes' dashboard probes pin, node/http/dashboard.py `PeerApis`). The workload and the checker dial
https:// and verify each node with the cluster file's https_ca (node/client/api.py `HttpsTrust.of_cluster`).

The capture takes every IPv4 packet on the bridge: the node-to-node traffic (peer links, forwarded txs, the
dashboards' probes of each other's API), and the clients' requests from the bridge address. It is then
reassembled per TCP connection and searched for the doc ids of committed `trade.anchor` txs and for org ids of
five or more characters (a three-letter id like "boc" occurs by chance in a few MB of ciphertext);
`plaintext_hits` counts what was found, `capture.hits_by_port` by service port (9700 peer links, 8700 the API).
With `--no-tls` both the peer links and the APIs are clear text and the same search must find the ids (the
check of the check).

Exit status: 0 clean (or skipped: not root / no namespaces here, with {"skipped": reason}), 1 a check failed
(lost or misapplied txs, plaintext found with TLS or not found without, an API stream in clear with HTTPS on, a
host holding another org's key, a partition or restart the cluster did not come back from), 2 the run could not
be done, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from node.chaos import netns
from node.chaos.checker import leader_of
from node.chaos.cluster import ChaosCluster
from node.chaos.history import COMMITTED, FaultEvent, History
from node.chaos.netns import HTTP_PORT, RAFT_PORT, Capture, NetnsNetwork
from node.chaos.runner import Options, Run
from node.client.api import HttpsTrust
from node.config import ClusterConfig, NodeSpec, load_config
from node.keys import KeyPair, load_org_key
from node.ops import localnet

WHO = "./scripts/multihost"
CHAIN_ID = "ecert-multihost"
HOSTS_MIN = 3
HOSTS_MAX = 8  # plus the regulator's host: 9 nodes, the chaos cluster's maximum
DURATION_MIN_S = 10.0  # room for one partition and one restart after the warm-up
FAULT_KINDS = ("partition_leader", "restart")
SETTINGS = {"tick_ms": 50, "election_ticks": 10, "heartbeat_ticks": 1, "snapshot_entries": 1000}
NEEDLE_MIN_LEN = 5
DOC_NEEDLES = 5
RECOVER_WINDOW_S = 20.0
CMD_TIMEOUT_S = 60.0
TLS_DIR = "tls"
"""Beside keys/ on each host: its HTTPS certificate and key (`ecert keygen --https-host`), every node's
certificate as NODE-ca.pem (as deploy/ceremony.py lays it out)."""


class MultihostError(RuntimeError):
    """A step of the multi-host set-up failed (a ceremony command, a key check): the message says which."""


@dataclass(frozen=True, slots=True)
class Host:
    org: str
    name: str
    role: str
    voter: bool

    @property
    def node_id(self) -> str:
        return self.org  # one node per org, named after it (as the shipped cluster does)


def hosts_for(n_hosts: int) -> list[Host]:
    orgs = localnet.consortium_orgs(n_hosts, regulator=True)
    return [Host(org, name, role, role != "regulator") for org, name, role in orgs]


def config_supports(cls: type, name: str) -> bool:
    return name in {f.name for f in fields(cls)}


def ecert_cli() -> list[str]:
    return [sys.executable, "-m", "node.client.cli"]


# -- cluster-file edits a host makes locally (not part of genesis) -------------------------------------------------

def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


def set_cluster_keys(text: str, values: dict[str, object]) -> str:
    """Set keys of the [cluster] table (replacing a key already there): tuning that genesis does not carry."""
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "[cluster]")
    except StopIteration:
        raise MultihostError("the built cluster.toml has no [cluster] table") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    todo = dict(values)
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if "=" in lines[i] and key in todo:
            lines[i] = f"{key} = {_toml_value(todo.pop(key))}"
    lines[start + 1:start + 1] = [f"{k} = {_toml_value(v)}" for k, v in todo.items()]
    return "\n".join(lines) + "\n"


def set_node_keys(text: str, values: dict[str, object] | Callable[[str], dict[str, object]]) -> str:
    """Add keys to every [[nodes]] table that lacks them: the same for every node (the listen addresses: every
    host binds the same), or by the table's node id (its https_ca)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() == "[[nodes]]":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("[")), len(lines))
            have = {ln.split("=", 1)[0].strip() for ln in lines[i + 1:end] if "=" in ln}
            node_id = tomllib.loads("\n".join(lines[i + 1:end])).get("id")
            if callable(values) and not isinstance(node_id, str):
                raise MultihostError(f"a [[nodes]] table of the built cluster.toml has no id: {lines[i + 1:end]}")
            given = values(str(node_id)) if callable(values) else values
            out += [f"{k} = {_toml_value(v)}" for k, v in given.items() if k not in have]
        i += 1
    return "\n".join(out) + "\n"


def https_node_keys(node_id: str) -> dict[str, object]:
    """A node's HTTPS entries in every host's cluster file: the certificate and key paths (each host has its own
    there, and only the node of that entry reads them; for the others they say the node serves HTTPS) and its
    certificate, which clients pin."""
    return {"https_cert": f"{TLS_DIR}/https-cert.pem", "https_key": f"{TLS_DIR}/https-key.pem",
            "https_ca": f"{TLS_DIR}/{node_id}-ca.pem"}


# -- the cluster -----------------------------------------------------------------------------------------------

class MultihostCluster(ChaosCluster):
    """The chaos cluster of a multi-host run: per-host directories, the ceremony, peer TLS and HTTPS, the bridge
    capture."""

    def __init__(self, base_dir: Path, n_hosts: int, peer_tls: bool = True, tick_ms: int = 50,
                 https: bool = True) -> None:
        if not HOSTS_MIN <= n_hosts <= HOSTS_MAX:
            raise ValueError(f"--hosts must be in {HOSTS_MIN}..{HOSTS_MAX}")
        self.hosts = hosts_for(n_hosts)
        super().__init__(base_dir, len(self.hosts), CHAIN_ID, tick_ms, netns=False)
        self.orgs = [(h.org, h.name, h.role) for h in self.hosts]
        self.nodes = [localnet.LocalNode(h.node_id, h.org, HTTP_PORT, RAFT_PORT, h.voter) for h in self.hosts]
        self.network = self.net = NetnsNetwork([h.node_id for h in self.hosts], who=WHO)
        self.peer_tls = peer_tls
        self.https = https and config_supports(NodeSpec, "https_cert")
        """Every node serves its API over HTTPS, and every client (workload, checker, dashboards) dials it."""
        self.coordinator = self.base_dir / "coordinator"
        self.capture_path = self.base_dir / "capture" / "peer.pcap"
        self.cap: Capture | None = None
        self.capture_stats: dict[str, int] = {}
        self.genesis_hashes: dict[str, Any] = {}
        self.listen_split = False

    def host(self, org: str) -> Host:
        return next(h for h in self.hosts if h.org == org)

    def host_dir(self, org: str) -> Path:
        return self.base_dir / "hosts" / org

    def node_home(self, node_id: str) -> Path:
        return self.host_dir(self.node(node_id).org)

    def node_config(self, node_id: str) -> Path:
        return self.node_home(node_id) / "cluster.toml"

    def url(self, node_id: str) -> str:
        return f"{'https' if self.https else 'http'}://{self.net.address(node_id)}:{HTTP_PORT}"

    def https_trust(self) -> HttpsTrust:
        """The clients' trust: each node's https_ca from the coordinator's copy of the cluster file (the
        certificates the hosts handed in), exactly what `ecert --config` on a client host would use."""
        trust = HttpsTrust.of_cluster(load_config(self.coordinator / "cluster.toml"))
        missing = [n for n in self.ids if self.https and self.url(n) not in trust.node_cas]
        if missing:
            raise MultihostError(f"the clients' cluster file pins no HTTPS certificate for {missing}")
        return trust

    def org_key(self, org_id: str) -> KeyPair:
        """The workload signs for an org with the key in that org's own host directory, nowhere else."""
        return load_org_key(self.host_dir(org_id) / "keys", org_id)

    def _cli(self, host: str | None, argv: list[str], cwd: Path) -> str:
        """One `ecert` command, inside a host's namespace (None: the coordinator, in the host namespace)."""
        full = [*ecert_cli(), *argv]
        try:
            if host is None:
                proc = subprocess.run(full, cwd=cwd, capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                                      stdin=subprocess.DEVNULL)
            else:
                proc = self.net.run_in(host, full, cwd=cwd, timeout_s=CMD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise MultihostError(f"ecert {' '.join(argv)}: no answer in {CMD_TIMEOUT_S:.0f}s") from None
        if proc.returncode != 0:
            where = f"host {host}" if host else "the coordinator"
            raise MultihostError(f"ecert {' '.join(argv)} failed on {where} (exit {proc.returncode}): "
                                 f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
        return proc.stdout

    def write_files(self) -> None:
        """Namespaces and capture first (the capture sees every handshake), then the ceremony: each host makes
        its own keys in its own directory, the coordinator assembles genesis from their public files, each host
        gets genesis.json and cluster.toml and checks the genesis hash."""
        self.net.up()
        self.capture_path.parent.mkdir(parents=True, exist_ok=True)
        self.cap = self.net.capture(self.capture_path, "ip", localnet.die_with_parent)
        inbox = self.coordinator / "inbox"
        (inbox / TLS_DIR).mkdir(parents=True, exist_ok=True)

        def keygen(h: Host) -> None:
            d = self.host_dir(h.org)
            d.mkdir(parents=True, exist_ok=True)
            addr = self.net.address(h.node_id)
            self._cli(h.org, ["keygen", "--org", h.org, "--node", h.node_id, "--dir", str(d), "--name", h.name,
                              "--role", h.role, "--raft", f"{addr}:{RAFT_PORT}", "--http", f"{addr}:{HTTP_PORT}",
                              *([] if h.voter else ["--learner"]), *(["--https-host", addr] if self.https else [])],
                      d)
            public = d / f"{h.org}.public.json"
            if not public.is_file():
                raise MultihostError(f"ecert keygen wrote no {public}")
            shutil.copy2(public, inbox / public.name)
            if self.https:
                cert = d / TLS_DIR / "https-cert.pem"
                if not cert.is_file() or not (d / TLS_DIR / "https-key.pem").is_file():
                    raise MultihostError(f"ecert keygen --https-host {addr} wrote no {cert} and key")
                shutil.copy2(cert, inbox / TLS_DIR / f"{h.node_id}-ca.pem")  # public: the certificate only

        self._on_every_host(keygen)
        ceremony, out = self.coordinator / "ceremony", self.coordinator / "out"
        self._cli(None, ["genesis", "add-org", *[str(inbox / f"{h.org}.public.json") for h in self.hosts],
                         "--ceremony", str(ceremony)], self.coordinator)
        self._cli(None, ["genesis", "build", "--ceremony", str(ceremony), "--chain-id", self.chain_id,
                         "--out", str(out)], self.coordinator)
        text = (out / "cluster.toml").read_text(encoding="utf-8")
        settings: dict[str, object] = {**SETTINGS, "tick_ms": self.tick_ms}
        if config_supports(ClusterConfig, "peer_tls"):
            settings["peer_tls"] = self.peer_tls
        if not self.peer_tls and config_supports(ClusterConfig, "peer_tls_off_beyond_loopback"):
            settings["peer_tls_off_beyond_loopback"] = True  # the namespaces' links are off loopback by design
        text = set_cluster_keys(text, settings)
        self.listen_split = config_supports(NodeSpec, "raft_listen")
        if self.listen_split:
            text = set_node_keys(text, {"raft_listen": f"0.0.0.0:{RAFT_PORT}", "http_listen": f"0.0.0.0:{HTTP_PORT}"})
        if self.https:
            text = set_node_keys(text, https_node_keys)

        def hand_out_certificates(d: Path) -> None:
            (d / TLS_DIR).mkdir(exist_ok=True)
            for h in self.hosts:
                shutil.copy2(inbox / TLS_DIR / f"{h.node_id}-ca.pem", d / TLS_DIR / f"{h.node_id}-ca.pem")

        if self.https:
            hand_out_certificates(self.coordinator)
        (self.coordinator / "cluster.toml").write_text(text, encoding="utf-8")

        def install(h: Host) -> None:
            d = self.host_dir(h.org)
            if self.https:
                hand_out_certificates(d)
            shutil.copy2(out / "genesis.json", d / "genesis.json")
            (d / "cluster.toml").write_text(text, encoding="utf-8")
            (d / "data" / h.node_id).mkdir(parents=True, exist_ok=True)
            answer = self._cli(h.org, ["genesis", "hash", "--json", "--config", str(d / "cluster.toml")], d)
            try:
                self.genesis_hashes[h.org] = json.loads(answer)
            except ValueError:
                raise MultihostError(f"ecert genesis hash on host {h.org} printed no JSON: {answer[:300]}") from None

        self._on_every_host(install)
        if len({json.dumps(v, sort_keys=True) for v in self.genesis_hashes.values()}) != 1:
            raise MultihostError(f"the hosts disagree on the genesis and cluster hashes: {self.genesis_hashes}")

    def _on_every_host(self, step: Callable[[Host], None]) -> None:
        """The hosts act at once, as separate machines would (each step is a process in its own namespace)."""
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            for f in [pool.submit(step, h) for h in self.hosts]:
                f.result()

    def start(self, node_id: str, fault_injection: bool = False) -> int:
        """Nodes of a multi-host run carry no fault layer: every fault is the kernel's or a signal."""
        return super().start(node_id, fault_injection)

    def stop_capture(self) -> None:
        if self.cap is not None:
            self.capture_stats = self.cap.stop()

    def close(self) -> None:
        try:
            self.stop_capture()
        finally:
            super().close()

    def custody(self) -> dict[str, dict[str, Any]]:
        """What private keys each host directory holds: the key files under keys/, the orgs they belong to, and
        any other org's or node's seed found anywhere in the host's files (outside the node's LevelDB data)."""
        seeds = {}
        for h in self.hosts:
            for path in (self.host_dir(h.org) / "keys").glob("*.key*"):
                seeds[path.read_text().strip().lower()] = h.org
        out: dict[str, dict[str, Any]] = {}
        for h in self.hosts:
            d = self.host_dir(h.org)
            files = sorted(p.name for p in (d / "keys").iterdir()) if (d / "keys").is_dir() else []
            orgs = {self._key_owner(name) for name in files}
            foreign = sorted({seeds[s] for s in seeds if seeds[s] != h.org and _found_in(d, s)})
            out[h.org] = {"files": files, "orgs": sorted(orgs), "foreign_seeds_from": foreign}
        return out

    def _key_owner(self, name: str) -> str:
        """The org a file of keys/ belongs to: node-ID.key its node's org, ORG.key (.next, .old-H) that org;
        anything else (LOCAL-DEMO, a stray file) counts as a foreign holding."""
        stem = name.split(".key", 1)[0] if ".key" in name else None
        if stem is None:
            return f"?{name}"
        if stem.startswith("node-") and stem[len("node-"):] in self.ids:
            return self.node(stem[len("node-"):]).org
        return stem if stem in {h.org for h in self.hosts} else f"?{name}"


def _found_in(root: Path, seed_hex: str) -> bool:
    needle = seed_hex.encode()
    for p in root.rglob("*"):
        if p.is_file() and "data" not in p.relative_to(root).parts[:1]:
            with contextlib.suppress(OSError):
                if needle in p.read_bytes().lower():
                    return True
    return False


# -- the capture -----------------------------------------------------------------------------------------------

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
ETH_P_IP = 0x0800
TCP_SYN = 0x02
GAP = b"\x00"  # between non-contiguous pieces of one stream: a match never spans missing bytes

Flow = tuple[str, int, str, int]


@dataclass(slots=True)
class Stream:
    flow: Flow
    isn: int | None
    pieces: dict[int, bytes]

    def data(self) -> bytes:
        """The payload in sequence order, overlaps (retransmissions) taken once, holes marked by GAP."""
        out = bytearray()
        end: int | None = None
        for rel in sorted(self.pieces):
            piece = self.pieces[rel]
            if end is None:
                out += piece
                end = rel + len(piece)
            elif rel + len(piece) <= end:
                continue
            elif rel <= end:
                out += piece[end - rel:]
                end = rel + len(piece)
            else:
                out += GAP + piece
                end = rel + len(piece)
        return bytes(out)


def pcap_packets(data: bytes) -> Iterable[bytes]:
    """The frames of a classic pcap file (what `tcpdump -w` writes), Ethernet link type only."""
    if len(data) < 24:
        return
    magic_le = struct.unpack("<I", data[:4])[0]
    if magic_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian = "<"
    elif struct.unpack(">I", data[:4])[0] in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        endian = ">"
    else:
        raise ValueError("not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"pcap link type {linktype}, expected Ethernet")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) == incl:
            yield frame


def tcp_streams(data: bytes) -> list[Stream]:
    """Each TCP connection direction of a capture (a new SYN on a 4-tuple starts a new stream)."""
    streams: list[Stream] = []
    current: dict[Flow, Stream] = {}
    for frame in pcap_packets(data):
        if len(frame) < 14 + 20 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        if ip[9] != 6 or len(ip) < ihl + 20:
            continue
        ip = ip[:total] if total else ip
        tcp = ip[ihl:]
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[doff:]
        flow = (".".join(map(str, ip[12:16])), sport, ".".join(map(str, ip[16:20])), dport)
        s = current.get(flow)
        if flags & TCP_SYN:
            s = current[flow] = Stream(flow, (seq + 1) % 2**32, {})
            streams.append(s)
        elif s is None:  # mid-connection (its SYN not captured): count from the first byte seen
            s = current[flow] = Stream(flow, seq, {})
            streams.append(s)
        if payload and s.isn is not None:
            rel = (seq - s.isn) % 2**32
            if len(payload) > len(s.pieces.get(rel, b"")):
                s.pieces[rel] = bytes(payload)
    return streams


HTTP_STARTS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"PATCH ", b"HTTP/1.")
"""How a clear-text HTTP/1.x request or answer begins."""


def _starts_tls(data: bytes) -> bool:
    """A TLS record starts with its content type (22: handshake) and version 3.x."""
    return data[:2] == b"\x16\x03"


def search_capture(path: Path, needles: list[str], peer_port: int = RAFT_PORT,
                   api_port: int = HTTP_PORT) -> dict[str, Any]:
    """Count each needle in every reassembled stream of the capture; figures that show what was captured, for
    the peer links (`peer_*`) and the client API (`api_*`: clients and the dashboards' probes)."""
    raw = path.read_bytes() if path.exists() else b""
    streams = tcp_streams(raw)
    hits = dict.fromkeys(needles, 0)
    by_port: dict[str, int] = {}
    peer_bytes = tls_streams = peer_streams = 0
    api_bytes = api_tls = api_http = api_streams = 0
    for s in streams:
        data = s.data()
        found = 0
        for n in needles:
            k = data.count(n.encode())
            hits[n] += k
            found += k
        if found:  # by the service's port (the lower of the two: the other is the dialler's ephemeral one)
            port = str(min(s.flow[1], s.flow[3]))
            by_port[port] = by_port.get(port, 0) + found
        if peer_port in (s.flow[1], s.flow[3]):
            peer_bytes += len(data)
            if data:
                peer_streams += 1
                tls_streams += _starts_tls(data)
        elif api_port in (s.flow[1], s.flow[3]):
            api_bytes += len(data)
            if data:
                api_streams += 1
                api_tls += _starts_tls(data)
                api_http += data.startswith(HTTP_STARTS)
    return {"file": str(path), "bytes": len(raw), "tcp_streams": len(streams), "peer_streams": peer_streams,
            "peer_payload_bytes": peer_bytes, "peer_streams_tls": tls_streams, "api_streams": api_streams,
            "api_payload_bytes": api_bytes, "api_streams_tls": api_tls,
            "api_streams_http": api_http, "hits_by_port": by_port, "hits": hits}


def needles_of(history: History, org_ids: list[str]) -> list[str]:
    """What the workload sent that must not be readable on the wire: doc ids of committed trade.anchor txs
    (first, last and between) and the org ids long enough not to occur by chance in ciphertext."""
    docs = [str(r.body["doc_id"]) for r in history.txs if r.kind == "trade.anchor" and r.outcome == COMMITTED]
    if len(docs) > DOC_NEEDLES:
        step = (len(docs) - 1) / (DOC_NEEDLES - 1)
        docs = [docs[round(i * step)] for i in range(DOC_NEEDLES)]
    sent = json.dumps([r.body for r in history.txs if r.outcome == COMMITTED])
    orgs = [o for o in org_ids if len(o) >= NEEDLE_MIN_LEN and f'"{o}"' in sent]
    return docs + orgs


# -- the faults: did the cluster come back -----------------------------------------------------------------------

def fault_outcomes(history: History, kind: str, cluster_size: int) -> dict[str, Any]:
    events = [f for f in history.faults if f.kind == kind]
    out = [_fault_outcome(history, f, cluster_size) for f in events]
    return {"count": len(out), "survived": bool(out) and all(e["survived"] for e in out), "events": out}


def _fault_outcome(history: History, f: FaultEvent, cluster_size: int) -> dict[str, Any]:
    end = f.end if f.end is not None else history.duration
    target = f.targets[0] if f.targets else None
    during = [leader_of(s, cluster_size) for s in history.samples if f.start <= s.t <= end]
    after = [s for s in history.samples if end <= s.t <= end + RECOVER_WINDOW_S]
    recovered = next((s.t for s in after if leader_of(s, cluster_size) is not None), None)
    acked_after = sum(1 for r in history.txs if r.outcome == COMMITTED and r.invoke >= end)
    ev: dict[str, Any] = {"targets": f.targets, "start_s": round(f.start, 2), "end_s": round(end, 2),
                          "detail": f.detail, "acked_after": acked_after,
                          "leader_after_s": None if recovered is None else round(recovered - end, 2)}
    ok = recovered is not None and acked_after > 0
    if f.kind == "partition_leader":
        # The isolated leader cannot lead the majority: someone else must have been elected while cut off.
        new = sorted({lead for lead in during if lead is not None and lead != target})
        ev["new_leader_during"] = new
        ok = ok and bool(new) and "kernel" in f.detail
    elif f.kind == "restart" and target is not None:
        # Seen down (stopped), then answering again: the new process, started from the host's directory.
        down = next((s.t for s in history.samples if s.t >= f.start and s.statuses.get(target) is None), None)
        back = None if down is None else next(
            (s.t for s in history.samples if s.t > down and s.statuses.get(target)), None)
        ev["target_down_s"] = None if down is None else round(down - f.start, 2)
        ev["target_back_s"] = None if back is None else round(back - f.start, 2)
        ok = ok and back is not None
    ev["survived"] = ok
    return ev


# -- the run ---------------------------------------------------------------------------------------------------

def skip_reason() -> str | None:
    """Why this machine cannot run it at all (not root, no namespaces); None if it can."""
    if os.geteuid() != 0:
        return f"{WHO} needs root (network namespaces, veth, bridge, tc and tcpdump need CAP_NET_ADMIN)"
    try:
        netns.require_netns(WHO)
    except netns.NetnsError as exc:
        return str(exc)
    probe = f"{netns.PREFIX}probe{os.getpid()}"
    proc = subprocess.run([netns.IP, "netns", "add", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`ip netns add` fails here: {proc.stderr.strip()}"
    subprocess.run([netns.IP, "netns", "delete", probe], capture_output=True)
    return None


async def run_multihost(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    made: list[MultihostCluster] = []

    def factory(base: Path) -> MultihostCluster:
        made.append(MultihostCluster(base, args.hosts, peer_tls=not args.no_tls, https=not args.no_tls))
        return made[0]

    opts = Options(duration=args.duration, seed=args.seed, nodes=args.hosts + 1, report_dir=workdir / "report",
                   workdir=workdir, keep=True, kinds=FAULT_KINDS, netns=True, cluster_factory=factory)
    run = Run(opts)
    try:
        chaos, report = await run.run()
    finally:
        for c in made:
            c.close()  # the runner closes it too; again here for a failure before its own try (idempotent)
    cluster = made[0]
    history = run.history
    needles = needles_of(history, [h.org for h in cluster.hosts])
    found = search_capture(cluster.capture_path, needles)
    custody = cluster.custody()
    tls = not args.no_tls and config_supports(ClusterConfig, "peer_tls")
    https = cluster.https
    hits = sum(found["hits"].values())
    partition = fault_outcomes(history, "partition_leader", len(cluster.ids))
    restart = fault_outcomes(history, "restart", len(cluster.ids))
    summary: dict[str, Any] = {
        "hosts": len(cluster.hosts), "voters": sum(h.voter for h in cluster.hosts),
        "acked": chaos["acked"], "lost": chaos["lost"], "violations": chaos["violations"],
        "tls": tls, "https": https, "plaintext_hits": hits,
        "private_keys_per_host": {o: len(c["orgs"]) for o, c in custody.items()},
        "key_files": {o: c["files"] for o, c in custody.items()},
        "partition": partition, "restart": restart,
        "converged": bool(report.stats.get("converged")) if report is not None else False,
        "needles": found["hits"],
        "capture": {k: v for k, v in found.items() if k != "hits"} | {
            "tcpdump": cluster.capture_stats,
            "filter": "every IPv4 packet on the bridge: between hosts, and the clients' at the bridge address"},
        "genesis": next(iter(cluster.genesis_hashes.values()), None),
        "listen": "0.0.0.0, advertising the host address" if cluster.listen_split else "the host address",
        "seed": args.seed, "duration": args.duration, "report": chaos["report"],
    }
    failures: list[str] = []
    if chaos["lost"] or chaos["violations"]:
        failures.append(f"checker: lost {chaos['lost']}, violations {chaos['violations']}")
    for o, held in custody.items():
        if held["orgs"] != [o] or held["foreign_seeds_from"]:
            failures.append(f"host {o} holds keys of {held['orgs']} (foreign seeds from "
                            f"{held['foreign_seeds_from']})")
    if not found["peer_payload_bytes"]:
        failures.append("the capture holds no peer-link payload: the search proves nothing")
    if not any(n.startswith("inv-") for n in needles):
        failures.append("no committed trade.anchor: no document id to search for")
    if not found["api_payload_bytes"]:
        failures.append("the capture holds no client API payload: the search proves nothing about it")
    if (tls or https) and hits:
        failures.append(f"{hits} plaintext hits on the wire with peer TLS and HTTPS on: by port "
                        f"{found['hits_by_port']}")
    if https and found["api_streams_http"]:
        failures.append(f"{found['api_streams_http']} of {found['api_streams']} API streams are clear-text HTTP "
                        "with HTTPS on")
    if not args.no_tls and not tls:
        failures.append("peer TLS is not available in this checkout (no [cluster] peer_tls in node/config.py)")
    if not args.no_tls and not https:
        failures.append("HTTPS is not available in this checkout (no https_cert in node/config.py)")
    if not summary["converged"]:
        failures.append("the nodes did not converge to one chain after the faults")
    if args.no_tls and not any(v for n, v in found["hits"].items() if n.startswith("inv-")):
        failures.append("--no-tls: the search found no document id in clear text peer traffic (the search is broken)")
    if not partition["survived"]:
        failures.append("no partition of the leader survived" if partition["count"] else "no partition happened")
    if not restart["survived"]:
        failures.append("no restart survived" if restart["count"] else "no restart happened")
    summary["failures"] = failures
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog=WHO, description="Multi-host run (root only): one network namespace and directory per organisation, "
        "keys made on each host, genesis by the ceremony, peer TLS and HTTPS, the chaos workload under a kernel partition of "
        "the leader and a node restart, a capture of the bridge searched for plaintext. One JSON line on stdout.")
    p.add_argument("--hosts", type=int, default=5, help=f"voting organisations, {HOSTS_MIN}..{HOSTS_MAX} (default 5); "
                   "the regulator's host comes on top")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload (default 60)")
    p.add_argument("--seed", type=int, default=7, help="seed of the fault schedule and the workload (default 7)")
    p.add_argument("--keep", action="store_true", help="keep the run's directory (kept anyway on failure)")
    p.add_argument("--no-tls", action="store_true", help="peer_tls = false and no HTTPS for the APIs: the capture "
                   "must then show the workload's ids in clear (checks the search itself)")
    args = p.parse_args(argv)
    if not HOSTS_MIN <= args.hosts <= HOSTS_MAX:
        p.error(f"--hosts must be in {HOSTS_MIN}..{HOSTS_MAX}")
    if args.duration < DURATION_MIN_S:
        p.error(f"--duration must be at least {DURATION_MIN_S:.0f} seconds (a partition and a restart)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = skip_reason()
    if reason is not None:
        print(f"multihost skipped: {reason}", file=sys.stderr)
        print(json.dumps({"skipped": reason}), flush=True)
        return 0
    if netns.tcpdump_path() is None:
        print(json.dumps({"error": "no tcpdump (Debian: apt-get install tcpdump)"}), flush=True)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix=f"multihost-{args.seed}-"))
    keep = args.keep
    t0 = time.monotonic()

    async def amain() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await run_multihost(args, workdir)

    try:
        summary = asyncio.run(amain())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("multihost interrupted: every process, capture and namespace of the run is gone", file=sys.stderr)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        print(json.dumps({"interrupted": True} | ({"workdir": str(workdir)} if keep else {})), flush=True)
        return 130
    except Exception as exc:  # the run could not be done: say what, keep the directory for the logs
        print(f"multihost failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "workdir": str(workdir)}), flush=True)
        return 2
    code = 1 if summary["failures"] else 0
    summary["elapsed_s"] = round(time.monotonic() - t0, 1)
    if keep or code:
        summary["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        summary["report"] = None
    for f in summary["failures"]:
        print(f"multihost: {f}", file=sys.stderr)
    print(json.dumps(summary), flush=True)
    return code



if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
