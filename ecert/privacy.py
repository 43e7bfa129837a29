"""Private trade documents: the chain stores only sealed-box ciphertexts and the document hash.

A trade document (contract, invoice, delivery note, payment record) is sealed separately for each party that
may read it: the two parties, the financing bank and the regulator (`CIPHERTEXTS_MAX` = 4). A sealed box (X25519 + XSalsa20-
Poly1305, libsodium `crypto_box_seal`) is anonymous and needs only the recipient's public box key, which every
org registers on chain (`box_pk`). The document is bound to `doc_hash = sha256(plaintext)`, which is anchored in
clear: a reader who decrypts checks the hash, so no party can hand the others a different plaintext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from ecert.errors import EcertError
from ecert.keys import org_keys_from_seed
from ecert.tx import CIPHERTEXTS_MAX


class DocumentError(EcertError):
    """A ciphertext that does not open with this key, or whose plaintext does not match the anchored hash."""


@dataclass(frozen=True, slots=True)
class SealedDocument:
    doc_hash: str  # hex sha256 of the plaintext
    ciphertexts: Mapping[str, bytes]  # org id -> sealed box, the `ciphertext` field of trade.anchor


def doc_hash_of(plaintext: bytes) -> str:
    return hashlib.sha256(plaintext).hexdigest()


def seal_document(plaintext: bytes, recipients: Mapping[str, str]) -> SealedDocument:
    """Seal `plaintext` for each recipient (org id -> hex box public key)."""
    if not 0 < len(recipients) <= CIPHERTEXTS_MAX:
        raise ValueError(f"a document is sealed for 1..{CIPHERTEXTS_MAX} parties")
    ciphertexts = {org: SealedBox(PublicKey(bytes.fromhex(box_pk))).encrypt(plaintext)
                   for org, box_pk in sorted(recipients.items())}
    return SealedDocument(doc_hash=doc_hash_of(plaintext), ciphertexts=ciphertexts)


def open_document(ciphertext: bytes, box_sk: PrivateKey, doc_hash: str) -> bytes:
    """Decrypt one party's ciphertext and check it against the anchored hash."""
    try:
        plaintext = SealedBox(box_sk).decrypt(ciphertext)
    except CryptoError:
        raise DocumentError("ciphertext does not open with this key") from None
    if doc_hash_of(plaintext) != doc_hash:
        raise DocumentError("plaintext does not match the anchored doc_hash")
    return plaintext


def open_document_with_seed(ciphertext: bytes, seed: bytes, doc_hash: str) -> bytes:
    """Same, for an org holding only its Ed25519 seed (`keys/<org>.key`)."""
    return open_document(ciphertext, org_keys_from_seed(seed).box_private_key, doc_hash)
