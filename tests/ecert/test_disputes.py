"""Disputes and complaints (ecert/disputes.py): every rule hit by a real signed tx, who may sign each kind, the
lock every moving rule checks, escalation by block time, and who may read them (ecert/access.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ecert import access, codes, disputes
from ecert import state as s
from ecert.admission import precheck
from ecert.errors import TxRejected
from ecert.rules import REGULATOR_TX_TYPES
from ledger.executor import TxOutcome
from tests.ecert.world import CHAIN, DAY, World

EVIDENCE = "e1" * 32
WINDOW = 10 * DAY  # dispute_resolution_ms and complaint_response_ms of these tests' chains
PARAMS = {"dispute_resolution_ms": WINDOW, "complaint_response_ms": WINDOW}


def world() -> World:
    return World(regulator=True, params=PARAMS)


def open_on_cert(w: World, cert_id: str, signer: str = "tier1", against: str = "geely") -> dict[str, Any]:
    return w.ok(signer, "dispute.open", {"cert_id": cert_id, "against": against, "reason": "short delivery",
                                         "evidence_hash": EVIDENCE})


def open_on_doc(w: World, doc_id: str, signer: str = "tier1", against: str = "geely") -> dict[str, Any]:
    return w.ok(signer, "dispute.open", {"doc_id": doc_id, "against": against, "reason": "wrong goods",
                                         "evidence_hash": EVIDENCE})


def file(w: World, signer: str = "tier1", against: str = "geely") -> str:
    result = w.ok(signer, "complaint.file", {"against": against, "subject": "late payment",
                                             "evidence_hash": EVIDENCE})
    complaint_id: str = result["complaint_id"]
    return complaint_id


def resolve_body(dispute_id: str, outcome: str = "upheld") -> dict[str, Any]:
    return {"dispute_id": dispute_id, "outcome": outcome, "reason": "checked the delivery notes"}


def respond_body(key: str, record_id: str) -> dict[str, Any]:
    return {key: record_id, "statement": "delivered in full", "evidence_hash": "f2" * 32}


# --- one real tx per new code --------------------------------------------------------------------------------------
def c_cert_disputed(w: World) -> TxOutcome:
    cert = w.funded(1000)
    open_on_cert(w, cert)
    return w.run("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})


def c_doc_disputed(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(100)
    open_on_doc(w, inv)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                          "invoice_ids": [inv]})


def c_cert_not_live(w: World) -> TxOutcome:
    cert = w.funded(1000)
    w.ok("tier1", "ecert.split", {"cert_id": cert, "amounts": [1, 999]})
    return w.run("tier1", "dispute.open", {"cert_id": cert, "against": "geely", "reason": "r",
                                           "evidence_hash": EVIDENCE})


def c_not_subject_party(w: World) -> TxOutcome:
    cert = w.funded(1000)
    return w.run("tier3", "dispute.open", {"cert_id": cert, "against": "geely", "reason": "r",
                                           "evidence_hash": EVIDENCE})


def c_respondent_not_party(w: World) -> TxOutcome:
    cert = w.funded(1000)
    return w.run("tier1", "dispute.open", {"cert_id": cert, "against": "tier3", "reason": "r",
                                           "evidence_hash": EVIDENCE})


def c_unknown_dispute(w: World) -> TxOutcome:
    return w.run("geely", "dispute.respond", respond_body("dispute_id", "DS00"))


def c_not_respondent(w: World) -> TxOutcome:
    dispute = open_on_cert(w, w.funded(1000))["dispute_id"]
    return w.run("tier1", "dispute.respond", respond_body("dispute_id", dispute))


def c_not_resolver(w: World) -> TxOutcome:
    dispute = open_on_cert(w, w.funded(1000))["dispute_id"]
    return w.run("icbc", "dispute.resolve", resolve_body(dispute))


def c_dispute_escalated(w: World) -> TxOutcome:
    w = world()
    dispute = open_on_cert(w, w.funded(1000))["dispute_id"]
    w.now += WINDOW
    return w.run("boc", "dispute.resolve", resolve_body(dispute))


def c_unknown_complaint(w: World) -> TxOutcome:
    return w.run("geely", "complaint.respond", respond_body("complaint_id", "CP00"))


def c_too_many_complaints(w: World) -> TxOutcome:
    for _ in range(disputes.COMPLAINTS_OPEN_MAX):
        file(w)
    return w.run("tier1", "complaint.file", {"against": "byd", "subject": "s", "evidence_hash": EVIDENCE})


def c_response_deadline_passed(w: World) -> TxOutcome:
    w = world()
    complaint = file(w)
    w.now += WINDOW
    return w.run("geely", "complaint.respond", respond_body("complaint_id", complaint))


def c_not_complainant(w: World) -> TxOutcome:
    w = world()
    complaint = file(w)
    w.now += WINDOW
    return w.run("tier3", "complaint.escalate", {"complaint_id": complaint})


def c_response_not_due(w: World) -> TxOutcome:
    w = world()
    complaint = file(w)
    w.now += WINDOW - 1
    return w.run("tier1", "complaint.escalate", {"complaint_id": complaint})


DISPUTE_CASES: dict[str, Callable[[World], TxOutcome]] = {
    name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_") and callable(fn)
}
"""Joins tests/ecert/test_codes.py CASES (each code hit by a real signed tx)."""


@pytest.mark.parametrize("code", sorted(DISPUTE_CASES))
def test_dispute_code(code: str) -> None:
    outcome = DISPUTE_CASES[code](World())
    assert (outcome.status, outcome.error_code) == ("rejected", code), outcome.error_message


# --- the lifecycle of a dispute --------------------------------------------------------------------------------------
def test_open_respond_resolve_unlocks() -> None:
    w = world()
    cert = w.funded(1000)
    opened = open_on_cert(w, cert)
    dispute_id = opened["dispute_id"]
    assert opened == {"dispute_id": dispute_id, "status": "open", "cert_id": cert, "resolver": "boc",
                      "deadline": w.now + WINDOW}
    assert disputes.locking_dispute(w.view, "cert", cert) == dispute_id
    w.fail(codes.CERT_DISPUTED, "tier1", "dispute.open", {"cert_id": cert, "against": "geely", "reason": "again",
                                                         "evidence_hash": EVIDENCE})
    assert w.ok("geely", "dispute.respond", respond_body("dispute_id", dispute_id))["status"] == "responded"
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "dispute.respond", respond_body("dispute_id", dispute_id))
    assert w.ok("boc", "dispute.resolve", resolve_body(dispute_id, "dismissed")) == {
        "dispute_id": dispute_id, "status": "resolved", "outcome": "dismissed", "escalated": False}
    w.fail(codes.INVALID_STATUS_TRANSITION, "pbc", "dispute.resolve", resolve_body(dispute_id))
    got = disputes.dispute_json(w.view, dispute_id, w.now)
    assert got is not None and got["response"]["statement"] == "delivered in full"
    assert got["resolution"] == {"outcome": "dismissed", "by": "boc", "at": w.now,
                                 "reason": "checked the delivery notes"}
    assert disputes.locking_dispute(w.view, "cert", cert) is None
    w.ok("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})
    assert disputes.org_dispute_ids(w.view, "boc") == [dispute_id]
    assert disputes.unresolved_dispute_ids(w.view) == []


def test_past_the_deadline_only_the_regulator_resolves() -> None:
    w = world()
    cert = w.funded(1000)
    dispute_id = open_on_cert(w, cert, signer="geely", against="tier1")["dispute_id"]
    assert disputes.unresolved_dispute_ids(w.view) == [dispute_id]
    w.now += WINDOW - 1
    assert disputes.dispute_json(w.view, dispute_id, w.now)["escalated"] is False  # type: ignore[index]
    w.now += 1
    assert disputes.dispute_json(w.view, dispute_id, w.now)["escalated"] is True  # type: ignore[index]
    w.fail(codes.DISPUTE_ESCALATED, "boc", "dispute.resolve", resolve_body(dispute_id))
    w.ok("tier1", "dispute.respond", respond_body("dispute_id", dispute_id))  # the answer still counts
    assert w.ok("pbc", "dispute.resolve", resolve_body(dispute_id))["escalated"] is True
    assert disputes.dispute_json(w.view, dispute_id, w.now)["escalated"] is False  # type: ignore[index]


def test_the_regulator_may_resolve_before_the_deadline() -> None:
    w = world()
    dispute_id = open_on_cert(w, w.funded(1000))["dispute_id"]
    assert w.ok("pbc", "dispute.resolve", resolve_body(dispute_id))["outcome"] == "upheld"


def test_no_bank_judges_its_own_dispute() -> None:
    """After boc (the bank named at issue) financed the certificate, a dispute with boc is the regulator's."""
    w = world()
    cert = w.funded(1000)
    w.ok("tier1", "finance.request", {"cert_id": cert, "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": cert, "discount_bps": 100})
    opened = open_on_cert(w, cert, signer="tier1", against="boc")  # tier1 is the seller now
    assert opened["resolver"] is None
    w.fail(codes.NOT_RESOLVER, "boc", "dispute.resolve", resolve_body(opened["dispute_id"]))
    w.ok("pbc", "dispute.resolve", resolve_body(opened["dispute_id"]))


