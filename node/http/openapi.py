"""`GET /openapi.json`: an OpenAPI 3.1 description of the node's HTTP API (CONTRACT §4, §6 + extensions).

Exact enough for a schema-driven fuzzer (tests/node/test_schemathesis.py runs schemathesis with every check):

- the API's parameters are the typed definitions below (node/http/params.py), and node/http/api.py decodes
  requests with these same objects, so a bound, a pattern or a default here is the one the handler enforces;
- who may call each operation is read from node/http/auth_gate.py's ROUTE_ACCESS, the table the node enforces:
  each operation gets its `security` (a session token only reads, so only GET operations list it), the
  401 / 403 / 413 / 429 / 503 answers that follow from its access, and `x-ecert-access`
  (public | anyone | signed | regulator). tests/node/test_api_auth.py and tests/node/test_schemathesis.py check
  that every route the node serves is described here with the access it enforces, and nothing else is;
- every status an operation can answer is listed, with the media types of its body: the API's own answers are
  JSON, or msgpack when the request's Accept names it (node/http/api.py `reply`); the dashboard's are JSON.

`openapi_document(node_id)` names the node's session cookie (`ecert_session_<node_id>`) as it is.
"""

from __future__ import annotations

from typing import Any

from ecert.history import CURSOR_CHARS_MAX, HISTORY_CURSOR_PATTERN, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX
from ecert.membership import PROPOSALS_LIST_MAX
from ecert.portfolio import CERT_STATUSES, LIST_PAGE_DEFAULT, LIST_PAGE_MAX
from ecert.tx import ID_LEN_MAX, PAYLOAD_BYTES_MAX, SIG_BYTES
from ledger.block import BLOCK_TXS_MAX
from node.http.auth_gate import Access, route_access
from node.http.params import BoolParam, ChoiceParam, IdParam, IntParam, OptionalStrParam
from node.request_auth import session_cookie

HTTP_BLOCKS_PAGE_MAX = 100
"""Most block headers one `GET /v1/blocks` answers (node/http/api.py and the dashboard's fallback route serve
the same page). Not ledger.store.BLOCKS_PAGE_MAX, the store's own cap on StateStore.blocks()."""
HTTP_BLOCKS_PAGE_DEFAULT = 20
HTTP_BLOCKS_PAGE_TX_IDS_MAX = BLOCK_TXS_MAX
"""Most tx ids one `GET /v1/blocks?tx_ids=true` page lists: the page stops before the block that would take it
over (it always holds one block, so paging goes on), so it is never longer than the ids of one full block
(~670 KB of JSON), whatever `limit` says. Without tx ids a page is headers and counts: ~300 bytes a block."""
HEIGHT_MAX = 1 << 62
"""Highest block height (and proposal sequence number) a request may name: far above any real chain, and inside
every client's int64."""
WAIT_TIMEOUT_MS_DEFAULT = 10_000
WAIT_TIMEOUT_MS_MAX = 60_000
BATCH_TXS_MAX = 10_000
"""Most envelopes one `POST /v1/txs` carries."""

ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{ID_LEN_MAX - 1}}}"
"""An org, certificate, document, proposal or node id: ecert/tx.py's id rule (tests/node/test_schemathesis.py
checks they agree). A certificate's id is derived ("EC" and hex) but a tx names it by this rule."""
_B64_QUAD = "[A-Za-z0-9+/]{4}"
BASE64_PATTERN = f"(?:{_B64_QUAD})*(?:[A-Za-z0-9+/]{{2}}==|[A-Za-z0-9+/]{{3}}=)?"
"""Standard base64 with padding, as ecert.tx.envelope_from_json decodes it (base64.b64decode(validate=True))."""


