"""The regulator's rules, org.rotate_key, and rejection messages that name no other org's data (CONTRACT §6)."""

from __future__ import annotations

from typing import Any

import pytest

from ecert import codes
from ecert import state as s
from ecert.admission import precheck
from ecert.errors import TxRejected
from ecert.genesis import GenesisDoc, GenesisOrg
from ecert.keys import org_keys_from_seed
from ecert.rules import REGULATOR_TX_TYPES
from ecert.tx import key_proof, key_proof_message
from ledger.executor import BlockContext
from ledger.state_view import OverlayView
from tests.ecert.world import CHAIN, DAY, T0, World

NEW = org_keys_from_seed(b"\x42" * 32)


# --- the regulator -----------------------------------------------------------------------------------------------
def test_genesis_admits_a_regulator() -> None:
    w = World(regulator=True)
    org = s.get_org(w.view, "pbc")
    assert org is not None and (org.role, org.status) == ("regulator", "active")
    k = w.key("pbc")
    GenesisDoc(CHAIN, T0, (GenesisOrg("boc", "B", "bank", k.sign_pk, k.box_pk),
                           GenesisOrg("pbc", "P", "regulator", k.sign_pk, k.box_pk)))


def test_register_claiming_regulator_is_refused() -> None:
    w = World(regulator=True)
    k = w.key("newreg")
    w.fail(codes.REGULATOR_GENESIS_ONLY, "newreg", "org.register",
           {"org_id": "newreg", "name": "R", "role": "regulator", "sign_pk": k.sign_pk, "box_pk": k.box_pk})
    assert s.get_org(w.view, "newreg") is None


@pytest.mark.parametrize("kind", ["org.approve", "org.freeze", "org.unfreeze"])
@pytest.mark.parametrize("bank", ["boc", "icbc"])
def test_no_tx_changes_the_regulators_status(kind: str, bank: str) -> None:
    w = World(regulator=True)
    w.fail(codes.REGULATOR_STATUS_FIXED, bank, kind, {"org_id": "pbc"})
    org = s.get_org(w.view, "pbc")
    assert org is not None and org.status == "active"


def test_the_regulator_freezes_and_unfreezes_beside_a_bank() -> None:
    w = World(regulator=True)
    assert w.ok("pbc", "org.freeze", {"org_id": "tier1", "reason": "inquiry"})["status"] == "frozen"
    assert w.ok("pbc", "org.unfreeze", {"org_id": "tier1"})["status"] == "active"
    assert w.ok("boc", "org.freeze", {"org_id": "tier1"})["status"] == "frozen"
    assert w.ok("pbc", "org.unfreeze", {"org_id": "tier1"})["status"] == "active"  # after a bank froze it
    assert w.ok("pbc", "org.freeze", {"org_id": "boc"})["status"] == "frozen"  # banks too
    w.fail(codes.SAME_PARTY, "pbc", "org.freeze", {"org_id": "pbc"})


def _bodies(w: World) -> dict[str, dict[str, Any]]:
    k = w.key("newco")
    return {
        "org.approve": {"org_id": "tier1"},
        "credit.grant": {"core": "geely", "limit": 5, "expires_at": w.now + DAY},
        "trade.anchor": {"doc_id": "D1", "kind": "invoice", "doc_hash": "00" * 32, "counterparty": "geely",
                         "amount": 5},
        "trade.confirm": {"doc_id": "D1"},
        "ecert.issue": {"to": "tier1", "amount": 5, "maturity": w.now + DAY, "bank": "boc", "invoice_ids": ["D1"]},
        "ecert.accept": {"cert_id": "EC00"},
        "ecert.transfer": {"cert_id": "EC00", "to": [{"org": "tier1", "amount": 1}]},
        "ecert.split": {"cert_id": "EC00", "amounts": [1, 1]},
        "finance.request": {"cert_id": "EC00", "bank": "boc"},
        "finance.approve": {"cert_id": "EC00", "discount_bps": 1},
        "finance.decline": {"cert_id": "EC00"},
        "ecert.settle": {"cert_id": "EC00"},
        "org.register": {"org_id": "pbc", "name": "P", "role": "supplier", "sign_pk": k.sign_pk,
                         "box_pk": k.box_pk},
    }


