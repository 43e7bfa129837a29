"""The node's HTTP API (CONTRACT §4 plus the extensions in docs/INTERFACES.md), on aiohttp.

Bodies: JSON, or msgpack when Content-Type is application/msgpack (application/x-msgpack too). Answers: JSON,
or msgpack when the client's Accept names msgpack. Every error is `{"error": {"code", "message"}}` with a 4xx
for bad input; a middleware turns anything unexpected into a JSON 503 `internal_error` (logged with its trace,
never shown to the client).

Submissions (node/submission.py does the work; this module parses, calls it and renders): every node checks a
tx at admission (decode, signature, signer active: ecert.admission.precheck) so bad input is refused where it
arrives; the leader queues it for the next block, a follower forwards it to the leader over the peer transport
(node/forward.py). With `wait=commit` the answer comes only once the tx's block is applied on *this* node; if
that does not happen within `timeout_ms` (a leader change can lose an uncommitted block) the answer is 504
`{"status": "unknown", "tx_id"}` — the client polls `GET /v1/tx/{tx_id}`; never a false success.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgpack
from aiohttp import ClientSession, web

from consensus.errors import NotLeaderError, ProposalDroppedError
from consensus.invariant import InvariantViolation, require
from consensus.membership import ConfChange, ConfChangeType
from ecert import queries
from ecert.errors import TxRejected
from ecert.tx import envelope_from_json
from ledger.store import StateStore
from node import submission
from node.config import ClusterConfig, NodeSpec
from node.driver import RaftDriver
from node.faults import setup_admin_routes
from node.http.dashboard import setup_dashboard
from node.http.openapi import HTTP_BLOCKS_PAGE_MAX, openapi_document
from node.proposer import Proposer, outcome_answer
from node.source import NodeSource
from node.submission import (
    FORWARD_FAILED_STATUS,
    NotLeader,
    QueueFull,
    SubmissionError,
    SubmissionNode,
    TxRefused,
    Unroutable,
)

if TYPE_CHECKING:
    from node.faults import FaultRules
    from node.http.metrics import NodeMetrics

log = logging.getLogger("node.http.api")


class ApiNode(SubmissionNode, NodeSource, Protocol):
    """What the HTTP API reads of the node (node.server.Node implements it). `driver`, `proposer` and `http`
    are None only before Node.start() has built them, and the API is mounted after that."""

    @property
    def node_id(self) -> str: ...

    @property
    def spec(self) -> NodeSpec: ...

    @property
    def config(self) -> ClusterConfig: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def store(self) -> StateStore: ...

    @property
    def driver(self) -> RaftDriver | None: ...

    @property
    def http(self) -> ClientSession | None:
        """For the rare requests a follower passes to the leader's HTTP API (membership changes)."""
        ...

    @property
    def faults(self) -> FaultRules | None: ...

    @property
    def metrics(self) -> NodeMetrics | None: ...

    def leader_spec(self) -> NodeSpec | None: ...

    def block_json(self, height: int) -> dict[str, Any] | None: ...


NODE_KEY: web.AppKey[ApiNode] = web.AppKey("node")
WAIT_TIMEOUT_MS_DEFAULT = 10_000
WAIT_TIMEOUT_MS_MAX = 60_000
BATCH_TXS_MAX = 10_000
TX_ID_RE = re.compile(r"^[0-9a-f]{64}$")
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


SUBMISSION_STATUS: dict[type[SubmissionError], int] = {TxRefused: 400, NotLeader: 503, QueueFull: 429}
"""The status of each node/submission.py error (Unroutable carries the forwarding protocol's own)."""
require(all(SUBMISSION_STATUS[cls] == status for cls, status in FORWARD_FAILED_STATUS.items()),
        "a follower relays a leader's batch failure with the status the leader's own API would answer")


def submission_http_error(exc: SubmissionError) -> HttpError:
    """The HTTP answer to a submission error: its code and message, plus the tx or leader it is about."""
    if isinstance(exc, Unroutable):
        return HttpError(exc.status, exc.code, exc.message, leader_id=exc.leader_id)
    if isinstance(exc, NotLeader):
        return HttpError(SUBMISSION_STATUS[NotLeader], exc.code, exc.message, leader_id=exc.leader_id)
    if isinstance(exc, TxRefused | QueueFull):
        return HttpError(SUBMISSION_STATUS[type(exc)], exc.code, exc.message, tx_id=exc.tx_id)
    raise InvariantViolation(f"no HTTP answer for submission error {type(exc).__name__}")


# -- encoding -----------------------------------------------------------------------------------------------------


