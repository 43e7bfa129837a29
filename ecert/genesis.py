"""The genesis document: the chain id, the genesis time and the organisations that exist at height 0.

`genesis.json` (beside cluster.toml) reads `{"chain_id", "genesis_time", "orgs": [{"id", "name", "role",
"sign_pk", "box_pk"}]}`. Every node derives the same `genesis_hash` (sha256 of a canonical msgpack encoding) and
the same `genesis_writes` (the orgs, all `active`), which the ledger commits as the state before block 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ecert import state
from ecert.errors import GenesisError, TxRejected
from ecert.tx import ID_LEN_MAX, ROLES, TIME_MS_MAX, v_hex32, v_id, v_name

GENESIS_ORGS_MAX = 1024


@dataclass(frozen=True, slots=True)
class GenesisOrg:
    id: str
    name: str
    role: str  # bank | core | supplier
    sign_pk: str  # hex Ed25519 public key
    box_pk: str  # hex X25519 public key


@dataclass(frozen=True, slots=True)
class GenesisDoc:
    chain_id: str
    genesis_time: int  # ms since the Unix epoch
    orgs: tuple[GenesisOrg, ...]

    def __post_init__(self) -> None:
        _validate(self)


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


def genesis_from_json(obj: Any) -> GenesisDoc:
    """Parse the genesis.json object (raises GenesisError on anything malformed)."""
    if not isinstance(obj, Mapping) or set(obj) != {"chain_id", "genesis_time", "orgs"}:
        raise GenesisError('genesis must be an object with exactly "chain_id", "genesis_time", "orgs"')
    orgs = obj["orgs"]
    if not isinstance(orgs, list):
        raise GenesisError('"orgs" must be a list')
    parsed = []
    for item in orgs:
        if not isinstance(item, Mapping) or set(item) != {"id", "name", "role", "sign_pk", "box_pk"}:
            raise GenesisError('each org must have exactly "id", "name", "role", "sign_pk", "box_pk"')
        parsed.append(GenesisOrg(item["id"], item["name"], item["role"], item["sign_pk"], item["box_pk"]))
    return GenesisDoc(obj["chain_id"], obj["genesis_time"], tuple(parsed))


def genesis_to_json(doc: GenesisDoc) -> dict[str, Any]:
    return {
        "chain_id": doc.chain_id,
        "genesis_time": doc.genesis_time,
        "orgs": [{"id": o.id, "name": o.name, "role": o.role, "sign_pk": o.sign_pk, "box_pk": o.box_pk}
                 for o in doc.orgs],
    }


def genesis_hash(doc: GenesisDoc) -> bytes:
    """32-byte sha256 of the canonical encoding (orgs in the order listed: order is part of the document)."""
    canonical = [doc.chain_id, doc.genesis_time, [[o.id, o.name, o.role, o.sign_pk, o.box_pk] for o in doc.orgs]]
    return hashlib.sha256(b"ecert-genesis-v1" + msgpack.packb(canonical, use_bin_type=True)).digest()


def genesis_writes(doc: GenesisDoc) -> list[tuple[bytes, bytes]]:
    """The state at height 0: every genesis org, `active`, sorted by key."""
    writes = []
    for o in doc.orgs:
        org = state.Org(id=o.id, name=o.name, role=o.role, sign_pk=o.sign_pk, box_pk=o.box_pk,
                        status=state.ORG_ACTIVE, registered_at=doc.genesis_time, updated_at=doc.genesis_time)
        writes.append((state.org_key(o.id), state.encode_record(org)))
    return sorted(writes)
