"""Schemathesis, every check and every phase, against the node's own `GET /openapi.json` on a real node.

One real single-voter node (node.server.Node: LevelDB, Raft, proposer, HTTP API, dashboard) over a genesis with
two banks, a core enterprise, suppliers and the regulator runs on its own event loop in a thread, so that
schemathesis' blocking client can call it on 127.0.0.1. A short supply-chain story (as in test_api_auth.py) gives
the reads real data. Three runs of the whole engine (examples, coverage, fuzzing, stateful phases):

- anonymous, every operation: the public routes' answers, and the 401 of every other one (schemathesis also
  sends made-up Authorization headers and session cookies there);
- signed as the regulator (pbc), every non-public operation: each request is signed as it goes on the wire
  (node/request_auth.sign_request over the exact method, path with query, and body bytes) by a `requests` auth
  that schemathesis applies as the run's credentials, so its `ignored_auth` check also probes each route
  without them;
- signed as a supplier (tier1), every non-public operation: the 403 answers.

Bounded for the default suite: EXAMPLES_DEFAULT examples per operation and phase, derandomized (the same cases
every run), no example database; the event stream is cut after STREAM_READ_S. `ECERT_SCHEMATHESIS_EXAMPLES=200`
runs deeper. Any finding fails the test with schemathesis' own description and a curl line to reproduce it.

Two checks are configured rather than left at their defaults, each for a reason the schema cannot carry:
POST /v1/tx and /v1/txs answer 400 to a schema-valid envelope that is not a real signed tx (its validity is an
Ed25519 signature over a msgpack payload), and a body over a size or count limit is refused with 413.

Plus, without the fuzzer: the answers to real resources (200, 202, 403, 404) validated against the document, in
JSON and msgpack; the served document equals `openapi_document(node_id)`; every route served is described and
every described operation is served; the document's id pattern is ecert's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.engine import Status, events, from_schema
from schemathesis.transport.serialization import Binary

from ecert.errors import TxRejected
from ecert.tx import envelope_to_json, v_id
from node.http.auth_gate import ROUTE_ACCESS, Access, route_access
from node.http.openapi import ID_PATTERN, openapi_document
from node.request_auth import fresh_nonce, sign_request
from tests.node.live_node import NODE, LiveNode, issue_and_transfer, now_ms

CHAIN = "ecert-schemathesis"
EXAMPLES_DEFAULT = 5
STREAM_READ_S = 0.5
"""How long one request to the (endless) event stream is read before schemathesis cuts it."""
FINDING_CHARS_MAX = 1500


# --- the node -----------------------------------------------------------------------------------------------------


class SchemaNode(LiveNode):
    """The node of this module's chain, and a `requests` auth that signs as one of its orgs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, CHAIN)

    def signature(self, org: str) -> OrgSignature:
        return OrgSignature(self.seed(org), org)


class OrgSignature(requests.auth.AuthBase):
    """Signs a request as one org, as it goes on the wire: its method, path with the raw query, body bytes."""

    def __init__(self, seed: bytes, org: str) -> None:
        self.seed = seed
        self.org = org

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert r.method is not None
        r.headers["Authorization"] = sign_request(self.seed, CHAIN, NODE, self.org, r.method, r.path_url, body,
                                                  now_ms(), fresh_nonce())
        return r


def story(live: SchemaNode) -> None:
    """tests/node/live_node.py's story, the invoice sealed for icbc and tier1."""
    moved = issue_and_transfer(live, credit_limit=10_000_000,
                               invoice_extra={"ciphertext": {"icbc": b"\x01" * 60, "tier1": b"\x02" * 60}})
    live.ids["transfer_tx"] = moved["tx_id"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaNode]:
    node = SchemaNode(tmp_path_factory.mktemp("schemathesis"))
    node.start()
    try:
        story(node)
        yield node
    finally:
        node.stop()


# --- msgpack on the wire, for schemathesis ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A generated body with schemathesis' Binary placeholders as bytes (msgpack bin)."""
    if isinstance(value, Binary):
        return value.data
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx: Any, value: Any) -> bytes:
    packed: bytes = msgpack.packb(_plain(value), use_bin_type=True)
    return packed


@schemathesis.deserializer("application/msgpack")
def _from_msgpack(ctx: Any, response: Any) -> Any:
    return msgpack.unpackb(response.content, raw=False)


# --- the runs ---------------------------------------------------------------------------------------------------

_NEGATIVE_REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"""schemathesis' default answers to schema-violating input, and 413: a body over a size or count limit."""


