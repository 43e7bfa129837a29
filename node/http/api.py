"""The node's HTTP API (CONTRACT §4 plus the extensions in docs/INTERFACES.md), on aiohttp.

Bodies: JSON, or msgpack when Content-Type is application/msgpack (application/x-msgpack too). Answers: JSON,
or msgpack when the client's Accept names msgpack. Every error is `{"error": {"code", "message"}}` with a 4xx
for bad input; a middleware turns anything unexpected into a JSON 503 `internal_error` (logged with its trace,
never shown to the client). Query and path parameters are read with the typed definitions of node/http/openapi.py
(node/http/params.py), the ones `GET /openapi.json` describes: a bad one is a 400 before any handler logic, and an
id that cannot be one of its kind (ecert's id rule) is a 400 `bad_id`, not a 404 (it says nothing about what
exists either way).

Submissions (node/submission.py does the work; this module parses, calls it and renders): every node checks a
tx at admission (decode, signature, signer active: ecert.admission.precheck) so bad input is refused where it
arrives; the leader queues it for the next block, a follower forwards it to the leader over the peer transport
(node/forward.py). With `wait=commit` the answer comes only once the tx's block is applied on *this* node; if
that does not happen within `timeout_ms` (a leader change can lose an uncommitted block) the answer is 504
`{"status": "unknown", "tx_id"}` — the client polls `GET /v1/tx/{tx_id}`; never a false success.

Reads are bounded by who asks (CONTRACT §6): node/http/auth_gate.py decides before any handler runs whether the
route may be called at all (ROUTE_ACCESS) and who the reader is; the handlers here apply each resource's rule
from ecert/access.py on the state they read (after the ReadIndex round of `?consistency=linearizable`, so a
decision is taken on the fresh state). A resource a reader may not see answers exactly like an unknown one (404)
where its existence is private (certificates, documents), 403 where it is public (holdings, credit lines).
Membership is governance: `POST /admin/members` answers 403 `governance_required`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgpack
from aiohttp import web

from consensus.errors import NotLeaderError, ProposalDroppedError
from consensus.invariant import InvariantViolation, require
from ecert import access, governance, history, portfolio, queries, risk, settlement
from ecert import state as ecert_state
from ecert.access import Reader, TxFacts
from ecert.errors import TxRejected
from ecert.tx import TX_BYTES_MAX, envelope_from_json
from ledger.executor import TxRecord
from ledger.store import StateStore
from node import submission
from node.config import ClusterConfig, NodeSpec
from node.driver import RaftDriver
from node.faults import setup_admin_routes
from node.http.auth_gate import (
    AUTH_GATE_KEY,
    AuthGate,
    access_middleware,
    authenticated_org,
    request_reader,
    set_session_cookie,
    signed_reader,
)
from node.http.body import parse_json, read_body, unpack_msgpack
from node.http.dashboard import setup_dashboard
from node.http.errors import HttpError, error_body
from node.http.openapi import (
    BANK_ID,
    BATCH_TXS_MAX,
    BLOCKS_BEFORE,
    BLOCKS_LIMIT,
    BLOCKS_TX_IDS,
    CERT_ID,
    CONSISTENCY,
    CORE_ID,
    DOC_ID,
    HEIGHT,
    HISTORY_CURSOR,
    HISTORY_LIMIT,
    LIST_CURSOR,
    LIST_DEBTOR,
    LIST_HOLDER,
    LIST_LIMIT,
    LIST_STATUS,
    MATURITY_FROM,
    MATURITY_TO,
    ORG_ID,
    PROPOSAL_ID,
    PROPOSALS_BEFORE,
    PROPOSALS_LIMIT,
    TIMEOUT,
    TX_ID,
    WAIT,
    openapi_document,
)
from node.http.params import IdParam
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
    """What the HTTP API reads of the node (node.server.Node implements it). `driver`, `proposer` and `auth`
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
    def auth(self) -> AuthGate | None:
        """Who asks (node/http/auth_gate.py); None only before Node.start() has built it."""
        ...

    @property
    def faults(self) -> FaultRules | None: ...

    @property
    def metrics(self) -> NodeMetrics | None: ...

    def block_json(self, height: int) -> dict[str, Any] | None: ...


