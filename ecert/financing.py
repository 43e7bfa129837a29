"""A bank's financing exposure and limits, and recourse claims (issue 14, items 2 and 4).

**Exposure.** For each (bank, org) the bank has financed a certificate with — the org as the seller (the holder
who sold it) or as the debtor (the core enterprise that owes it) — an `Exposure` record keeps `used`: the
principal the bank financed that the org still stands behind. `finance.approve` adds the certificate's amount
to the seller's and the debtor's record (once if they are the same org); every principal payment the bank
receives as holder takes it off both; a default with recourse moves the rest onto the seller alone (the claim
below); a recourse repayment or write-off takes it off the seller's. So `used` is what the bank financed less
what it recovered and wrote off, and ecert/invariants.py recomputes it from the certificates and claims.

**Limits.** `finance.limit` (a bank) sets `limit` on its record for one supplier or core enterprise; without
one (`limit` None) the bank has set no limit for that org and nothing is checked — so every `finance.approve`
made before limits existed stays valid. With one, `finance.approve` needs `used + amount <= limit` for both the
seller and the debtor (`finance_limit_exceeded`); settlement, recovery and write-off free the room again.

**Recourse.** `finance.approve` with `recourse: true`: if the certificate defaults while the bank holds it, the
bank's default declaration files a claim against the seller for the unpaid principal and hands the certificate
back to the seller (it now bears the debtor's default, and collects from the debtor itself). The seller repays
the bank, in part or all (`recourse.repay`); the bank writes off what it gives up (`recourse.write_off`).
Without recourse the bank keeps the defaulted certificate and the loss, until the debtor pays.

Key schema (ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so "/" never occurs inside one):

    fl/<bank>/<org>          -> Exposure record
    rc/<cert_id>             -> RecourseClaim record (one per certificate at most: a default happens once)
    rcx/<org>/<cert_id>      -> b""  the claim's bank and seller (listing what each is owed / owes)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from consensus.invariant import require
from ecert import codes, lifecycle
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import FinanceLimitSet, RecourseRepay, RecourseWriteOff, Tx
from ledger.state_view import StateView

CLAIM_OPEN = s.CLAIM_OPEN
CLAIM_CLOSED = s.CLAIM_CLOSED
LIST_MAX = 100
"""Most claims one listing answer holds."""


class Exposure(NamedTuple):
    bank: str
    org: str
    limit: int | None  # None: the bank set no limit for this org
    used: int  # principal financed that the org still stands behind (seller or debtor)
    limit_set_at: int | None = None


class RecourseClaim(NamedTuple):
    cert_id: str
    bank: str
    seller: str
    amount: int  # the unpaid principal at default
    repaid: int
    written_off: int
    status: str  # open | closed
    filed_at: int
    closed_at: int | None = None
    reason: str | None = None  # of the write-off


EXPOSURE_PREFIX = b"fl/"
CLAIM_PREFIX = b"rc/"
CLAIM_PARTY_PREFIX = b"rcx/"


def exposure_key(bank: str, org: str) -> bytes:
    return EXPOSURE_PREFIX + bank.encode() + b"/" + org.encode()


def claim_key(cert_id: str) -> bytes:
    return CLAIM_PREFIX + cert_id.encode()


def claim_party_prefix(org_id: str) -> bytes:
    return CLAIM_PARTY_PREFIX + org_id.encode() + b"/"


def get_exposure(view: StateView, bank: str, org: str) -> Exposure | None:
    data = view.get(exposure_key(bank, org))
    return None if data is None else s.decode_record(Exposure, data)


def put_exposure(view: StateView, line: Exposure) -> None:
    if line.used < 0 or (line.limit is not None and line.used > line.limit):
        require(False, f"exposure {line.bank}/{line.org}: used {line.used} outside 0..{line.limit}")
    view.put(exposure_key(line.bank, line.org), s.encode_record(line))


def get_claim(view: StateView, cert_id: str) -> RecourseClaim | None:
    data = view.get(claim_key(cert_id))
    return None if data is None else s.decode_record(RecourseClaim, data)


def put_claim(view: StateView, claim: RecourseClaim) -> None:
    if not (claim.repaid >= 0 and claim.written_off >= 0 and claim.repaid + claim.written_off <= claim.amount):
        require(False, f"claim on {claim.cert_id}: repaid {claim.repaid} + written off {claim.written_off} "
                       f"outside 0..{claim.amount}")
    closed = claim.repaid + claim.written_off == claim.amount
    if closed != (claim.status == CLAIM_CLOSED):
        require(False, f"claim on {claim.cert_id} is {claim.status} with {claim_outstanding(claim)} outstanding")
    view.put(claim_key(claim.cert_id), s.encode_record(claim))


def claim_outstanding(claim: RecourseClaim) -> int:
    return claim.amount - claim.repaid - claim.written_off


def exposure_orgs(cert: s.Cert) -> tuple[str, ...]:
    """The orgs a financed certificate counts against: its seller and its debtor (once if the same)."""
    require(cert.seller is not None, f"cert {cert.id} was not financed")
    assert cert.seller is not None
    return (cert.seller,) if cert.seller == cert.debtor else (cert.seller, cert.debtor)


# --- used by the other rules ---------------------------------------------------------------------------------------
def check_limits(view: StateView, bank: str, orgs: Iterable[str], principal: int) -> None:
    """finance.approve: raise finance_limit_exceeded unless every org's limit (if set) has room. Reads only."""
    for org in orgs:
        line = get_exposure(view, bank, org)
        if line is not None and line.limit is not None and line.used + principal > line.limit:
            raise TxRejected(codes.FINANCE_LIMIT_EXCEEDED,
                             f"{bank}'s financing of {org}: {line.used} used + {principal} is over the limit "
                             f"{line.limit}")


