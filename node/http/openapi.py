"""`GET /openapi.json`: an OpenAPI 3.1 description of the node's HTTP API (CONTRACT §4 + extensions)."""

from __future__ import annotations

from typing import Any

HTTP_BLOCKS_PAGE_MAX = 100
"""Most block headers one `GET /v1/blocks` answers (node/http/api.py and the dashboard's fallback route serve
the same page). Not ledger.store.BLOCKS_PAGE_MAX, the store's own cap on StateStore.blocks()."""

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": desc}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema},
                           "application/msgpack": {"schema": schema}}
    return body


def _get(summary: str, ok: dict[str, Any], params: list[dict[str, Any]] | None = None,
         not_found: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _resp("OK", ok), "400": _resp("bad input", _ERROR)}
    if not_found:
        responses["404"] = _resp("unknown id", _ERROR)
    return {"get": {"summary": summary, "parameters": params or [], "responses": responses}}


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


_CONSISTENCY = {"name": "consistency", "in": "query", "required": False,
                "schema": {"type": "string", "enum": ["local", "linearizable"]},
                "description": "linearizable: confirm leadership with a quorum (ReadIndex) before reading"}
_WAIT = {"name": "wait", "in": "query", "required": False, "schema": {"type": "string", "enum": ["commit", "none"]},
         "description": "commit (default): answer once the tx's block is applied on this node"}
_TIMEOUT = {"name": "timeout_ms", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 60000, "default": 10000}}
_OBJ = {"type": "object"}


def openapi_document() -> dict[str, Any]:
    tx_answer = {"$ref": "#/components/schemas/TxAnswer"}
    submit_responses = {
        "200": _resp("committed or rejected by the rules, applied on this node", tx_answer),
        "202": _resp("accepted (wait=none)", tx_answer),
        "400": _resp("malformed envelope, bad signature, unknown signer or type, bad parameter", _ERROR),
        "413": _resp("body over max_body_bytes", _ERROR),
        "429": _resp("the leader's queue is full", _ERROR),
        "503": _resp("no leader known (leader_id says which one if any)", _ERROR),
        "504": _resp("not applied in time: status unknown, poll GET /v1/tx/{tx_id}", tx_answer),
    }
    envelope_body = {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/EnvelopeJson"}},
        "application/msgpack": {"schema": {"type": "string", "format": "binary",
                                           "description": "msgpack {payload: bin, signer: str, sig: bin}"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ecert-chain node API", "version": "1",
                 "description": "Every error is {\"error\": {\"code\", \"message\"}}. JSON by default; "
                                "msgpack when Content-Type / Accept is application/msgpack."},
        "paths": {
            "/v1/tx": {"post": {"summary": "Submit one signed transaction envelope",
                                "parameters": [_WAIT, _TIMEOUT], "requestBody": envelope_body,
                                "responses": submit_responses}},
            "/v1/txs": {"post": {"summary": "Submit a batch: {\"txs\": [envelope...]} (msgpack: array of bin)",
                                 "parameters": [_WAIT, _TIMEOUT],
                                 "responses": {"200": _resp("one answer per tx, in order",
                                                            {"type": "object", "properties": {
                                                                "results": {"type": "array",
                                                                            "items": tx_answer}}}),
                                               "202": _resp("accepted (wait=none)"),
                                               "400": _resp("bad batch", _ERROR),
                                               "413": _resp("too large", _ERROR),
                                               "503": _resp("no leader", _ERROR)}}},
            "/v1/tx/{tx_id}": _get("Status and outcome of a tx (status unknown if never seen)", tx_answer,
                                   [_path_param("tx_id", {"type": "string", "pattern": "^[0-9a-f]{64}$"})]),
            "/v1/status": _get("This node's Raft and chain status", {"$ref": "#/components/schemas/Status"}),
            "/v1/blocks": _get("Block headers, newest first", _OBJ, [
                {"name": "before", "in": "query", "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": HTTP_BLOCKS_PAGE_MAX}}]),
            "/v1/blocks/{height}": _get("A block header and its tx ids", {"$ref": "#/components/schemas/Block"},
                                        [_path_param("height", {"type": "integer"})], True),
            "/v1/certs/{id}": _get("A certificate", _OBJ, [_path_param("id"), _CONSISTENCY], True),
            "/v1/certs/{id}/lineage": _get("A certificate's root and every descendant", _OBJ,
                                           [_path_param("id"), _CONSISTENCY], True),
            "/v1/orgs/{id}": _get("An organisation", _OBJ, [_path_param("id"), _CONSISTENCY], True),
            "/v1/orgs/{id}/certs": _get("An organisation's holdings", _OBJ, [_path_param("id"), _CONSISTENCY],
                                        True),
            "/v1/docs/{id}": _get("A trade document", _OBJ, [_path_param("id"), _CONSISTENCY], True),
            "/v1/credit/{bank}/{core}": _get("A bank's credit line to a core enterprise", _OBJ,
                                             [_path_param("bank"), _path_param("core"), _CONSISTENCY], True),
            "/v1/cluster": _get("This node's view of every node", _OBJ),
            "/v1/alarms": _get("Active alarms", _OBJ),
            "/v1/events": _get("Server-sent events: a status snapshot every second", _OBJ),
            "/metrics": _get("Prometheus text format", {"type": "string"}),
            "/admin/members": {"post": {
                "summary": "Membership change on the leader (loopback clients only)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["action", "node_id"],
                    "properties": {"action": {"enum": ["add_learner", "promote", "remove"]},
                                   "node_id": {"type": "string"}}}}}},
                "responses": {"200": _resp("applied", _OBJ), "400": _resp("bad request", _ERROR),
                              "403": _resp("not loopback", _ERROR), "409": _resp("change pending", _ERROR),
                              "503": _resp("no leader", _ERROR)}}},
            "/openapi.json": _get("This document", _OBJ),
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "EnvelopeJson": {"type": "object", "required": ["payload", "signer", "sig"], "properties": {
                "payload": {"type": "string", "contentEncoding": "base64"}, "signer": {"type": "string"},
                "sig": {"type": "string", "contentEncoding": "base64"}}},
            "TxAnswer": {"type": "object", "required": ["tx_id", "status"], "properties": {
                "tx_id": {"type": "string"},
                "status": {"enum": ["committed", "rejected", "accepted", "pending", "unknown"]},
                "height": {"type": "integer"}, "result": {"type": "object"}, "error": _ERROR}},
            "Status": {"type": "object", "properties": {
                k: {"type": t} for k, t in (("node_id", "string"), ("org", "string"), ("pid", "integer"),
                                            ("role", "string"), ("term", "integer"), ("leader_id", "string"),
                                            ("commit_index", "integer"), ("applied_index", "integer"),
                                            ("height", "integer"), ("block_hash", "string"),
                                            ("state_root", "string"))}},
            "Block": {"type": "object", "properties": {
                "height": {"type": "integer"}, "prev_hash": {"type": "string"}, "tx_root": {"type": "string"},
                "time": {"type": "integer"}, "proposer": {"type": "string"}, "hash": {"type": "string"},
                "txs": {"type": "array", "items": {"type": "string"}}}},
        }},
    }
