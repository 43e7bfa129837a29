"""The genesis ceremony: keys made on each organisation's own host, genesis assembled from public material only.

    ecert keygen --org ORG --node NODE --dir DIR [--name N] [--role R] [--raft H:P] [--http H:P] [--learner]
    ecert genesis add-org FILE... --ceremony CDIR
    ecert genesis build --ceremony CDIR --chain-id ID [--genesis-time MS] --out ODIR
    ecert genesis hash [--config cluster.toml]

1. Each organisation, on its own host: `keygen` makes DIR/keys/ORG.key and DIR/keys/node-NODE.key (0600, never
   overwritten: node/keys.py) and writes DIR/ORG.public.json, the org's public record (`ecert-public/1`):
   `{"format", "id", "name", "role", "sign_pk", "box_pk", "node": {"id", "raft", "http", "node_pk", "voter"},
   "org_sig", "node_sig"}`. The two signatures are proofs of possession: the org key and the node key each sign
   the record (everything but the signatures, as canonical JSON) under the domain `ecert-public/1` and their role
   (`public_message`). They name no chain (there is none yet), and cover both keys and the addresses, so a record
   cannot be stitched together from two others, and nobody can claim a key they do not hold.
2. The coordinator: `add-org` checks each file (schema, ids, addresses as the chain reads them, the box key is
   the one derived from the signing key, both proofs) and that it conflicts with none already in CDIR/ceremony.json
   (same org or node id, a key or an address used twice), then appends it. `build` checks them all again and writes
   ODIR/cluster.toml (every org with `sign_pk`/`box_pk`, every node with `node_pk`, `voter`, `data_dir =
   "data/<node_id>"`; `read_access = "signed"`, `peer_tls = true`) and ODIR/genesis.json (node/genesis_file.py's
   `genesis_doc` of that file), never over existing files. The orgs are sorted by id, so any party that builds
   from the same public files and genesis time gets the same bytes (and may do so to check).
3. Each organisation: both files beside its keys/ (plus its own listen addresses), then `ecert genesis hash`
   prints the two hashes everyone compares: `genesis_hash` (ecert/genesis.py's, what a node's state is built
   from) and `cluster_hash` (`cluster_hash` below: the part of the cluster file every member must agree on;
   host-local keys such as listen addresses, HTTPS files and data_dir are left out).

Who may run these: anyone; they read and write only local files. A record is accepted only with both proofs of
possession, and no private key is ever read from or written to a public file (the record has exactly the fields
above).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import socket
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nacl import bindings
from rich.console import Console

from ecert.errors import GenesisError, TxRejected
from ecert.genesis import GenesisDoc, genesis_from_json, genesis_hash
from ecert.membership import REGULATOR_ROLE
from ecert.tx import ROLES, v_address, v_hex32, v_id, v_name
from node.config import ClusterConfig, ClusterConfigError, parse_address, parse_config
from node.custody import foreign_key_files
from node.genesis_file import GenesisFileError, address_text, genesis_doc
from node.keys import (
    KeyFileError,
    KeyPair,
    fingerprint,
    load_or_create_key,
    node_key_path,
    org_key_path,
    verify,
)

PUBLIC_FORMAT = "ecert-public/1"
CEREMONY_FORMAT = "ecert-ceremony/1"
CEREMONY_FILE = "ceremony.json"
CLUSTER_HASH_DOMAIN = b"ecert-cluster/1\n"
RAFT_PORT_DEFAULT = 9700
HTTP_PORT_DEFAULT = 8700
ROLE_DEFAULT = "supplier"
ROLE_CHOICES = ROLES
EXIT_OK, EXIT_USAGE = 0, 2

_CONFIG_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
"""The cluster file's id rule (node/config.py): stricter than the chain's (lowercase), and a record must fit both."""
_RECORD_FIELDS = frozenset({"format", "id", "name", "role", "sign_pk", "box_pk", "node", "org_sig", "node_sig"})
_NODE_FIELDS = frozenset({"id", "raft", "http", "node_pk", "voter"})
_SIG_RE = re.compile(r"^[0-9a-f]{128}$")
_HOST_LOCAL_NODE_FIELDS = "data_dir, raft_listen, http_listen, https_cert, https_key, https_ca"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class CeremonyError(Exception):
    """A public file, the ceremony file or the output is not as it must be; the message names the file."""


# --- the public record ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicNode:
    id: str
    raft: str
    http: str
    node_pk: str
    voter: bool


@dataclass(frozen=True, slots=True)
class PublicRecord:
    """One organisation's public file: what genesis needs of it, and the proofs that it holds both keys."""

    id: str
    name: str
    role: str
    sign_pk: str
    box_pk: str
    node: PublicNode
    org_sig: str
    node_sig: str

    def body(self) -> dict[str, Any]:
        """Everything the proofs sign: the record without its signatures."""
        return {"format": PUBLIC_FORMAT, "id": self.id, "name": self.name, "role": self.role,
                "sign_pk": self.sign_pk, "box_pk": self.box_pk, "node": dataclasses.asdict(self.node)}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "org_sig": self.org_sig, "node_sig": self.node_sig}

    def fingerprints(self) -> str:
        return f"sign_pk {fingerprint(self.sign_pk)} node_pk {fingerprint(self.node.node_pk)}"


