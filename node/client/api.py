"""The one client of the node HTTP API (CONTRACT §4; node/http/api.py is its server side), for the CLI, the demo,
the chaos workload and the benchmarks. (Not named http.py: run as a script, it would shadow the standard library's.)

- `Signer`: an org that signs transactions for one chain, with a fresh nonce per tx unless given a nonce source
  (`CounterNonces`: cheap and reproducible, for runs that sign thousands of txs).
- Answers: `decode_answer` (the JSON of a body), `error_code`, `ApiError` (a JSON error, CONTRACT §4).
- Transports over one request builder, `_Requests._headers`: `Client` (synchronous urllib, fails over between
  nodes: the CLI and the demo) and `AsyncClient` (aiohttp on the caller's session: chaos and benchmarks). Each
  request gets its headers there and nowhere else.
- Signed requests (CONTRACT §6): a transport given a `Signer` signs every request with the org key
  (`Authorization: ECERT-ED25519 ...`, node/request_auth.py), fresh nonce, ts = now. The signature binds the id of
  the node addressed: a transport knows it per base URL from the cluster file's [[nodes]] (`node_ids_of`), else
  asks the node once (`GET /v1/status`, public, unsigned) and keeps the answer. Without a signer a request goes
  anonymous. Tx submissions are never signed: the envelope is its own signature, and a header per tx would cost
  an Ed25519 signature and a nonce-cache slot at the node for nothing.
- HTTPS (`HttpsTrust`): an https:// node is verified, certificate and host name, against its `https_ca` from the
  cluster file plus any CA file the user gives (--cacert, $ECERT_CACERT), else against the system store. There is
  no switch to turn verification off. The request signature covers method, path and body, not the scheme, so
  signing is the same over HTTP and HTTPS.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ecert.tx import decode_envelope, envelope_to_json, make_tx, tx_id_of
from node import request_auth
from node.config import ClusterConfig, NodeSpec
from node.keys import KeyFileError, KeyPair, load_or_create_key, org_key_path
from node.tls import TlsError, https_client_context

JSON = "application/json"
MSGPACK = "application/msgpack"
ANSWER_EXCERPT_CHARS_MAX = 200
request_timeout_s_default = 30.0
no_leader_retry_s = 10.0
busy_pause_s = 0.2


class ApiError(Exception):
    """The node answered with a JSON error (CONTRACT §4)."""

    def __init__(self, status: int, code: str, message: str, doc: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.doc = status, code, message, doc or {}


class Unreachable(Exception):
    """No node answered at all (refused, timed out, unknown host), or no node was given."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- answers -------------------------------------------------------------------------------------------------------


def decode_answer(raw: bytes) -> Any:
    """The JSON document of an answer's body, None if empty; raises ValueError if it is not JSON."""
    return json.loads(raw) if raw.strip() else None


def error_code(doc: Any) -> str | None:
    """The error code of an answer (`{"error": {"code": ...}}`, or a bare `{"error": "code"}`), if any."""
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return None if code is None else str(code)
    return error if isinstance(error, str) else None


def api_error(status: int, doc: Any) -> ApiError:
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return ApiError(status, str(error.get("code", "error")), str(error.get("message", "")), doc)
    excerpt = json.dumps(doc)[:ANSWER_EXCERPT_CHARS_MAX] if doc is not None else ""
    return ApiError(status, f"http_{status}", excerpt, None)


# --- signing -------------------------------------------------------------------------------------------------------


def fresh_nonce() -> str:
    """Never reused by a signer: nanosecond clock plus 48 random bits (two processes may share a clock tick)."""
    return f"{time.time_ns():x}-{secrets.token_hex(6)}"


@dataclass(slots=True)
class CounterNonces:
    """`<prefix>-1`, `<prefix>-2`, ...: never reused as long as no other run of the signer uses the prefix."""

    prefix: str
    issued: int = 0

    def __call__(self) -> str:
        self.issued += 1
        return f"{self.prefix}-{self.issued}"


def envelope_tx_id(envelope: bytes) -> str:
    return tx_id_of(decode_envelope(envelope).payload)


