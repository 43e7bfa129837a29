"""A certificate's audit trail, and the debtor index of roots (issue 14, item 6): written by the executor.

**What touched a certificate.** Every tx that touched a certificate, in chain order (height, then position in
the block), read by whoever may read the certificate. Three sources, so that the hot path writes nothing:

- its creation: `Cert.created_by` (an `ecert.issue` for a root; the parent's `ecert.transfer` / `ecert.split`
  for a child) — no index entry: the record already names the tx;
- its spending: a transfer or split makes it `split` with `children`, each created by that tx
  (`children[0].created_by`) — no index entry either; a `split` certificate never moves again;
- everything in between (accept, reject, revoke, finance.*, pay, settle, settle_root, default, recourse.*,
  dispute.*) and the cancellation at its acceptance deadline (no tx: `begin_block`): one index entry each.

So a transfer — the hot path: node/bench/apply_bench.py — writes no history at all, and every other kind writes
one put per certificate it touched (after one get of the same key). `ecert.issue` writes the debtor index
instead (below): one put, for its one new certificate.

Key schema (ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so "/" never occurs inside an id):

    ch/<cert_id>/<height:016x> -> msgpack list of [tx_id | None, type, signer | None, ref | None]: what
                                   touched the certificate in that block, in block order (`ref`: the dispute id
                                   for dispute kinds; tx_id and signer None for a cancellation at block time)
    dr/<debtor>/<root_id>      -> b""  the roots the debtor issued (ecert/portfolio.py lists by debtor)

Both are ordinary state under the state root: written by every node in the same block, so deterministic, carried
by snapshots, and a replica rebuilt from the Raft log rebuilds them. (A store restored from a snapshot taken
before this index existed lacks its entries for older certificates, and its state root differs from a replica
that replayed those blocks: rebuild such a node's state from the log, as docs/STORAGE.md says for format 1.)

**Reading.** `cert_history` pages through creation, the index and the spending, in that order (each is later
than the one before, by construction). The index is read from the cursor on with `scan_after`, which is bounded
by the cursor's length, never by how much history precedes it. Heights, positions and results come from the
node's tx index (`TxLookup`: ledger.store.StateStore.tx_outcome and the block that carried the tx); a node that
installed a snapshot may no longer hold the block of an old tx, and then that entry says only what the state
knows. Results are the certificate's part: `ecert.settle_root` shows only this certificate's payment (the rest
of the batch may be in branches the reader may not see), and a dispute's or recourse claim's entries show their
type and height only, unless the reader may read the dispute or claim (ecert/access.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import msgpack

from consensus.invariant import require
from ecert import access, disputes
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import Tx, decode_envelope, decode_payload
from ledger.executor import TxRecord
from ledger.state_view import StateView

HISTORY_PREFIX = b"ch/"
DEBTOR_PREFIX = b"dr/"
HISTORY_PAGE_MAX = 100
"""Most entries one page of a certificate's history holds."""
HISTORY_PAGE_DEFAULT = 50
ENTRIES_PER_BLOCK_MAX = 4096
"""Most index entries one certificate may collect in one block (one per tx that touched it): far above what a
block of real txs does to one certificate (each tx needs its own nonce and most move its status)."""
EXPIRED = "acceptance.expired"
"""The type of the entry a cancellation at the acceptance deadline leaves (no tx: the block's own writes)."""
KEY_ALPHABET = bytes(sorted(b"-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"))
"""Every byte that follows a prefix in the keys `scan_after` walks: ids, "/" and lowercase hex."""
HISTORY_CURSOR_PATTERN = r"(?:c|s|h[0-9a-f]{16}\.[0-9]{1,5})"
"""Every cursor `cert_history` hands back, and nothing else (`parse_cursor`)."""
CURSOR_CHARS_MAX = 160
"""Longest cursor a page hands back (ids are at most 64 characters; a cursor holds at most two and a number)."""

_CREATED = "c"
_SPENT = "s"
_HEIGHT_DIGITS = 16


# --- writing (the executor) -----------------------------------------------------------------------------------------
def history_prefix(cert_id: str) -> bytes:
    return HISTORY_PREFIX + cert_id.encode() + b"/"


def history_key(cert_id: str, height: int) -> bytes:
    return history_prefix(cert_id) + b"%016x" % height


def debtor_prefix(debtor: str) -> bytes:
    return DEBTOR_PREFIX + debtor.encode() + b"/"


def _append(view: StateView, cert_id: str, height: int, entry: list[Any]) -> None:
    key = history_key(cert_id, height)
    data = view.get(key)
    entries: list[Any] = [] if data is None else msgpack.unpackb(data, raw=False)
    if len(entries) >= ENTRIES_PER_BLOCK_MAX:
        require(False, f"cert {cert_id}: more than {ENTRIES_PER_BLOCK_MAX} history entries in block {height}")
    entries.append(entry)
    view.put(key, msgpack.packb(entries, use_bin_type=True))


