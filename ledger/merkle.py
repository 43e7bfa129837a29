"""Binary Merkle tree over a block's transactions (the header's `tx_root`), with inclusion proofs.

Shape (as in RFC 6962 / Certificate Transparency, which fixes both classic pitfalls):
- Domain separation: a leaf hashes as sha256(0x00 || leaf), an inner node as sha256(0x01 || left || right), so a
  leaf can never pass for an inner node (no second-preimage trick with a 64-byte leaf).
- Odd count: a level with an odd number of nodes promotes its last node unchanged to the next level (it is NOT
  paired with a copy of itself, so [a, b, c] and [a, b, c, c] have different roots: no CVE-2012-2459 style
  duplicate-tx malleability). This yields exactly RFC 6962's tree (left subtree = largest power of two < n).
- Empty tree: sha256(b"").

For transactions, each leaf is sha256(raw tx): `tx_root(txs) = merkle_root([sha256(tx) for tx in txs])`.
A proof is the list of sibling hashes from the leaf up; the verifier needs the leaf's index and the leaf count to
know on which levels the node was promoted (no sibling). As with RFC 6962's tree size, the count is not inside
the root: a proof shows the leaf is in the tree, and its index is authenticated only for a leaf count the verifier
trusts (the length of the block's tx list).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.invariant import require

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_BYTES = 32


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2 == 1:
        paired.append(level[-1])  # promoted unchanged
    return paired


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    level = [leaf_hash(leaf) for leaf in leaves]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def tx_root(txs: Sequence[bytes]) -> bytes:
    """The header's tx_root: the Merkle root over sha256 of each raw tx."""
    return merkle_root([hashlib.sha256(tx).digest() for tx in txs])


@dataclass(frozen=True, slots=True)
class MerkleProof:
    index: int
    """Position of the proven leaf."""
    count: int
    """Number of leaves in the tree."""
    siblings: tuple[bytes, ...]
    """Sibling hashes from the leaf's level upwards (levels where the node was promoted have none)."""


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    require(0 <= index < len(leaves), f"proof index {index} outside 0..{len(leaves) - 1}")
    level = [leaf_hash(leaf) for leaf in leaves]
    siblings: list[bytes] = []
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
        level = _next_level(level)
        i //= 2
    return MerkleProof(index, len(leaves), tuple(siblings))


def verify_proof(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True iff `leaf` is at `proof.index` of a `proof.count`-leaf tree whose root is `root`."""
    if not (0 <= proof.index < proof.count):
        return False
    if any(len(s) != HASH_BYTES for s in proof.siblings):
        return False
    h = leaf_hash(leaf)
    i, width, used = proof.index, proof.count, 0
    while width > 1:
        sibling = i ^ 1
        if sibling < width:
            if used >= len(proof.siblings):
                return False
            s = proof.siblings[used]
            used += 1
            h = node_hash(h, s) if i % 2 == 0 else node_hash(s, h)
        i //= 2
        width = (width + 1) // 2
    return used == len(proof.siblings) and h == root


def tx_proof(txs: Sequence[bytes], index: int) -> MerkleProof:
    """Proof that txs[index] is in a block whose header carries `tx_root(txs)`."""
    return merkle_proof([hashlib.sha256(tx).digest() for tx in txs], index)


def verify_tx_proof(root: bytes, raw_tx: bytes, proof: MerkleProof) -> bool:
    return verify_proof(root, hashlib.sha256(raw_tx).digest(), proof)