@dataclass(frozen=True, slots=True)
class Signer:
    """An org able to sign transactions for one chain."""

    org_id: str
    key: KeyPair
    chain_id: str
    nonces: Callable[[], int | str] = fresh_nonce
    """Where a tx's nonce comes from when `sign` is not given one."""

    def sign(self, kind: str, body: Mapping[str, object], nonce: int | str | None = None) -> bytes:
        """Envelope bytes (CONTRACT §3) for one transaction."""
        return make_tx(self.key.seed, self.chain_id, kind, self.org_id, self.nonces() if nonce is None else nonce,
                       body)

    def signed(self, kind: str, body: Mapping[str, object], nonce: int | str | None = None) -> tuple[str, bytes]:
        """(tx id, envelope bytes): for callers that follow the tx by its id."""
        envelope = self.sign(kind, body, nonce)
        return envelope_tx_id(envelope), envelope

    def request_header(self, node_id: str, method: str, path_qs: str, body: bytes = b"", *,
                       ts_ms: int | None = None, nonce: str | None = None) -> str:
        """The Authorization value of one request to node `node_id` (CONTRACT §6): single use (fresh nonce) and
        good for CLOCK_SKEW_MS_MAX around `ts_ms` (default now). `path_qs` exactly as it goes on the wire."""
        return request_auth.sign_request(self.key.seed, self.chain_id, node_id, self.org_id, method, path_qs, body,
                                         now_ms() if ts_ms is None else ts_ms,
                                         request_auth.fresh_nonce() if nonce is None else nonce)


def load_signer(cluster: ClusterConfig, org_id: str, *, create: bool = False,
                nonces: Callable[[], int | str] = fresh_nonce) -> Signer:
    """The org's signer from keys/<org>.key (created if missing when `create`). Raises KeyFileError."""
    path = org_key_path(cluster.keys_dir, org_id)
    if not create and not path.exists():
        local = all(n.http.is_loopback and n.raft.is_loopback for n in cluster.nodes)
        # On a real host only that host's org has a key (node/custody.py): another org's cannot be made here.
        hint = ("run `ecert init` (the local demo makes every org's key)" if local else
                f"each org's key lives on its own host: on {org_id}'s, `ecert keygen --org {org_id} ...` made it")
        raise KeyFileError(f"no key for {org_id!r}: {path} does not exist ({hint})")
    key, _ = load_or_create_key(path)
    return Signer(org_id=org_id, key=key, chain_id=cluster.chain_id, nonces=nonces)


# --- HTTPS ---------------------------------------------------------------------------------------------------------


CACERT_ENV = "ECERT_CACERT"
"""A PEM file of CA certificates the CLI trusts for every node's HTTPS listener (as --cacert does)."""


class HttpsTrustError(ValueError):
    """A CA file to verify nodes with is missing or is not PEM certificates; the message names it."""


def _verifying_context(cafiles: Sequence[tuple[str, Path]]) -> ssl.SSLContext:
    """node/tls.py `https_client_context` (the one the dashboard's peer probe uses too), its error as ours."""
    try:
        return https_client_context(cafiles)
    except TlsError as exc:
        raise HttpsTrustError(str(exc)) from None


class HttpsTrust:
    """What a client accepts from each node's HTTPS listener (module docstring). Contexts are built once per
    base URL; an http:// URL gets none."""

    __slots__ = ("_contexts", "cafile", "node_cas")

    def __init__(self, cafile: str | Path | None = None, node_cas: Mapping[str, Path] | None = None) -> None:
        self.cafile = Path(cafile) if cafile else None
        """Trusted for every node (--cacert / $ECERT_CACERT)."""
        self.node_cas: dict[str, Path] = {base.rstrip("/"): ca for base, ca in (node_cas or {}).items()}
        """Base URL -> that node's https_ca (the cluster file)."""
        self._contexts: dict[str, ssl.SSLContext] = {}
        if self.cafile is not None:  # a wrong --cacert is a usage error now, not a failed request later
            _verifying_context([("--cacert", self.cafile)])

    @classmethod
    def of_cluster(cls, cluster: ClusterConfig | None, cafile: str | Path | None = None) -> HttpsTrust:
        nodes: Sequence[NodeSpec] = cluster.nodes if cluster is not None else ()
        return cls(cafile, {n.http_url: n.https_ca for n in nodes if n.https_ca is not None})

    def context(self, base: str) -> ssl.SSLContext | None:
        """The verifying context for `base` (https://...), None for http://. Raises HttpsTrustError."""
        base = base.rstrip("/")
        if not base.lower().startswith("https://"):
            return None
        ctx = self._contexts.get(base)
        if ctx is None:
            cafiles = [(f"https_ca of {base}", ca) for ca in (self.node_cas.get(base),) if ca is not None]
            cafiles += [("--cacert", self.cafile)] if self.cafile is not None else []
            ctx = self._contexts[base] = _verifying_context(cafiles)
        return ctx


