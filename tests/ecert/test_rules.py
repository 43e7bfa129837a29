"""Behaviour of each transaction kind (the happy paths and their effects); rejections live in test_codes.py."""

from __future__ import annotations

from ecert import codes, queries
from ecert import state as s
from ecert.rules import cert_id_for, discount_for
from ecert.tx import decode_envelope, tx_id_of
from tests.ecert.world import DAY, World


def cert(w: World, cert_id: str) -> s.Cert:
    c = s.get_cert(w.view, cert_id)
    assert c is not None
    return c


def used(w: World, bank: str = "boc", core: str = "geely") -> int:
    line = s.get_credit(w.view, bank, core)
    assert line is not None
    return line.used


# --- organisations ------------------------------------------------------------------------------------------------
def test_register_approve_freeze_unfreeze() -> None:
    w = World()
    k = w.key("newco")
    assert w.ok("newco", "org.register", {"org_id": "newco", "name": "New Co", "role": "supplier",
                                          "sign_pk": k.sign_pk, "box_pk": k.box_pk}) == {"org_id": "newco",
                                                                                         "status": "pending"}
    w.fail(codes.SIGNER_NOT_ACTIVE, "newco", "trade.confirm", {"doc_id": "x"})
    assert w.ok("boc", "org.approve", {"org_id": "newco"})["status"] == "active"
    w.fail(codes.INVALID_STATUS_TRANSITION, "icbc", "org.approve", {"org_id": "newco"})
    assert w.ok("icbc", "org.freeze", {"org_id": "newco", "reason": "audit"})["status"] == "frozen"
    assert queries.get_org(w.view, "newco")["reason"] == "audit"  # type: ignore[index]
    w.fail(codes.SIGNER_NOT_ACTIVE, "newco", "trade.confirm", {"doc_id": "x"})
    w.fail(codes.INVALID_STATUS_TRANSITION, "boc", "org.freeze", {"org_id": "newco"})
    assert w.ok("boc", "org.unfreeze", {"org_id": "newco"})["status"] == "active"
    w.fail(codes.SAME_PARTY, "boc", "org.freeze", {"org_id": "boc"})
    w.fail(codes.ROLE_NOT_ALLOWED, "geely", "org.freeze", {"org_id": "tier1"})


def test_register_must_be_signed_by_the_new_org_key() -> None:
    w = World()
    k = w.key("newco")
    body = {"org_id": "newco", "name": "New Co", "role": "core", "sign_pk": k.sign_pk, "box_pk": k.box_pk}
    w.fail(codes.BAD_SIGNATURE, "newco", "org.register", body, seed=w.key("other").seed)
    w.fail(codes.SIGNER_MISMATCH, "tier1", "org.register", body)


def test_frozen_recipient_cannot_receive() -> None:
    w = World()
    c = w.funded(1000)
    w.ok("boc", "org.freeze", {"org_id": "tier2"})
    w.fail(codes.ORG_NOT_ACTIVE, "tier1", "ecert.transfer", {"cert_id": c, "to": [{"org": "tier2", "amount": 5}]})


# --- credit -------------------------------------------------------------------------------------------------------
def test_credit_grant_keeps_used_and_may_close_an_unused_line() -> None:
    w = World()
    w.grant(limit=0)
    assert queries.get_credit_line(w.view, "boc", "geely")["limit"] == 0  # type: ignore[index]
    w.funded(400)
    w.grant(limit=400)
    line = queries.get_credit_line(w.view, "boc", "geely")
    assert line is not None and (line["limit"], line["used"], line["available"]) == (400, 400, 0)


def test_issue_needs_a_live_line_of_the_named_bank() -> None:
    w = World()
    w.grant(bank="icbc")
    inv = w.invoice(100)
    w.fail(codes.NO_CREDIT_LINE, "geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY,
                                                          "bank": "boc", "invoice_ids": [inv]})
    w.ok("boc", "org.freeze", {"org_id": "icbc"})
    w.fail(codes.ORG_NOT_ACTIVE, "geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY,
                                                          "bank": "icbc", "invoice_ids": [inv]})