NODE_KEY: web.AppKey[ApiNode] = web.AppKey("node")
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
BATCH_KEY_CHARS_MAX = 8  # the one map key a msgpack batch may carry: "txs"
TX_FIELDS_ANONYMOUS = ("tx_id", "status", "height")
"""What `GET /v1/tx/{id}` tells a reader who may not read the outcome (CONTRACT §6)."""
AUTH_CHALLENGE = "ECERT-ED25519, Bearer"
"""The schemes a 401 names in its WWW-Authenticate (the dashboard's own 401s say the same)."""
SESSION_BODY_BYTES_MAX = 4096
"""A `POST /v1/session` body is signed but carries nothing: a small cap."""


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
        return web.Response(body=msgpack.packb(body, use_bin_type=True, default=_msgpack_default), status=status,
                            content_type="application/msgpack", headers=headers)
    return web.Response(text=json.dumps(body, separators=(",", ":"), default=_json_default), status=status,
                        content_type="application/json", headers=headers)


def _msgpack_default(o: Any) -> Any:
    """What msgpack cannot pack natively, as the JSON form gives it (a set answers the same in both)."""
    if isinstance(o, set | frozenset):
        return list(o)
    raise TypeError(f"not msgpack serialisable: {type(o).__name__}")


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- middleware ---------------------------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as e:
        challenge = {"WWW-Authenticate": AUTH_CHALLENGE} if e.status == 401 else None  # RFC 9110 §11.6.1
        return reply(request, error_body(e.code, e.message, **e.extra), e.status, headers=challenge)
    except SubmissionError as se:
        he = submission_http_error(se)
        return reply(request, error_body(he.code, he.message, **he.extra), he.status)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status, "bad_request")
        allow = e.headers.get("Allow")  # a 405 names the methods the path takes (RFC 9110 §15.5.6)
        return reply(request, error_body(code, e.reason or code), e.status,
                     headers={"Allow": allow} if allow is not None else None)
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
        return body  # decoded with every length capped at admission (ecert.tx.decode_envelope)
    obj = parse_json(body)
    try:
        return envelope_from_json(obj)
    except TxRejected as exc:
        raise HttpError(400, exc.code, exc.message) from None


def parse_batch(request: web.Request, body: bytes) -> list[bytes]:

    if not body:
        raise HttpError(400, "empty_body", "the body must hold a list of envelopes")
    if is_msgpack_body(request):
        items = unpack_msgpack(body, array_len_max=BATCH_TXS_MAX, map_len_max=1, str_len_max=BATCH_KEY_CHARS_MAX,
                               bin_len_max=TX_BYTES_MAX)
        if isinstance(items, dict):
            items = items.get("txs")
        if not isinstance(items, list) or not all(isinstance(x, bytes) for x in items):
            raise HttpError(400, "malformed_batch", "msgpack batch must be an array of envelope bytes")
        raws = items
    else:
        obj = parse_json(body)
        if isinstance(obj, dict):
            obj = obj.get("txs")
        if not isinstance(obj, list):
            raise HttpError(400, "malformed_batch", "JSON batch must be {\"txs\": [envelope, ...]}")
        if len(obj) > BATCH_TXS_MAX:  # counted before any envelope is decoded
            raise HttpError(413, "batch_too_large", f"at most {BATCH_TXS_MAX} txs per batch")
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


async def post_tx(request: web.Request) -> web.Response:
    node = _node(request)
    wait = WAIT.value(request)
    timeout_ms = TIMEOUT.value(request)
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
    wait = WAIT.value(request)
    timeout_ms = TIMEOUT.value(request)
    raws = parse_batch(request, await read_body(request, max(node.config.max_body_bytes,
                                                              node.config.block_max_bytes * 4)))
    results = await submission.submit_batch(node, raws, timeout_ms / 1000 if wait == "commit" else None)
    status = 202 if wait == "none" else 200
    return reply(request, {"results": results}, status)


async def get_tx(request: web.Request) -> web.Response:
    """Anyone learns a tx's `tx_id`, `status` and `height`; the whole outcome goes to a reader who may read what
    the tx acted on, or signed it (ecert.access.can_read_tx_outcome)."""
    node = _node(request)
    tx_id = TX_ID.value(request).lower()
    record = node.store.tx_outcome(tx_id)
    if record is not None:
        answer = outcome_answer(record)
        reader = request_reader(request)
        if reader is not None and _may_read_outcome(node, reader, record):
            return reply(request, answer)
        return reply(request, {k: answer[k] for k in TX_FIELDS_ANONYMOUS if k in answer})
    if tx_id in _proposer(node).pending:
        return reply(request, {"tx_id": tx_id, "status": "pending"})
    return reply(request, {"tx_id": tx_id, "status": "unknown"})