def tls_failure(base: str, exc: BaseException) -> str | None:
    """A clear line for a refused certificate (the usual cause: a self-signed one nobody said to trust), else
    None."""
    cause = getattr(exc, "reason", exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (f"{base}: TLS certificate verify failed ({cause.verify_message}): trust its CA with https_ca for "
                f"this node in the cluster file, or --cacert FILE / ${CACERT_ENV}")
    return None


# --- requests ------------------------------------------------------------------------------------------------------


def tx_path(wait: str = "commit", timeout_ms: int | None = None) -> str:
    """POST /v1/tx's path: wait = commit | none; the node's wait is capped at `timeout_ms` if given."""
    return f"/v1/tx?wait={wait}" if timeout_ms is None else f"/v1/tx?wait={wait}&timeout_ms={timeout_ms}"


def json_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def tx_json(envelope: bytes) -> bytes:
    """The JSON form of an envelope (payload and sig in base64), as the CLI prints it for curl."""
    return json_body(envelope_to_json(envelope))


def node_ids_of(cluster: ClusterConfig) -> dict[str, str]:
    """Base URL -> node id, from the cluster file's [[nodes]]: what a signed request to that URL binds."""
    return {n.http_url: n.id for n in cluster.nodes}


def node_id_in(status: int, doc: Any) -> str:
    """The `node_id` of a `GET /v1/status` answer; ValueError if the answer has none."""
    node_id = doc.get("node_id") if status == 200 and isinstance(doc, dict) else None
    if not isinstance(node_id, str) or not node_id:
        raise ValueError(f"GET /v1/status answered HTTP {status} without a node_id: cannot sign for this node")
    return node_id


class _Requests:
    """What both transports share: who signs, which node is at which URL, and how a request's headers are made."""

    __slots__ = ("node_ids", "signer", "trust")

    def __init__(self, signer: Signer | None = None, node_ids: Mapping[str, str] | None = None,
                 trust: HttpsTrust | None = None) -> None:
        self.signer = signer
        """The org every request (except a tx submission) is signed for; None: anonymous."""
        self.node_ids: dict[str, str] = {base.rstrip("/"): node_id for base, node_id in (node_ids or {}).items()}
        """Base URL -> node id: given (the cluster file), or learned from the node's own /v1/status."""
        self.trust = trust if trust is not None else HttpsTrust()
        """How https:// nodes are verified (default: the system store)."""

    def _must_learn(self, base: str, signed: bool) -> bool:
        return signed and self.signer is not None and base.rstrip("/") not in self.node_ids

    def _headers(self, base: str, method: str, path: str, body: bytes | None,
                 content_type: str = JSON, signed: bool = True) -> dict[str, str]:
        # The one place a header is added. A signature binds the node addressed, so headers are made per node
        # (`base`), also when failing over; the caller has made sure its node id is known (`_must_learn`).
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        if signed and self.signer is not None:
            headers["Authorization"] = self.signer.request_header(self.node_ids[base.rstrip("/")], method, path,
                                                                  body or b"")
        return headers


class Client(_Requests):
    """A synchronous client that fails over between the nodes it knows.

    Failing over is safe for submissions too: a tx id is applied at most once and a resubmission answers with the
    first outcome (CONTRACT §3).
    """

    __slots__ = ("timeout_s", "urls")

    def __init__(self, urls: Sequence[str], timeout_s: float = request_timeout_s_default,
                 signer: Signer | None = None, node_ids: Mapping[str, str] | None = None,
                 trust: HttpsTrust | None = None) -> None:
        if not urls:
            raise Unreachable("no node URL: give --node URL or a cluster file with [[nodes]]")
        super().__init__(signer, node_ids, trust)
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout_s = timeout_s

    def speaking_for(self, signer: Signer | None) -> Client:
        """The same nodes (and what is known of them), requests signed for another org (None: anonymous)."""
        other = Client(self.urls, self.timeout_s, signer, trust=self.trust)
        other.node_ids = self.node_ids  # shared: a node id learned by one is known to both
        return other

    def _send(self, base: str, req: urllib.request.Request) -> tuple[int, bytes]:
        context = self.trust.context(base)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _learn_node_id(self, base: str) -> None:
        status, raw = self._send(base, urllib.request.Request(base + "/v1/status", headers={"Accept": JSON}))
        self.node_ids[base] = node_id_in(status, decode_answer(raw))

    def node_id_at(self, base: str) -> str:
        """The id of the node at `base` (known, or asked once). Raises OSError if it does not answer, ValueError
        if its answer names no node."""
        base = base.rstrip("/")
        if base not in self.node_ids:
            self._learn_node_id(base)
        return self.node_ids[base]

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = JSON, *, signed: bool = True) -> tuple[int, Any]:
        """(HTTP status, decoded JSON). Raises Unreachable if no node answers at all. `signed=False` sends it
        anonymous even with a signer (a tx submission)."""
        failures = []
        for i, base in enumerate(self.urls):
            try:
                if self._must_learn(base, signed):
                    self._learn_node_id(base)
                req = urllib.request.Request(base + path, data=body, method=method,
                                             headers=self._headers(base, method, path, body, content_type, signed))
                status, raw = self._send(base, req)
            except (OSError, urllib.error.URLError) as e:
                failures.append(tls_failure(base, e) or f"{base}: {getattr(e, 'reason', e)}")
                continue
            except HttpsTrustError as e:  # a CA file of the cluster file is missing: say so, try the next node
                failures.append(f"{base}: {e}")
                continue
            except ValueError as e:  # the node's status had no node id (not JSON, or not one of ours)
                failures.append(f"{base}: {e}")
                continue
            if i:
                # Remember the node that answered so the next request goes there first.
                self.urls.insert(0, self.urls.pop(i))
            try:
                return status, decode_answer(raw)
            except ValueError:
                excerpt = raw[:ANSWER_EXCERPT_CHARS_MAX].decode(errors="replace")
                return status, {"error": {"code": "bad_response", "message": excerpt}}
        raise Unreachable("no node answered: " + "; ".join(failures))

    def get(self, path: str) -> Any:
        status, doc = self.request("GET", path)
        if status >= 400:
            raise api_error(status, doc)
        return doc

    def submit(self, envelope: bytes, wait: bool = True) -> dict[str, Any]:
        """POST /v1/tx; retries while no leader is known; polls the tx id after a 504."""
        body = tx_json(envelope)
        tx_id = envelope_tx_id(envelope)
        path = tx_path("commit" if wait else "none")
        deadline = time.monotonic() + max(self.timeout_s, no_leader_retry_s)
        while True:
            status, doc = self.request("POST", path, body, signed=False)  # the envelope is its own signature
            if status in (429, 503) and time.monotonic() < deadline:
                time.sleep(busy_pause_s)  # an election is under way, or the leader's queue is full: back off
                continue
            if status == 504 or (isinstance(doc, dict) and doc.get("status") == "unknown"):
                return self.poll_tx(tx_id, deadline)
            if not isinstance(doc, dict) or (status >= 400 and doc.get("status") != "rejected"):
                raise api_error(status, doc)
            return doc

    def poll_tx(self, tx_id: str, deadline: float) -> dict[str, Any]:
        while True:
            with contextlib.suppress(ApiError):
                doc = self.get(f"/v1/tx/{tx_id}")
                if isinstance(doc, dict) and doc.get("status") in ("committed", "rejected"):
                    return doc
            if time.monotonic() >= deadline:
                return {"tx_id": tx_id, "status": "unknown"}
            time.sleep(busy_pause_s)


