"""Key files beside cluster.toml: `keys/<org_id>.key` (org signing key) and `keys/node-<node_id>.key`
(node transport key). Each holds an Ed25519 seed as 64 hex characters and a newline. An org key rotation
(node/client/rotate.py) also leaves `keys/<org_id>.key.next` (the new key until the chain holds it) and
`keys/<org_id>.key.old-<height>` (the key rotated out at that height).

Which of these files may sit beside a node is node/custody.py's business: its own org's and its own only, except
in a local demo.

A key file is created only if missing (O_EXCL, mode 0600) and never overwritten: losing an org key would orphan
its certificates. The org's X25519 box key (for sealed trade documents) is derived from its Ed25519 key with
libsodium's ed25519→curve25519 conversion, so one file serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nacl import bindings
from nacl.signing import SigningKey, VerifyKey

from node.config import ClusterConfig

SEED_BYTES = 32


class KeyFileError(ValueError):
    """A key file exists but is malformed (never silently replaced), or is missing where it must exist."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    seed: bytes
    """32-byte Ed25519 seed."""

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @property
    def sign_pk(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def sign_pk_hex(self) -> str:
        return self.sign_pk.hex()

    @property
    def box_pk(self) -> bytes:
        return bindings.crypto_sign_ed25519_pk_to_curve25519(self.sign_pk)

    @property
    def box_pk_hex(self) -> str:
        return self.box_pk.hex()

    @property
    def box_sk(self) -> bytes:
        sk64 = bindings.crypto_sign_seed_keypair(self.seed)[1]
        return bindings.crypto_sign_ed25519_sk_to_curve25519(sk64)

    def sign(self, message: bytes) -> bytes:
        """64-byte detached Ed25519 signature."""
        return self.signing_key.sign(message).signature


def org_key_path(keys_dir: Path, org_id: str) -> Path:
    return Path(keys_dir) / f"{org_id}.key"


def node_key_path(keys_dir: Path, node_id: str) -> Path:
    return Path(keys_dir) / f"node-{node_id}.key"


def org_next_key_path(keys_dir: Path, org_id: str) -> Path:
    """Where `ecert org rotate-key` keeps the new key until the chain holds it (node/client/rotate.py)."""
    return Path(keys_dir) / f"{org_id}.key.next"


def org_old_key_paths(keys_dir: Path, org_id: str) -> list[tuple[int, Path]]:
    """The keys an org rotated out, (height of the rotation, file), oldest first (node/client/rotate.py names
    them `ORG.key.old-<height>`)."""
    prefix = f"{org_id}.key.old-"
    out = []
    for path in Path(keys_dir).glob(f"{org_id}.key.old-*"):
        height = path.name[len(prefix):]
        if height.isdigit():
            out.append((int(height), path))
    return sorted(out)


def fingerprint(public_key: bytes | str) -> str:
    """How messages name a public key: the first 16 hex characters of it, as genesis.json and `ecert keys show`
    spell it in full (so a reader can find it there with a search)."""
    text = public_key.hex() if isinstance(public_key, bytes) else public_key
    return f"{text[:16]}..."


def parse_seed(text: str, where: str = "key") -> bytes:
    value = text.strip()
    if len(value) != 2 * SEED_BYTES:
        raise KeyFileError(f"{where}: expected {2 * SEED_BYTES} hex characters, got {len(value)}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{where}: not hex") from None


def load_key(path: Path) -> KeyPair:
    """Read an existing key file; raises FileNotFoundError if missing, KeyFileError if malformed."""
    return KeyPair(parse_seed(Path(path).read_text(encoding="ascii"), str(path)))


def load_or_create_key(path: Path) -> tuple[KeyPair, bool]:
    """The key at `path`, generated if the file does not exist. Returns (key, created). Never overwrites."""
    path = Path(path)
    try:
        return load_key(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new keys/ is the owner's only
    seed = os.urandom(SEED_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Someone else created it between our read and our create: theirs wins.
        return load_key(path), False
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(seed.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return KeyPair(seed), True


def load_org_key(keys_dir: Path, org_id: str) -> KeyPair:
    return load_key(org_key_path(keys_dir, org_id))


def load_node_key(keys_dir: Path, node_id: str) -> KeyPair:
    return load_key(node_key_path(keys_dir, node_id))


def ensure_cluster_keys(config: ClusterConfig) -> list[Path]:
    """Create every missing org and node key of a ClusterConfig; returns the files created."""
    created: list[Path] = []
    for org in config.orgs:
        p = org_key_path(config.keys_dir, org.id)
        if load_or_create_key(p)[1]:
            created.append(p)
    for n in config.nodes:
        p = node_key_path(config.keys_dir, n.id)
        if load_or_create_key(p)[1]:
            created.append(p)
    return created


def node_public_key(config: ClusterConfig, node_id: str) -> bytes:
    """The node's transport public key: `node_pk` from cluster.toml, else derived from keys/node-<id>.key."""
    spec = config.node(node_id)
    if spec.node_pk is not None:
        return bytes.fromhex(spec.node_pk)
    return load_node_key(config.keys_dir, node_id).sign_pk


def org_public_keys(config: ClusterConfig, org_id: str) -> tuple[str, str]:
    """(sign_pk hex, box_pk hex) of an org: from cluster.toml if given, else from keys/<org>.key."""
    org = config.org(org_id)
    if org.sign_pk is not None:
        box = org.box_pk or bindings.crypto_sign_ed25519_pk_to_curve25519(bytes.fromhex(org.sign_pk)).hex()
        return org.sign_pk, box
    kp = load_org_key(config.keys_dir, org_id)
    return kp.sign_pk_hex, org.box_pk or kp.box_pk_hex


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if `signature` is a valid Ed25519 signature of `message` by `public_key`."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except Exception:  # nacl raises BadSignatureError, or ValueError/TypeError on bad sizes
        return False
    return True