@pytest.mark.parametrize("kind", sorted(_bodies(World())))
def test_the_regulator_signs_nothing_else(kind: str) -> None:
    w = World(regulator=True)
    assert kind not in REGULATOR_TX_TYPES
    w.fail(codes.ROLE_NOT_ALLOWED, "pbc", kind, _bodies(w)[kind])
    with pytest.raises(TxRejected) as err:  # admission refuses it too: it never reaches a block
        precheck(w.view, w.raw("pbc", kind, _bodies(w)[kind]), CHAIN)
    assert err.value.code == codes.ROLE_NOT_ALLOWED


def test_the_regulator_takes_no_part_in_trade() -> None:
    w = World(regulator=True)
    w.grant()
    inv = w.invoice(100)
    w.fail(codes.REGULATOR_NOT_PARTY, "geely", "ecert.issue",
           {"to": "pbc", "amount": 100, "maturity": w.now + DAY, "bank": "boc", "invoice_ids": [inv]})
    cert = w.issue(100)
    w.fail(codes.REGULATOR_NOT_PARTY, "tier1", "ecert.transfer",
           {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}, {"org": "pbc", "amount": 1}]})
    w.fail(codes.REGULATOR_NOT_PARTY, "tier1", "trade.anchor",
           {"doc_id": "D9", "kind": "contract", "doc_hash": "00" * 32, "counterparty": "pbc", "amount": 5})
    w.fail(codes.NOT_A_BANK, "tier1", "finance.request", {"cert_id": cert, "bank": "pbc"})
    # ... but a document may be sealed for it
    w.ok("tier1", "trade.anchor", {"doc_id": "D9", "kind": "contract", "doc_hash": "00" * 32,
                                   "counterparty": "geely", "amount": 5, "ciphertext": {"pbc": b"\x01" * 60}})


# --- org.rotate_key ------------------------------------------------------------------------------------------------
def rotate_body(nonce: int | str, keys: Any = NEW, prover: Any = None) -> dict[str, Any]:
    return {"sign_pk": keys.sign_pk, "box_pk": keys.box_pk, "proof": key_proof((prover or keys).seed, nonce)}


def test_key_proof_message_is_the_msgpack_nonce() -> None:
    assert key_proof_message(7) == b"\x07"
    assert key_proof_message("n-7") == b"\xa3n-7"
    assert key_proof_message(1) != key_proof_message("1")


def test_rotate_key_replaces_the_keys_from_the_next_tx_on() -> None:
    w = World()
    old = w.key("tier1")
    old_raw = w.raw("tier1", "trade.anchor", {"doc_id": "D1", "kind": "contract", "doc_hash": "00" * 32,
                                              "counterparty": "geely", "amount": 5})
    precheck(w.view, old_raw, CHAIN)  # admitted (and its signature remembered) under the old key
    result = w.ok("tier1", "org.rotate_key", rotate_body(100), nonce=100)
    assert result == {"org_id": "tier1", "sign_pk": NEW.sign_pk, "box_pk": NEW.box_pk}
    org = s.get_org(w.view, "tier1")
    assert org is not None and (org.sign_pk, org.box_pk) == (NEW.sign_pk, NEW.box_pk)
    # queued before the rotation, applied after: refused
    assert w.apply(old_raw).error_code == codes.BAD_SIGNATURE
    with pytest.raises(TxRejected) as err:
        precheck(w.view, w.raw("tier1", "trade.confirm", {"doc_id": "x"}, seed=old.seed), CHAIN)
    assert err.value.code == codes.BAD_SIGNATURE
    w.keys["tier1"] = NEW
    w.ok("tier1", "trade.anchor", {"doc_id": "D2", "kind": "contract", "doc_hash": "00" * 32,
                                   "counterparty": "geely", "amount": 5})


def test_rotation_counts_within_its_own_block() -> None:
    w = World()
    rotate = w.raw("tier1", "org.rotate_key", rotate_body(100), nonce=100)
    old_signed = w.raw("tier1", "trade.anchor", {"doc_id": "D1", "kind": "contract", "doc_hash": "00" * 32,
                                                 "counterparty": "geely", "amount": 5})
    new_signed = w.raw("tier1", "trade.anchor", {"doc_id": "D2", "kind": "contract", "doc_hash": "00" * 32,
                                                 "counterparty": "geely", "amount": 5}, seed=NEW.seed)
    block = OverlayView(w.view)  # one block: each tx in its own overlay on top, kept if committed
    ctx = BlockContext(height=1, time=w.now, proposer="n1", chain_id=CHAIN)
    statuses = []
    for raw in (new_signed, rotate, old_signed, new_signed):
        tx_view = OverlayView(block)
        outcome = w.executor.execute(tx_view, raw, ctx)
        statuses.append(outcome.error_code or outcome.status)
        if outcome.status == "committed":
            for key, value in tx_view.changes().items():
                if value is None:
                    block.delete(key)
                else:
                    block.put(key, value)
    assert statuses == [codes.BAD_SIGNATURE, "committed", codes.BAD_SIGNATURE, "committed"]