class AsyncClient(_Requests):
    """Requests over aiohttp on the caller's session (one connection pool for a whole run). No retries: each
    caller has its own policy (the chaos workload records every attempt; the benchmark counts refusals). The only
    state is what `_Requests` holds: the signer and the node ids learned."""

    __slots__ = ()

    async def request(self, session: aiohttp.ClientSession, base: str, method: str, path: str,
                      body: bytes | None = None, content_type: str = JSON,
                      timeout_s: float | None = None, *, signed: bool = True) -> tuple[int, Any]:
        """(HTTP status, decoded JSON). Raises aiohttp.ClientError, TimeoutError, or ValueError (not JSON, or no
        node id to sign for). Without `timeout_s` the session's timeout applies."""
        if self._must_learn(base, signed):
            self.node_ids[base.rstrip("/")] = node_id_in(
                *await self.request(session, base, "GET", "/v1/status", timeout_s=timeout_s, signed=False))
        headers = self._headers(base, method, path, body, content_type, signed)
        # encoded=True: the path goes out byte for byte as given, which is what the signature covers.
        url = URL(base + path, encoded=True)
        context = self.trust.context(base)
        tls: ssl.SSLContext | bool = context if context is not None else True  # True: aiohttp's verifying default
        if timeout_s is None:
            answer = session.request(method, url, data=body, headers=headers, ssl=tls)
        else:
            answer = session.request(method, url, data=body, headers=headers, ssl=tls,
                                     timeout=aiohttp.ClientTimeout(total=timeout_s))
        async with answer as resp:
            return resp.status, decode_answer(await resp.read())

    def post_tx(self, session: aiohttp.ClientSession, base: str, body: bytes, content_type: str = MSGPACK, *,
                wait: str = "commit", timeout_ms: int | None = None,
                timeout_s: float | None = None) -> Awaitable[tuple[int, Any]]:
        """POST /v1/tx: `body` is the envelope as signed (msgpack), or `tx_json(envelope)` with content type JSON.
        Never signed (the envelope is its own signature): no per-request cost beyond the send."""
        return self.request(session, base, "POST", tx_path(wait, timeout_ms), body, content_type, timeout_s,
                            signed=False)
