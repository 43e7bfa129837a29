"""cluster.toml: the cluster file every node, script and test reads (CONTRACT §2, docs/INTERFACES.md "node/").

Loaded with tomllib into frozen values and validated once at start; every error names the offending key
(`nodes[2].http: ...`) so a user can fix the file without reading code. Relative paths (`data_dir`) are
resolved against the directory holding cluster.toml, as are `keys/` and `genesis.json`.

Addresses (`HOST:PORT`): HOST is an IPv4 address, a hostname, or an IPv6 address in brackets (`[::1]:9701`),
the syntax the chain validates for membership records (ecert.tx.v_address). A hostname is only checked for
syntax here and resolved when a connection is made (asyncio), never at load: a file read on one host names
hosts it may not resolve. `raft` and `http` are the ADVERTISED addresses (what peers and clients dial; what
genesis and the membership record); `raft_listen` / `http_listen` are what the process binds, by default the
advertised address; only they may be a wildcard ("0.0.0.0:P", "[::]:P": IPv6 only, as asyncio binds it).

Which addresses must differ (see `_check_binds`): every advertised address, cluster-wide (each names one
process). What a node binds cannot clash with what it or another node on the same host binds; the file does not
say which nodes share a host, so nodes count as sharing one when their advertised hosts are equal (all loopback
addresses count as one host). Nodes on different hosts may both bind 0.0.0.0:9700.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.invariant import require
from ecert.membership import REGULATOR_ROLE as REGULATOR_ROLE  # its node must be a learner (voter = false)
from ecert.tx import ADDRESS_LEN_MAX, TX_JSON_BYTES_MAX, is_hostname, is_ipv4, is_ipv6
from ecert.tx import ROLES as ROLES  # the roles an [[orgs]] entry may have: the chain's own
from ledger.block import BLOCK_BYTES_MAX, BLOCK_TXS_BYTES_MAX, BLOCK_TXS_MAX

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
READ_ACCESS_SIGNED = "signed"
"""[cluster] read_access default: reads are bounded by who signs them (CONTRACT §6)."""
READ_ACCESS_OPEN = "open"
"""For a private demo only: anonymous readers read as the regulator would; the node warns at start."""
READ_ACCESS_MODES = (READ_ACCESS_SIGNED, READ_ACCESS_OPEN)

BODY_BYTES_MAX = 4 * BLOCK_BYTES_MAX
"""Ceiling of `max_body_bytes` (64 MiB). The batch endpoint reads up to max(max_body_bytes, 4 x block_max_bytes)
(node/http/api.py): four full blocks' worth at most, which the leader cuts and pipelines. A body above four of the
largest blocks the ledger accepts is never needed and would only let one request pin that much memory."""


@dataclass(frozen=True, slots=True)
class IntKey:
    """An optional [cluster] integer: its default and the range we accept."""

    default: int
    lo: int
    hi: int
    why_lo: str = ""
    """Where the floor comes from, when another layer sets it (named in the error)."""
    why_hi: str = ""
    """Where the ceiling comes from, when another layer sets it (named in the error)."""


# The optional [cluster] keys (INTERFACES.md). A ceiling set by another layer is that layer's constant, so a
# value the node would have to clamp (or could not carry) is refused at start, naming the key and the cap.
CLUSTER_INT_KEYS: dict[str, IntKey] = {
    "block_max_txs": IntKey(500, 1, BLOCK_TXS_MAX, why_hi="ledger.block.BLOCK_TXS_MAX, the most txs in a block"),
    "block_max_bytes": IntKey(1 << 20, 1024, BLOCK_TXS_BYTES_MAX,
                              why_hi="ledger.block.BLOCK_TXS_BYTES_MAX, the most tx bytes in a block"),
    "block_timeout_ms": IntKey(5, 0, 60_000),
    "tick_ms": IntKey(50, 1, 10_000),
    "election_ticks": IntKey(10, 2, 10_000),
    "heartbeat_ticks": IntKey(1, 1, 10_000),
    "snapshot_entries": IntKey(2000, 1, 100_000_000),
    "max_body_bytes": IntKey(1 << 20, TX_JSON_BYTES_MAX, BODY_BYTES_MAX,
                             why_lo="ecert.tx.TX_JSON_BYTES_MAX, so that the largest tx can be posted as JSON",
                             why_hi="node.config.BODY_BYTES_MAX, four of the largest blocks"),
    "queue_max": IntKey(10_000, 1, 10_000_000),
    "http_connections_max": IntKey(1024, 1, 1_000_000),
    "log_file_max_mb": IntKey(64, 1, 1 << 20),
    "log_files_kept": IntKey(4, 1, 1000),
}


class ClusterConfigError(ValueError):
    """cluster.toml is missing, unreadable or invalid; `key` names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
