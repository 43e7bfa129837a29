"""Payment, default, batch settlement, revoke and the acceptance deadline (issue 14, items 1, 3 and 4).

**Payment.** The debtor pays a live leaf in part or in full, early or late (`ecert.pay`), or pays the rest of a
matured leaf (`ecert.settle`), or of every live matured leaf of one root at once (`ecert.settle_root`, at most
`SETTLE_ROOT_LINEAGE_MAX` certificates in the lineage). The certificate records `paid` (principal); each
payment goes to the holder of the moment and frees as much of the credit line (and of the financing bank's
exposure, ecert/financing.py). A payment may name a `payment` trade document between the debtor and the holder
(anchored or confirmed), which then evidences at most its amount across payments (`applied`). A partly paid
certificate no longer moves: transfer, split and finance.request refuse it (`cert_partly_paid`).

**Default and penalty.** From maturity + `grace_period_ms` (chain parameter) on, the holder of an unpaid
certificate may declare it `defaulted` (`ecert.default`). A defaulted certificate owes a penalty of
`penalty_bps_per_day` on its unpaid principal for every whole day since maturity, integers only:

    day(t)   = (t - maturity) // 86_400_000          (0 before maturity)
    accrual  = unpaid * penalty_bps_per_day * (day(t) - penalty_day) // 10_000
               added to penalty_accrued at every payment after maturity (and at default), penalty_day := day(t)
    penalty  = min(amount, penalty_accrued + accrual to now) - penalty_paid   (only once defaulted)

So the unpaid amount of each stretch between payments is charged for that stretch, and a certificate paid
within its grace period owes nothing. A payment goes to the principal first, then to the penalty; the
certificate is settled when both are paid. Queries compute the penalty at the block time they are given.

**Revoke and the acceptance deadline.** The debtor may revoke a root still `issued` (`ecert.revoke`). Every root
issued from now on carries `accept_by` = issue time + `acceptance_window_ms`: accepting it from then on is
`acceptance_expired`, and the first block whose time reaches it cancels it (`begin_block`, which every node runs
before the block's txs, through the ledger's block-begin hook, so the cancellation is part of the block's state
and of its state root). A cancellation gives back the credit line and the invoices' headroom, as a rejection
does. The deadline index `ad/<accept_by:016d>/<cert_id>` is ordered by time, so a block reads only the due
entries, and cancels at most `ACCEPTANCE_SWEEP_MAX` of them (any more wait for the next block: the order, by
deadline then id, is the same on every node). `max_term_days` caps issue -> maturity.
"""

from __future__ import annotations

from typing import Any

from consensus.invariant import require
from ecert import codes, disputes, financing, lifecycle
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import CertRef, EcertPay, EcertSettle, RootRef, Tx
from ledger.state_view import StateView

MS_PER_DAY = 86_400_000
BPS = 10_000
SETTLE_ROOT_LINEAGE_MAX = 1024
"""Most certificates (split ones included) a root's lineage may hold for `ecert.settle_root`; a bigger one is
settled leaf by leaf. Bounds the tx's reads and writes."""
ACCEPTANCE_SWEEP_MAX = 64
"""Most roots one block cancels for a passed acceptance deadline."""
ACCEPT_PREFIX = b"ad/"
_DEADLINE_DIGITS = 16  # 2^53 ms has 16 decimal digits


# --- the acceptance deadline index ---------------------------------------------------------------------------------
def accept_key(accept_by: int, cert_id: str) -> bytes:
    return ACCEPT_PREFIX + b"%016d/" % accept_by + cert_id.encode()


def check_term(view: StateView, maturity: int, now: int) -> int | None:
    """ecert.issue: raise term_too_long past the maximum term; return the new root's `accept_by` (None: the
    chain has no acceptance window). Reads only."""
    params = s.chain_params(view)
    if params.max_term_days and maturity - now > params.max_term_days * MS_PER_DAY:
        raise TxRejected(codes.TERM_TOO_LONG, f"maturity {maturity} is more than {params.max_term_days} days after "
                                              f"block time {now}")
    return now + params.acceptance_window_ms if params.acceptance_window_ms else None


def index_acceptance(view: StateView, cert: s.Cert) -> None:
    if cert.accept_by is not None:
        view.put(accept_key(cert.accept_by, cert.id), b"")


