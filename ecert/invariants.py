"""Whole-state invariants of the E-certificate domain (CONTRACT §3 "Invariants"), for debug runs and tests.

`check_invariants(view)` scans the whole state (the only code that does), so the node calls it after each block
only when its debug flag is on. Each broken invariant raises `consensus.invariant.InvariantViolation`.

1. Conservation: for every root that is not `cancelled`, the amounts of its leaves (descendants not `split`,
   whatever else their status: a settled leaf was paid, not lost) sum to the root amount. A cancelled root
   has no children.
2. Credit: a bank's `used` credit to a core equals the outstanding amount issued under that line (what leaves
   still issued, active, financing, financed or defaulted have not paid), and never exceeds its limit.
3. Children: a `split` certificate has exactly one non-empty children set, summing to its amount, and each child
   names it as parent; no other certificate has children, and every non-root's parent lists it.
4. Indexes: holdings hold exactly the live certificates under their holder; the lineage of each root lists
   exactly its members; an invoice's `backed` equals what non-cancelled roots draw on it.
5. Depth: a root is at depth 0, a child one below its parent, and none below LINEAGE_DEPTH_MAX.
6. Parties: the party index names the holder of every certificate, its seller and every bank asked to finance
   it, and nothing but existing certificates under their own root. The certificate index as a whole (holdings,
   lineage, parties) is exactly what `ecert.state.cert_index_entries` derives from the certificates: what the
   state root does not cover, and what a snapshot import rebuilds.
7. Trade background: a document's `drawn` equals what transfers' children record drawing on it; a contract's
   `invoiced` equals the amounts of the invoices naming it, each a contract between the same two parties; and
   backed + drawn + invoiced never exceeds a document's amount.
8. Disputes: a lock exists exactly for each unresolved dispute, on its subject; complaints not closed are
   exactly the open index, and each org's count of them is right and within COMPLAINTS_OPEN_MAX.
9. Payment (ecert/settlement.py, ecert/financing.py): 0 <= paid <= amount, below it while live (but for a
   defaulted one whose penalty is still owed), all of it once settled; so for every root not cancelled, paid + outstanding = amount over its leaves. 0 <= penalty paid <=
   penalty accrued <= amount. The acceptance index lists exactly the issued roots with a deadline. A bank's
   exposure to each org (`used`) equals what it financed with that org as seller or debtor less what it
   recovered and wrote off, recomputed from the certificates and claims, within any limit it set; every claim
   is on a defaulted certificate its seller holds, and is closed exactly when repaid + written off = amount.
10. History (ecert/history.py): the debtor index lists exactly the roots, each under its debtor; every history
   entry is of an existing certificate at a 16-hex-digit height, and is a non-empty list of [tx_id, type,
   signer, ref] whose type is a kind that touches existing certificates, or the cancellation at an acceptance
   deadline (no tx, no signer; of a root).
"""

from __future__ import annotations

import re
from collections import defaultdict

import msgpack

from consensus.invariant import require
from ecert import disputes as d
from ecert import financing as f
from ecert import history as h
from ecert import settlement
from ecert import state as s
from ledger.state_view import StateView


def _all(view: StateView, prefix: bytes, cls: type[s.R]) -> list[s.R]:
    return [s.decode_record(cls, value) for _, value in view.scan(prefix)]


def check_invariants(view: StateView) -> None:
    certs = {c.id: c for c in _all(view, s.CERT_PREFIX, s.Cert)}
    by_root: dict[str, list[s.Cert]] = defaultdict(list)
    for cert in certs.values():
        by_root[cert.root_id].append(cert)
    _check_children(certs)
    _check_conservation(certs, by_root)
    _check_credit(view, certs, by_root)
    _check_indexes(view, certs, by_root)
    _check_parties(view, certs)
    _check_cert_index(view, certs)
    _check_trade_background(view, certs)
    _check_disputes(view)
    _check_settlement(view, certs, by_root)
    _check_history(view, certs)


def _check_children(certs: dict[str, s.Cert]) -> None:
    for cert in certs.values():
        if cert.status == s.SPLIT:
            require(len(cert.children) > 0, f"split cert {cert.id} has no children")
            kids = [certs.get(k) for k in cert.children]
            require(all(k is not None and k.parent_id == cert.id for k in kids),
                    f"children of {cert.id} do not all name it as parent")
            require(sum(k.amount for k in kids if k is not None) == cert.amount,
                    f"children of {cert.id} do not sum to its amount")
        else:
            require(cert.children == (), f"cert {cert.id} is {cert.status} but has children")
        if cert.parent_id is None:
            require(cert.root_id == cert.id, f"root {cert.id} names another root")
            require(cert.depth == 0, f"root {cert.id} at depth {cert.depth}")
        else:
            parent = certs.get(cert.parent_id)
            require(parent is not None and cert.id in parent.children,
                    f"cert {cert.id} is not among its parent's children")
            require(parent is not None and parent.root_id == cert.root_id, f"cert {cert.id} left its lineage")
            require(parent is not None and cert.depth == parent.depth + 1,
                    f"cert {cert.id} at depth {cert.depth}, not one below its parent")
        require(cert.depth <= s.LINEAGE_DEPTH_MAX, f"cert {cert.id} deeper than LINEAGE_DEPTH_MAX")


