"""Transactions: strict codec, Ed25519 signatures and tx ids (CONTRACT §3).

    envelope = msgpack {"payload": bin, "signer": str, "sig": bin}
    payload  = msgpack {"chain_id": str, "type": str, "signer": str, "nonce": int | str, "body": map}

The signature is Ed25519 over the payload bytes exactly as sent; the tx id is the lowercase hex SHA-256 of those
bytes. Decoding is strict: maps must carry exactly the documented keys (no unknown, no duplicate keys), every field
has one type (a bool is not an int, a float is never accepted), and every string, bin and list has a maximum
length. Anything else raises `TxRejected` with a code from ecert/codes.py; nothing else escapes `decode_tx`.

Bodies decode into one frozen dataclass per kind (`BODY_SCHEMAS` is the single table of fields), so the rules in
ecert/rules.py never see an unchecked value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey, VerifyKey

from consensus.invariant import require
from ecert import codes
from ecert.errors import TxRejected
from ledger.block import TX_BYTES_MAX as TX_BYTES_MAX

# --- limits (TigerBeetle style: everything has a named maximum) ---------------------------------------------------
# TX_BYTES_MAX (256 KiB, the envelope limit) is the ledger's: one name for "a tx" from admission to the block.
PAYLOAD_BYTES_MAX = TX_BYTES_MAX - 256
"""The envelope's other fields (signer, signature, keys) take under 256 bytes: asserted at the end."""
TX_JSON_BYTES_MAX = 2 * TX_BYTES_MAX
"""Largest JSON form of one tx worth reading (base64 grows the payload by 4/3; the rest is keys and slack): the
floor of cluster.toml `max_body_bytes`, so that every tx ecert admits can be posted as JSON."""
AMOUNT_MAX = 10**15  # fen; CONTRACT §3: 0 < amount <= 10^15
TIME_MS_MAX = 2**53  # ms since epoch; far beyond any real date, and exact in JSON clients
NONCE_INT_MAX = 2**64 - 1
NONCE_STR_LEN_MAX = 64
ID_LEN_MAX = 64
NAME_LEN_MAX = 128
REASON_LEN_MAX = 256
INVOICES_MAX = 16
RECIPIENTS_MAX = 32
SPLIT_PARTS_MAX = 32
CIPHERTEXTS_MAX = 4  # the two parties, one bank and the regulator (CONTRACT §6: documents may be sealed for it too)
CIPHERTEXT_BYTES_MAX = 48 * 1024  # four of them stay under TX_BYTES_MAX (checked at import below)
DISCOUNT_BPS_MAX = 10_000
SIG_BYTES = 64
TRADE_DOCS_MAX = 16  # contracts or invoices one transfer draws on (as INVOICES_MAX for an issue)

ROLES = ("bank", "core", "supplier", "regulator")
"""`regulator` decodes so that org.register can refuse it with its own code (genesis only, ecert/rules.py)."""
DOC_KINDS = ("contract", "invoice", "delivery", "payment")
DISPUTE_OUTCOMES = ("upheld", "dismissed")

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HEX32_RE = re.compile(r"[0-9a-f]{64}")


# --- body dataclasses, one per kind -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OrgRegister:
    org_id: str
    name: str
    role: str
    sign_pk: str  # hex Ed25519 public key
    box_pk: str  # hex X25519 public key (for sealed trade documents)


@dataclass(frozen=True, slots=True)
class OrgAction:
    """org.approve / org.freeze / org.unfreeze."""

    org_id: str
    reason: str | None = None
    kyc_hash: str | None = None  # org.approve only: sha256 of the KYC evidence (hex)


@dataclass(frozen=True, slots=True)
class CreditGrant:
    core: str
    limit: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class TradeAnchor:
    doc_id: str
    kind: str
    doc_hash: str  # hex sha256 of the plaintext document
    counterparty: str
    amount: int
    ciphertext: tuple[tuple[str, bytes], ...] | None = None  # (org_id, sealed box) sorted by org_id
    contract_id: str | None = None  # invoices: the confirmed contract between the same two parties


@dataclass(frozen=True, slots=True)
class TradeConfirm:
    doc_id: str


@dataclass(frozen=True, slots=True)
class EcertIssue:
    to: str
    amount: int
    maturity: int
    bank: str
    invoice_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CertRef:
    """ecert.accept / ecert.reject / ecert.default / ecert.revoke."""

    cert_id: str


@dataclass(frozen=True, slots=True)
class EcertTransfer:
    cert_id: str
    to: tuple[tuple[str, int], ...]  # (org, amount) in the order given
    trade_docs: tuple[str, ...] | None = None  # confirmed contracts/invoices between holder and recipients