# --- trade documents and privacy at rest ---------------------------------------------------------------------------
def test_anchor_and_confirm_with_ciphertexts() -> None:
    w = World()
    cts = {"tier1": b"a" * 60, "geely": b"b" * 60, "boc": b"c" * 60}
    w.ok("tier1", "trade.anchor", {"doc_id": "C-1", "kind": "contract", "doc_hash": "cd" * 32,
                                   "counterparty": "geely", "amount": 5000, "ciphertext": cts})
    doc = queries.get_trade_doc(w.view, "C-1")
    assert doc is not None and doc["status"] == "anchored" and sorted(doc["ciphertext"]) == ["boc", "geely", "tier1"]
    assert w.ok("geely", "trade.confirm", {"doc_id": "C-1"}) == {"doc_id": "C-1", "status": "confirmed"}
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "trade.confirm", {"doc_id": "C-1"})


# --- issue, accept, reject ----------------------------------------------------------------------------------------
def test_issue_effects_and_derived_id() -> None:
    w = World()
    w.grant(limit=1000)
    inv = w.invoice(700)
    raw = w.raw("geely", "ecert.issue", {"to": "tier1", "amount": 600, "maturity": w.now + 30 * DAY, "bank": "boc",
                                         "invoice_ids": [inv]})
    outcome = w.apply(raw)
    tx_id = tx_id_of(decode_envelope(raw).payload)
    assert outcome.status == "committed" and outcome.tx_id == tx_id
    cid = cert_id_for(tx_id, 0)
    assert outcome.result == {"certs": [cid]}
    c = queries.get_cert(w.view, cid)
    assert c is not None
    assert {k: c[k] for k in ("id", "root_id", "parent_id", "debtor", "holder", "amount", "status")} == {
        "id": cid, "root_id": cid, "parent_id": None, "debtor": "geely", "holder": "tier1", "amount": 600,
        "status": "issued"}
    assert used(w) == 600
    assert queries.get_trade_doc(w.view, inv)["backed"] == 600  # type: ignore[index]
    assert [x["id"] for x in queries.get_holdings(w.view, "tier1")["certs"]] == [cid]  # type: ignore[index]
    # The invoice has 100 of headroom left; the line 400.
    w.fail(codes.INVOICE_HEADROOM_EXCEEDED, "geely", "ecert.issue", {"to": "tier1", "amount": 101,
                                                                     "maturity": w.now + DAY, "bank": "boc",
                                                                     "invoice_ids": [inv]})
    w.ok("geely", "ecert.issue", {"to": "tier1", "amount": 100, "maturity": w.now + DAY, "bank": "boc",
                                  "invoice_ids": [inv]})


def test_issue_draws_invoices_in_order() -> None:
    w = World()
    w.grant()
    a, b, c = w.invoice(100), w.invoice(100), w.invoice(100)
    cid = w.issue(150, invoice_ids=[b, a, c])
    assert cert(w, cid).invoices == ((b, 100), (a, 50))
    assert [queries.get_trade_doc(w.view, d)["backed"] for d in (a, b, c)] == [50, 100, 0]  # type: ignore[index]


def test_reject_restores_credit_and_invoice_headroom() -> None:
    w = World()
    w.grant(limit=500)
    inv = w.invoice(500)
    cid = w.issue(500, invoice_ids=[inv], accept=False)
    assert used(w) == 500
    w.fail(codes.NOT_HOLDER, "tier2", "ecert.reject", {"cert_id": cid})
    assert w.ok("tier1", "ecert.reject", {"cert_id": cid}) == {"cert_id": cid, "status": "cancelled"}
    assert used(w) == 0
    assert queries.get_trade_doc(w.view, inv)["backed"] == 0  # type: ignore[index]
    assert queries.get_holdings(w.view, "tier1")["certs"] == []  # type: ignore[index]
    w.issue(500, invoice_ids=[inv])  # the headroom is back
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "ecert.accept", {"cert_id": cid})


def test_issued_cert_must_be_accepted_before_it_moves() -> None:
    w = World()
    w.grant()
    cid = w.issue(100, accept=False)
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "ecert.transfer",
           {"cert_id": cid, "to": [{"org": "tier2", "amount": 10}]})
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "finance.request", {"cert_id": cid, "bank": "boc"})


