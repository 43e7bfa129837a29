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
}
"""Certificates. `issued` exists only for roots; children start `active`. `split`, `settled`, `cancelled` are final."""

ORG_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.ORG_PENDING, "org.approve"): s.ORG_ACTIVE,
    (s.ORG_ACTIVE, "org.freeze"): s.ORG_FROZEN,
    (s.ORG_FROZEN, "org.unfreeze"): s.ORG_ACTIVE,
}

DOC_TRANSITIONS: Mapping[tuple[str, str], str] = {
    (s.DOC_ANCHORED, "trade.confirm"): s.DOC_CONFIRMED,
}

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


def next_org_status(status: str, kind: str) -> str:
    return _next(ORG_TRANSITIONS, "organisation", status, kind)


def next_doc_status(status: str, kind: str) -> str:
    return _next(DOC_TRANSITIONS, "trade document", status, kind)


def next_proposal_status(status: str, event: str) -> str:
    return _next(PROPOSAL_TRANSITIONS, "membership proposal", status, event)


def check_proposal_table(table: Mapping[tuple[str, str], str]) -> None:
    """Raise InvariantViolation unless every move is between known statuses on a known event."""
    for (status, event), new in table.items():
        require(event in PROPOSAL_EVENTS, f"proposal transition on unknown event {event!r}")
        require(status in m.PROPOSAL_STATUSES and new in m.PROPOSAL_STATUSES,
                f"proposal transition {status!r} -> {new!r} names an unknown status")


check_proposal_table(PROPOSAL_TRANSITIONS)
