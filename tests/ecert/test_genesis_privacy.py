"""Genesis documents, admission prechecks, sealed trade documents, and the invariant checker itself."""

from __future__ import annotations

import copy

import pytest

from consensus.invariant import InvariantViolation
from ecert import codes, privacy
from ecert import state as s
from ecert.admission import precheck
from ecert.errors import GenesisError, TxRejected
from ecert.genesis import genesis_from_json, genesis_hash, genesis_to_json, genesis_writes
from ecert.invariants import check_invariants
from ecert.keys import org_keys_from_seed, parse_seed_hex
from tests.ecert.world import CHAIN, World


def test_genesis_json_roundtrip_hash_and_writes() -> None:
    w = World(legacy=True)
    js = genesis_to_json(w.genesis)
    doc = genesis_from_json(copy.deepcopy(js))
    assert doc == w.genesis
    assert genesis_hash(doc) == genesis_hash(w.genesis) and len(genesis_hash(doc)) == 32
    js2 = copy.deepcopy(js)
    js2["genesis_time"] += 1
    assert genesis_hash(genesis_from_json(js2)) != genesis_hash(doc)
    writes = genesis_writes(doc)
    assert writes == sorted(writes) and len(writes) == len(doc.orgs)
    org = s.decode_record(s.Org, dict(writes)[s.org_key("boc")])
    assert (org.status, org.role, org.sign_pk) == ("active", "bank", w.keys["boc"].sign_pk)


@pytest.mark.parametrize("mutate", [
    lambda js: js.pop("orgs"),
    lambda js: js.update(extra=1),
    lambda js: js.update(chain_id=""),
    lambda js: js.update(genesis_time=1.5),
    lambda js: js.update(orgs=[]),
    lambda js: js["orgs"].append(dict(js["orgs"][0])),
    lambda js: js["orgs"][0].update(role="king"),
    lambda js: js["orgs"][0].update(sign_pk="zz"),
    lambda js: js["orgs"][0].update(id="a/b"),
    lambda js: js["orgs"][0].pop("box_pk"),
    lambda js: js.update(orgs=[o for o in js["orgs"] if o["role"] != "bank"]),
])
def test_genesis_rejects(mutate: object) -> None:
    js = genesis_to_json(World().genesis)
    mutate(js)  # type: ignore[operator]
    with pytest.raises(GenesisError):
        genesis_from_json(js)


def test_admission_precheck() -> None:
    w = World()
    raw = w.raw("boc", "org.freeze", {"org_id": "tier1"}, nonce=5)
    assert len(precheck(w.view, raw, CHAIN)) == 64
    with pytest.raises(TxRejected) as info:
        precheck(w.view, raw, "other")
    assert info.value.code == codes.WRONG_CHAIN_ID
    w.apply(raw)
    with pytest.raises(TxRejected) as info:
        precheck(w.view, raw, CHAIN)
    assert info.value.code == codes.NONCE_REUSED
    with pytest.raises(TxRejected) as info:
        precheck(w.view, w.raw("tier1", "trade.confirm", {"doc_id": "x"}), CHAIN)
    assert info.value.code == codes.SIGNER_NOT_ACTIVE


def test_sealed_documents_for_each_party() -> None:
    w = World()
    plaintext = b'{"invoice": "INV-9", "lines": [["bolts", 1200]]}'
    sealed = privacy.seal_document(plaintext, {o: w.keys[o].box_pk for o in ("tier1", "geely", "boc")})
    assert sealed.doc_hash == privacy.doc_hash_of(plaintext)
    w.ok("tier1", "trade.anchor", {"doc_id": "INV-9", "kind": "invoice", "doc_hash": sealed.doc_hash,
                                   "counterparty": "geely", "amount": 1200, "ciphertext": dict(sealed.ciphertexts)})
    doc = s.get_doc(w.view, "INV-9")
    assert doc is not None
    stored = dict(doc.ciphertext)
    assert plaintext not in b"".join(stored.values())
    for org in ("tier1", "geely", "boc"):
        assert privacy.open_document_with_seed(stored[org], w.keys[org].seed, doc.doc_hash) == plaintext
    with pytest.raises(privacy.DocumentError):
        privacy.open_document_with_seed(stored["boc"], w.keys["tier2"].seed, doc.doc_hash)
    with pytest.raises(privacy.DocumentError):
        privacy.open_document_with_seed(stored["boc"], w.keys["boc"].seed, "00" * 32)
    with pytest.raises(ValueError):
        privacy.seal_document(plaintext, {})


def test_keys() -> None:
    k = org_keys_from_seed(parse_seed_hex("01" * 32 + "\n"))
    assert len(k.sign_pk) == 64 and len(k.box_pk) == 64
    assert bytes(k.box_private_key.public_key).hex() == k.box_pk
    with pytest.raises(ValueError):
        parse_seed_hex("01" * 31)


def _broken(w: World, cert_id: str, **changes: object) -> None:
    c = s.get_cert(w.view, cert_id)
    assert c is not None
    w.view.put(s.cert_key(cert_id), s.encode_record(c._replace(**changes)))  # type: ignore[arg-type]


@pytest.mark.parametrize("breakage", ["amount", "status", "holder", "credit", "backed", "children"])
def test_invariants_catch_corruption(breakage: str) -> None:
    w = World()
    root = w.funded(1000)
    kids = w.ok("tier1", "ecert.split", {"cert_id": root, "amounts": [400, 600]})["certs"]
    check_invariants(w.view)
    if breakage == "amount":
        _broken(w, kids[0], amount=401)
    elif breakage == "status":
        _broken(w, kids[0], status="settled")  # settled without restoring credit
    elif breakage == "holder":
        _broken(w, kids[0], holder="tier2")  # holdings index not moved
    elif breakage == "credit":
        line = s.get_credit(w.view, "boc", "geely")
        assert line is not None
        s.put_credit(w.view, line._replace(used=line.used - 1))
    elif breakage == "backed":
        inv = s.get_cert(w.view, root).invoices[0][0]  # type: ignore[union-attr]
        doc = s.get_doc(w.view, inv)
        assert doc is not None
        s.put_doc(w.view, doc._replace(backed=doc.backed - 1))
    else:
        _broken(w, kids[0], status="split", children=(kids[1],))
    with pytest.raises(InvariantViolation):
        check_invariants(w.view)
