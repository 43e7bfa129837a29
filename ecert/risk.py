"""A bank's view for financing decisions (issue 14, item 7): risk summaries from on-chain history.

Advisory, never a rule: no rule reads this module, and nothing here writes. Deterministic (integers only, block
time `now` the only clock) and explainable: every figure is `{"name", "value", "how", "inputs"}` — the inputs it
was computed from and the formula, so a credit officer can redo it by hand.

    org_risk(view, org_id, now, reader)   a supplier (or any org): trade confirmed, certificates held and
                                          financed, recourse claims, disputes and complaints, concentration by
                                          debtor of what it holds
    cert_risk(view, cert_id, now)         a certificate: its debtor's settlement record (settled by maturity,
                                          late, defaulted, overdue), its lineage depth, disputes that lock it or
                                          the documents behind it

Bounded reads (each summary says `complete: false` when a bound cut it short):
- the debtor's record walks its roots (`dr/<debtor>/`, ecert/history.py) and their lineages: at most
  `RISK_CERTS_MAX` certificates;
- trade documents have no index by org, so the org's confirmed trade is a scan of `d/`: at most
  `RISK_DOCS_MAX` documents;
- what the org sold to banks walks its party index `p/<org>/`: at most `RISK_CERTS_MAX` certificates;
- disputes and complaints: the org's listing indexes, at most `disputes.LIST_MAX` each.

Who may read a summary (CONTRACT §6, decided here: `can_read_org_risk`, `can_read_cert_risk`): the regulator;
for an org, the org itself and a bank it deals with (the bank has a financing record with it — it financed it or
set it a limit —, or a credit line to it, or the org asked the bank to finance a certificate it holds); for a
certificate, a bank that may read it (ecert/access.py). A summary names no certificate or document the reader
could not read on its own: only counts and totals, and the debtors of what the org holds.
"""

from __future__ import annotations

from typing import Any

from ecert import access, disputes, financing, history, settlement
from ecert import state as s
from ledger.state_view import StateView

RISK_CERTS_MAX = 5_000
RISK_DOCS_MAX = 20_000
BPS = 10_000
MS_PER_DAY = settlement.MS_PER_DAY


def figure(name: str, value: Any, how: str, **inputs: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "how": how, "inputs": inputs}


def _rate_bps(part: int, whole: int) -> int | None:
    return None if whole == 0 else part * BPS // whole


# --- who may read ------------------------------------------------------------------------------------------------
def _asked_to_finance(view: StateView, bank: str, org_id: str) -> bool:
    for n, cert_id in enumerate(s.holding_ids(view, org_id)):
        if n >= RISK_CERTS_MAX:
            return False
        cert = s.get_cert(view, cert_id)
        if cert is not None and cert.finance_bank == bank and cert.status == s.FINANCING:
            return True
    return False


def can_read_org_risk(view: StateView, reader: access.Reader, org_id: str) -> bool:
    """The regulator, the org itself, and a bank it deals with (module docstring). False for anyone else."""
    if reader.role == s.REGULATOR or reader.org_id == org_id:
        return True
    if reader.role != s.BANK:
        return False
    return (financing.get_exposure(view, reader.org_id, org_id) is not None
            or s.get_credit(view, reader.org_id, org_id) is not None
            or _asked_to_finance(view, reader.org_id, org_id))


def may_ask_cert_risk(reader: access.Reader) -> bool:
    """Certificate summaries are for banks and the regulator (anyone else: 403)."""
    return reader.role in (s.BANK, s.REGULATOR)


def can_read_cert_risk(view: StateView, reader: access.Reader, cert_id: str) -> bool:
    """A bank or the regulator that may read the certificate; unknown and hidden alike."""
    return may_ask_cert_risk(reader) and access.can_read_cert(view, reader, cert_id)


# --- the debtor's settlement record ------------------------------------------------------------------------------
def settlement_record(view: StateView, debtor: str, now: int, certs_max: int = RISK_CERTS_MAX) -> dict[str, Any]:
    """Over every leaf the debtor owes or owed (its roots' lineages; split and cancelled certificates are not
    debts): settled by maturity, settled late, defaulted (declared, whether paid since or not), overdue now
    (live, past maturity, not defaulted), not yet due. The on-time rate is over those that fell due."""
    counts = {"on_time": 0, "late": 0, "defaulted": 0, "overdue": 0, "not_due": 0}
    amounts = dict.fromkeys(counts, 0)
    read = 0
    complete = True
    for root_id in history.debtor_root_ids(view, debtor):
        for _, value in view.scan(s.lineage_prefix(root_id)):
            if read >= certs_max:
                complete = False
                break
            read += 1
            cert = s.get_cert(view, value.decode())
            if cert is None or cert.status in (s.SPLIT, s.CANCELLED):
                continue
            if cert.defaulted_at is not None:
                kind = "defaulted"
            elif cert.status == s.SETTLED:
                kind = "on_time" if cert.settled_at is not None and cert.settled_at <= cert.maturity else "late"
            elif now >= cert.maturity:
                kind = "overdue"
            else:
                kind = "not_due"
            counts[kind] += 1
            amounts[kind] += cert.amount
        if not complete:
            break
    due = counts["on_time"] + counts["late"] + counts["defaulted"] + counts["overdue"]
    return {"debtor": debtor, "counts": counts, "amounts": amounts, "certs_read": read, "complete": complete,
            "figure": figure("debtor_on_time_rate_bps", _rate_bps(counts["on_time"], due),
                             "on_time * 10000 // (on_time + late + defaulted + overdue); None if nothing fell due",
                             on_time=counts["on_time"], late=counts["late"], defaulted=counts["defaulted"],
                             overdue=counts["overdue"])}