def public_message(body: Mapping[str, Any], signer: str) -> bytes:
    """What the `signer` ("org" or "node") key signs: the domain, the signer's role, the canonical JSON of the
    record body (sorted keys, no spaces, ASCII: the same bytes wherever it is computed)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{PUBLIC_FORMAT}\n{signer}\n".encode() + canonical.encode()


def derived_box_pk(sign_pk_hex: str) -> str | None:
    """The X25519 key node/keys.py derives from an Ed25519 key (None if it is not a curve point)."""
    try:
        return bytes(bindings.crypto_sign_ed25519_pk_to_curve25519(bytes.fromhex(sign_pk_hex))).hex()
    except Exception:  # nacl raises RuntimeError / ValueError for a point off the curve
        return None


def make_record(org_key: KeyPair, node_key: KeyPair, *, org_id: str, name: str, role: str, node_id: str,
                raft: str, http: str, voter: bool) -> PublicRecord:
    node = PublicNode(node_id, raft, http, node_key.sign_pk_hex, voter)
    unsigned = PublicRecord(org_id, name, role, org_key.sign_pk_hex, org_key.box_pk_hex, node, "", "")
    body = unsigned.body()
    record = dataclasses.replace(unsigned, org_sig=org_key.sign(public_message(body, "org")).hex(),
                                 node_sig=node_key.sign(public_message(body, "node")).hex())
    return check_record(record, "the new record")


def _field(check: Any, name: str, value: object, where: str) -> Any:
    try:
        return check(name, value)
    except TxRejected as exc:
        raise CeremonyError(f"{where}: {exc.message}") from None


def _config_id(name: str, value: object, where: str) -> str:
    text = _field(v_id, name, value, where)
    if _CONFIG_ID_RE.match(text) is None:
        raise CeremonyError(f"{where}: field {name!r} must match {_CONFIG_ID_RE.pattern} (lowercase letters, "
                            f"digits, _ . -), got {text!r}")
    return str(text)


def check_record(record: PublicRecord, where: str) -> PublicRecord:
    """Every rule a record must meet on its own; raises CeremonyError naming `where` and the field."""
    _config_id("id", record.id, where)
    if not isinstance(record.name, str) or not record.name.strip():
        raise CeremonyError(f"{where}: field 'name' must be a non-empty string")
    _field(v_name, "name", record.name, where)
    if record.role not in ROLES:
        raise CeremonyError(f"{where}: field 'role' must be one of {', '.join(ROLES)}, got {record.role!r}")
    for name, value in (("sign_pk", record.sign_pk), ("box_pk", record.box_pk), ("node.node_pk", record.node.node_pk)):
        _field(v_hex32, name, value, where)
    _config_id("node.id", record.node.id, where)
    for name, value in (("node.raft", record.node.raft), ("node.http", record.node.http)):
        _field(v_address, name, value, where)  # as the chain reads it (genesis, membership records)
        try:
            parse_address(value, name)  # and as the cluster file does (no wildcard: nobody dials 0.0.0.0)
        except ClusterConfigError as exc:
            raise CeremonyError(f"{where}: {exc}") from None
    if record.node.raft.lower() == record.node.http.lower():
        raise CeremonyError(f"{where}: node.raft and node.http are the same address {record.node.raft}")
    if type(record.node.voter) is not bool:
        raise CeremonyError(f"{where}: field 'node.voter' must be true or false")
    if record.node.voter and record.role == REGULATOR_ROLE:
        raise CeremonyError(f"{where}: {record.id} is the regulator: its node is a learner (voter false, "
                            "`ecert keygen --learner`)")
    if record.sign_pk == record.node.node_pk:
        raise CeremonyError(f"{where}: the org key and the node key are the same key: they must be two keys")
    box = derived_box_pk(record.sign_pk)
    if box is None:
        raise CeremonyError(f"{where}: sign_pk {fingerprint(record.sign_pk)} is not an Ed25519 public key")
    if record.box_pk != box:
        raise CeremonyError(f"{where}: box_pk {fingerprint(record.box_pk)} is not the key derived from sign_pk "
                            f"({fingerprint(box)}): the org could not open documents sealed for it")
    body = record.body()
    for signer, sig, pk in (("org", record.org_sig, record.sign_pk), ("node", record.node_sig, record.node.node_pk)):
        if not isinstance(sig, str) or _SIG_RE.match(sig) is None:
            raise CeremonyError(f"{where}: field '{signer}_sig' must be 128 lowercase hex characters")
        if not verify(bytes.fromhex(pk), public_message(body, signer), bytes.fromhex(sig)):
            key = "sign_pk" if signer == "org" else "node.node_pk"
            raise CeremonyError(f"{where}: the {signer} key's proof of possession does not verify: {signer}_sig is "
                                f"not {key} {fingerprint(pk)}'s signature of this record (the file was changed "
                                "after `ecert keygen`, or is not from it)")
    return record


def parse_record(obj: object, where: str) -> PublicRecord:
    """A public record from its JSON object: exactly the fields of the format, then `check_record`."""
    if not isinstance(obj, Mapping):
        raise CeremonyError(f"{where}: not a JSON object")
    if obj.get("format") != PUBLIC_FORMAT:
        raise CeremonyError(f"{where}: format must be {PUBLIC_FORMAT!r} (a file written by `ecert keygen`), got "
                            f"{obj.get('format')!r}")
    if set(obj) != _RECORD_FIELDS:
        extra, missing = sorted(set(obj) - _RECORD_FIELDS), sorted(_RECORD_FIELDS - set(obj))
        raise CeremonyError(f"{where}: fields must be exactly {', '.join(sorted(_RECORD_FIELDS))}"
                            + (f"; unknown: {', '.join(extra)}" if extra else "")
                            + (f"; missing: {', '.join(missing)}" if missing else ""))
    node = obj["node"]
    if not isinstance(node, Mapping) or set(node) != _NODE_FIELDS:
        raise CeremonyError(f"{where}: node must be an object with exactly {', '.join(sorted(_NODE_FIELDS))}")
    strings = {k: obj[k] for k in ("id", "name", "role", "sign_pk", "box_pk", "org_sig", "node_sig")}
    strings |= {f"node.{k}": node[k] for k in ("id", "raft", "http", "node_pk")}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise CeremonyError(f"{where}: field {key!r} must be a string")
    record = PublicRecord(obj["id"], obj["name"], obj["role"], obj["sign_pk"], obj["box_pk"],
                          PublicNode(node["id"], node["raft"], node["http"], node["node_pk"], node["voter"]),
                          obj["org_sig"], obj["node_sig"])
    return check_record(record, where)


def read_record(path: Path) -> PublicRecord:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CeremonyError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CeremonyError(f"{path}: not a readable JSON file ({exc})") from None
    return parse_record(obj, str(path))


def conflicts(records: Sequence[PublicRecord]) -> list[str]:
    """What two records may not share: an org id, a node id, a public key, an address."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for i, r in enumerate(records):
        claims = [("org id", r.id, "id"), ("node id", r.node.id, "node.id"), ("key", r.sign_pk, "sign_pk"),
                  ("key", r.node.node_pk, "node.node_pk"), ("address", r.node.raft.lower(), "node.raft"),
                  ("address", r.node.http.lower(), "node.http")]
        for kind, value, field in claims:
            owner = seen.setdefault((kind, value), i)
            if owner != i:
                shown = fingerprint(value) if kind == "key" else value
                whose = "another record's" if records[owner].id == r.id else f"{records[owner].id}'s"
                out.append(f"{r.id}'s {field}: {kind} {shown} is already {whose}")
    return out