def check_acceptance_open(cert: s.Cert, now: int) -> None:
    """ecert.accept: refused from `accept_by` on, whether or not a block has cancelled the root yet."""
    if cert.accept_by is not None and now >= cert.accept_by:
        raise TxRejected(codes.ACCEPTANCE_EXPIRED, f"certificate {cert.id} had to be accepted before {cert.accept_by}")


def unindex_acceptance(view: StateView, cert: s.Cert) -> None:
    """The root left `issued` (accepted, rejected, revoked, expired): it is no longer due."""
    if cert.accept_by is not None:
        view.delete(accept_key(cert.accept_by, cert.id))


def cancel_root(view: StateView, cert: s.Cert, status: str, now: int) -> None:
    """Write an `issued` root as cancelled and give back its credit and its invoices' headroom."""
    require(cert.parent_id is None and cert.status == s.ISSUED, f"cert {cert.id}: only an issued root is cancelled")
    line = s.get_credit(view, cert.bank, cert.debtor)
    require(line is not None and line.used >= cert.amount, f"credit line {cert.bank}/{cert.debtor} lost {cert.id}")
    assert line is not None
    docs = []
    for doc_id, take in cert.invoices:
        doc = s.get_doc(view, doc_id)
        require(doc is not None and doc.backed >= take, f"invoice {doc_id} lost its backing of {cert.id}")
        assert doc is not None
        docs.append((doc, take))
    s.put_cert(view, cert._replace(status=status, updated_at=now), cert)
    s.put_credit(view, line._replace(used=line.used - cert.amount))
    for doc, take in docs:
        s.put_doc(view, doc._replace(backed=doc.backed - take))
    unindex_acceptance(view, cert)


def begin_block(view: StateView, now: int) -> list[str]:
    """Before a block's txs: cancel the roots whose acceptance deadline is at or before the block time, in
    deadline order, at most ACCEPTANCE_SWEEP_MAX. Returns their ids. Reads one index entry past the due ones."""
    due: list[str] = []
    scan = view.scan(ACCEPT_PREFIX)
    try:
        for key, _ in scan:
            deadline = int(key[len(ACCEPT_PREFIX):len(ACCEPT_PREFIX) + _DEADLINE_DIGITS])
            if deadline > now or len(due) >= ACCEPTANCE_SWEEP_MAX:
                break
            due.append(key[len(ACCEPT_PREFIX) + _DEADLINE_DIGITS + 1:].decode())
    finally:
        close = getattr(scan, "close", None)
        if close is not None:
            close()  # a LevelDB iterator underneath: release it now, not at garbage collection
    for cert_id in due:
        cert = s.get_cert(view, cert_id)
        require(cert is not None and cert.status == s.ISSUED, f"acceptance index names {cert_id}, not issued")
        assert cert is not None
        cancel_root(view, cert, lifecycle.next_cert_event_status(cert.status, lifecycle.ACCEPTANCE_EXPIRED), now)
    return due


# --- penalty arithmetic (integers only) ------------------------------------------------------------------------
def day_after_maturity(cert: s.Cert, t: int) -> int:
    return 0 if t <= cert.maturity else (t - cert.maturity) // MS_PER_DAY


def accrued(cert: s.Cert, now: int, bps: int) -> s.Cert:
    """The cert with its penalty accrued to `now` on its unpaid principal (capped at its amount)."""
    day = day_after_maturity(cert, now)
    if day <= cert.penalty_day:
        return cert
    add = (cert.amount - cert.paid) * bps * (day - cert.penalty_day) // BPS
    return cert._replace(penalty_accrued=min(cert.amount, cert.penalty_accrued + add), penalty_day=day)


def penalty_due(cert: s.Cert, now: int, bps: int) -> int:
    """What the debtor owes on top of the principal at `now`: a penalty only once defaulted."""
    if cert.status != s.DEFAULTED:
        return 0
    return accrued(cert, now, bps).penalty_accrued - cert.penalty_paid


def unpaid(cert: s.Cert) -> int:
    """Principal still owed: 0 for a settled, split or cancelled certificate."""
    return cert.amount - cert.paid if cert.status in s.OUTSTANDING_STATUSES else 0


def paid_of(cert: s.Cert) -> int:
    """Principal paid: a settled leaf is paid in full (also one settled before `paid` was recorded)."""
    return cert.amount if cert.status == s.SETTLED else cert.paid