@dataclass(frozen=True, slots=True)
class EcertSplit:
    cert_id: str
    amounts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FinanceRequest:
    cert_id: str
    bank: str


@dataclass(frozen=True, slots=True)
class FinanceApprove:
    cert_id: str
    discount_bps: int
    recourse: bool | None = None  # omitted: without recourse, as before the field existed


@dataclass(frozen=True, slots=True)
class FinanceDecline:
    cert_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OrgRotateKey:
    """org.rotate_key: the signer's new keys, from the next tx on (CONTRACT §6 "Keys")."""

    sign_pk: str  # hex Ed25519 public key
    box_pk: str  # hex X25519 public key
    proof: bytes  # the new key's Ed25519 signature over `key_proof_message(nonce)`


# --- membership governance bodies (CONTRACT §6; rules in ecert/governance.py) ----------------------------------
MEMBER_NODE_FIELDS = ("org", "raft", "http", "node_pk")
"""The fields only `add_learner` takes (and must take): the new node's org, addresses and transport key."""


@dataclass(frozen=True, slots=True)
class MemberPropose:
    action: str  # add_learner | promote | remove
    node_id: str
    org: str | None = None
    raft: str | None = None  # "host:port"
    http: str | None = None  # "host:port"
    node_pk: str | None = None  # hex Ed25519 public key of the node's transport key

    def __post_init__(self) -> None:
        # Which fields a body holds depends on its action; decode_payload turns this into a coded rejection.
        for name in MEMBER_NODE_FIELDS:
            given = getattr(self, name) is not None
            if self.action == "add_learner" and not given:
                raise TxRejected(codes.MISSING_FIELD, f"body: add_learner needs field {name!r}")
            if self.action != "add_learner" and given:
                raise TxRejected(codes.UNKNOWN_FIELD, f"body: field {name!r} is only for add_learner")


@dataclass(frozen=True, slots=True)
class MemberApprove:
    proposal_id: str


# --- disputes and complaints (rules in ecert/disputes.py) ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DisputeOpen:
    """dispute.open: on exactly one of a certificate or a trade document."""

    against: str  # the counterparty: another party of the same certificate or document
    reason: str
    evidence_hash: str  # hex sha256 of the evidence (kept off chain, like trade documents)
    cert_id: str | None = None
    doc_id: str | None = None

    def __post_init__(self) -> None:
        # decode_payload turns this into a coded rejection, as for MemberPropose.
        if self.cert_id is None and self.doc_id is None:
            raise TxRejected(codes.MISSING_FIELD, "body: dispute.open needs field 'cert_id' or 'doc_id'")
        if self.cert_id is not None and self.doc_id is not None:
            raise TxRejected(codes.BAD_FIELD, "body: dispute.open takes 'cert_id' or 'doc_id', not both")


@dataclass(frozen=True, slots=True)
class DisputeRespond:
    dispute_id: str
    statement: str
    evidence_hash: str


@dataclass(frozen=True, slots=True)
class DisputeResolve:
    dispute_id: str
    outcome: str  # upheld | dismissed
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ComplaintFile:
    against: str
    subject: str
    evidence_hash: str


@dataclass(frozen=True, slots=True)
class ComplaintRespond:
    complaint_id: str
    statement: str
    evidence_hash: str


@dataclass(frozen=True, slots=True)
class ComplaintRef:
    """complaint.escalate / complaint.close."""

    complaint_id: str
    reason: str | None = None


# --- payment, default, recourse and financing limits (rules in ecert/settlement.py) ----------------------------
@dataclass(frozen=True, slots=True)
class EcertSettle:
    """ecert.settle: pay the rest of a matured leaf in full."""

    cert_id: str
    payment: str | None = None  # a `payment` trade document between the debtor and the holder


@dataclass(frozen=True, slots=True)
class EcertPay:
    cert_id: str
    amount: int
    payment: str | None = None


@dataclass(frozen=True, slots=True)
class RootRef:
    """ecert.settle_root: every live matured leaf of one root."""

    root_id: str


@dataclass(frozen=True, slots=True)
class RecourseRepay:
    cert_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class RecourseWriteOff:
    cert_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class FinanceLimitSet:
    """finance.limit: the signer bank's financing limit for one supplier or core enterprise."""

    org: str
    limit: int


Body = (
    OrgRegister | OrgAction | CreditGrant | TradeAnchor | TradeConfirm | EcertIssue | CertRef | EcertTransfer
    | EcertSplit | FinanceRequest | FinanceApprove | FinanceDecline | OrgRotateKey
    | MemberPropose | MemberApprove
    | DisputeOpen | DisputeRespond | DisputeResolve | ComplaintFile | ComplaintRespond | ComplaintRef
    | EcertSettle | EcertPay | RootRef | RecourseRepay | RecourseWriteOff | FinanceLimitSet
)


