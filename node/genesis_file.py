"""genesis.json beside cluster.toml: the cluster file's orgs at height 0, with the public keys of keys/<org>.key.

Written by `ecert init` and by local clusters (node/ops/localnet.py), each only if missing and never overwritten:
every node of a chain must start from the same document, and a second `init` must not fork the chain.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.config import ClusterConfig
from node.keys import ensure_cluster_keys, org_public_keys


class GenesisFileError(Exception):
    """The genesis.json already there is not for this cluster file's chain (or not readable as one)."""


@dataclass(frozen=True, slots=True)
class InitResult:
    keys_created: tuple[Path, ...]
    genesis_created: bool
    """False if a genesis.json was already there (or another `ecert init` wrote it first)."""


def genesis_doc(cluster: ClusterConfig, genesis_time_ms: int) -> dict[str, Any]:
    orgs = []
    for org in cluster.orgs:
        sign_pk, box_pk = org_public_keys(cluster, org.id)
        orgs.append({"id": org.id, "name": org.name, "role": org.role, "sign_pk": sign_pk, "box_pk": box_pk})
    return {"chain_id": cluster.chain_id, "genesis_time": genesis_time_ms, "orgs": orgs}


def write_genesis(cluster: ClusterConfig, path: Path, genesis_time_ms: int | None = None) -> bool:
    """genesis.json for the cluster's orgs, dated now unless `genesis_time_ms` says otherwise. Returns False if
    the file existed (it is kept)."""
    doc = genesis_doc(cluster, time.time_ns() // 1_000_000 if genesis_time_ms is None else genesis_time_ms)
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


def init_cluster_files(cluster: ClusterConfig, genesis_time_ms: int | None = None) -> InitResult:
    """Every missing key file, then genesis.json if missing (it reads the org keys just made). An existing
    genesis.json is kept if it is for this chain; raises GenesisFileError if not."""
    created = tuple(ensure_cluster_keys(cluster))
    path = cluster.genesis_path
    if path.exists():
        check_genesis_chain(cluster, path)
        return InitResult(created, genesis_created=False)
    return InitResult(created, write_genesis(cluster, path, genesis_time_ms))
