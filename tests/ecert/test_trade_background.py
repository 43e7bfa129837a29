"""Trade background at every hop, invoices under contracts, KYC on approval, and the chain parameters that turn
them on (ecert/trade_background.py, ecert/rules.py, ecert/genesis.py). Every case is a real signed tx."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgpack
import pytest

from ecert import codes, queries
from ecert import state as s
from ecert.errors import GenesisError
from ecert.genesis import GenesisDoc, genesis_from_json, genesis_hash, genesis_to_json, genesis_writes
from ledger.executor import TxOutcome
from tests.ecert.world import DAY, World

ON = {"transfer_requires_trade_docs": True, "invoice_requires_contract": True, "approve_requires_kyc": True}
TRANSFERS_ON = {"transfer_requires_trade_docs": True}
"""Issuance in World.funded anchors invoices without contracts, so most tests turn on only this one."""
KYC = "4b" * 32


def anchor(w: World, issuer: str, counterparty: str, amount: int, kind: str = "invoice",
           contract_id: str | None = None, confirm: bool = True, doc_id: str | None = None) -> str:
    doc_id = doc_id or f"T-{len(w.view.items())}"
    body: dict[str, object] = {"doc_id": doc_id, "kind": kind, "doc_hash": "cd" * 32, "counterparty": counterparty,
                               "amount": amount}
    if contract_id is not None:
        body["contract_id"] = contract_id
    w.ok(issuer, "trade.anchor", body)
    if confirm:
        w.ok(counterparty, "trade.confirm", {"doc_id": doc_id})
    return doc_id


def doc(w: World, doc_id: str) -> s.TradeDoc:
    d = s.get_doc(w.view, doc_id)
    assert d is not None
    return d


def transfer(w: World, cert_id: str, to: list[tuple[str, int]], docs: list[str] | None,
             signer: str = "tier1") -> dict[str, object]:
    body: dict[str, object] = {"cert_id": cert_id, "to": [{"org": o, "amount": a} for o, a in to]}
    if docs is not None:
        body["trade_docs"] = docs
    return {"body": body, "signer": signer}


def run_transfer(w: World, cert_id: str, to: list[tuple[str, int]], docs: list[str] | None,
                 signer: str = "tier1") -> TxOutcome:
    t = transfer(w, cert_id, to, docs, signer)
    return w.run(str(t["signer"]), "ecert.transfer", t["body"])  # type: ignore[arg-type]


# --- one real tx per new code --------------------------------------------------------------------------------------
def c_trade_docs_required(w: World) -> TxOutcome:
    w = World(params=TRANSFERS_ON)
    cert = w.funded(1000)
    return run_transfer(w, cert, [("tier2", 100)], None)


def c_not_a_trade_doc(w: World) -> TxOutcome:
    cert = w.funded(1000)
    delivery = anchor(w, "tier2", "tier1", 500, kind="delivery")
    return run_transfer(w, cert, [("tier2", 100)], [delivery])


def c_trade_doc_parties_mismatch(w: World) -> TxOutcome:
    cert = w.funded(1000)
    elsewhere = anchor(w, "tier3", "tier1", 500)  # tier1 buys from tier3, but pays tier2
    return run_transfer(w, cert, [("tier2", 100)], [elsewhere])


def c_trade_headroom_exceeded(w: World) -> TxOutcome:
    cert = w.funded(1000)
    inv = anchor(w, "tier2", "tier1", 99)
    return run_transfer(w, cert, [("tier2", 100)], [inv])


def c_contract_required(w: World) -> TxOutcome:
    w = World(params=ON)
    return w.run("tier2", "trade.anchor", {"doc_id": "I1", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "tier1", "amount": 5})


def c_not_a_contract(w: World) -> TxOutcome:
    inv = anchor(w, "tier2", "tier1", 500)
    return w.run("tier2", "trade.anchor", {"doc_id": "I2", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "tier1", "amount": 5, "contract_id": inv})


def c_contract_parties_mismatch(w: World) -> TxOutcome:
    contract = anchor(w, "tier1", "geely", 500, kind="contract")
    return w.run("tier2", "trade.anchor", {"doc_id": "I2", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "geely", "amount": 5, "contract_id": contract})


def c_contract_amount_exceeded(w: World) -> TxOutcome:
    contract = anchor(w, "tier1", "geely", 100, kind="contract")
    return w.run("geely", "trade.anchor", {"doc_id": "I2", "kind": "invoice", "doc_hash": "00" * 32,
                                            "counterparty": "tier1", "amount": 101, "contract_id": contract})


def c_kyc_required(w: World) -> TxOutcome:
    w = World(params=ON)
    k = w.key("newco")
    w.ok("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier", "sign_pk": k.sign_pk,
                                   "box_pk": k.box_pk})
    return w.run("boc", "org.approve", {"org_id": "newco"})


TRADE_CASES: dict[str, Callable[[World], TxOutcome]] = {
    name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_") and callable(fn)
}
"""Joins tests/ecert/test_codes.py CASES (each code hit by a real signed tx)."""


@pytest.mark.parametrize("code", sorted(TRADE_CASES))
def test_trade_code(code: str) -> None:
    outcome = TRADE_CASES[code](World())
    assert (outcome.status, outcome.error_code) == ("rejected", code), outcome.error_message


# --- transfers draw on trade documents ------------------------------------------------------------------------------
def test_transfer_draws_per_recipient_in_the_order_listed() -> None:
    w = World(params=TRANSFERS_ON)
    cert = w.funded(1000)
    c2 = anchor(w, "tier2", "tier1", 300, kind="contract")
    i2 = anchor(w, "tier2", "tier1", 100, contract_id=c2)  # under c2: c2 keeps 200 for other trade
    i3 = anchor(w, "tier1", "tier3", 250)  # either party may anchor it
    kids = w.ok("tier1", "ecert.transfer", transfer(w, cert, [("tier2", 250), ("tier3", 200)],
                                                    [i3, i2, c2])["body"])["certs"]  # type: ignore[arg-type]
    got = [s.get_cert(w.view, k) for k in kids]
    assert [(c.holder, c.amount, c.trade_docs) for c in got if c is not None] == [
        ("tier2", 250, ((i2, 100), (c2, 150))), ("tier3", 200, ((i3, 200),)), ("tier1", 550, ())]
    assert (doc(w, c2).invoiced, doc(w, c2).drawn, doc(w, i2).drawn, doc(w, i3).drawn) == (100, 150, 100, 200)
    # c2 has 300 - 100 invoiced - 150 drawn = 50 left; tier2 cannot be paid 51 on it.
    rest = kids[2]
    assert run_transfer(w, rest, [("tier2", 51)], [c2]).error_code == codes.TRADE_HEADROOM_EXCEEDED
    w.ok("tier1", "ecert.transfer", transfer(w, rest, [("tier2", 50)], [c2])["body"])  # type: ignore[arg-type]
    assert queries.get_cert(w.view, kids[0])["trade_docs"] == [  # type: ignore[index]
        {"doc_id": i2, "amount": 100}, {"doc_id": c2, "amount": 150}]


def test_every_listed_doc_must_belong_to_a_recipient_and_be_confirmed() -> None:
    w = World(params=TRANSFERS_ON)
    cert = w.funded(1000)
    i2 = anchor(w, "tier2", "tier1", 500)
    i3 = anchor(w, "tier3", "tier1", 500)
    unconfirmed = anchor(w, "tier2", "tier1", 500, confirm=False)
    assert run_transfer(w, cert, [("tier2", 100)], [i2, i3]).error_code == codes.TRADE_DOC_PARTIES_MISMATCH
    assert run_transfer(w, cert, [("tier2", 100)], [unconfirmed]).error_code == codes.DOC_NOT_CONFIRMED
    assert run_transfer(w, cert, [("tier2", 100)], ["nope"]).error_code == codes.UNKNOWN_DOC
    # Every recipient is covered in full, also one whose documents the list forgot.
    assert run_transfer(w, cert, [("tier2", 100), ("tier3", 1)], [i2]).error_code == codes.TRADE_HEADROOM_EXCEEDED
    assert run_transfer(w, cert, [("tier2", 100), ("tier3", 1)], [i2, i3]).status == "committed"


def test_one_headroom_for_issue_transfer_and_contract() -> None:
    """An invoice that backs an issue for 600 has 400 left to back a transfer the other way."""
    w = World()
    w.grant()
    inv = w.invoice(1000)  # tier1 sells to geely
    cert = w.issue(600, invoice_ids=[inv])
    other = w.issue(300, invoice_ids=[w.invoice(300)])
    assert run_transfer(w, cert, [("geely", 401)], [inv]).error_code == codes.TRADE_HEADROOM_EXCEEDED
    w.ok("tier1", "ecert.transfer", transfer(w, cert, [("geely", 400)], [inv])["body"])  # type: ignore[arg-type]
    assert (doc(w, inv).backed, doc(w, inv).drawn) == (600, 400)
    w.fail(codes.INVOICE_HEADROOM_EXCEEDED, "geely", "ecert.issue",
           {"to": "tier1", "amount": 1, "maturity": w.now + DAY, "bank": "boc", "invoice_ids": [inv]})
    assert other


def test_without_the_parameter_trade_docs_are_optional() -> None:
    w = World()
    cert = w.funded(1000)
    kids = w.ok("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 10}]})["certs"]
    assert s.get_cert(w.view, kids[0]).trade_docs == ()  # type: ignore[union-attr]
    w.ok("tier2", "trade.anchor", {"doc_id": "I9", "kind": "invoice", "doc_hash": "00" * 32,
                                   "counterparty": "tier1", "amount": 5})  # no contract needed either


def test_split_and_financing_need_no_background() -> None:
    """A split keeps the value with its holder; financing sells to a bank, whose decision it is."""
    w = World(params=TRANSFERS_ON)
    cert = w.funded(1000)
    a, b = w.ok("tier1", "ecert.split", {"cert_id": cert, "amounts": [400, 600]})["certs"]
    w.ok("tier1", "finance.request", {"cert_id": a, "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": a, "discount_bps": 100})
    assert b


def test_invoices_of_a_contract_stay_within_its_amount() -> None:
    w = World(params=ON)
    contract = anchor(w, "geely", "tier1", 1000, kind="contract")
    unconfirmed = anchor(w, "geely", "tier1", 1000, kind="contract", confirm=False)
    body = {"kind": "invoice", "doc_hash": "00" * 32, "counterparty": "geely", "amount": 600}
    w.fail(codes.DOC_NOT_CONFIRMED, "tier1", "trade.anchor", {**body, "doc_id": "I1", "contract_id": unconfirmed})
    w.fail(codes.UNKNOWN_DOC, "tier1", "trade.anchor", {**body, "doc_id": "I1", "contract_id": "ghost"})
    w.fail(codes.NOT_AN_INVOICE, "tier1", "trade.anchor",
           {**body, "doc_id": "I1", "kind": "delivery", "contract_id": contract})
    w.ok("tier1", "trade.anchor", {**body, "doc_id": "I1", "contract_id": contract})
    assert (doc(w, contract).invoiced, doc(w, "I1").contract_id) == (600, contract)
    w.fail(codes.CONTRACT_AMOUNT_EXCEEDED, "geely", "trade.anchor",
           {**body, "counterparty": "tier1", "doc_id": "I2", "amount": 401, "contract_id": contract})
    w.ok("geely", "trade.anchor", {**body, "counterparty": "tier1", "doc_id": "I2", "amount": 400,
                                   "contract_id": contract})
    assert queries.get_trade_doc(w.view, contract)["invoiced"] == 1000  # type: ignore[index]
    # Contracts and deliveries need no contract of their own, even with the parameter on.
    anchor(w, "geely", "tier1", 5, kind="delivery")


# --- KYC -----------------------------------------------------------------------------------------------------------
def test_approve_records_the_kyc_hash() -> None:
    w = World(params=ON)
    k = w.key("newco")
    w.ok("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier", "sign_pk": k.sign_pk,
                                   "box_pk": k.box_pk})
    w.fail(codes.BAD_FIELD, "boc", "org.approve", {"org_id": "newco", "kyc_hash": "XY"})
    assert w.ok("boc", "org.approve", {"org_id": "newco", "kyc_hash": KYC}) == {
        "org_id": "newco", "status": "active", "kyc_hash": KYC}
    assert s.get_org(w.view, "newco").kyc_hash == KYC  # type: ignore[union-attr]
    assert queries.get_org(w.view, "newco")["kyc_hash"] == KYC  # type: ignore[index]
    w.fail(codes.UNKNOWN_FIELD, "boc", "org.freeze", {"org_id": "newco", "kyc_hash": KYC})
    w.ok("boc", "org.freeze", {"org_id": "newco"})
    assert s.get_org(w.view, "newco").kyc_hash == KYC  # type: ignore[union-attr]  # kept


def test_approve_without_kyc_on_an_old_chain_is_as_before() -> None:
    w = World()
    k = w.key("newco")
    w.ok("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier", "sign_pk": k.sign_pk,
                                   "box_pk": k.box_pk})
    assert w.ok("boc", "org.approve", {"org_id": "newco"}) == {"org_id": "newco", "status": "active"}
    # The record encodes with the fields it had before KYC existed: an old chain's state bytes do not change.
    raw = w.view.get(s.org_key("newco"))
    assert raw is not None and len(msgpack.unpackb(raw)) == 9


# --- chain parameters in genesis -----------------------------------------------------------------------------------
def _v1_hash(doc: GenesisDoc) -> bytes:
    orgs = [[o.id, o.name, o.role, o.sign_pk, o.box_pk] for o in doc.orgs]
    return hashlib.sha256(b"ecert-genesis-v1" + msgpack.packb([doc.chain_id, doc.genesis_time, orgs])).digest()


def test_genesis_without_params_keeps_its_hash_and_state() -> None:
    old, new = World(legacy=True), World(legacy=False, params=ON)
    assert genesis_hash(old.genesis) == _v1_hash(old.genesis)
    assert genesis_hash(new.genesis) != genesis_hash(old.genesis)
    assert s.CHAIN_PARAMS_KEY not in dict(genesis_writes(old.genesis))
    assert s.chain_params(old.view) == s.ChainParams()
    for _, value in genesis_writes(old.genesis):
        assert len(msgpack.unpackb(value)) == 9  # org records exactly as before
    params = s.chain_params(new.view)
    assert (params.transfer_requires_trade_docs, params.approve_requires_kyc, params.dispute_resolution_ms) == (
        True, True, s.ChainParams().dispute_resolution_ms)


def test_genesis_params_round_trip_through_json() -> None:
    doc = World(params={**ON, "dispute_resolution_ms": 5}).genesis
    again = genesis_from_json(genesis_to_json(doc))
    assert again == doc and genesis_hash(again) == genesis_hash(doc)
    assert "params" not in genesis_to_json(World(legacy=True).genesis)


@pytest.mark.parametrize(("params", "match"), [
    ({"no_such": True}, "unknown chain parameter"),
    ({"approve_requires_kyc": 1}, "true or false"),
    ({"dispute_resolution_ms": True}, "integer"),
    ({"dispute_resolution_ms": -1}, "integer"),
    ([], "must be an object"),
])
def test_bad_genesis_params(params: object, match: str) -> None:
    obj = genesis_to_json(World().genesis)
    obj["params"] = params
    with pytest.raises(GenesisError, match=match):
        genesis_from_json(obj)


def test_records_without_new_fields_encode_as_before() -> None:
    cert = s.Cert("EC1", "EC1", None, "geely", "tier1", 5, 9, "active", "boc", 1, "t", 1)
    d = s.TradeDoc("D", "invoice", "00" * 32, "a", "b", 5, "anchored", 1)
    assert [len(msgpack.unpackb(s.encode_record(r))) for r in (cert, d)] == [25, 11]
    for record in (cert._replace(trade_docs=(("D", 1),)), d._replace(drawn=1)):
        assert s.decode_record(type(record), s.encode_record(record)) == record