@dataclass(frozen=True, slots=True)
class Envelope:
    payload: bytes
    signer: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Tx:
    """A decoded, schema-checked transaction (signature not yet verified: that needs the state)."""

    tx_id: str
    chain_id: str
    type: str
    signer: str
    nonce: int | str
    body: Any  # one of the Body dataclasses, chosen by `type`
    payload: bytes
    sig: bytes


# --- field validators: (field name, raw value) -> checked value, or TxRejected ------------------------------------
Validator = Callable[[str, object], object]


def _bad(name: str, why: str) -> TxRejected:
    return TxRejected(codes.BAD_FIELD, f"field {name!r}: {why}")


def _str(name: str, value: object, len_max: int, len_min: int = 1) -> str:
    if type(value) is not str:
        raise _bad(name, "must be a string")
    if not len_min <= len(value) <= len_max:
        raise _bad(name, f"length must be {len_min}..{len_max}")
    return value


def v_id(name: str, value: object) -> str:
    s = _str(name, value, ID_LEN_MAX)
    if _ID_RE.fullmatch(s) is None:
        raise _bad(name, "must match [A-Za-z0-9][A-Za-z0-9._-]{0,63}")
    return s


def v_name(name: str, value: object) -> str:
    return _str(name, value, NAME_LEN_MAX)


def v_reason(name: str, value: object) -> str:
    return _str(name, value, REASON_LEN_MAX, len_min=0)


def v_statement(name: str, value: object) -> str:
    return _str(name, value, REASON_LEN_MAX)


def v_outcome(name: str, value: object) -> str:
    if type(value) is not str or value not in DISPUTE_OUTCOMES:
        raise _bad(name, f"must be one of {', '.join(DISPUTE_OUTCOMES)}")
    return value


def v_hex32(name: str, value: object) -> str:
    s = _str(name, value, 64)
    if _HEX32_RE.fullmatch(s) is None:
        raise _bad(name, "must be 64 lowercase hex characters")
    return s


def v_role(name: str, value: object) -> str:
    if type(value) is not str or value not in ROLES:
        raise _bad(name, f"must be one of {', '.join(ROLES)}")
    return value


def v_doc_kind(name: str, value: object) -> str:
    if type(value) is not str or value not in DOC_KINDS:
        raise _bad(name, f"must be one of {', '.join(DOC_KINDS)}")
    return value


def _int(name: str, value: object, lo: int, hi: int) -> int:
    if type(value) is not int:  # rejects bool, float, and everything else
        raise _bad(name, "must be an integer")
    if not lo <= value <= hi:
        raise _bad(name, f"must be in {lo}..{hi}")
    return value


def v_amount(name: str, value: object) -> int:
    if type(value) is not int:
        raise _bad(name, "must be an integer (minor units)")
    if not 0 < value <= AMOUNT_MAX:
        raise TxRejected(codes.BAD_AMOUNT, f"field {name!r}: amount must satisfy 0 < amount <= 10^15")
    return value


def v_limit(name: str, value: object) -> int:
    # A credit limit may be 0: that closes a line once nothing is used under it.
    if type(value) is not int:
        raise _bad(name, "must be an integer (minor units)")
    if not 0 <= value <= AMOUNT_MAX:
        raise TxRejected(codes.BAD_AMOUNT, f"field {name!r}: limit must satisfy 0 <= limit <= 10^15")
    return value


