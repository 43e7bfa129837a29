"""Signed client requests and read-only sessions (CONTRACT.md section 6, "Signed requests"): the pure core.

A client proves which organisation it speaks for with one header:

    Authorization: ECERT-ED25519 org="<org_id>",ts="<ms>",nonce="<16-64 lowercase hex>",sig="<base64>"

`sig` is the org's Ed25519 signature (its transaction key) over these nine lines joined by "\\n", UTF-8:
`ecert-request/1`, chain_id, node_id of the node addressed, org_id, METHOD, the path with the raw query string
exactly as sent, ts, nonce, and the lowercase hex SHA-256 of the body (of b"" when there is none).

Why each check of `RequestVerifier.verify` exists (the first that fails is the 401 `unauthenticated` message):
- strict parsing: one spelling per header (exact parameter names, no duplicates, no leading zeros, canonical
  base64), so the bytes the node checks are the bytes the client signed and no two parsers can disagree;
- the org is `active` or `frozen`: a `pending` org is not a member yet (a frozen one may still read);
- |node clock - ts| <= 30 s: a captured header is worth something only briefly, which also bounds the nonce cache;
- ts not before the node's start: the nonce cache lives in memory, so a header the previous process accepted
  must not pass again after a restart. A header dated *ahead* of the node's clock (a client whose clock runs
  fast) could still be inside the window after a quick restart, so the verifier reports such a ts
  (`on_ahead_ts`) before accepting it; the shell keeps the highest one on disk and starts the next process with
  `node_start_ms` above it (node/http/auth_gate.py `AheadHorizon`);
- the nonce is unused by this org at this node within the window: no replay inside the window;
- the signature, by the org's *current* key (a rotated-out key fails here), over chain, node and the request: a
  header cannot be moved to another chain, node, method, path, query or body. On failure the message (and
  `AuthError.extra["string_to_sign"]`) shows the string the node verified against, as S3 does.
A nonce is remembered only once its signature verifies, so an unsigned flood can neither fill the cache nor burn
an org's nonces. The cache never forgets a nonce whose ts is still acceptable: at its cap it refuses instead
(429 `too_many_requests` when one org holds ORG_NONCES_MAX, 503 `busy` when all hold NONCES_MAX).

Sessions: a signed `POST /v1/session` is answered by `SessionIssuer.issue`, an HMAC-SHA256 token binding org,
node, chain and expiry, valid SESSION_TTL_MS, sent back as `Authorization: Bearer <token>` or in the
SESSION_COOKIE cookie (HttpOnly, SameSite=Strict). `LoginLinks` trades a single-use code (printed by
./scripts/run) for such a token. Nothing here does I/O or reads a clock: `now_ms` is always a parameter, and
randomness lives only in the `fresh_*` functions.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from consensus.invariant import require
from ecert.state import ORG_ACTIVE, ORG_FROZEN
from ecert.tx import ID_LEN_MAX

SCHEME = "ECERT-ED25519"
REQUEST_VERSION = "ecert-request/1"
SESSION_VERSION = "ecert-session/1"
SESSION_TOKEN_PREFIX = "ecs1"
SESSION_COOKIE = "ecert_session"
"""The cookie's name stem; the name a node sets is `session_cookie(node_id)`."""


def session_cookie(node_id: str) -> str:
    """The session cookie of one node: `ecert_session_<node_id>`. A browser keeps one cookie per host and name
    whatever the port, and the local cluster's nodes share 127.0.0.1: one name for all would let a login at one
    node's dashboard replace the session of another's."""
    return f"{SESSION_COOKIE}_{node_id}"

CLOCK_SKEW_MS_MAX = 30_000
"""|node clock - ts| allowed; also how long a nonce is remembered past its ts."""
NONCE_HEX_CHARS_MIN = 16
NONCE_HEX_CHARS_MAX = 64
TS_DIGITS_MAX = 15  # ms since 1970 has 13 digits until the year 2286
SIG_BYTES = 64
HEADER_CHARS_MAX = 512  # the longest valid signed header (64-char org id) is 280 characters
NONCES_MAX = 100_000
ORG_NONCES_MAX = 20_000  # one org cannot fill the whole cache and lock the others out
SESSION_TTL_MS = 15 * 60_000
SESSION_SECRET_BYTES_MIN = 32
LOGIN_LINK_TTL_MS = 10 * 60_000
LOGIN_LINKS_MAX = 32
LOGIN_CODE_HEX_CHARS = 32  # 128 bits
ACCEPTED_ORG_STATUSES = frozenset({ORG_ACTIVE, ORG_FROZEN})

