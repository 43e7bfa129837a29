"""Every status transition of the domain, in one table (h11's _state.py style).

`(status, tx type) -> new status`. A pair missing from the table is not allowed: `next_*` raises
`TxRejected("invalid_status_transition")`. The rules in ecert/rules.py check who may act and with what amounts;
this table alone says which statuses a kind of transaction may move from and to.
"""

from __future__ import annotations

from collections.abc import Mapping

from ecert import codes
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
