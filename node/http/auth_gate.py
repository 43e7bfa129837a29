"""Who is asking: the one place where a request's identity is checked as its bytes enter (CONTRACT §6).

`AuthGate` (one per node process, `node.auth`, built in node/server.py) holds the `RequestVerifier` of
node/request_auth.py (with its nonce cache), the `SessionIssuer` (a fresh secret per process: a restart ends
every session) and the dashboard's `LoginLinks`. `authenticate(request)` turns a request into a
`ecert.access.Reader`, or None for an anonymous one:

- `Authorization: ECERT-ED25519 ...`: verified over the method, the raw path and query, and the body (read once,
  node/http/body.py, and kept for the handler);
- `Authorization: Bearer <token>` or the `ecert_session_<node_id>` cookie: a read-only session, for GET and HEAD only. A
  token on any other method is a 401; a cookie there is ignored (a browser sends it unasked). A cookie that no
  longer verifies (expired, or from before a restart) is ignored too: a page cannot drop an HttpOnly cookie, and
  anonymous is the least a reader can be;
- a malformed or failing header: HttpError 401 `unauthenticated` with the check that failed (and, for a bad
  signature, `string_to_sign`); 429 `too_many_requests` / 503 `busy` when the nonce cache is at a cap.
With `[cluster] read_access = "open"` an anonymous request reads as the regulator would (`OPEN_READER`).

Which routes ask at all is `ROUTE_ACCESS`, enforced by `access_middleware` before any handler runs: PUBLIC
routes never look at a header; ANYONE routes take anonymous and signed readers alike and shape the answer by who
asks; SIGNED routes need an org (401 otherwise) and the handler applies the resource's rule (ecert/access.py);
REGULATOR routes answer the regulator only (401 anonymous, 403 anyone else). A route missing from the table is
REGULATOR: a route added later is closed until its documentation, and this table, say who may read it. Every
request that reached a non-public route with an authenticated org is written to the audit log
(node/http/audit_log.py), refusals included.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Final

from aiohttp import web

from consensus.invariant import require
from ecert import state as s
from ecert.access import Reader, reader_of
from ledger.state_view import StateView
from node.config import READ_ACCESS_MODES, READ_ACCESS_OPEN
from node.http.audit_log import AuditLog
from node.http.body import read_body
from node.http.errors import HttpError
from node.request_auth import (
    SESSION_TTL_MS,
    AuthError,
    BearerHeader,
    LoginLinks,
    RequestVerifier,
    SessionIssuer,
    fresh_session_secret,
    parse_authorization,
    session_cookie,
)

log = logging.getLogger("node.http.auth_gate")

OPEN_READER: Final = Reader("(open)", s.REGULATOR)
"""Who an anonymous request reads as under `read_access = "open"` (not an org id: ids start with a letter or
digit, so no access rule can mistake it for one)."""
READ_METHODS = frozenset({"GET", "HEAD"})
"""The methods a session token (Bearer or cookie) may be used for: it only reads."""


class Access(enum.Enum):
    PUBLIC = "public"
    """Nobody is asked who they are: an Authorization header is not even parsed."""
    ANYONE = "anyone"
    """Anonymous readers too; the handler shapes the answer by who asks (a bad header is still a 401)."""
    SIGNED = "signed"
    """Any authenticated org (401 otherwise); the handler applies the resource's rule (ecert/access.py)."""
    REGULATOR = "regulator"
    """The regulator only (401 anonymous, 403 any other org): every route this table does not name."""