def _check_conservation(certs: dict[str, s.Cert], by_root: dict[str, list[s.Cert]]) -> None:
    for root_id, members in by_root.items():
        root = certs.get(root_id)
        require(root is not None, f"lineage {root_id} has no root")
        assert root is not None
        if root.status == s.CANCELLED:
            require(len(members) == 1, f"cancelled root {root_id} has descendants")
            continue
        leaves = sum(c.amount for c in members if c.status != s.SPLIT)
        require(leaves == root.amount, f"leaves of {root_id} sum to {leaves}, root is {root.amount}")


def _check_credit(view: StateView, certs: dict[str, s.Cert], by_root: dict[str, list[s.Cert]]) -> None:
    outstanding: dict[tuple[str, str], int] = defaultdict(int)
    for cert in certs.values():
        if cert.status in s.OUTSTANDING_STATUSES:
            outstanding[(cert.bank, cert.debtor)] += cert.amount - cert.paid
    lines = {(line.bank, line.core): line for line in _all(view, s.CREDIT_PREFIX, s.CreditLine)}
    for key in outstanding:
        require(key in lines, f"certificates outstanding under missing credit line {key}")
    for key, line in lines.items():
        require(0 <= line.used <= line.limit, f"credit line {key}: used {line.used} outside 0..{line.limit}")
        require(line.used == outstanding.get(key, 0),
                f"credit line {key}: used {line.used}, outstanding {outstanding.get(key, 0)}")
    backed: dict[str, int] = defaultdict(int)
    for root_id in by_root:
        root = certs[root_id]
        if root.status != s.CANCELLED:
            for doc_id, amount in root.invoices:
                backed[doc_id] += amount
    for doc in _all(view, s.DOC_PREFIX, s.TradeDoc):
        require(doc.backed == backed.get(doc.id, 0), f"invoice {doc.id}: backed {doc.backed}, "
                f"certificates draw {backed.get(doc.id, 0)}")
        require(doc.backed <= doc.amount, f"invoice {doc.id} backs more than its amount")


def _check_indexes(view: StateView, certs: dict[str, s.Cert], by_root: dict[str, list[s.Cert]]) -> None:
    held = {(key.split(b"/")[1].decode(), key.split(b"/")[2].decode()) for key, _ in view.scan(b"h/")}
    live = {(c.holder, c.id) for c in certs.values() if c.status in s.LIVE_STATUSES}
    require(held == live, f"holdings index differs from live certs: {sorted(held ^ live)[:4]}")
    for root_id, members in by_root.items():
        listed = s.lineage_ids(view, root_id)
        require(sorted(listed) == sorted(c.id for c in members), f"lineage index of {root_id} is wrong")
        require(listed[0] == root_id, f"lineage of {root_id} does not start with the root")


def _check_cert_index(view: StateView, certs: dict[str, s.Cert]) -> None:
    """The certificate index is exactly what the cert records imply (what a snapshot import rebuilds)."""
    stored = {key: value for prefix in s.CERT_INDEX.prefixes for key, value in view.scan(prefix)}
    implied = dict(entry for cert in certs.values() for entry in s.cert_index_entries(cert))
    if stored != implied:
        require(False, f"certificate index differs from the certs: missing {sorted(implied.keys() - stored)[:3]}, "
                       f"not implied {sorted(stored.keys() - implied)[:3]}")


def _check_parties(view: StateView, certs: dict[str, s.Cert]) -> None:
    indexed: set[tuple[str, str]] = set()
    for key, _ in view.scan(s.PARTY_PREFIX):
        parts = key.decode().split("/")
        require(len(parts) == 4, f"malformed party key {key!r}")
        _, org_id, root_id, cert_id = parts
        cert = certs.get(cert_id)
        require(cert is not None and cert.root_id == root_id, f"party key {key!r} names no cert of that root")
        indexed.add((org_id, cert_id))
    for cert in certs.values():
        for party in (cert.holder, cert.seller, cert.finance_bank, *cert.asked):
            require(party is None or (party, cert.id) in indexed, f"{party} is not indexed as party to {cert.id}")