def engine_config(examples: int, skip: list[str]) -> dict[str, Any]:
    """Every phase and check; `skip` names the operations left out (schemathesis' own `include()` filter is
    overridden by per-operation settings, so operations are left out here)."""
    return {
        "generation": {"max-examples": examples, "deterministic": True, "database": "none"},
        "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": _NEGATIVE_REJECTED}},
        "operations": [
            {"include-path": "/v1/events", "request-timeout": STREAM_READ_S, "generation": {"max-examples": 1}},
            # A schema-valid envelope is refused (400) unless it is a real signed tx: no schema states a signature.
            {"include-path": ["/v1/tx", "/v1/txs"],
             "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}}},
            *([{"include-name": skip, "enabled": False}] if skip else []),
        ],
    }


def _operations(access: set[Access]) -> list[str]:
    """`METHOD /path` of every described operation whose access is in `access` (schemathesis' operation names)."""
    return [f"{method.upper()} {path}" for path, ops in openapi_document()["paths"].items()
            for method, op in ops.items() if Access(op["x-ecert-access"]) in access]


def run_schemathesis(live: SchemaNode, auth: OrgSignature | None, access: set[Access]) -> tuple[list[str], int]:
    """Every phase and check over the operations of `access`; the findings (deduplicated) and requests sent."""
    examples = int(os.environ.get("ECERT_SCHEMATHESIS_EXAMPLES", EXAMPLES_DEFAULT))
    skip = _operations(set(Access) - access)
    schema = schemathesis.openapi.from_url(live.base + "/openapi.json",
                                           config=schemathesis.Config.from_dict(engine_config(examples, skip)))
    tested = {result.ok().label for result in schema.get_all_operations()}
    assert tested == set(_operations(access)) - {"GET /openapi.json"}  # schemathesis skips the schema's own URL
    if auth is not None:
        schema.auth.set_from_requests(auth)
    found: dict[str, None] = {}
    sent = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            sent += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        f = check.failure_info.failure
                        found[f"{event.recorder.label} [{event.phase.value}] {check.name}: {f.title}: {f.message}"
                              f"\n    {check.failure_info.code_sample}"[:FINDING_CHARS_MAX]] = None
        elif isinstance(event, events.NonFatalError):
            found[f"{event.label}: {event.info.title}: {event.info.message}"[:FINDING_CHARS_MAX]] = None
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            found.update((f"after the run: {f.title}: {f.message}"[:FINDING_CHARS_MAX], None) for f in event.failures)
    return list(found), sent


NOT_PUBLIC = {Access.ANYONE, Access.SIGNED, Access.REGULATOR}


@pytest.mark.parametrize(("org", "access"), [(None, set(Access)), ("pbc", NOT_PUBLIC), ("tier1", NOT_PUBLIC)],
                         ids=["anonymous", "regulator", "supplier"])
def test_schemathesis_finds_nothing(live: SchemaNode, org: str | None, access: set[Access]) -> None:
    found, sent = run_schemathesis(live, live.signature(org) if org is not None else None, access)
    assert not found, f"{len(found)} schemathesis findings:\n" + "\n".join(found)
    assert sent >= len(_operations(access)), "schemathesis sent fewer requests than there are operations"


# --- real answers against the document --------------------------------------------------------------------------


def _validate(live: SchemaNode, schema: Any, method: str, template: str, path: str, org: str | None, status: int,
              body: bytes | None = None, content_type: str = "application/json",
              accept: str = "application/json") -> requests.Response:
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    got = requests.request(method, live.base + path, data=body, headers=headers, timeout=30,
                           auth=live.signature(org) if org is not None else None, allow_redirects=False)
    assert got.status_code == status, (method, path, org, got.status_code, got.text[:300])
    schema[template][method].validate_response(got)
    return got