UNAUTHENTICATED = "unauthenticated"
TOO_MANY_REQUESTS = "too_many_requests"
BUSY = "busy"

require(ORG_NONCES_MAX <= NONCES_MAX, "one org's nonce share cannot exceed the whole cache")
require(SESSION_TTL_MS > LOGIN_LINK_TTL_MS > 0, "a login link outliving its session makes no sense")

_ID_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{ID_LEN_MAX - 1}}}")  # ecert/tx.py's id rule
_TS_RE = re.compile(rf"[1-9][0-9]{{0,{TS_DIGITS_MAX - 1}}}")
_NONCE_RE = re.compile(rf"[0-9a-f]{{{NONCE_HEX_CHARS_MIN},{NONCE_HEX_CHARS_MAX}}}")
_SIG_RE = re.compile(r"[A-Za-z0-9+/]{86}==")  # 64 bytes in padded base64
_PARAM_RE = re.compile(r'([a-z]+)="([^"\\]*)"')
_SEP_RE = re.compile(r"[ \t]*,[ \t]*")
_BEARER_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token
_MAC_RE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes in unpadded base64url
_LOGIN_CODE_RE = re.compile(rf"[0-9a-f]{{{LOGIN_CODE_HEX_CHARS},{2 * LOGIN_CODE_HEX_CHARS}}}")
_UNSIGNABLE_RE = re.compile("[\n\ud800-\udfff]")  # a newline is the separator; a lone surrogate is not UTF-8
_PARAMS = ("org", "ts", "nonce", "sig")
_PARAM_RULES = (("org", _ID_RE, f"an org id matching {_ID_RE.pattern}"),
                ("ts", _TS_RE, f"milliseconds since 1970, at most {TS_DIGITS_MAX} digits, no leading zero"),
                ("nonce", _NONCE_RE, f"{NONCE_HEX_CHARS_MIN}-{NONCE_HEX_CHARS_MAX} lowercase hex characters"))


