"""Replacing an org's key (`ecert org rotate-key ORG`, CONTRACT §6 "Keys") so that the key the chain holds is
never lost, whatever happens between sending the tx and its commit.

The files, in keys/ beside the cluster file:
- `ORG.key`: the current key; replaced only once the chain holds the new one;
- `ORG.key.next`: the new key (0600), written before anything is sent;
- `ORG.key.old-<height>`: the key rotated out at that height (0600), kept: txs and documents it signed or opened
  before stay verifiable by their owner.

Steps: (1) the new key is `ORG.key.next` if an earlier run left one (its tx may have committed, or may still),
else a fresh one written there; (2) if the chain already holds it, skip to (4); (3) `org.rotate_key` signed by
the current key, `proof` by the new one (ecert.tx.key_proof), sent with wait=commit; (4) once committed: the
current key is copied to `ORG.key.old-<height>` and `ORG.key.next` renamed over `ORG.key` (atomic). A rejected tx
deletes `ORG.key.next` only if this run made it; an unknown outcome keeps it: running the command again either
finishes the rotation or retries it with the same new key, so at most one new key is ever in play.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecert.tx import key_proof
from node.client.api import ApiError, Client, Signer, Unreachable
from node.keys import KeyPair, load_or_create_key, org_key_path

COMMITTED = "committed"
REJECTED = "rejected"
UNKNOWN = "unknown"
FINISHED = "finished"  # an earlier run's tx had committed: only the files were left to move
DRY_RUN = "dry_run"


class RotationError(Exception):
    """The key files are not as a rotation expects them (no current key, an old-key file in the way)."""


def next_key_path(keys_dir: Path, org_id: str) -> Path:
    return Path(keys_dir) / f"{org_id}.key.next"


def old_key_path(keys_dir: Path, org_id: str, height: int) -> Path:
    return Path(keys_dir) / f"{org_id}.key.old-{height}"


@dataclass(frozen=True, slots=True)
class Rotation:
    status: str  # committed | rejected | unknown | finished | dry_run
    org_id: str
    sign_pk: str  # the new key's, hex
    tx: Mapping[str, Any]  # the node's answer ({} when finished); the envelope as JSON for a dry run
    envelope: bytes = b""
    old_key: Path | None = None  # where the rotated-out key went
    next_key: Path | None = None  # the new key while it is not in place yet


def rotation_body(new_key: KeyPair, nonce: int | str) -> dict[str, object]:
    return {"sign_pk": new_key.sign_pk_hex, "box_pk": new_key.box_pk_hex, "proof": key_proof(new_key.seed, nonce)}


def chain_sign_pk(client: Client, org_id: str, signers: tuple[Signer, ...]) -> str | None:
    """The org's key on chain (its public profile), read signed by the first of `signers` the node accepts
    (before the rotation the current key, after it the new one); None if no answer says."""
    for signer in signers:
        try:
            doc = client.speaking_for(signer).get(f"/v1/orgs/{org_id}")
        except ApiError as e:
            if e.status == 401:
                continue
            return None
        except Unreachable:
            return None
        pk = doc.get("sign_pk") if isinstance(doc, dict) else None
        return pk if isinstance(pk, str) else None
    return None


def install(keys_dir: Path, org_id: str, height: int) -> Path:
    """Keep the current key as ORG.key.old-<height> (0600, never overwritten), then ORG.key.next -> ORG.key."""
    current, pending = org_key_path(keys_dir, org_id), next_key_path(keys_dir, org_id)
    old = old_key_path(keys_dir, org_id, height)
    text = current.read_text(encoding="ascii")
    try:
        fd = os.open(old, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if old.read_text(encoding="ascii") != text:
            raise RotationError(f"{old} exists and holds another key; move it away and run again") from None
    else:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    os.replace(pending, current)  # atomic: ORG.key is always one whole key, the old or the new
    dir_fd = os.open(keys_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return old


def rotate_key(client: Client, signer: Signer, keys_dir: Path, *, nonce: int | str | None = None,
               dry_run: bool = False) -> Rotation:
    """Rotate `signer`'s org key (see the module docstring). Raises RotationError, Unreachable, ApiError."""
    org_id = signer.org_id
    pending = next_key_path(keys_dir, org_id)
    if not org_key_path(keys_dir, org_id).exists():
        raise RotationError(f"no current key {org_key_path(keys_dir, org_id)}")
    left_over = pending.exists()
    new_key, _ = load_or_create_key(pending)
    new_signer = Signer(org_id, new_key, signer.chain_id)
    both = (signer, new_signer)

    def finish(status: str, tx: Mapping[str, Any], height: int | None) -> Rotation:
        if height is None:
            height = int(client.speaking_for(None).get("/v1/status").get("height") or 0)  # public
        return Rotation(status, org_id, new_key.sign_pk_hex, tx, old_key=install(keys_dir, org_id, height))

    if left_over and not dry_run and chain_sign_pk(client, org_id, both) == new_key.sign_pk_hex:
        return finish(FINISHED, {}, None)
    tx_nonce = signer.nonces() if nonce is None else nonce
    envelope = signer.sign("org.rotate_key", rotation_body(new_key, tx_nonce), tx_nonce)
    if dry_run:
        return Rotation(DRY_RUN, org_id, new_key.sign_pk_hex, {}, envelope, next_key=pending)
    doc = client.speaking_for(signer).submit(envelope)
    status = str(doc.get("status"))
    if status == COMMITTED:
        return finish(COMMITTED, doc, int(doc["height"]))
    if chain_sign_pk(client, org_id, both) == new_key.sign_pk_hex:
        return finish(FINISHED, doc, None)  # an earlier run's tx (same new key) won the race
    if status == REJECTED and not left_over:
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
        return Rotation(REJECTED, org_id, new_key.sign_pk_hex, doc)
    return Rotation(REJECTED if status == REJECTED else UNKNOWN, org_id, new_key.sign_pk_hex, doc,
                    next_key=pending)