WILDCARD_HOSTS = ("0.0.0.0", "::")
"""Listen-only hosts: every IPv4 / every IPv6 address of the host (asyncio sets IPV6_V6ONLY, so "::" is IPv6 only)."""


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    """An IPv4 address, a hostname or an IPv6 address (without brackets), as written in the file."""
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_wildcard(self) -> bool:
        return self.host in WILDCARD_HOSTS or (self.is_ipv6 and self.canonical_host == "::")

    @property
    def is_loopback(self) -> bool:
        """127.0.0.0/8, ::1 or the name localhost (what /etc/hosts maps to them)."""
        if self.host.lower() in ("localhost", "localhost."):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def canonical_host(self) -> str:
        """The host as compared: IPv6 compressed ("0:0::1" is "::1"), names lowercased (DNS ignores case)."""
        if self.is_ipv6:
            try:
                return ipaddress.IPv6Address(self.host).compressed
            except ValueError:  # built in code, not parsed: compare as written
                return self.host.lower()
        return self.host.lower().rstrip(".")

    @property
    def machine(self) -> str:
        """Which host this address is taken to be on, for bind clashes: every loopback address is this one."""
        return "loopback" if self.is_loopback else self.canonical_host


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: str
    org: str
    http: Address
    raft: Address
    data_dir: Path
    """Absolute (resolved against the cluster file's directory)."""
    node_pk: str | None = None
    """Hex Ed25519 public key of the node's transport key, if written in cluster.toml."""
    voter: bool = True
    raft_listen: Address | None = None
    """What the process binds for peer links (e.g. 0.0.0.0:9701); None = the advertised `raft`."""
    http_listen: Address | None = None
    """What the process binds for the client API; None = the advertised `http`."""
    https_cert: Path | None = None
    """PEM certificate chain for HTTPS on the client API (absolute); set together with https_key."""
    https_key: Path | None = None
    """PEM private key for https_cert (absolute)."""
    https_ca: Path | None = None
    """PEM file clients verify this node's HTTPS certificate with (absolute); None = the system store."""

    @property
    def raft_bind(self) -> Address:
        return self.raft_listen or self.raft

    @property
    def http_bind(self) -> Address:
        return self.http_listen or self.http

    @property
    def http_url(self) -> str:
        scheme = "https" if self.https_cert is not None else "http"
        return f"{scheme}://{self.http}"