ROUTE_ACCESS: Mapping[tuple[str, str], Access] = {
    # CONTRACT §6 "Who may read what", by (method, route template). HEAD is looked up as GET.
    ("GET", "/v1/status"): Access.PUBLIC,
    ("GET", "/v1/cluster"): Access.PUBLIC,
    ("GET", "/v1/cluster/view"): Access.PUBLIC,  # the dashboard's form of /v1/cluster: the same facts
    ("GET", "/v1/blocks"): Access.PUBLIC,
    ("GET", "/v1/blocks/{height}"): Access.PUBLIC,
    ("GET", "/openapi.json"): Access.PUBLIC,
    ("GET", "/"): Access.PUBLIC,
    ("GET", "/static/{file}"): Access.PUBLIC,
    ("GET", "/metrics"): Access.PUBLIC,
    ("POST", "/v1/tx"): Access.PUBLIC,  # each envelope is its own signature
    ("POST", "/v1/txs"): Access.PUBLIC,
    ("POST", "/admin/members"): Access.PUBLIC,  # answers 403 governance_required to everyone
    ("GET", "/admin/faults"): Access.PUBLIC,  # only with --fault-injection; loopback only (node/faults.py)
    ("POST", "/admin/faults"): Access.PUBLIC,
    ("GET", "/v1/tx/{tx_id}"): Access.ANYONE,
    ("GET", "/v1/events"): Access.ANYONE,
    ("POST", "/v1/session"): Access.SIGNED,  # and by signature only: the handler refuses the open reader
    ("GET", "/v1/orgs/{id}"): Access.SIGNED,
    ("GET", "/v1/orgs/{id}/certs"): Access.SIGNED,
    ("GET", "/v1/certs/{id}"): Access.SIGNED,
    ("GET", "/v1/certs/{id}/lineage"): Access.SIGNED,
    ("GET", "/v1/credit/{bank}/{core}"): Access.SIGNED,
    ("GET", "/v1/docs/{id}"): Access.SIGNED,
    ("GET", "/v1/members"): Access.SIGNED,
    ("GET", "/v1/proposals"): Access.SIGNED,
    ("GET", "/v1/proposals/{id}"): Access.SIGNED,
    # Business queries (issue 14): each handler applies its resource's rule (ecert/access.py, ecert/risk.py).
    ("GET", "/v1/certs"): Access.SIGNED,  # each listed certificate one the reader may read
    ("GET", "/v1/certs/{id}/history"): Access.SIGNED,  # the certificate's readers (404 otherwise)
    ("GET", "/v1/orgs/{id}/owed"): Access.SIGNED,  # the org and the regulator (403 otherwise)
    ("GET", "/v1/risk/orgs/{id}"): Access.SIGNED,  # the regulator, the org, a bank it deals with (403 otherwise)
    ("GET", "/v1/risk/certs/{id}"): Access.SIGNED,  # a bank that may read it, the regulator (403 / 404)
    # The dashboard's routes (node/http/dashboard.py, node/http/login.py say why each is open this far):
    ("GET", "/login"): Access.PUBLIC,  # spends a one-time code
    ("POST", "/logout"): Access.PUBLIC,  # drops the caller's own cookie
    ("GET", "/v1/dashboard/whoami"): Access.ANYONE,
    ("GET", "/v1/alarms"): Access.SIGNED,
    ("GET", "/v1/blocks/{height}/txs"): Access.SIGNED,  # each tx whole only where its outcome is readable
    ("GET", "/v1/dashboard/latest-cert"): Access.SIGNED,  # the newest certificate the reader may see
    ("GET", "/v1/supervision"): Access.REGULATOR,
}


def route_access(method: str, template: str) -> Access:
    """The access rule of a route; REGULATOR for one the table does not name."""
    return ROUTE_ACCESS.get(("GET" if method == "HEAD" else method, template), Access.REGULATOR)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


_READER_KEY: web.RequestKey[Reader | None] = web.RequestKey("ecert_reader")
_ORG_KEY: web.RequestKey[str] = web.RequestKey("ecert_authenticated_org", str)


AHEAD_HORIZON_NAME = "auth.horizon"
"""In the data dir: the highest ts of a signed request this node accepted while it was ahead of its clock."""


