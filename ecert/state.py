"""E-certificate state: records and the key schema, over a `ledger.state_view.StateView`.

Key schema (keys are ASCII; ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so "/" never occurs inside an id):

    o/<org_id>                  -> Org record
    k/<bank>/<core>             -> CreditLine record (the bank's credit line to that core enterprise)
    d/<doc_id>                  -> TradeDoc record (contract | invoice | delivery | payment)
    c/<cert_id>                 -> Cert record
    lc/<root_id>                -> ordinal count of the lineage (decimal ASCII)
    n/<signer>/i<nonce>         -> b""  an integer nonce the signer has used
    n/<signer>/s<nonce>         -> b""  a string nonce the signer has used

The certificate index (`CERT_INDEX`), a pure function of each `c/` record (`cert_index_entries`), kept beside
the state root rather than under it (ledger/derived_index.py: written in the same batch, rebuilt on snapshot
import, checked by `StateStore.check_integrity`):

    h/<org_id>/<cert_id>        -> b""  holdings index: the org holds this *live* cert
                                        (status issued | active | financing | financed | defaulted)
    l/<root_id>/<ordinal:010d>  -> cert_id  lineage index: the root (ordinal 0) and every descendant,
                                        in creation order (the cert's `ordinal`)
    p/<org_id>/<root_id>/<cert_id> -> b""  party index: the org holds or held this cert, or was asked to
                                        finance it (holder, seller, every bank in `asked`): who is party to
                                        a cert only grows

Values are msgpack arrays of the record's fields in declaration order (same code, same bytes on every node);
a field added later goes at the end with a default, so older rows still decode.

Records are `typing.NamedTuple`s rather than frozen dataclasses: they are as immutable, but they are built,
copied (`_replace`) and encoded several times faster, and every tx reads and writes a few of them (see
node/bench/apply_bench.py).
Holdings and lineage queries are prefix scans of `h/<org>/` and `l/<root>/`; who may read a certificate
(ecert/access.py) reads `p/<org>/<root>/`, one org's part of one lineage. Nothing here scans the whole state
(only ecert/invariants.py, a debug check, does).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

import msgpack

from consensus.invariant import require
from ledger.state_view import StateView

# certificate statuses
ISSUED = "issued"
ACTIVE = "active"
FINANCING = "financing"
FINANCED = "financed"
SPLIT = "split"
SETTLED = "settled"
CANCELLED = "cancelled"
DEFAULTED = "defaulted"
"""Past maturity and the grace period, unpaid, and declared so by its holder (ecert/settlement.py): still owed."""
LIVE_STATUSES = frozenset({ISSUED, ACTIVE, FINANCING, FINANCED, DEFAULTED})
"""A live certificate is held and still owed: it appears in its holder's holdings."""
OUTSTANDING_STATUSES = LIVE_STATUSES
"""The debtor still owes it: counts toward the bank's used credit."""

# organisation roles
BANK = "bank"
CORE = "core"
SUPPLIER = "supplier"
REGULATOR = "regulator"
"""Exists only from genesis; reads everything; signs only what ecert/rules.py REGULATOR_TX_TYPES lists."""

# organisation statuses
ORG_PENDING = "pending"
ORG_ACTIVE = "active"
ORG_FROZEN = "frozen"

# trade document statuses
DOC_ANCHORED = "anchored"
DOC_CONFIRMED = "confirmed"

# dispute and complaint statuses (records and keys: ecert/disputes.py; moves: ecert/lifecycle.py)
DISPUTE_OPEN = "open"
DISPUTE_RESPONDED = "responded"
DISPUTE_RESOLVED = "resolved"
COMPLAINT_OPEN = "open"
COMPLAINT_RESPONDED = "responded"
COMPLAINT_ESCALATED = "escalated"
COMPLAINT_CLOSED = "closed"

# recourse claim statuses (records and keys: ecert/financing.py; moves: ecert/lifecycle.py)
CLAIM_OPEN = "open"
CLAIM_CLOSED = "closed"


class Org(NamedTuple):
    id: str
    name: str
    role: str  # bank | core | supplier | regulator
    sign_pk: str
    box_pk: str
    status: str  # pending | active | frozen
    registered_at: int  # block time (genesis_time for genesis orgs)
    updated_at: int
    reason: str | None = None  # of the last approve/freeze/unfreeze
    kyc_hash: str | None = None  # org.approve: sha256 of the KYC evidence the approving bank checked