# --- shared checks ------------------------------------------------------------------------------------------------
def _cert(view: StateView, cert_id: str) -> s.Cert:
    cert = s.get_cert(view, cert_id)
    if cert is None:
        raise TxRejected(codes.UNKNOWN_CERT, f"no certificate {cert_id!r}")
    return cert


def _debtor(cert: s.Cert, tx: Tx) -> None:
    if cert.debtor != tx.signer:
        raise TxRejected(codes.NOT_DEBTOR, f"certificate {cert.id}: the signer is not the debtor")


def _matured(cert: s.Cert, now: int) -> None:
    if now < cert.maturity:
        raise TxRejected(codes.NOT_MATURED, f"certificate {cert.id} matures at {cert.maturity}, block time is {now}")


def check_unpaid(cert: s.Cert) -> None:
    """transfer, split, finance.request: a partly paid certificate stays where it is until paid."""
    if cert.paid:
        raise TxRejected(codes.CERT_PARTLY_PAID, f"certificate {cert.id} is partly paid; it can only be paid")


def _payment_doc(view: StateView, cert: s.Cert, doc_id: str | None, amount: int) -> s.TradeDoc | None:
    if doc_id is None:
        return None
    doc = s.get_doc(view, doc_id)
    if doc is None:
        raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {doc_id!r}")
    if doc.kind != "payment":
        raise TxRejected(codes.NOT_A_PAYMENT, f"trade document {doc_id} is not a payment document")
    disputes.check_doc_unlocked(view, doc_id)  # a disputed payment document evidences nothing until resolved
    if {doc.issuer, doc.counterparty} != {cert.debtor, cert.holder}:
        raise TxRejected(codes.PAYMENT_PARTIES_MISMATCH,
                         f"payment document {doc_id} is not between the debtor and the holder of {cert.id}")
    if amount > doc.amount - doc.applied:
        raise TxRejected(codes.PAYMENT_EXCEEDS_DOC,
                         f"payment document {doc_id} evidences {doc.amount - doc.applied} more, not {amount}")
    return doc


def _write_payment(view: StateView, cert: s.Cert, principal: int, penalty: int, now: int, kind: str,
                   doc: s.TradeDoc | None, bps: int) -> s.Cert:
    """Apply a checked payment of `principal` + `penalty` to the holder; return the written certificate."""
    base = accrued(cert, now, bps)
    paid = cert.paid + principal
    settled = paid == cert.amount and penalty_due(base._replace(paid=paid), now, bps) == penalty
    # A payment that leaves nothing due moves as a settlement does (ecert/lifecycle.py).
    move = kind if kind != "ecert.pay" or not settled else "ecert.settle"
    status = lifecycle.next_cert_status(cert.status, move)
    new = base._replace(status=status, paid=paid, penalty_paid=cert.penalty_paid + penalty, updated_at=now)
    if status == s.SETTLED:
        new = new._replace(settled_at=now, paid_to=cert.holder)
    elif cert.status == s.FINANCING:  # a part paid drops the pending request: a partly paid cert is not financed
        new = new._replace(finance_bank=None, finance_requested_at=None)
    if principal:
        line = s.get_credit(view, cert.bank, cert.debtor)
        if line is None or line.used < principal:
            require(False, f"credit line {cert.bank}/{cert.debtor} uses less than {cert.id} owes")
        assert line is not None
        s.put_credit(view, line._replace(used=line.used - principal))
        if cert.financed_at is not None and cert.holder == cert.finance_bank:  # the bank is repaid: room again
            financing.add_exposure(view, cert.holder, financing.exposure_orgs(cert), -principal)
    s.put_cert(view, new, cert)
    if doc is not None:
        s.put_doc(view, doc._replace(applied=doc.applied + principal + penalty))
    return new


