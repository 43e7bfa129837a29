"""Every rejection code in ecert/codes.py, produced by a real signed tx through the executor.

`CASES` maps each code to a scenario that must be rejected with exactly that code; the first test asserts the
set of codes exercised here equals the set in codes.py, so a new code without a test (or a dead code) fails.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ecert import codes
from ecert.keys import org_keys_from_seed
from ecert.tx import TX_BYTES_MAX, encode_envelope, sign_payload
from ledger.executor import TxOutcome
from tests.ecert.code_cases_access import ACCESS_CASES
from tests.ecert.test_disputes import DISPUTE_CASES
from tests.ecert.test_governance import GOVERNANCE_CASES
from tests.ecert.test_settlement import SETTLEMENT_CASES
from tests.ecert.test_trade_background import TRADE_CASES
from tests.ecert.world import CHAIN, DAY, World


def _register(w: World, org: str, role: str = "supplier") -> None:
    k = w.key(org)
    w.ok(org, "org.register", {"org_id": org, "name": org, "role": role, "sign_pk": k.sign_pk, "box_pk": k.box_pk})


def c_tx_too_large(w: World) -> TxOutcome:
    return w.apply(b"\x00" * (TX_BYTES_MAX + 1))


def c_malformed_envelope(w: World) -> TxOutcome:
    return w.apply(b"\xc1")


def c_malformed_payload(w: World) -> TxOutcome:
    return w.apply(encode_envelope(b"\x92\x01", "boc", b"\x00" * 64))


def c_unknown_field(w: World) -> TxOutcome:
    return w.run("boc", "org.approve", {"org_id": "tier1", "colour": "red"})


def c_missing_field(w: World) -> TxOutcome:
    return w.run("boc", "org.approve", {})


def c_bad_field(w: World) -> TxOutcome:
    return w.run("boc", "org.approve", {"org_id": 5})


def c_bad_amount(w: World) -> TxOutcome:
    return w.run("tier1", "trade.anchor", {"doc_id": "D1", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "geely", "amount": 0})


def c_wrong_chain_id(w: World) -> TxOutcome:
    return w.run("boc", "org.approve", {"org_id": "tier1"}, chain_id="other-chain")


def c_signer_mismatch(w: World) -> TxOutcome:
    payload = {"chain_id": CHAIN, "type": "org.approve", "signer": "boc", "nonce": 1, "body": {"org_id": "x"}}
    return w.apply(sign_payload(w.key("boc").seed, payload, signer="icbc"))


def c_unknown_tx_type(w: World) -> TxOutcome:
    return w.run("boc", "ecert.burn", {"cert_id": "x"})


def c_unknown_signer(w: World) -> TxOutcome:
    return w.run("ghost", "org.approve", {"org_id": "tier1"})


def c_signer_not_active(w: World) -> TxOutcome:
    _register(w, "newco")
    return w.run("newco", "trade.confirm", {"doc_id": "D1"})


def c_bad_signature(w: World) -> TxOutcome:
    return w.run("boc", "org.freeze", {"org_id": "tier1"}, seed=w.key("geely").seed)


def c_nonce_reused(w: World) -> TxOutcome:
    w.ok("boc", "org.freeze", {"org_id": "tier1"}, nonce="n-1")
    return w.run("boc", "org.unfreeze", {"org_id": "tier1"}, nonce="n-1")


def c_role_not_allowed(w: World) -> TxOutcome:
    return w.run("geely", "credit.grant", {"core": "geely", "limit": 5, "expires_at": w.now + DAY})


def c_unknown_org(w: World) -> TxOutcome:
    return w.run("boc", "org.approve", {"org_id": "ghost"})


def c_org_exists(w: World) -> TxOutcome:
    k = org_keys_from_seed(b"\x07" * 32)
    return w.run("tier1", "org.register", {"org_id": "tier1", "name": "again", "role": "supplier",
                                            "sign_pk": k.sign_pk, "box_pk": k.box_pk})


def c_org_not_active(w: World) -> TxOutcome:
    _register(w, "newco")
    return w.run("tier1", "trade.anchor", {"doc_id": "D1", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "newco", "amount": 5})


def c_not_a_core(w: World) -> TxOutcome:
    return w.run("boc", "credit.grant", {"core": "tier1", "limit": 5, "expires_at": w.now + DAY})


def c_not_a_bank(w: World) -> TxOutcome:
    inv = w.invoice(100)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "tier2",
                                          "invoice_ids": [inv]})


def c_same_party(w: World) -> TxOutcome:
    return w.run("tier1", "trade.anchor", {"doc_id": "D1", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "tier1", "amount": 5})


def c_invalid_status_transition(w: World) -> TxOutcome:
    cert = w.funded()
    return w.run("tier1", "ecert.accept", {"cert_id": cert})


def c_limit_below_used(w: World) -> TxOutcome:
    w.funded(1000)
    return w.run("boc", "credit.grant", {"core": "geely", "limit": 999, "expires_at": w.now + DAY})


def c_expiry_not_in_future(w: World) -> TxOutcome:
    return w.run("boc", "credit.grant", {"core": "geely", "limit": 5, "expires_at": w.now})


def c_no_credit_line(w: World) -> TxOutcome:
    inv = w.invoice(100)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_credit_line_expired(w: World) -> TxOutcome:
    w.grant(expires_at=w.now + 10)
    inv = w.invoice(100)
    w.now += 10
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_credit_limit_exceeded(w: World) -> TxOutcome:
    w.grant(limit=99)
    inv = w.invoice(100)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_doc_exists(w: World) -> TxOutcome:
    body = {"doc_id": "D1", "kind": "contract", "doc_hash": "00" * 32, "counterparty": "geely", "amount": 5}
    w.ok("tier1", "trade.anchor", body)
    return w.run("geely", "trade.anchor", {**body, "counterparty": "tier1"})


def c_unknown_doc(w: World) -> TxOutcome:
    return w.run("geely", "trade.confirm", {"doc_id": "nope"})


def c_not_counterparty(w: World) -> TxOutcome:
    inv = w.invoice(100, confirm=False)
    return w.run("tier1", "trade.confirm", {"doc_id": inv})


def c_bad_ciphertext_recipient(w: World) -> TxOutcome:
    return w.run("tier1", "trade.anchor", {"doc_id": "D1", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "geely", "amount": 5,
                                            "ciphertext": {"tier2": b"\x01" * 60}})


def c_not_an_invoice(w: World) -> TxOutcome:
    w.grant()
    doc = w.invoice(100, kind="contract")
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [doc]})


def c_doc_not_confirmed(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(100, confirm=False)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_invoice_parties_mismatch(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(100, seller="tier2")
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_invoice_headroom_exceeded(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(99)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_unknown_cert(w: World) -> TxOutcome:
    return w.run("tier1", "ecert.accept", {"cert_id": "EC00"})


def c_not_holder(w: World) -> TxOutcome:
    cert = w.funded()
    return w.run("tier2", "ecert.split", {"cert_id": cert, "amounts": [1, 999_999]})


def c_not_debtor(w: World) -> TxOutcome:
    cert = w.funded()
    w.now += 91 * DAY
    return w.run("byd", "ecert.settle", {"cert_id": cert})


def c_maturity_not_in_future(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(100)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_cert_matured(w: World) -> TxOutcome:
    cert = w.funded(maturity=w.now + DAY)
    w.now += DAY
    return w.run("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})


def c_not_matured(w: World) -> TxOutcome:
    cert = w.funded()
    return w.run("geely", "ecert.settle", {"cert_id": cert})


def c_amounts_exceed_cert(w: World) -> TxOutcome:
    cert = w.funded(1000)
    return w.run("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 600},
                                                                      {"org": "tier3", "amount": 401}]})


def c_split_sum_mismatch(w: World) -> TxOutcome:
    cert = w.funded(1000)
    return w.run("tier1", "ecert.split", {"cert_id": cert, "amounts": [500, 499]})


def c_duplicate_recipient(w: World) -> TxOutcome:
    cert = w.funded(1000)
    return w.run("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1},
                                                                      {"org": "tier2", "amount": 2}]})


def c_not_finance_bank(w: World) -> TxOutcome:
    cert = w.funded(1000)
    w.ok("tier1", "finance.request", {"cert_id": cert, "bank": "boc"})
    return w.run("icbc", "finance.approve", {"cert_id": cert, "discount_bps": 300})


def c_discount_too_large(w: World) -> TxOutcome:
    cert = w.funded(1000, maturity=w.now + 360 * DAY)
    w.ok("tier1", "finance.request", {"cert_id": cert, "bank": "boc"})
    return w.run("boc", "finance.approve", {"cert_id": cert, "discount_bps": 10_000})


CASES: dict[str, Callable[[World], TxOutcome]] = {
    name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_") and callable(fn)
}
CASES.update(GOVERNANCE_CASES)  # membership governance: each case builds its own five-org World
CASES.update(ACCESS_CASES)  # the regulator, key rotation and lineage depth
CASES.update(SETTLEMENT_CASES)  # payment, default, recourse, financing limits, acceptance (test_settlement.py)
CASES.update(TRADE_CASES)  # trade background, invoices under contracts, KYC (tests/ecert/test_trade_background.py)
CASES.update(DISPUTE_CASES)  # disputes and complaints (tests/ecert/test_disputes.py)


def test_every_code_has_a_case() -> None:
    assert set(CASES) == set(codes.ALL_CODES)


@pytest.mark.parametrize("code", sorted(codes.ALL_CODES))
def test_rejection_code(code: str) -> None:
    w = World()
    outcome = CASES[code](w)
    assert outcome.status == "rejected"
    assert outcome.error_code == code, outcome.error_message
    assert outcome.error_message


def test_rules_doc_explains_every_code() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "RULES.md").read_text()
    missing = sorted(code for code in codes.ALL_CODES if f"`{code}`" not in doc)
    assert missing == []
