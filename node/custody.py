"""Key custody: a node starts with its own private keys and nobody else's (issue 15, CONTRACT §6 "Keys").

In a consortium each organisation makes its keys on its own host (`ecert keygen`, node/client/ceremony.py), and
the host's `keys/` holds exactly two of them: `<org>.key` (the org's signing key, with what `ecert org
rotate-key` leaves of its own rotations: `<org>.key.next`, `<org>.key.old-<height>`) and `node-<id>.key` (the
node's transport key). `check_key_custody` is what a node runs first at start: it refuses if its node key is
missing, or if `keys/` holds any other org's or node's private key, because a host that holds another member's
key can sign as that member, and the consortium's trust model (no org trusts another with its keys) is gone.

The one exception is the local demo: `ecert init` and the local clusters (node/ops/localnet.py) make every key in
one `keys/` and say so by writing `keys/LOCAL-DEMO`. The exception holds only while every address of every
[[nodes]] entry (advertised and bound) is a loopback address: a cluster file that reaches the network is a real
deployment, and the marker no longer excuses anything.

`check_org_key` is the second check, once the state is open: the org key beside the node must be the org's
current key on chain (or the state is behind a rotation this host already finished), else the file is wrong.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from node.config import Address, ClusterConfig
from node.keys import (
    KeyFileError,
    KeyPair,
    fingerprint,
    load_key,
    load_or_create_key,
    node_key_path,
    org_key_path,
    org_next_key_path,
    org_old_key_paths,
    parse_seed,
)

LOCAL_DEMO_MARKER = "LOCAL-DEMO"
LOCAL_DEMO_TEXT = (
    "This keys/ directory holds the private key of every organisation and every node of the cluster file: it was "
    "made by `ecert init` (or a local test cluster) for a local demo on one machine.\n"
    "Nodes accept that only while this file is here and every [[nodes]] address is a loopback address.\n"
    "A real consortium makes no such directory: each organisation runs `ecert keygen` on its own host, and the "
    "genesis ceremony (`ecert genesis add-org`, `ecert genesis build`) collects only public keys (docs/DEPLOY.md).\n"
)
_KEY_NAME = re.compile(r"^(?P<stem>.+)\.key(?P<variant>\.next|\.old-\d+)?$")
_SNIFF_BYTES_MAX = 4096
"""A file in keys/ with another name is read (up to this much) to see whether it holds a seed all the same (a
`boc.key.bak`): a private key is one by its content, whatever it is called."""


class CustodyError(Exception):
    """The keys beside a node are not its own (or its own are missing or wrong); the message names the files."""


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A private key in keys/ that belongs to another org or node (or to nobody we know)."""

    path: Path
    what: str

    def __str__(self) -> str:
        return f"{self.path.name} ({self.what})"


def local_demo_marker(keys_dir: Path) -> Path:
    return Path(keys_dir) / LOCAL_DEMO_MARKER


def write_local_demo_marker(keys_dir: Path) -> bool:
    """keys/LOCAL-DEMO with what it means, if missing. Returns True if this call wrote it."""
    path = local_demo_marker(keys_dir)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(LOCAL_DEMO_TEXT)
    return True


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1, or the name `localhost` (RFC 6761: it never leaves the machine). Never resolves: a
    hostname that resolves to 127.0.0.1 today may not tomorrow."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def non_loopback_addresses(config: ClusterConfig) -> list[str]:
    """`node X raft A` for every [[nodes]] address, advertised or bound, that is not a loopback address."""
    out = []
    for n in config.nodes:
        addresses: list[tuple[str, Address]] = [("raft", n.raft), ("http", n.http)]
        for name in ("raft_listen", "http_listen"):
            bound = getattr(n, name, None)
            if isinstance(bound, Address):
                addresses.append((name, bound))
        out += [f"node {n.id} {name} {a}" for name, a in addresses if not is_loopback_host(a.host)]
    return out


def local_demo_applies(config: ClusterConfig) -> tuple[bool, str]:
    """(True, "") if keys/LOCAL-DEMO is there and every node of the cluster file is on loopback; else False and
    why not, in words for an error message."""
    marker = local_demo_marker(config.keys_dir)
    if not marker.is_file():
        return False, f"there is no {marker} (only `ecert init` and local test clusters write it)"
    outside = non_loopback_addresses(config)
    if outside:
        more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
        return False, (f"{marker} is there, but it excuses a shared keys/ only while every [[nodes]] address is a "
                       f"loopback address, and {', '.join(outside[:3])}{more} {'is' if len(outside) == 1 else 'are'} not")
    return True, ""


def _own_names(org_id: str, node_id: str) -> set[str]:
    return {org_key_path(Path(), org_id).name, org_next_key_path(Path(), org_id).name,
            node_key_path(Path(), node_id).name}


def _is_own(name: str, org_id: str, node_id: str) -> bool:
    if name in _own_names(org_id, node_id):
        return True
    m = _KEY_NAME.match(name)
    return m is not None and m["stem"] == org_id and (m["variant"] or "").startswith(".old-")


def _sniff_seed(path: Path) -> bytes | None:
    with contextlib.suppress(OSError, UnicodeDecodeError, KeyFileError):
        with path.open("rb") as f:
            data = f.read(_SNIFF_BYTES_MAX + 1)
        if len(data) <= _SNIFF_BYTES_MAX:
            return parse_seed(data.decode("ascii"), str(path))
    return None