@pytest.mark.parametrize(("nonce", "body"), [
    (5, rotate_body(5, prover=org_keys_from_seed(b"\x43" * 32))),  # signed by another key
    (5, rotate_body(6)),  # over another nonce
    ("1", rotate_body(1)),  # over the int 1, for the string nonce "1"
    (5, {**rotate_body(5), "sign_pk": "00" * 32}),  # not a key that verifies anything
])
def test_bad_key_proofs(nonce: int | str, body: dict[str, Any]) -> None:
    w = World()
    before = s.get_org(w.view, "tier1")
    w.fail(codes.BAD_KEY_PROOF, "tier1", "org.rotate_key", body, nonce=nonce)
    assert s.get_org(w.view, "tier1") == before


def test_rotate_key_body_is_strict() -> None:
    w = World()
    w.fail(codes.BAD_FIELD, "tier1", "org.rotate_key", {**rotate_body(5), "proof": b"\x00" * 63}, nonce=5)
    w.fail(codes.MISSING_FIELD, "tier1", "org.rotate_key", {"sign_pk": NEW.sign_pk, "box_pk": NEW.box_pk}, nonce=5)


def test_a_frozen_org_cannot_rotate_and_the_regulator_can() -> None:
    w = World(regulator=True)
    w.ok("boc", "org.freeze", {"org_id": "tier1"})
    w.fail(codes.SIGNER_NOT_ACTIVE, "tier1", "org.rotate_key", rotate_body(5), nonce=5)
    w.ok("pbc", "org.rotate_key", rotate_body(5), nonce=5)
    w.keys["pbc"] = NEW
    w.ok("pbc", "org.unfreeze", {"org_id": "tier1"})


# --- messages ------------------------------------------------------------------------------------------------------
def _message(w: World, code: str, signer: str, kind: str, body: dict[str, Any]) -> str:
    message = w.fail(code, signer, kind, body).error_message
    assert message is not None
    return message


def test_rejections_do_not_name_other_orgs_data() -> None:
    w = World()
    cert = w.funded(1000)  # held by tier1, debtor geely, bank boc
    msg = _message(w, codes.NOT_HOLDER, "tier2", "ecert.split", {"cert_id": cert, "amounts": [1, 999]})
    assert "tier1" not in msg and "not the holder" in msg
    msg = _message(w, codes.NOT_DEBTOR, "byd", "ecert.settle", {"cert_id": cert})
    assert "geely" not in msg and "not the debtor" in msg
    w.ok("tier1", "finance.request", {"cert_id": cert, "bank": "boc"})
    msg = _message(w, codes.NOT_FINANCE_BANK, "icbc", "finance.approve", {"cert_id": cert, "discount_bps": 1})
    assert "boc" not in msg and "tier1" not in msg
    w.ok("boc", "finance.decline", {"cert_id": cert})
    w.ok("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})
    msg = _message(w, codes.INVALID_STATUS_TRANSITION, "icbc", "finance.approve", {"cert_id": cert, "discount_bps": 1})
    assert "split" not in msg  # a bank never asked learns no status
    doc = w.invoice(50, seller="tier2", buyer="geely", confirm=False)
    msg = _message(w, codes.NOT_COUNTERPARTY, "tier3", "trade.confirm", {"doc_id": doc})
    assert "geely" not in msg
    w.grant(bank="icbc", core="byd")
    contract = w.invoice(50, seller="tier2", buyer="geely", kind="contract")
    msg = _message(w, codes.NOT_AN_INVOICE, "byd", "ecert.issue",
                   {"to": "tier3", "amount": 5, "maturity": w.now + DAY, "bank": "icbc", "invoice_ids": [contract]})
    assert "contract" not in msg
    invoice = w.invoice(50, seller="tier2", buyer="geely")
    msg = _message(w, codes.INVOICE_PARTIES_MISMATCH, "byd", "ecert.issue",
                   {"to": "tier3", "amount": 5, "maturity": w.now + DAY, "bank": "icbc", "invoice_ids": [invoice]})
    assert "tier2" not in msg and "geely" not in msg
