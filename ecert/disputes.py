"""Disputes on a certificate or trade document, and complaints between organisations (issue 14, item 5).

A **dispute** is opened by a party of a certificate (its holder, debtor, seller or the bank asked to finance it)
or of a trade document (its issuer or counterparty) against another party of the same thing. While it is
unresolved the certificate or document is **locked**: `check_cert_unlocked` / `check_doc_unlocked` are the one
check every rule that moves, pays, finances, settles or draws on it calls, so nothing happens to a disputed
thing until the dispute is resolved. The respondent answers once (`dispute.respond`); the resolver — the bank
named at issue for a certificate, a bank the document is sealed for for a document (neither if it is a party
of the dispute itself), or the regulator — resolves it (`dispute.resolve`: upheld or dismissed), which unlocks.
The outcome is a record, not a transfer: the parties act on it with the ordinary kinds.

The resolver bank has `dispute_resolution_ms` (chain parameter) from the opening block time. From that deadline
on the dispute is **escalated**: only the regulator may resolve it. Escalation is derived from block time (the
rule compares `now` with the stored deadline; a read given the latest block time reports `"escalated": true`),
never stored: nothing has to run when a deadline passes.

A **complaint** is filed by any active org against another (not the regulator: it receives escalations). The
respondent may answer until `complaint_response_ms` after filing; from then on, if unanswered, it is overdue:
reads report `"escalated": true`, and the complainant may escalate it to the regulator with
`complaint.escalate` (which also takes an answered complaint the complainant is not satisfied with). The
complainant (withdrawing) or the regulator closes it. An org has at most `COMPLAINTS_OPEN_MAX` complaints that
are not closed.

Key schema (ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so "/" never occurs inside one):

    dsp/<dispute_id>               -> Dispute record
    dsl/c/<cert_id>, dsl/d/<doc_id> -> dispute_id  the lock: present exactly while that dispute is unresolved
                                       (so the `dsl/` prefix lists every unresolved dispute, for alarms)
    dsx/<org>/<dispute_id>         -> b""  the dispute's opener, respondent and resolver bank (listing)
    cmp/<complaint_id>             -> Complaint record
    cmo/<complaint_id>             -> b""  complaints not closed (for alarms)
    cmx/<org>/<complaint_id>       -> b""  the complaint's complainant and respondent (listing)
    cmn/<org>                      -> complaints the org filed that are not closed (decimal ASCII)

Records are NamedTuples encoded as msgpack arrays, as in ecert/state.py. Rules follow ecert/rules.py: check
everything (reads only), then write, then return the result. Status moves go through ecert/lifecycle.py.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from consensus.invariant import require
from ecert import codes, lifecycle
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import (
    ComplaintFile,
    ComplaintRef,
    ComplaintRespond,
    DisputeOpen,
    DisputeResolve,
    DisputeRespond,
    Tx,
)
from ledger.state_view import StateView

ID_HEX_CHARS = 32
COMPLAINTS_OPEN_MAX = 16
"""Complaints one org may have filed and not closed: no org can bury another (or the regulator) in them."""
LIST_MAX = 100
"""Most records one listing answer holds."""

CERT = "cert"
DOC = "doc"
UPHELD, DISMISSED = "upheld", "dismissed"


class Dispute(NamedTuple):
    id: str
    subject: str  # cert | doc
    subject_id: str
    opener: str
    respondent: str
    resolver: str | None  # the bank that may resolve before the deadline; None: the regulator only
    reason: str
    evidence_hash: str
    status: str  # open | responded | resolved
    opened_at: int  # block time
    deadline: int  # opened_at + dispute_resolution_ms: from then on only the regulator resolves
    tx_id: str  # the dispute.open tx
    statement: str | None = None  # dispute.respond
    response_hash: str | None = None
    responded_at: int | None = None
    outcome: str | None = None  # upheld | dismissed
    resolved_by: str | None = None
    resolved_at: int | None = None
    resolution: str | None = None  # the resolver's reason


class Complaint(NamedTuple):
    id: str
    complainant: str
    respondent: str
    subject: str
    evidence_hash: str
    status: str  # open | responded | escalated | closed
    filed_at: int
    deadline: int  # filed_at + complaint_response_ms: the respondent answers before it
    tx_id: str
    statement: str | None = None
    response_hash: str | None = None
    responded_at: int | None = None
    escalated_at: int | None = None
    escalation: str | None = None  # the complainant's reason
    closed_by: str | None = None
    closed_at: int | None = None
    close_reason: str | None = None


# --- ids and keys -------------------------------------------------------------------------------------------------
def dispute_id_for(tx_id: str) -> str:
    return "DS" + hashlib.sha256(b"dispute.open" + bytes.fromhex(tx_id)).hexdigest()[:ID_HEX_CHARS]


def complaint_id_for(tx_id: str) -> str:
    return "CP" + hashlib.sha256(b"complaint.file" + bytes.fromhex(tx_id)).hexdigest()[:ID_HEX_CHARS]


DISPUTE_PREFIX = b"dsp/"
LOCK_PREFIX = b"dsl/"
DISPUTE_PARTY_PREFIX = b"dsx/"
COMPLAINT_PREFIX = b"cmp/"
COMPLAINT_OPEN_PREFIX = b"cmo/"
COMPLAINT_PARTY_PREFIX = b"cmx/"
COMPLAINT_COUNT_PREFIX = b"cmn/"
_SUBJECT_TAG = {CERT: b"c/", DOC: b"d/"}


def dispute_key(dispute_id: str) -> bytes:
    return DISPUTE_PREFIX + dispute_id.encode()


def lock_key(subject: str, subject_id: str) -> bytes:
    return LOCK_PREFIX + _SUBJECT_TAG[subject] + subject_id.encode()


def complaint_key(complaint_id: str) -> bytes:
    return COMPLAINT_PREFIX + complaint_id.encode()


def _party_key(prefix: bytes, org_id: str, record_id: str) -> bytes:
    return prefix + org_id.encode() + b"/" + record_id.encode()


def get_dispute(view: StateView, dispute_id: str) -> Dispute | None:
    data = view.get(dispute_key(dispute_id))
    return None if data is None else s.decode_record(Dispute, data)


def get_complaint(view: StateView, complaint_id: str) -> Complaint | None:
    data = view.get(complaint_key(complaint_id))
    return None if data is None else s.decode_record(Complaint, data)


def locking_dispute(view: StateView, subject: str, subject_id: str) -> str | None:
    """The id of the unresolved dispute that locks this certificate or document, if any (one point read)."""
    data = view.get(lock_key(subject, subject_id))
    return None if data is None else data.decode()


def _open_complaints(view: StateView, org_id: str) -> int:
    raw = view.get(COMPLAINT_COUNT_PREFIX + org_id.encode())
    return 0 if raw is None else int(raw)


def _set_open_complaints(view: StateView, org_id: str, count: int) -> None:
    require(0 <= count <= COMPLAINTS_OPEN_MAX, f"{org_id} open complaints {count} outside 0..{COMPLAINTS_OPEN_MAX}")
    key = COMPLAINT_COUNT_PREFIX + org_id.encode()
    if count == 0:
        view.delete(key)
    else:
        view.put(key, str(count).encode())


# --- the lock check: called by every rule that moves a certificate or draws on a document ------------------------
def check_cert_unlocked(view: StateView, cert_id: str) -> None:
    """Raise `cert_disputed` if an unresolved dispute locks the certificate. One point read."""
    if view.get(lock_key(CERT, cert_id)) is not None:
        raise TxRejected(codes.CERT_DISPUTED, f"certificate {cert_id} is under dispute; it moves once resolved")


def check_doc_unlocked(view: StateView, doc_id: str) -> None:
    """Raise `doc_disputed` if an unresolved dispute locks the trade document. One point read."""
    if view.get(lock_key(DOC, doc_id)) is not None:
        raise TxRejected(codes.DOC_DISPUTED, f"trade document {doc_id} is under dispute; it is used once resolved")


# --- parties ------------------------------------------------------------------------------------------------------
def cert_parties(cert: s.Cert) -> tuple[str, ...]:
    """Who may dispute a certificate: its holder, debtor, seller (sold it to a bank) and the bank asked to
    finance it, in that order, without repeats."""
    out: list[str] = []
    for org in (cert.holder, cert.debtor, cert.seller, cert.finance_bank):
        if org is not None and org not in out:
            out.append(org)
    return tuple(out)


def _doc_resolver(view: StateView, doc: s.TradeDoc, parties: tuple[str, str]) -> str | None:
    """The first bank (by id) the document is sealed for that is not a party of the dispute."""
    for org_id, _ in doc.ciphertext:  # sorted by org id
        if org_id in parties:
            continue
        org = s.get_org(view, org_id)
        if org is not None and org.role == s.BANK:
            return org_id
    return None


def _dispute_params(view: StateView) -> int:
    return s.chain_params(view).dispute_resolution_ms


def _complaint_params(view: StateView) -> int:
    return s.chain_params(view).complaint_response_ms


# --- dispute rules ------------------------------------------------------------------------------------------------
def apply_dispute_open(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: DisputeOpen = tx.body
    if body.cert_id is not None:
        subject, subject_id = CERT, body.cert_id
        cert = s.get_cert(view, body.cert_id)
        if cert is None:
            raise TxRejected(codes.UNKNOWN_CERT, f"no certificate {body.cert_id!r}")
        parties = cert_parties(cert)
        if tx.signer not in parties:
            raise TxRejected(codes.NOT_SUBJECT_PARTY, f"certificate {cert.id}: the signer is not a party of it")
        if cert.status not in s.LIVE_STATUSES:
            raise TxRejected(codes.CERT_NOT_LIVE, f"certificate {cert.id} is {cert.status}; only a live one is "
                                                  "disputed")
        check_cert_unlocked(view, cert.id)
        bank: str | None = cert.bank
    else:
        assert body.doc_id is not None  # DisputeOpen checked: exactly one of the two
        subject, subject_id = DOC, body.doc_id
        doc = s.get_doc(view, body.doc_id)
        if doc is None:
            raise TxRejected(codes.UNKNOWN_DOC, f"no trade document {body.doc_id!r}")
        parties = (doc.issuer, doc.counterparty)
        if tx.signer not in parties:
            raise TxRejected(codes.NOT_SUBJECT_PARTY, f"trade document {doc.id}: the signer is not a party of it")
        check_doc_unlocked(view, doc.id)
        bank = _doc_resolver(view, doc, (tx.signer, body.against))
    if body.against == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "a dispute needs two different parties")
    if body.against not in parties:
        raise TxRejected(codes.RESPONDENT_NOT_PARTY, f"{body.against!r} is not a party of that {subject}")
    resolver = None if bank in (tx.signer, body.against) else bank  # no one judges its own dispute

    dispute_id = dispute_id_for(tx.tx_id)
    require(get_dispute(view, dispute_id) is None, f"derived dispute id {dispute_id} already exists")
    deadline = now + _dispute_params(view)
    dispute = Dispute(id=dispute_id, subject=subject, subject_id=subject_id, opener=tx.signer,
                      respondent=body.against, resolver=resolver, reason=body.reason,
                      evidence_hash=body.evidence_hash, status=s.DISPUTE_OPEN, opened_at=now, deadline=deadline,
                      tx_id=tx.tx_id)
    view.put(dispute_key(dispute_id), s.encode_record(dispute))
    view.put(lock_key(subject, subject_id), dispute_id.encode())
    for org in {tx.signer, body.against, *((resolver,) if resolver is not None else ())}:
        view.put(_party_key(DISPUTE_PARTY_PREFIX, org, dispute_id), b"")
    return {"dispute_id": dispute_id, "status": dispute.status, subject + "_id": subject_id,
            "resolver": resolver, "deadline": deadline}


def _dispute(view: StateView, dispute_id: str) -> Dispute:
    dispute = get_dispute(view, dispute_id)
    if dispute is None:
        raise TxRejected(codes.UNKNOWN_DISPUTE, f"no dispute {dispute_id!r}")
    return dispute


def apply_dispute_respond(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: DisputeRespond = tx.body
    dispute = _dispute(view, body.dispute_id)
    if dispute.respondent != tx.signer:
        raise TxRejected(codes.NOT_RESPONDENT, f"dispute {dispute.id}: the signer is not the respondent")
    status = lifecycle.next_dispute_status(dispute.status, tx.type)
    view.put(dispute_key(dispute.id), s.encode_record(dispute._replace(
        status=status, statement=body.statement, response_hash=body.evidence_hash, responded_at=now)))
    return {"dispute_id": dispute.id, "status": status}


def apply_dispute_resolve(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: DisputeResolve = tx.body
    dispute = _dispute(view, body.dispute_id)
    signer = s.signer_org(view, tx.signer)
    regulator = signer.role == s.REGULATOR
    if not regulator and tx.signer != dispute.resolver:
        raise TxRejected(codes.NOT_RESOLVER, f"dispute {dispute.id}: the signer is neither its bank nor the "
                                             "regulator")
    status = lifecycle.next_dispute_status(dispute.status, tx.type)
    if not regulator and now >= dispute.deadline:
        raise TxRejected(codes.DISPUTE_ESCALATED, f"dispute {dispute.id} passed its deadline {dispute.deadline}; "
                                                  "it is the regulator's to resolve")
    lock = lock_key(dispute.subject, dispute.subject_id)
    require(view.get(lock) == dispute.id.encode(), f"unresolved dispute {dispute.id} does not hold its lock")
    view.put(dispute_key(dispute.id), s.encode_record(dispute._replace(
        status=status, outcome=body.outcome, resolved_by=tx.signer, resolved_at=now, resolution=body.reason)))
    view.delete(lock)
    return {"dispute_id": dispute.id, "status": status, "outcome": body.outcome, "escalated": now >= dispute.deadline}


# --- complaint rules ----------------------------------------------------------------------------------------------
def apply_complaint_file(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: ComplaintFile = tx.body
    if body.against == tx.signer:
        raise TxRejected(codes.SAME_PARTY, "an organisation cannot complain about itself")
    against = s.get_org(view, body.against)
    if against is None:
        raise TxRejected(codes.UNKNOWN_ORG, f"no organisation {body.against!r}")
    if against.role == s.REGULATOR:
        raise TxRejected(codes.REGULATOR_NOT_PARTY, "complaints escalate to the regulator; none is against it")
    count = _open_complaints(view, tx.signer)
    if count >= COMPLAINTS_OPEN_MAX:
        raise TxRejected(codes.TOO_MANY_COMPLAINTS,
                         f"{tx.signer} has {count} complaints not closed, the most it may have")
    complaint_id = complaint_id_for(tx.tx_id)
    require(get_complaint(view, complaint_id) is None, f"derived complaint id {complaint_id} already exists")
    deadline = now + _complaint_params(view)
    complaint = Complaint(id=complaint_id, complainant=tx.signer, respondent=body.against, subject=body.subject,
                          evidence_hash=body.evidence_hash, status=s.COMPLAINT_OPEN, filed_at=now,
                          deadline=deadline, tx_id=tx.tx_id)
    view.put(complaint_key(complaint_id), s.encode_record(complaint))
    view.put(COMPLAINT_OPEN_PREFIX + complaint_id.encode(), b"")
    for org in (tx.signer, body.against):
        view.put(_party_key(COMPLAINT_PARTY_PREFIX, org, complaint_id), b"")
    _set_open_complaints(view, tx.signer, count + 1)
    return {"complaint_id": complaint_id, "status": complaint.status, "deadline": deadline}


def _complaint(view: StateView, complaint_id: str) -> Complaint:
    complaint = get_complaint(view, complaint_id)
    if complaint is None:
        raise TxRejected(codes.UNKNOWN_COMPLAINT, f"no complaint {complaint_id!r}")
    return complaint


def _put_complaint(view: StateView, complaint: Complaint) -> None:
    view.put(complaint_key(complaint.id), s.encode_record(complaint))


def apply_complaint_respond(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: ComplaintRespond = tx.body
    complaint = _complaint(view, body.complaint_id)
    if complaint.respondent != tx.signer:
        raise TxRejected(codes.NOT_RESPONDENT, f"complaint {complaint.id}: the signer is not the respondent")
    status = lifecycle.next_complaint_status(complaint.status, tx.type)
    if now >= complaint.deadline:
        raise TxRejected(codes.RESPONSE_DEADLINE_PASSED,
                         f"complaint {complaint.id} had to be answered before {complaint.deadline}")
    _put_complaint(view, complaint._replace(status=status, statement=body.statement,
                                            response_hash=body.evidence_hash, responded_at=now))
    return {"complaint_id": complaint.id, "status": status}


def apply_complaint_escalate(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: ComplaintRef = tx.body
    complaint = _complaint(view, body.complaint_id)
    if complaint.complainant != tx.signer:
        raise TxRejected(codes.NOT_COMPLAINANT, f"complaint {complaint.id}: the signer is not the complainant")
    status = lifecycle.next_complaint_status(complaint.status, tx.type)
    if complaint.status == s.COMPLAINT_OPEN and now < complaint.deadline:
        raise TxRejected(codes.RESPONSE_NOT_DUE,
                         f"complaint {complaint.id}: the respondent has until {complaint.deadline} to answer")
    _put_complaint(view, complaint._replace(status=status, escalated_at=now, escalation=body.reason))
    return {"complaint_id": complaint.id, "status": status}


def apply_complaint_close(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: ComplaintRef = tx.body
    complaint = _complaint(view, body.complaint_id)
    signer = s.signer_org(view, tx.signer)
    if complaint.complainant != tx.signer and signer.role != s.REGULATOR:
        raise TxRejected(codes.NOT_COMPLAINANT,
                         f"complaint {complaint.id}: the signer is neither the complainant nor the regulator")
    status = lifecycle.next_complaint_status(complaint.status, tx.type)
    _put_complaint(view, complaint._replace(status=status, closed_by=tx.signer, closed_at=now,
                                            close_reason=body.reason))
    view.delete(COMPLAINT_OPEN_PREFIX + complaint.id.encode())
    _set_open_complaints(view, complaint.complainant, _open_complaints(view, complaint.complainant) - 1)
    return {"complaint_id": complaint.id, "status": status}


# --- reads --------------------------------------------------------------------------------------------------------
def dispute_escalated(dispute: Dispute, now: int) -> bool:
    """Past its deadline and unresolved: the regulator's to resolve."""
    return dispute.status != s.DISPUTE_RESOLVED and now >= dispute.deadline