class CreditLine(NamedTuple):
    bank: str
    core: str
    limit: int
    used: int  # outstanding amount of certificates issued under this line
    expires_at: int
    granted_at: int


class TradeDoc(NamedTuple):
    id: str
    kind: str
    doc_hash: str
    issuer: str  # the org that anchored it
    counterparty: str
    amount: int
    status: str  # anchored | confirmed
    anchored_at: int
    confirmed_at: int | None = None
    backed: int = 0  # invoices: amount already backing certificates (never above `amount`)
    ciphertext: tuple[tuple[str, bytes], ...] = ()  # (org_id, sealed box), sorted by org_id
    contract_id: str | None = None  # invoices: the confirmed contract between the same parties it belongs to
    invoiced: int = 0  # contracts: the amounts of the invoices anchored under it
    drawn: int = 0  # contracts and invoices: amount drawn by transfers as their trade background
    applied: int = 0  # payment documents: amount of certificate payments they evidence (ecert/settlement.py)


class Cert(NamedTuple):
    id: str
    root_id: str
    parent_id: str | None
    debtor: str
    holder: str
    amount: int
    maturity: int
    status: str
    bank: str  # the bank whose credit line the root was issued under
    created_at: int
    created_by: str  # tx id
    updated_at: int
    children: tuple[str, ...] = ()  # set once, when the cert is split or transferred
    invoices: tuple[tuple[str, int], ...] = ()  # roots: (invoice doc id, amount it backs)
    finance_bank: str | None = None  # set by finance.request, cleared by finance.decline
    finance_requested_at: int | None = None
    discount_bps: int | None = None  # set by finance.approve
    discount_days: int | None = None
    discount: int | None = None
    disbursed: int | None = None
    financed_at: int | None = None
    seller: str | None = None  # the holder who sold it to the bank
    settled_at: int | None = None
    paid_to: str | None = None
    depth: int = 0  # 0 for a root, parent's + 1; invariant: 0 <= depth <= LINEAGE_DEPTH_MAX
    trade_docs: tuple[tuple[str, int], ...] = ()  # a transfer's child: (contract/invoice id, amount it draws)
    # payment and default (ecert/settlement.py); invariant: 0 <= paid <= amount, a settled cert paid in full
    paid: int = 0  # principal the debtor has paid (ecert.pay, ecert.settle)
    penalty_accrued: int = 0  # penalty accrued on the unpaid principal up to `penalty_day` (never above amount)
    penalty_day: int = 0  # whole days after maturity the accrual covers
    penalty_paid: int = 0
    defaulted_at: int | None = None  # ecert.default
    recourse: bool = False  # finance.approve with recourse: on default the bank claims from the seller
    accept_by: int | None = None  # roots: cancelled at the first block at or after it unless accepted
    # the certificate index's inputs (CERT_INDEX): what `l/` and `p/` are derived from
    ordinal: int = 0  # position in its root's lineage, in creation order (the root: 0)
    asked: tuple[str, ...] = ()  # every bank ever asked to finance it (finance.request), sorted


class ChainParams(NamedTuple):
    """Chain parameters, fixed at genesis (`"params"` in genesis.json, ecert/genesis.py), read by the rules
    through `chain_params`. A genesis that does not name a parameter gets its default here, and a default never
    changes: each default keeps its rule off (0 disables a cap, window, grace or rate), so every tx of a chain
    made before a parameter existed gets the outcome it had. A new chain names every parameter (`NEW_CHAIN_PARAMS`: the
    ceremony and `ecert init` write it). A new parameter is a new field at the end, with a default that leaves the
    chain as it was (a bool or an int; genesis.py validates by the default's type)."""

    transfer_requires_trade_docs: bool = False  # ecert.transfer must draw on trade documents (trade_background)
    invoice_requires_contract: bool = False  # an invoice must name its contract (ecert/trade_background.py)
    approve_requires_kyc: bool = False  # org.approve must carry kyc_hash
    dispute_resolution_ms: int = 30 * 86_400_000  # open -> escalated to the regulator (ecert/disputes.py)
    complaint_response_ms: int = 15 * 86_400_000  # filed -> the respondent's deadline (ecert/disputes.py)
    # payment, default and acceptance (ecert/settlement.py)
    grace_period_ms: int = 0  # maturity -> the holder may declare default
    penalty_bps_per_day: int = 0  # on the unpaid principal of a defaulted cert, from maturity (capped at amount)
    max_term_days: int = 0  # ecert.issue: maturity at most this many days after block time
    acceptance_window_ms: int = 0  # ecert.issue -> cancelled unless accepted by then
    member_address_routable: bool = False  # member.propose add_learner: no wildcard, multicast or 0/8 address


