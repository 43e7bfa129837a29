"""genesis.json beside cluster.toml: the cluster file's orgs and nodes at height 0, with their public keys.

Orgs carry the keys of keys/<org>.key (or `sign_pk`/`box_pk` in the cluster file); nodes (the genesis
membership, CONTRACT §6) carry their addresses, the transport key of keys/node-<id>.key (or `node_pk` in the
cluster file) and whether they vote. Written by `ecert init` and by local clusters (node/ops/localnet.py), each
only if missing and never overwritten: every node of a chain must start from the same document, and a second
`init` must not fork the chain. Those two make every private key in one keys/ and mark it keys/LOCAL-DEMO
(node/custody.py); a real consortium's genesis comes from the ceremony (`ecert genesis build`,
node/client/ceremony.py), which has public keys only, all written in the cluster file.

A node checks at start that the cluster file agrees with the membership in state about itself
(`check_own_membership`): the org that runs it and its key never change, so a mismatch is a wrong file or key.

Chain parameters (`"params"`, ecert/genesis.py, docs/RULES.md §9-10): a new chain's genesis names every one, with
the issue-14 rules that a chain without `params` leaves off turned on: a transfer draws on confirmed trade
documents, an invoice belongs to a confirmed contract, an approval carries KYC evidence, and the settlement terms
(maximum term, acceptance window, grace period, penalty rate) hold (`NEW_CHAIN_PARAMS`, what the ceremony writes). The local demo's chain (`ecert init`, local clusters: `LOCAL_DEMO_PARAMS`) differs in one
value: a grace period of 5 s instead of 10 days, so that the demo can show a default within its run. Documents
written before `params` existed keep loading, and keep their hash: nothing here rewrites a genesis.json.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecert import state as ecert_state
from ecert.errors import GenesisError
from ecert.genesis import genesis_from_json
from ecert.membership import REMOVED, NodeMember
from node.config import Address, ClusterConfig, NodeSpec
from node.custody import local_demo_marker, write_local_demo_marker
from node.keys import ensure_cluster_keys, node_key_path, node_public_key, org_key_path, org_public_keys

ChainParamValues = dict[str, bool | int]

NEW_CHAIN_PARAMS: ChainParamValues = ecert_state.NEW_CHAIN_PARAMS._asdict()
"""Every chain parameter, named: ecert.state.NEW_CHAIN_PARAMS, every rule of issue 14 on (a genesis without
`params` keeps them off, for chains made before them)."""
LOCAL_DEMO_GRACE_PERIOD_MS = 5_000
LOCAL_DEMO_PARAMS: ChainParamValues = {**NEW_CHAIN_PARAMS, "grace_period_ms": LOCAL_DEMO_GRACE_PERIOD_MS}
"""The local demo's chain: as a new chain, but a default may be declared 5 s after maturity (not 10 days)."""


class GenesisFileError(Exception):
    """The genesis.json already there is not for this cluster file's chain (or not readable as one)."""


@dataclass(frozen=True, slots=True)
class InitResult:
    keys_created: tuple[Path, ...]
    genesis_created: bool
    """False if a genesis.json was already there (or another `ecert init` wrote it first)."""
    local_demo: Path | None = None
    """keys/LOCAL-DEMO, which says that this keys/ holds every org's key (written if missing)."""


def address_text(address: Address) -> str:
    """`host:port` as the chain writes it (ecert.tx.v_address): an IPv6 host in brackets."""
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"


def genesis_doc(cluster: ClusterConfig, genesis_time_ms: int,
                params: ChainParamValues | None = None) -> dict[str, Any]:
    """The genesis document of a cluster file: every [[orgs]] entry and every [[nodes]] entry (the regulator's
    node a learner: node/config.py refuses it as a voter), and the chain parameters (default
    `NEW_CHAIN_PARAMS`; `{}` writes none: every default, the rules of issue 14's items 3-4 off). Raises
    GenesisFileError if ecert/genesis.py would refuse it, so a bad document is never written."""
    params = NEW_CHAIN_PARAMS if params is None else params
    orgs = []
    for org in cluster.orgs:
        sign_pk, box_pk = org_public_keys(cluster, org.id)
        orgs.append({"id": org.id, "name": org.name, "role": org.role, "sign_pk": sign_pk, "box_pk": box_pk})
    nodes = [{"id": n.id, "org": n.org, "raft": address_text(n.raft), "http": address_text(n.http),
              "node_pk": node_public_key(cluster, n.id).hex(), "voter": n.voter} for n in cluster.nodes]
    doc: dict[str, Any] = {"chain_id": cluster.chain_id, "genesis_time": genesis_time_ms, "orgs": orgs,
                           "nodes": nodes}
    if params:
        doc["params"] = dict(sorted(params.items()))
    try:
        genesis_from_json(doc)
    except GenesisError as exc:
        raise GenesisFileError(f"{cluster.path} cannot make a genesis document: {exc}") from None
    return doc