def v_bool(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise _bad(name, "must be true or false")
    return value


def v_time(name: str, value: object) -> int:
    return _int(name, value, 1, TIME_MS_MAX)


def v_bps(name: str, value: object) -> int:
    return _int(name, value, 0, DISCOUNT_BPS_MAX)


def v_sig(name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != SIG_BYTES:
        raise _bad(name, f"must be bin of {SIG_BYTES} bytes (an Ed25519 signature)")
    return value


def v_nonce(name: str, value: object) -> int | str:
    if type(value) is int:
        return _int(name, value, 0, NONCE_INT_MAX)
    if type(value) is str:
        return _str(name, value, NONCE_STR_LEN_MAX)
    raise _bad(name, "must be an integer or a string")


def _list(name: str, value: object, len_min: int, len_max: int) -> list[object]:
    if type(value) is not list:
        raise _bad(name, "must be a list")
    if not len_min <= len(value) <= len_max:
        raise _bad(name, f"must hold {len_min}..{len_max} items")
    return value


def v_invoice_ids(name: str, value: object) -> tuple[str, ...]:
    items = tuple(v_id(f"{name}[{i}]", x) for i, x in enumerate(_list(name, value, 1, INVOICES_MAX)))
    if len(set(items)) != len(items):
        raise _bad(name, "invoice ids must be distinct")
    return items


def v_trade_doc_ids(name: str, value: object) -> tuple[str, ...]:
    items = tuple(v_id(f"{name}[{i}]", x) for i, x in enumerate(_list(name, value, 1, TRADE_DOCS_MAX)))
    if len(set(items)) != len(items):
        raise _bad(name, "document ids must be distinct")
    return items


def v_split_amounts(name: str, value: object) -> tuple[int, ...]:
    items = _list(name, value, 2, SPLIT_PARTS_MAX)
    return tuple(v_amount(f"{name}[{i}]", x) for i, x in enumerate(items))


def v_recipients(name: str, value: object) -> tuple[tuple[str, int], ...]:
    out = []
    for i, item in enumerate(_list(name, value, 1, RECIPIENTS_MAX)):
        fields = _check_map(f"{name}[{i}]", item, _RECIPIENT_FIELDS)
        out.append((fields["org"], fields["amount"]))
    return tuple(out)


def v_ciphertexts(name: str, value: object) -> tuple[tuple[str, bytes], ...]:
    if type(value) is not dict:
        raise _bad(name, "must be a map of org id to sealed-box bytes")
    if not 1 <= len(value) <= CIPHERTEXTS_MAX:
        raise _bad(name, f"must hold 1..{CIPHERTEXTS_MAX} entries")
    out = []
    for org, ct in value.items():
        v_id(f"{name} key", org)
        if type(ct) is not bytes or not 48 < len(ct) <= CIPHERTEXT_BYTES_MAX:
            raise _bad(f"{name}[{org}]", f"must be a sealed box of 49..{CIPHERTEXT_BYTES_MAX} bytes")
        out.append((org, ct))
    return tuple(sorted(out))


# Field tables: name -> (validator, required). The one place that says what each map holds.
Fields = Mapping[str, tuple[Validator, bool]]

_RECIPIENT_FIELDS: Fields = {"org": (v_id, True), "amount": (v_amount, True)}

# --- membership governance validators ---------------------------------------------------------------------------
MEMBER_ACTIONS = ("add_learner", "promote", "remove")
HOSTNAME_LEN_MAX = 253
ADDRESS_LEN_MAX = HOSTNAME_LEN_MAX + 6  # ":" and a 5-digit port; a bracketed IPv6 address is far shorter

_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_OCTET_RE = re.compile(r"0|[1-9][0-9]{0,2}")
_HEXTET_RE = re.compile(r"[0-9A-Fa-f]{1,4}")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")


def is_ipv4(text: str) -> bool:
    """Dotted quad, each part 0-255 without leading zeros (written out here: ipaddress changed this rule
    between Python releases, and every node must agree)."""
    parts = text.split(".")
    return len(parts) == 4 and all(_OCTET_RE.fullmatch(p) is not None and int(p) <= 255 for p in parts)


def is_ipv6(text: str) -> bool:
    """RFC 4291 text form: eight hextets, one `::` for a run of zeros, optionally an IPv4 tail; no zone id."""
    if text.count("::") > 1:
        return False
    head, gap, tail = text.partition("::")
    parts = (head, tail) if gap else (head,)
    groups = 0
    for i, part in enumerate(parts):
        if part == "":
            continue
        items = part.split(":")
        if i == len(parts) - 1 and "." in items[-1]:  # only the very end may be written as IPv4
            if not is_ipv4(items.pop()):
                return False
            groups += 2
        if not all(_HEXTET_RE.fullmatch(item) is not None for item in items):
            return False
        groups += len(items)
    return groups <= 7 if gap else groups == 8


def ipv6_hextets(text: str) -> tuple[int, ...]:
    """The eight 16-bit groups of an `is_ipv6` address (an IPv4 tail counts as the last two)."""
    head, gap, tail = text.partition("::")

    def groups(part: str) -> list[int]:
        if part == "":
            return []
        items = part.split(":")
        ipv4: list[int] = []
        if "." in items[-1]:  # an IPv4 tail is the last two groups
            a, b, c, d = (int(x) for x in items.pop().split("."))
            ipv4 = [a << 8 | b, c << 8 | d]
        return [int(item, 16) for item in items] + ipv4

    left, right = groups(head), groups(tail)
    return tuple(left + [0] * (8 - len(left) - len(right)) + right) if gap else tuple(left)


def unroutable_host(host: str) -> str | None:
    """Why nobody can dial `host` (the host part of a `v_address`), or None: the unspecified address (what a
    process binds, never what it advertises), "this network" 0/8, multicast, and 240/4 with the broadcast
    address. Hostnames are not judged: what they resolve to is not a fact every node shares."""
    if host.startswith("["):
        groups = ipv6_hextets(host[1:-1])
        if not any(groups):
            return "the unspecified address"
        if groups[0] >> 8 == 0xFF:
            return "a multicast address"
        return None
    if not is_ipv4(host):
        return None
    first = int(host.split(".", 1)[0])
    if first == 0:
        return "the unspecified address" if host == "0.0.0.0" else "a \"this network\" address (0/8)"
    if 224 <= first <= 239:
        return "a multicast address"
    if first >= 240:
        return "a reserved or broadcast address (240/4)"
    return None


def is_hostname(text: str) -> bool:
    """RFC 1123 labels joined by dots; all-numeric dotted text must be an IPv4 address instead."""
    if not 0 < len(text) <= HOSTNAME_LEN_MAX or all(c in "0123456789." for c in text):
        return False
    return all(_LABEL_RE.fullmatch(label) is not None for label in text.split("."))


def v_address(name: str, value: object) -> str:
    """`host:port`: an IPv4 address, a hostname, or an IPv6 address in brackets (`[::1]:9701`)."""
    text = _str(name, value, ADDRESS_LEN_MAX)
    host, sep, port = text.rpartition(":")
    if not sep or _PORT_RE.fullmatch(port) is None or int(port) > 65535:
        raise _bad(name, 'must be "host:port" with a port of 1..65535')
    if host.startswith("[") and host.endswith("]"):
        ok = is_ipv6(host[1:-1])
    else:
        ok = is_ipv4(host) or is_hostname(host)
    if not ok:
        raise _bad(name, "host must be an IPv4 address, a hostname or a bracketed IPv6 address")
    return text


def v_member_action(name: str, value: object) -> str:
    if type(value) is not str or value not in MEMBER_ACTIONS:
        raise _bad(name, f"must be one of {', '.join(MEMBER_ACTIONS)}")
    return value


_MEMBER_PROPOSE_FIELDS: Fields = {
    "action": (v_member_action, True), "node_id": (v_id, True), "org": (v_id, False),
    "raft": (v_address, False), "http": (v_address, False), "node_pk": (v_hex32, False)}
"""`org, raft, http, node_pk` are required for add_learner and refused otherwise (MemberPropose checks)."""


BODY_SCHEMAS: Mapping[str, tuple[type, Fields]] = {
    "org.register": (OrgRegister, {
        "org_id": (v_id, True), "name": (v_name, True), "role": (v_role, True),
        "sign_pk": (v_hex32, True), "box_pk": (v_hex32, True)}),
    "org.approve": (OrgAction, {"org_id": (v_id, True), "reason": (v_reason, False),
                                "kyc_hash": (v_hex32, False)}),
    "org.freeze": (OrgAction, {"org_id": (v_id, True), "reason": (v_reason, False)}),
    "org.unfreeze": (OrgAction, {"org_id": (v_id, True), "reason": (v_reason, False)}),
    "org.rotate_key": (OrgRotateKey, {"sign_pk": (v_hex32, True), "box_pk": (v_hex32, True), "proof": (v_sig, True)}),
    "credit.grant": (CreditGrant, {"core": (v_id, True), "limit": (v_limit, True), "expires_at": (v_time, True)}),
    "trade.anchor": (TradeAnchor, {
        "doc_id": (v_id, True), "kind": (v_doc_kind, True), "doc_hash": (v_hex32, True),
        "counterparty": (v_id, True), "amount": (v_amount, True), "ciphertext": (v_ciphertexts, False),
        "contract_id": (v_id, False)}),
    "trade.confirm": (TradeConfirm, {"doc_id": (v_id, True)}),
    "ecert.issue": (EcertIssue, {
        "to": (v_id, True), "amount": (v_amount, True), "maturity": (v_time, True), "bank": (v_id, True),
        "invoice_ids": (v_invoice_ids, True)}),
    "ecert.accept": (CertRef, {"cert_id": (v_id, True)}),
    "ecert.reject": (CertRef, {"cert_id": (v_id, True)}),
    "ecert.transfer": (EcertTransfer, {"cert_id": (v_id, True), "to": (v_recipients, True),
                                       "trade_docs": (v_trade_doc_ids, False)}),
    "ecert.split": (EcertSplit, {"cert_id": (v_id, True), "amounts": (v_split_amounts, True)}),
    "finance.request": (FinanceRequest, {"cert_id": (v_id, True), "bank": (v_id, True)}),
    "finance.approve": (FinanceApprove, {"cert_id": (v_id, True), "discount_bps": (v_bps, True),
                                         "recourse": (v_bool, False)}),
    "finance.decline": (FinanceDecline, {"cert_id": (v_id, True), "reason": (v_reason, False)}),
    "ecert.settle": (EcertSettle, {"cert_id": (v_id, True), "payment": (v_id, False)}),
    # payment, default, recourse, financing limits, revoke (ecert/settlement.py)
    "ecert.pay": (EcertPay, {"cert_id": (v_id, True), "amount": (v_amount, True), "payment": (v_id, False)}),
    "ecert.settle_root": (RootRef, {"root_id": (v_id, True)}),
    "ecert.default": (CertRef, {"cert_id": (v_id, True)}),
    "ecert.revoke": (CertRef, {"cert_id": (v_id, True)}),
    "recourse.repay": (RecourseRepay, {"cert_id": (v_id, True), "amount": (v_amount, True)}),
    "recourse.write_off": (RecourseWriteOff, {"cert_id": (v_id, True), "reason": (v_reason, False)}),
    "finance.limit": (FinanceLimitSet, {"org": (v_id, True), "limit": (v_limit, True)}),
    # membership governance (CONTRACT §6)
    "member.propose": (MemberPropose, _MEMBER_PROPOSE_FIELDS),
    "member.approve": (MemberApprove, {"proposal_id": (v_id, True)}),
    # disputes and complaints (ecert/disputes.py)
    "dispute.open": (DisputeOpen, {
        "against": (v_id, True), "reason": (v_statement, True), "evidence_hash": (v_hex32, True),
        "cert_id": (v_id, False), "doc_id": (v_id, False)}),
    "dispute.respond": (DisputeRespond, {
        "dispute_id": (v_id, True), "statement": (v_statement, True), "evidence_hash": (v_hex32, True)}),
    "dispute.resolve": (DisputeResolve, {
        "dispute_id": (v_id, True), "outcome": (v_outcome, True), "reason": (v_reason, False)}),
    "complaint.file": (ComplaintFile, {
        "against": (v_id, True), "subject": (v_statement, True), "evidence_hash": (v_hex32, True)}),
    "complaint.respond": (ComplaintRespond, {
        "complaint_id": (v_id, True), "statement": (v_statement, True), "evidence_hash": (v_hex32, True)}),
    "complaint.escalate": (ComplaintRef, {"complaint_id": (v_id, True), "reason": (v_reason, False)}),
    "complaint.close": (ComplaintRef, {"complaint_id": (v_id, True), "reason": (v_reason, False)}),
}
TX_TYPES: tuple[str, ...] = tuple(BODY_SCHEMAS)

# Containers longer than this fail at the msgpack layer already (malformed_*), shorter ones at the schema.
_CONTAINER_LEN_MAX = 64

_ENVELOPE_FIELDS = ("payload", "signer", "sig")
_PAYLOAD_FIELDS = ("chain_id", "type", "signer", "nonce", "body")


def _check_map(where: str, value: object, fields: Fields) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(where, "must be a map")
    for key in value:
        if key not in fields:
            raise TxRejected(codes.UNKNOWN_FIELD, f"{where}: unknown field {str(key)[:64]!r}")
    out: dict[str, Any] = {}
    for key, (validate, required) in fields.items():
        if key in value:
            out[key] = validate(key, value[key])
        elif required:
            raise TxRejected(codes.MISSING_FIELD, f"{where}: missing field {key!r}")
    return out


def _exact_keys(where: str, value: dict[str, object], keys: tuple[str, ...]) -> None:
    for key in value:
        if key not in keys:
            raise TxRejected(codes.UNKNOWN_FIELD, f"{where}: unknown field {str(key)[:64]!r}")
    for key in keys:
        if key not in value:
            raise TxRejected(codes.MISSING_FIELD, f"{where}: missing field {key!r}")


def _pairs_no_duplicates(pairs: list[tuple[object, object]]) -> dict[object, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate map key")
    return out


def _unpack(data: bytes, code: str, what: str) -> dict[str, object]:
    try:
        obj = msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True, object_pairs_hook=_pairs_no_duplicates,
            max_str_len=TX_BYTES_MAX, max_bin_len=TX_BYTES_MAX, max_array_len=_CONTAINER_LEN_MAX,
            max_map_len=_CONTAINER_LEN_MAX, max_ext_len=0, timestamp=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types on bad input; all mean the same here
        raise TxRejected(code, f"{what} is not valid msgpack: {type(exc).__name__}") from None
    if type(obj) is not dict:
        raise TxRejected(code, f"{what} must be a msgpack map")
    return obj


# --- decoding -----------------------------------------------------------------------------------------------------
def tx_id_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def decode_envelope(raw: bytes) -> Envelope:
    if len(raw) > TX_BYTES_MAX:
        raise TxRejected(codes.TX_TOO_LARGE, f"transaction is {len(raw)} bytes, max {TX_BYTES_MAX}")
    obj = _unpack(raw, codes.MALFORMED_ENVELOPE, "envelope")
    _exact_keys("envelope", obj, _ENVELOPE_FIELDS)
    payload, signer, sig = obj["payload"], obj["signer"], obj["sig"]
    if type(payload) is not bytes or not 0 < len(payload) <= PAYLOAD_BYTES_MAX:
        raise _bad("payload", f"must be bin of 1..{PAYLOAD_BYTES_MAX} bytes")
    if type(sig) is not bytes or len(sig) != SIG_BYTES:
        raise _bad("sig", "must be bin of 64 bytes")
    return Envelope(payload=payload, signer=v_id("signer", signer), sig=sig)


def decode_payload(env: Envelope, chain_id: str | None) -> Tx:
    """Decode and schema-check the payload. `chain_id=None` skips the chain check (tools, not nodes)."""
    obj = _unpack(env.payload, codes.MALFORMED_PAYLOAD, "payload")
    _exact_keys("payload", obj, _PAYLOAD_FIELDS)
    tx_chain = _str("chain_id", obj["chain_id"], ID_LEN_MAX)
    if chain_id is not None and tx_chain != chain_id:
        raise TxRejected(codes.WRONG_CHAIN_ID, f"transaction is for chain {tx_chain!r}, this is {chain_id!r}")
    signer = v_id("signer", obj["signer"])
    if signer != env.signer:
        raise TxRejected(codes.SIGNER_MISMATCH, "envelope signer differs from payload signer")
    kind = obj["type"]
    if type(kind) is not str or kind not in BODY_SCHEMAS:
        raise TxRejected(codes.UNKNOWN_TX_TYPE, f"unknown transaction type {str(kind)[:64]!r}")
    nonce = v_nonce("nonce", obj["nonce"])
    cls, fields = BODY_SCHEMAS[kind]
    body = cls(**_check_map("body", obj["body"], fields))
    return Tx(tx_id=tx_id_of(env.payload), chain_id=tx_chain, type=kind, signer=signer, nonce=nonce, body=body,
              payload=env.payload, sig=env.sig)


def decode_tx(raw: bytes, chain_id: str | None) -> Tx:
    return decode_payload(decode_envelope(raw), chain_id)


def raw_tx_id(raw: bytes) -> str:
    """The tx id of raw envelope bytes: sha256 of the payload, or sha256 of the raw bytes if undecodable."""
    try:
        return tx_id_of(decode_envelope(raw).payload)
    except TxRejected:
        return hashlib.sha256(raw).hexdigest()


# --- signatures ---------------------------------------------------------------------------------------------------
_verify_keys: dict[str, VerifyKey] = {}
_VERIFY_KEYS_MAX = 4096


def verify_signature(tx: Tx, sign_pk_hex: str) -> None:
    key = _verify_keys.get(sign_pk_hex)
    if key is None:
        try:
            key = VerifyKey(bytes.fromhex(sign_pk_hex))
        except (ValueError, TypeError):
            raise TxRejected(codes.BAD_SIGNATURE, "registered key is not a valid Ed25519 key") from None
        if len(_verify_keys) >= _VERIFY_KEYS_MAX:
            _verify_keys.clear()
        _verify_keys[sign_pk_hex] = key
    try:
        key.verify(tx.payload, tx.sig)
    except (CryptoError, ValueError, TypeError):  # BadSignatureError is a CryptoError
        raise TxRejected(codes.BAD_SIGNATURE, f"signature does not verify under {tx.signer}'s key") from None


def key_proof_message(nonce: int | str) -> bytes:
    """What an org.rotate_key `proof` signs: the tx's nonce as msgpack, exactly as the payload encodes it
    (`7` -> 0x07, `"n-7"` -> 0xa3 6e 2d 37), so the nonces 1 and "1" give different messages."""
    data: bytes = msgpack.packb(nonce, use_bin_type=True)
    return data


def verify_key_proof(sign_pk_hex: str, nonce: int | str, proof: bytes) -> bool:
    """True iff `proof` is the signature of the key `sign_pk_hex` over `key_proof_message(nonce)`."""
    try:
        VerifyKey(bytes.fromhex(sign_pk_hex)).verify(key_proof_message(nonce), proof)
    except (CryptoError, ValueError, TypeError):  # not a curve point, or a bad signature
        return False
    return True


# --- building -----------------------------------------------------------------------------------------------------
def key_proof(new_seed32: bytes, nonce: int | str) -> bytes:
    """The `proof` of an org.rotate_key tx with this nonce, signed by the new key."""
    return SigningKey(new_seed32).sign(key_proof_message(nonce)).signature


def encode_payload(payload: Mapping[str, object]) -> bytes:
    data: bytes = msgpack.packb(dict(payload), use_bin_type=True)
    return data


def encode_envelope(payload: bytes, signer: str, sig: bytes) -> bytes:
    data: bytes = msgpack.packb({"payload": payload, "signer": signer, "sig": sig}, use_bin_type=True)
    return data


def sign_payload(seed32: bytes, payload: Mapping[str, object], signer: str | None = None) -> bytes:
    """Encode `payload`, sign it with the Ed25519 seed, return the msgpack envelope bytes.

    The envelope signer defaults to payload["signer"]; tests override it to build mismatched envelopes.
    """
    payload_bytes = encode_payload(payload)
    sig = SigningKey(seed32).sign(payload_bytes).signature
    env_signer = signer if signer is not None else payload["signer"]
    return encode_envelope(payload_bytes, str(env_signer), sig)


def make_tx(seed32: bytes, chain_id: str, kind: str, signer: str, nonce: int | str,
            body: Mapping[str, object]) -> bytes:
    """Build and sign a transaction; returns envelope bytes ready for POST /v1/tx."""
    return sign_payload(seed32, {"chain_id": chain_id, "type": kind, "signer": signer, "nonce": nonce,
                                 "body": dict(body)})


# --- JSON form (for curl): payload and sig as base64 --------------------------------------------------------------
def envelope_from_json(obj: object) -> bytes:
    """`{"payload": base64, "signer": str, "sig": base64}` -> msgpack envelope bytes (raises TxRejected)."""
    if type(obj) is not dict:
        raise TxRejected(codes.MALFORMED_ENVELOPE, "JSON envelope must be an object")
    _exact_keys("envelope", obj, _ENVELOPE_FIELDS)
    signer = v_id("signer", obj["signer"])
    parts = {}
    for name in ("payload", "sig"):
        value = obj[name]
        if type(value) is not str or len(value) > TX_JSON_BYTES_MAX:
            raise _bad(name, "must be a base64 string")
        try:
            parts[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(name, "must be valid base64") from None
    raw = encode_envelope(parts["payload"], signer, parts["sig"])
    decode_envelope(raw)  # same size and shape checks as the msgpack form
    return raw


def envelope_to_json(raw: bytes) -> dict[str, str]:
    env = decode_envelope(raw)
    return {"payload": base64.b64encode(env.payload).decode(), "signer": env.signer,
            "sig": base64.b64encode(env.sig).decode()}


# --- relations between the limits, asserted at import ---------------------------------------------------------------
def _largest_anchor_payload(ciphertexts_max: int, ciphertext_bytes_max: int) -> bytes:
    """The largest payload the schema admits: a trade.anchor with every sealed copy at its maximum (no other kind
    comes near: the next largest, a transfer to RECIPIENTS_MAX orgs, is a few KiB)."""
    ident = "a" * ID_LEN_MAX
    body = {"doc_id": ident, "kind": "delivery", "doc_hash": "0" * 64, "counterparty": ident, "amount": AMOUNT_MAX,
            "ciphertext": {f"{i:0{ID_LEN_MAX}d}": bytes(ciphertext_bytes_max) for i in range(ciphertexts_max)}}
    return encode_payload({"chain_id": ident, "type": "trade.anchor", "signer": ident, "nonce": "n" * NONCE_STR_LEN_MAX,
                           "body": body})


def check_tx_limits(tx_bytes_max: int, payload_bytes_max: int, tx_json_bytes_max: int, ciphertexts_max: int,
                    ciphertext_bytes_max: int) -> None:
    """Raise InvariantViolation unless every tx the schema admits fits the envelope and JSON limits."""
    envelope = len(encode_envelope(bytes(payload_bytes_max), "a" * ID_LEN_MAX, bytes(SIG_BYTES)))
    require(envelope <= tx_bytes_max,
            f"an envelope around a {payload_bytes_max}-byte payload is {envelope} bytes, over {tx_bytes_max}")
    anchor = len(_largest_anchor_payload(ciphertexts_max, ciphertext_bytes_max))
    require(anchor <= payload_bytes_max,
            f"the largest trade.anchor payload is {anchor} bytes, over PAYLOAD_BYTES_MAX {payload_bytes_max}")
    json_form = 4 * -(-tx_bytes_max // 3) + 256  # base64 of everything, plus keys, quotes and the signer
    require(json_form <= tx_json_bytes_max,
            f"the JSON form of a {tx_bytes_max}-byte tx needs {json_form} bytes, over {tx_json_bytes_max}")


check_tx_limits(TX_BYTES_MAX, PAYLOAD_BYTES_MAX, TX_JSON_BYTES_MAX, CIPHERTEXTS_MAX, CIPHERTEXT_BYTES_MAX)