# --- rules ------------------------------------------------------------------------------------------------------
def apply_ecert_pay(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """ecert.pay — signer: the debtor. Part or all of what a live leaf owes, at any time."""
    body: EcertPay = tx.body
    cert = _cert(view, body.cert_id)
    _debtor(cert, tx)
    lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    bps = s.chain_params(view).penalty_bps_per_day
    owed, penalty_owed = cert.amount - cert.paid, penalty_due(cert, now, bps)
    doc = _payment_doc(view, cert, body.payment, body.amount)
    if body.amount > owed + penalty_owed:
        raise TxRejected(codes.AMOUNT_EXCEEDS_DUE, f"{body.amount} is more than the {owed + penalty_owed} due")
    principal = min(body.amount, owed)
    new = _write_payment(view, cert, principal, body.amount - principal, now, tx.type, doc, bps)
    return {"cert_id": cert.id, "status": new.status, "paid_to": cert.holder, "amount": body.amount,
            "principal": principal, "penalty": body.amount - principal, "paid": new.paid,
            "outstanding": new.amount - new.paid}


def apply_ecert_settle(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """ecert.settle — signer: the debtor. The rest of a matured leaf, penalty included."""
    body: EcertSettle = tx.body
    cert = _cert(view, body.cert_id)
    _debtor(cert, tx)
    lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    _matured(cert, now)
    bps = s.chain_params(view).penalty_bps_per_day
    principal, penalty = cert.amount - cert.paid, penalty_due(cert, now, bps)
    doc = _payment_doc(view, cert, body.payment, principal + penalty)
    _write_payment(view, cert, principal, penalty, now, tx.type, doc, bps)
    result: dict[str, Any] = {"cert_id": cert.id, "status": s.SETTLED, "paid_to": cert.holder, "amount": cert.amount}
    if cert.paid or cert.status == s.DEFAULTED:  # only then does the rest differ from the amount
        result.update(principal=principal, penalty=penalty)
    if body.payment is not None:
        result["payment"] = body.payment
    return result


def apply_ecert_settle_root(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """ecert.settle_root — signer: the debtor. Every live matured leaf of the root, in lineage order."""
    body: RootRef = tx.body
    root = _cert(view, body.root_id)
    _debtor(root, tx)
    if root.parent_id is not None:
        raise TxRejected(codes.NOT_A_ROOT, f"certificate {root.id} is not a root; name its root {root.root_id}")
    if root.status in (s.ISSUED, s.CANCELLED):
        raise TxRejected(codes.INVALID_STATUS_TRANSITION, f"ecert.settle_root is not allowed on a {root.status} root")
    _matured(root, now)
    count = view.get(s.lineage_count_key(root.id))
    if count is not None and int(count) > SETTLE_ROOT_LINEAGE_MAX:
        raise TxRejected(codes.LINEAGE_TOO_LARGE, f"the lineage holds {int(count)} certificates, more than "
                                                  f"{SETTLE_ROOT_LINEAGE_MAX}: settle its leaves one by one")
    leaves = []
    for cert_id in s.lineage_ids(view, root.id):
        cert = s.get_cert(view, cert_id)
        require(cert is not None, f"lineage of {root.id} names a missing cert {cert_id}")
        assert cert is not None
        if (cert.status, tx.type) in lifecycle.CERT_TRANSITIONS:
            disputes.check_cert_unlocked(view, cert.id)  # a disputed leaf holds the whole batch back
            leaves.append(cert)
    if not leaves:
        raise TxRejected(codes.NOTHING_TO_SETTLE, f"no certificate of {root.id} is left to settle")
    bps = s.chain_params(view).penalty_bps_per_day
    settled, total = [], 0
    for cert in leaves:
        principal, penalty = cert.amount - cert.paid, penalty_due(cert, now, bps)
        _write_payment(view, cert, principal, penalty, now, tx.type, None, bps)
        settled.append({"cert_id": cert.id, "paid_to": cert.holder, "principal": principal, "penalty": penalty})
        total += principal + penalty
    return {"root_id": root.id, "settled": settled, "total": total}


def apply_ecert_default(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """ecert.default — signer: the holder. Declares an unpaid leaf defaulted once its grace period is over."""
    body: CertRef = tx.body
    cert = _cert(view, body.cert_id)
    if cert.holder != tx.signer:
        raise TxRejected(codes.NOT_HOLDER, f"certificate {cert.id}: the signer is not the holder")
    status = lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    params = s.chain_params(view)
    if now < cert.maturity + params.grace_period_ms:
        raise TxRejected(codes.GRACE_NOT_OVER, f"certificate {cert.id} may be declared defaulted from "
                                               f"{cert.maturity + params.grace_period_ms}, block time is {now}")
    owed = cert.amount - cert.paid
    new = accrued(cert, now, params.penalty_bps_per_day)._replace(status=status, defaulted_at=now, updated_at=now)
    claim = None
    if cert.status == s.FINANCING:
        new = new._replace(finance_bank=None, finance_requested_at=None)
    elif cert.status == s.FINANCED and cert.recourse:
        # With recourse: the bank claims the unpaid principal from the seller, who takes the certificate back.
        claim = financing.file_claim(view, cert, owed, now)
        assert cert.seller is not None
        new = new._replace(holder=cert.seller)
        if cert.debtor != cert.seller:
            financing.add_exposure(view, cert.holder, (cert.debtor,), -owed)
    s.put_cert(view, new, cert)
    return {"cert_id": cert.id, "status": status, "holder": new.holder, "unpaid": owed,
            "penalty": new.penalty_accrued - new.penalty_paid,
            "claim": None if claim is None else {"bank": claim.bank, "seller": claim.seller, "amount": claim.amount}}


def apply_ecert_revoke(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """ecert.revoke — signer: the debtor (issuer). Cancels a root its holder has not accepted yet."""
    body: CertRef = tx.body
    cert = _cert(view, body.cert_id)
    _debtor(cert, tx)
    status = lifecycle.next_cert_status(cert.status, tx.type)
    disputes.check_cert_unlocked(view, cert.id)
    cancel_root(view, cert, status, now)
    return {"cert_id": cert.id, "status": status}


# --- reads: what every party is owed ---------------------------------------------------------------------------
def cert_payment_json(cert: s.Cert, now: int, bps: int) -> dict[str, Any]:
    """A certificate's payment state at block time `now`."""
    owed = unpaid(cert)
    penalty = penalty_due(cert, now, bps)
    return {"cert_id": cert.id, "debtor": cert.debtor, "holder": cert.holder, "status": cert.status,
            "amount": cert.amount, "paid": paid_of(cert), "outstanding": owed, "penalty": penalty,
            "due": owed + penalty, "maturity": cert.maturity, "defaulted_at": cert.defaulted_at,
            "penalty_paid": cert.penalty_paid, "recourse": cert.recourse, "accept_by": cert.accept_by}


def owed_to(view: StateView, org_id: str, now: int) -> dict[str, Any] | None:
    """What `org_id` is owed at block time `now`: by debtors on the certificates it holds (principal and
    penalty), and by sellers on its open recourse claims; and what it owes the banks on claims against it.
    None if the org is unknown. Reads its holdings and its claim index only."""
    if s.get_org(view, org_id) is None:
        return None
    bps = s.chain_params(view).penalty_bps_per_day
    certs = []
    for cert_id in s.holding_ids(view, org_id):
        cert = s.get_cert(view, cert_id)
        if cert is not None and cert.status != s.ISSUED:  # an issued root is not accepted: not the holder's yet
            certs.append(cert_payment_json(cert, now, bps))
    claims = [financing.claim_json(c) for c in financing.claims_of(view, org_id) if c.status == s.CLAIM_OPEN]
    as_bank = [c for c in claims if c["bank"] == org_id]
    as_seller = [c for c in claims if c["seller"] == org_id]
    return {"org_id": org_id, "at": now,
            "from_debtors": {"certs": certs, "principal": sum(c["outstanding"] for c in certs),
                             "penalty": sum(c["penalty"] for c in certs)},
            "from_sellers": {"claims": as_bank, "total": sum(c["outstanding"] for c in as_bank)},
            "owes_banks": {"claims": as_seller, "total": sum(c["outstanding"] for c in as_seller)}}


def root_payments(view: StateView, root_id: str, now: int) -> dict[str, Any] | None:
    """Per root at block time `now`: its amount, what was paid, what is outstanding and the penalty due, over its
    leaves (`paid + outstanding = amount` unless the root was cancelled). None if unknown or not a root."""
    root = s.get_cert(view, root_id)
    if root is None or root.parent_id is not None:
        return None
    bps = s.chain_params(view).penalty_bps_per_day
    paid = outstanding = penalty = defaulted = 0
    for cert_id in s.lineage_ids(view, root_id):
        cert = s.get_cert(view, cert_id)
        if cert is None or cert.status == s.SPLIT:
            continue
        paid += paid_of(cert)
        outstanding += unpaid(cert)
        penalty += penalty_due(cert, now, bps)
        defaulted += unpaid(cert) if cert.status == s.DEFAULTED else 0
    return {"root_id": root_id, "debtor": root.debtor, "amount": root.amount, "cancelled": root.status == s.CANCELLED,
            "paid": paid, "outstanding": outstanding, "defaulted": defaulted, "penalty": penalty}
