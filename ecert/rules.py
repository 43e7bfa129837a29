"""The rules: one pure transition per transaction kind, over a StateView (CONTRACT §3, docs/RULES.md).

Each `apply_<kind>(view, tx, now)` first checks everything (reads only), then writes, and returns the outcome's
`result` map. A broken rule raises `TxRejected` before the first write, so a rejected transaction leaves the view
untouched even without the ledger's rollback. Status changes go through ecert/lifecycle.py; `now` is the block
time, the only clock a rule reads. Authentication (signature, signer active, nonce) happens before, in
ecert/executor.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from consensus.invariant import require
from ecert import codes, disputes, financing, lifecycle, settlement, trade_background
from ecert import state as s
from ecert.errors import TxRejected
from ecert.governance import apply_member_approve, apply_member_propose
from ecert.settlement import apply_ecert_settle
from ecert.tx import (
    TX_TYPES,
    CertRef,
    CreditGrant,
    EcertIssue,
    EcertSplit,
    EcertTransfer,
    FinanceApprove,
    FinanceDecline,
    FinanceRequest,
    OrgAction,
    OrgRegister,
    OrgRotateKey,
    TradeAnchor,
    TradeConfirm,
    Tx,
    verify_key_proof,
)
from ledger.state_view import StateView

MS_PER_DAY = 86_400_000
DAYS_PER_YEAR = 360  # money-market convention for the discount
BPS = 10_000
CERT_ID_HEX_CHARS = 32

ORG_STATUS_SIGNERS: Mapping[str, tuple[str, ...]] = {
    "org.approve": (s.BANK,),
    "org.freeze": (s.BANK, s.REGULATOR),
    "org.unfreeze": (s.BANK, s.REGULATOR),
}
"""Who may sign each org status change: a bank admits members; the regulator may also freeze and unfreeze."""

REGULATOR_TX_TYPES = frozenset({"org.freeze", "org.unfreeze", "org.rotate_key", "member.propose", "member.approve",
                                "dispute.resolve", "complaint.close"})
"""The only kinds a regulator signs (CONTRACT §6): of section 3's, org.freeze and org.unfreeze; it never trades
or lends. It keeps its own key (org.rotate_key), and membership is governance's to judge (ecert/governance.py:
the regulator approves the add_learner of its own node, and runs no voting node to propose from). Disputes and
complaints escalate to it (ecert/disputes.py): it resolves disputes and closes complaints, but opens or files
none. Checked at authentication (ecert/executor.py), so admission refuses the rest too."""


def cert_id_for(tx_id: str, index: int) -> str:
    """Certificate ids are derived from the creating tx id and the creation index (0, 1, ...)."""
    digest = hashlib.sha256(bytes.fromhex(tx_id) + index.to_bytes(4, "big")).hexdigest()
    return "EC" + digest[:CERT_ID_HEX_CHARS]


def discount_for(amount: int, discount_bps: int, now: int, maturity: int) -> tuple[int, int]:
    """(days, discount): days = ceil((maturity - now) / 1 day); discount = floor(amount*bps*days / (10000*360))."""
    require(now < maturity, "discount needs a maturity in the future")
    days = -(-(maturity - now) // MS_PER_DAY)
    return days, amount * discount_bps * days // (BPS * DAYS_PER_YEAR)


# --- shared checks ------------------------------------------------------------------------------------------------
def _org(view: StateView, org_id: str) -> s.Org:
    org = s.get_org(view, org_id)
    if org is None:
        raise TxRejected(codes.UNKNOWN_ORG, f"no organisation {org_id!r}")
    return org


def _active_org(view: StateView, org_id: str) -> s.Org:
    org = _org(view, org_id)
    if org.status != s.ORG_ACTIVE:
        raise TxRejected(codes.ORG_NOT_ACTIVE, f"organisation {org_id!r} is {org.status}")
    return org


def _signer_role(view: StateView, tx: Tx, role: str) -> s.Org:
    return _signer_role_in(view, tx, (role,))


def _signer_role_in(view: StateView, tx: Tx, roles: tuple[str, ...]) -> s.Org:
    org = s.signer_org(view, tx.signer)
    if org.role not in roles:
        raise TxRejected(codes.ROLE_NOT_ALLOWED,
                         f"{tx.type} needs a {' or '.join(roles)} signer; {tx.signer} is a {org.role}")
    return org


def _business_party(view: StateView, org_id: str) -> s.Org:
    """An active org that may receive a certificate or be a trade document's counterparty: not the regulator,
    which signs nothing that would accept, confirm or pass it on."""
    org = _active_org(view, org_id)
    if org.role == s.REGULATOR:
        raise TxRejected(codes.REGULATOR_NOT_PARTY, f"{org_id!r} is the regulator; it takes no part in trade")
    return org


def _active_bank(view: StateView, bank_id: str) -> s.Org:
    bank = _org(view, bank_id)
    if bank.role != "bank":
        raise TxRejected(codes.NOT_A_BANK, f"{bank_id!r} is not a bank")
    if bank.status != s.ORG_ACTIVE:
        raise TxRejected(codes.ORG_NOT_ACTIVE, f"bank {bank_id!r} is {bank.status}")
    return bank


def _cert(view: StateView, cert_id: str) -> s.Cert:
    cert = s.get_cert(view, cert_id)
    if cert is None:
        raise TxRejected(codes.UNKNOWN_CERT, f"no certificate {cert_id!r}")
    return cert


def _held_cert(view: StateView, tx: Tx, cert_id: str) -> s.Cert:
    cert = _cert(view, cert_id)
    if cert.holder != tx.signer:
        raise TxRejected(codes.NOT_HOLDER, f"certificate {cert_id}: the signer is not the holder")
    return cert


def _before_maturity(cert: s.Cert, now: int) -> None:
    if now >= cert.maturity:
        raise TxRejected(codes.CERT_MATURED, f"certificate {cert.id} matured at {cert.maturity}; it can only be settled")


def _below_depth_max(cert: s.Cert) -> None:
    if cert.depth >= s.LINEAGE_DEPTH_MAX:
        raise TxRejected(codes.LINEAGE_TOO_DEEP,
                         f"certificate {cert.id} is {cert.depth} deep, the most a lineage may be; it can only be "
                         "financed or settled")


def _new_children(view: StateView, parent: s.Cert, tx: Tx, now: int,
                  parts: list[tuple[str, int]], backing: trade_background.Draws | None = None) -> list[str]:
    """Write the parent as `split` with one child per (holder, amount) part, in order; return the child ids.
    `backing`: per leading part, the trade documents its transfer drew on (recorded on that child)."""
    ids = [cert_id_for(tx.tx_id, i) for i in range(len(parts))]
    require(sum(amount for _, amount in parts) == parent.amount, "children must sum to the parent")
    ordinals = s.next_ordinals(view, parent.root_id, len(parts))
    for i, (child_id, (holder, amount)) in enumerate(zip(ids, parts, strict=True)):
        drew = () if backing is None or i >= len(backing) else tuple((doc.id, take) for doc, take in backing[i])
        child = s.Cert(id=child_id, root_id=parent.root_id, parent_id=parent.id, debtor=parent.debtor,
                       holder=holder, amount=amount, maturity=parent.maturity, status=s.ACTIVE, bank=parent.bank,
                       created_at=now, created_by=tx.tx_id, updated_at=now, depth=parent.depth + 1,
                       trade_docs=drew, ordinal=ordinals[i])
        if view.get(s.cert_key(child_id)) is not None:  # an invariant; the message is formatted only if broken
            require(False, f"derived certificate id {child_id} already exists")
        s.put_cert(view, child, None)
    status = lifecycle.next_cert_status(parent.status, tx.type)
    s.put_cert(view, parent._replace(status=status, children=tuple(ids), updated_at=now), parent)
    return ids


# --- organisations ------------------------------------------------------------------------------------------------
def apply_org_register(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: OrgRegister = tx.body
    if s.get_org(view, body.org_id) is not None:
        raise TxRejected(codes.ORG_EXISTS, f"organisation {body.org_id!r} is already registered")
    if body.role == s.REGULATOR:
        raise TxRejected(codes.REGULATOR_GENESIS_ONLY, "the regulator exists only from genesis")
    s.put_org(view, s.Org(id=body.org_id, name=body.name, role=body.role, sign_pk=body.sign_pk,
                          box_pk=body.box_pk, status=s.ORG_PENDING, registered_at=now, updated_at=now))
    return {"org_id": body.org_id, "status": s.ORG_PENDING}


def apply_org_status(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: OrgAction = tx.body
    _signer_role_in(view, tx, ORG_STATUS_SIGNERS[tx.type])
    if body.org_id == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "an organisation cannot change its own status")
    org = _org(view, body.org_id)
    if org.role == s.REGULATOR:
        raise TxRejected(codes.REGULATOR_STATUS_FIXED, "no transaction changes the regulator's status")
    status = lifecycle.next_org_status(org.status, tx.type)
    if tx.type != "org.approve":
        s.put_org(view, org._replace(status=status, updated_at=now, reason=body.reason))
        return {"org_id": org.id, "status": status}
    if body.kyc_hash is None and s.chain_params(view).approve_requires_kyc:
        raise TxRejected(codes.KYC_REQUIRED, "org.approve must carry kyc_hash: the hash of the KYC evidence")
    s.put_org(view, org._replace(status=status, updated_at=now, reason=body.reason, kyc_hash=body.kyc_hash))
    if body.kyc_hash is None:
        return {"org_id": org.id, "status": status}  # as before KYC existed: old chains replay the same outcomes
    return {"org_id": org.id, "status": status, "kyc_hash": body.kyc_hash}


def apply_org_rotate_key(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """Replace the signer's keys; the executor already checked the tx under the current (old) sign key, and
    every later tx and signed request is checked under the new one."""
    body: OrgRotateKey = tx.body
    org = s.signer_org(view, tx.signer)
    if not verify_key_proof(body.sign_pk, tx.nonce, body.proof):
        raise TxRejected(codes.BAD_KEY_PROOF, "proof is not the new sign key's signature over this tx's nonce")
    s.put_org(view, org._replace(sign_pk=body.sign_pk, box_pk=body.box_pk, updated_at=now))
    return {"org_id": org.id, "sign_pk": body.sign_pk, "box_pk": body.box_pk}


# --- credit lines -------------------------------------------------------------------------------------------------
def apply_credit_grant(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: CreditGrant = tx.body
    _signer_role(view, tx, "bank")
    core = _org(view, body.core)
    if core.role != "core":
        raise TxRejected(codes.NOT_A_CORE, f"{body.core!r} is a {core.role}, not a core enterprise")
    if core.status != s.ORG_ACTIVE:
        raise TxRejected(codes.ORG_NOT_ACTIVE, f"core enterprise {body.core!r} is {core.status}")
    if body.expires_at <= now:
        raise TxRejected(codes.EXPIRY_NOT_IN_FUTURE, f"expires_at {body.expires_at} is not after block time {now}")
    old = s.get_credit(view, tx.signer, body.core)
    used = 0 if old is None else old.used
    if body.limit < used:
        raise TxRejected(codes.LIMIT_BELOW_USED, f"limit {body.limit} is below the {used} already used")
    s.put_credit(view, s.CreditLine(bank=tx.signer, core=body.core, limit=body.limit, used=used,
                                    expires_at=body.expires_at, granted_at=now))
    return {"bank": tx.signer, "core": body.core, "limit": body.limit, "used": used, "expires_at": body.expires_at}


# --- trade documents ----------------------------------------------------------------------------------------------
def apply_trade_anchor(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: TradeAnchor = tx.body
    if s.get_doc(view, body.doc_id) is not None:
        raise TxRejected(codes.DOC_EXISTS, f"trade document {body.doc_id!r} already anchored")
    if body.counterparty == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "a trade document needs two different parties")
    _business_party(view, body.counterparty)
    for org_id, _ in body.ciphertext or ():
        if org_id in (tx.signer, body.counterparty):
            continue
        org = s.get_org(view, org_id)
        if org is None or org.role not in (s.BANK, s.REGULATOR):
            raise TxRejected(codes.BAD_CIPHERTEXT_RECIPIENT,
                             f"ciphertexts are for the two parties, a bank and the regulator, not {org_id!r}")
    contract = trade_background.check_invoice_contract(view, tx.signer, body,
                                                       s.chain_params(view).invoice_requires_contract)
    s.put_doc(view, s.TradeDoc(id=body.doc_id, kind=body.kind, doc_hash=body.doc_hash, issuer=tx.signer,
                               counterparty=body.counterparty, amount=body.amount, status=s.DOC_ANCHORED,
                               anchored_at=now, ciphertext=body.ciphertext or (), contract_id=body.contract_id))
    trade_background.write_invoice_contract(view, contract, body.amount)
    return {"doc_id": body.doc_id, "status": s.DOC_ANCHORED}


def apply_trade_confirm(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: TradeConfirm = tx.body
    doc = s.get_doc(view, body.doc_id)
    if doc is None:
        raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {body.doc_id!r}")
    if doc.counterparty != tx.signer:
        raise TxRejected(codes.NOT_COUNTERPARTY, f"trade document {doc.id}: the signer is not the counterparty")
    status = lifecycle.next_doc_status(doc.status, tx.type)
    disputes.check_doc_unlocked(view, doc.id)
    s.put_doc(view, doc._replace(status=status, confirmed_at=now))
    return {"doc_id": doc.id, "status": status}


# --- certificates -------------------------------------------------------------------------------------------------
def _allocate_invoices(view: StateView, debtor: str, seller: str, invoice_ids: tuple[str, ...],
                       amount: int) -> list[tuple[s.TradeDoc, int]]:
    """Back `amount` with the invoices' headroom, greedily in the order given. Reads only."""
    parties = {debtor, seller}
    allocation: list[tuple[s.TradeDoc, int]] = []
    remaining = amount
    for doc_id in invoice_ids:
        doc = s.get_doc(view, doc_id)
        if doc is None:
            raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {doc_id!r}")
        if doc.kind != "invoice":
            raise TxRejected(codes.NOT_AN_INVOICE, f"trade document {doc_id} is not an invoice")
        if doc.status != s.DOC_CONFIRMED:
            raise TxRejected(codes.DOC_NOT_CONFIRMED, f"invoice {doc_id} is not confirmed by both parties")
        if {doc.issuer, doc.counterparty} != parties:
            raise TxRejected(codes.INVOICE_PARTIES_MISMATCH,
                             f"invoice {doc_id} is not between the debtor {debtor} and the recipient {seller}")
        disputes.check_doc_unlocked(view, doc_id)
        take = min(remaining, trade_background.headroom(doc))
        allocation.append((doc, take))
        remaining -= take
    if remaining > 0:
        raise TxRejected(codes.INVOICE_HEADROOM_EXCEEDED,
                         f"the invoices can back {amount - remaining} more, not {amount}")
    return allocation