def test_real_answers_match_the_document(live: SchemaNode) -> None:
    schema = schemathesis.openapi.from_url(live.base + "/openapi.json")
    ids = live.ids
    cert, lineage = "/v1/certs/{id}", "/v1/certs/{id}/lineage"
    reads: list[tuple[str, str, str | None, int]] = [
        ("/v1/status", "/v1/status", None, 200),
        ("/v1/cluster", "/v1/cluster", None, 200),
        ("/v1/cluster/view", "/v1/cluster/view", None, 200),
        ("/v1/blocks", "/v1/blocks?limit=3", None, 200),
        ("/v1/blocks", "/v1/blocks?limit=3&tx_ids=true", None, 200),
        ("/v1/blocks/{height}", "/v1/blocks/1", None, 200),
        ("/v1/blocks/{height}", "/v1/blocks/999999", None, 404),
        ("/v1/blocks/{height}/txs", "/v1/blocks/1/txs", "pbc", 200),
        ("/v1/blocks/{height}/txs", "/v1/blocks/1/txs", "tier3", 200),
        ("/v1/tx/{tx_id}", f"/v1/tx/{ids['transfer_tx']}", "tier1", 200),
        ("/v1/tx/{tx_id}", f"/v1/tx/{ids['transfer_tx']}", None, 200),
        (cert, f"/v1/certs/{ids['A']}", "tier2", 200),
        (cert, f"/v1/certs/{ids['B']}", "tier2", 404),
        (cert, f"/v1/certs/{ids['A']}?consistency=linearizable", "pbc", 200),
        (cert, "/v1/certs/-nope", "tier2", 400),
        (cert, f"/v1/certs/{ids['A']}", None, 401),
        (lineage, f"/v1/certs/{ids['A']}/lineage", "geely", 200),
        ("/v1/orgs/{id}", "/v1/orgs/geely", "tier3", 200),
        ("/v1/orgs/{id}", "/v1/orgs/geely", "geely", 200),
        ("/v1/orgs/{id}/certs", "/v1/orgs/tier1/certs", "tier1", 200),
        ("/v1/orgs/{id}/certs", "/v1/orgs/tier1/certs", "tier2", 403),
        ("/v1/docs/{id}", "/v1/docs/INV-R", "icbc", 200),
        ("/v1/credit/{bank}/{core}", "/v1/credit/boc/geely", "boc", 200),
        ("/v1/credit/{bank}/{core}", "/v1/credit/boc/geely", "tier1", 403),
        ("/v1/members", "/v1/members", "tier3", 200),
        ("/v1/proposals", "/v1/proposals?limit=5", "tier3", 200),
        ("/v1/proposals/{id}", "/v1/proposals/nope", "tier3", 404),
        ("/v1/alarms", "/v1/alarms", "tier3", 200),
        ("/v1/dashboard/latest-cert", "/v1/dashboard/latest-cert", "tier2", 200),
        ("/v1/dashboard/whoami", "/v1/dashboard/whoami", "tier2", 200),
        ("/v1/supervision", "/v1/supervision", "pbc", 200),
        ("/v1/supervision", "/v1/supervision", "tier1", 403),
        ("/openapi.json", "/openapi.json", None, 200),
        ("/metrics", "/metrics", None, 200),
        ("/", "/", None, 200),
        ("/static/{file}", "/static/app.js", None, 200),
        ("/static/{file}", "/static/nope.js", None, 404),
        ("/login", "/login?code=nope", None, 401),
    ]
    for template, path, org, status in reads:
        _validate(live, schema, "get", template, path, org, status)
    for path in ("/v1/status", f"/v1/certs/{ids['A']}", "/v1/certs/-nope"):  # msgpack answers, errors included
        template = "/v1/certs/{id}" if path.startswith("/v1/certs/") else path
        got = _validate(live, schema, "get", template, path, "tier2", 200 if "nope" not in path else 400,
                        accept="application/msgpack")
        assert got.headers["Content-Type"].startswith("application/msgpack")

    _validate(live, schema, "post", "/v1/session", "/v1/session", "tier2", 200)
    _validate(live, schema, "post", "/logout", "/logout", None, 204)
    _validate(live, schema, "post", "/admin/members", "/admin/members", "pbc", 403, b"{}")
    t = now_ms()

    def anchor(doc_id: str) -> bytes:
        return live.raw_tx("tier3", "trade.anchor", {"doc_id": doc_id, "kind": "delivery", "doc_hash": "cd" * 32,
                                                     "counterparty": "geely", "amount": 5, "ciphertext": {"tier3": b"\x03" * 60}})

    raw = anchor(f"INV-S-{t}")
    as_json = json.dumps(envelope_to_json(raw)).encode()
    _validate(live, schema, "post", "/v1/tx", "/v1/tx", None, 200, as_json)
    _validate(live, schema, "post", "/v1/tx", "/v1/tx", None, 200, raw, "application/msgpack",
              "application/msgpack")  # the same tx again: its outcome
    _validate(live, schema, "post", "/v1/tx", "/v1/tx?wait=none", None, 202, anchor(f"INV-T-{t}"),
              "application/msgpack")
    batch = [anchor(f"INV-U-{t}"), b"not an envelope"]
    got = _validate(live, schema, "post", "/v1/txs", "/v1/txs", None, 200, msgpack.packb(batch),
                    "application/msgpack")
    assert [r["status"] for r in got.json()["results"]] == ["committed", "refused"]
    body = json.dumps({"txs": [envelope_to_json(anchor(f"INV-V-{t}"))]}).encode()
    _validate(live, schema, "post", "/v1/txs", "/v1/txs?wait=none", None, 202, body)