def _check_trade_background(view: StateView, certs: dict[str, s.Cert]) -> None:
    docs = {doc.id: doc for doc in _all(view, s.DOC_PREFIX, s.TradeDoc)}
    drawn: dict[str, int] = defaultdict(int)
    for cert in certs.values():
        for doc_id, amount in cert.trade_docs:
            require(doc_id in docs and amount > 0, f"cert {cert.id} draws {amount} on document {doc_id}")
            drawn[doc_id] += amount
    invoiced: dict[str, int] = defaultdict(int)
    for doc in docs.values():
        if doc.contract_id is None:
            continue
        contract = docs.get(doc.contract_id)
        require(contract is not None and contract.kind == "contract" and doc.kind == "invoice"
                and {contract.issuer, contract.counterparty} == {doc.issuer, doc.counterparty},
                f"invoice {doc.id} is not under a contract between its parties")
        invoiced[doc.contract_id] += doc.amount
    for doc in docs.values():
        require(doc.drawn == drawn.get(doc.id, 0), f"document {doc.id}: drawn {doc.drawn}, transfers draw "
                f"{drawn.get(doc.id, 0)}")
        require(doc.invoiced == invoiced.get(doc.id, 0), f"contract {doc.id}: invoiced {doc.invoiced}, its "
                f"invoices sum to {invoiced.get(doc.id, 0)}")
        require(doc.backed + doc.drawn + doc.invoiced <= doc.amount, f"document {doc.id} is used beyond its amount")


def _check_disputes(view: StateView) -> None:
    locks = {key: value.decode() for key, value in view.scan(d.LOCK_PREFIX)}
    unresolved = {}
    for _, value in view.scan(d.DISPUTE_PREFIX):
        dispute = s.decode_record(d.Dispute, value)
        if dispute.status != s.DISPUTE_RESOLVED:
            unresolved[d.lock_key(dispute.subject, dispute.subject_id)] = dispute.id
        require(dispute.opened_at <= dispute.deadline, f"dispute {dispute.id} is due before it was opened")
    require(locks == unresolved,
            f"dispute locks differ from unresolved disputes: {sorted(set(locks) ^ set(unresolved))[:4]}")
    open_ids = {key[len(d.COMPLAINT_OPEN_PREFIX):].decode() for key, _ in view.scan(d.COMPLAINT_OPEN_PREFIX)}
    not_closed: set[str] = set()
    per_org: dict[str, int] = defaultdict(int)
    for _, value in view.scan(d.COMPLAINT_PREFIX):
        complaint = s.decode_record(d.Complaint, value)
        if complaint.status != s.COMPLAINT_CLOSED:
            not_closed.add(complaint.id)
            per_org[complaint.complainant] += 1
    require(open_ids == not_closed, f"open complaint index differs: {sorted(open_ids ^ not_closed)[:4]}")
    counts = {key[len(d.COMPLAINT_COUNT_PREFIX):].decode(): int(value)
              for key, value in view.scan(d.COMPLAINT_COUNT_PREFIX)}
    require(counts == dict(per_org), f"open complaint counts {counts} differ from the records {dict(per_org)}")
    require(all(n <= d.COMPLAINTS_OPEN_MAX for n in counts.values()), "an org has too many open complaints")