def apply_ecert_issue(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: EcertIssue = tx.body
    _signer_role(view, tx, "core")
    if body.to == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "a core enterprise cannot issue a certificate to itself")
    _business_party(view, body.to)
    if body.maturity <= now:
        raise TxRejected(codes.MATURITY_NOT_IN_FUTURE, f"maturity {body.maturity} is not after block time {now}")
    accept_by = settlement.check_term(view, body.maturity, now)
    _active_bank(view, body.bank)
    line = s.get_credit(view, body.bank, tx.signer)
    if line is None:
        raise TxRejected(codes.NO_CREDIT_LINE, f"{body.bank} has granted no credit line to {tx.signer}")
    if now >= line.expires_at:
        raise TxRejected(codes.CREDIT_LINE_EXPIRED, f"credit line {body.bank}/{tx.signer} expired at {line.expires_at}")
    if line.used + body.amount > line.limit:
        raise TxRejected(codes.CREDIT_LIMIT_EXCEEDED,
                         f"{line.used} used + {body.amount} is over the limit {line.limit}")
    allocation = _allocate_invoices(view, tx.signer, body.to, body.invoice_ids, body.amount)

    cert_id = cert_id_for(tx.tx_id, 0)
    require(s.get_cert(view, cert_id) is None, f"derived certificate id {cert_id} already exists")
    cert = s.Cert(id=cert_id, root_id=cert_id, parent_id=None, debtor=tx.signer, holder=body.to,
                  amount=body.amount, maturity=body.maturity, status=s.ISSUED, bank=body.bank, created_at=now,
                  created_by=tx.tx_id, updated_at=now,
                  invoices=tuple((doc.id, take) for doc, take in allocation if take > 0), accept_by=accept_by)
    require(s.next_ordinals(view, cert_id, 1) == [0], f"certificate {cert_id} starts a lineage")
    s.put_cert(view, cert, None)
    settlement.index_acceptance(view, cert)
    s.put_credit(view, line._replace(used=line.used + body.amount))
    for doc, take in allocation:
        if take > 0:
            s.put_doc(view, doc._replace(backed=doc.backed + take))
    return {"certs": [cert_id]}


