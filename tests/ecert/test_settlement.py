"""Payment, default, recourse, financing limits, revoke and the acceptance deadline (ecert/settlement.py,
ecert/financing.py), each through real signed txs (World: the executor as the ledger runs it, invariants after
every tx). `SETTLEMENT_CASES` joins tests/ecert/test_codes.py: one rejected tx per new code.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest

from ecert import access, codes, financing, settlement
from ecert import state as s
from ecert.access import Reader
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_hash, genesis_writes
from ecert.invariants import check_invariants
from ecert.rules import cert_id_for
from ecert.state import CERT_INDEX
from ecert.tx import decode_envelope, tx_id_of
from ledger.block import make_block
from ledger.executor import TxOutcome
from ledger.store import StateStore
from tests.ecert.world import CHAIN, DAY, T0, World

GRACE = 10 * DAY  # the defaults (ecert/state.py ChainParams)
WINDOW = 7 * DAY


def cert(w: World, cert_id: str) -> s.Cert:
    c = s.get_cert(w.view, cert_id)
    assert c is not None
    return c


def used(w: World, bank: str = "boc", core: str = "geely") -> int:
    line = s.get_credit(w.view, bank, core)
    assert line is not None
    return line.used


def exposure(w: World, org: str, bank: str = "boc") -> int:
    line = financing.get_exposure(w.view, bank, org)
    return 0 if line is None else line.used


def payment_doc(w: World, amount: int, payer: str = "geely", payee: str = "tier1") -> str:
    return w.invoice(amount, seller=payer, buyer=payee, kind="payment")


def financed(w: World, amount: int = 1000, recourse: bool | None = None, maturity_days: int = 30) -> str:
    cid = w.funded(amount, maturity=w.now + maturity_days * DAY)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    body: dict[str, object] = {"cert_id": cid, "discount_bps": 300}
    if recourse is not None:
        body["recourse"] = recourse
    w.ok("boc", "finance.approve", body)
    return cid


# --- rejection cases, one per new code -----------------------------------------------------------------------------
def c_term_too_long(w: World) -> TxOutcome:
    w.grant()
    inv = w.invoice(100)
    return w.run("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + 365 * DAY + 1,
                                          "bank": "boc", "invoice_ids": [inv]})


def c_acceptance_expired(w: World) -> TxOutcome:
    w.grant()
    cid = w.issue(100, accept=False)
    w.now += WINDOW
    with mock.patch.object(settlement, "ACCEPTANCE_SWEEP_MAX", 0):  # no block has cancelled it yet
        return w.run("tier1", "ecert.accept", {"cert_id": cid})


def c_cert_partly_paid(w: World) -> TxOutcome:
    cid = w.funded(1000)
    w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 1})
    return w.run("tier1", "ecert.transfer", {"cert_id": cid, "to": [{"org": "tier2", "amount": 5}]})


def c_amount_exceeds_due(w: World) -> TxOutcome:
    cid = w.funded(1000)
    return w.run("geely", "ecert.pay", {"cert_id": cid, "amount": 1001})


def c_not_a_payment(w: World) -> TxOutcome:
    cid = w.funded(1000)
    return w.run("geely", "ecert.pay", {"cert_id": cid, "amount": 10, "payment": "INV-1"})  # the invoice


def c_payment_parties_mismatch(w: World) -> TxOutcome:
    cid = w.funded(1000)
    doc = payment_doc(w, 100, payee="tier2")
    return w.run("geely", "ecert.pay", {"cert_id": cid, "amount": 10, "payment": doc})


def c_payment_exceeds_doc(w: World) -> TxOutcome:
    cid = w.funded(1000)
    doc = payment_doc(w, 10)
    return w.run("geely", "ecert.pay", {"cert_id": cid, "amount": 11, "payment": doc})


def c_grace_not_over(w: World) -> TxOutcome:
    cid = w.funded(1000, maturity=w.now + DAY)
    w.now += DAY + GRACE - 1
    return w.run("tier1", "ecert.default", {"cert_id": cid})


def c_not_a_root(w: World) -> TxOutcome:
    root = w.funded(1000)
    kids = w.ok("tier1", "ecert.split", {"cert_id": root, "amounts": [400, 600]})["certs"]
    return w.run("geely", "ecert.settle_root", {"root_id": kids[0]})


def c_lineage_too_large(w: World) -> TxOutcome:
    root = w.funded(1000, maturity=w.now + DAY)
    w.ok("tier1", "ecert.split", {"cert_id": root, "amounts": [400, 600]})
    w.now += DAY
    with mock.patch.object(settlement, "SETTLE_ROOT_LINEAGE_MAX", 2):
        return w.run("geely", "ecert.settle_root", {"root_id": root})


def c_nothing_to_settle(w: World) -> TxOutcome:
    root = w.funded(1000, maturity=w.now + DAY)
    w.now += DAY
    w.ok("geely", "ecert.settle", {"cert_id": root})
    return w.run("geely", "ecert.settle_root", {"root_id": root})


def c_unknown_claim(w: World) -> TxOutcome:
    cid = financed(w)
    return w.run("tier1", "recourse.repay", {"cert_id": cid, "amount": 1})


def _defaulted_with_recourse(w: World) -> str:
    cid = financed(w, 1000, recourse=True, maturity_days=1)
    w.now += DAY + GRACE
    w.ok("boc", "ecert.default", {"cert_id": cid})
    return cid


def c_not_seller(w: World) -> TxOutcome:
    cid = _defaulted_with_recourse(w)
    return w.run("tier2", "recourse.repay", {"cert_id": cid, "amount": 1})


def c_not_claim_bank(w: World) -> TxOutcome:
    cid = _defaulted_with_recourse(w)
    return w.run("icbc", "recourse.write_off", {"cert_id": cid})


def c_claim_closed(w: World) -> TxOutcome:
    cid = _defaulted_with_recourse(w)
    w.ok("boc", "recourse.write_off", {"cert_id": cid, "reason": "insolvent"})
    return w.run("tier1", "recourse.repay", {"cert_id": cid, "amount": 1})


def c_amount_exceeds_claim(w: World) -> TxOutcome:
    cid = _defaulted_with_recourse(w)
    return w.run("tier1", "recourse.repay", {"cert_id": cid, "amount": 1001})


def c_finance_limit_exceeded(w: World) -> TxOutcome:
    cid = w.funded(1000)
    w.ok("boc", "finance.limit", {"org": "tier1", "limit": 999})
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    return w.run("boc", "finance.approve", {"cert_id": cid, "discount_bps": 100})


def c_not_core_or_supplier(w: World) -> TxOutcome:
    return w.run("boc", "finance.limit", {"org": "icbc", "limit": 5})


SETTLEMENT_CASES: dict[str, Callable[[World], TxOutcome]] = {
    name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_") and callable(fn)
}


# --- payment ------------------------------------------------------------------------------------------------------
def test_partial_and_early_payment_then_settled_in_full() -> None:
    w = World()
    cid = w.funded(1000, maturity=w.now + 30 * DAY)
    doc = payment_doc(w, 600)
    res = w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 400, "payment": doc})
    assert res == {"cert_id": cid, "status": "active", "paid_to": "tier1", "amount": 400, "principal": 400,
                   "penalty": 0, "paid": 400, "outstanding": 600}
    assert cert(w, cid).paid == 400 and used(w) == 600  # the line has room again at once
    assert s.get_doc(w.view, doc).applied == 400  # type: ignore[union-attr]
    w.fail(codes.CERT_PARTLY_PAID, "tier1", "ecert.split", {"cert_id": cid, "amounts": [500, 500]})
    w.fail(codes.CERT_PARTLY_PAID, "tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    w.fail(codes.PAYMENT_EXCEEDS_DOC, "geely", "ecert.pay", {"cert_id": cid, "amount": 201, "payment": doc})
    w.fail(codes.AMOUNT_EXCEEDS_DUE, "geely", "ecert.pay", {"cert_id": cid, "amount": 601})
    res = w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 600})  # early: before maturity
    assert res["status"] == "settled" and res["outstanding"] == 0
    c = cert(w, cid)
    assert (c.status, c.paid, c.paid_to, c.settled_at) == ("settled", 1000, "tier1", w.now)
    assert used(w) == 0 and s.holding_ids(w.view, "tier1") == []
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "ecert.pay", {"cert_id": cid, "amount": 1})


def test_settle_keeps_its_result_and_pays_the_rest() -> None:
    w = World()
    a = w.funded(1000, maturity=w.now + DAY)
    b = w.issue(500, maturity=w.now + DAY)
    w.ok("geely", "ecert.pay", {"cert_id": b, "amount": 200})
    w.now += DAY
    assert w.ok("geely", "ecert.settle", {"cert_id": a}) == {"cert_id": a, "status": "settled", "paid_to": "tier1",
                                                            "amount": 1000}
    doc = payment_doc(w, 300)
    assert w.ok("geely", "ecert.settle", {"cert_id": b, "payment": doc}) == {
        "cert_id": b, "status": "settled", "paid_to": "tier1", "amount": 500, "principal": 300, "penalty": 0,
        "payment": doc}
    assert used(w) == 0


def test_a_payment_drops_a_pending_financing_request() -> None:
    w = World()
    cid = w.funded(1000)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    assert w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 10})["status"] == "active"
    assert cert(w, cid).finance_bank is None
    w.fail(codes.INVALID_STATUS_TRANSITION, "boc", "finance.approve", {"cert_id": cid, "discount_bps": 1})


def test_settle_root_pays_every_live_matured_leaf() -> None:
    w = World()
    root = w.funded(1000, maturity=w.now + 5 * DAY)
    kids = w.ok("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 300},
                                                                     {"org": "tier3", "amount": 200}]})["certs"]
    w.ok("tier2", "finance.request", {"cert_id": kids[0], "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": kids[0], "discount_bps": 100})
    w.ok("geely", "ecert.pay", {"cert_id": kids[2], "amount": 100})
    w.fail(codes.NOT_MATURED, "geely", "ecert.settle_root", {"root_id": root})
    w.now += 5 * DAY
    w.ok("geely", "ecert.settle", {"cert_id": kids[1]})
    res = w.ok("geely", "ecert.settle_root", {"root_id": root})
    assert res == {"root_id": root, "total": 700, "settled": [
        {"cert_id": kids[0], "paid_to": "boc", "principal": 300, "penalty": 0},
        {"cert_id": kids[2], "paid_to": "tier1", "principal": 400, "penalty": 0}]}
    assert used(w) == 0 and exposure(w, "tier2") == 0 and exposure(w, "geely") == 0
    summary = settlement.root_payments(w.view, root, w.now)
    assert summary is not None and (summary["paid"], summary["outstanding"]) == (1000, 0)
    w.fail(codes.NOTHING_TO_SETTLE, "geely", "ecert.settle_root", {"root_id": root})


# --- default and penalty ------------------------------------------------------------------------------------------
def test_default_after_grace_and_the_penalty_in_integers() -> None:
    w = World()
    cid = w.funded(1_000_000, maturity=w.now + DAY)
    maturity = cert(w, cid).maturity
    w.now = maturity + 3 * DAY + 5  # paid in part within the grace period: 3 days late on 1,000,000
    w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 400_000})
    w.now = maturity + GRACE
    res = w.ok("tier1", "ecert.default", {"cert_id": cid})
    # 1,000,000 * 5 bps * 3 days + 600,000 * 5 bps * 7 days = 1,500 + 2,100
    assert res == {"cert_id": cid, "status": "defaulted", "holder": "tier1", "unpaid": 600_000, "penalty": 3_600,
                   "claim": None}
    w.now += 2 * DAY - 1  # one more whole day: 600,000 * 5 bps
    view = settlement.cert_payment_json(cert(w, cid), w.now, 5)
    assert (view["outstanding"], view["penalty"], view["due"]) == (600_000, 3_900, 603_900)
    w.fail(codes.AMOUNT_EXCEEDS_DUE, "geely", "ecert.pay", {"cert_id": cid, "amount": 603_901})
    res = w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 600_100})  # principal first, then penalty
    assert (res["status"], res["principal"], res["penalty"], res["outstanding"]) == ("defaulted", 600_000, 100, 0)
    assert used(w) == 0
    w.now += 30 * DAY  # nothing unpaid: the penalty stops growing
    res = w.ok("geely", "ecert.settle", {"cert_id": cid})
    assert (res["principal"], res["penalty"], res["status"]) == (0, 3_800, "settled")
    assert cert(w, cid).penalty_paid == 3_900


def test_paid_within_grace_owes_no_penalty_and_default_needs_the_holder() -> None:
    w = World()
    cid = w.funded(1000, maturity=w.now + DAY)
    w.now += DAY + GRACE
    w.fail(codes.NOT_HOLDER, "geely", "ecert.default", {"cert_id": cid})
    assert settlement.cert_payment_json(cert(w, cid), w.now, 5)["penalty"] == 0
    assert w.ok("geely", "ecert.settle", {"cert_id": cid})["amount"] == 1000


def test_default_with_recourse_claims_from_the_seller() -> None:
    w = World()
    cid = financed(w, 1000, recourse=True, maturity_days=1)
    assert exposure(w, "tier1") == 1000 and exposure(w, "geely") == 1000
    w.now += DAY + GRACE
    res = w.ok("boc", "ecert.default", {"cert_id": cid})
    assert res["claim"] == {"bank": "boc", "seller": "tier1", "amount": 1000} and res["holder"] == "tier1"
    assert exposure(w, "tier1") == 1000 and exposure(w, "geely") == 0  # the seller now stands behind it all
    bank = settlement.owed_to(w.view, "boc", w.now)
    seller = settlement.owed_to(w.view, "tier1", w.now)
    assert bank is not None and seller is not None
    assert bank["from_sellers"]["total"] == 1000 and bank["from_debtors"]["certs"] == []
    assert seller["owes_banks"]["total"] == 1000 and seller["from_debtors"]["principal"] == 1000
    res = w.ok("tier1", "recourse.repay", {"cert_id": cid, "amount": 400})
    assert res == {"cert_id": cid, "bank": "boc", "amount": 400, "repaid": 400, "outstanding": 600, "status": "open"}
    assert exposure(w, "tier1") == 600
    assert w.ok("boc", "recourse.write_off", {"cert_id": cid, "reason": "insolvent"}) == {
        "cert_id": cid, "seller": "tier1", "written_off": 600, "status": "closed"}
    assert exposure(w, "tier1") == 0
    # The debtor still owes the certificate, now to the seller that took it back.
    assert w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 50})["paid_to"] == "tier1"


def test_repaying_the_whole_claim_closes_it() -> None:
    w = World()
    cid = _defaulted_with_recourse(w)
    assert w.ok("tier1", "recourse.repay", {"cert_id": cid, "amount": 1000})["status"] == "closed"
    claim = financing.get_claim(w.view, cid)
    assert claim is not None and claim.closed_at == w.now


def test_without_recourse_the_loss_stays_with_the_bank() -> None:
    w = World()
    cid = financed(w, 1000, recourse=False, maturity_days=1)
    w.now += DAY + GRACE
    res = w.ok("boc", "ecert.default", {"cert_id": cid})
    assert res["claim"] is None and res["holder"] == "boc"
    assert financing.get_claim(w.view, cid) is None and exposure(w, "tier1") == 1000
    w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 300})
    assert exposure(w, "tier1") == 700 and exposure(w, "geely") == 700


def test_finance_approve_without_recourse_field_keeps_its_result() -> None:
    w = World()
    cid = w.funded(1000, maturity=w.now + 90 * DAY)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    res = w.ok("boc", "finance.approve", {"cert_id": cid, "discount_bps": 500})
    assert "recourse" not in res and cert(w, cid).recourse is False


# --- financing limits ---------------------------------------------------------------------------------------------
def test_limits_per_supplier_and_per_core_are_restored_on_settlement() -> None:
    w = World()
    w.ok("boc", "finance.limit", {"org": "geely", "limit": 1500})
    assert w.ok("boc", "finance.limit", {"org": "tier1", "limit": 5000})["used"] == 0
    a = financed(w, 1000, maturity_days=1)
    b = w.issue(1000, maturity=w.now + DAY)
    w.ok("tier1", "finance.request", {"cert_id": b, "bank": "boc"})
    w.fail(codes.FINANCE_LIMIT_EXCEEDED, "boc", "finance.approve", {"cert_id": b, "discount_bps": 100})  # the core
    w.fail(codes.LIMIT_BELOW_USED, "boc", "finance.limit", {"org": "geely", "limit": 999})
    w.now += DAY
    w.ok("geely", "ecert.settle", {"cert_id": a})
    assert exposure(w, "geely") == 0
    w.ok("geely", "ecert.settle", {"cert_id": b})  # the request pending at maturity: paid to tier1


# --- revoke and the acceptance deadline ----------------------------------------------------------------------------
def test_revoke_gives_back_credit_and_headroom() -> None:
    w = World()
    w.grant(limit=500)
    inv = w.invoice(500)
    cid = w.issue(500, invoice_ids=[inv], accept=False)
    w.fail(codes.NOT_DEBTOR, "tier1", "ecert.revoke", {"cert_id": cid})
    assert w.ok("geely", "ecert.revoke", {"cert_id": cid}) == {"cert_id": cid, "status": "cancelled"}
    assert used(w) == 0 and s.get_doc(w.view, inv).backed == 0  # type: ignore[union-attr]
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "ecert.accept", {"cert_id": cid})
    active = w.issue(500, invoice_ids=[inv])
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "ecert.revoke", {"cert_id": active})


def test_acceptance_deadline_cancels_at_block_time_bounded_per_block() -> None:
    w = World()
    w.grant(limit=1000)
    first = w.issue(100, accept=False)
    w.now += DAY
    second = w.issue(200, accept=False)
    kept = w.issue(300, accept=False)
    w.ok("tier1", "ecert.accept", {"cert_id": kept})
    assert cert(w, first).accept_by == T0 + 1000 + WINDOW
    w.now = cert(w, second).accept_by  # type: ignore[assignment]
    with mock.patch.object(settlement, "ACCEPTANCE_SWEEP_MAX", 1):
        assert w.begin_block() == [first]  # deadline order, one per block
        assert cert(w, second).status == "issued"
        assert w.begin_block() == [second]
    assert (cert(w, first).status, cert(w, second).status, cert(w, kept).status) == ("cancelled", "cancelled",
                                                                                     "active")
    assert used(w) == 300
    assert w.begin_block() == []


def test_maximum_term() -> None:
    w = World()
    w.grant()
    w.issue(100, maturity=w.now + 365 * DAY)
    w = World(params={"max_term_days": 0, "acceptance_window_ms": 0})  # 0: no cap, no window
    w.grant(expires_at=w.now + 900 * DAY)
    cid = w.issue(100, maturity=w.now + 800 * DAY, accept=False)
    assert cert(w, cid).accept_by is None


def test_the_block_hook_runs_in_the_ledger_and_replicas_agree(tmp_path: Path) -> None:
    w = World()
    grant = w.raw("boc", "credit.grant", {"core": "geely", "limit": 10_000, "expires_at": T0 + 365 * DAY})
    anchor = w.raw("tier1", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                             "counterparty": "geely", "amount": 5000})
    confirm = w.raw("geely", "trade.confirm", {"doc_id": "INV-1"})
    issue = w.raw("geely", "ecert.issue", {"to": "tier1", "amount": 4000, "maturity": T0 + 30 * DAY,
                                           "bank": "boc", "invoice_ids": ["INV-1"]})
    root = cert_id_for(tx_id_of(decode_envelope(issue).payload), 0)
    blocks = [(T0 + 1000, [grant, anchor, confirm, issue]), (T0 + 1000 + WINDOW, [])]
    roots = []
    for name in ("a", "b"):
        with StateStore.open(tmp_path / name, paranoid=True, index=CERT_INDEX) as store:
            store.init_genesis(genesis_hash(w.genesis), genesis_writes(w.genesis), chain_id=CHAIN, genesis_time=T0)
            for height, (time, txs) in enumerate(blocks, start=1):
                store.apply_block(make_block(height, store.block_hash, time, "n1", tuple(txs)), EcertExecutor(CHAIN))
            got = s.get_cert(store, root)
            assert got is not None and got.status == "cancelled"  # by the empty block, at its time
            line = s.get_credit(store, "boc", "geely")
            assert line is not None and line.used == 0
            check_invariants(store)
            roots.append(store.state_root)
    assert roots[0] == roots[1]


# --- who may sign, who may read --------------------------------------------------------------------------------
def _claim_world() -> tuple[World, str, str]:
    w = World(regulator=True)
    cid = _defaulted_with_recourse(w)
    issued = w.issue(10, accept=False)
    return w, cid, issued


WRONG_SIGNERS = [
    ("ecert.pay", "tier1", lambda c, i: {"cert_id": c, "amount": 1}, codes.NOT_DEBTOR),
    ("ecert.settle_root", "tier1", lambda c, i: {"root_id": c}, codes.NOT_DEBTOR),
    ("ecert.default", "geely", lambda c, i: {"cert_id": c}, codes.NOT_HOLDER),
    ("ecert.revoke", "tier1", lambda c, i: {"cert_id": i}, codes.NOT_DEBTOR),
    ("recourse.repay", "tier2", lambda c, i: {"cert_id": c, "amount": 1}, codes.NOT_SELLER),
    ("recourse.write_off", "icbc", lambda c, i: {"cert_id": c}, codes.NOT_CLAIM_BANK),
    ("finance.limit", "geely", lambda c, i: {"org": "tier1", "limit": 5}, codes.ROLE_NOT_ALLOWED),
]


@pytest.mark.parametrize(("kind", "signer", "body", "code"), WRONG_SIGNERS, ids=[k for k, *_ in WRONG_SIGNERS])
def test_who_may_not_sign(kind: str, signer: str, body: Callable[[str, str], dict[str, object]], code: str) -> None:
    w, cid, issued = _claim_world()
    w.fail(code, signer, kind, body(cid, issued))
    w.fail(codes.ROLE_NOT_ALLOWED, "pbc", kind, body(cid, issued))  # the regulator signs none of them


def test_who_may_read_claims_owed_and_root_totals() -> None:
    w, cid, _ = _claim_world()
    boc, tier1, tier2, pbc = Reader("boc", "bank"), Reader("tier1", "supplier"), Reader("tier2", "supplier"), \
        Reader("pbc", "regulator")
    assert [access.can_read_claim(w.view, r, cid) for r in (boc, tier1, tier2, pbc)] == [True, True, False, True]
    assert [access.can_read_owed(r, "tier1") for r in (boc, tier1, tier2, pbc)] == [False, True, False, True]
    assert [access.can_read_exposure(r, "boc", "tier1") for r in (boc, tier1, tier2, pbc)] == [True, True, False,
                                                                                              True]
    geely = Reader("geely", "core")
    assert [access.can_read_root_payments(w.view, r, cid) for r in (geely, boc, tier1, pbc)] == [True, True, False,
                                                                                                True]
    assert settlement.owed_to(w.view, "ghost", w.now) is None and settlement.root_payments(w.view, "EC0", 0) is None