def wants_msgpack(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return any(t in accept for t in MSGPACK_TYPES)


def is_msgpack_body(request: web.Request) -> bool:
    return request.content_type in MSGPACK_TYPES


def reply(request: web.Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=msgpack.packb(body, use_bin_type=True), status=status,
                            content_type="application/msgpack", headers=headers)
    return web.Response(text=json.dumps(body, separators=(",", ":"), default=_json_default), status=status,
                        content_type="application/json", headers=headers)


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "body_too_large", f"body of {request.content_length} bytes over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(64 << 10)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "body_too_large", f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _q_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?\d{1,19}", raw):
        raise HttpError(400, "bad_parameter", f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not lo <= value <= hi:
        raise HttpError(400, "bad_parameter", f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _path_int(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not re.fullmatch(r"\d{1,19}", raw):
        raise HttpError(400, "bad_parameter", f"{name} must be a non-negative integer, got {raw[:40]!r}")
    return int(raw)


def _is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address((request.remote or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# -- middleware ---------------------------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as e:
        return reply(request, error_body(e.code, e.message, **e.extra), e.status)
    except SubmissionError as se:
        he = submission_http_error(se)
        return reply(request, error_body(he.code, he.message, **he.extra), he.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status, "bad_request")
        return reply(request, error_body(code, e.reason or code), e.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("handler_failed", extra={"path": request.path, "method": request.method})
        return reply(request, error_body("internal_error", "the node could not answer; see its log"), 503)


# -- tx submission ------------------------------------------------------------------------------------------------


def _node(request: web.Request) -> ApiNode:
    return request.app[NODE_KEY]


def _driver(node: ApiNode) -> RaftDriver:
    driver = node.driver
    if driver is None:
        raise InvariantViolation("HTTP API mounted before Node.start() built the driver")
    return driver


def _proposer(node: ApiNode) -> Proposer:
    proposer = node.proposer
    if proposer is None:
        raise InvariantViolation("HTTP API mounted before Node.start() built the proposer")
    return proposer


def parse_envelope(request: web.Request, body: bytes) -> bytes:
    """The raw msgpack envelope from a msgpack or JSON body (raises HttpError 400)."""

    if not body:
        raise HttpError(400, "empty_body", "the body must hold a transaction envelope")
    if is_msgpack_body(request):
        return body
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, "malformed_json", f"body is not JSON: {exc}") from None
    try:
        return envelope_from_json(obj)
    except TxRejected as exc:
        raise HttpError(400, exc.code, exc.message) from None


def parse_batch(request: web.Request, body: bytes) -> list[bytes]:

    if not body:
        raise HttpError(400, "empty_body", "the body must hold a list of envelopes")
    if is_msgpack_body(request):
        try:
            items = msgpack.unpackb(body, raw=False, strict_map_key=True)
        except Exception as exc:
            raise HttpError(400, "malformed_msgpack", f"body is not msgpack: {exc}") from None
        if isinstance(items, dict):
            items = items.get("txs")
        if not isinstance(items, list) or not all(isinstance(x, bytes) for x in items):
            raise HttpError(400, "malformed_batch", "msgpack batch must be an array of envelope bytes")
        raws = items
    else:
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(400, "malformed_json", f"body is not JSON: {exc}") from None
        if isinstance(obj, dict):
            obj = obj.get("txs")
        if not isinstance(obj, list):
            raise HttpError(400, "malformed_batch", "JSON batch must be {\"txs\": [envelope, ...]}")
        raws = []
        for i, item in enumerate(obj):
            try:
                raws.append(envelope_from_json(item))
            except TxRejected as exc:
                raise HttpError(400, exc.code, f"txs[{i}]: {exc.message}") from None
    if not raws:
        raise HttpError(400, "malformed_batch", "batch is empty")
    if len(raws) > BATCH_TXS_MAX:
        raise HttpError(413, "batch_too_large", f"at most {BATCH_TXS_MAX} txs per batch")
    return raws


def _wait_mode(request: web.Request) -> str:
    wait = request.query.get("wait", "commit")
    if wait not in ("commit", "none"):
        raise HttpError(400, "bad_parameter", "wait must be 'commit' or 'none'")
    return wait


async def post_tx(request: web.Request) -> web.Response:
    node = _node(request)
    wait = _wait_mode(request)
    timeout_ms = _q_int(request, "timeout_ms", WAIT_TIMEOUT_MS_DEFAULT, 1, WAIT_TIMEOUT_MS_MAX)
    raw = parse_envelope(request, await read_body(request, node.config.max_body_bytes))
    answer = await submission.submit(node, raw, timeout_ms / 1000 if wait == "commit" else None)
    if answer["status"] == submission.STATUS_ACCEPTED:
        return reply(request, answer, 202)
    if answer["status"] == submission.STATUS_UNKNOWN:
        tx_id = answer["tx_id"]
        return reply(request, {**answer, **error_body("timeout", f"not applied here within {timeout_ms} ms; "
                                                                  f"poll GET /v1/tx/{tx_id}")}, 504)
    return reply(request, answer, 200)


async def post_txs(request: web.Request) -> web.Response:
    """Batch submission: {"results": [answer per tx, in order]}; bad txs answer with their error in place."""
    node = _node(request)
    wait = _wait_mode(request)
    timeout_ms = _q_int(request, "timeout_ms", WAIT_TIMEOUT_MS_DEFAULT, 1, WAIT_TIMEOUT_MS_MAX)
    raws = parse_batch(request, await read_body(request, max(node.config.max_body_bytes,
                                                              node.config.block_max_bytes * 4)))
    results = await submission.submit_batch(node, raws, timeout_ms / 1000 if wait == "commit" else None)
    status = 202 if wait == "none" else 200
    return reply(request, {"results": results}, status)


async def get_tx(request: web.Request) -> web.Response:

    node = _node(request)
    tx_id = request.match_info["tx_id"].lower()
    if not TX_ID_RE.match(tx_id):
        raise HttpError(400, "bad_tx_id", "a tx id is 64 lowercase hex characters")
    record = node.store.tx_outcome(tx_id)
    if record is not None:
        return reply(request, outcome_answer(record))
    if tx_id in _proposer(node).pending:
        return reply(request, {"tx_id": tx_id, "status": "pending"})
    return reply(request, {"tx_id": tx_id, "status": "unknown"})


# -- reads --------------------------------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    return reply(request, _node(request).status())


async def get_block(request: web.Request) -> web.Response:
    node = _node(request)
    height = _path_int(request, "height")
    block = node.block_json(height)
    if block is None:
        raise HttpError(404, "block_not_found", f"no block at height {height} on this node "
                                                f"(height {node.store.height})")
    return reply(request, block)


async def get_blocks(request: web.Request) -> web.Response:
    node = _node(request)
    before = _q_int(request, "before", node.store.height + 1, 1, 1 << 62) if "before" in request.query else None
    limit = _q_int(request, "limit", 20, 1, HTTP_BLOCKS_PAGE_MAX)
    return reply(request, {"height": node.store.height, "blocks": node.recent_blocks(before, limit)})


async def _consistent(request: web.Request) -> None:
    """`?consistency=linearizable`: wait for a ReadIndex round (thesis §6.4) before reading local state."""

    mode = request.query.get("consistency", "local")
    if mode not in ("local", "linearizable", "serializable"):
        raise HttpError(400, "bad_parameter", "consistency must be 'linearizable' or 'local'")
    if mode != "linearizable":
        return
    node = _node(request)
    try:
        await _driver(node).read_barrier()
    except NotLeaderError:
        raise HttpError(503, "no_leader", "no leader known: a linearizable read is impossible now",
                       leader_id=None) from None
    except ProposalDroppedError as exc:
        raise HttpError(503, "busy", f"too many reads in flight: {exc}") from None
    except TimeoutError:
        raise HttpError(504, "read_timeout", "no quorum confirmed the read in time") from None


def _query_route(query: Callable[..., dict[str, Any] | None], what: str, *params: str,
                 timed: bool = False) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A read route over one ecert query; `timed` queries also get the block time (for the `overdue` flag)."""

    async def handler(request: web.Request) -> web.Response:
        await _consistent(request)
        node = _node(request)
        args = [request.match_info[p] for p in params]
        for a in args:
            if len(a) > 128:
                raise HttpError(400, "bad_id", "id too long")
        result = query(node.store, *args, now=node.store.last_time) if timed else query(node.store, *args)
        if result is None:
            raise HttpError(404, f"{what}_not_found", f"no {what} {'/'.join(args)!r}")
        return reply(request, result)

    handler.__name__ = query.__name__
    return handler


async def get_cluster(request: web.Request) -> web.Response:
    node = _node(request)
    status = node.status()
    rows = [{"id": node.node_id, "org": node.spec.org, "http": str(node.spec.http), "raft": str(node.spec.raft),
             "self": True, "role": status["role"], "voter": node.node_id in status["voters"],
             "learner": node.node_id in status["learners"], "reachable": True}]
    for p in node.peers():
        p = dict(p)
        p["self"] = False
        p["role"] = "leader" if p["id"] == status["leader_id"] else (
            "learner" if p["learner"] else ("removed" if p["removed"] else "follower"))
        rows.append(p)
    return reply(request, {"chain_id": node.chain_id, "leader_id": status["leader_id"], "term": status["term"],
                           "nodes": rows})


# -- membership ---------------------------------------------------------------------------------------------------


async def post_members(request: web.Request) -> web.Response:
    """{"action": "add_learner" | "promote" | "remove", "node_id"}; on the leader (a follower forwards)."""

    node = _node(request)
    if not _is_loopback(request):
        raise HttpError(403, "forbidden", "membership changes are accepted from loopback clients only")
    body = await read_body(request, 4096)
    try:
        doc = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "malformed_json", "body is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != {"action", "node_id"}:
        raise HttpError(400, "bad_request", 'body must be {"action": ..., "node_id": ...}')
    kinds = {"add_learner": ConfChangeType.ADD_LEARNER, "promote": ConfChangeType.ADD_VOTER,
             "add_voter": ConfChangeType.ADD_VOTER, "remove": ConfChangeType.REMOVE_NODE}
    action, target = doc["action"], doc["node_id"]
    if action not in kinds:
        raise HttpError(400, "bad_action", f"action must be one of {', '.join(kinds)}")
    if not isinstance(target, str) or node.config.find_node(target) is None:
        raise HttpError(404, "node_not_found", f"{target!r} is not a node of {node.config.path.name}")
    if not _proposer(node).is_leader:
        leader = node.leader_spec()
        if leader is None:
            raise HttpError(503, "no_leader", "no leader known", leader_id=None)
        if node.http is None:
            raise InvariantViolation("HTTP API mounted before Node.start() opened its client session")
        async with node.http.post(f"{leader.http_url}/admin/members", json=doc) as resp:
            return reply(request, await resp.json(content_type=None), resp.status)
    r = _driver(node)
    if action == "promote" and target not in r.core.learners and target not in r.core.voters:
        raise HttpError(409, "not_a_learner", f"{target} must be added as a learner first")
    try:
        index = r.propose_conf_change(ConfChange(kinds[action], target))
    except NotLeaderError:
        raise HttpError(503, "not_leader", "leadership moved; retry", leader_id=r.leader_id) from None
    except ProposalDroppedError as exc:
        raise HttpError(409, "conf_change_pending", f"another change is in progress: {exc}") from None
    if not await r.wait_applied(index, 10.0):
        raise HttpError(504, "timeout", "the change was proposed but not applied in time", index=index)
    return reply(request, {"action": action, "node_id": target, "index": index,
                           "voters": sorted(r.core.voters), "learners": sorted(r.core.learners)})


async def get_openapi(request: web.Request) -> web.Response:

    return web.json_response(openapi_document())


# -- the app ------------------------------------------------------------------------------------------------------


def build_app(node: ApiNode) -> web.Application:
    # The body limit is enforced by read_body (413 JSON); aiohttp's own limit is a backstop above it.
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=max(node.config.max_body_bytes, node.config.block_max_bytes) * 8)
    app[NODE_KEY] = node
    r = app.router
    r.add_post("/v1/tx", post_tx)
    r.add_post("/v1/txs", post_txs)
    r.add_get("/v1/tx/{tx_id}", get_tx)
    r.add_get("/v1/status", get_status)
    r.add_get("/v1/blocks", get_blocks)
    r.add_get("/v1/blocks/{height}", get_block)
    r.add_get("/v1/certs/{id}", _query_route(queries.get_cert, "cert", "id", timed=True))
    r.add_get("/v1/certs/{id}/lineage", _query_route(queries.get_lineage, "cert", "id", timed=True))
    r.add_get("/v1/orgs/{id}", _query_route(queries.get_org, "org", "id"))
    r.add_get("/v1/orgs/{id}/certs", _query_route(queries.get_holdings, "org", "id", timed=True))
    r.add_get("/v1/docs/{id}", _query_route(queries.get_trade_doc, "doc", "id"))
    r.add_get("/v1/credit/{bank}/{core}", _query_route(queries.get_credit_line, "credit_line", "bank", "core"))
    r.add_get("/v1/cluster", get_cluster)
    r.add_post("/admin/members", post_members)
    r.add_get("/openapi.json", get_openapi)
    if node.faults is not None:

        setup_admin_routes(app, node.faults)
    try:

        setup_dashboard(app, node, node.metrics, data_dir=node.data_dir)
    except Exception:
        log.exception("dashboard_unavailable")
        _fallback_routes(app, node)
    return app


def _fallback_routes(app: web.Application, node: ApiNode) -> None:
    """Minimal `/`, `/metrics`, `/v1/alarms` when the dashboard package cannot be mounted."""
    existing = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=f"<h1>ecert-chain node {node.node_id}</h1><pre>"
                                 f"{json.dumps(node.status(), indent=2)}</pre>", content_type="text/html")

    async def metrics(request: web.Request) -> web.Response:
        if node.metrics is None:
            return web.Response(text="", content_type="text/plain")
        body, ctype = node.metrics.render()
        return web.Response(body=body, headers={"Content-Type": ctype})

    async def alarms(request: web.Request) -> web.Response:
        return reply(request, {"node_id": node.node_id, "alarms": node.alarms()})

    for path, h in (("/", index), ("/metrics", metrics), ("/v1/alarms", alarms)):
        if ("GET", path) not in existing:
            app.router.add_get(path, h)