# --- transfer and split -------------------------------------------------------------------------------------------
def test_transfer_children_in_order_then_remainder() -> None:
    w = World()
    root = w.funded(1000)
    raw = w.raw("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier3", "amount": 300},
                                                                     {"org": "tier2", "amount": 200}]})
    tx_id = tx_id_of(decode_envelope(raw).payload)
    outcome = w.apply(raw)
    kids = [cert_id_for(tx_id, i) for i in range(3)]
    assert outcome.result == {"certs": kids}
    assert [(cert(w, k).holder, cert(w, k).amount, cert(w, k).status) for k in kids] == [
        ("tier3", 300, "active"), ("tier2", 200, "active"), ("tier1", 500, "active")]
    assert all(cert(w, k).parent_id == root and cert(w, k).root_id == root for k in kids)
    assert cert(w, root).status == "split" and cert(w, root).children == tuple(kids)
    lineage = queries.get_lineage(w.view, kids[1])
    assert lineage is not None and lineage["root_id"] == root
    assert [c["id"] for c in lineage["certs"]] == [root, *kids]
    assert [c["id"] for c in queries.get_holdings(w.view, "tier1")["certs"]] == [kids[2]]  # type: ignore[index]
    # The spent parent cannot move again; the children can.
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "ecert.split", {"cert_id": root, "amounts": [1, 999]})
    grand = w.ok("tier3", "ecert.transfer", {"cert_id": kids[0], "to": [{"org": "tier1", "amount": 300}]})["certs"]
    assert len(grand) == 1 and cert(w, grand[0]).holder == "tier1"
    assert [c["id"] for c in queries.get_lineage(w.view, root)["certs"]] == [root, *kids, *grand]  # type: ignore[index]


def test_split_keeps_holder_and_sums() -> None:
    w = World()
    root = w.funded(1000)
    kids = w.ok("tier1", "ecert.split", {"cert_id": root, "amounts": [1, 2, 997]})["certs"]
    assert [(cert(w, k).holder, cert(w, k).amount) for k in kids] == [("tier1", 1), ("tier1", 2), ("tier1", 997)]
    assert queries.get_holdings(w.view, "tier1")["total"] == 1000  # type: ignore[index]


# --- financing ----------------------------------------------------------------------------------------------------
def test_discount_math() -> None:
    assert discount_for(1_000_000, 500, 0, 90 * DAY) == (90, 12_500)
    assert discount_for(1_000_000, 500, 0, 89 * DAY + 1) == (90, 12_500)  # a started day counts as a day
    assert discount_for(1_000_000, 500, 0, 1) == (1, 138)  # 138.88.. floors
    assert discount_for(999, 0, 0, DAY) == (1, 0)


def test_finance_request_approve_and_settle_pays_the_bank() -> None:
    w = World()
    cid = w.funded(1_000_000, maturity=w.now + 90 * DAY)
    w.fail(codes.SAME_PARTY, "tier1", "ecert.transfer", {"cert_id": cid, "to": [{"org": "tier1", "amount": 5}]})
    w.fail(codes.NOT_A_BANK, "tier1", "finance.request", {"cert_id": cid, "bank": "tier2"})
    assert w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})["status"] == "financing"
    w.fail(codes.INVALID_STATUS_TRANSITION, "tier1", "ecert.transfer",
           {"cert_id": cid, "to": [{"org": "tier2", "amount": 5}]})
    res = w.ok("boc", "finance.approve", {"cert_id": cid, "discount_bps": 500})
    assert res == {"cert_id": cid, "status": "financed", "holder": "boc", "principal": 1_000_000, "discount": 12_500,
                   "disbursed": 987_500, "days": 90, "discount_bps": 500}
    c = queries.get_cert(w.view, cid)
    assert c is not None and c["holder"] == "boc" and c["finance"]["seller"] == "tier1"
    assert c["finance"]["disbursed"] == 987_500
    assert [x["id"] for x in queries.get_holdings(w.view, "boc")["certs"]] == [cid]  # type: ignore[index]
    assert queries.get_holdings(w.view, "tier1")["certs"] == []  # type: ignore[index]
    w.fail(codes.INVALID_STATUS_TRANSITION, "boc", "ecert.split", {"cert_id": cid, "amounts": [1, 999_999]})
    w.now += 90 * DAY
    assert queries.get_cert(w.view, cid, now=w.now)["overdue"] is True  # type: ignore[index]
    assert w.ok("geely", "ecert.settle", {"cert_id": cid}) == {"cert_id": cid, "status": "settled", "paid_to": "boc",
                                                               "amount": 1_000_000}
    assert used(w) == 0
    assert queries.get_cert(w.view, cid, now=w.now)["overdue"] is False  # type: ignore[index]
    assert queries.get_holdings(w.view, "boc")["certs"] == []  # type: ignore[index]
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "ecert.settle", {"cert_id": cid})