SETTLEMENT_PARAMS = {"grace_period_ms": 10 * 86_400_000, "penalty_bps_per_day": 5, "max_term_days": 365,
                     "acceptance_window_ms": 7 * 86_400_000}
"""Issue 14's settlement terms for a new chain: a 10-day grace period, 5 bps a day of penalty, a 365-day maximum
term (the cap PBoC's 2025 notice sets for supply-chain payment terms), a 7-day acceptance window."""
NEW_CHAIN_PARAMS = ChainParams(transfer_requires_trade_docs=True, invoice_requires_contract=True,
                               approve_requires_kyc=True, member_address_routable=True, **SETTLEMENT_PARAMS)
"""What a chain made today runs with: every rule of issue 14 on (node/genesis_file.py names each in genesis)."""


CHAIN_PARAMS_KEY = b"cp"
"""The ChainParams record; absent when genesis names no parameter (then every default holds)."""
DEFAULT_CHAIN_PARAMS = ChainParams()
_params_decoded: dict[bytes, ChainParams] = {}


def chain_params(view: StateView) -> ChainParams:
    """The chain's parameters: one point read, decoded once per distinct value (every node holds the same)."""
    data = view.get(CHAIN_PARAMS_KEY)
    if data is None:
        return DEFAULT_CHAIN_PARAMS
    params = _params_decoded.get(data)
    if params is None:
        params = decode_record(ChainParams, data)
        if len(_params_decoded) >= 16:
            _params_decoded.clear()
        _params_decoded[data] = params
    return params


LINEAGE_DEPTH_MAX = 1 << 20
"""Deepest certificate below its root. Every transfer's remainder is a child of the cert it spends, so a
chain of payments from one certificate deepens by one per payment (node/bench walks such chains: about
2,200 deep in a default run; a soak deepens each client's chain for as long as it runs). The bound is what a
walk up the parent chain (ecert/access.py) may read at most; a transfer or split beyond it is
`lineage_too_deep`."""

Record = Org | CreditLine | TradeDoc | Cert
R = TypeVar("R", bound=tuple[Any, ...])
"""Any record type of the domain (NamedTuples: these here, ecert/membership.py's)."""

_packer = msgpack.Packer(use_bin_type=True)
"""One packer for every record: `msgpack.packb` builds a Packer per call, about half the cost of packing a
record. `pack` runs entirely in C under the GIL (no hooks for these types), so sharing it is safe."""


_LEGACY_FIELDS: dict[type, tuple[str, ...]] = {
    Org: ("reason",), TradeDoc: ("ciphertext",), Cert: ("depth",)}
"""Per record type, its last field before issue 14. Fields added after it are left off the encoding while they
all hold their defaults, so a record no new rule touched encodes byte for byte as before: a chain made before
them (whose parameters keep the new rules off) replays to the same state root. Decoding fills the defaults back."""
_TAILS: dict[type, tuple[int, tuple[Any, ...]]] = {}
for _cls, (_last,) in _LEGACY_FIELDS.items():
    _n = _cls._fields.index(_last) + 1  # type: ignore[attr-defined]
    _TAILS[_cls] = (_n, tuple(_cls._field_defaults[f] for f in _cls._fields[_n:]))  # type: ignore[attr-defined]


def encode_record(record: tuple[Any, ...]) -> bytes:
    tail = _TAILS.get(type(record))
    if tail is not None and record[tail[0]:] == tail[1]:
        record = record[:tail[0]]
    data: bytes = _packer.pack(record)
    return data


def decode_record(cls: type[R], data: bytes) -> R:
    row: tuple[Any, ...] = msgpack.unpackb(data, raw=False, use_list=False)
    return cls(*row)


# --- keys ---------------------------------------------------------------------------------------------------------
def org_key(org_id: str) -> bytes:
    return b"o/" + org_id.encode()