# --- an org ------------------------------------------------------------------------------------------------------
def _trade(view: StateView, org_id: str, docs_max: int) -> tuple[list[dict[str, Any]], bool]:
    confirmed: dict[str, list[int]] = {}
    unconfirmed = 0
    complete = True
    for n, (_, value) in enumerate(view.scan(s.DOC_PREFIX)):
        if n >= docs_max:
            complete = False
            break
        doc = s.decode_record(s.TradeDoc, value)
        if org_id not in (doc.issuer, doc.counterparty):
            continue
        if doc.status == s.DOC_CONFIRMED:
            row = confirmed.setdefault(doc.kind, [0, 0])
            row[0] += 1
            row[1] += doc.amount
        else:
            unconfirmed += 1
    kinds = {kind: {"count": row[0], "amount": row[1]} for kind, row in sorted(confirmed.items())}
    trade_amount = sum(row[1] for kind, row in confirmed.items() if kind in ("contract", "invoice"))
    return [figure("trade_confirmed", trade_amount, "sum of the amounts of confirmed contracts and invoices the "
                   "org is a party of", by_kind=kinds),
            figure("trade_unconfirmed_docs", unconfirmed, "documents the org is a party of, anchored but not "
                   "confirmed by the other party")], complete


def _held(view: StateView, org_id: str, now: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    by_status: dict[str, list[int]] = {}
    by_debtor: dict[str, int] = {}
    overdue = [0, 0]
    for cert_id in s.holding_ids(view, org_id):
        cert = s.get_cert(view, cert_id)
        if cert is None:
            continue
        row = by_status.setdefault(cert.status, [0, 0])
        row[0] += 1
        row[1] += cert.amount - cert.paid
        by_debtor[cert.debtor] = by_debtor.get(cert.debtor, 0) + cert.amount - cert.paid
        if cert.status != s.DEFAULTED and now >= cert.maturity:
            overdue[0] += 1
            overdue[1] += cert.amount - cert.paid
    total = sum(by_debtor.values())
    shares = sorted(((-amount, debtor) for debtor, amount in by_debtor.items()))
    share = [(debtor, -neg, _rate_bps(-neg, total) or 0) for neg, debtor in shares]
    concentration: list[dict[str, Any]] = [{"debtor": d, "unpaid": u, "share_bps": b} for d, u, b in share]
    hhi = sum(b * b for _, _, b in share) // BPS
    figures = [
        figure("held_unpaid", total, "unpaid principal of the live certificates the org holds",
               by_status={k: {"count": v[0], "unpaid": v[1]} for k, v in sorted(by_status.items())}),
        figure("held_overdue", overdue[1], "unpaid principal of held certificates past maturity, not defaulted",
               count=overdue[0]),
        figure("top_debtor_share_bps", concentration[0]["share_bps"] if concentration else None,
               "largest debtor's unpaid / held_unpaid * 10000", held_unpaid=total,
               top_debtor=concentration[0]["debtor"] if concentration else None),
        figure("debtor_hhi_bps", hhi if concentration else None,
               "sum of share_bps^2 // 10000 over the debtors (10000: one debtor; lower: spread)",
               debtors=len(concentration)),
    ]
    return figures, concentration


def _sold(view: StateView, org_id: str, certs_max: int) -> tuple[list[dict[str, Any]], bool]:
    count = principal = disbursed = recourse = defaulted = 0
    complete = True
    prefix = s.PARTY_PREFIX + org_id.encode() + b"/"
    for n, (key, _) in enumerate(view.scan(prefix)):
        if n >= certs_max:
            complete = False
            break
        cert = s.get_cert(view, key.rpartition(b"/")[2].decode())
        if cert is None or cert.seller != org_id:
            continue
        count += 1
        principal += cert.amount
        disbursed += cert.disbursed or 0
        recourse += cert.recourse
        defaulted += cert.defaulted_at is not None
    claims = [c for c in financing.claims_of(view, org_id) if c.seller == org_id]
    open_claims = [c for c in claims if c.status == s.CLAIM_OPEN]
    return [
        figure("financed_principal", principal, "principal of the certificates the org sold to banks",
               count=count, disbursed=disbursed, with_recourse=recourse, defaulted_since=defaulted),
        figure("recourse_outstanding", sum(financing.claim_outstanding(c) for c in open_claims),
               "what the org still owes banks on open recourse claims", open_claims=len(open_claims),
               claims=len(claims), written_off=sum(c.written_off for c in claims),
               repaid=sum(c.repaid for c in claims)),
    ], complete


def _disputes(view: StateView, org_id: str, now: int) -> list[dict[str, Any]]:
    opened = against = unresolved = upheld_against = escalated = 0
    for dispute_id in disputes.org_dispute_ids(view, org_id):
        dispute = disputes.get_dispute(view, dispute_id)
        if dispute is None or org_id not in (dispute.opener, dispute.respondent):
            continue  # the org resolves it: not its own risk
        opened += dispute.opener == org_id
        against += dispute.respondent == org_id
        unresolved += dispute.status != s.DISPUTE_RESOLVED
        upheld_against += dispute.respondent == org_id and dispute.outcome == disputes.UPHELD
        escalated += disputes.dispute_escalated(dispute, now)
    received = overdue = 0
    for complaint_id in disputes.org_complaint_ids(view, org_id):
        complaint = disputes.get_complaint(view, complaint_id)
        if complaint is None or complaint.respondent != org_id:
            continue
        received += 1
        overdue += disputes.complaint_escalated(complaint, now)
    return [
        figure("disputes_unresolved", unresolved, "disputes the org opened or answers that are not resolved",
               opened=opened, against=against, escalated=escalated, upheld_against=upheld_against),
        figure("complaints_against", received, "complaints filed against the org", escalated_or_overdue=overdue),
    ]


def org_risk(view: StateView, org_id: str, now: int, reader: access.Reader | None = None) -> dict[str, Any] | None:
    """The summary of one org at block time `now`; None if the org is unknown. `reader`, a bank, also gets its
    own financing record with the org."""
    org = s.get_org(view, org_id)
    if org is None:
        return None
    trade, trade_complete = _trade(view, org_id, RISK_DOCS_MAX)
    held, concentration = _held(view, org_id, now)
    sold, sold_complete = _sold(view, org_id, RISK_CERTS_MAX)
    figures = trade + held + sold + _disputes(view, org_id, now)
    if reader is not None and reader.role == s.BANK:
        line = financing.get_exposure(view, reader.org_id, org_id)
        figures.append(figure("your_exposure", None if line is None else line.used,
                              "what you financed that the org still stands behind (ecert/financing.py)",
                              limit=None if line is None else line.limit))
    return {"org_id": org_id, "role": org.role, "status": org.status, "kyc": org.kyc_hash is not None, "at": now,
            "advisory": True, "figures": figures, "concentration": concentration,
            "complete": trade_complete and sold_complete}


# --- a certificate -----------------------------------------------------------------------------------------------
def cert_risk(view: StateView, cert_id: str, now: int) -> dict[str, Any] | None:
    """The summary of one certificate at block time `now`; None if unknown."""
    cert = s.get_cert(view, cert_id)
    if cert is None:
        return None
    root = s.get_cert(view, cert.root_id)
    docs = {doc_id for doc_id, _ in cert.trade_docs} | {doc_id for doc_id, _ in (root.invoices if root else ())}
    docs_locked = sum(disputes.locking_dispute(view, disputes.DOC, doc_id) is not None for doc_id in sorted(docs))
    count = view.get(s.lineage_count_key(cert.root_id))
    record = settlement_record(view, cert.debtor, now)
    days = (cert.maturity - now) // MS_PER_DAY if now < cert.maturity else -((now - cert.maturity) // MS_PER_DAY)
    figures = [
        record["figure"],
        figure("lineage_depth", cert.depth, "transfers and splits between the root and this certificate",
               lineage_size=0 if count is None else int(count)),
        figure("days_to_maturity", days, "whole days from block time to maturity (negative: past it)",
               maturity=cert.maturity, at=now),
        figure("unpaid", settlement.unpaid(cert), "amount - paid while owed", amount=cert.amount,
               paid=settlement.paid_of(cert), status=cert.status),
        figure("disputed", disputes.locking_dispute(view, disputes.CERT, cert.id) is not None,
               "an unresolved dispute locks the certificate", trade_docs_locked=docs_locked,
               trade_docs=len(docs)),
    ]
    return {"cert_id": cert.id, "debtor": cert.debtor, "holder": cert.holder, "at": now, "advisory": True,
            "figures": figures, "debtor_record": {k: record[k] for k in ("counts", "amounts", "certs_read")},
            "complete": record["complete"]}