@dataclass(frozen=True, slots=True)
class OrgSpec:
    id: str
    name: str
    role: str
    sign_pk: str | None = None
    box_pk: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    path: Path
    """The cluster file itself (absolute)."""
    chain_id: str
    nodes: tuple[NodeSpec, ...]
    orgs: tuple[OrgSpec, ...]
    block_max_txs: int = 500
    block_max_bytes: int = 1 << 20
    block_timeout_ms: int = 5
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    snapshot_entries: int = 2000
    max_body_bytes: int = 1 << 20
    queue_max: int = 10_000
    http_connections_max: int = 1024
    """HTTP connections a node holds open at once; one more is answered 503 too_many_connections
    (node/http/connection_cap.py)."""
    log_file_max_mb: int = 64
    """node.log is rotated when it would grow past this (node.log.1 is the newest old one)."""
    log_files_kept: int = 4
    """Rotated node.log files kept beside it (node.log.1 .. node.log.N); the oldest is deleted."""
    read_access: str = READ_ACCESS_SIGNED
    peer_tls: bool = True
    """TLS 1.3 on peer links (CONTRACT §6). False is for measuring its cost only; the node warns at start, and
    refuses it unless every peer link stays on loopback or `peer_tls_off_beyond_loopback` says otherwise."""
    peer_tls_off_beyond_loopback: bool = False
    """With peer_tls = false, allow Raft addresses (and binds) off loopback: clear text on a real network, for
    measurements across network namespaces (./scripts/multihost --no-tls) and nothing else."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def keys_dir(self) -> Path:
        return self.base_dir / "keys"

    @property
    def genesis_path(self) -> Path:
        return self.base_dir / "genesis.json"

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    @property
    def voter_ids(self) -> tuple[str, ...]:
        return tuple(sorted(n.id for n in self.nodes if n.voter))

    def node(self, node_id: str) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise ClusterConfigError("nodes", f"no node with id {node_id!r} (known: {', '.join(self.node_ids)})")

    def find_node(self, node_id: str | None) -> NodeSpec | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def org(self, org_id: str) -> OrgSpec:
        for o in self.orgs:
            if o.id == org_id:
                return o
        raise ClusterConfigError("orgs", f"no org with id {org_id!r}")


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster file. Raises ClusterConfigError naming the key at fault."""
    p = Path(path).resolve()
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClusterConfigError("", f"cluster file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterConfigError("", f"cannot read {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClusterConfigError("", f"{p} is not valid TOML: {exc}") from None
    return parse_config(raw, p)


def parse_config(raw: Mapping[str, Any], path: Path) -> ClusterConfig:
    """Validate an already-parsed cluster file (tests build dicts directly)."""
    cluster = raw.get("cluster")
    if not isinstance(cluster, Mapping):
        raise ClusterConfigError("cluster", "missing [cluster] table")
    chain_id = _str(cluster, "chain_id", "cluster.chain_id")
    ints: dict[str, int] = {}
    for key, spec in CLUSTER_INT_KEYS.items():
        ints[key] = _int_key(cluster, key, spec)
    if ints["heartbeat_ticks"] >= ints["election_ticks"]:
        raise ClusterConfigError("cluster.heartbeat_ticks", "must be smaller than cluster.election_ticks")
    read_access = cluster.get("read_access", READ_ACCESS_SIGNED)
    if read_access not in READ_ACCESS_MODES:
        raise ClusterConfigError("cluster.read_access", f"must be one of {', '.join(map(repr, READ_ACCESS_MODES))}, "
                                                        f"got {read_access!r}")

    peer_tls = cluster.get("peer_tls", True)
    if not isinstance(peer_tls, bool):
        raise ClusterConfigError("cluster.peer_tls", f"must be true or false, got {peer_tls!r}")

    beyond_loopback = cluster.get("peer_tls_off_beyond_loopback", False)
    if not isinstance(beyond_loopback, bool):
        raise ClusterConfigError("cluster.peer_tls_off_beyond_loopback",
                                 f"must be true or false, got {beyond_loopback!r}")

    orgs = _parse_orgs(raw.get("orgs"))
    nodes = _parse_nodes(raw.get("nodes"), path.parent)
    if not peer_tls and not beyond_loopback:
        for i, n in enumerate(nodes):
            for key, address in (("raft", n.raft), ("raft_listen", n.raft_listen)):
                if address is not None and not address.is_loopback:
                    raise ClusterConfigError("cluster.peer_tls", clear_text_refusal(f"nodes[{i}].{key} = {address}"))
    org_ids = {o.id for o in orgs}
    roles = {o.id: o.role for o in orgs}
    for i, n in enumerate(nodes):
        if orgs and n.org not in org_ids:
            raise ClusterConfigError(f"nodes[{i}].org", f"unknown org {n.org!r} (not in [[orgs]])")
        if n.voter and roles.get(n.org) == REGULATOR_ROLE:
            raise ClusterConfigError(f"nodes[{i}].voter", f"{n.org!r} is the regulator: its node is a learner "
                                     "that is never promoted, so it needs voter = false")
    if not any(n.voter for n in nodes):
        raise ClusterConfigError("nodes", "at least one node must be a voter")
    return ClusterConfig(path=path, chain_id=chain_id, nodes=nodes, orgs=orgs, read_access=read_access,
                         peer_tls=peer_tls, peer_tls_off_beyond_loopback=beyond_loopback, **ints)


def clear_text_refusal(where: str) -> str:
    """Why peer_tls = false is refused for an address off loopback (`where` names it)."""
    return (f"false, but {where} is not a loopback address: peer links would carry every block in clear text, "
            "and anyone on the path could read and inject frames. Keep peer_tls = true, or set "
            "[cluster] peer_tls_off_beyond_loopback = true to measure clear text on a network you own")


def _int_key(cluster: Mapping[str, Any], key: str, spec: IntKey) -> int:
    value = cluster.get(key, spec.default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClusterConfigError(f"cluster.{key}", f"must be an integer, got {value!r}")
    if value > spec.hi and spec.why_hi:
        raise ClusterConfigError(f"cluster.{key}", f"must be at most {spec.hi} ({spec.why_hi}), got {value}")
    if value < spec.lo and spec.why_lo:
        raise ClusterConfigError(f"cluster.{key}", f"must be at least {spec.lo} ({spec.why_lo}), got {value}")
    if not spec.lo <= value <= spec.hi:
        raise ClusterConfigError(f"cluster.{key}", f"must be in [{spec.lo}, {spec.hi}], got {value}")
    return value


def check_cluster_int_keys(keys: Mapping[str, IntKey]) -> None:
    """Raise InvariantViolation unless each key's default is in its range and is ClusterConfig's default too (a
    config built in code, without a file, gets the same values as an empty [cluster] table)."""
    defaults = {f.name: f.default for f in dataclasses.fields(ClusterConfig)}
    for key, spec in keys.items():
        require(spec.lo <= spec.default <= spec.hi, f"cluster.{key}: default {spec.default} not in its range")
        require(defaults.get(key) == spec.default, f"cluster.{key}: ClusterConfig's default differs from the table's")


check_cluster_int_keys(CLUSTER_INT_KEYS)


def parse_address(text: object, key: str, *, listen: bool = False) -> Address:
    """"HOST:PORT" (module docstring). `listen`: a bind address, which may be a wildcard; an advertised one may
    not (nobody can dial 0.0.0.0). Raises ClusterConfigError naming `key`."""
    example = ('"0.0.0.0:9701", "10.0.0.5:9701", "[::]:9701"' if listen
               else '"10.0.0.5:9701", "node1.example:9701", "[::1]:9701"')
    if not isinstance(text, str):
        raise ClusterConfigError(key, f"must be a string \"HOST:PORT\" such as {example}, got {text!r}")
    if len(text) > ADDRESS_LEN_MAX:
        raise ClusterConfigError(key, f"longer than {ADDRESS_LEN_MAX} characters")
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ClusterConfigError(key, f"must be \"HOST:PORT\" such as {example}, got {text!r}")
    if _PORT_RE.fullmatch(port) is None or int(port) > 65535:
        raise ClusterConfigError(key, f"port must be in [1, 65535] (no sign or leading zero), got {port!r} "
                                      f"in {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not is_ipv6(host):
            raise ClusterConfigError(key, f"{host!r} in brackets is not an IPv6 address (no zone ids), in {text!r}")
    elif ":" in host:
        raise ClusterConfigError(key, f"an IPv6 address needs brackets: \"[{host}]:{port}\", got {text!r}")
    elif not (is_ipv4(host) or is_hostname(host)):
        raise ClusterConfigError(key, f"host {host!r} is neither an IPv4 address (four numbers 0-255, no leading "
                                      "zeros) nor a hostname (at most 253 characters: letters, digits, '-' "
                                      "inside labels of up to 63, joined by '.')")
    address = Address(host, int(port))
    if address.is_wildcard and not listen:
        raise ClusterConfigError(key, f"{text} binds every address and cannot be dialled: advertise an address "
                                      f"peers and clients reach, and put the wildcard in {key}_listen")
    return address


def _parse_orgs(raw: object) -> tuple[OrgSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ClusterConfigError("orgs", "must be an array of tables ([[orgs]])")
    out: list[OrgSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"orgs[{i}]"
        if not isinstance(item, Mapping):
            raise ClusterConfigError(key, "must be a table")
        org_id = _ident(item, "id", f"{key}.id")
        if org_id in seen:
            raise ClusterConfigError(f"{key}.id", f"duplicate org id {org_id!r}")
        seen.add(org_id)
        role = _str(item, "role", f"{key}.role")
        if role not in ROLES:
            raise ClusterConfigError(f"{key}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        out.append(OrgSpec(
            id=org_id,
            name=_str(item, "name", f"{key}.name"),
            role=role,
            sign_pk=_hex32(item, "sign_pk", f"{key}.sign_pk"),
            box_pk=_hex32(item, "box_pk", f"{key}.box_pk"),
        ))
    return tuple(out)


def _parse_nodes(raw: object, base_dir: Path) -> tuple[NodeSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ClusterConfigError("nodes", "need at least one [[nodes]] entry")
    out: list[NodeSpec] = []
    ids: set[str] = set()
    addrs: dict[Address, str] = {}
    dirs: set[Path] = set()
    for i, item in enumerate(raw):
        key = f"nodes[{i}]"
        if not isinstance(item, Mapping):
            raise ClusterConfigError(key, "must be a table")
        node_id = _ident(item, "id", f"{key}.id")
        if node_id in ids:
            raise ClusterConfigError(f"{key}.id", f"duplicate node id {node_id!r}")
        ids.add(node_id)
        http = parse_address(item.get("http"), f"{key}.http")
        raft = parse_address(item.get("raft"), f"{key}.raft")
        for name, addr in (("http", http), ("raft", raft)):
            same = Address(addr.canonical_host, addr.port)
            if same in addrs:
                raise ClusterConfigError(f"{key}.{name}", f"address {addr} already used by {addrs[same]}")
            addrs[same] = f"{key}.{name}"
        listens = {name: None if item.get(f"{name}_listen") is None
                   else parse_address(item.get(f"{name}_listen"), f"{key}.{name}_listen", listen=True)
                   for name in ("raft", "http")}
        data_dir = (base_dir / _str(item, "data_dir", f"{key}.data_dir")).resolve()
        if data_dir in dirs:
            raise ClusterConfigError(f"{key}.data_dir", f"{data_dir} is used by another node")
        dirs.add(data_dir)
        voter = item.get("voter", True)
        if not isinstance(voter, bool):
            raise ClusterConfigError(f"{key}.voter", f"must be true or false, got {voter!r}")
        https_cert = _path(item, "https_cert", f"{key}.https_cert", base_dir)
        https_key = _path(item, "https_key", f"{key}.https_key", base_dir)
        if (https_cert is None) != (https_key is None):
            missing, given = ("https_key", "https_cert") if https_key is None else ("https_cert", "https_key")
            raise ClusterConfigError(f"{key}.{missing}", f"{key}.{given} is set: HTTPS needs both a certificate "
                                                         "(https_cert) and its private key (https_key), or neither")
        https_ca = _path(item, "https_ca", f"{key}.https_ca", base_dir)
        if https_ca is not None and https_cert is None:
            raise ClusterConfigError(f"{key}.https_ca", "set, but the node serves plain HTTP (no https_cert)")
        out.append(NodeSpec(
            id=node_id,
            org=_ident(item, "org", f"{key}.org"),
            http=http,
            raft=raft,
            data_dir=data_dir,
            node_pk=_hex32(item, "node_pk", f"{key}.node_pk"),
            voter=voter,
            raft_listen=listens["raft"],
            http_listen=listens["http"],
            https_cert=https_cert,
            https_key=https_key,
            https_ca=https_ca,
        ))
    _check_binds(out)
    return tuple(out)


def _binds_clash(a: Address, b: Address) -> bool:
    """Would binding both fail (EADDRINUSE)? Same port, and the same host or a wildcard of the other's family
    (Linux refuses 127.0.0.1:P beside 0.0.0.0:P even with SO_REUSEADDR). A hostname's family is unknown before
    it is resolved: it clashes with either wildcard."""
    if a.port != b.port:
        return False
    if a.canonical_host == b.canonical_host:
        return True
    for wild, other in ((a, b), (b, a)):
        other_is_ip = is_ipv4(other.host) or is_ipv6(other.host)
        if wild.is_wildcard and not other.is_wildcard and not (other_is_ip and other.is_ipv6 != wild.is_ipv6):
            return True
    return False


def _check_binds(nodes: list[NodeSpec]) -> None:
    """What each node binds must not clash with what it, or another node on the same host, binds (module
    docstring: nodes share a host when one of their advertised hosts is the same machine)."""
    seen: list[tuple[int, set[str], Address, str]] = []
    for i, n in enumerate(nodes):
        machines = {n.raft.machine, n.http.machine}
        for name, listen in (("raft", n.raft_listen), ("http", n.http_listen)):
            addr = n.raft_bind if name == "raft" else n.http_bind
            where = f"nodes[{i}].{name}_listen" if listen is not None else f"nodes[{i}].{name}"
            for j, other_machines, other, other_where in seen:
                if (j == i or machines & other_machines) and _binds_clash(addr, other):
                    raise ClusterConfigError(where, f"binds {addr}, which clashes with {other} bound by "
                                                    f"{other_where} on the same host")
            seen.append((i, machines, addr, where))


def _str(table: Mapping[str, Any], name: str, key: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ClusterConfigError(key, f"required, must be a non-empty string (got {value!r})")
    return value


def _ident(table: Mapping[str, Any], name: str, key: str) -> str:
    value = _str(table, name, key)
    if not _ID_RE.match(value):
        raise ClusterConfigError(key, f"must match {_ID_RE.pattern} (lowercase letters, digits, _ . -), got {value!r}")
    return value


def _path(table: Mapping[str, Any], name: str, key: str, base_dir: Path) -> Path | None:
    """An optional file path, relative to the cluster file's directory. Not checked for existence here: the
    file is the node's own (its HTTPS key lives on its host only); the node checks it at start."""
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ClusterConfigError(key, f"must be a non-empty path string, got {value!r}")
    return (base_dir / value).resolve()


def _hex32(table: Mapping[str, Any], name: str, key: str) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64:
        raise ClusterConfigError(key, "must be 64 hex characters")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ClusterConfigError(key, "must be 64 hex characters") from None
    return value.lower()
