"""Whole-state invariants of the E-certificate domain (CONTRACT §3 "Invariants"), for debug runs and tests.

`check_invariants(view)` scans the whole state (the only code that does), so the node calls it after each block
only when its debug flag is on. Each broken invariant raises `consensus.invariant.InvariantViolation`.

1. Conservation: for every root that is not `cancelled`, the amounts of its leaves (descendants not `split`,
   whatever else their status: a settled leaf was paid, not lost) sum to the root amount. A cancelled root
   has no children.
2. Credit: a bank's `used` credit to a core equals the outstanding amount issued under that line (leaves still
   issued, active, financing or financed), and never exceeds its limit.
3. Children: a `split` certificate has exactly one non-empty children set, summing to its amount, and each child
   names it as parent; no other certificate has children, and every non-root's parent lists it.
4. Indexes: holdings hold exactly the live certificates under their holder; the lineage of each root lists
   exactly its members; an invoice's `backed` equals what non-cancelled roots draw on it.
5. Depth: a root is at depth 0, a child one below its parent, and none below LINEAGE_DEPTH_MAX.
6. Parties: the party index names the holder of every certificate, its seller and the bank asked to finance it
   (if any), and nothing but existing certificates under their own root.
"""

from __future__ import annotations

from collections import defaultdict

from consensus.invariant import require
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
            outstanding[(cert.bank, cert.debtor)] += cert.amount
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
        for party in (cert.holder, cert.seller, cert.finance_bank):
            require(party is None or (party, cert.id) in indexed, f"{party} is not indexed as party to {cert.id}")