def test_doc_disputes_go_to_the_bank_it_is_sealed_for() -> None:
    w = world()
    w.ok("tier1", "trade.anchor", {"doc_id": "C1", "kind": "contract", "doc_hash": "00" * 32, "counterparty": "geely",
                                   "amount": 500, "ciphertext": {"icbc": b"x" * 60, "tier1": b"y" * 60}})
    opened = open_on_doc(w, "C1", signer="tier1", against="geely")
    assert (opened["doc_id"], opened["resolver"]) == ("C1", "icbc")
    w.fail(codes.DOC_DISPUTED, "geely", "trade.confirm", {"doc_id": "C1"})
    w.fail(codes.NOT_RESOLVER, "boc", "dispute.resolve", resolve_body(opened["dispute_id"]))
    w.ok("icbc", "dispute.resolve", resolve_body(opened["dispute_id"]))
    w.ok("geely", "trade.confirm", {"doc_id": "C1"})
    plain = w.invoice(100)  # sealed for no bank: the regulator alone resolves
    assert open_on_doc(w, plain, signer="geely", against="tier1")["resolver"] is None


def test_dispute_open_checks() -> None:
    w = world()
    cert = w.funded(1000)
    body = {"cert_id": cert, "against": "geely", "reason": "r", "evidence_hash": EVIDENCE}
    w.fail(codes.SAME_PARTY, "tier1", "dispute.open", {**body, "against": "tier1"})
    w.fail(codes.UNKNOWN_CERT, "tier1", "dispute.open", {**body, "cert_id": "EC00"})
    w.fail(codes.UNKNOWN_DOC, "tier1", "dispute.open", {"doc_id": "nope", "against": "geely", "reason": "r",
                                                        "evidence_hash": EVIDENCE})
    w.fail(codes.MISSING_FIELD, "tier1", "dispute.open", {k: v for k, v in body.items() if k != "cert_id"})
    w.fail(codes.BAD_FIELD, "tier1", "dispute.open", {**body, "doc_id": "INV-1"})
    w.fail(codes.BAD_FIELD, "tier1", "dispute.open", {**body, "reason": ""})
    w.fail(codes.NOT_SUBJECT_PARTY, "tier2", "dispute.open", {"doc_id": "INV-1", "against": "geely",
                                                              "reason": "r", "evidence_hash": EVIDENCE})
    w.fail(codes.RESPONDENT_NOT_PARTY, "tier1", "dispute.open", {"doc_id": "INV-1", "against": "boc",
                                                                 "reason": "r", "evidence_hash": EVIDENCE})