class AheadHorizon:
    """Keeps, durably, the highest ts of an accepted request that was dated ahead of the node's clock.

    The nonce cache lives in memory and a new process refuses a ts before its own start. A header dated up to
    30 s ahead (a client whose clock runs fast), accepted just before a crash, would still be ahead of a process
    restarted within those seconds: the next process starts its verifier above the stored value instead. Written
    (fsynced) before the request is answered, only when a ts beats the stored one: with clocks in step, never.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ts_ms = self._read()

    def _read(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            raise OSError(f"{self.path}: unreadable ({exc}); remove it only if no request was accepted "
                          "within the last 30 s") from exc
        if not text.isdigit() or len(text) > 15:
            raise OSError(f"{self.path}: not a ms timestamp: {text[:40]!r}")
        return int(text)

    def not_before_ms(self, started_ms: int) -> int:
        """The earliest ts this process may accept: its start, or past every ahead-dated ts accepted before."""
        return max(started_ms, self.ts_ms + 1)

    def record(self, ts_ms: int) -> None:
        if ts_ms <= self.ts_ms:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{ts_ms}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.ts_ms = ts_ms


class AuthGate:
    """The identity check of one node process (see the module docstring)."""

    def __init__(self, *, chain_id: str, node_id: str, started_ms: int, view: Callable[[], StateView],
                 read_access: str, body_bytes_max: int, audit: AuditLog | None = None,
                 clock: Callable[[], int] = wall_clock_ms, session_secret: bytes | None = None,
                 ahead: AheadHorizon | None = None) -> None:
        require(read_access in READ_ACCESS_MODES, f"read_access {read_access!r}")
        self.node_id = node_id
        self.read_access = read_access
        self.body_bytes_max = body_bytes_max
        self.audit = audit
        self.clock = clock
        self._view = view
        self.ahead = ahead
        not_before_ms = started_ms if ahead is None else ahead.not_before_ms(started_ms)
        self.verifier = RequestVerifier(chain_id, node_id, not_before_ms, self._org_key,
                                        on_ahead_ts=None if ahead is None else ahead.record)
        self.sessions = SessionIssuer(session_secret or fresh_session_secret(), chain_id, node_id)
        self.logins = LoginLinks(self.sessions)
        """Single-use dashboard login codes (`mint` / `redeem`), bound to this gate's sessions."""
        if read_access == READ_ACCESS_OPEN:
            log.warning("read_access_open", extra={"detail": "anonymous requests read as the regulator would: "
                                                             "for a private demo only (CONTRACT §6)"})

    @property
    def open_reads(self) -> bool:
        return self.read_access == READ_ACCESS_OPEN

    def _org_key(self, org_id: str) -> tuple[str, str] | None:
        org = s.get_org(self._view(), org_id)
        return None if org is None else (org.status, org.sign_pk)

    async def authenticate(self, request: web.Request) -> Reader | None:
        """The request's reader, or None if anonymous (see `authenticate` below). Checked once per request: a
        second call answers the first result (a signature's nonce is spent by the first)."""
        if _READER_KEY in request:
            return request[_READER_KEY]
        reader = await self._authenticate(request)
        request[_READER_KEY] = reader
        return reader

    async def _authenticate(self, request: web.Request) -> Reader | None:
        headers = request.headers.getall("Authorization", [])
        if len(headers) > 1:
            raise HttpError(401, "unauthenticated", "more than one Authorization header")
        now_ms = self.clock()
        org_id = await self._verify_header(request, headers[0], now_ms) if headers else self._cookie_org(request,
                                                                                                        now_ms)
        if org_id is None:
            return OPEN_READER if self.open_reads else None
        reader = reader_of(self._view(), org_id)
        if reader is None:  # verified moments ago, and orgs are never deleted
            raise HttpError(401, "unauthenticated", f"unknown org {org_id!r}")
        request[_ORG_KEY] = org_id
        return reader

    async def _verify_header(self, request: web.Request, header: str, now_ms: int) -> str:
        try:
            parsed = parse_authorization(header)
            if isinstance(parsed, BearerHeader):
                if request.method not in READ_METHODS:
                    raise AuthError("unauthenticated", f"a session token only reads (GET, HEAD): sign this "
                                                       f"{request.method} request with ECERT-ED25519")
                return self.sessions.verify(parsed.token, now_ms)
            body = await read_body(request, self.body_bytes_max)
            return self.verifier.verify(request.method, request.raw_path, body, parsed, now_ms).org_id
        except AuthError as exc:
            raise HttpError(exc.status, exc.code, exc.message, **exc.extra) from None

    def _cookie_org(self, request: web.Request, now_ms: int) -> str | None:
        token = request.cookies.get(session_cookie(self.node_id)) if request.method in READ_METHODS else None
        if not token:
            return None
        try:
            return self.sessions.verify(token, now_ms)
        except AuthError:
            return None

    def record(self, request: web.Request, status: int) -> None:
        """Write an authenticated request's line to the audit log (a failing disk is logged, not answered)."""
        org_id = authenticated_org(request)
        if org_id is None or self.audit is None:
            return
        route = request.match_info.route.resource
        entry = {"ts": self.clock(), "org": org_id, "method": request.method,
                 "route": route.canonical if route is not None else request.path,
                 "resource": "/".join(request.match_info.values()), "status": status}
        try:
            self.audit.write(entry)
        except OSError:
            log.exception("audit_write_failed", extra={"route": entry["route"], "org": org_id})

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()