def credit_key(bank: str, core: str) -> bytes:
    return b"k/" + bank.encode() + b"/" + core.encode()


def doc_key(doc_id: str) -> bytes:
    return b"d/" + doc_id.encode()


def cert_key(cert_id: str) -> bytes:
    return b"c/" + cert_id.encode()


def holdings_prefix(org_id: str) -> bytes:
    return b"h/" + org_id.encode() + b"/"


def lineage_prefix(root_id: str) -> bytes:
    return b"l/" + root_id.encode() + b"/"


def lineage_count_key(root_id: str) -> bytes:
    return b"lc/" + root_id.encode()


def party_prefix(org_id: str, root_id: str) -> bytes:
    return b"p/" + org_id.encode() + b"/" + root_id.encode() + b"/"


def party_key(org_id: str, root_id: str, cert_id: str) -> bytes:
    return party_prefix(org_id, root_id) + cert_id.encode()


def nonce_key(signer: str, nonce: int | str) -> bytes:
    tag = b"i" + str(nonce).encode() if type(nonce) is int else b"s" + str(nonce).encode()
    return b"n/" + signer.encode() + b"/" + tag


ORG_PREFIX = b"o/"
CERT_PREFIX = b"c/"
CREDIT_PREFIX = b"k/"
DOC_PREFIX = b"d/"
PARTY_PREFIX = b"p/"


# --- typed reads and writes ---------------------------------------------------------------------------------------
_ORGS_DECODED_MAX = 1024
_orgs_decoded: dict[bytes, Org] = {}
"""Org records by their stored bytes: every tx reads its signer's record (and often a recipient's), and a
handful of orgs sign nearly everything. Keyed by the exact bytes, so a hit is what decoding would give."""


def signer_org(view: StateView, signer: str) -> Org:
    """The org record of a tx's signer: the executor authenticated it against this record, so it exists."""
    org = get_org(view, signer)
    if org is None:
        require(False, f"executor authenticated a signer {signer!r} that is not registered")
    assert org is not None
    return org


def get_org(view: StateView, org_id: str) -> Org | None:
    data = view.get(org_key(org_id))
    if data is None:
        return None
    org = _orgs_decoded.get(data)
    if org is None:
        org = decode_record(Org, data)
        if len(_orgs_decoded) >= _ORGS_DECODED_MAX:
            _orgs_decoded.clear()
        _orgs_decoded[data] = org
    return org


def put_org(view: StateView, org: Org) -> None:
    view.put(org_key(org.id), encode_record(org))


def get_credit(view: StateView, bank: str, core: str) -> CreditLine | None:
    data = view.get(credit_key(bank, core))
    return None if data is None else decode_record(CreditLine, data)


def put_credit(view: StateView, line: CreditLine) -> None:
    if not 0 <= line.used <= line.limit:  # invariants below: messages formatted only when broken (hot paths)
        require(False, f"credit {line.bank}/{line.core}: used {line.used} outside 0..{line.limit}")
    view.put(credit_key(line.bank, line.core), encode_record(line))


def get_doc(view: StateView, doc_id: str) -> TradeDoc | None:
    data = view.get(doc_key(doc_id))
    return None if data is None else decode_record(TradeDoc, data)


def put_doc(view: StateView, doc: TradeDoc) -> None:
    if not 0 <= doc.backed <= doc.amount:
        require(False, f"doc {doc.id}: backed {doc.backed} outside 0..{doc.amount}")
    if (doc.drawn < 0 or doc.invoiced < 0 or doc.applied < 0
            or doc.backed + doc.drawn + doc.invoiced + doc.applied > doc.amount):
        require(False, f"doc {doc.id}: backed {doc.backed} + drawn {doc.drawn} + invoiced {doc.invoiced} "
                       f"outside 0..{doc.amount}")
    view.put(doc_key(doc.id), encode_record(doc))


def get_cert(view: StateView, cert_id: str) -> Cert | None:
    data = view.get(cert_key(cert_id))
    return None if data is None else decode_record(Cert, data)