def base64_chars(n_bytes: int) -> int:
    return 4 * -(-n_bytes // 3)

# -- the parameters (node/http/api.py reads requests with these) --------------------------------------------------

WAIT = ChoiceParam("wait", ("commit", "none"), "commit",
                   "commit: answer once the tx's block is applied on this node; none: once the leader queued it")
TIMEOUT = IntParam("timeout_ms", 1, WAIT_TIMEOUT_MS_MAX, WAIT_TIMEOUT_MS_DEFAULT,
                   description="how long `wait=commit` waits for the block (504 after)")
CONSISTENCY = ChoiceParam("consistency", ("local", "linearizable", "serializable"), "local",
                          "linearizable: confirm leadership with a quorum (ReadIndex) before reading; the reader's "
                          "rights are decided on the state after that. serializable is local")
BLOCKS_BEFORE = IntParam("before", 1, HEIGHT_MAX, description="headers below this height (default: from the top)")
BLOCKS_LIMIT = IntParam("limit", 1, HTTP_BLOCKS_PAGE_MAX, HTTP_BLOCKS_PAGE_DEFAULT,
                        description="most blocks in the page (fewer below the oldest block this node keeps, and "
                                    f"with tx_ids=true once the page holds {HTTP_BLOCKS_PAGE_TX_IDS_MAX} tx ids)")
BLOCKS_TX_IDS = BoolParam("tx_ids", False,
                          "true: each block also lists its `tx_ids` (page on with before = the lowest height "
                          "returned: such a page may stop short of `limit`); false: headers and `tx_count` only")
HEIGHT = IntParam("height", 0, HEIGHT_MAX, where="path")
PROPOSALS_BEFORE = IntParam("before", 0, HEIGHT_MAX, description="the seq to page below (`next_before`)")
PROPOSALS_LIMIT = IntParam("limit", 1, PROPOSALS_LIST_MAX, PROPOSALS_LIST_MAX)
TX_ID = IdParam("tx_id", "[0-9a-fA-F]{64}", code="bad_tx_id", what="a tx id: 64 hex characters")
CERT_ID = IdParam("id", ID_PATTERN, what="a certificate id")
ORG_ID = IdParam("id", ID_PATTERN, what="an org id")
DOC_ID = IdParam("id", ID_PATTERN, what="a document id")
PROPOSAL_ID = IdParam("id", ID_PATTERN, what="a proposal id")
BANK_ID = IdParam("bank", ID_PATTERN, what="an org id")
CORE_ID = IdParam("core", ID_PATTERN, what="an org id")
# The business queries of issue 14 (ecert/history.py, ecert/portfolio.py, ecert/risk.py).
CURSOR_PATTERN = f"[A-Za-z0-9._/-]{{1,{CURSOR_CHARS_MAX}}}"
HISTORY_CURSOR = OptionalStrParam("cursor", HISTORY_CURSOR_PATTERN, code="bad_cursor", what="a cursor a page handed back",
                                  description="the `next_cursor` of the previous page")
HISTORY_LIMIT = IntParam("limit", 1, HISTORY_PAGE_MAX, HISTORY_PAGE_DEFAULT)
LIST_CURSOR = OptionalStrParam("cursor", CURSOR_PATTERN, code="bad_cursor", what="a cursor a page handed back",
                               description="the `next_cursor` of the previous page, with the same filters")
LIST_LIMIT = IntParam("limit", 1, LIST_PAGE_MAX, LIST_PAGE_DEFAULT)
LIST_DEBTOR = OptionalStrParam("debtor", ID_PATTERN, code="bad_id", what="an org id",
                               description="certificates this core enterprise owes")
LIST_HOLDER = OptionalStrParam("holder", ID_PATTERN, code="bad_id", what="an org id",
                               description="certificates this org holds")
LIST_STATUS = OptionalStrParam("status", values=CERT_STATUSES, what="a certificate status")
MATURITY_FROM = IntParam("maturity_from", 0, HEIGHT_MAX, description="maturity at or after (ms since the epoch)")
MATURITY_TO = IntParam("maturity_to", 0, HEIGHT_MAX, description="maturity before (ms since the epoch)")

# Parameters of the dashboard's routes (node/http/dashboard.py and login.py decode them themselves).
_BLOCK_TXS_HEIGHT = {"name": "height", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1},
                     "description": "404 above this node's height"}
