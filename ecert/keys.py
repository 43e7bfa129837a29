"""Organisation keys: one Ed25519 seed per org gives its signing key and its X25519 box key.

The box key is derived from the Ed25519 key with libsodium's ed25519 -> curve25519 conversion, so `keys/<org>.key`
(64 hex characters of seed, CONTRACT §2) is the only secret an org keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import nacl.utils
from nacl.public import PrivateKey
from nacl.signing import SigningKey

SEED_BYTES = 32


@dataclass(frozen=True, slots=True)
class OrgKeys:
    seed: bytes
    sign_pk: str  # hex Ed25519 public key
    box_pk: str  # hex X25519 public key

    @property
    def signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    @property
    def box_private_key(self) -> PrivateKey:
        return self.signing_key.to_curve25519_private_key()


def org_keys_from_seed(seed: bytes) -> OrgKeys:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    sk = SigningKey(seed)
    return OrgKeys(seed=seed, sign_pk=sk.verify_key.encode().hex(),
                   box_pk=sk.verify_key.to_curve25519_public_key().encode().hex())


def parse_seed_hex(text: str) -> bytes:
    """The content of a `keys/<org>.key` file -> 32-byte seed (raises ValueError)."""
    seed = bytes.fromhex(text.strip())
    if len(seed) != SEED_BYTES:
        raise ValueError("a key file holds exactly 64 hex characters")
    return seed


def new_seed() -> bytes:
    return nacl.utils.random(SEED_BYTES)