def put_cert(view: StateView, cert: Cert, previous: Cert | None) -> None:
    """Write a cert, and the certificate index entries that change with it (`cert_index_entries`)."""
    if cert.amount <= 0:
        require(False, f"cert {cert.id}: amount must be positive")
    if not 0 <= cert.depth <= LINEAGE_DEPTH_MAX:
        require(False, f"cert {cert.id}: depth {cert.depth} outside 0..{LINEAGE_DEPTH_MAX}")
    if previous is None:
        for key, value in cert_index_entries(cert):
            view.put(key, value)
    elif _indexed_fields(previous) != _indexed_fields(cert):
        if (previous.id, previous.root_id, previous.ordinal) != (cert.id, cert.root_id, cert.ordinal):
            require(False, f"cert {cert.id}: its id, root and ordinal never change")
        before, after = dict(cert_index_entries(previous)), dict(cert_index_entries(cert))
        for key in before.keys() - after.keys():
            view.delete(key)
        for key, value in after.items():
            if before.get(key) != value:
                view.put(key, value)
    view.put(cert_key(cert.id), encode_record(cert))


def _indexed_fields(cert: Cert) -> tuple[Any, ...]:
    """What `cert_index_entries` reads besides id, root and ordinal (which never change)."""
    return cert.holder, cert.status in LIVE_STATUSES, cert.seller, cert.finance_bank, cert.asked


def cert_index_entries(cert: Cert) -> list[tuple[bytes, bytes]]:
    """The certificate index entries one cert implies (see the module docstring): its holder's holding if live,
    its place in its lineage, and a party entry for each org that holds, held or was asked to finance it."""
    cert_id = cert.id.encode()
    entries = [(lineage_prefix(cert.root_id) + b"%010d" % cert.ordinal, cert_id)]
    if cert.status in LIVE_STATUSES:
        entries.append((holdings_prefix(cert.holder) + cert_id, b""))
    parties = {cert.holder, *cert.asked}
    if cert.seller is not None:
        parties.add(cert.seller)
    if cert.finance_bank is not None:
        parties.add(cert.finance_bank)
    entries += [(party_prefix(org, cert.root_id) + cert_id, b"") for org in sorted(parties)]
    return entries


class CertIndex:
    """The certificate index as the ledger's `DerivedIndex`: keys `h/`, `l/`, `p/`, derived from `c/` records."""

    __slots__ = ()
    prefixes: tuple[bytes, ...] = (b"h/", b"l/", b"p/")

    def entries(self, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        if not key.startswith(CERT_PREFIX):
            return []
        cert = decode_record(Cert, value)
        require(cert_key(cert.id) == key, f"cert record {key!r} holds cert {cert.id!r}")
        return cert_index_entries(cert)


CERT_INDEX = CertIndex()
"""What every ecert node opens its state store with (node/server.py)."""


def next_ordinals(view: StateView, root_id: str, count: int) -> list[int]:
    """Reserve the next `count` ordinals of a root's lineage (the root itself takes ordinal 0)."""
    count_key = lineage_count_key(root_id)
    raw = view.get(count_key)
    first = 0 if raw is None else int(raw)
    if first + count >= 10**10:
        require(False, f"lineage {root_id} is full")
    view.put(count_key, str(first + count).encode())
    return list(range(first, first + count))


def lineage_ids(view: StateView, root_id: str) -> list[str]:
    return [value.decode() for _, value in view.scan(lineage_prefix(root_id))]


def holding_ids(view: StateView, org_id: str) -> list[str]:
    prefix = holdings_prefix(org_id)
    return [key[len(prefix):].decode() for key, _ in view.scan(prefix)]


def is_party(view: StateView, org_id: str, root_id: str, cert_id: str) -> bool:
    return view.get(party_key(org_id, root_id, cert_id)) is not None


def has_party_in(view: StateView, org_id: str, root_id: str) -> bool:
    """Is the org party to any cert of this lineage? (Stops at the first index key.)"""
    return next(iter(view.scan(party_prefix(org_id, root_id))), None) is not None


def party_cert_ids(view: StateView, org_id: str, root_id: str) -> list[str]:
    """The certs of one lineage the org holds, held or was asked to finance, by id."""
    prefix = party_prefix(org_id, root_id)
    return [key[len(prefix):].decode() for key, _ in view.scan(prefix)]


def nonce_used(view: StateView, signer: str, nonce: int | str) -> bool:
    return view.get(nonce_key(signer, nonce)) is not None


def mark_nonce(view: StateView, signer: str, nonce: int | str) -> None:
    view.put(nonce_key(signer, nonce), b"")