def apply_ecert_accept(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: CertRef = tx.body
    cert = _held_cert(view, tx, body.cert_id)
    status = lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    settlement.check_acceptance_open(cert, now)
    s.put_cert(view, cert._replace(status=status, updated_at=now), cert)
    settlement.unindex_acceptance(view, cert)
    return {"cert_id": cert.id, "status": status}


def apply_ecert_reject(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: CertRef = tx.body
    cert = _held_cert(view, tx, body.cert_id)
    status = lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    settlement.cancel_root(view, cert, status, now)
    return {"cert_id": cert.id, "status": status}


def apply_ecert_transfer(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: EcertTransfer = tx.body
    cert = _held_cert(view, tx, body.cert_id)
    lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    settlement.check_unpaid(cert)
    _before_maturity(cert, now)
    seen: set[str] = set()
    for org_id, _ in body.to:
        if org_id == tx.signer:
            raise TxRejected(codes.SAME_PARTY, "the holder keeps the remainder; it cannot be a recipient")
        if org_id in seen:
            raise TxRejected(codes.DUPLICATE_RECIPIENT, f"{org_id} is listed twice")
        seen.add(org_id)
        _business_party(view, org_id)
    total = sum(amount for _, amount in body.to)
    if total > cert.amount:
        raise TxRejected(codes.AMOUNTS_EXCEED_CERT, f"transfers total {total}, the certificate is {cert.amount}")
    _below_depth_max(cert)
    if body.trade_docs is None and s.chain_params(view).transfer_requires_trade_docs:
        raise TxRejected(codes.TRADE_DOCS_REQUIRED,
                         "a transfer must list trade_docs: confirmed contracts or invoices with each recipient")
    parts = list(body.to)
    draws = trade_background.allocate_transfer(view, tx.signer, parts, body.trade_docs)
    if total < cert.amount:
        parts.append((cert.holder, cert.amount - total))
    certs = _new_children(view, cert, tx, now, parts, draws)
    trade_background.write_draws(view, draws)
    return {"certs": certs}


def apply_ecert_split(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: EcertSplit = tx.body
    cert = _held_cert(view, tx, body.cert_id)
    lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    settlement.check_unpaid(cert)
    if sum(body.amounts) != cert.amount:
        raise TxRejected(codes.SPLIT_SUM_MISMATCH, f"parts sum to {sum(body.amounts)}, the certificate is {cert.amount}")
    _below_depth_max(cert)
    return {"certs": _new_children(view, cert, tx, now, [(cert.holder, amount) for amount in body.amounts])}


def apply_finance_request(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: FinanceRequest = tx.body
    cert = _held_cert(view, tx, body.cert_id)
    status = lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    settlement.check_unpaid(cert)
    _before_maturity(cert, now)
    if body.bank == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "a bank cannot finance a certificate with itself")
    _active_bank(view, body.bank)
    asked = cert.asked if body.bank in cert.asked else tuple(sorted((*cert.asked, body.bank)))
    s.put_cert(view, cert._replace(status=status, finance_bank=body.bank, finance_requested_at=now,
                             updated_at=now, asked=asked), cert)
    return {"cert_id": cert.id, "status": status, "bank": body.bank}


def _financing_cert(view: StateView, tx: Tx, cert_id: str) -> tuple[s.Cert, str]:
    cert = _cert(view, cert_id)
    # The status is checked before the bank (a stable order), so the message must not tell a bank that was
    # never asked what the status is.
    status = lifecycle.CERT_TRANSITIONS.get((cert.status, tx.type))
    if status is None:
        raise TxRejected(codes.INVALID_STATUS_TRANSITION, f"{tx.type} needs a certificate awaiting financing")
    if cert.finance_bank != tx.signer:
        raise TxRejected(codes.NOT_FINANCE_BANK, f"certificate {cert.id}: the signer is not the bank asked")
    disputes.check_cert_unlocked(view, cert.id)
    return cert, status


def apply_finance_approve(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: FinanceApprove = tx.body
    cert, status = _financing_cert(view, tx, body.cert_id)
    _before_maturity(cert, now)
    days, discount = discount_for(cert.amount, body.discount_bps, now, cert.maturity)
    if discount >= cert.amount:
        raise TxRejected(codes.DISCOUNT_TOO_LARGE, f"discount {discount} leaves nothing of {cert.amount} to disburse")
    exposed = (cert.holder,) if cert.holder == cert.debtor else (cert.holder, cert.debtor)  # the seller, the debtor
    financing.check_limits(view, tx.signer, exposed, cert.amount)
    disbursed = cert.amount - discount
    s.put_cert(view, cert._replace(status=status, holder=tx.signer, seller=cert.holder,
                             discount_bps=body.discount_bps, discount_days=days, discount=discount,
                             disbursed=disbursed, financed_at=now, updated_at=now,
                             recourse=bool(body.recourse)), cert)
    financing.add_exposure(view, tx.signer, exposed, cert.amount)
    result = {"cert_id": cert.id, "status": status, "holder": tx.signer, "principal": cert.amount,
              "discount": discount, "disbursed": disbursed, "days": days, "discount_bps": body.discount_bps}
    if body.recourse is not None:  # omitted: the result is as before recourse existed
        result["recourse"] = body.recourse
    return result


def apply_finance_decline(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: FinanceDecline = tx.body
    cert, status = _financing_cert(view, tx, body.cert_id)
    s.put_cert(view, cert._replace(status=status, finance_bank=None, finance_requested_at=None, updated_at=now),
               cert)
    return {"cert_id": cert.id, "status": status}


RULES: Mapping[str, Callable[[StateView, Tx, int], dict[str, Any]]] = {
    "org.register": apply_org_register,
    "org.approve": apply_org_status,
    "org.freeze": apply_org_status,
    "org.unfreeze": apply_org_status,
    "org.rotate_key": apply_org_rotate_key,
    "credit.grant": apply_credit_grant,
    "trade.anchor": apply_trade_anchor,
    "trade.confirm": apply_trade_confirm,
    "ecert.issue": apply_ecert_issue,
    "ecert.accept": apply_ecert_accept,
    "ecert.reject": apply_ecert_reject,
    "ecert.transfer": apply_ecert_transfer,
    "ecert.split": apply_ecert_split,
    "finance.request": apply_finance_request,
    "finance.approve": apply_finance_approve,
    "finance.decline": apply_finance_decline,
    # payment, default, revoke (ecert/settlement.py); financing limits and recourse (ecert/financing.py)
    "ecert.settle": apply_ecert_settle,
    "ecert.pay": settlement.apply_ecert_pay,
    "ecert.settle_root": settlement.apply_ecert_settle_root,
    "ecert.default": settlement.apply_ecert_default,
    "ecert.revoke": settlement.apply_ecert_revoke,
    "recourse.repay": financing.apply_recourse_repay,
    "recourse.write_off": financing.apply_recourse_write_off,
    "finance.limit": financing.apply_finance_limit,
    # membership governance (ecert/governance.py)
    "member.propose": apply_member_propose,
    "member.approve": apply_member_approve,
    # disputes and complaints (ecert/disputes.py)
    "dispute.open": disputes.apply_dispute_open,
    "dispute.respond": disputes.apply_dispute_respond,
    "dispute.resolve": disputes.apply_dispute_resolve,
    "complaint.file": disputes.apply_complaint_file,
    "complaint.respond": disputes.apply_complaint_respond,
    "complaint.escalate": disputes.apply_complaint_escalate,
    "complaint.close": disputes.apply_complaint_close,
}


def check_rule_table(kinds: Iterable[str], rules: Mapping[str, object],
                     transitions: Iterable[Mapping[tuple[str, str], str]]) -> None:
    """Raise InvariantViolation unless every tx kind has exactly one rule, every rule is for a tx kind, and every
    status transition is for a tx kind: a kind the codec admits but no rule applies would crash the executor."""
    kinds = tuple(kinds)
    require(len(set(kinds)) == len(kinds), f"tx kinds listed twice: {sorted(k for k in kinds if kinds.count(k) > 1)}")
    require(set(rules) <= set(kinds), f"rules for unknown tx kinds: {sorted(set(rules) - set(kinds))}")
    require(set(kinds) <= set(rules), f"tx kinds without a rule: {sorted(set(kinds) - set(rules))}")
    moved = {kind for table in transitions for _, kind in table}
    require(moved <= set(kinds), f"status transitions for unknown tx kinds: {sorted(moved - set(kinds))}")


check_rule_table(TX_TYPES, RULES,
                 (lifecycle.CERT_TRANSITIONS, lifecycle.ORG_TRANSITIONS, lifecycle.DOC_TRANSITIONS,
                  lifecycle.DISPUTE_TRANSITIONS, lifecycle.COMPLAINT_TRANSITIONS))
require(not REGULATOR_TX_TYPES - set(TX_TYPES), "REGULATOR_TX_TYPES names a kind that does not exist")
require(set(ORG_STATUS_SIGNERS) == {kind for _, kind in lifecycle.ORG_TRANSITIONS}, "org status kinds without signers")