class AuthError(Exception):
    """A refusal at the identity check; `status`, `code`, `message` and `extra` map onto the HTTP error."""

    def __init__(self, code: str, message: str, status: int = 401, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


def _refuse(message: str, **extra: str) -> AuthError:
    return AuthError(UNAUTHENTICATED, message, 401, **extra)


@dataclass(frozen=True, slots=True)
class SignedHeader:
    org_id: str
    ts_ms: int
    nonce: str
    sig: bytes  # exactly SIG_BYTES


@dataclass(frozen=True, slots=True)
class BearerHeader:
    token: str


@dataclass(frozen=True, slots=True)
class AuthenticatedOrg:
    """What the rest of the node sees of a verified request: never the raw header."""
    org_id: str


def fresh_nonce() -> str:
    return secrets.token_hex(16)


def fresh_session_secret() -> bytes:
    return secrets.token_bytes(SESSION_SECRET_BYTES_MIN)


def fresh_login_code() -> str:
    return secrets.token_hex(LOGIN_CODE_HEX_CHARS // 2)


def string_to_sign(chain_id: str, node_id: str, org_id: str, method: str, path_qs: str, ts_ms: int,
                   nonce: str, body: bytes) -> str:
    """The nine lines an org signs (a newline inside a field would let two requests sign the same string)."""
    lines = (REQUEST_VERSION, chain_id, node_id, org_id, method.upper(), path_qs, str(ts_ms), nonce,
             hashlib.sha256(body).hexdigest())
    for line in lines:
        if _UNSIGNABLE_RE.search(line):
            raise _refuse(f"a signed field must be UTF-8 text without a newline: {line[:60]!r}")
    return "\n".join(lines)


def sign_request(seed32: bytes, chain_id: str, node_id: str, org_id: str, method: str, path_qs: str,
                 body: bytes, ts_ms: int, nonce: str) -> str:
    """The Authorization header value for one request to one node (the client side)."""
    sts = string_to_sign(chain_id, node_id, org_id, method, path_qs, ts_ms, nonce, body)
    sig = base64.b64encode(SigningKey(seed32).sign(sts.encode()).signature).decode()
    header = f'{SCHEME} org="{org_id}",ts="{ts_ms}",nonce="{nonce}",sig="{sig}"'
    parse_authorization(header)  # refuse here what every node would refuse
    return header


def parse_authorization(header: str) -> SignedHeader | BearerHeader:
    """Strictly parse an Authorization value; the scheme is case-insensitive (RFC 7235), all else is exact."""
    if len(header) > HEADER_CHARS_MAX:
        raise _refuse(f"Authorization header over {HEADER_CHARS_MAX} characters")
    scheme, _, rest = header.partition(" ")
    if not scheme.isascii() or scheme.upper() not in (SCHEME, "BEARER"):  # "\u017f".upper() == "S"
        raise _refuse(f"Authorization scheme must be {SCHEME} or Bearer")
    if scheme.upper() == "BEARER":
        if _BEARER_RE.fullmatch(rest) is None:
            raise _refuse("malformed Bearer token")
        return BearerHeader(rest)
    params: dict[str, str] = {}
    for part in _SEP_RE.split(rest):
        m = _PARAM_RE.fullmatch(part)
        if m is None:
            raise _refuse(f'malformed parameter {part[:40]!r}: expected name="value"')
        name, value = m.groups()
        if name not in _PARAMS:
            raise _refuse(f"unknown parameter {name!r}: expected {', '.join(_PARAMS)}")
        if name in params:
            raise _refuse(f"duplicate parameter {name!r}")
        params[name] = value
    missing = [p for p in _PARAMS if p not in params]
    if missing:
        raise _refuse(f"missing parameter(s) {', '.join(missing)}")
    for name, regex, rule in _PARAM_RULES:
        if regex.fullmatch(params[name]) is None:
            raise _refuse(f"{name} must be {rule}")
    sig_b64 = params["sig"]
    sig = base64.b64decode(sig_b64, validate=True) if _SIG_RE.fullmatch(sig_b64) else b""
    if len(sig) != SIG_BYTES or base64.b64encode(sig).decode() != sig_b64:
        raise _refuse(f"sig must be the canonical base64 of {SIG_BYTES} bytes")
    return SignedHeader(params["org"], int(params["ts"]), params["nonce"], sig)


class NonceCache:
    """The nonces each org used at this node, each kept until no ts that could carry it is acceptable."""

    def __init__(self, window_ms: int = CLOCK_SKEW_MS_MAX, nonces_max: int = NONCES_MAX,
                 org_nonces_max: int = ORG_NONCES_MAX) -> None:
        require(0 < org_nonces_max <= nonces_max and window_ms > 0, "nonce cache limits")
        self.window_ms = window_ms
        self.nonces_max = nonces_max
        self.org_nonces_max = org_nonces_max
        self.horizon_ms = 0
        """Highest eviction cutoff so far. Invariant: every remembered nonce has ts >= horizon_ms, so a ts below
        it must be refused (else a clock stepping back would re-admit forgotten nonces)."""
        self._by_org: dict[str, set[str]] = {}
        self._expiry: list[tuple[int, str, str]] = []  # min-heap of (ts_ms, org_id, nonce), one per nonce kept

    def __len__(self) -> int:
        return len(self._expiry)

    def evict(self, now_ms: int) -> None:
        self.horizon_ms = max(self.horizon_ms, now_ms - self.window_ms)
        while self._expiry and self._expiry[0][0] < self.horizon_ms:
            _, org_id, nonce = heapq.heappop(self._expiry)
            seen = self._by_org[org_id]
            seen.remove(nonce)
            if not seen:
                del self._by_org[org_id]

    def seen(self, org_id: str, nonce: str) -> bool:
        return nonce in self._by_org.get(org_id, ())

    def remember(self, org_id: str, nonce: str, ts_ms: int) -> None:
        """Keep (org, nonce) until ts_ms leaves the window; at a cap refuse rather than forget a live nonce."""
        require(ts_ms >= self.horizon_ms and not self.seen(org_id, nonce), "remember a live, unseen nonce")
        seen = self._by_org.get(org_id, set())
        if len(seen) >= self.org_nonces_max:
            raise AuthError(TOO_MANY_REQUESTS, f"org {org_id!r} signed over {self.org_nonces_max} requests to "
                            f"this node within {self.window_ms} ms; retry later", 429)
        if len(self._expiry) >= self.nonces_max:
            raise AuthError(BUSY, f"this node holds {self.nonces_max} recent nonces; retry later", 503)
        self._by_org[org_id] = seen
        seen.add(nonce)
        heapq.heappush(self._expiry, (ts_ms, org_id, nonce))


OrgKeyLookup = Callable[[str], tuple[str, bytes | str] | None]
"""org_id -> (status, current sign_pk as 32 bytes or 64 hex) from committed state, or None if unknown."""


class RequestVerifier:
    """Checks signed requests addressed to one node. Keep one per node process (it owns the nonce cache)."""

    def __init__(self, chain_id: str, node_id: str, node_start_ms: int, org_key: OrgKeyLookup,
                 nonces: NonceCache | None = None, on_ahead_ts: Callable[[int], None] | None = None) -> None:
        self.on_ahead_ts = on_ahead_ts
        """Called with a verified request's ts when it is ahead of the node's clock, before the request is
        accepted (the shell makes it durable: such a header would outlive a quick restart)."""
        self.chain_id = chain_id
        self.node_id = node_id
        self.node_start_ms = node_start_ms
        self.org_key = org_key
        self.nonces = nonces if nonces is not None else NonceCache()

    def verify(self, method: str, path_qs: str, body: bytes, header: str | SignedHeader,
               now_ms: int) -> AuthenticatedOrg:
        """The org a request speaks for, or AuthError naming the check that failed (see the module docstring).
        `path_qs` is the request target as sent (aiohttp's `request.raw_path`), `body` the raw body bytes."""
        signed = parse_authorization(header) if isinstance(header, str) else header
        if isinstance(signed, BearerHeader):
            raise _refuse(f"this request must be signed with {SCHEME}; a session token only reads")
        org_id = signed.org_id
        found = self.org_key(org_id)
        if found is None:
            raise _refuse(f"unknown org {org_id!r}")
        status, pk = found
        if status not in ACCEPTED_ORG_STATUSES:
            raise _refuse(f"org {org_id!r} is {status}; only an active or frozen org may sign requests")
        self.nonces.evict(now_ms)
        oldest_ms = max(now_ms - CLOCK_SKEW_MS_MAX, self.nonces.horizon_ms)
        if signed.ts_ms < oldest_ms:
            raise _refuse(f"ts {signed.ts_ms} is too old: the node's clock reads {now_ms} and accepts ts from "
                          f"{oldest_ms} (at most {CLOCK_SKEW_MS_MAX} ms apart)")
        if signed.ts_ms > now_ms + CLOCK_SKEW_MS_MAX:
            raise _refuse(f"ts {signed.ts_ms} is more than {CLOCK_SKEW_MS_MAX} ms ahead of the node's clock "
                          f"({now_ms})")
        if signed.ts_ms < self.node_start_ms:
            raise _refuse(f"ts {signed.ts_ms} is before this node started ({self.node_start_ms}); sign afresh")
        if self.nonces.seen(org_id, signed.nonce):
            raise _refuse(f"nonce already used by org {org_id!r} at this node within {CLOCK_SKEW_MS_MAX} ms")
        sts = string_to_sign(self.chain_id, self.node_id, org_id, method, path_qs, signed.ts_ms, signed.nonce,
                             body)
        pk_bytes = bytes.fromhex(pk) if isinstance(pk, str) else pk
        require(len(pk_bytes) == 32, f"org {org_id}'s committed sign_pk is not 32 bytes")
        try:
            VerifyKey(pk_bytes).verify(sts.encode(), signed.sig)
        except BadSignatureError:
            raise _refuse(f"signature does not verify with org {org_id!r}'s current key; the string to sign "
                          f"was:\n{sts}", string_to_sign=sts) from None
        if signed.ts_ms > now_ms and self.on_ahead_ts is not None:
            self.on_ahead_ts(signed.ts_ms)
        self.nonces.remember(org_id, signed.nonce, signed.ts_ms)
        return AuthenticatedOrg(org_id)


class SessionIssuer:
    """Read-only session tokens `ecs1~<node>~<org>~<expires_at_ms>~<mac>`, mac = HMAC-SHA256(secret, version,
    chain, node, org, expiry). A token only reads: the caller must accept it for GET requests alone and demand a
    signed request for anything else. A fresh secret per process ends every session at restart."""

    def __init__(self, secret: bytes, chain_id: str, node_id: str, ttl_ms: int = SESSION_TTL_MS) -> None:
        if len(secret) < SESSION_SECRET_BYTES_MIN:
            raise ValueError(f"session secret must be at least {SESSION_SECRET_BYTES_MIN} bytes")
        require(_ID_RE.fullmatch(node_id) is not None and ttl_ms > 0, "session issuer node id and ttl")
        self._secret = secret
        self.chain_id = chain_id
        self.node_id = node_id
        self.ttl_ms = ttl_ms

    def _mac(self, org_id: str, expires_at_ms: int) -> str:
        msg = "\n".join((SESSION_VERSION, self.chain_id, self.node_id, org_id, str(expires_at_ms))).encode()
        digest = hmac.new(self._secret, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, org_id: str, now_ms: int) -> tuple[str, int]:
        """(token, expires_at_ms) for an org that has just signed `POST /v1/session` to this node."""
        require(_ID_RE.fullmatch(org_id) is not None, "a session for a well-formed org id")
        expires_at_ms = now_ms + self.ttl_ms
        token = "~".join((SESSION_TOKEN_PREFIX, self.node_id, org_id, str(expires_at_ms),
                          self._mac(org_id, expires_at_ms)))
        return token, expires_at_ms

    def verify(self, token: str, now_ms: int) -> str:
        """The org id the token was issued to, or AuthError (malformed, other node, bad mac, expired)."""
        parts = token.split("~") if len(token) <= HEADER_CHARS_MAX else []
        if (len(parts) != 5 or parts[0] != SESSION_TOKEN_PREFIX or _ID_RE.fullmatch(parts[1]) is None
                or _ID_RE.fullmatch(parts[2]) is None or _TS_RE.fullmatch(parts[3]) is None
                or _MAC_RE.fullmatch(parts[4]) is None):
            raise _refuse("malformed session token")
        _, node_id, org_id, expiry, mac = parts
        if node_id != self.node_id:
            raise _refuse(f"session token was issued by node {node_id!r}, not {self.node_id!r}")
        if not hmac.compare_digest(mac, self._mac(org_id, int(expiry))):
            raise _refuse("session token does not verify (altered, or issued before this node restarted)")
        if now_ms >= int(expiry):
            raise _refuse(f"session token expired at {expiry}; sign a new POST /v1/session")
        return org_id


class LoginLinks:
    """Single-use dashboard login codes, each bound to one org (./scripts/run prints one for the node's own org).
    Only a SHA-256 of each code is kept, so a lookup's timing says nothing about live codes. At LOGIN_LINKS_MAX
    the oldest unused code is dropped: the safe direction, an old link just stops working."""

    def __init__(self, sessions: SessionIssuer, ttl_ms: int = LOGIN_LINK_TTL_MS,
                 links_max: int = LOGIN_LINKS_MAX) -> None:
        require(ttl_ms > 0 and links_max > 0, "login link limits")
        self.sessions = sessions
        self.ttl_ms = ttl_ms
        self.links_max = links_max
        self._links: dict[bytes, tuple[str, int]] = {}  # sha256(code) -> (org_id, expires_at_ms), oldest first

    def __len__(self) -> int:
        return len(self._links)

    def mint(self, org_id: str, code: str, now_ms: int) -> int:
        """Bind `code` (from fresh_login_code()) to org_id; returns its expires_at_ms."""
        require(_LOGIN_CODE_RE.fullmatch(code) is not None and _ID_RE.fullmatch(org_id) is not None,
                "a login code is random lowercase hex, bound to a well-formed org id")
        for key in [k for k, (_, exp) in self._links.items() if now_ms >= exp]:
            del self._links[key]
        while len(self._links) >= self.links_max:
            del self._links[next(iter(self._links))]
        key = hashlib.sha256(code.encode()).digest()
        require(key not in self._links, "a login code minted twice")
        self._links[key] = (org_id, now_ms + self.ttl_ms)
        return now_ms + self.ttl_ms

    def redeem(self, code: str, now_ms: int) -> tuple[str, int]:
        """Spend a code once: (session token, expires_at_ms) for its org, or AuthError."""
        if _LOGIN_CODE_RE.fullmatch(code) is None:
            raise _refuse("malformed login code")
        entry = self._links.pop(hashlib.sha256(code.encode()).digest(), None)
        if entry is None:
            raise _refuse("unknown or already used login code")
        org_id, expires_at_ms = entry
        if now_ms >= expires_at_ms:
            raise _refuse(f"login code expired at {expires_at_ms}; ask for a new link")
        return self.sessions.issue(org_id, now_ms)