# --- the lock: every rule that moves a certificate or draws on a document -------------------------------------------
def _locked_cert_moves(w: World, cert: str, issued: str, financing: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]}),
        ("tier1", "ecert.split", {"cert_id": cert, "amounts": [1, 999]}),
        ("tier1", "finance.request", {"cert_id": cert, "bank": "boc"}),
        ("tier1", "ecert.accept", {"cert_id": issued}),
        ("tier1", "ecert.reject", {"cert_id": issued}),
        ("boc", "finance.approve", {"cert_id": financing, "discount_bps": 1}),
        ("boc", "finance.decline", {"cert_id": financing}),
    ]


def test_every_move_of_a_disputed_cert_is_refused() -> None:
    w = world()
    cert = w.funded(1000, maturity=w.now + 30 * DAY)
    issued = w.issue(500, accept=False, maturity=w.now + 30 * DAY)
    financing = w.issue(400, maturity=w.now + 30 * DAY)
    w.ok("tier1", "finance.request", {"cert_id": financing, "bank": "boc"})
    for c in (cert, issued, financing):
        open_on_cert(w, c)
    for signer, kind, body in _locked_cert_moves(w, cert, issued, financing):
        w.fail(codes.CERT_DISPUTED, signer, kind, body)
    w.now += 30 * DAY
    w.fail(codes.CERT_DISPUTED, "geely", "ecert.settle", {"cert_id": cert})


