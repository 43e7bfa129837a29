"""The genesis document: the chain id, the genesis time, and the organisations and nodes that exist at height 0.

`genesis.json` (beside cluster.toml) reads `{"chain_id", "genesis_time", "orgs": [{"id", "name", "role",
"sign_pk", "box_pk"}], "nodes": [{"id", "org", "raft", "http", "node_pk", "voter"}]}`. Every node derives the
same `genesis_hash` (sha256 of a canonical msgpack encoding) and the same `genesis_writes` (the orgs, all
`active`; one membership record per node, `voter` or `learner`), which the ledger commits as the state before
block 1.

`nodes` is optional so that genesis files written before membership governance still load, with the same hash
as before. Such a chain has an empty membership: the state does not govern its nodes (Raft keeps the cluster
file's configuration) and every `member.propose` is refused, as no org runs a voting node in state.

`params` is optional too: `{"<name>": value}` for the chain parameters of `ecert.state.ChainParams` (a bool or
an integer >= 0, by the default's type). A parameter not named keeps its default; a document without `params`
hashes and writes exactly as before, so older chains keep their hash and replay identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ecert import membership, state
from ecert.errors import GenesisError, TxRejected
from ecert.tx import ID_LEN_MAX, ROLES, TIME_MS_MAX, v_address, v_hex32, v_id, v_name

GENESIS_ORGS_MAX = 1024
GENESIS_NODES_MAX = membership.MEMBERS_MAX
_DOC_FIELDS_REQUIRED = frozenset({"chain_id", "genesis_time", "orgs"})
_DOC_FIELDS = _DOC_FIELDS_REQUIRED | {"nodes", "params"}
_ORG_FIELDS = frozenset({"id", "name", "role", "sign_pk", "box_pk"})
_NODE_FIELDS = frozenset({"id", "org", "raft", "http", "node_pk", "voter"})


@dataclass(frozen=True, slots=True)
class GenesisOrg:
    id: str
    name: str
    role: str  # bank | core | supplier
    sign_pk: str  # hex Ed25519 public key
    box_pk: str  # hex X25519 public key


@dataclass(frozen=True, slots=True)
class GenesisNode:
    id: str
    org: str  # a genesis org: the one that runs the node
    raft: str  # "host:port" (an IPv6 host in brackets)
    http: str  # "host:port"
    node_pk: str  # hex Ed25519 public key of the node's transport key
    voter: bool  # False: a learner (the regulator's node always is)


@dataclass(frozen=True, slots=True)
class GenesisDoc:
    chain_id: str
    genesis_time: int  # ms since the Unix epoch
    orgs: tuple[GenesisOrg, ...]
    nodes: tuple[GenesisNode, ...] = ()
    """Empty for a genesis written before membership governance (see the module docstring)."""
    params: tuple[tuple[str, bool | int], ...] = ()
    """The chain parameters genesis names, sorted by name; empty: every default (see the module docstring)."""

    def __post_init__(self) -> None:
        _validate(self)
        _validate_nodes(self)
        _validate_params(self.params)


def _validate_params(params: tuple[tuple[str, bool | int], ...]) -> None:
    defaults = state.DEFAULT_CHAIN_PARAMS._asdict()
    names = [name for name, _ in params]
    if names != sorted(set(names)):
        raise GenesisError("params must be sorted by name, each named once")
    for name, value in params:
        if name not in defaults:
            raise GenesisError(f"params: unknown chain parameter {name!r}; known: {', '.join(defaults)}")
        if type(defaults[name]) is bool and type(value) is not bool:
            raise GenesisError(f"params: {name} must be true or false")
        if type(defaults[name]) is int and (type(value) is not int or not 0 <= value <= TIME_MS_MAX):
            raise GenesisError(f"params: {name} must be an integer in 0..{TIME_MS_MAX}")


def chain_params_of(doc: GenesisDoc) -> state.ChainParams:
    """The parameters the chain of this genesis runs with: the defaults, overridden by what it names."""
    named: dict[str, Any] = dict(doc.params)
    values: list[Any] = [named.get(name, default) for name, default in state.DEFAULT_CHAIN_PARAMS._asdict().items()]
    return state.ChainParams(*values)


def _validate(doc: GenesisDoc) -> None:
    if type(doc.chain_id) is not str or not 0 < len(doc.chain_id) <= ID_LEN_MAX:
        raise GenesisError(f"chain_id must be a string of 1..{ID_LEN_MAX} characters")
    if type(doc.genesis_time) is not int or not 0 <= doc.genesis_time <= TIME_MS_MAX:
        raise GenesisError("genesis_time must be an integer number of ms since the epoch")
    if not 0 < len(doc.orgs) <= GENESIS_ORGS_MAX:
        raise GenesisError(f"genesis needs 1..{GENESIS_ORGS_MAX} orgs")
    seen: set[str] = set()
    for org in doc.orgs:
        try:
            v_id("id", org.id)
            v_name("name", org.name)
            v_hex32("sign_pk", org.sign_pk)
            v_hex32("box_pk", org.box_pk)
        except TxRejected as exc:
            raise GenesisError(f"org {org.id!r}: {exc.message}") from None
        if org.role not in ROLES:
            raise GenesisError(f"org {org.id!r}: role must be one of {', '.join(ROLES)}")
        if org.id in seen:
            raise GenesisError(f"org {org.id!r} listed twice")
        seen.add(org.id)
    if not any(org.role == "bank" for org in doc.orgs):
        raise GenesisError("genesis needs at least one bank (only a bank can approve new orgs)")


def _validate_nodes(doc: GenesisDoc) -> None:
    if len(doc.nodes) > GENESIS_NODES_MAX:
        raise GenesisError(f"genesis lists {len(doc.nodes)} nodes, at most {GENESIS_NODES_MAX}")
    roles = {org.id: org.role for org in doc.orgs}
    ids: set[str] = set()
    keys: set[str] = set()
    addresses: set[str] = set()
    for node in doc.nodes:
        try:
            v_id("id", node.id)
            v_id("org", node.org)
            v_address("raft", node.raft)
            v_address("http", node.http)
            v_hex32("node_pk", node.node_pk)
        except TxRejected as exc:
            raise GenesisError(f"node {node.id!r}: {exc.message}") from None
        if type(node.voter) is not bool:
            raise GenesisError(f"node {node.id!r}: voter must be true or false")
        if node.org not in roles:
            raise GenesisError(f"node {node.id!r}: org {node.org!r} is not a genesis org")
        if node.voter and roles[node.org] == membership.REGULATOR_ROLE:
            raise GenesisError(f"node {node.id!r}: the regulator's node must be a learner (voter: false)")
        if node.id in ids:
            raise GenesisError(f"node {node.id!r} listed twice")
        if node.node_pk in keys:
            raise GenesisError(f"node {node.id!r}: node_pk is another node's")
        for address in (node.raft, node.http):
            if address.lower() in addresses:
                raise GenesisError(f"node {node.id!r}: address {address} is used twice")
            addresses.add(address.lower())
        ids.add(node.id)
        keys.add(node.node_pk)
    if doc.nodes and not any(node.voter for node in doc.nodes):
        raise GenesisError("genesis nodes need at least one voter")


def genesis_from_json(obj: Any) -> GenesisDoc:
    """Parse the genesis.json object (raises GenesisError on anything malformed)."""
    try:
        return _parse_genesis(obj)
    except TypeError as exc:
        # The compiled build (setup.py) checks the records' field types as they are built, before the checks
        # that name the field: a field of the wrong type is still the GenesisError it is.
        raise GenesisError(f"a genesis field has the wrong type: {exc}") from None


def _parse_genesis(obj: Any) -> GenesisDoc:
    keys = set(obj) if isinstance(obj, Mapping) else None
    if keys is None or not _DOC_FIELDS_REQUIRED <= keys <= _DOC_FIELDS:
        raise GenesisError('genesis must be an object with exactly "chain_id", "genesis_time", "orgs" and '
                           'optionally "nodes" and "params"')
    orgs, nodes, params = obj["orgs"], obj.get("nodes", []), obj.get("params", {})
    if not isinstance(params, Mapping):
        raise GenesisError('"params" must be an object')
    if not isinstance(orgs, list):
        raise GenesisError('"orgs" must be a list')
    if not isinstance(nodes, list):
        raise GenesisError('"nodes" must be a list')
    parsed = []
    for item in orgs:
        if not isinstance(item, Mapping) or set(item) != _ORG_FIELDS:
            raise GenesisError('each org must have exactly "id", "name", "role", "sign_pk", "box_pk"')
        parsed.append(GenesisOrg(item["id"], item["name"], item["role"], item["sign_pk"], item["box_pk"]))
    parsed_nodes = []
    for item in nodes:
        if not isinstance(item, Mapping) or set(item) != _NODE_FIELDS:
            raise GenesisError('each node must have exactly "id", "org", "raft", "http", "node_pk", "voter"')
        parsed_nodes.append(GenesisNode(item["id"], item["org"], item["raft"], item["http"], item["node_pk"],
                                        item["voter"]))
    return GenesisDoc(obj["chain_id"], obj["genesis_time"], tuple(parsed), tuple(parsed_nodes),
                      tuple(sorted(params.items())))



def genesis_to_json(doc: GenesisDoc) -> dict[str, Any]:
    out: dict[str, Any] = {
        "chain_id": doc.chain_id,
        "genesis_time": doc.genesis_time,
        "orgs": [{"id": o.id, "name": o.name, "role": o.role, "sign_pk": o.sign_pk, "box_pk": o.box_pk}
                 for o in doc.orgs],
    }
    if doc.nodes:
        out["nodes"] = [{"id": n.id, "org": n.org, "raft": n.raft, "http": n.http, "node_pk": n.node_pk,
                         "voter": n.voter} for n in doc.nodes]
    if doc.params:
        out["params"] = dict(doc.params)
    return out


def genesis_hash(doc: GenesisDoc) -> bytes:
    """32-byte sha256 of the canonical encoding (orgs and nodes in the order listed: order is part of the
    document). A document without nodes hashes exactly as before nodes existed, so older chains keep their hash;
    one with nodes is tagged v2 and covers every field of every node; one with params is tagged v3 and covers
    them too (by name, sorted)."""
    orgs = [[o.id, o.name, o.role, o.sign_pk, o.box_pk] for o in doc.orgs]
    if doc.params:
        nodes_v3 = [[n.id, n.org, n.raft, n.http, n.node_pk, n.voter] for n in doc.nodes]
        params = [[name, value] for name, value in doc.params]
        canonical_v3: list[Any] = [doc.chain_id, doc.genesis_time, orgs, nodes_v3, params]
        return hashlib.sha256(b"ecert-genesis-v3" + msgpack.packb(canonical_v3, use_bin_type=True)).digest()
    if not doc.nodes:
        canonical: list[Any] = [doc.chain_id, doc.genesis_time, orgs]
        return hashlib.sha256(b"ecert-genesis-v1" + msgpack.packb(canonical, use_bin_type=True)).digest()
    nodes = [[n.id, n.org, n.raft, n.http, n.node_pk, n.voter] for n in doc.nodes]
    canonical = [doc.chain_id, doc.genesis_time, orgs, nodes]
    return hashlib.sha256(b"ecert-genesis-v2" + msgpack.packb(canonical, use_bin_type=True)).digest()


def genesis_writes(doc: GenesisDoc) -> list[tuple[bytes, bytes]]:
    """The state at height 0, sorted by key: every genesis org, `active`; every genesis node, `voter` or
    `learner`, with the genesis voter count (the floor of later removals, docs/RULES.md)."""
    writes = []
    for o in doc.orgs:
        org = state.Org(id=o.id, name=o.name, role=o.role, sign_pk=o.sign_pk, box_pk=o.box_pk,
                        status=state.ORG_ACTIVE, registered_at=doc.genesis_time, updated_at=doc.genesis_time)
        writes.append((state.org_key(o.id), state.encode_record(org)))
    for n in doc.nodes:
        member = membership.NodeMember(id=n.id, org=n.org, raft=n.raft, http=n.http, node_pk=n.node_pk,
                                       status=membership.VOTER if n.voter else membership.LEARNER,
                                       since=doc.genesis_time)
        writes.append((membership.member_key(n.id), membership.encode_member(member)))
    if doc.nodes:
        voters = sum(1 for n in doc.nodes if n.voter)
        writes.append((membership.GENESIS_VOTERS_KEY, str(voters).encode()))
    if doc.params:  # none named: no record, every default (older chains' state stays byte for byte the same)
        writes.append((state.CHAIN_PARAMS_KEY, state.encode_record(chain_params_of(doc))))
    return sorted(writes)
