"""Every status transition of the domain, in one table (h11's _state.py style).

`(status, tx type) -> new status`. A pair missing from the table is not allowed: `next_*` raises
`TxRejected("invalid_status_transition")`. The rules in ecert/rules.py check who may act and with what amounts;
this table alone says which statuses a kind of transaction may move from and to. Membership proposals are the
one table keyed by event instead of tx kind (see PROPOSAL_TRANSITIONS).
"""

from __future__ import annotations

from collections.abc import Mapping

from consensus.invariant import require
from ecert import codes
from ecert import membership as m
from ecert import state as s
from ecert.errors import TxRejected

CERT_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.ISSUED, "ecert.accept"): s.ACTIVE,
    (s.ISSUED, "ecert.reject"): s.CANCELLED,
    (s.ACTIVE, "ecert.transfer"): s.SPLIT,
    (s.ACTIVE, "ecert.split"): s.SPLIT,
    (s.ACTIVE, "finance.request"): s.FINANCING,
    (s.FINANCING, "finance.approve"): s.FINANCED,
    (s.FINANCING, "finance.decline"): s.ACTIVE,
    (s.ACTIVE, "ecert.settle"): s.SETTLED,
    (s.FINANCED, "ecert.settle"): s.SETTLED,
    # A request still pending at maturity must not block the debtor from paying: settling pays the holder
    # (who never sold it) and drops the request.
    (s.FINANCING, "ecert.settle"): s.SETTLED,
    # Payment and default (ecert/settlement.py). A payment that leaves nothing due moves as `ecert.settle` does;
    # one that leaves something due keeps the status, except that it drops a pending financing request (a partly
    # paid certificate is not financed).
    (s.DEFAULTED, "ecert.settle"): s.SETTLED,
    (s.ACTIVE, "ecert.pay"): s.ACTIVE,
    (s.FINANCING, "ecert.pay"): s.ACTIVE,
    (s.FINANCED, "ecert.pay"): s.FINANCED,
    (s.DEFAULTED, "ecert.pay"): s.DEFAULTED,
    (s.ACTIVE, "ecert.settle_root"): s.SETTLED,
    (s.FINANCING, "ecert.settle_root"): s.SETTLED,
    (s.FINANCED, "ecert.settle_root"): s.SETTLED,
    (s.DEFAULTED, "ecert.settle_root"): s.SETTLED,
    (s.ACTIVE, "ecert.default"): s.DEFAULTED,
    (s.FINANCING, "ecert.default"): s.DEFAULTED,
    (s.FINANCED, "ecert.default"): s.DEFAULTED,
    (s.ISSUED, "ecert.revoke"): s.CANCELLED,
}
"""Certificates. `issued` exists only for roots; children start `active`. `split`, `settled`, `cancelled` are final."""

ACCEPTANCE_EXPIRED = "acceptance_expired"
"""The one certificate move no tx makes: a block at or after a root's `accept_by` cancels it if still issued
(ecert/settlement.py `begin_block`). Keyed by event, as the proposals below."""

CERT_EVENT_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.ISSUED, ACCEPTANCE_EXPIRED): s.CANCELLED,
}

ORG_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.ORG_PENDING, "org.approve"): s.ORG_ACTIVE,
    (s.ORG_ACTIVE, "org.freeze"): s.ORG_FROZEN,
    (s.ORG_FROZEN, "org.unfreeze"): s.ORG_ACTIVE,
}

DOC_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.DOC_ANCHORED, "trade.confirm"): s.DOC_CONFIRMED,
}

DISPUTE_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.DISPUTE_OPEN, "dispute.respond"): s.DISPUTE_RESPONDED,
    (s.DISPUTE_OPEN, "dispute.resolve"): s.DISPUTE_RESOLVED,
    (s.DISPUTE_RESPONDED, "dispute.resolve"): s.DISPUTE_RESOLVED,
}
"""Disputes (ecert/disputes.py). `resolved` is final (its outcome, upheld or dismissed, is a field). Escalation
to the regulator past the deadline is derived from block time, not a stored move: see ecert/disputes.py."""