_STATIC_FILE = {"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}
_LOGIN_CODE = {"name": "code", "in": "query", "required": True, "schema": {"type": "string"},
               "description": "the one-time code of the link the node wrote to dashboard-login.url"}
_LAST_EVENT_ID = {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "a reconnecting stream's last block height: blocks above it are sent"}

# -- schemas ------------------------------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these properties, `required` always present. Other properties may be added later (a
    client ignores what it does not know), so none is forbidden."""
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


_STR: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_OBJECT: dict[str, Any] = {"type": "object"}
_STR_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
_INT_OR_NULL: dict[str, Any] = {"type": ["integer", "null"]}
_STRS: dict[str, Any] = {"type": "array", "items": _STR}
_TX_STATUSES = ["committed", "rejected", "accepted", "pending", "unknown", "refused"]

_CERT = _obj({k: t for k, t in (
    ("id", _STR), ("root_id", _STR), ("parent_id", _STR_OR_NULL), ("debtor", _STR), ("holder", _STR),
    ("amount", _INT), ("maturity", _INT), ("status", _STR), ("bank", _STR_OR_NULL), ("created_at", _INT),
    ("created_by", _STR), ("updated_at", _INT), ("children", _STRS),
    ("invoices", {"type": "array", "items": _obj({"doc_id": _STR, "amount": _INT})}),
    ("finance", {"type": ["object", "null"]}), ("settled_at", _INT_OR_NULL), ("paid_to", _STR_OR_NULL))},
    {"overdue": _BOOL})
_ORG_PUBLIC = {"id": _STR, "name": _STR, "role": _STR, "status": _STR, "sign_pk": _STR, "box_pk": _STR}
_MEMBER = _obj({"id": _STR, "org": _STR, "raft": _STR, "http": _STR, "node_pk": _STR, "status": _STR,
                "since": _INT, "proposal_id": _STR_OR_NULL})
_PROPOSAL = _obj({k: t for k, t in (
    ("id", _STR), ("seq", _INT), ("action", _STR), ("node_id", _STR), ("proposer", _STR), ("tx_id", _STR),
    ("created_at", _INT), ("expires_at", _INT), ("electorate", _STRS), ("needed", _INT), ("approved_by", _STRS),
    ("approvals", _INT), ("effective", _BOOL), ("status", _STR), ("closed_at", _INT_OR_NULL),
    ("closed_by", _STR_OR_NULL), ("node", {"type": ["object", "null"]}))}, {"org_approved": _BOOL})
_ALARM = _obj({"name": _STR, "severity": _STR, "subject": _STR, "message": _STR})
_SSE_EVENT = _obj({"event": {"type": "string", "enum": ["snapshot", "block"]},
                   "data": {"type": "string", "contentMediaType": "application/json"}}, {"id": _STR})
_HISTORY_ENTRY = _obj({"cursor": _STR, "height": _INT_OR_NULL, "index": _INT_OR_NULL, "tx_id": _STR_OR_NULL,
                       "type": _STR_OR_NULL, "signer": _STR_OR_NULL, "result": {"type": ["object", "null"]},
                       "redacted": _BOOL})
_RISK = _obj({"at": _INT, "advisory": {"const": True}, "complete": _BOOL,
              "figures": {"type": "array", "items": _obj({"name": _STR, "value": {}, "how": _STR,
                                                          "inputs": _OBJECT})}})
_BLOCK_PAGE = _obj({"height": _INT, "blocks": {"type": "array", "items": _ref("BlockHeader")}})
_BLOCK_HEADER = {"height": _INT, "prev_hash": _STR, "tx_root": _STR, "time": _INT, "proposer": _STR, "hash": _STR,
                 "tx_count": _INT}

_SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": _STR, "message": _STR})},
                  {"tx_id": _STR, "leader_id": _STR_OR_NULL, "string_to_sign": _STR}),
    "EnvelopeJson": {
        "type": "object", "additionalProperties": False, "required": ["payload", "signer", "sig"],
        "properties": {"payload": {"type": "string", "contentEncoding": "base64", "pattern": f"^{BASE64_PATTERN}$",
                                   "minLength": base64_chars(1), "maxLength": base64_chars(PAYLOAD_BYTES_MAX)},
                       "signer": {"type": "string", "pattern": f"^{ID_PATTERN}$"},
                       "sig": {"type": "string", "contentEncoding": "base64", "pattern": f"^{BASE64_PATTERN}$",
                               "minLength": base64_chars(SIG_BYTES), "maxLength": base64_chars(SIG_BYTES)}},
        "description": "the msgpack envelope's three fields, payload and sig base64 (standard alphabet, padded)"},
    "EnvelopeMsgpack": {
        "type": "object", "additionalProperties": False, "required": ["payload", "signer", "sig"],
        "properties": {"payload": {"type": "string", "format": "binary", "minLength": 1,
                                   "maxLength": PAYLOAD_BYTES_MAX},
                       "signer": {"type": "string", "pattern": f"^{ID_PATTERN}$"},
                       "sig": {"type": "string", "format": "binary", "minLength": SIG_BYTES, "maxLength": SIG_BYTES}},
        "description": "a msgpack map {payload: bin, signer: str, sig: bin}"},
    "TxAnswer": _obj({"tx_id": _STR, "status": {"type": "string", "enum": _TX_STATUSES}},
                     {"height": _INT, "result": _OBJECT, "error": _obj({"code": _STR, "message": _STR})}),
    "Status": _obj({k: t for k, t in (
        ("node_id", _STR), ("org", _STR), ("pid", _INT), ("chain_id", _STR), ("role", _STR), ("term", _INT),
        ("leader_id", _STR_OR_NULL), ("commit_index", _INT), ("applied_index", _INT), ("height", _INT),
        ("block_hash", _STR), ("state_root", _STR), ("voters", _STRS), ("learners", _STRS),
        ("snapshot_index", _INT), ("last_index", _INT), ("queue", _INT), ("apply_error", _STR_OR_NULL),
        ("started_ms", _INT), ("removed", _BOOL))}),
    "BlockHeader": _obj(_BLOCK_HEADER, {"tx_ids": _STRS}),
    "Block": _obj({**_BLOCK_HEADER, "tx_ids": _STRS}, {"txs": _STRS}),
    "Cert": _CERT,
}

# -- responses ----------------------------------------------------------------------------------------------------

_API_TYPES = ("application/json", "application/msgpack")
_JSON = ("application/json",)


def _resp(desc: str, schema: dict[str, Any] | None = None, types: tuple[str, ...] = _API_TYPES,
          headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {t: {"schema": schema} for t in types}
    if headers is not None:
        out["headers"] = headers
    return out


def _error(desc: str) -> dict[str, Any]:
    return _resp(desc, _ref("Error"))


def _text(desc: str, *types: str) -> dict[str, Any]:
    return {"description": desc, "content": {t: {"schema": {"type": "string"}} for t in types}}


_UNAVAILABLE = ("the node cannot answer now: removed from the cluster (`removed`; /v1/status and /v1/cluster* "
                "still answer), or `internal_error` (logged with its trace, never shown)")
_BODY_TIMEOUT = "body_timeout: the body stopped arriving (node/http/body.py BODY_IDLE_S)"
_CHALLENGE = {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                                   "description": "the schemes the node takes: ECERT-ED25519, Bearer"}}
_AUTH_ERRORS = {
    "401": _resp("unauthenticated: no, a malformed or a failing Authorization header (the message says which "
                 "check failed; for a bad signature, `string_to_sign` shows what the node verified)", _ref("Error"),
                 headers=_CHALLENGE),
    "400": _error("malformed_body / incomplete_body: a signed request's body (hashed into its signature) could "
                  "not be read whole"),
    "408": _error(_BODY_TIMEOUT),
    "413": _error("body_too_large: a signed request's body (hashed into its signature) over max_body_bytes"),
    "429": _error("too_many_requests: the org signed too many requests to this node within 30 s"),
    "503": _error("busy: the node holds its maximum of recent nonces; or " + _UNAVAILABLE),
}
_LINEARIZABLE_ERRORS = {
    "503": _error("`?consistency=linearizable` with no leader known (`no_leader`) or too many reads in flight "
                  "(`busy`); busy: the node holds its maximum of recent nonces; or " + _UNAVAILABLE),
    "504": _error("read_timeout: no quorum confirmed a linearizable read in time"),
}
_SIGNED: dict[str, list[str]] = {"ecertSigned": []}
_SESSIONS: list[dict[str, list[str]]] = [{"sessionBearer": []}, {"sessionCookie": []}]


def _security(access: Access, method: str) -> list[dict[str, list[str]]]:
    """The schemes that satisfy `access`; a session token (Bearer or cookie) only on a GET: it only reads."""
    if access is Access.PUBLIC:
        return []
    schemes = [_SIGNED, *(_SESSIONS if method == "get" else [])]
    return [{}, *schemes] if access is Access.ANYONE else schemes


def _op(method: str, path: str, summary: str, responses: dict[str, Any], *,
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        forbidden: str | None = None) -> dict[str, Any]:
    """One operation, with the security and refusals its ROUTE_ACCESS row implies."""
    access = route_access(method.upper(), path)
    out: dict[str, Any] = {"summary": summary, "parameters": params or [], "responses": dict(responses),
                           "security": _security(access, method), "x-ecert-access": access.value}
    if body is not None:
        out["requestBody"] = body
    if access is not Access.PUBLIC:
        for status, answer in _AUTH_ERRORS.items():
            out["responses"].setdefault(status, answer)
    out["responses"].setdefault("503", _error(_UNAVAILABLE))
    if access is Access.REGULATOR:
        forbidden = forbidden or "forbidden: only the regulator calls this route"
    if forbidden is not None:
        out["responses"]["403"] = _error(forbidden)
    return {method: out}


def _get(path: str, summary: str, ok: dict[str, Any] | None, params: list[dict[str, Any]] | None = None, *,
         types: tuple[str, ...] = _API_TYPES, bad: str | None = None, not_found: str | None = None,
         forbidden: str | None = None, linearizable: bool = False) -> dict[str, Any]:
    """A read: 200 with `ok` (in `types`), 400 where it takes parameters (`bad` says which), 404 `not_found`."""
    responses: dict[str, Any] = {"200": _resp("OK", ok, types)}
    if params or bad is not None:
        responses["400"] = _error(bad or "bad_parameter: a parameter out of its bounds, or not of its type")
    if not_found is not None:
        responses["404"] = _error(not_found)
    if linearizable:
        responses.update(_LINEARIZABLE_ERRORS)
    return _op("get", path, summary, responses, params=params, forbidden=forbidden)


def _read(path: str, summary: str, ok: dict[str, Any], ids: tuple[IdParam, ...], not_found: str | None,
          forbidden: str | None = None) -> dict[str, Any]:
    """A SIGNED read of state (ecert/access.py decides), linearizable on request."""
    return _get(path, summary, ok, [p.openapi() for p in ids] + [CONSISTENCY.openapi()],
                bad="bad_id: an id that cannot be one of its kind; bad_parameter: consistency", not_found=not_found,
                forbidden=forbidden, linearizable=True)


_HIDDEN = "unknown, or not visible to the reader: the same answer, so an id says nothing about what exists"
_SUBMIT_400 = ("malformed envelope or batch, bad signature, unknown signer or type, bad parameter, JSON nested "
               "too deep (`too_deep`), not JSON or not msgpack, a body that cannot be read whole "
               "(`malformed_body`, `incomplete_body`); `tx_id` names the tx where known")
_SUBMIT_503 = ("no leader known after holding the txs for up to two election timeouts, or the leader could not be "
               "reached (`leader_id` says which one if any); or "
               + _UNAVAILABLE)


def _envelope_body(json_schema: dict[str, Any], msgpack_schema: dict[str, Any], desc: str) -> dict[str, Any]:
    return {"required": True, "description": desc, "content": {
        "application/json": {"schema": json_schema}, "application/msgpack": {"schema": msgpack_schema}}}


def _paths() -> dict[str, Any]:
    tx = _ref("TxAnswer")
    batch = _obj({"results": {"type": "array", "items": tx}})
    submit_params = [WAIT.openapi(), TIMEOUT.openapi()]
    session = _obj({"token": _STR, "expires_at": _INT, "org": _STR})
    set_cookie = {"Set-Cookie": {"schema": _STR, "description": "the session cookie (HttpOnly, SameSite=Strict, "
                                                                "Path=/)"}}
    return {
        "/v1/tx": _op("post", "/v1/tx", "Submit one signed transaction envelope", {
            "200": _resp("committed or rejected by the rules, applied on this node (or seen before)", tx),
            "202": _resp("accepted (wait=none)", tx),
            "400": _error(_SUBMIT_400),
            "408": _error(_BODY_TIMEOUT),
            "413": _error("body_too_large: body over max_body_bytes"),
            "429": _error("queue_full: the leader's queue is full (`tx_id`)"),
            "503": _error(_SUBMIT_503),
            "504": _resp("timeout: not applied here in time, status unknown: poll GET /v1/tx/{tx_id}",
                         _obj({"tx_id": _STR, "status": {"const": "unknown"}, "error": _OBJECT})),
        }, params=submit_params, body=_envelope_body(
            _ref("EnvelopeJson"), _ref("EnvelopeMsgpack"),
            "the envelope as JSON, or msgpack (Content-Type application/msgpack, also x-msgpack and vnd.msgpack)")),
        "/v1/txs": _op("post", "/v1/txs", "Submit a batch of envelopes: one answer per tx, in order (a tx refused "
                       "at admission answers `refused` in place)", {
            "200": _resp("every tx committed, rejected, refused, or unknown at the deadline", batch),
            "202": _resp("wait=none: queued (accepted) or refused in place", batch),
            "400": _error(_SUBMIT_400 + "; an empty batch"),
            "408": _error(_BODY_TIMEOUT),
            "413": _error(f"body_too_large: body over its limit, or over {BATCH_TXS_MAX} txs "
                          "(`batch_too_large`)"),
            "429": _error("queue_full: the leader's queue cannot take the batch"),
            "503": _error(_SUBMIT_503),
        }, params=submit_params, body=_envelope_body(
            {"oneOf": [_obj({"txs": {"type": "array", "minItems": 1, "maxItems": BATCH_TXS_MAX,
                                     "items": _ref("EnvelopeJson")}}),
                       {"type": "array", "minItems": 1, "maxItems": BATCH_TXS_MAX, "items": _ref("EnvelopeJson")}]},
            {"type": "array", "minItems": 1, "maxItems": BATCH_TXS_MAX,
             "items": {"type": "string", "format": "binary"}},
            "JSON {\"txs\": [envelope, ...]} (or the bare array); msgpack: an array of envelope bins, or a map "
            "{\"txs\": array}")),
        "/v1/tx/{tx_id}": _get("/v1/tx/{tx_id}", "Status of a tx (unknown if never seen): tx_id, status and height "
                               "for anyone; the whole outcome for a reader who may read what it acted on, or "
                               "signed it", tx, [TX_ID.openapi()], bad="bad_tx_id: not 64 hex characters"),
        "/v1/session": _op("post", "/v1/session", "A read-only session for the signing org at this node (15 min), "
                           "also set as the session cookie; the body is empty", {
                               "200": _resp("the session", session, headers=set_cookie),
                               "401": _resp("unauthenticated: not a signed request (a session token "
                                            "cannot make a session)", _ref("Error"), headers=_CHALLENGE)}),
        "/v1/status": _get("/v1/status", "This node's Raft and chain status", _ref("Status")),
        "/v1/blocks": _get("/v1/blocks", "Block headers with their tx counts, newest first; their tx ids "
                           "with tx_ids=true", _BLOCK_PAGE,
                           [BLOCKS_BEFORE.openapi(), BLOCKS_LIMIT.openapi(), BLOCKS_TX_IDS.openapi()]),
        "/v1/blocks/{height}": _get("/v1/blocks/{height}", "A block header and its tx ids", _ref("Block"),
                                    [HEIGHT.openapi()], not_found="block_not_found: no block at that height here"),
        "/v1/blocks/{height}/txs": _get(
            "/v1/blocks/{height}/txs", "The txs of one block, each whole only where the reader may read its "
            "outcome", _obj({"height": _INT, "txs": {"type": "array", "items": _obj({"tx_id": _STR})}}),
            [_BLOCK_TXS_HEIGHT], types=_JSON, bad="bad_height: not an integer",
            not_found="block_not_found: no block at that height here"),
        "/v1/certs/{id}": _read("/v1/certs/{id}", "A certificate: for its debtor, the bank named at issue, the "
                                "regulator, and the orgs on its path", _ref("Cert"), (CERT_ID,), _HIDDEN),
        "/v1/certs/{id}/lineage": _read("/v1/certs/{id}/lineage", "A certificate's lineage: the part the reader "
                                        "may see (all of it for the debtor, the bank and the regulator)",
                                        _obj({"root_id": _STR, "certs": {"type": "array", "items": _ref("Cert")}}),
                                        (CERT_ID,), _HIDDEN),
        "/v1/certs": _get("/v1/certs", "Certificates by debtor, holder, status and maturity window, each one the "
                          "reader may read (ecert/portfolio.py: which index a page walks; a page reads at most "
                          "2000 certificates, so it may hold fewer than `limit` and still have a `next_cursor`)",
                          _obj({"certs": {"type": "array", "items": _ref("Cert")}, "index": _STR, "scanned": _INT,
                                "next_cursor": _STR_OR_NULL}),
                          [LIST_DEBTOR.openapi(), LIST_HOLDER.openapi(), LIST_STATUS.openapi(),
                           MATURITY_FROM.openapi(), MATURITY_TO.openapi(), LIST_CURSOR.openapi(),
                           LIST_LIMIT.openapi(), CONSISTENCY.openapi()],
                          bad="bad_id, bad_parameter, bad_cursor: a filter or cursor that cannot be one",
                          linearizable=True),
        "/v1/certs/{id}/history": _get(
            "/v1/certs/{id}/history", "Every tx that touched a certificate, oldest first (creation, each later tx, "
            "its spending): for whoever may read the certificate; a dispute's or recourse claim's entries in full "
            "only for their parties", _obj({"cert_id": _STR, "entries": {"type": "array", "items": _HISTORY_ENTRY},
                                           "next_cursor": _STR_OR_NULL}),
            [CERT_ID.openapi(), HISTORY_CURSOR.openapi(), HISTORY_LIMIT.openapi(), CONSISTENCY.openapi()],
            bad="bad_id, bad_parameter, bad_cursor", not_found=_HIDDEN, linearizable=True),
        "/v1/orgs/{id}/owed": _read("/v1/orgs/{id}/owed", "What an org is owed by debtors and sellers, and owes "
                                    "banks on recourse claims, at the last block time (ecert/settlement.py)",
                                    _obj({"org_id": _STR, "at": _INT, "from_debtors": _OBJECT,
                                          "from_sellers": _OBJECT, "owes_banks": _OBJECT}),
                                    (ORG_ID,), "org_not_found: unknown org",
                                    "forbidden: only the org itself and the regulator"),
        "/v1/risk/orgs/{id}": _read("/v1/risk/orgs/{id}", "An advisory risk summary of an org, each figure with "
                                    "its inputs (ecert/risk.py): for the regulator, the org itself and a bank it "
                                    "deals with", _RISK, (ORG_ID,), "org_not_found: unknown org",
                                    "forbidden: not the regulator, the org, or a bank with a financing record, a "
                                    "credit line or a finance request of the org"),
        "/v1/risk/certs/{id}": _read("/v1/risk/certs/{id}", "An advisory risk summary of a certificate (its "
                                     "debtor's settlement record, depth, disputes): for a bank that may read it and "
                                     "the regulator", _RISK, (CERT_ID,), _HIDDEN,
                                     "forbidden: only banks and the regulator"),
        "/v1/orgs/{id}": _read("/v1/orgs/{id}", "An organisation's public profile (the whole record for the org "
                               "itself and the regulator)", _obj(_ORG_PUBLIC, {
                                   "registered_at": _INT, "updated_at": _INT, "reason": _STR_OR_NULL}),
                               (ORG_ID,), "org_not_found: unknown org"),
        "/v1/orgs/{id}/certs": _read("/v1/orgs/{id}/certs", "An organisation's live certificates",
                                     _obj({"org_id": _STR, "certs": {"type": "array", "items": _ref("Cert")},
                                           "total": _INT}), (ORG_ID,), "org_not_found: unknown org",
                                     "forbidden: only the org itself and the regulator"),
        "/v1/docs/{id}": _read("/v1/docs/{id}", "A trade document: for its two parties, a bank it is sealed for, "
                               "the regulator", _obj({k: t for k, t in (
                                   ("id", _STR), ("kind", _STR), ("doc_hash", _STR), ("issuer", _STR),
                                   ("counterparty", _STR), ("amount", _INT), ("status", _STR),
                                   ("anchored_at", _INT), ("confirmed_at", _INT_OR_NULL), ("backed", _INT),
                                   ("ciphertext", {"type": "object", "additionalProperties": _STR}))}),
                               (DOC_ID,), _HIDDEN),
        "/v1/credit/{bank}/{core}": _read("/v1/credit/{bank}/{core}", "A bank's credit line to a core enterprise",
                                          _obj({k: _STR if k in ("bank", "core") else _INT for k in (
                                              "bank", "core", "limit", "used", "available", "expires_at",
                                              "granted_at")}),
                                          (BANK_ID, CORE_ID), "credit_line_not_found: no such credit line",
                                          "forbidden: only that bank, that core enterprise and the regulator"),
        "/v1/members": _get("/v1/members", "The node membership in state: every node record, the voting orgs",
                            _obj({"members": {"type": "array", "items": _MEMBER}, "voters": _STRS,
                                  "learners": _STRS, "voter_orgs": _STRS, "genesis_voters": _INT,
                                  "min_voters": _INT, "governed": _BOOL}),
                            [CONSISTENCY.openapi()], linearizable=True),
        "/v1/proposals": _get("/v1/proposals", "Membership proposals, newest first",
                              _obj({"proposals": {"type": "array", "items": _PROPOSAL}, "total": _INT,
                                    "next_before": _INT_OR_NULL}),
                              [PROPOSALS_BEFORE.openapi(), PROPOSALS_LIMIT.openapi(), CONSISTENCY.openapi()],
                              linearizable=True),
        "/v1/proposals/{id}": _read("/v1/proposals/{id}", "One membership proposal", _PROPOSAL, (PROPOSAL_ID,),
                                    "proposal_not_found: unknown proposal"),
        "/v1/cluster": _get("/v1/cluster", "This node's view of every node",
                            _obj({"chain_id": _STR, "leader_id": _STR_OR_NULL, "term": _INT,
                                  "nodes": {"type": "array", "items": _obj({"id": _STR, "self": _BOOL})}})),
        "/v1/cluster/view": _get("/v1/cluster/view", "The dashboard's cluster rows (health included)",
                                 _obj({"node_id": _STR, "leader_id": _STR_OR_NULL,
                                       "nodes": {"type": "array", "items": _obj({"id": _STR})}}), types=_JSON),
        "/v1/alarms": _get("/v1/alarms", "Active alarms: this node's and the leader's",
                           _obj({"node_id": _STR, "alarms": {"type": "array", "items": _ALARM},
                                 "leader_alarms": {"type": "array", "items": _OBJECT}}), types=_JSON),
        "/v1/events": _op("get", "/v1/events", "Server-sent events: status snapshots and block headers for "
                          "anyone; the tx outcomes the reader may read for a signed or session subscriber", {
                              "200": {"description": "the event stream (a signed subscriber's ends after a "
                                                     "while); each event's data is one JSON object",
                                      "content": {"text/event-stream": {"schema": _SSE_EVENT}}},
                              "429": _error("too_many_streams: the node serves its maximum of streams; or "
                                            "too_many_requests (signed requests)")},
                          params=[_LAST_EVENT_ID]),
        "/v1/dashboard/latest-cert": _get("/v1/dashboard/latest-cert", "The newest certificate the reader may see",
                                          _obj({"cert_id": _STR_OR_NULL, "height": _INT}), types=_JSON),
        "/v1/dashboard/whoami": _get("/v1/dashboard/whoami", "Who the dashboard is logged in as",
                                     _obj({"org_id": _STR_OR_NULL, "role": _STR_OR_NULL, "open_reads": _BOOL,
                                           "node_id": _STR}), types=_JSON),
        "/v1/supervision": _get("/v1/supervision", "The regulator's views (ecert/supervision.py)",
                                _obj({"height": _INT_OR_NULL}), types=_JSON),
        "/login": _op("get", "/login", "Spend a one-time dashboard login code: sets the session cookie", {
            "303": {"description": "logged in: the session cookie is set, on to the dashboard",
                    "headers": {"Location": {"schema": {"const": "/"}}, **set_cookie}},
            "401": _text("the code is used, unknown or expired (a page saying so)", "text/html")},
            params=[_LOGIN_CODE]),
        "/logout": _op("post", "/logout", "Drop the session cookie", {"204": {"description": "logged out"}}),
        "/metrics": _op("get", "/metrics", "Prometheus text format",
                        {"200": _text("the metrics", "text/plain")}),
        "/admin/members": _op("post", "/admin/members", "Membership is governance (member.propose / "
                              "member.approve transactions): every request is refused, its body unread",
                              {"403": _error("governance_required")}),
        "/openapi.json": _get("/openapi.json", "This document", _OBJECT, types=_JSON),
        "/": _op("get", "/", "The dashboard page", {"200": _text("the page", "text/html")}),
        "/static/{file}": _op("get", "/static/{file}", "The dashboard's static files", {
            "200": _text("the file", "text/javascript", "text/css", "text/html", "image/svg+xml", "image/png",
                         "image/x-icon", "application/json", "application/octet-stream"),
            "404": _resp("not_found: no such file", _ref("Error"), _JSON)}, params=[_STATIC_FILE]),
    }


API_DOCUMENT_VERSION = "4"
"""`info.version`: 4 since `GET /v1/blocks` pages are headers with tx counts (tx ids with `tx_ids=true`) and a node
over its connection cap answers 503 too_many_connections; 3 was issue 13's signed reads."""