def complaint_escalated(complaint: Complaint, now: int) -> bool:
    """Escalated by the complainant, or unanswered past its deadline (derived), and not closed."""
    if complaint.status == s.COMPLAINT_ESCALATED:
        return True
    return complaint.status == s.COMPLAINT_OPEN and now >= complaint.deadline


def dispute_to_json(dispute: Dispute, now: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": dispute.id, "subject": dispute.subject, "subject_id": dispute.subject_id, "opener": dispute.opener,
        "respondent": dispute.respondent, "resolver": dispute.resolver, "reason": dispute.reason,
        "evidence_hash": dispute.evidence_hash, "status": dispute.status, "opened_at": dispute.opened_at,
        "deadline": dispute.deadline, "tx_id": dispute.tx_id,
        "response": None if dispute.responded_at is None else {
            "statement": dispute.statement, "evidence_hash": dispute.response_hash, "at": dispute.responded_at},
        "resolution": None if dispute.resolved_at is None else {
            "outcome": dispute.outcome, "by": dispute.resolved_by, "at": dispute.resolved_at,
            "reason": dispute.resolution},
    }
    if now is not None:
        out["escalated"] = dispute_escalated(dispute, now)
    return out


def complaint_to_json(complaint: Complaint, now: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": complaint.id, "complainant": complaint.complainant, "respondent": complaint.respondent,
        "subject": complaint.subject, "evidence_hash": complaint.evidence_hash, "status": complaint.status,
        "filed_at": complaint.filed_at, "deadline": complaint.deadline, "tx_id": complaint.tx_id,
        "response": None if complaint.responded_at is None else {
            "statement": complaint.statement, "evidence_hash": complaint.response_hash,
            "at": complaint.responded_at},
        "escalated_at": complaint.escalated_at, "escalation": complaint.escalation,
        "closed": None if complaint.closed_at is None else {
            "by": complaint.closed_by, "at": complaint.closed_at, "reason": complaint.close_reason},
    }
    if now is not None:
        out["escalated"] = complaint_escalated(complaint, now)
    return out