def write_genesis(cluster: ClusterConfig, path: Path, genesis_time_ms: int | None = None,
                  params: ChainParamValues | None = None) -> bool:
    """genesis.json for the cluster's orgs and nodes (and `params`, as genesis_doc), dated now unless
    `genesis_time_ms` says otherwise. Returns False if the file existed (it is kept)."""
    doc = genesis_doc(cluster, time.time_ns() // 1_000_000 if genesis_time_ms is None else genesis_time_ms, params)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    # Never overwrite: if another `ecert init` won the race, keep its file.
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def check_genesis_chain(cluster: ClusterConfig, path: Path) -> None:
    """Raises GenesisFileError unless the genesis.json at `path` is for the cluster file's chain."""
    try:
        existing = json.loads(path.read_text())
    except ValueError as e:
        raise GenesisFileError(f"{path} is not JSON ({e}); remove it (and the data dirs) to start a new chain"
                               ) from None
    chain_id = existing.get("chain_id") if isinstance(existing, dict) else None
    if chain_id != cluster.chain_id:
        raise GenesisFileError(f"{path} is for chain {chain_id!r}, cluster file says {cluster.chain_id!r}; "
                               "remove it (and the data dirs) to start a new chain")


def check_own_membership(spec: NodeSpec, node_pk: bytes, member: NodeMember | None) -> str | None:
    """Compare what the cluster file (and keys/node-<id>.key) say of this node with its record in the state
    membership. Raises GenesisFileError if the org or the key differ (neither ever changes for a node id: the
    file or the key is wrong). Returns a warning for what the node can still run with: no record yet (a node
    waiting to be admitted by `member.propose`), a removed node, or addresses that differ from the record (peers
    dial the record's), else None."""
    if member is None:
        return (f"node {spec.id} is not in the chain's membership (yet): peers refuse it until a member.propose "
                "add_learner for it is approved")
    where = "genesis.json" if member.proposal_id is None else f"membership proposal {member.proposal_id}"
    if member.org != spec.org:
        raise GenesisFileError(f"the cluster file says node {spec.id} is run by org {spec.org!r}, {where} says "
                               f"{member.org!r}: fix nodes.org (a node's org never changes)")
    if member.node_pk != node_pk.hex():
        raise GenesisFileError(f"node {spec.id}'s transport key {node_pk.hex()[:16]}... is not the one {where} "
                               f"lists ({member.node_pk[:16]}...): this is not that node's keys/node-{spec.id}.key "
                               "(or nodes.node_pk)")
    if member.status == REMOVED:
        return f"node {spec.id} was removed from the cluster ({member.proposal_id}): it serves no client reads"
    ours = (address_text(spec.raft), address_text(spec.http))
    if tuple(a.lower() for a in ours) != (member.raft.lower(), member.http.lower()):
        return (f"node {spec.id} listens on raft {ours[0]}, http {ours[1]}, but {where} lists raft {member.raft}, "
                f"http {member.http}: peers dial those")
    return None


def ceremony_keys_missing(cluster: ClusterConfig) -> list[str]:
    """The public keys the cluster file lists (`sign_pk`, `node_pk`) whose private key is not in keys/: a cluster
    file from the genesis ceremony, whose keys live on their owners' hosts. Making keys for those here would only
    make keys the chain does not know."""
    out = [f"orgs {o.id} sign_pk" for o in cluster.orgs
           if o.sign_pk is not None and not org_key_path(cluster.keys_dir, o.id).exists()]
    return out + [f"nodes {n.id} node_pk" for n in cluster.nodes
                  if n.node_pk is not None and not node_key_path(cluster.keys_dir, n.id).exists()]


def init_cluster_files(cluster: ClusterConfig, genesis_time_ms: int | None = None,
                       params: ChainParamValues | None = None) -> InitResult:
    """The local demo's files: every missing key file, keys/LOCAL-DEMO (node/custody.py: this keys/ holds every
    org's key, which nodes accept only on loopback addresses), then genesis.json if missing (it reads the org
    keys just made), with `params` (default `LOCAL_DEMO_PARAMS`). An existing genesis.json is kept if it is for
    this chain, whatever its params; raises GenesisFileError if not, or if the cluster file lists public keys
    whose private keys are elsewhere (a ceremony's cluster file)."""
    elsewhere = ceremony_keys_missing(cluster)
    if elsewhere:
        more = f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else ""
        raise GenesisFileError(
            f"{cluster.path} lists public keys whose private keys are not in {cluster.keys_dir} "
            f"({', '.join(elsewhere[:3])}{more}): it comes from a genesis ceremony, and each org's keys stay on its "
            "own host. `ecert init` makes every key of a local demo; here each org runs `ecert keygen` on its host")
    created = tuple(ensure_cluster_keys(cluster))
    write_local_demo_marker(cluster.keys_dir)
    marker = local_demo_marker(cluster.keys_dir)
    path = cluster.genesis_path
    if path.exists():
        check_genesis_chain(cluster, path)
        return InitResult(created, genesis_created=False, local_demo=marker)
    genesis_params = LOCAL_DEMO_PARAMS if params is None else params
    return InitResult(created, write_genesis(cluster, path, genesis_time_ms, genesis_params), local_demo=marker)