def openapi_document(node_id: str | None = None) -> dict[str, Any]:
    """The document as the node `node_id` serves it (None: the session cookie's name left as a template)."""
    cookie = session_cookie(node_id) if node_id is not None else "ecert_session_<node_id>"
    return {
        "openapi": "3.1.0",
        "info": {"title": "ecert-chain node API", "version": API_DOCUMENT_VERSION,
                 "description": "Every error is {\"error\": {\"code\", \"message\"}}. JSON by default; "
                                "msgpack when Content-Type / Accept is application/msgpack. Reads are bounded "
                                "by who asks (CONTRACT §6): each operation's `security` and `x-ecert-access` "
                                "say who may call it; a route not described here answers the regulator only. "
                                "A method a path does not take answers 405 with Allow; an unknown path 404. "
                                "Any request may be answered 503 too_many_connections (Retry-After: 1, the "
                                "connection closed) while the node holds [cluster] http_connections_max "
                                "connections: that answer comes before routing."},
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "ecertSigned": {
                    "type": "apiKey", "in": "header", "name": "Authorization",
                    "description": 'ECERT-ED25519 org="<org_id>",ts="<ms>",nonce="<16-64 hex>",sig="<base64>": '
                                   "the org's Ed25519 signature over ecert-request/1, chain_id, node_id, org, "
                                   "METHOD, path with raw query, ts, nonce, hex sha256(body), joined by \\n"},
                "sessionBearer": {"type": "http", "scheme": "bearer",
                                  "description": "a token from POST /v1/session: GET and HEAD only"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": cookie,
                                  "description": "the same token as this node's cookie: GET and HEAD only"},
            },
            "schemas": _SCHEMAS,
        },
    }