# --- keygen --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeygenResult:
    record: PublicRecord
    public_file: Path
    created: tuple[Path, ...]
    kept: tuple[Path, ...]
    public_file_changed: bool
    https: tuple[Path, ...] = ()


def public_file_path(directory: Path, org_id: str) -> Path:
    return Path(directory) / f"{org_id}.public.json"


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_new(path: Path, text: str) -> None:
    """Create `path` whole or not at all, and never over an existing file (a link of a complete temporary)."""
    tmp = path.with_name(f".{path.name}.tmp")
    _write_atomic(tmp, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CeremonyError(f"{path} exists: never overwritten (remove it to build again)") from None
    finally:
        tmp.unlink()


def default_address(port: int) -> str:
    return f"{socket.gethostname().lower()}:{port}"


def keygen(directory: Path, org_id: str, node_id: str, *, name: str | None = None, role: str = ROLE_DEFAULT,
           raft: str | None = None, http: str | None = None, voter: bool = True,
           https_hosts: Sequence[str] = ()) -> KeygenResult:
    """The org's and the node's keys in DIR/keys/ (made if missing, never overwritten) and DIR/ORG.public.json.
    Refuses a keys/ that holds any other org's or node's key: one organisation (and its node) per host."""
    where = "keygen"
    directory = Path(directory)
    _config_id("org", org_id, where)
    _config_id("node", node_id, where)
    if role not in ROLES:
        raise CeremonyError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == REGULATOR_ROLE:
        voter = False  # the regulator's node is a learner that is never promoted (CONTRACT §6)
    keys_dir = directory / "keys"
    foreign = foreign_key_files(keys_dir, org_id, node_id)
    if foreign:
        raise CeremonyError(f"{keys_dir} already holds private keys that are not org {org_id}'s or node "
                            f"{node_id}'s: {', '.join(map(str, foreign))}. A host directory holds one "
                            "organisation's keys: give this one its own --dir")
    addresses = {"--raft": raft or default_address(RAFT_PORT_DEFAULT),
                 "--http": http or default_address(HTTP_PORT_DEFAULT)}
    for option, value in addresses.items():
        try:
            v_address(option, value)
            parse_address(value, option)
        except TxRejected as exc:
            raise CeremonyError(f"{option} {value}: {exc.message} (the address peers and clients dial; say it "
                                f"with {option} HOST:PORT)") from None
        except ClusterConfigError as exc:
            raise CeremonyError(f"{exc} (the address peers and clients dial, which genesis records; what this "
                                "host binds goes in its own cluster file later: raft_listen, http_listen)") from None
    if addresses["--raft"].lower() == addresses["--http"].lower():
        raise CeremonyError(f"--raft and --http are the same address {addresses['--raft']}: two ports are needed")
    directory.mkdir(parents=True, exist_ok=True)
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    created: list[Path] = []
    kept: list[Path] = []
    pairs: list[KeyPair] = []
    for path in (org_key_path(keys_dir, org_id), node_key_path(keys_dir, node_id)):
        try:
            key, made = load_or_create_key(path)
        except KeyFileError as exc:
            raise CeremonyError(f"{exc} (a key file is never replaced: fix or remove it)") from None
        (created if made else kept).append(path)
        pairs.append(key)
    org_key, node_key = pairs
    record = make_record(org_key, node_key, org_id=org_id, name=name or org_id, role=role, node_id=node_id,
                         raft=addresses["--raft"], http=addresses["--http"], voter=voter)
    public = public_file_path(directory, org_id)
    text = json.dumps(record.to_json(), indent=2, ensure_ascii=False) + "\n"
    try:
        changed = public.read_text(encoding="utf-8") != text
    except FileNotFoundError:
        changed = True
    if changed:
        _write_atomic(public, text)
    https: tuple[Path, ...] = ()
    if https_hosts:
        from node.tls import TlsError, write_self_signed_https_cert

        try:
            https = write_self_signed_https_cert(directory / "tls", list(https_hosts))
        except TlsError as exc:
            raise CeremonyError(f"--https-host: {exc}") from None
    return KeygenResult(record, public, tuple(created), tuple(kept), changed, https)


# --- the ceremony file ---------------------------------------------------------------------------------------------


def ceremony_path(ceremony_dir: Path) -> Path:
    return Path(ceremony_dir) / CEREMONY_FILE


def load_ceremony(ceremony_dir: Path) -> list[PublicRecord]:
    """The records of CDIR/ceremony.json, each checked again (the file may have been edited by hand); [] if the
    ceremony has not started."""
    path = ceremony_path(ceremony_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CeremonyError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, Mapping) or doc.get("format") != CEREMONY_FORMAT or not isinstance(doc.get("orgs"), list):
        raise CeremonyError(f'{path}: expected {{"format": "{CEREMONY_FORMAT}", "orgs": [...]}} as `ecert genesis '
                            "add-org` writes it")
    records = [parse_record(obj, f"{path} orgs[{i}]") for i, obj in enumerate(doc["orgs"])]
    clash = conflicts(records)
    if clash:
        raise CeremonyError(f"{path}: {'; '.join(clash)}")
    return records


@dataclass(frozen=True, slots=True)
class AddResult:
    added: tuple[PublicRecord, ...]
    unchanged: tuple[PublicRecord, ...]
    """Records already in the ceremony exactly as given (adding them again changes nothing)."""
    total: int


def add_orgs(ceremony_dir: Path, files: Iterable[Path]) -> AddResult:
    """Check every file, then append the new records to CDIR/ceremony.json in one atomic write: all or none."""
    records = load_ceremony(ceremony_dir)
    by_id = {r.id: r for r in records}
    added: list[PublicRecord] = []
    unchanged: list[PublicRecord] = []
    for path in files:
        record = read_record(Path(path))
        present = by_id.get(record.id)
        if present is not None:
            if present == record:
                unchanged.append(record)
                continue
            raise CeremonyError(f"{path}: org {record.id} is already in the ceremony with another record "
                                f"({present.fingerprints()}; this file: {record.fingerprints()}): an org is added "
                                f"once; to replace it, start the ceremony again without it")
        clash = conflicts([*records, *added, record])
        if clash:
            raise CeremonyError(f"{path}: {'; '.join(clash)}")
        added.append(record)
        by_id[record.id] = record
    if added:
        Path(ceremony_dir).mkdir(parents=True, exist_ok=True)
        doc = {"format": CEREMONY_FORMAT, "orgs": [r.to_json() for r in [*records, *added]]}
        _write_atomic(ceremony_path(ceremony_dir), json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return AddResult(tuple(added), tuple(unchanged), len(records) + len(added))


# --- build ---------------------------------------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a basic TOML string: JSON's escapes are TOML's


def cluster_text(records: Sequence[PublicRecord], chain_id: str, header: Sequence[str] = ()) -> str:
    """The cluster file of a ceremony: [cluster], every org, every node, in the order of `records`."""
    lines = [f"# {line}" if line else "#" for line in header] + ([""] if header else [])
    lines += ["[cluster]", f"chain_id = {_toml_str(chain_id)}", 'read_access = "signed"', "peer_tls = true"]
    for r in records:
        lines += ["", "[[orgs]]", f"id = {_toml_str(r.id)}", f"name = {_toml_str(r.name)}",
                  f"role = {_toml_str(r.role)}", f"sign_pk = {_toml_str(r.sign_pk)}", f"box_pk = {_toml_str(r.box_pk)}"]
    for r in records:
        n = r.node
        lines += ["", "[[nodes]]", f"id = {_toml_str(n.id)}", f"org = {_toml_str(r.id)}",
                  f"raft = {_toml_str(n.raft)}", f"http = {_toml_str(n.http)}",
                  f"data_dir = {_toml_str('data/' + n.id)}", f"node_pk = {_toml_str(n.node_pk)}",
                  f"voter = {'true' if n.voter else 'false'}"]
    return "\n".join(lines) + "\n"


def cluster_hash(config: ClusterConfig) -> str:
    """SHA-256 (hex) of what every member's copy of the cluster file must agree on: the [cluster] settings, every
    org with its keys, every node with its advertised addresses, key and voter flag. Host-local keys are left out
    (data_dir, listen addresses, HTTPS files), so each host may set its own and still compare equal."""
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                if f.name not in ("path", "nodes", "orgs")
                and isinstance(getattr(config, f.name), str | int | bool | None)}
    doc = {"cluster": settings,
           "orgs": [[o.id, o.name, o.role, o.sign_pk, o.box_pk] for o in config.orgs],
           "nodes": [[n.id, n.org, address_text(n.raft).lower(), address_text(n.http).lower(), n.node_pk, n.voter]
                     for n in config.nodes]}
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(CLUSTER_HASH_DOMAIN + canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Hashes:
    chain_id: str
    genesis_hash: str
    cluster_hash: str

    def lines(self) -> str:
        return f"chain_id      {self.chain_id}\ngenesis_hash  {self.genesis_hash}\ncluster_hash  {self.cluster_hash}"

    def to_json(self) -> dict[str, str]:
        return {"chain_id": self.chain_id, "genesis_hash": self.genesis_hash, "cluster_hash": self.cluster_hash}


@dataclass(frozen=True, slots=True)
class BuildResult:
    cluster_file: Path
    genesis_file: Path
    hashes: Hashes
    records: tuple[PublicRecord, ...]


def build(ceremony_dir: Path, chain_id: str, out_dir: Path, genesis_time_ms: int | None = None) -> BuildResult:
    """ODIR/cluster.toml and ODIR/genesis.json from the ceremony's records (sorted by org id), refusing to write
    over either; the same inputs give the same bytes."""
    records = sorted(load_ceremony(ceremony_dir), key=lambda r: r.id)
    if not records:
        raise CeremonyError(f"{ceremony_path(ceremony_dir)}: no org yet: `ecert genesis add-org FILE... "
                            f"--ceremony {ceremony_dir}` first")
    _field(v_id, "--chain-id", chain_id, "genesis build")
    when = time.time_ns() // 1_000_000 if genesis_time_ms is None else genesis_time_ms
    out_dir = Path(out_dir)
    cluster_path, genesis_path = out_dir / "cluster.toml", out_dir / "genesis.json"
    for p in (cluster_path, genesis_path):
        if p.exists():
            raise CeremonyError(f"{p} exists: never overwritten (a genesis, once sent, is the chain's history); "
                                "choose another --out or remove it")
    body = cluster_text(records, chain_id)
    try:
        config = parse_config(tomllib.loads(body), cluster_path.resolve())
        doc = genesis_doc(config, when)
    except (ClusterConfigError, GenesisFileError) as exc:
        raise CeremonyError(str(exc)) from None
    genesis_json = json.dumps(doc, indent=2) + "\n"
    hashes = Hashes(chain_id, genesis_hash(genesis_from_json(doc)).hex(), cluster_hash(config))
    header = [f"Written by `ecert genesis build` from the public files of {len(records)} organisations "
              f"({PUBLIC_FORMAT}): every member's copy is this file.",
              f"genesis.json beside it: genesis hash {hashes.genesis_hash}; cluster hash {hashes.cluster_hash}.",
              "Check on each host: ecert genesis hash --config cluster.toml (both must be the same everywhere).",
              f"A host may add to its own [[nodes]] entry what concerns it alone ({_HOST_LOCAL_NODE_FIELDS}):",
              "those are not in the cluster hash."]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_new(genesis_path, genesis_json)
    try:
        _write_new(cluster_path, cluster_text(records, chain_id, header))
    except BaseException:
        genesis_path.unlink()  # both or neither
        raise
    return BuildResult(cluster_path, genesis_path, hashes, tuple(records))


# --- hash ----------------------------------------------------------------------------------------------------------


def disagreements(config: ClusterConfig, doc: GenesisDoc) -> list[str]:
    """Where the cluster file says otherwise than genesis.json: an org's name, role or keys (those written in
    the file), a node's org, addresses or key. Nodes that joined after genesis are not compared."""
    out = []
    if doc.chain_id != config.chain_id:
        out.append(f"chain_id: genesis.json {doc.chain_id!r}, cluster file {config.chain_id!r}")
    genesis_orgs = {o.id: o for o in doc.orgs}
    for o in config.orgs:
        g = genesis_orgs.pop(o.id, None)
        if g is None:
            out.append(f"org {o.id} is in the cluster file, not in genesis.json")
            continue
        pairs = [("name", o.name, g.name), ("role", o.role, g.role), ("sign_pk", o.sign_pk, g.sign_pk),
                 ("box_pk", o.box_pk, g.box_pk)]
        out += [f"org {o.id} {field}: genesis.json {theirs!r}, cluster file {ours!r}"
                for field, ours, theirs in pairs if ours is not None and ours != theirs]
    out += [f"org {org_id} is in genesis.json, not in the cluster file" for org_id in genesis_orgs]
    genesis_nodes = {n.id: n for n in doc.nodes}
    for n in config.nodes:
        gn = genesis_nodes.get(n.id)
        if gn is None:
            continue
        pairs = [("org", n.org, gn.org), ("raft", address_text(n.raft).lower(), gn.raft.lower()),
                 ("http", address_text(n.http).lower(), gn.http.lower()), ("node_pk", n.node_pk, gn.node_pk)]
        out += [f"node {n.id} {field}: genesis.json {theirs!r}, cluster file {ours!r}"
                for field, ours, theirs in pairs if ours is not None and ours != theirs]
    return out


def hashes_of(config: ClusterConfig) -> Hashes:
    """The two hashes of a host's files, once genesis.json and the cluster file are found to agree."""
    path = config.genesis_path
    try:
        doc = genesis_from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise CeremonyError(f"{path}: no such file (the ceremony's genesis.json goes beside the cluster file)"
                            ) from None
    except (OSError, UnicodeDecodeError, ValueError, GenesisError) as exc:
        raise CeremonyError(f"{path}: {exc}") from None
    differ = disagreements(config, doc)
    if differ:
        raise CeremonyError(f"{path} and {config.path} disagree: {'; '.join(differ)}")
    return Hashes(doc.chain_id, genesis_hash(doc).hex(), cluster_hash(config))


# --- the commands (registered in node/client/cli.py) ---------------------------------------------------------------


class CommandContext(Protocol):
    """What a command needs of node/client/cli.py's Ctx."""

    @property
    def args(self) -> argparse.Namespace: ...

    @property
    def json(self) -> bool: ...

    @property
    def cluster(self) -> ClusterConfig: ...


def _emit(doc: Any) -> None:
    print(json.dumps(doc), flush=True)


def _refused(exc: CeremonyError) -> int:
    err.print(f"[red]error:[/red] {exc}", markup=True)
    return EXIT_USAGE


def cmd_keygen(ctx: CommandContext) -> int:
    a = ctx.args
    try:
        result = keygen(Path(a.dir), a.org, a.node_id, name=a.name, role=a.role, raft=a.raft, http=a.http,
                        voter=not a.learner, https_hosts=a.https_host or ())
    except CeremonyError as exc:
        return _refused(exc)
    r = result.record
    if ctx.json:
        _emit({"command": "keygen", "org": r.id, "node": r.node.id, "role": r.role, "voter": r.node.voter,
               "sign_pk": r.sign_pk, "box_pk": r.box_pk, "node_pk": r.node.node_pk,
               "keys_created": [str(p) for p in result.created], "keys_kept": [str(p) for p in result.kept],
               "public_file": str(result.public_file), "https": [str(p) for p in result.https]})
        return EXIT_OK
    for p in result.created:
        out.print(f"  + {p} (0600)", markup=False)
    for p in result.kept:
        out.print(f"  = {p} (kept: a key file is never overwritten)", markup=False)
    out.print(f"org {r.id} ({r.name}, {r.role})\n  sign_pk  {r.sign_pk}\n  box_pk   {r.box_pk}\n"
              f"node {r.node.id} ({'voter' if r.node.voter else 'learner'}), raft {r.node.raft}, http {r.node.http}\n"
              f"  node_pk  {r.node.node_pk}\n"
              f"fingerprints: {r.fingerprints()}", markup=False)
    state = "written" if result.public_file_changed else "unchanged"
    out.print(f"public file {result.public_file} ({state}): send it to the ceremony's coordinator and read the "
              f"fingerprints to them over another channel. {result.public_file.parent / 'keys'} stays on this "
              "host: copy it nowhere but to an offline backup.", markup=False)
    for p in result.https:
        out.print(f"  + {p}", markup=False)
    if result.https:
        out.print("HTTPS for the client API: set https_cert / https_key in this node's [[nodes]] entry (paths "
                  "relative to the cluster file) and give clients the certificate as its https_ca.", markup=False)
    return EXIT_OK


def cmd_genesis_add_org(ctx: CommandContext) -> int:
    a = ctx.args
    try:
        result = add_orgs(Path(a.ceremony), [Path(f) for f in a.files])
    except CeremonyError as exc:
        return _refused(exc)
    if ctx.json:
        _emit({"command": "genesis add-org", "ceremony": str(ceremony_path(Path(a.ceremony))),
               "added": [r.to_json() for r in result.added], "unchanged": [r.id for r in result.unchanged],
               "orgs": result.total})
        return EXIT_OK
    for r in result.added:
        out.print(f"  + {r.id} ({r.role}, node {r.node.id} {'voter' if r.node.voter else 'learner'}): "
                  f"{r.fingerprints()}", markup=False)
    for r in result.unchanged:
        out.print(f"  = {r.id}: already in the ceremony, the same record", markup=False)
    out.print(f"{ceremony_path(Path(a.ceremony))}: {result.total} orgs. Compare each fingerprint with the one its "
              "organisation read to you.", markup=False)
    return EXIT_OK


def cmd_genesis_build(ctx: CommandContext) -> int:
    a = ctx.args
    try:
        result = build(Path(a.ceremony), a.chain_id, Path(a.out), a.genesis_time)
    except CeremonyError as exc:
        return _refused(exc)
    if ctx.json:
        _emit({"command": "genesis build", "cluster": str(result.cluster_file), "genesis": str(result.genesis_file),
               "orgs": [r.id for r in result.records], **result.hashes.to_json()})
        return EXIT_OK
    out.print(f"wrote {result.genesis_file} and {result.cluster_file} ({len(result.records)} orgs: "
              f"{', '.join(r.id for r in result.records)})", markup=False)
    print(result.hashes.lines(), flush=True)
    out.print("Send both files to every organisation; each puts them beside its keys/ and runs `ecert genesis hash "
              "--config cluster.toml`: every host must print these two hashes before anyone starts a node.",
              markup=False)
    return EXIT_OK


def cmd_genesis_hash(ctx: CommandContext) -> int:
    try:
        hashes = hashes_of(ctx.cluster)
    except CeremonyError as exc:
        return _refused(exc)
    if ctx.json:
        _emit(hashes.to_json())
    else:
        print(hashes.lines(), flush=True)
    return EXIT_OK
