"""Who may read what (CONTRACT §6 "Who may read what"): pure decisions over a `StateView`.

The node authenticates a request (node/request_auth.py) and hands this module an org id; `reader_of` turns it
into a `Reader` with the role the state gives that org. Every decision here is a function of (reader, resource,
state): no clock, no I/O, no scan of the whole state. Anonymous requests never get here (the node answers 401).

A resource the reader may not see answers exactly like an unknown one (`False` / `None`): certificate ids can be
computed from public tx ids, so any other answer would tell a stranger that a certificate exists. The node turns
that into 404; for holdings and credit lines, whose existence is public, it answers 403.

`GRANTS` is the table: per kind of resource, the relations between reader and resource that grant a read, tried
in order, cheap ones first. Each relation is one predicate in `RELATIONS`.

Certificates. The debtor, the bank named at issue and the regulator see every certificate of a lineage (children
keep the root's debtor and bank). Any other org X sees the certificates on the path from the root to each
certificate X is party to (holds, held, or was asked to finance: the `p/` index of ecert/state.py) and all their
descendants. `can_read_cert` asks the index whether the certificate is X's (one point read: the common case)
and whether X has any part in that lineage (one seek: a stranger stops here); then walks up the parent chain
from the certificate, asking the index at each step (below one of X's?); and only for a split certificate reads
X's part of the lineage and walks up from each of X's certificates until it meets that path (above one of
X's?). Each certificate is read at most once per decision, and no walk goes more than `LINEAGE_DEPTH_MAX` steps
(asserted).

Visibility only grows: the party index is never deleted from and parents never change, so a decision taken on
the latest state holds for every later one (what a live event stream needs).

Tx outcomes. "The whole outcome if X may read what the tx acted on, or signed it." A stored outcome does not say
who signed it, and a transfer's result lists only the children, so the decision also reads the tx itself: the
envelope bytes at the tx's position in its block (`BlockRecord.txs[TxRecord.position]`). `tx_facts` takes both
and extracts the signer and the subject (`SUBJECTS`, per kind: the cert in the body, the root a `ecert.issue`
created, the document, the credit line, the org). Nothing is added to results. A rejected tx acted on nothing:
only its signer and the regulator read its outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.invariant import require
from ecert import disputes, financing, queries
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import Tx, decode_envelope, decode_payload
from ledger.executor import STATUS_COMMITTED, TxOutcome
from ledger.state_view import StateView


@dataclass(frozen=True, slots=True)
class Reader:
    """An authenticated organisation, as the state knows it when it reads."""

    org_id: str
    role: str  # bank | core | supplier | regulator


def reader_of(view: StateView, org_id: str) -> Reader | None:
    """The reader for an authenticated org id; None if the state does not know the org."""
    org = s.get_org(view, org_id)
    return None if org is None else Reader(org.id, org.role)


# --- tx facts: what a stored outcome needs beside it ---------------------------------------------------------------
Subject = tuple[str, ...]
"""What a committed tx acted on: ("cert", id) | ("doc", id) | ("credit", bank, core) | ("org", id) |
("consortium",) for membership governance, whose state every member may know | ("dispute", id) |
("complaint", id)."""


@dataclass(frozen=True, slots=True)
class TxFacts:
    outcome: TxOutcome
    signer: str | None
    """The signer the envelope names (verified or not: a forged tx's outcome only says it was refused);
    None if the envelope does not decode."""
    subject: Subject | None
    """What the tx acted on; None for a rejected tx, or a kind without an entry in SUBJECTS."""


def _body_org(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("org", tx.body.org_id)


def _signer_org(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("org", tx.signer)


def _body_doc(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("doc", tx.body.doc_id)


def _body_cert(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("cert", tx.body.cert_id)


def _issued_root(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("cert", result["certs"][0])


def _credit_line(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("credit", tx.signer, tx.body.core)


def _body_root(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("cert", tx.body.root_id)


def _finance_limit(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("credit", tx.signer, tx.body.org)  # the bank's line to that org: the two of them and the regulator


def _consortium(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("consortium",)


def _opened_dispute(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("dispute", result["dispute_id"])


def _body_dispute(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("dispute", tx.body.dispute_id)


def _filed_complaint(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("complaint", result["complaint_id"])


def _body_complaint(tx: Tx, result: Mapping[str, Any]) -> Subject:
    return ("complaint", tx.body.complaint_id)


SUBJECTS: Mapping[str, Callable[[Tx, Mapping[str, Any]], Subject]] = {
    "org.register": _body_org,
    "org.approve": _body_org,
    "org.freeze": _body_org,
    "org.unfreeze": _body_org,
    "org.rotate_key": _signer_org,
    "credit.grant": _credit_line,
    "trade.anchor": _body_doc,
    "trade.confirm": _body_doc,
    "ecert.issue": _issued_root,
    "ecert.accept": _body_cert,
    "ecert.reject": _body_cert,
    "ecert.transfer": _body_cert,  # the parent: whoever sees it sees the whole split
    "ecert.split": _body_cert,
    "finance.request": _body_cert,
    "finance.approve": _body_cert,
    "finance.decline": _body_cert,
    "ecert.settle": _body_cert,
    # payment, default, recourse (ecert/settlement.py, ecert/financing.py): the certificate; a recourse claim's
    # bank and seller both held it, so both read it (the claim itself: `can_read_claim`).
    "ecert.pay": _body_cert,
    "ecert.settle_root": _body_root,
    "ecert.default": _body_cert,
    "ecert.revoke": _body_cert,
    "recourse.repay": _body_cert,
    "recourse.write_off": _body_cert,
    "finance.limit": _finance_limit,
    "member.propose": _consortium,
    "member.approve": _consortium,
    # A dispute is its parties' (and its resolver's), not everyone's who may read the certificate or document.
    "dispute.open": _opened_dispute,
    "dispute.respond": _body_dispute,
    "dispute.resolve": _body_dispute,
    "complaint.file": _filed_complaint,
    "complaint.respond": _body_complaint,
    "complaint.escalate": _body_complaint,
    "complaint.close": _body_complaint,
}
"""Per tx kind, what a committed tx of that kind acted on. A kind missing here is read by its signer and the
regulator only (tests/ecert/test_access.py insists that every kind is listed, so a new kind is a decision)."""


def tx_facts(outcome: TxOutcome, raw: bytes) -> TxFacts:
    """The facts for a stored outcome and the envelope bytes its block carries at the tx's position."""
    try:
        env = decode_envelope(raw)
    except TxRejected:
        return TxFacts(outcome, None, None)
    try:
        tx = decode_payload(env, None)
    except TxRejected:
        return TxFacts(outcome, env.signer, None)
    require(tx.tx_id == outcome.tx_id, f"tx {tx.tx_id} given with the outcome of {outcome.tx_id}")
    subject_of = SUBJECTS.get(tx.type)
    if outcome.status != STATUS_COMMITTED or subject_of is None:
        return TxFacts(outcome, tx.signer, None)
    return TxFacts(outcome, tx.signer, subject_of(tx, outcome.result or {}))


# --- relations: reader x resource -> bool ---------------------------------------------------------------------------
# `view` is None for the resources whose decision reads no state (holdings, credit lines).
def _regulator(view: StateView | None, reader: Reader, resource: Any) -> bool:
    return reader.role == s.REGULATOR


def _any_member(view: StateView | None, reader: Reader, resource: Any) -> bool:
    return True  # signed by a member: that is all a public profile needs


def _same_org(view: StateView | None, reader: Reader, org_id: str) -> bool:
    return reader.org_id == org_id


def _credit_party(view: StateView | None, reader: Reader, line: tuple[str, str]) -> bool:
    return reader.org_id in line


def _doc_party(view: StateView | None, reader: Reader, doc: s.TradeDoc) -> bool:
    return reader.org_id in (doc.issuer, doc.counterparty)


def _doc_sealed_bank(view: StateView | None, reader: Reader, doc: s.TradeDoc) -> bool:
    return reader.role == s.BANK and any(org_id == reader.org_id for org_id, _ in doc.ciphertext)


def _cert_debtor(view: StateView | None, reader: Reader, cert: s.Cert) -> bool:
    return reader.org_id == cert.debtor


def _cert_issue_bank(view: StateView | None, reader: Reader, cert: s.Cert) -> bool:
    return reader.org_id == cert.bank


def _cert_party_path(view: StateView | None, reader: Reader, cert: s.Cert) -> bool:
    assert view is not None
    org_id, root_id = reader.org_id, cert.root_id
    if s.is_party(view, org_id, root_id, cert.id):
        return True  # the common case: one's own certificate, one point read
    if not s.has_party_in(view, org_id, root_id):
        return False  # no part in this lineage: a stranger costs one seek
    path = {cert.id}  # the cert and its ancestors: is one of them the reader's?
    node = cert
    while node.parent_id is not None:
        if len(path) > s.LINEAGE_DEPTH_MAX:
            require(False, f"lineage {root_id} is deeper than LINEAGE_DEPTH_MAX")
        node = _parent(view, node)
        if s.is_party(view, org_id, root_id, node.id):
            return True
        path.add(node.id)
    if not cert.children:
        return False  # a leaf is above nothing
    return _above_any(view, cert, path, frozenset(s.party_cert_ids(view, org_id, root_id)))


def _dispute_party(view: StateView | None, reader: Reader, dispute: disputes.Dispute) -> bool:
    return reader.org_id in (dispute.opener, dispute.respondent, dispute.resolver)


def _complaint_party(view: StateView | None, reader: Reader, complaint: disputes.Complaint) -> bool:
    return reader.org_id in (complaint.complainant, complaint.respondent)


def _claim_party(view: StateView | None, reader: Reader, claim: financing.RecourseClaim) -> bool:
    return reader.org_id in (claim.bank, claim.seller)


def _tx_signer(view: StateView | None, reader: Reader, facts: TxFacts) -> bool:
    return facts.signer is not None and reader.org_id == facts.signer


def _tx_subject(view: StateView | None, reader: Reader, facts: TxFacts) -> bool:
    assert view is not None
    subject = facts.subject
    if subject is None:
        return False
    kind, ids = subject[0], subject[1:]
    if kind == "cert":
        return can_read_cert(view, reader, ids[0])
    if kind == "doc":
        return can_read_doc(view, reader, ids[0])
    if kind == "credit":
        return can_read_credit(reader, ids[0], ids[1])
    if kind == "dispute":
        return can_read_dispute(view, reader, ids[0])
    if kind == "complaint":
        return can_read_complaint(view, reader, ids[0])
    require(kind in ("org", "consortium"), f"unknown tx subject {kind!r}")
    return True  # org profiles and membership are open to every member


RELATIONS: Mapping[str, Callable[[StateView | None, Reader, Any], bool]] = {
    "regulator": _regulator,
    "any_member": _any_member,
    "same_org": _same_org,
    "credit_party": _credit_party,
    "doc_party": _doc_party,
    "doc_sealed_bank": _doc_sealed_bank,
    "cert_debtor": _cert_debtor,
    "cert_issue_bank": _cert_issue_bank,
    "cert_party_path": _cert_party_path,
    "dispute_party": _dispute_party,
    "complaint_party": _complaint_party,
    "claim_party": _claim_party,
    "tx_signer": _tx_signer,
    "tx_subject": _tx_subject,
}

LINEAGE_WIDE = ("regulator", "cert_debtor", "cert_issue_bank")
"""The relations that see a whole lineage."""

GRANTS: Mapping[str, tuple[str, ...]] = {
    "org_profile": ("any_member",),
    "holdings": ("regulator", "same_org"),
    "credit": ("regulator", "credit_party"),
    "doc": ("regulator", "doc_party", "doc_sealed_bank"),
    "cert": (*LINEAGE_WIDE, "cert_party_path"),
    "tx_outcome": ("regulator", "tx_signer", "tx_subject"),
    "dispute": ("regulator", "dispute_party"),
    "complaint": ("regulator", "complaint_party"),
    # payment and financing (ecert/settlement.py, ecert/financing.py)
    "claim": ("regulator", "claim_party"),
    "owed": ("regulator", "same_org"),
    "exposure": ("regulator", "credit_party"),
    "root_payments": LINEAGE_WIDE,
}
"""CONTRACT §6's matrix, one row per resource (`/v1/orgs/{id}`, `/v1/orgs/{id}/certs`, `/v1/credit/{bank}/{core}`,
`/v1/docs/{id}`, `/v1/certs/{id}` and its lineage, `/v1/tx/{id}` and the outcomes of `/v1/events`; a dispute: its
opener, respondent and resolver bank; a complaint: its complainant and respondent — each also the regulator; a
recourse claim: its bank and seller; what org O is owed (`settlement.owed_to`): O; a bank's exposure to an org:
the two; a root's paid/outstanding totals: who sees its whole lineage, since they add up branches a supplier
may not see — each also the regulator)."""


def _granted(kind: str, view: StateView | None, reader: Reader, resource: Any) -> bool:
    return any(RELATIONS[relation](view, reader, resource) for relation in GRANTS[kind])


# --- the lineage walks -----------------------------------------------------------------------------------------------
def _parent(view: StateView, cert: s.Cert) -> s.Cert:
    assert cert.parent_id is not None
    parent = s.get_cert(view, cert.parent_id)
    if parent is None or parent.root_id != cert.root_id:
        require(False, f"cert {cert.id}: parent {cert.parent_id} missing or in another lineage")
    assert parent is not None
    return parent


def _above_any(view: StateView, cert: s.Cert, on_path: set[str], mine: frozenset[str]) -> bool:
    """Is `cert` an ancestor of one of `mine`? Walk up from each until the walk meets `cert`'s path to the root
    (every walk does: the root is on it) or a cert an earlier walk passed; so each cert is read at most once."""
    passed: set[str] = set()
    for cert_id in sorted(mine):
        node = s.get_cert(view, cert_id)
        require(node is not None, f"party index names a missing cert {cert_id}")
        assert node is not None
        walked = []
        while node.id not in on_path and node.id not in passed:
            walked.append(node.id)
            if len(walked) > s.LINEAGE_DEPTH_MAX:
                require(False, f"lineage {cert.root_id} is deeper than LINEAGE_DEPTH_MAX")
            node = _parent(view, node)
        if node.id == cert.id:
            return True
        passed.update(walked)
    return False


def visible_ids(certs: Sequence[Mapping[str, Any]], mine: Iterable[str]) -> set[str]:
    """Of a whole lineage (cert JSON in creation order), the ids on the path from the root to each of `mine`
    and every descendant of those. Linear in the lineage."""
    parent = {c["id"]: c["parent_id"] for c in certs}
    children = {c["id"]: c["children"] for c in certs}
    up: set[str] = set()
    down: set[str] = set()
    for cert_id in mine:
        node: str | None = cert_id
        while node is not None and node not in up and node in parent:
            up.add(node)
            node = parent[node]
        stack = [cert_id]
        while stack:
            node_id = stack.pop()
            if node_id in down or node_id not in children:
                continue
            down.add(node_id)
            stack.extend(children[node_id])
    return up | down


# --- the decisions -------------------------------------------------------------------------------------------------
def can_read_cert(view: StateView, reader: Reader, cert_id: str) -> bool:
    """`GET /v1/certs/{id}`: False for an unknown id and for one the reader may not see alike."""
    cert = s.get_cert(view, cert_id)
    return cert is not None and _granted("cert", view, reader, cert)


def visible_lineage(view: StateView, reader: Reader, cert_id: str, now: int | None = None) -> dict[str, Any] | None:
    """`GET /v1/certs/{id}/lineage`: the lineage JSON of ecert/queries.py holding only what the reader may see
    (creation order kept); None if the id is unknown or not visible to the reader."""
    cert = s.get_cert(view, cert_id)
    if cert is None:
        return None
    if any(RELATIONS[relation](view, reader, cert) for relation in LINEAGE_WIDE):  # cheap: no reads
        return queries.get_lineage(view, cert_id, now)
    mine = s.party_cert_ids(view, reader.org_id, cert.root_id)
    if not mine:
        return None
    lineage = queries.get_lineage(view, cert_id, now)
    require(lineage is not None, f"cert {cert_id} without a lineage")
    assert lineage is not None
    visible = visible_ids(lineage["certs"], mine)
    if cert.id not in visible:
        return None
    return {"root_id": lineage["root_id"], "certs": [c for c in lineage["certs"] if c["id"] in visible]}


def can_read_holdings(reader: Reader, org_id: str) -> bool:
    """`GET /v1/orgs/{id}/certs` (403 otherwise: an org's holdings exist publicly)."""
    return _granted("holdings", None, reader, org_id)


def can_read_credit(reader: Reader, bank: str, core: str) -> bool:
    """`GET /v1/credit/{bank}/{core}` (403 otherwise)."""
    return _granted("credit", None, reader, (bank, core))


def can_read_doc(view: StateView, reader: Reader, doc_id: str) -> bool:
    """`GET /v1/docs/{id}`: its two parties, a bank it is sealed for, the regulator; unknown and hidden alike."""
    doc = s.get_doc(view, doc_id)
    return doc is not None and _granted("doc", view, reader, doc)


def can_read_dispute(view: StateView, reader: Reader, dispute_id: str) -> bool:
    """A dispute: its opener, its respondent, its resolver bank and the regulator; unknown and hidden alike."""
    dispute = disputes.get_dispute(view, dispute_id)
    return dispute is not None and _granted("dispute", view, reader, dispute)


def can_read_complaint(view: StateView, reader: Reader, complaint_id: str) -> bool:
    """A complaint: its complainant, the org it is against and the regulator; unknown and hidden alike."""
    complaint = disputes.get_complaint(view, complaint_id)
    return complaint is not None and _granted("complaint", view, reader, complaint)


def org_public_profile(view: StateView, org_id: str) -> dict[str, Any] | None:
    """`GET /v1/orgs/{id}` for any signed reader: id, name, role, status and public keys; None if unknown."""
    org = s.get_org(view, org_id)
    if org is None:
        return None
    return {"id": org.id, "name": org.name, "role": org.role, "status": org.status, "sign_pk": org.sign_pk,
            "box_pk": org.box_pk}


def can_read_tx_outcome(view: StateView, reader: Reader, facts: TxFacts) -> bool:
    """`GET /v1/tx/{id}`: the whole outcome, or only `tx_id`, `status`, `height` (as for anonymous readers)."""
    return _granted("tx_outcome", view, reader, facts)


def visible_outcomes(view: StateView, reader: Reader, block: Iterable[TxFacts]) -> list[TxOutcome]:
    """The outcomes of one block a `/v1/events` subscriber may see, in block order. Build the facts once per block
    (`tx_facts`) and call this per subscriber."""
    return [facts.outcome for facts in block if can_read_tx_outcome(view, reader, facts)]



def can_read_claim(view: StateView, reader: Reader, cert_id: str) -> bool:
    """The recourse claim on a certificate: its bank, its seller and the regulator; unknown and hidden alike."""
    claim = financing.get_claim(view, cert_id)
    return claim is not None and _granted("claim", view, reader, claim)


def can_read_owed(reader: Reader, org_id: str) -> bool:
    """What an org is owed and owes (`ecert.settlement.owed_to`): the org and the regulator (403 otherwise)."""
    return _granted("owed", None, reader, org_id)


def can_read_exposure(reader: Reader, bank: str, org: str) -> bool:
    """A bank's financing exposure and limit for an org: the bank, the org and the regulator (403 otherwise)."""
    return _granted("exposure", None, reader, (bank, org))


def can_read_root_payments(view: StateView, reader: Reader, root_id: str) -> bool:
    """A root's paid/outstanding totals (`ecert.settlement.root_payments`): its debtor, the bank named at issue
    and the regulator; unknown and hidden alike."""
    root = s.get_cert(view, root_id)
    return root is not None and root.parent_id is None and _granted("root_payments", view, reader, root)
