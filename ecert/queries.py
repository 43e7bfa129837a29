"""Read-only queries: JSON-ready dicts for the HTTP API (CONTRACT §4), `None` when the id is unknown.

Every query is a point read or a prefix scan of an index (holdings `h/<org>/`, lineage `l/<root>/`); none scans
the whole state. Pass `now` (the last block time) to get each certificate's derived `overdue` flag: a live
certificate whose maturity has passed and that the debtor has not settled yet.
"""

from __future__ import annotations

import base64
from typing import Any

from ecert import state as s
from ledger.state_view import StateView


def cert_to_json(cert: s.Cert, now: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": cert.id, "root_id": cert.root_id, "parent_id": cert.parent_id, "debtor": cert.debtor,
        "holder": cert.holder, "amount": cert.amount, "maturity": cert.maturity, "status": cert.status,
        "bank": cert.bank, "created_at": cert.created_at, "created_by": cert.created_by,
        "updated_at": cert.updated_at, "children": list(cert.children),
        "invoices": [{"doc_id": doc_id, "amount": amount} for doc_id, amount in cert.invoices],
        "finance": None, "settled_at": cert.settled_at, "paid_to": cert.paid_to,
        "trade_docs": [{"doc_id": doc_id, "amount": amount} for doc_id, amount in cert.trade_docs],
    }
    if cert.finance_bank is not None or cert.financed_at is not None:
        out["finance"] = {
            "bank": cert.finance_bank, "requested_at": cert.finance_requested_at,
            "principal": cert.amount if cert.financed_at is not None else None,
            "discount_bps": cert.discount_bps, "days": cert.discount_days, "discount": cert.discount,
            "disbursed": cert.disbursed, "financed_at": cert.financed_at, "seller": cert.seller,
        }
    if now is not None:
        out["overdue"] = cert.status in s.LIVE_STATUSES and now >= cert.maturity
    return out


def get_cert(view: StateView, cert_id: str, now: int | None = None) -> dict[str, Any] | None:
    cert = s.get_cert(view, cert_id)
    return None if cert is None else cert_to_json(cert, now)


def get_lineage(view: StateView, root_or_any_id: str, now: int | None = None) -> dict[str, Any] | None:
    """The root and every descendant, in creation order, for the lineage of any of its certificates."""
    cert = s.get_cert(view, root_or_any_id)
    if cert is None:
        return None
    certs = []
    for cert_id in s.lineage_ids(view, cert.root_id):
        member = s.get_cert(view, cert_id)
        if member is not None:
            certs.append(cert_to_json(member, now))
    return {"root_id": cert.root_id, "certs": certs}


def get_org(view: StateView, org_id: str) -> dict[str, Any] | None:
    org = s.get_org(view, org_id)
    if org is None:
        return None
    return {"id": org.id, "name": org.name, "role": org.role, "sign_pk": org.sign_pk, "box_pk": org.box_pk,
            "status": org.status, "registered_at": org.registered_at, "updated_at": org.updated_at,
            "reason": org.reason, "kyc_hash": org.kyc_hash}


def get_holdings(view: StateView, org_id: str, now: int | None = None) -> dict[str, Any] | None:
    """The org's live certificates (issued, active, financing, financed), sorted by id."""
    if s.get_org(view, org_id) is None:
        return None
    certs = []
    for cert_id in s.holding_ids(view, org_id):
        cert = s.get_cert(view, cert_id)
        if cert is not None:
            certs.append(cert_to_json(cert, now))
    return {"org_id": org_id, "certs": certs, "total": sum(c["amount"] for c in certs)}


def get_credit_line(view: StateView, bank: str, core: str) -> dict[str, Any] | None:
    line = s.get_credit(view, bank, core)
    if line is None:
        return None
    return {"bank": line.bank, "core": line.core, "limit": line.limit, "used": line.used,
            "available": line.limit - line.used, "expires_at": line.expires_at, "granted_at": line.granted_at}


def get_trade_doc(view: StateView, doc_id: str) -> dict[str, Any] | None:
    doc = s.get_doc(view, doc_id)
    if doc is None:
        return None
    return {"id": doc.id, "kind": doc.kind, "doc_hash": doc.doc_hash, "issuer": doc.issuer,
            "counterparty": doc.counterparty, "amount": doc.amount, "status": doc.status,
            "anchored_at": doc.anchored_at, "confirmed_at": doc.confirmed_at, "backed": doc.backed,
            "contract_id": doc.contract_id, "invoiced": doc.invoiced, "drawn": doc.drawn,
            "ciphertext": {org: base64.b64encode(ct).decode() for org, ct in doc.ciphertext}}
