"""The one client of the node HTTP API (CONTRACT §4; node/http/api.py is its server side), for the CLI, the demo,
the chaos workload and the benchmarks. (Not named http.py: run as a script, it would shadow the standard library's.)

- `Signer`: an org that signs transactions for one chain, with a fresh nonce per tx unless given a nonce source
  (`CounterNonces`: cheap and reproducible, for runs that sign thousands of txs).
- Answers: `decode_answer` (the JSON of a body), `error_code`, `ApiError` (a JSON error, CONTRACT §4).
- Transports over one request builder, `_Requests._headers`: `Client` (synchronous urllib, fails over between
  nodes: the CLI and the demo) and `AsyncClient` (aiohttp on the caller's session: chaos and benchmarks). Each
  request gets its headers there and nowhere else, so signing every request with the org key
  (`Authorization: ECERT-ED25519 ...`) is one change in one place.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ecert.tx import decode_envelope, envelope_to_json, make_tx, tx_id_of
from node.config import ClusterConfig
from node.keys import KeyFileError, KeyPair, load_or_create_key, org_key_path

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


def load_signer(cluster: ClusterConfig, org_id: str, *, create: bool = False,
                nonces: Callable[[], int | str] = fresh_nonce) -> Signer:
    """The org's signer from keys/<org>.key (created if missing when `create`). Raises KeyFileError."""
    path = org_key_path(cluster.keys_dir, org_id)
    if not create and not path.exists():
        raise KeyFileError(f"no key for {org_id!r}: {path} does not exist (run `ecert init`)")
    key, _ = load_or_create_key(path)
    return Signer(org_id=org_id, key=key, chain_id=cluster.chain_id, nonces=nonces)


# --- requests ------------------------------------------------------------------------------------------------------


def tx_path(wait: str = "commit", timeout_ms: int | None = None) -> str:
    """POST /v1/tx's path: wait = commit | none; the node's wait is capped at `timeout_ms` if given."""
    return f"/v1/tx?wait={wait}" if timeout_ms is None else f"/v1/tx?wait={wait}&timeout_ms={timeout_ms}"


def json_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def tx_json(envelope: bytes) -> bytes:
    """The JSON form of an envelope (payload and sig in base64), as the CLI prints it for curl."""
    return json_body(envelope_to_json(envelope))


class _Requests:
    """What both transports share: how a request's headers are made."""

    __slots__ = ()

    def _headers(self, base: str, method: str, path: str, body: bytes | None,
                 content_type: str = JSON) -> dict[str, str]:
        # The one place a header is added: request signing (`Authorization: ECERT-ED25519 ...`) goes here. It
        # signs for the node addressed, so the headers are made per node (`base`), also when failing over.
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        return headers


class Client(_Requests):
    """A synchronous client that fails over between the nodes it knows.

    Failing over is safe for submissions too: a tx id is applied at most once and a resubmission answers with the
    first outcome (CONTRACT §3).
    """

    __slots__ = ("timeout_s", "urls")

    def __init__(self, urls: Sequence[str], timeout_s: float = request_timeout_s_default) -> None:
        if not urls:
            raise Unreachable("no node URL: give --node URL or a cluster file with [[nodes]]")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = JSON) -> tuple[int, Any]:
        """(HTTP status, decoded JSON). Raises Unreachable if no node answers at all."""
        failures = []
        for i, base in enumerate(self.urls):
            req = urllib.request.Request(base + path, data=body, method=method,
                                         headers=self._headers(base, method, path, body, content_type))
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, raw = e.code, e.read()
            except (OSError, urllib.error.URLError) as e:
                failures.append(f"{base}: {getattr(e, 'reason', e)}")
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
            status, doc = self.request("POST", path, body)
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
    """Requests over aiohttp on the caller's session (one connection pool for a whole run). No retries, no state:
    each caller has its own policy (the chaos workload records every attempt; the benchmark counts refusals)."""

    __slots__ = ()

    async def request(self, session: aiohttp.ClientSession, base: str, method: str, path: str,
                      body: bytes | None = None, content_type: str = JSON,
                      timeout_s: float | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON). Raises aiohttp.ClientError, TimeoutError, or ValueError (not JSON).
        Without `timeout_s` the session's timeout applies."""
        headers = self._headers(base, method, path, body, content_type)
        if timeout_s is None:
            answer = session.request(method, base + path, data=body, headers=headers)
        else:
            answer = session.request(method, base + path, data=body, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=timeout_s))
        async with answer as resp:
            return resp.status, decode_answer(await resp.read())

    def post_tx(self, session: aiohttp.ClientSession, base: str, body: bytes, content_type: str = MSGPACK, *,
                wait: str = "commit", timeout_ms: int | None = None,
                timeout_s: float | None = None) -> Awaitable[tuple[int, Any]]:
        """POST /v1/tx: `body` is the envelope as signed (msgpack), or `tx_json(envelope)` with content type JSON."""
        return self.request(session, base, "POST", tx_path(wait, timeout_ms), body, content_type, timeout_s)