def test_the_settlement_kinds_respect_the_lock() -> None:
    """ecert.pay, ecert.settle_root, ecert.default and ecert.revoke (ecert/settlement.py) check the lock too."""
    w = world()
    cert = w.funded(1000, maturity=w.now + 30 * DAY)
    issued = w.issue(500, accept=False, maturity=w.now + 30 * DAY)
    open_on_cert(w, cert)
    open_on_cert(w, issued)
    w.fail(codes.CERT_DISPUTED, "geely", "ecert.pay", {"cert_id": cert, "amount": 10})
    w.fail(codes.CERT_DISPUTED, "geely", "ecert.revoke", {"cert_id": issued})
    w.now += 30 * DAY + s.chain_params(w.view).grace_period_ms
    w.fail(codes.CERT_DISPUTED, "tier1", "ecert.default", {"cert_id": cert})
    w.fail(codes.CERT_DISPUTED, "geely", "ecert.settle_root", {"root_id": cert})
    payment = w.invoice(1000, seller="geely", buyer="tier1", kind="payment")
    w.ok("pbc", "dispute.resolve", resolve_body(disputes.locking_dispute(w.view, "cert", cert) or ""))
    open_on_doc(w, payment, signer="tier1", against="geely")
    w.fail(codes.DOC_DISPUTED, "geely", "ecert.pay", {"cert_id": cert, "amount": 10, "payment": payment})
    w.ok("geely", "ecert.pay", {"cert_id": cert, "amount": 10})


def test_a_disputed_root_still_expires_at_its_acceptance_deadline() -> None:
    """The deadline is not a party's move: the root is cancelled, its dispute stays open and is resolved."""
    w = world()
    w.grant()
    issued = w.issue(500, accept=False)
    dispute_id = open_on_cert(w, issued)["dispute_id"]
    w.now += s.chain_params(w.view).acceptance_window_ms
    assert w.begin_block() == [issued]
    assert s.get_cert(w.view, issued).status == "cancelled"  # type: ignore[union-attr]
    assert disputes.unresolved_dispute_ids(w.view) == [dispute_id]
    w.ok("boc", "dispute.resolve", resolve_body(dispute_id, "dismissed"))