AUTH_GATE_KEY: web.AppKey[AuthGate] = web.AppKey("ecert_auth_gate", AuthGate)


async def authenticate(request: web.Request) -> Reader | None:
    """Who asks: a `Reader` (org id and role, ecert.access) or None for an anonymous request.

    Stable entry point for every handler (the API, the dashboard's `/v1/events` and login). The node's gate is
    `request.app[AUTH_GATE_KEY]` (node.auth); an app without one (a dashboard mounted alone in a test) treats
    every request as anonymous. Raises node.http.errors.HttpError: 401 `unauthenticated` for a bad or failing
    Authorization header (message and `extra` from request_auth.AuthError), a session token on a method other
    than GET / HEAD included; 429 `too_many_requests` or 503 `busy` at the nonce cache's caps; 413 for a body
    over the limit. The node's error middleware renders it; a handler outside the node's app uses
    node.http.errors.error_body. Idempotent per request, and the body it read stays on the request
    (node.http.body.read_body returns the same bytes)."""
    gate = request.app.get(AUTH_GATE_KEY)
    if gate is None:
        return None
    return await gate.authenticate(request)


def authenticated_org(request: web.Request) -> str | None:
    """The org the request proved it speaks for (signature or session), or None (anonymous or open reads)."""
    org_id: str | None = request.get(_ORG_KEY)
    return org_id


def set_session_cookie(response: web.StreamResponse, node_id: str, token: str,
                       ttl_ms: int = SESSION_TTL_MS) -> None:
    """The session cookie a browser sends back on its GET requests (and EventSource): HttpOnly, SameSite=Strict,
    named per node (request_auth.session_cookie)."""
    response.set_cookie(session_cookie(node_id), token, max_age=ttl_ms // 1000, path="/", httponly=True, samesite="Strict")


def clear_session_cookie(response: web.StreamResponse, node_id: str) -> None:
    response.del_cookie(session_cookie(node_id), path="/")


@web.middleware
async def access_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """ROUTE_ACCESS, before any handler: who may call the matched route at all; audit of authenticated calls."""
    resource = request.match_info.route.resource
    if resource is None:  # no route matched: the router's own 404 / 405
        return await handler(request)
    access = route_access(request.method, resource.canonical)
    if access is Access.PUBLIC:
        return await handler(request)
    gate = request.app[AUTH_GATE_KEY]
    status = 503
    try:
        reader = await gate.authenticate(request)
        if reader is None and access is not Access.ANYONE:
            raise HttpError(401, "unauthenticated", f"{resource.canonical} needs a signed request "
                                                    "(Authorization: ECERT-ED25519 ..., CONTRACT §6)")
        if access is Access.REGULATOR and reader is not None and reader.role != s.REGULATOR:
            raise HttpError(403, "forbidden", f"only the regulator may call {request.method} {resource.canonical}")
        response = await handler(request)
        status = response.status
        return response
    except HttpError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        gate.record(request, status)


def signed_reader(request: web.Request) -> Reader:
    """The reader of a SIGNED route's request (access_middleware has refused anonymous ones already)."""
    reader = request_reader(request)
    require(reader is not None, "a SIGNED route's handler ran without an authenticated reader")
    assert reader is not None
    return reader


def request_reader(request: web.Request) -> Reader | None:
    """The reader of an ANYONE route's request, as access_middleware found it (None: anonymous)."""
    reader: Reader | None = request.get(_READER_KEY)
    return reader