def foreign_key_files(keys_dir: Path, org_id: str, node_id: str) -> list[ForeignKey]:
    """The private keys in `keys_dir` that are not org `org_id`'s (current, next, rotated out) or node
    `node_id`'s: every other `*.key` / `*.key.next` / `*.key.old-N`, and any other file that holds a seed that is
    not one of ours. Directories are skipped (a Kubernetes Secret volume keeps its `..data/` there; what it holds
    shows as the links beside it)."""
    keys_dir = Path(keys_dir)
    if not keys_dir.is_dir():
        return []
    entries = sorted(p for p in keys_dir.iterdir() if p.name != LOCAL_DEMO_MARKER and not p.is_dir())
    own_seeds = set()
    for p in entries:
        if _is_own(p.name, org_id, node_id):
            seed = _sniff_seed(p)
            if seed is not None:
                own_seeds.add(seed)
    out = []
    for p in entries:
        if _is_own(p.name, org_id, node_id):
            continue
        m = _KEY_NAME.match(p.name)
        if m is not None:
            stem, variant = m["stem"], m["variant"] or ""
            kind = "next key" if variant == ".next" else "rotated-out key" if variant else "key"
            whose = f"node {stem[len('node-'):]}'s" if stem.startswith("node-") and not variant else f"org {stem}'s"
            out.append(ForeignKey(p, f"{whose} {kind}"))
            continue
        seed = _sniff_seed(p)
        if seed is not None and seed not in own_seeds:
            out.append(ForeignKey(p, "holds a private key that is not this node's or its org's"))
    return out


def check_key_custody(config: ClusterConfig, node_id: str) -> KeyPair:
    """The node's transport key (keys/node-<id>.key), once the keys beside it are its own. Raises CustodyError
    if the node key is missing or malformed, or keys/ holds another org's or node's private key, unless the
    local-demo exception holds (see the module docstring); then a missing node key is made, as before."""
    spec = config.node(node_id)
    keys_dir = config.keys_dir
    path = node_key_path(keys_dir, node_id)
    demo, why_not = local_demo_applies(config)
    try:
        if demo:
            return load_or_create_key(path)[0]
        foreign = foreign_key_files(keys_dir, spec.org, node_id)
        if foreign:
            listed = ", ".join(map(str, foreign))
            raise CustodyError(
                f"{keys_dir} holds private keys that are not node {node_id}'s or org {spec.org}'s: {listed}. A "
                f"node starts with its own org key and node key only (each organisation's keys stay on its own "
                f"host): move these out of {keys_dir}. The local demo's exception does not apply: {why_not}")
        return load_key(path)
    except FileNotFoundError:
        raise CustodyError(
            f"{path} is missing: node {node_id}'s transport key is made on its own host by `ecert keygen --org "
            f"{spec.org} --node {node_id} --dir {config.base_dir}` before the genesis ceremony (a local demo: "
            f"`ecert init`). It is not made at start outside the local demo ({why_not})") from None
    except KeyFileError as exc:
        raise CustodyError(f"{exc} (a key file is never replaced: fix or restore it)") from None


def check_org_key(keys_dir: Path, org_id: str, chain_sign_pk: str | None, height: int) -> str | None:
    """Compare keys/<org>.key, if there, with the org's current key in the state at `height` (`chain_sign_pk`;
    None: the org is not in state, nothing to compare). Returns a warning when the files explain the difference
    (the state is behind a rotation this host finished: a `<org>.key.old-<H>` with H above `height` holds the
    state's key; or a rotation is half done: `<org>.key.next` holds it), None when they agree; raises
    CustodyError otherwise, naming both keys."""
    path = org_key_path(keys_dir, org_id)
    if chain_sign_pk is None:
        return None
    try:
        key = load_key(path)
    except FileNotFoundError:
        return None  # a node host need not keep the org key (it signs nothing as the org)
    except KeyFileError as exc:
        raise CustodyError(f"{exc} (a key file is never replaced: fix or restore it)") from None
    if key.sign_pk_hex == chain_sign_pk:
        return None
    for rotated_at, old in org_old_key_paths(keys_dir, org_id):
        with contextlib.suppress(OSError, KeyFileError):
            if rotated_at > height and load_key(old).sign_pk_hex == chain_sign_pk:
                return (f"the state (height {height}) still holds {org_id}'s key from before the rotation at height "
                        f"{rotated_at} ({old.name}); {path.name} is the newer one: the node catches up")
    pending = org_next_key_path(keys_dir, org_id)
    with contextlib.suppress(OSError, KeyFileError):
        if load_key(pending).sign_pk_hex == chain_sign_pk:
            return (f"{org_id}'s key rotation is half done: the chain holds the key in {pending.name}, "
                    f"{path.name} still holds the old one; run `ecert org rotate-key {org_id}` to finish it")
    raise CustodyError(
        f"{path} holds sign_pk {fingerprint(key.sign_pk_hex)}, but org {org_id}'s current key on chain (state at "
        f"height {height}) is {fingerprint(chain_sign_pk)}: this is not {org_id}'s key (another org's, or one "
        f"made after genesis), or a rotation left no trace here. Put {org_id}'s key in {path}")