def test_finance_decline_returns_to_active() -> None:
    w = World()
    cid = w.funded(1000)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "icbc"})
    w.fail(codes.NOT_FINANCE_BANK, "boc", "finance.decline", {"cert_id": cid, "reason": "no"})
    assert w.ok("icbc", "finance.decline", {"cert_id": cid, "reason": "risk"})["status"] == "active"
    assert cert(w, cid).finance_bank is None
    w.fail(codes.INVALID_STATUS_TRANSITION, "icbc", "finance.approve", {"cert_id": cid, "discount_bps": 1})
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": cid, "discount_bps": 0})


def test_no_financing_at_or_after_maturity() -> None:
    w = World()
    cid = w.funded(1000, maturity=w.now + DAY)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    w.now += DAY
    w.fail(codes.CERT_MATURED, "boc", "finance.approve", {"cert_id": cid, "discount_bps": 100})
    # A request pending at maturity does not block payment: the holder (who never sold) is paid.
    assert w.ok("geely", "ecert.settle", {"cert_id": cid})["paid_to"] == "tier1"


def test_settle_leaves_separately() -> None:
    w = World()
    root = w.funded(1000, maturity=w.now + 10 * DAY)
    kids = w.ok("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 400}]})["certs"]
    w.now += 10 * DAY
    w.fail(codes.INVALID_STATUS_TRANSITION, "geely", "ecert.settle", {"cert_id": root})
    assert w.ok("geely", "ecert.settle", {"cert_id": kids[0]})["paid_to"] == "tier2"
    assert used(w) == 600
    w.ok("tier1", "ecert.split", {"cert_id": kids[1], "amounts": [300, 300]})  # split is allowed after maturity
    assert used(w) == 600


def test_settle_before_maturity_refused_and_only_by_debtor() -> None:
    w = World()
    cid = w.funded(1000, maturity=w.now + DAY)
    w.now += DAY - 1
    w.fail(codes.NOT_MATURED, "geely", "ecert.settle", {"cert_id": cid})
    w.now += 1
    w.fail(codes.NOT_DEBTOR, "tier1", "ecert.settle", {"cert_id": cid})
    w.ok("geely", "ecert.settle", {"cert_id": cid})


# --- nonces and replay --------------------------------------------------------------------------------------------
def test_nonces_are_per_signer_and_typed() -> None:
    w = World()
    w.ok("boc", "org.freeze", {"org_id": "tier1"}, nonce=1)
    w.ok("boc", "org.unfreeze", {"org_id": "tier1"}, nonce="1")  # the string "1" is another nonce
    w.ok("icbc", "org.freeze", {"org_id": "tier1"}, nonce=1)  # another signer
    raw = w.raw("icbc", "org.unfreeze", {"org_id": "tier1"}, nonce=2)
    assert w.apply(raw).status == "committed"
    again = w.apply(raw)  # the ledger dedups tx ids; the executor alone still refuses the nonce
    assert again.status == "rejected" and again.error_code == codes.NONCE_REUSED


def test_queries_return_none_for_unknown_ids() -> None:
    w = World()
    assert queries.get_cert(w.view, "EC0") is None
    assert queries.get_lineage(w.view, "EC0") is None
    assert queries.get_org(w.view, "ghost") is None
    assert queries.get_holdings(w.view, "ghost") is None
    assert queries.get_credit_line(w.view, "boc", "geely") is None
    assert queries.get_trade_doc(w.view, "nope") is None
    assert queries.get_holdings(w.view, "tier1") == {"org_id": "tier1", "certs": [], "total": 0}