def _may_read_outcome(node: ApiNode, reader: Reader, record: TxRecord) -> bool:
    block = node.store.block(record.height)
    if block is None or not 0 <= record.position < len(block.txs):
        # Below an installed snapshot's base the raw tx is gone: nobody can tell what it acted on or who
        # signed it, so only the regulator reads its outcome.
        facts = TxFacts(record.outcome, None, None)
    else:
        facts = access.tx_facts(record.outcome, block.txs[record.position])
    return access.can_read_tx_outcome(node.store.view(), reader, facts)


# -- sessions -----------------------------------------------------------------------------------------------------


async def post_session(request: web.Request) -> web.Response:
    """A signed `POST /v1/session`: a read-only token for the signing org at this node, also as the session
    cookie (HttpOnly, SameSite=Strict) so a browser's GET requests and EventSource carry it."""
    node = _node(request)
    org_id = authenticated_org(request)
    if org_id is None:  # the open reader of read_access = "open" reads, but is nobody to issue a session to
        raise HttpError(401, "unauthenticated", "a session is issued only for a signed request "
                                                "(Authorization: ECERT-ED25519 ...)")
    await read_body(request, SESSION_BODY_BYTES_MAX)  # the gate has read it already; the limit is its own
    gate = _gate(node)
    token, expires_at_ms = gate.sessions.issue(org_id, gate.clock())
    response = reply(request, {"token": token, "expires_at": expires_at_ms, "org": org_id})
    set_session_cookie(response, gate.node_id, token, max(0, expires_at_ms - gate.clock()))
    return response


# -- reads --------------------------------------------------------------------------------------------------------


async def get_status(request: web.Request) -> web.Response:
    return reply(request, _node(request).status())


async def get_block(request: web.Request) -> web.Response:
    node = _node(request)
    height = HEIGHT.value(request)
    block = node.block_json(height)
    if block is None:
        raise HttpError(404, "block_not_found", f"no block at height {height} on this node "
                                                f"(height {node.store.height})")
    return reply(request, block)


async def get_blocks(request: web.Request) -> web.Response:
    """Headers and tx counts; the tx ids only on request (`tx_ids=true`): a dashboard refresh of 15 blocks of 400
    txs was 0.8 MB of ids nobody looked at. Anyone may read both (CONTRACT §6), as `GET /v1/blocks/{h}` shows."""
    node = _node(request)
    before = BLOCKS_BEFORE.read(request)
    limit = BLOCKS_LIMIT.value(request)
    tx_ids = BLOCKS_TX_IDS.value(request)
    return reply(request, {"height": node.store.height, "blocks": node.recent_blocks(before, limit, tx_ids)})


async def _consistent(request: web.Request) -> None:
    """`?consistency=linearizable`: wait for a ReadIndex round (thesis §6.4) before reading local state."""

    if CONSISTENCY.value(request) != "linearizable":
        return
    node = _node(request)
    driver = _driver(node)
    if driver.leader_id is None:
        await node.await_leader()  # as a submission does: between leaders, wait the election out (bounded)
    try:
        await driver.read_barrier()
    except NotLeaderError:
        raise HttpError(503, "no_leader", "no leader known: a linearizable read is impossible now",
                       leader_id=None) from None
    except ProposalDroppedError as exc:
        raise HttpError(503, "busy", f"too many reads in flight: {exc}") from None
    except TimeoutError:
        raise HttpError(504, "read_timeout", "no quorum confirmed the read in time") from None


def _not_found(what: str, *ids: str) -> HttpError:
    """The one answer for an unknown id and for one the reader may not see (their bodies must not differ)."""
    return HttpError(404, f"{what}_not_found", f"no {what} {'/'.join(ids)!r}")


async def _read(request: web.Request, *params: IdParam) -> tuple[ApiNode, Reader, list[str]]:
    """A SIGNED read: ids checked, the read barrier passed, then the reader, whose decisions are taken on the
    state as it is after the barrier."""
    ids = [p.value(request) for p in params]
    await _consistent(request)
    return _node(request), signed_reader(request), ids


async def get_cert(request: web.Request) -> web.Response:
    node, reader, (cert_id,) = await _read(request, CERT_ID)
    view = node.store.view()
    result = queries.get_cert(view, cert_id, now=node.store.last_time)
    if result is None or not access.can_read_cert(view, reader, cert_id):
        raise _not_found("cert", cert_id)
    return reply(request, result)


async def get_lineage(request: web.Request) -> web.Response:
    node, reader, (cert_id,) = await _read(request, CERT_ID)
    result = access.visible_lineage(node.store.view(), reader, cert_id, node.store.last_time)
    if result is None:
        raise _not_found("cert", cert_id)
    return reply(request, result)