def test_hostile_input_is_a_documented_4xx(live: SchemaNode) -> None:
    """Input schemathesis does not send: each answer is the 4xx the document lists for the operation."""
    schema = schemathesis.openapi.from_url(live.base + "/openapi.json")
    envelope = {"payload": b"x", "signer": "tier1", "sig": b"s" * 64}
    cases: list[tuple[str, str, str, str | None, int, bytes | None, dict[str, str], str]] = [
        ("post", "/v1/tx", "/v1/tx", None, 400, b"\x1f\x8b not gzip",
         {"Content-Type": "application/json", "Content-Encoding": "gzip"}, "malformed_body"),
        ("post", "/v1/tx", "/v1/tx", None, 400, b"\x91" * 100_000 + b"\xc0",
         {"Content-Type": "application/msgpack"}, "malformed_envelope"),
        ("post", "/v1/tx", "/v1/tx", None, 400, msgpack.packb({**envelope, "payload": msgpack.packb([1])}),
         {"Content-Type": "application/msgpack"}, "malformed_payload"),
        ("post", "/v1/txs", "/v1/txs", None, 413, b"[" + b"{}," * 10_000 + b"{}]",
         {"Content-Type": "application/json"}, "batch_too_large"),
        ("post", "/v1/txs", "/v1/txs", None, 413, msgpack.packb({"txs": [b"x"], "more": 1}),
         {"Content-Type": "application/msgpack"}, "body_too_large"),
        ("get", "/v1/blocks/{height}", "/v1/blocks/%D9%A1", None, 400, None, {}, "bad_parameter"),  # Arabic "1"
        ("get", "/v1/blocks", "/v1/blocks?limit=" + "9" * 30, None, 400, None, {}, "bad_parameter"),
        ("get", "/v1/blocks", "/v1/blocks?tx_ids=yes", None, 400, None, {}, "bad_parameter"),
        ("get", "/v1/certs/{id}", "/v1/certs/%00", "tier1", 400, None, {}, "bad_id"),
        ("get", "/v1/orgs/{id}", "/v1/orgs/geely", "tier1", 413, b"x" * (live.config.max_body_bytes + 1), {},
         "body_too_large"),
        ("post", "/v1/session", "/v1/session", "tier1", 413, b"x" * 5000, {}, "body_too_large"),
        ("get", "/v1/tx/{tx_id}", "/v1/tx/" + "a" * 64, None, 401, None,
         {"Authorization": "ECERT-ED25519 " + "x" * 7000}, "unauthenticated"),
        ("get", "/v1/dashboard/whoami", "/v1/dashboard/whoami", None, 401, None,
         {"Authorization": "Bearer " + "a" * 400}, "unauthenticated"),
        ("get", "/v1/tx/{tx_id}", "/v1/tx/xyz", None, 400, None, {"Accept": "application/msgpack"}, "bad_tx_id"),
    ]
    for method, template, path, org, status, body, headers, code in cases:
        got = requests.request(method, live.base + path, data=body, headers=headers, timeout=30,
                               auth=live.signature(org) if org is not None else None)
        assert got.status_code == status, (path, got.status_code, got.text[:300])
        doc = msgpack.unpackb(got.content) if "msgpack" in got.headers["Content-Type"] else got.json()
        assert doc["error"]["code"] == code, (path, doc)
        schema[template][method].validate_response(got)


# --- the document and the routes --------------------------------------------------------------------------------


def test_the_served_document_is_the_one_described(live: SchemaNode) -> None:
    assert requests.get(live.base + "/openapi.json", timeout=10).json() == openapi_document(NODE)


def test_every_described_operation_is_served_with_its_access(live: SchemaNode) -> None:
    """test_api_auth.py checks that every served route is described; here, the other way round, and that the
    access table names no route that is neither served nor described (the fault-injection routes are served
    only with --fault-injection, and then described by node/faults.py's own rules: loopback only)."""
    assert live.node.runner is not None
    served = {(r.method.lower(), r.resource.canonical) for r in live.node.runner.app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    described = {(method, path) for path, ops in openapi_document()["paths"].items() for method in ops}
    assert described == served
    for method, path in described:
        assert openapi_document()["paths"][path][method]["x-ecert-access"] == route_access(method.upper(),
                                                                                             path).value
    unlisted = {(m, p) for m, p in ROUTE_ACCESS if (m.lower(), p) not in described}
    assert unlisted == {("GET", "/admin/faults"), ("POST", "/admin/faults")}


@given(st.one_of(st.from_regex(ID_PATTERN, fullmatch=True), st.text(max_size=70)))
def test_the_documented_id_pattern_is_ecerts(value: str) -> None:
    import re

    try:
        v_id("id", value)
        valid = True
    except TxRejected:
        valid = False
    assert valid == (re.fullmatch(ID_PATTERN, value) is not None)
