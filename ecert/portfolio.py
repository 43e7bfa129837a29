"""Lists of certificates by debtor, holder, status and maturity window, paged (issue 14, item 6).

    list_certs(view, reader, CertFilter(...), now, cursor=None, limit=50)
        -> {"certs": [...], "index", "scanned", "next_cursor"}

Each page walks one index from the cursor on, reads at most `LIST_SCAN_MAX` certificates, and keeps those that
match every filter and that the reader may read (ecert/access.py `can_read_cert`: the regulator reads all; an
org what CONTRACT §6 lets it). Which index, by the filters given:

- `holder` with a live status: the holdings `h/<holder>/` (exactly its live certificates); cursor: a cert id;
- `holder` with another status or none: the party index `p/<holder>/` (every certificate it holds, held or was
  asked to finance), filtered on `holder`; cursor: root/cert;
- `debtor` without `holder`: the debtor's roots `dr/<debtor>/` (ecert/history.py) and each root's lineage
  `l/<root>/` in creation order; cursor: root/ordinal;
- neither, by the regulator: every certificate `c/` — a scan; cursor: a cert id;
- neither, by any other org: `p/<reader>/`, what the reader holds, held or was asked to finance.

A status or maturity filter alone narrows no index: it filters what the walk reads, so the page bound is what
holds the cost: a page reads at most `LIST_SCAN_MAX` certificates and seeks at most `scan_after`'s bound per
index level. A page can hold fewer than `limit` certificates (even none) and still have a `next_cursor`: the
walk stopped at the read bound; `next_cursor` None means the walk reached the end. The cursor is opaque: pass
it back with the same filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from consensus.invariant import require
from ecert import access, history, queries
from ecert import state as s
from ledger.state_view import StateView

LIST_PAGE_MAX = 100
LIST_PAGE_DEFAULT = 50
LIST_SCAN_MAX = 2_000
"""Certificates one page reads at most (one point read and one decode each, plus the access decision)."""
CERT_STATUSES = (s.ISSUED, s.ACTIVE, s.FINANCING, s.FINANCED, s.DEFAULTED, s.SPLIT, s.SETTLED, s.CANCELLED)

HOLDINGS = "holdings"
PARTY = "party"
DEBTOR = "debtor"
ALL = "all"


@dataclass(frozen=True, slots=True)
class CertFilter:
    debtor: str | None = None
    holder: str | None = None
    status: str | None = None
    maturity_from: int | None = None
    """Maturity at or after (ms)."""
    maturity_to: int | None = None
    """Maturity before (ms): the window is [from, to)."""

    def __post_init__(self) -> None:
        require(self.status is None or self.status in CERT_STATUSES, f"status {self.status!r}")

    def matches(self, cert: s.Cert) -> bool:
        return ((self.debtor is None or cert.debtor == self.debtor)
                and (self.holder is None or cert.holder == self.holder)
                and (self.status is None or cert.status == self.status)
                and (self.maturity_from is None or cert.maturity >= self.maturity_from)
                and (self.maturity_to is None or cert.maturity < self.maturity_to))


def index_for(reader: access.Reader, flt: CertFilter) -> str:
    """Which index a page walks (the module docstring's table)."""
    if flt.holder is not None:
        return HOLDINGS if flt.status in s.LIVE_STATUSES else PARTY
    if flt.debtor is not None:
        return DEBTOR
    return ALL if reader.role == s.REGULATOR else PARTY


def _cursor_bytes(cursor: str | None) -> bytes | None:
    if cursor is None:
        return None
    raw = cursor.encode()
    if not cursor or len(cursor) > history.CURSOR_CHARS_MAX or any(b not in history.KEY_ALPHABET for b in raw):
        raise ValueError(f"not a list cursor: {cursor[:40]!r}")
    return raw


def _walk_prefix(view: StateView, prefix: bytes, after: bytes | None) -> Iterator[tuple[str, str]]:
    """(cursor, cert id) of an index whose keys end in the cert id (h/<org>/, c/, p/<org>/ with root/cert)."""
    for key, _ in history.scan_after(view, prefix, after):
        suffix = key[len(prefix):].decode()
        yield suffix, suffix.rpartition("/")[2]


def _walk_debtor(view: StateView, debtor: str, after: bytes | None) -> Iterator[tuple[str, str]]:
    """(root/ordinal, cert id) over the debtor's roots, each lineage in creation order."""
    root_after: str | None = None
    ordinal_after: bytes | None = None
    if after is not None:
        # "root/ordinal": the rest of that lineage, then the roots after it; a bare "root": the roots after it.
        # Any other string of the key alphabet is read the same way: a page past it, never an error, and the
        # filters (the debtor's own) and the access decision still apply to every certificate read.
        root, sep, ordinal = after.decode().partition("/")
        root_after, ordinal_after = root, ordinal.encode()
        if sep:
            yield from _walk_lineage(view, root, ordinal_after)
    for root_id in history.debtor_root_ids(view, debtor, root_after):
        yield from _walk_lineage(view, root_id, None)


def _walk_lineage(view: StateView, root_id: str, after: bytes | None) -> Iterator[tuple[str, str]]:
    if not root_id or "/" in root_id:
        return  # not an id: no lineage (a lenient cursor's root part)
    prefix = s.lineage_prefix(root_id)
    for key, value in history.scan_after(view, prefix, after):
        yield f"{root_id}/{key[len(prefix):].decode()}", value.decode()


def list_certs(view: StateView, reader: access.Reader, flt: CertFilter, now: int | None, *,
               cursor: str | None = None, limit: int = LIST_PAGE_DEFAULT,
               scan_max: int = LIST_SCAN_MAX) -> dict[str, Any]:
    """One page of the certificates matching `flt` that `reader` may read (see the module docstring).
    Raises ValueError for a malformed cursor."""
    require(1 <= limit <= LIST_PAGE_MAX, f"list limit {limit} outside 1..{LIST_PAGE_MAX}")
    require(scan_max >= 1, "a page reads at least one certificate")
    after = _cursor_bytes(cursor)
    index = index_for(reader, flt)
    walk: Iterator[tuple[str, str]]
    if index == HOLDINGS:
        assert flt.holder is not None
        walk = _walk_prefix(view, s.holdings_prefix(flt.holder), after)
    elif index == PARTY:
        org = flt.holder if flt.holder is not None else reader.org_id
        walk = _walk_prefix(view, s.PARTY_PREFIX + org.encode() + b"/", after)
    elif index == DEBTOR:
        assert flt.debtor is not None
        walk = _walk_debtor(view, flt.debtor, after)
    else:
        walk = _walk_prefix(view, s.CERT_PREFIX, after)
    certs: list[dict[str, Any]] = []
    scanned = 0
    last: str | None = None
    exhausted = True
    for position, cert_id in walk:
        if len(certs) >= limit or scanned >= scan_max:
            exhausted = False
            break
        scanned += 1
        last = position
        cert = s.get_cert(view, cert_id)
        require(cert is not None, f"the {index} index names a missing cert {cert_id}")
        assert cert is not None
        if flt.matches(cert) and access.can_read_cert(view, reader, cert_id):
            certs.append(queries.cert_to_json(cert, now))
    return {"certs": certs, "index": index, "scanned": scanned, "next_cursor": None if exhausted else last}