def test_every_use_of_a_disputed_doc_is_refused() -> None:
    w = World(params={"transfer_requires_trade_docs": True})
    cert = w.funded(1000)
    w.grant(limit=10_000)
    inv = w.invoice(100)
    contract = w.invoice(500, seller="tier2", buyer="tier1", kind="contract")
    for doc_id, against in ((inv, "geely"), (contract, "tier2")):
        open_on_doc(w, doc_id, signer="tier1", against=against)
    w.fail(codes.DOC_DISPUTED, "geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY,
                                                        "bank": "boc", "invoice_ids": [inv]})
    w.fail(codes.DOC_DISPUTED, "tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}],
                                                           "trade_docs": [contract]})
    w.fail(codes.DOC_DISPUTED, "tier2", "trade.anchor", {"doc_id": "I7", "kind": "invoice", "doc_hash": "00" * 32,
                                                         "counterparty": "tier1", "amount": 5,
                                                         "contract_id": contract})


# --- complaints ----------------------------------------------------------------------------------------------------
def test_complaint_answered_then_closed_by_the_complainant() -> None:
    w = world()
    complaint = file(w)
    got = disputes.complaint_json(w.view, complaint, w.now)
    assert got is not None and (got["status"], got["deadline"], got["escalated"]) == ("open", w.now + WINDOW, False)
    w.fail(codes.NOT_RESPONDENT, "byd", "complaint.respond", respond_body("complaint_id", complaint))
    assert w.ok("geely", "complaint.respond", respond_body("complaint_id", complaint))["status"] == "responded"
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "complaint.respond", respond_body("complaint_id", complaint))
    w.fail(codes.NOT_COMPLAINANT, "geely", "complaint.close", {"complaint_id": complaint})
    assert w.ok("tier1", "complaint.close", {"complaint_id": complaint, "reason": "settled"})["status"] == "closed"
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "complaint.close", {"complaint_id": complaint})
    assert disputes.open_complaint_ids(w.view) == []
    assert disputes.org_complaint_ids(w.view, "geely") == [complaint]


def test_unanswered_complaint_escalates_to_the_regulator() -> None:
    w = world()
    complaint = file(w)
    w.now += WINDOW
    assert disputes.complaint_json(w.view, complaint, w.now)["escalated"] is True  # type: ignore[index]
    assert w.ok("tier1", "complaint.escalate", {"complaint_id": complaint, "reason": "no answer"})["status"] == (
        "escalated")
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "complaint.escalate", {"complaint_id": complaint})
    assert w.ok("pbc", "complaint.close", {"complaint_id": complaint})["status"] == "closed"
    got = disputes.complaint_json(w.view, complaint, w.now)
    assert got is not None and got["closed"]["by"] == "pbc" and got["escalated"] is False


def test_an_answered_complaint_may_still_be_escalated() -> None:
    w = world()
    complaint = file(w)
    w.ok("geely", "complaint.respond", respond_body("complaint_id", complaint))
    assert w.ok("tier1", "complaint.escalate", {"complaint_id": complaint})["status"] == "escalated"


def test_complaint_file_checks() -> None:
    w = world()
    body = {"subject": "s", "evidence_hash": EVIDENCE}
    w.fail(codes.SAME_PARTY, "tier1", "complaint.file", {**body, "against": "tier1"})
    w.fail(codes.UNKNOWN_ORG, "tier1", "complaint.file", {**body, "against": "ghost"})
    w.fail(codes.REGULATOR_NOT_PARTY, "tier1", "complaint.file", {**body, "against": "pbc"})
    for _ in range(disputes.COMPLAINTS_OPEN_MAX):
        last = file(w)
    w.ok("tier1", "complaint.close", {"complaint_id": last})  # closing frees a place
    file(w)


