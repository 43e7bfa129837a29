"""tx_root Merkle tree: RFC 6962 shape, domain separation, odd counts, inclusion proofs."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    MerkleProof,
    leaf_hash,
    merkle_proof,
    merkle_root,
    node_hash,
    tx_root,
    verify_proof,
)


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, written recursively as the RFC states it (the reference)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def leaves_of(n: int) -> list[bytes]:
    return [f"tx-{i}".encode() for i in range(n)]


def test_root_equals_rfc6962_for_every_count_up_to_70() -> None:
    for n in range(71):
        assert merkle_root(leaves_of(n)) == rfc6962_root(leaves_of(n)), n


def test_empty_and_single() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle_root([b"a"]) == leaf_hash(b"a") != hashlib.sha256(b"a").digest()


def test_odd_count_is_not_padded_by_duplicating_the_last_leaf() -> None:
    # Bitcoin's duplicate-last rule makes [a, b, c] and [a, b, c, c] collide (CVE-2012-2459); ours must not.
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])
    assert merkle_root([b"a"]) != merkle_root([b"a", b"a"])


def test_a_leaf_cannot_pass_for_an_inner_node() -> None:
    two = [b"a", b"b"]
    forged_leaf = leaf_hash(b"a") + leaf_hash(b"b")  # the bytes an inner node hashes, offered as one leaf
    assert merkle_root([forged_leaf]) != merkle_root(two)
    assert node_hash(leaf_hash(b"a"), leaf_hash(b"b")) == merkle_root(two)


def test_tx_root_hashes_each_raw_tx_first() -> None:
    txs = [b"x", b"yy"]
    assert tx_root(txs) == merkle_root([hashlib.sha256(t).digest() for t in txs])
    assert tx_root(txs) != tx_root(list(reversed(txs)))


def test_every_proof_verifies_for_counts_up_to_40() -> None:
    for n in range(1, 41):
        leaves = leaves_of(n)
        root = merkle_root(leaves)
        for i in range(n):
            proof = merkle_proof(leaves, i)
            assert verify_proof(root, leaves[i], proof), (n, i)
            assert not verify_proof(root, leaves[(i + 1) % n] + b"!", proof)


def test_tampered_proofs_fail() -> None:
    leaves = leaves_of(13)
    root = merkle_root(leaves)
    proof = merkle_proof(leaves, 5)
    assert verify_proof(root, leaves[5], proof)
    assert not verify_proof(root, leaves[5], MerkleProof(4, 13, proof.siblings))  # wrong position
    last = merkle_proof(leaves, 12)  # promoted on two levels: its path depends on the count
    assert verify_proof(root, leaves[12], last)
    assert not verify_proof(root, leaves[12], MerkleProof(12, 14, last.siblings))  # wrong count
    assert not verify_proof(root, leaves[5], MerkleProof(5, 13, proof.siblings[:-1]))  # short
    assert not verify_proof(root, leaves[5], MerkleProof(5, 13, (*proof.siblings, b"\x00" * 32)))  # long
    flipped = (bytes([proof.siblings[0][0] ^ 1]) + proof.siblings[0][1:], *proof.siblings[1:])
    assert not verify_proof(root, leaves[5], MerkleProof(5, 13, flipped))
    assert not verify_proof(root, leaves[5], MerkleProof(13, 13, proof.siblings))
    assert not verify_proof(root, leaves[5], MerkleProof(5, 13, (b"short", *proof.siblings[1:])))


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=60), st.data())
def test_proof_property(leaves: list[bytes], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert root == rfc6962_root(leaves)
    proof = merkle_proof(leaves, i)
    assert verify_proof(root, leaves[i], proof)
    other = data.draw(st.binary(max_size=8))
    if other != leaves[i]:
        assert not verify_proof(root, other, proof)


def test_tx_proofs_against_a_header_tx_root() -> None:
    from ledger.merkle import tx_proof, verify_tx_proof

    txs = [f"raw-{i}".encode() for i in range(9)]
    root = tx_root(txs)
    for i, tx in enumerate(txs):
        assert verify_tx_proof(root, tx, tx_proof(txs, i))
    assert not verify_tx_proof(root, b"raw-x", tx_proof(txs, 3))