def add_exposure(view: StateView, bank: str, orgs: Iterable[str], delta: int) -> None:
    """Add `delta` (negative: recovered) to `used` of each (bank, org); a record is created on first use."""
    for org in orgs:
        line = get_exposure(view, bank, org)
        if line is None:
            require(delta >= 0, f"exposure {bank}/{org} recovered before anything was financed")
            line = Exposure(bank=bank, org=org, limit=None, used=0)
        put_exposure(view, line._replace(used=line.used + delta))


def file_claim(view: StateView, cert: s.Cert, unpaid: int, now: int) -> RecourseClaim:
    """ecert.default of a with-recourse financed certificate: the bank's claim on the seller for `unpaid`."""
    require(get_claim(view, cert.id) is None, f"cert {cert.id} defaulted twice")
    assert cert.seller is not None
    claim = RecourseClaim(cert_id=cert.id, bank=cert.holder, seller=cert.seller, amount=unpaid, repaid=0,
                          written_off=0, status=CLAIM_OPEN, filed_at=now)
    put_claim(view, claim)
    for org in (claim.bank, claim.seller):
        view.put(claim_party_prefix(org) + cert.id.encode(), b"")
    return claim


# --- rules ---------------------------------------------------------------------------------------------------------
def apply_finance_limit(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """finance.limit — signer: a bank. Its financing limit for one supplier or core enterprise."""
    body: FinanceLimitSet = tx.body
    signer = s.signer_org(view, tx.signer)
    if signer.role != s.BANK:
        raise TxRejected(codes.ROLE_NOT_ALLOWED, f"finance.limit needs a bank signer; {tx.signer} is a {signer.role}")
    org = s.get_org(view, body.org)
    if org is None:
        raise TxRejected(codes.UNKNOWN_ORG, f"no organisation {body.org!r}")
    if org.role not in (s.CORE, s.SUPPLIER):
        raise TxRejected(codes.NOT_CORE_OR_SUPPLIER, f"{body.org!r} is a {org.role}; limits are per supplier or "
                                                     "core enterprise")
    line = get_exposure(view, tx.signer, body.org) or Exposure(bank=tx.signer, org=body.org, limit=None, used=0)
    if body.limit < line.used:
        raise TxRejected(codes.LIMIT_BELOW_USED, f"limit {body.limit} is below the {line.used} already financed")
    put_exposure(view, line._replace(limit=body.limit, limit_set_at=now))
    return {"bank": tx.signer, "org": body.org, "limit": body.limit, "used": line.used}


def _claim(view: StateView, cert_id: str) -> RecourseClaim:
    claim = get_claim(view, cert_id)
    if claim is None:
        raise TxRejected(codes.UNKNOWN_CLAIM, f"no recourse claim on certificate {cert_id!r}")
    return claim


def _open(claim: RecourseClaim) -> None:
    if claim.status != CLAIM_OPEN:
        raise TxRejected(codes.CLAIM_CLOSED, f"the recourse claim on {claim.cert_id} is closed")


def apply_recourse_repay(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """recourse.repay — signer: the seller the claim is against. Pays the bank part or all of what is left."""
    body: RecourseRepay = tx.body
    claim = _claim(view, body.cert_id)
    if claim.seller != tx.signer:
        raise TxRejected(codes.NOT_SELLER, f"certificate {claim.cert_id}: the signer is not the seller the claim "
                                           "is against")
    _open(claim)
    outstanding = claim_outstanding(claim)
    if body.amount > outstanding:
        raise TxRejected(codes.AMOUNT_EXCEEDS_CLAIM, f"{body.amount} is more than the {outstanding} outstanding")
    event = lifecycle.REPAY_IN_FULL if body.amount == outstanding else lifecycle.REPAY
    status = lifecycle.next_claim_status(claim.status, event)
    closed_at = now if status == CLAIM_CLOSED else None
    put_claim(view, claim._replace(repaid=claim.repaid + body.amount, status=status, closed_at=closed_at))
    add_exposure(view, claim.bank, (claim.seller,), -body.amount)
    return {"cert_id": claim.cert_id, "bank": claim.bank, "amount": body.amount,
            "repaid": claim.repaid + body.amount, "outstanding": outstanding - body.amount, "status": status}


def apply_recourse_write_off(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    """recourse.write_off — signer: the claim's bank. Gives up what the seller has not repaid."""
    body: RecourseWriteOff = tx.body
    claim = _claim(view, body.cert_id)
    if claim.bank != tx.signer:
        raise TxRejected(codes.NOT_CLAIM_BANK, f"certificate {claim.cert_id}: the signer is not the claim's bank")
    _open(claim)
    outstanding = claim_outstanding(claim)
    status = lifecycle.next_claim_status(claim.status, lifecycle.WRITE_OFF)
    put_claim(view, claim._replace(written_off=claim.written_off + outstanding, status=status, closed_at=now,
                                   reason=body.reason))
    add_exposure(view, claim.bank, (claim.seller,), -outstanding)
    return {"cert_id": claim.cert_id, "seller": claim.seller, "written_off": outstanding, "status": status}


# --- reads -----------------------------------------------------------------------------------------------------
def exposure_json(line: Exposure) -> dict[str, Any]:
    return {"bank": line.bank, "org": line.org, "limit": line.limit, "used": line.used,
            "available": None if line.limit is None else line.limit - line.used}


def claim_json(claim: RecourseClaim) -> dict[str, Any]:
    return {"cert_id": claim.cert_id, "bank": claim.bank, "seller": claim.seller, "amount": claim.amount,
            "repaid": claim.repaid, "written_off": claim.written_off, "outstanding": claim_outstanding(claim),
            "status": claim.status, "filed_at": claim.filed_at, "closed_at": claim.closed_at,
            "reason": claim.reason}


def claims_of(view: StateView, org_id: str, limit: int = LIST_MAX) -> list[RecourseClaim]:
    """The claims the org is the bank or the seller of, by certificate id (at most `limit`)."""
    prefix = claim_party_prefix(org_id)
    out: list[RecourseClaim] = []
    for key, _ in view.scan(prefix):
        if len(out) >= limit:
            break
        claim = get_claim(view, key[len(prefix):].decode())
        require(claim is not None, f"claim index names a missing claim {key!r}")
        assert claim is not None
        out.append(claim)
    return out