async def get_org(request: web.Request) -> web.Response:
    """Any member reads an org's public profile; the org itself and the regulator read its whole record."""
    node, reader, (org_id,) = await _read(request, ORG_ID)
    view = node.store.view()
    whole = reader.org_id == org_id or reader.role == ecert_state.REGULATOR
    result = queries.get_org(view, org_id) if whole else access.org_public_profile(view, org_id)
    if result is None:
        raise _not_found("org", org_id)
    return reply(request, result)


async def get_holdings(request: web.Request) -> web.Response:
    """Which orgs exist is public to members (`GET /v1/orgs/{id}`), so an unknown org is a 404 for anyone and a
    known one's holdings are a 403 for all but the org and the regulator."""
    node, reader, (org_id,) = await _read(request, ORG_ID)
    view = node.store.view()
    if ecert_state.get_org(view, org_id) is None:
        raise _not_found("org", org_id)
    if not access.can_read_holdings(reader, org_id):
        raise HttpError(403, "forbidden", "only the org itself and the regulator read an org's holdings")
    return reply(request, queries.get_holdings(view, org_id, now=node.store.last_time))


async def get_credit(request: web.Request) -> web.Response:
    node, reader, (bank, core) = await _read(request, BANK_ID, CORE_ID)
    if not access.can_read_credit(reader, bank, core):
        raise HttpError(403, "forbidden", "only the bank, the core enterprise and the regulator read a credit line")
    result = queries.get_credit_line(node.store.view(), bank, core)
    if result is None:
        raise _not_found("credit_line", bank, core)
    return reply(request, result)


async def get_doc(request: web.Request) -> web.Response:
    node, reader, (doc_id,) = await _read(request, DOC_ID)
    view = node.store.view()
    result = queries.get_trade_doc(view, doc_id)
    if result is None or not access.can_read_doc(view, reader, doc_id):
        raise _not_found("doc", doc_id)
    return reply(request, result)


# -- business queries (issue 14: ecert/history.py, ecert/portfolio.py, ecert/risk.py, ecert/settlement.py) --------


def tx_lookup(store: StateStore) -> history.TxLookup:
    """The node's tx index for a certificate's history: where a tx was applied, its outcome, and its type and
    signer from the block that carried it (None fields where this node no longer holds that block)."""

    def lookup(tx_id: str) -> history.TxInfo | None:
        record = store.tx_outcome(tx_id)
        if record is None:
            return None
        block = store.block(record.height)
        raw = block.txs[record.position] if block is not None and 0 <= record.position < len(block.txs) else None
        return history.tx_info(record, raw)

    return lookup


async def get_cert_history(request: web.Request) -> web.Response:
    """A certificate's audit trail, paged: for whoever may read the certificate (404 as for an unknown id)."""
    node, reader, (cert_id,) = await _read(request, CERT_ID)
    cursor = HISTORY_CURSOR.read(request)
    limit = HISTORY_LIMIT.value(request)
    try:
        page = history.cert_history(node.store.view(), reader, cert_id, tx_lookup(node.store), cursor=cursor,
                                    limit=limit)
    except ValueError as exc:
        raise HttpError(400, "bad_cursor", str(exc)) from None
    if page is None:
        raise _not_found("cert", cert_id)
    return reply(request, page)


async def get_certs(request: web.Request) -> web.Response:
    """Certificates by debtor, holder, status and maturity window: each one the reader may read."""
    flt = portfolio.CertFilter(debtor=LIST_DEBTOR.read(request), holder=LIST_HOLDER.read(request),
                               status=LIST_STATUS.read(request), maturity_from=MATURITY_FROM.read(request),
                               maturity_to=MATURITY_TO.read(request))
    cursor = LIST_CURSOR.read(request)
    limit = LIST_LIMIT.value(request)
    node, reader, _ = await _read(request)
    try:
        page = portfolio.list_certs(node.store.view(), reader, flt, node.store.last_time, cursor=cursor,
                                    limit=limit)
    except ValueError as exc:
        raise HttpError(400, "bad_cursor", str(exc)) from None
    return reply(request, page)


async def get_owed(request: web.Request) -> web.Response:
    """What an org is owed and owes (settlement.owed_to): the org itself and the regulator; 403 for the others
    (which orgs exist is public to members, so an unknown org is a 404 for anyone)."""
    node, reader, (org_id,) = await _read(request, ORG_ID)
    view = node.store.view()
    if ecert_state.get_org(view, org_id) is None:
        raise _not_found("org", org_id)
    if not access.can_read_owed(reader, org_id):
        raise HttpError(403, "forbidden", "only the org itself and the regulator read what an org is owed")
    return reply(request, settlement.owed_to(view, org_id, node.store.last_time))