COMPLAINT_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.COMPLAINT_OPEN, "complaint.respond"): s.COMPLAINT_RESPONDED,
    (s.COMPLAINT_OPEN, "complaint.escalate"): s.COMPLAINT_ESCALATED,
    (s.COMPLAINT_RESPONDED, "complaint.escalate"): s.COMPLAINT_ESCALATED,
    (s.COMPLAINT_OPEN, "complaint.close"): s.COMPLAINT_CLOSED,
    (s.COMPLAINT_RESPONDED, "complaint.close"): s.COMPLAINT_CLOSED,
    (s.COMPLAINT_ESCALATED, "complaint.close"): s.COMPLAINT_CLOSED,
}
"""Complaints (ecert/disputes.py). `closed` is final."""

# Recourse claims (ecert/financing.py), keyed by event: a repayment of the whole rest closes the claim, a part
# keeps it open, so the kind alone does not say which move happens.
REPAY = "repay"
REPAY_IN_FULL = "repay_in_full"
WRITE_OFF = "write_off"

CLAIM_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.CLAIM_OPEN, REPAY): s.CLAIM_OPEN,
    (s.CLAIM_OPEN, REPAY_IN_FULL): s.CLAIM_CLOSED,
    (s.CLAIM_OPEN, WRITE_OFF): s.CLAIM_CLOSED,
}
"""Claims. `closed` is final: repaid and written off add up to the claim."""

# Membership proposals (ecert/governance.py). Keyed by *event*, not by tx kind: one `member.approve` can carry
# its own proposal out and supersede every other open one, so a tx kind alone does not say which move happens.
APPROVE = "approve"  # an approval that does not reach the threshold yet
CARRY_OUT = "carry_out"  # the threshold is reached: the membership change happens in that same tx
SUPERSEDE = "supersede"  # another proposal was carried out while this one was open
EXPIRE = "expire"  # block time reached expires_at (stored when a tx touches it; a query derives it anyway)
PROPOSAL_EVENTS = (APPROVE, CARRY_OUT, SUPERSEDE, EXPIRE)

PROPOSAL_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (m.P_OPEN, APPROVE): m.P_OPEN,
    (m.P_OPEN, CARRY_OUT): m.P_EFFECTIVE,
    (m.P_OPEN, SUPERSEDE): m.P_SUPERSEDED,
    (m.P_OPEN, EXPIRE): m.P_EXPIRED,
}
"""Proposals. Only `open` moves; `effective`, `superseded` and `expired` are final."""

CERT_FINAL_STATUSES = frozenset({s.SPLIT, s.SETTLED, s.CANCELLED})


def _next(table: Mapping[tuple[str, str], str], what: str, status: str, kind: str) -> str:
    new = table.get((status, kind))
    if new is None:
        raise TxRejected(codes.INVALID_STATUS_TRANSITION, f"{kind} is not allowed on a {status} {what}")
    return new


def next_cert_status(status: str, kind: str) -> str:
    return _next(CERT_TRANSITIONS, "certificate", status, kind)


def next_cert_event_status(status: str, event: str) -> str:
    return _next(CERT_EVENT_TRANSITIONS, "certificate", status, event)


def next_claim_status(status: str, event: str) -> str:
    return _next(CLAIM_TRANSITIONS, "recourse claim", status, event)


def next_org_status(status: str, kind: str) -> str:
    return _next(ORG_TRANSITIONS, "organisation", status, kind)


def next_doc_status(status: str, kind: str) -> str:
    return _next(DOC_TRANSITIONS, "trade document", status, kind)


def next_dispute_status(status: str, kind: str) -> str:
    return _next(DISPUTE_TRANSITIONS, "dispute", status, kind)


def next_complaint_status(status: str, kind: str) -> str:
    return _next(COMPLAINT_TRANSITIONS, "complaint", status, kind)


def next_proposal_status(status: str, event: str) -> str:
    return _next(PROPOSAL_TRANSITIONS, "membership proposal", status, event)


def check_proposal_table(table: Mapping[tuple[str, str], str]) -> None:
    """Raise InvariantViolation unless every move is between known statuses on a known event."""
    for (status, event), new in table.items():
        require(event in PROPOSAL_EVENTS, f"proposal transition on unknown event {event!r}")
        require(status in m.PROPOSAL_STATUSES and new in m.PROPOSAL_STATUSES,
                f"proposal transition {status!r} -> {new!r} names an unknown status")


check_proposal_table(PROPOSAL_TRANSITIONS)