def dispute_json(view: StateView, dispute_id: str, now: int | None = None) -> dict[str, Any] | None:
    dispute = get_dispute(view, dispute_id)
    return None if dispute is None else dispute_to_json(dispute, now)


def complaint_json(view: StateView, complaint_id: str, now: int | None = None) -> dict[str, Any] | None:
    complaint = get_complaint(view, complaint_id)
    return None if complaint is None else complaint_to_json(complaint, now)


def _listed(view: StateView, prefix: bytes, limit: int) -> list[str]:
    ids = []
    for key, _ in view.scan(prefix):
        ids.append(key[len(prefix):].decode())
        if len(ids) >= limit:
            break
    return ids


def org_dispute_ids(view: StateView, org_id: str, limit: int = LIST_MAX) -> list[str]:
    """The disputes the org opened, answers or may resolve, by id (at most `limit`)."""
    return _listed(view, DISPUTE_PARTY_PREFIX + org_id.encode() + b"/", limit)


def org_complaint_ids(view: StateView, org_id: str, limit: int = LIST_MAX) -> list[str]:
    """The complaints the org filed or answers, by id (at most `limit`)."""
    return _listed(view, COMPLAINT_PARTY_PREFIX + org_id.encode() + b"/", limit)


def unresolved_dispute_ids(view: StateView, limit: int = LIST_MAX) -> list[str]:
    """Unresolved disputes (the locks), ordered by subject: what supervision and alarms watch."""
    ids = []
    for _, value in view.scan(LOCK_PREFIX):
        ids.append(value.decode())
        if len(ids) >= limit:
            break
    return ids


def open_complaint_ids(view: StateView, limit: int = LIST_MAX) -> list[str]:
    """Complaints not closed, by id."""
    return _listed(view, COMPLAINT_OPEN_PREFIX, limit)