async def get_org_risk(request: web.Request) -> web.Response:
    node, reader, (org_id,) = await _read(request, ORG_ID)
    view = node.store.view()
    if ecert_state.get_org(view, org_id) is None:
        raise _not_found("org", org_id)
    if not risk.can_read_org_risk(view, reader, org_id):
        raise HttpError(403, "forbidden", "an org's risk summary is for the regulator, the org itself and a bank "
                                          "it deals with (financing record, credit line or finance request)")
    return reply(request, risk.org_risk(view, org_id, node.store.last_time, reader))


async def get_cert_risk(request: web.Request) -> web.Response:
    node, reader, (cert_id,) = await _read(request, CERT_ID)
    if not risk.may_ask_cert_risk(reader):
        raise HttpError(403, "forbidden", "a certificate's risk summary is for banks and the regulator")
    view = node.store.view()
    summary = risk.cert_risk(view, cert_id, node.store.last_time)
    if summary is None or not risk.can_read_cert_risk(view, reader, cert_id):
        raise _not_found("cert", cert_id)
    return reply(request, summary)


async def get_members(request: web.Request) -> web.Response:
    """The node membership in state (ecert/governance.py): every member org may know who runs the consortium's
    nodes, and operators need the addresses and keys."""
    node, _reader, _ = await _read(request)
    return reply(request, governance.get_membership(node.store.view()))


async def get_proposals(request: web.Request) -> web.Response:
    """Membership proposals, newest first (`?limit=N&before=SEQ`); a member's business like the membership."""
    node, _reader, _ = await _read(request)
    limit = PROPOSALS_LIMIT.value(request)
    before = PROPOSALS_BEFORE.read(request)
    return reply(request, governance.list_proposals(node.store.view(), node.store.last_time, limit, before))


async def get_proposal(request: web.Request) -> web.Response:
    node, _reader, (proposal_id,) = await _read(request, PROPOSAL_ID)
    result = governance.get_proposal(node.store.view(), proposal_id, node.store.last_time)
    if result is None:
        raise _not_found("proposal", proposal_id)
    return reply(request, result)


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
    """Membership is governance (CONTRACT §6): no HTTP request, signed or not, changes it. The body is not read."""
    raise HttpError(403, "governance_required", "membership changes are transactions: member.propose and "
                                                "member.approve, signed by the orgs that run voting nodes")


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(_node(request).node_id))


# -- the app ------------------------------------------------------------------------------------------------------


def _gate(node: ApiNode) -> AuthGate:
    gate = node.auth
    if gate is None:
        raise InvariantViolation("HTTP API mounted before Node.start() built the identity gate")
    return gate


def build_app(node: ApiNode) -> web.Application:
    # The body limit is enforced by read_body (413 JSON); aiohttp's own limit is a backstop above it.
    app = web.Application(middlewares=[error_middleware, access_middleware],
                          client_max_size=max(node.config.max_body_bytes, node.config.block_max_bytes) * 8)
    app[NODE_KEY] = node
    app[AUTH_GATE_KEY] = _gate(node)
    r = app.router
    r.add_post("/v1/tx", post_tx)
    r.add_post("/v1/txs", post_txs)
    r.add_get("/v1/tx/{tx_id}", get_tx)
    r.add_post("/v1/session", post_session)
    r.add_get("/v1/status", get_status)
    r.add_get("/v1/blocks", get_blocks)
    r.add_get("/v1/blocks/{height}", get_block)
    r.add_get("/v1/certs", get_certs)
    r.add_get("/v1/certs/{id}", get_cert)
    r.add_get("/v1/certs/{id}/history", get_cert_history)
    r.add_get("/v1/orgs/{id}/owed", get_owed)
    r.add_get("/v1/risk/orgs/{id}", get_org_risk)
    r.add_get("/v1/risk/certs/{id}", get_cert_risk)
    r.add_get("/v1/certs/{id}/lineage", get_lineage)
    r.add_get("/v1/orgs/{id}", get_org)
    r.add_get("/v1/orgs/{id}/certs", get_holdings)
    r.add_get("/v1/docs/{id}", get_doc)
    r.add_get("/v1/credit/{bank}/{core}", get_credit)
    r.add_get("/v1/members", get_members)
    r.add_get("/v1/proposals", get_proposals)
    r.add_get("/v1/proposals/{id}", get_proposal)
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