# --- who may sign what ----------------------------------------------------------------------------------------------
def test_the_regulator_signs_only_resolve_and_close() -> None:
    assert {"dispute.resolve", "complaint.close"} <= REGULATOR_TX_TYPES
    w = world()
    cert = w.funded(1000)
    dispute_id = open_on_cert(w, cert)["dispute_id"]
    complaint = file(w, against="boc")
    refused = {
        "dispute.open": {"cert_id": cert, "against": "geely", "reason": "r", "evidence_hash": EVIDENCE},
        "dispute.respond": respond_body("dispute_id", dispute_id),
        "complaint.file": {"against": "boc", "subject": "s", "evidence_hash": EVIDENCE},
        "complaint.respond": respond_body("complaint_id", complaint),
        "complaint.escalate": {"complaint_id": complaint},
    }
    for kind, body in refused.items():
        assert kind not in REGULATOR_TX_TYPES
        w.fail(codes.ROLE_NOT_ALLOWED, "pbc", kind, body)
        with pytest.raises(TxRejected) as err:
            precheck(w.view, w.raw("pbc", kind, body), CHAIN)
        assert err.value.code == codes.ROLE_NOT_ALLOWED


@pytest.mark.parametrize("signer", ["tier1", "geely", "tier2", "icbc"])
def test_only_the_bank_named_at_issue_resolves(signer: str) -> None:
    w = world()
    dispute_id = open_on_cert(w, w.funded(1000))["dispute_id"]
    w.fail(codes.NOT_RESOLVER, signer, "dispute.resolve", resolve_body(dispute_id))


def test_a_frozen_party_cannot_act() -> None:
    w = world()
    complaint = file(w)
    w.ok("boc", "org.freeze", {"org_id": "geely"})
    w.fail(codes.SIGNER_NOT_ACTIVE, "geely", "complaint.respond", respond_body("complaint_id", complaint))


# --- who may read them ----------------------------------------------------------------------------------------------
def test_parties_resolver_and_regulator_read_a_dispute() -> None:
    w = world()
    cert = w.funded(1000)
    raw = w.raw("tier1", "dispute.open", {"cert_id": cert, "against": "geely", "reason": "r",
                                          "evidence_hash": EVIDENCE})
    outcome = w.apply(raw)
    dispute_id = outcome.result["dispute_id"]  # type: ignore[index]
    facts = access.tx_facts(outcome, raw)
    assert facts.subject == ("dispute", dispute_id)
    readers = {org: access.reader_of(w.view, org) for org in ("tier1", "geely", "boc", "pbc", "icbc", "tier2")}
    can = {org: access.can_read_dispute(w.view, r, dispute_id) for org, r in readers.items() if r is not None}
    assert can == {"tier1": True, "geely": True, "boc": True, "pbc": True, "icbc": False, "tier2": False}
    assert {org: access.can_read_tx_outcome(w.view, r, facts) for org, r in readers.items() if r is not None} == can
    assert access.can_read_dispute(w.view, readers["pbc"], "DS00") is False  # type: ignore[arg-type]


def test_parties_and_regulator_read_a_complaint() -> None:
    w = world()
    raw = w.raw("tier1", "complaint.file", {"against": "geely", "subject": "s", "evidence_hash": EVIDENCE})
    outcome = w.apply(raw)
    complaint = outcome.result["complaint_id"]  # type: ignore[index]
    facts = access.tx_facts(outcome, raw)
    for org, expected in (("tier1", True), ("geely", True), ("pbc", True), ("boc", False), ("tier2", False)):
        reader = access.reader_of(w.view, org)
        assert reader is not None
        assert access.can_read_complaint(w.view, reader, complaint) is expected
        assert access.can_read_tx_outcome(w.view, reader, facts) is expected


def test_default_windows_apply_without_params() -> None:
    w = World()
    complaint = file(w)
    got = disputes.get_complaint(w.view, complaint)
    assert got is not None and got.deadline - got.filed_at == s.ChainParams().complaint_response_ms