def _body_cert(view: StateView, tx: Tx, result: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    return [(tx.body.cert_id, None)]


def _settled_leaves(view: StateView, tx: Tx, result: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    return [(item["cert_id"], None) for item in result["settled"]]


def _opened_dispute(view: StateView, tx: Tx, result: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    return [] if tx.body.cert_id is None else [(tx.body.cert_id, result["dispute_id"])]


def _dispute_subject(view: StateView, tx: Tx, result: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    dispute = disputes.get_dispute(view, tx.body.dispute_id)
    require(dispute is not None, f"{tx.type} committed on a missing dispute {tx.body.dispute_id}")
    assert dispute is not None
    return [(dispute.subject_id, dispute.id)] if dispute.subject == disputes.CERT else []


TOUCHES: Mapping[str, Callable[[StateView, Tx, Mapping[str, Any]], list[tuple[str, str | None]]]] = {
    "ecert.accept": _body_cert,
    "ecert.reject": _body_cert,
    "ecert.revoke": _body_cert,
    "finance.request": _body_cert,
    "finance.approve": _body_cert,
    "finance.decline": _body_cert,
    "ecert.settle": _body_cert,
    "ecert.pay": _body_cert,
    "ecert.settle_root": _settled_leaves,
    "ecert.default": _body_cert,
    "recourse.repay": _body_cert,
    "recourse.write_off": _body_cert,
    "dispute.open": _opened_dispute,
    "dispute.respond": _dispute_subject,
    "dispute.resolve": _dispute_subject,
}
"""Per tx kind, the existing certificates a committed tx of that kind touched (with the dispute it concerns).
Not here: `ecert.issue`, `ecert.transfer`, `ecert.split` (their certificates' `created_by` names them) and the
kinds that touch no certificate."""


def record(view: StateView, tx: Tx, result: Mapping[str, Any], height: int) -> None:
    """After a committed rule (ecert/executor.py): the history entries and the debtor index of this tx."""
    touches = TOUCHES.get(tx.type)
    if touches is not None:
        for cert_id, ref in touches(view, tx, result):
            _append(view, cert_id, height, [tx.tx_id, tx.type, tx.signer, ref])
    elif tx.type == "ecert.issue":
        view.put(debtor_prefix(tx.signer) + result["certs"][0].encode(), b"")


def record_expired(view: StateView, cert_ids: list[str], height: int) -> None:
    """After the block-begin hook cancelled these roots at their acceptance deadline (ecert/settlement.py)."""
    for cert_id in cert_ids:
        _append(view, cert_id, height, [None, EXPIRED, None, None])


# --- ranged reads over a prefix-only StateView ----------------------------------------------------------------------
def scan_after(view: StateView, prefix: bytes, after: bytes | None) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for the keys under `prefix` greater than `prefix + after`, in key order (all of them for
    None). A StateView only scans prefixes, so this scans the narrowest prefixes that cover the range: the
    keys extending `after`, then for each shorter head of `after` the heads followed by a greater byte of
    KEY_ALPHABET. At most len(after) * len(KEY_ALPHABET) + 1 prefix seeks, however many keys come before;
    a caller that stops early seeks only as far as it read."""
    if after is None:
        yield from view.scan(prefix)
        return
    require(all(b in KEY_ALPHABET for b in after), f"cursor {after!r} outside the key alphabet")
    start = prefix + after
    for key, value in view.scan(start):
        if key != start:
            yield key, value
    for i in range(len(after) - 1, -1, -1):
        head = start[:len(prefix) + i]
        for byte in KEY_ALPHABET:
            if byte > after[i]:
                yield from view.scan(head + bytes((byte,)))


# --- reading (the node) -------------------------------------------------------------------------------------------
class TxInfo(NamedTuple):
    """What the node's tx index says of one tx (None fields: no longer known here)."""

    height: int
    position: int
    type: str | None
    signer: str | None
    result: Mapping[str, Any] | None


TxLookup = Callable[[str], TxInfo | None]
"""tx id -> where and how it was applied, with its type and signer; None if this node does not know it."""


def tx_info(record_: TxRecord, raw: bytes | None) -> TxInfo:
    """A TxInfo from a stored outcome and the envelope its block carries at its position (None: gone)."""
    kind = signer = None
    if raw is not None:
        try:
            tx = decode_payload(decode_envelope(raw), None)
            kind, signer = tx.type, tx.signer
        except TxRejected:
            pass
    return TxInfo(record_.height, record_.position, kind, signer, record_.outcome.result)


def _relevant(view: StateView, reader: access.Reader, cert: s.Cert, kind: str | None, ref: str | None,
              result: Mapping[str, Any] | None) -> tuple[Mapping[str, Any] | None, bool]:
    """(the part of a result that concerns this certificate and the reader may see, redacted?)."""
    if kind is not None and kind.startswith("dispute.") and (
            ref is None or not access.can_read_dispute(view, reader, ref)):
        return None, True
    if kind is not None and kind.startswith("recourse.") and not access.can_read_claim(view, reader, cert.id):
        return None, True
    if result is None:
        return None, False
    if kind == "ecert.settle_root":
        mine = [item for item in result.get("settled", ()) if item.get("cert_id") == cert.id]
        return {"root_id": result.get("root_id"), "settled": mine}, False
    return dict(result), False


def _entry(view: StateView, reader: access.Reader, cert: s.Cert, cursor: str, tx_id: str | None,
           kind: str | None, signer: str | None, ref: str | None, height: int | None,
           lookup: TxLookup) -> dict[str, Any]:
    info = lookup(tx_id) if tx_id is not None else None
    if info is not None:
        kind = kind or info.type
        signer = signer or info.signer
        height = info.height if height is None else height
    result, redacted = _relevant(view, reader, cert, kind, ref, None if info is None else info.result)
    return {"cursor": cursor, "height": height, "index": None if info is None else info.position, "tx_id": tx_id,
            "type": kind, "signer": None if redacted else signer, "result": result, "redacted": redacted}


def _row(row: Any) -> tuple[str | None, str, str | None, str | None]:
    tx_id, kind, signer, ref = row
    return tx_id, kind, signer, ref


def parse_cursor(cursor: str | None) -> tuple[str, int, int] | None:
    """(part, height, k) of a history cursor: part "c" (after the creation), "h" (after the k-th entry of
    block `height`) or "s" (after the spending: the end). Raises ValueError for one this module never makes."""
    if cursor is None:
        return None
    if cursor in (_CREATED, _SPENT):
        return cursor, 0, 0
    if cursor.startswith("h") and "." in cursor:
        height_hex, _, k = cursor[1:].partition(".")
        if len(height_hex) == _HEIGHT_DIGITS and k.isdigit() and len(k) <= 5 and all(
                c in "0123456789abcdef" for c in height_hex):
            return "h", int(height_hex, 16), int(k)
    raise ValueError(f"not a history cursor: {cursor[:40]!r}")


def cert_history(view: StateView, reader: access.Reader, cert_id: str, lookup: TxLookup, *,
                 cursor: str | None = None, limit: int = HISTORY_PAGE_DEFAULT) -> dict[str, Any] | None:
    """One page of the certificate's history, oldest first: {"cert_id", "entries", "next_cursor"} (None when
    this page ends it). None if the certificate is unknown or the reader may not read it (the same answer).
    Raises ValueError for a malformed cursor."""
    require(1 <= limit <= HISTORY_PAGE_MAX, f"history page limit {limit} outside 1..{HISTORY_PAGE_MAX}")
    cert = s.get_cert(view, cert_id)
    if cert is None or not access.can_read_cert(view, reader, cert_id):
        return None
    at = parse_cursor(cursor)
    entries: list[dict[str, Any]] = []
    want = limit + 1  # one more than the page: is there a next page?
    if at is None:
        entries.append(_entry(view, reader, cert, _CREATED, cert.created_by, "ecert.issue" if cert.parent_id
                              is None else None, cert.debtor if cert.parent_id is None else None, None, None, lookup))
    if at is None or at[0] in (_CREATED, "h"):
        prefix = history_prefix(cert_id)
        after = None if at is None or at[0] == _CREATED else b"%016x" % at[1]
        if at is not None and at[0] == "h":  # the rest of the cursor's own block first
            data = view.get(prefix + after) if after is not None else None
            for k, row in enumerate([] if data is None else msgpack.unpackb(data, raw=False)):
                if k > at[2] and len(entries) < want:
                    entries.append(_entry(view, reader, cert, f"h{at[1]:016x}.{k}", *_row(row), at[1], lookup))
        for key, data in scan_after(view, prefix, after):
            if len(entries) >= want:
                break
            height = int(key[len(prefix):], 16)
            for k, row in enumerate(msgpack.unpackb(data, raw=False)):
                if len(entries) >= want:
                    break
                entries.append(_entry(view, reader, cert, f"h{height:016x}.{k}", *_row(row), height, lookup))
    if len(entries) < want and (at is None or at[0] != _SPENT) and cert.children:
        child = s.get_cert(view, cert.children[0])
        require(child is not None, f"cert {cert.id} names a missing child {cert.children[0]}")
        assert child is not None
        entries.append(_entry(view, reader, cert, _SPENT, child.created_by, None, None, None, None, lookup))
    more = len(entries) > limit
    page = entries[:limit]
    return {"cert_id": cert_id, "entries": page, "next_cursor": page[-1]["cursor"] if more else None}


def debtor_root_ids(view: StateView, debtor: str, after: str | None = None) -> Iterator[str]:
    """The roots the debtor issued, by id, after `after` (a root id)."""
    prefix = debtor_prefix(debtor)
    for key, _ in scan_after(view, prefix, None if after is None else after.encode()):
        yield key[len(prefix):].decode()
