"""Signed requests and the read matrix (CONTRACT §6) on a real node, row by row.

One real single-voter node (node.server.Node, in this process: LevelDB, Raft, proposer, HTTP API) over a genesis
with a bank (boc), a second bank (icbc), a core enterprise (geely), suppliers and the regulator (pbc). A short
supply-chain story gives every resource a reader who may and one who may not:

    credit line boc -> geely; invoice INV-R of tier1 to geely, sealed for icbc and tier1, confirmed;
    R  geely's certificate to tier1 under boc, 1000, accepted
    +- A  tier2, 600     (tier1 transfers 600 of R to tier2)
    +- B  tier1, 400

Each row is tried anonymously, by an org that may, by an org that may not, and by the regulator. Plus: replayed
nonces, bad signatures (the message shows the string the node verified), session tokens (read-only: a token on a
POST is a 401), bounded bodies (a 200,000-deep JSON is a 400), 405 with Allow, /admin/members refused, the audit
log, and the open read mode.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgpack
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from consensus.ready import Role
from ecert.tx import make_tx
from node.config import load_config
from node.http.api import error_middleware
from node.http.audit_log import AUDIT_LOG_NAME
from node.http.auth_gate import (
    AUTH_GATE_KEY,
    OPEN_READER,
    ROUTE_ACCESS,
    Access,
    AuthGate,
    access_middleware,
    request_reader,
    route_access,
)
from node.http.openapi import openapi_document
from node.keys import load_org_key
from node.ops.localnet import init_cluster, local_nodes, write_cluster_file
from node.request_auth import NonceCache, fresh_nonce, session_cookie, sign_request
from node.server import Node

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one node for the module


CHAIN = "ecert-auth-test"
NODE = "boc"
SESSION_COOKIE = session_cookie(NODE)
DAY_MS = 86_400_000
ORGS = [("boc", "Bank of China", "bank"), ("geely", "Geely Automobile", "core"),
        ("tier1", "Tier-1 Supplier", "supplier"), ("tier2", "Tier-2 Supplier", "supplier"),
        ("tier3", "Tier-3 Supplier", "supplier"), ("icbc", "ICBC", "bank"),
        ("pbc", "People's Bank of China", "regulator")]
_nonces = itertools.count(int(time.time() * 1000))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Answer:
    status: int
    doc: Any
    headers: Any


class Chain:
    """The running node and signed HTTP requests to it, as any of the genesis orgs."""

    def __init__(self, node: Node, http: aiohttp.ClientSession) -> None:
        self.node = node
        self.http = http
        self.base = node.spec.http_url
        self.keys_dir = node.config.keys_dir
        self.ids: dict[str, str] = {}

    def seed(self, org: str) -> bytes:
        return load_org_key(self.keys_dir, org).seed

    def sign(self, org: str, method: str, path: str, body: bytes = b"", *, nonce: str | None = None,
             node_id: str = NODE) -> str:
        return sign_request(self.seed(org), CHAIN, node_id, org, method, path, body, now_ms(),
                            nonce or fresh_nonce())

    async def call(self, method: str, path: str, body: bytes = b"", *, org: str | None = None,
                   headers: dict[str, str] | None = None, content_type: str = "application/json") -> Answer:
        h = {"Accept": "application/json", **(headers or {})}
        if body:
            h["Content-Type"] = content_type
        if org is not None:
            h["Authorization"] = self.sign(org, method, path, body)
        async with self.http.request(method, self.base + path, data=body or None, headers=h) as resp:
            raw = await resp.read()
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = raw.decode("utf-8", "replace")
            return Answer(resp.status, doc, resp.headers)

    async def get(self, path: str, org: str | None = None, **kw: Any) -> Answer:
        return await self.call("GET", path, org=org, **kw)

    async def tx(self, signer: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        raw = make_tx(self.seed(signer), CHAIN, kind, signer, next(_nonces), body)
        got = await self.call("POST", "/v1/tx?wait=commit", raw, content_type="application/msgpack")
        assert got.status == 200 and got.doc["status"] == "committed", (kind, got.doc)
        return got.doc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chain]:
    root = tmp_path_factory.mktemp("auth")
    path = write_cluster_file(root, CHAIN, ORGS, local_nodes([(NODE, NODE)]),
                              {"tick_ms": 20, "election_ticks": 10, "block_timeout_ms": 2})
    init_cluster(path, genesis_time_ms=now_ms() - 60_000)
    node = Node(load_config(path), NODE)
    await node.start()
    http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
    try:
        deadline = time.monotonic() + 20
        while node.driver is None or node.driver.role != Role.LEADER:
            assert time.monotonic() < deadline, "the single node did not become leader"
            await asyncio.sleep(0.02)
        c = Chain(node, http)
        await story(c)
        yield c
    finally:
        await http.close()
        await node.stop()


async def story(c: Chain) -> None:
    t = now_ms()
    await c.tx("boc", "credit.grant", {"core": "geely", "limit": 10_000_000, "expires_at": t + 365 * DAY_MS})
    # A new chain's rules (node/genesis_file.py): the invoice under a contract, the transfer on another.
    for doc_id, seller, buyer in (("PO-R", "tier1", "geely"), ("CT-R", "tier2", "tier1")):
        await c.tx(seller, "trade.anchor", {"doc_id": doc_id, "kind": "contract", "doc_hash": "cd" * 32,
                                         "counterparty": buyer, "amount": 1000})
        await c.tx(buyer, "trade.confirm", {"doc_id": doc_id})
    await c.tx("tier1", "trade.anchor", {"doc_id": "INV-R", "kind": "invoice", "doc_hash": "ab" * 32,
                                         "counterparty": "geely", "amount": 1000,
                                         "ciphertext": {"icbc": b"\x01" * 60, "tier1": b"\x02" * 60}, "contract_id": "PO-R"})
    await c.tx("geely", "trade.confirm", {"doc_id": "INV-R"})
    issued = await c.tx("geely", "ecert.issue", {"to": "tier1", "amount": 1000, "bank": "boc",
                                                 "maturity": t + 90 * DAY_MS, "invoice_ids": ["INV-R"]})
    c.ids["R"] = issued["result"]["certs"][0]
    await c.tx("tier1", "ecert.accept", {"cert_id": c.ids["R"]})
    moved = await c.tx("tier1", "ecert.transfer", {"cert_id": c.ids["R"], "to": [{"org": "tier2", "amount": 600}],
                                               "trade_docs": ["CT-R"]})
    c.ids["A"], c.ids["B"] = moved["result"]["certs"]
    c.ids["transfer_tx"] = moved["tx_id"]


# --- the matrix ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/status", "/v1/cluster", "/v1/blocks", "/v1/blocks/1", "/openapi.json",
                                  "/", "/metrics"])
async def test_public_routes_answer_anyone(chain: Chain, path: str) -> None:
    assert (await chain.get(path)).status == 200
    assert (await chain.get(path, org="tier3")).status == 200


async def test_a_public_route_never_parses_the_header(chain: Chain) -> None:
    got = await chain.get("/v1/status", headers={"Authorization": "ECERT-ED25519 nonsense"})
    assert got.status == 200


@pytest.mark.parametrize(("org", "whole"), [(None, False), ("tier3", False), ("icbc", False), ("tier1", True),
                                             ("tier2", True), ("geely", True), ("boc", True), ("pbc", True)])
async def test_tx_outcome_by_reader(chain: Chain, org: str | None, whole: bool) -> None:
    """Anyone: tx_id, status, height. The whole outcome: the signer (tier1), whoever may read the certificate
    it acted on (R: tier2 below it, the debtor, the bank named at issue), the regulator."""
    got = await chain.get(f"/v1/tx/{chain.ids['transfer_tx']}", org=org)
    assert got.status == 200 and got.doc["status"] == "committed"
    if whole:
        assert got.doc["result"]["certs"] == [chain.ids["A"], chain.ids["B"]]
    else:
        assert set(got.doc) == {"tx_id", "status", "height"}


async def test_unknown_tx_is_unknown_for_anyone(chain: Chain) -> None:
    for org in (None, "tier3"):
        got = await chain.get("/v1/tx/" + "0" * 64, org=org)
        assert got.status == 200 and got.doc == {"tx_id": "0" * 64, "status": "unknown"}


@pytest.mark.parametrize(("org", "status"), [(None, 401), ("tier3", 200), ("pbc", 200)])
async def test_org_profile_is_for_members(chain: Chain, org: str | None, status: int) -> None:
    got = await chain.get("/v1/orgs/geely", org=org)
    assert got.status == status, got.doc
    if status == 200:
        assert {"id", "name", "role", "status", "sign_pk", "box_pk"} <= set(got.doc)


async def test_org_record_whole_for_itself_and_the_regulator_only(chain: Chain) -> None:
    assert "registered_at" not in (await chain.get("/v1/orgs/geely", org="tier3")).doc
    assert "registered_at" in (await chain.get("/v1/orgs/geely", org="geely")).doc
    assert "registered_at" in (await chain.get("/v1/orgs/geely", org="pbc")).doc
    assert (await chain.get("/v1/orgs/nope", org="tier3")).status == 404


@pytest.mark.parametrize(("org", "status"), [(None, 401), ("tier1", 200), ("pbc", 200), ("tier2", 403),
                                              ("boc", 403)])
async def test_holdings_are_the_org_and_the_regulator(chain: Chain, org: str | None, status: int) -> None:
    got = await chain.get("/v1/orgs/tier1/certs", org=org)
    assert got.status == status, got.doc
    if status == 200:
        assert [c["id"] for c in got.doc["certs"]] == [chain.ids["B"]]
    if status == 403:
        assert got.doc["error"]["code"] == "forbidden"


async def test_holdings_of_an_unknown_org_is_404_for_any_member(chain: Chain) -> None:
    assert (await chain.get("/v1/orgs/nope/certs", org="tier2")).status == 404


@pytest.mark.parametrize(("org", "visible"), [("geely", True), ("boc", True), ("pbc", True), ("tier1", True),
                                               ("tier2", True), ("tier3", False), ("icbc", False)])
async def test_cert_by_reader(chain: Chain, org: str, visible: bool) -> None:
    for name in ("R", "A"):
        got = await chain.get(f"/v1/certs/{chain.ids[name]}", org=org)
        assert got.status == (200 if visible else 404), (name, got.doc)
    if org == "tier2":  # tier1's rest of R is none of tier2's business
        assert (await chain.get(f"/v1/certs/{chain.ids['B']}", org=org)).status == 404


async def test_a_hidden_cert_answers_exactly_like_an_unknown_one(chain: Chain) -> None:
    """Same status, same body but for the id the asker typed: nothing tells a stranger the certificate exists."""
    for suffix in ("", "/lineage"):
        hidden = await chain.get(f"/v1/certs/{chain.ids['R']}{suffix}", org="tier3")
        unknown = await chain.get(f"/v1/certs/{'f' * 64}{suffix}", org="tier3")
        assert hidden.status == unknown.status == 404
        assert json.dumps(hidden.doc).replace(chain.ids["R"], "ID") == json.dumps(unknown.doc).replace("f" * 64,
                                                                                                      "ID")


async def test_anonymous_cert_reads_are_401(chain: Chain) -> None:
    for path in (f"/v1/certs/{chain.ids['R']}", f"/v1/certs/{chain.ids['R']}/lineage", "/v1/certs/nope"):
        got = await chain.get(path)
        assert got.status == 401 and got.doc["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("org", "names"), [("geely", {"R", "A", "B"}), ("pbc", {"R", "A", "B"}),
                                             ("tier1", {"R", "A", "B"}), ("tier2", {"R", "A"}), ("tier3", None)])
async def test_lineage_shows_only_what_the_reader_may_see(chain: Chain, org: str, names: set[str] | None) -> None:
    got = await chain.get(f"/v1/certs/{chain.ids['A']}/lineage", org=org)
    if names is None:
        assert got.status == 404
        return
    assert got.status == 200 and got.doc["root_id"] == chain.ids["R"]
    assert {c["id"] for c in got.doc["certs"]} == {chain.ids[n] for n in names}


@pytest.mark.parametrize(("org", "status"), [(None, 401), ("boc", 200), ("geely", 200), ("pbc", 200),
                                              ("tier1", 403), ("icbc", 403)])
async def test_credit_line_is_its_two_parties_and_the_regulator(chain: Chain, org: str | None, status: int
                                                                ) -> None:
    got = await chain.get("/v1/credit/boc/geely", org=org)
    assert got.status == status, got.doc
    if status == 200:
        assert got.doc["limit"] == 10_000_000


async def test_unknown_credit_line_is_404_for_its_would_be_party(chain: Chain) -> None:
    assert (await chain.get("/v1/credit/boc/tier1", org="boc")).status == 404
    assert (await chain.get("/v1/credit/icbc/geely", org="boc")).status == 403


@pytest.mark.parametrize(("org", "status"), [(None, 401), ("tier1", 200), ("geely", 200), ("icbc", 200),
                                              ("pbc", 200), ("boc", 404), ("tier2", 404)])
async def test_doc_is_its_parties_its_sealed_bank_and_the_regulator(chain: Chain, org: str | None, status: int
                                                                    ) -> None:
    got = await chain.get("/v1/docs/INV-R", org=org)
    assert got.status == status, got.doc
    if status == 404:
        assert got.doc == (await chain.get("/v1/docs/INV-NONE", org=org)).doc | {
            "error": {"code": "doc_not_found", "message": "no doc 'INV-R'"}}


@pytest.mark.parametrize("path", ["/v1/members", "/v1/proposals", "/v1/alarms", "/v1/blocks/1/txs"])
async def test_member_routes_need_a_signature(chain: Chain, path: str) -> None:
    assert (await chain.get(path)).status == 401
    assert (await chain.get(path, org="tier3")).status == 200
    assert (await chain.get(path, org="pbc")).status == 200


async def test_governance_reads(chain: Chain) -> None:
    members = await chain.get("/v1/members", org="tier3")
    assert {"members", "voters", "learners", "voter_orgs"} <= set(members.doc)
    proposals = await chain.get("/v1/proposals?limit=5", org="tier3")
    assert proposals.doc["proposals"] == [] and proposals.doc["total"] == 0
    assert (await chain.get("/v1/proposals?limit=0", org="tier3")).status == 400
    assert (await chain.get("/v1/proposals/nope", org="tier3")).status == 404
    assert (await chain.get("/v1/proposals/nope")).status == 401


async def test_linearizable_reads_for_authorised_readers(chain: Chain) -> None:
    q = "?consistency=linearizable"
    assert (await chain.get(f"/v1/certs/{chain.ids['A']}{q}", org="tier2")).status == 200
    assert (await chain.get(f"/v1/certs/{chain.ids['A']}{q}", org="tier3")).status == 404
    assert (await chain.get(f"/v1/certs/{chain.ids['A']}{q}")).status == 401
    assert (await chain.get(f"/v1/orgs/tier1/certs{q}", org="tier2")).status == 403
    assert (await chain.get(f"/v1/certs/{chain.ids['A']}?consistency=maybe", org="tier2")).status == 400


async def test_unlisted_routes_are_the_regulators(chain: Chain) -> None:
    """A route the access table does not name (added later, undocumented) answers the regulator only."""
    assert route_access("GET", "/v1/something-new") is Access.REGULATOR
    app = web.Application(middlewares=[error_middleware, access_middleware])
    assert chain.node.auth is not None
    app[AUTH_GATE_KEY] = chain.node.auth

    async def secret(request: web.Request) -> web.Response:
        reader = request_reader(request)
        return web.json_response({"org": reader.org_id if reader else None})

    app.router.add_get("/v1/something-new", secret)
    async with TestClient(TestServer(app)) as client:
        async def get(org: str | None) -> int:
            path = "/v1/something-new"
            headers = {} if org is None else {"Authorization": chain.sign(org, "GET", path)}
            return (await client.get(path, headers=headers)).status
        assert await get(None) == 401
        assert await get("tier1") == 403
        assert await get("pbc") == 200


# --- signatures and sessions ------------------------------------------------------------------------------------


async def test_a_replayed_nonce_is_401(chain: Chain) -> None:
    path = "/v1/orgs/geely"
    header = chain.sign("tier1", "GET", path, nonce="ab" * 16)
    first = await chain.get(path, headers={"Authorization": header})
    again = await chain.get(path, headers={"Authorization": header})
    assert first.status == 200
    assert again.status == 401 and "nonce already used" in again.doc["error"]["message"]


async def test_a_bad_signature_shows_the_string_verified_against(chain: Chain) -> None:
    path = "/v1/orgs/geely?consistency=local"
    header = chain.sign("tier1", "GET", "/v1/orgs/boc")  # signed for another path
    got = await chain.get(path, headers={"Authorization": header})
    assert got.status == 401 and got.doc["error"]["code"] == "unauthenticated"
    sts = got.doc["string_to_sign"]
    assert sts.split("\n")[:6] == ["ecert-request/1", CHAIN, NODE, "tier1", "GET", path]
    assert sts in got.doc["error"]["message"]


async def test_a_header_signed_for_another_node_is_401(chain: Chain) -> None:
    header = chain.sign("tier1", "GET", "/v1/orgs/geely", node_id="geely")
    assert (await chain.get("/v1/orgs/geely", headers={"Authorization": header})).status == 401


async def test_a_malformed_header_is_401_on_a_non_public_route(chain: Chain) -> None:
    for value in ("ECERT-ED25519 nonsense", "Basic dXNlcjpwYXNz", "Bearer not~a~token"):
        got = await chain.get("/v1/tx/" + "0" * 64, headers={"Authorization": value})
        assert got.status == 401 and got.doc["error"]["code"] == "unauthenticated", value


async def test_session_token_reads_but_never_writes(chain: Chain) -> None:
    got = await chain.call("POST", "/v1/session", org="tier2")
    assert got.status == 200 and got.doc["org"] == "tier2" and got.doc["expires_at"] > now_ms()
    cookie = got.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={got.doc['token']}")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    bearer = {"Authorization": f"Bearer {got.doc['token']}"}
    cert = f"/v1/certs/{chain.ids['A']}"
    assert (await chain.get(cert, headers=bearer)).status == 200
    assert (await chain.get(cert, headers={"Cookie": f"{SESSION_COOKIE}={got.doc['token']}"})).status == 200
    assert (await chain.get(f"/v1/certs/{chain.ids['B']}", headers=bearer)).status == 404  # still tier2's rights
    post = await chain.call("POST", "/v1/session", headers=bearer)
    assert post.status == 401 and "session token only reads" in post.doc["error"]["message"]


async def test_a_session_needs_a_signature(chain: Chain) -> None:
    assert (await chain.call("POST", "/v1/session")).status == 401


async def test_a_stale_cookie_reads_as_anonymous(chain: Chain) -> None:
    got = await chain.get(f"/v1/tx/{chain.ids['transfer_tx']}", headers={"Cookie": f"{SESSION_COOKIE}=ecs1~x"})
    assert got.status == 200 and set(got.doc) == {"tx_id", "status", "height"}


# --- bad input --------------------------------------------------------------------------------------------------


async def test_deep_json_is_a_400_not_a_5xx(chain: Chain) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    for path in ("/v1/tx", "/v1/txs"):
        got = await chain.call("POST", path, deep)
        assert got.status == 400 and got.doc["error"]["code"] == "too_deep", got.doc
    strings = json.dumps({"payload": "[[[[" * 1000, "signer": "x", "sig": "]]"}).encode()
    got = await chain.call("POST", "/v1/tx", strings)
    assert got.status == 400 and got.doc["error"]["code"] != "too_deep"  # brackets inside strings do not count


async def test_deep_or_wide_msgpack_batches_are_4xx(chain: Chain) -> None:
    deep = b"\x91" * 100_000 + b"\xc0"
    got = await chain.call("POST", "/v1/txs", deep, content_type="application/msgpack")
    assert got.status == 400 and got.doc["error"]["code"] == "malformed_msgpack"
    wide = msgpack.packb([b"x"] * 10_001)
    got = await chain.call("POST", "/v1/txs", wide, content_type="application/msgpack")
    assert 400 <= got.status < 500




async def test_wrong_method_is_405_with_allow(chain: Chain) -> None:
    got = await chain.call("PUT", "/v1/status", b"{}")
    assert got.status == 405 and got.doc["error"]["code"] == "method_not_allowed"
    assert "GET" in got.headers["Allow"]
    got = await chain.call("DELETE", "/v1/tx")
    assert got.status == 405 and "POST" in got.headers["Allow"]


async def test_admin_members_is_governance(chain: Chain) -> None:
    body = json.dumps({"action": "remove", "node_id": NODE}).encode()
    for org in (None, "boc", "pbc"):
        got = await chain.call("POST", "/admin/members", body, org=org)
        assert got.status == 403 and got.doc["error"]["code"] == "governance_required"
    assert chain.node.status()["voters"] == [NODE]


# --- audit log, openapi, open reads -----------------------------------------------------------------------------


async def test_authenticated_reads_are_audited(chain: Chain) -> None:
    await chain.get(f"/v1/certs/{chain.ids['R']}", org="tier3")  # a refusal is audited too
    await chain.get("/v1/orgs/tier1/certs", org="tier1")
    await chain.get("/v1/status", org="tier1")  # public: not audited
    lines = [json.loads(line) for line in (chain.node.data_dir / AUDIT_LOG_NAME).read_text().splitlines()]
    assert {"org": "tier3", "method": "GET", "route": "/v1/certs/{id}", "resource": chain.ids["R"],
            "status": 404}.items() <= lines[-2].items()
    assert {"org": "tier1", "route": "/v1/orgs/{id}/certs", "resource": "tier1", "status": 200}.items() \
        <= lines[-1].items()
    assert all(isinstance(entry["ts"], int) for entry in lines)
    assert not any(entry["route"] == "/v1/status" for entry in lines)




async def test_every_served_route_is_described_with_the_access_it_enforces(chain: Chain) -> None:
    assert chain.node.runner is not None
    paths = openapi_document()["paths"]
    served = {(r.method, r.resource.canonical) for r in chain.node.runner.app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    assert served
    for method, path in served:
        assert path in paths and method.lower() in paths[path], (method, path)
        assert paths[path][method.lower()]["x-ecert-access"] == route_access(method, path).value
    for (method, path), access in ROUTE_ACCESS.items():
        if path in paths and method.lower() in paths[path]:
            assert paths[path][method.lower()]["x-ecert-access"] == access.value


async def test_open_read_access_reads_as_the_regulator(chain: Chain) -> None:
    gate = AuthGate(chain_id=CHAIN, node_id=NODE, started_ms=0, view=chain.node.store.view, read_access="open",
                    body_bytes_max=1 << 20)
    app = web.Application(middlewares=[error_middleware, access_middleware])
    app[AUTH_GATE_KEY] = gate

    async def who(request: web.Request) -> web.Response:
        reader = request_reader(request)
        return web.json_response({"org": reader.org_id if reader else None,
                                  "role": reader.role if reader else None})

    app.router.add_get("/v1/something-new", who)  # REGULATOR
    app.router.add_get("/v1/dashboard/whoami", who)  # ANYONE
    async with TestClient(TestServer(app)) as client:
        for path in ("/v1/something-new", "/v1/dashboard/whoami"):
            got = await client.get(path)
            assert got.status == 200 and await got.json() == {"org": OPEN_READER.org_id, "role": "regulator"}
        path = "/v1/dashboard/whoami"
        signed = await client.get(path, headers={"Authorization": chain.sign("tier1", "GET", path)})
        assert await signed.json() == {"org": "tier1", "role": "supplier"}  # a signed reader reads as itself



async def test_nonce_cache_caps_answer_429_and_503(chain: Chain) -> None:
    """At one org's share of the nonce cache: 429 too_many_requests; at the whole cache's cap: 503 busy."""
    gate = AuthGate(chain_id=CHAIN, node_id=NODE, started_ms=0, view=chain.node.store.view, read_access="signed",
                    body_bytes_max=1 << 20)
    gate.verifier.nonces = NonceCache(nonces_max=2, org_nonces_max=1)
    app = web.Application(middlewares=[error_middleware, access_middleware])
    app[AUTH_GATE_KEY] = gate

    async def who(request: web.Request) -> web.Response:
        return web.json_response({})

    path = "/v1/dashboard/whoami"
    app.router.add_get(path, who)
    async with TestClient(TestServer(app)) as client:
        async def get(org: str) -> tuple[int, Any]:
            resp = await client.get(path, headers={"Authorization": chain.sign(org, "GET", path)})
            return resp.status, await resp.json()
        assert (await get("tier1"))[0] == 200
        status, doc = await get("tier1")
        assert status == 429 and doc["error"]["code"] == "too_many_requests"
        assert (await get("tier2"))[0] == 200
        status, doc = await get("tier3")
        assert status == 503 and doc["error"]["code"] == "busy"