def _check_settlement(view: StateView, certs: dict[str, s.Cert], by_root: dict[str, list[s.Cert]]) -> None:
    for cert in certs.values():
        require(0 <= cert.paid <= cert.amount, f"cert {cert.id}: paid {cert.paid} outside 0..{cert.amount}")
        if cert.status in s.LIVE_STATUSES:  # a defaulted one paid in full still owes its penalty
            require(cert.paid < cert.amount or cert.status == s.DEFAULTED, f"live cert {cert.id} is paid in full")
        elif cert.status == s.SETTLED:
            require(cert.paid in (0, cert.amount), f"settled cert {cert.id} paid {cert.paid} of {cert.amount}")
        else:
            require(cert.paid == 0, f"{cert.status} cert {cert.id} has payments")
        require(0 <= cert.penalty_paid <= cert.penalty_accrued <= cert.amount,
                f"cert {cert.id}: penalty paid {cert.penalty_paid}, accrued {cert.penalty_accrued}")
        if cert.status == s.DEFAULTED or cert.defaulted_at is not None:
            require(cert.defaulted_at is not None and cert.status in (s.DEFAULTED, s.SETTLED),
                    f"cert {cert.id}: defaulted_at {cert.defaulted_at} with status {cert.status}")
        else:
            require(cert.penalty_paid == 0, f"cert {cert.id} paid a penalty without a default")
    for root_id, members in by_root.items():
        if certs[root_id].status == s.CANCELLED:
            continue
        leaves = [c for c in members if c.status != s.SPLIT]
        total = sum(settlement.paid_of(c) + settlement.unpaid(c) for c in leaves)
        require(total == certs[root_id].amount, f"root {root_id}: paid + outstanding {total}, amount "
                f"{certs[root_id].amount}")
    due = {key for key, _ in view.scan(settlement.ACCEPT_PREFIX)}
    expected = {settlement.accept_key(c.accept_by, c.id) for c in certs.values()
                if c.status == s.ISSUED and c.accept_by is not None}
    require(due == expected, f"acceptance index differs from issued roots: {sorted(due ^ expected)[:4]}")

    claims = {c.cert_id: c for c in _all(view, f.CLAIM_PREFIX, f.RecourseClaim)}
    exposure: dict[tuple[str, str], int] = defaultdict(int)
    for cert in certs.values():
        if cert.financed_at is None:
            continue
        bank = cert.finance_bank
        require(bank is not None and cert.seller is not None, f"financed cert {cert.id} lost its bank or seller")
        assert bank is not None and cert.seller is not None
        claim = claims.get(cert.id)
        if claim is not None:
            exposure[(bank, cert.seller)] += f.claim_outstanding(claim)
        elif cert.holder == bank:
            for org in f.exposure_orgs(cert):
                exposure[(bank, org)] += settlement.unpaid(cert)
    lines = {(x.bank, x.org): x for x in _all(view, f.EXPOSURE_PREFIX, f.Exposure)}
    for key, amount in exposure.items():
        require(amount == 0 or key in lines, f"exposure {key} of {amount} without a record")
    for key, line in lines.items():
        require(line.used == exposure.get(key, 0), f"exposure {key}: used {line.used}, financed less recovered "
                f"and written off {exposure.get(key, 0)}")
        require(line.limit is None or line.used <= line.limit, f"exposure {key}: used {line.used} over {line.limit}")
    indexed = {(k.split(b"/")[1].decode(), k.split(b"/")[2].decode()) for k, _ in view.scan(f.CLAIM_PARTY_PREFIX)}
    for claim in claims.values():
        held = certs.get(claim.cert_id)
        require(held is not None and held.status in (s.DEFAULTED, s.SETTLED) and held.recourse
                and held.seller == claim.seller and held.finance_bank == claim.bank,
                f"claim on {claim.cert_id} is not on a defaulted certificate financed with recourse")
        assert held is not None
        require(held.status != s.DEFAULTED or held.holder == claim.seller, f"claim on {held.id}: seller lost it")
        require(claim.amount > 0 and claim.repaid + claim.written_off <= claim.amount
                and (claim.status == s.CLAIM_CLOSED) == (claim.repaid + claim.written_off == claim.amount),
                f"claim on {claim.cert_id}: {claim.status}, {claim.repaid} + {claim.written_off} of {claim.amount}")
        require({(claim.bank, claim.cert_id), (claim.seller, claim.cert_id)} <= indexed,
                f"claim on {claim.cert_id} is not indexed under its bank and seller")
    require(all(cert_id in claims for _, cert_id in indexed), "claim index names a missing claim")


_HEIGHT_HEX = re.compile(r"[0-9a-f]{16}")


def _check_history(view: StateView, certs: dict[str, s.Cert]) -> None:
    indexed: set[tuple[str, str]] = set()
    for key, _ in view.scan(h.DEBTOR_PREFIX):
        parts = key.decode().split("/")
        require(len(parts) == 3, f"malformed debtor key {key!r}")
        indexed.add((parts[1], parts[2]))
    roots = {(c.debtor, c.id) for c in certs.values() if c.parent_id is None}
    require(indexed == roots, f"debtor index differs from the roots: {sorted(indexed ^ roots)[:4]}")
    for key, value in view.scan(h.HISTORY_PREFIX):
        parts = key.decode().split("/")
        require(len(parts) == 3 and parts[1] in certs and _HEIGHT_HEX.fullmatch(parts[2]) is not None,
                f"history key {key!r} is not of an existing certificate at a height")
        cert = certs[parts[1]]
        entries = msgpack.unpackb(value, raw=False)
        require(type(entries) is list and 0 < len(entries) <= h.ENTRIES_PER_BLOCK_MAX,
                f"history record {key!r} is not a non-empty list of entries")
        for entry in entries:
            require(type(entry) is list and len(entry) == 4, f"malformed history entry {entry!r} at {key!r}")
            tx_id, kind, signer, _ref = entry
            if kind == h.EXPIRED:
                require(tx_id is None and signer is None and cert.parent_id is None,
                        f"a deadline cancellation at {key!r} names a tx or a non-root")
            else:
                require(kind in h.TOUCHES and type(tx_id) is str and type(signer) is str,
                        f"history entry {entry!r} at {key!r} is not a tx of a kind that touches certificates")
