"""Real 3-node clusters: election, submission through leader and followers, convergence, bad HTTP input."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import msgpack
import pytest

from tests.integration.conftest import CHAIN_ID, Cluster, http_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = Cluster.create(tmp_path_factory.mktemp("basic"), 3)
    try:
        c.start_all()
        c.wait_leader()
        yield c
    finally:
        c.close()


def _followers(c: Cluster, leader: str) -> list[str]:
    return [i for i in c.nodes if i != leader]


def test_three_nodes_elect_exactly_one_leader(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    roles = {i: cluster.status(i)["role"] for i in cluster.nodes}
    assert list(roles.values()).count("leader") == 1
    assert roles[leader] == "leader"
    st = cluster.status(leader)
    for key in ("node_id", "org", "pid", "role", "term", "leader_id", "commit_index", "applied_index", "height",
                "block_hash", "state_root"):
        assert key in st
    assert st["pid"] == cluster.nodes[leader].proc.pid  # type: ignore[union-attr]


def test_submit_through_leader_and_follower_commits_everywhere(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower = _followers(cluster, leader)[0]
    answers = []
    for target in (leader, follower):
        status, body = cluster.submit(target, cluster.anchor_tx("tier1"))
        assert status == 200, body
        assert body["status"] == "committed" and body["height"] >= 1
        assert body["result"]["status"] == "anchored"
        answers.append(body)
    # wait=commit means applied on the answering node: the follower sees it at once.
    status, got = http_json("GET", cluster.url(follower, f"/v1/tx/{answers[1]['tx_id']}"))
    assert status == 200 and got["status"] == "committed" and got["height"] == answers[1]["height"]
    top = cluster.wait_converged(min_height=answers[1]["height"])
    assert top["block_hash"] and top["state_root"]
    status, block = http_json("GET", cluster.url(follower, f"/v1/blocks/{answers[1]['height']}"))
    assert status == 200 and answers[1]["tx_id"] in block["txs"]
    assert {"height", "prev_hash", "tx_root", "time", "proposer", "hash"} <= set(block)
    assert block["proposer"] == leader


def test_json_envelope_wait_none_and_resubmission(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower = _followers(cluster, leader)[1]
    raw = cluster.anchor_tx("geely", counterparty="tier1")
    env = msgpack.unpackb(raw)
    doc = {"payload": base64.b64encode(env["payload"]).decode(), "signer": env["signer"],
           "sig": base64.b64encode(env["sig"]).decode()}
    status, body = http_json("POST", cluster.url(follower, "/v1/tx?wait=none"), json.dumps(doc).encode())
    assert status == 202 and body["status"] == "accepted"
    tx_id = body["tx_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, got = http_json("GET", cluster.url(follower, f"/v1/tx/{tx_id}"))
        if got["status"] == "committed":
            break
        time.sleep(0.05)
    assert got["status"] == "committed"
    # A resubmission (same payload bytes) returns the first outcome; it is applied at most once.
    status, again = cluster.submit(leader, raw)
    assert status == 200 and again["tx_id"] == tx_id and again["height"] == got["height"]
    # A never-seen tx id is "unknown".
    status, unknown = http_json("GET", cluster.url(leader, "/v1/tx/" + "0" * 64))
    assert status == 200 and unknown["status"] == "unknown"


def test_rule_rejection_is_a_committed_outcome(cluster: Cluster) -> None:
    from ecert.tx import make_tx

    leader = cluster.wait_leader()
    # A supplier may not grant credit: passes admission (valid signature, active signer), rejected by the rules.
    raw = make_tx(cluster.org_seed("tier1"), CHAIN_ID, "credit.grant", "tier1", int(time.time() * 1000),
                  {"core": "geely", "limit": 1000, "expires_at": int(time.time() * 1000) + 86_400_000})
    status, body = cluster.submit(leader, raw)
    assert status == 200, body
    assert body["status"] == "rejected" and isinstance(body["error"]["code"], str)


BAD_INPUTS = [
    ("malformed json", "/v1/tx", b"{not json", "application/json", 400),
    ("json not an envelope", "/v1/tx", b'{"a": 1}', "application/json", 400),
    ("json bad base64", "/v1/tx", b'{"payload": "!!", "signer": "boc", "sig": "!!"}', "application/json", 400),
    ("malformed msgpack", "/v1/tx", b"\xc1\xc1\xc1", "application/msgpack", 400),
    ("msgpack not a map", "/v1/tx", msgpack.packb([1, 2, 3]), "application/msgpack", 400),
    ("empty body", "/v1/tx", b"", "application/json", 400),
    ("bad wait", "/v1/tx?wait=maybe", b"{}", "application/json", 400),
    ("bad timeout", "/v1/tx?timeout_ms=-5", b"{}", "application/json", 400),
    ("bad timeout text", "/v1/tx?timeout_ms=1e9", b"{}", "application/json", 400),
    ("batch not a list", "/v1/txs", b'{"txs": 5}', "application/json", 400),
]


@pytest.mark.parametrize(("name", "path", "body", "ctype", "expect"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_a_json_4xx(cluster: Cluster, name: str, path: str, body: bytes, ctype: str,
                                 expect: int) -> None:
    status, got = http_json("POST", cluster.url("boc", path), body, content_type=ctype)
    assert status == expect, got
    assert isinstance(got, dict) and set(got["error"]) == {"code", "message"}


def test_bad_txs_are_refused_at_admission(cluster: Cluster) -> None:
    from ecert.tx import make_tx, sign_payload

    now = int(time.time() * 1000)
    seed = cluster.org_seed("tier1")
    cases = {
        "bad signature": make_tx(cluster.org_seed("tier2"), CHAIN_ID, "trade.anchor", "tier1", now,
                                 {"doc_id": "x1", "kind": "invoice", "doc_hash": "ab" * 32,
                                  "counterparty": "geely", "amount": 5}),
        "unknown type": make_tx(seed, CHAIN_ID, "cert.steal", "tier1", now, {}),
        "negative amount": make_tx(seed, CHAIN_ID, "trade.anchor", "tier1", now + 1,
                                   {"doc_id": "x2", "kind": "invoice", "doc_hash": "ab" * 32,
                                    "counterparty": "geely", "amount": -5}),
        "amount too big": make_tx(seed, CHAIN_ID, "trade.anchor", "tier1", now + 2,
                                  {"doc_id": "x3", "kind": "invoice", "doc_hash": "ab" * 32,
                                   "counterparty": "geely", "amount": 10**15 + 1}),
        "float amount": make_tx(seed, CHAIN_ID, "trade.anchor", "tier1", now + 3,
                                {"doc_id": "x4", "kind": "invoice", "doc_hash": "ab" * 32,
                                 "counterparty": "geely", "amount": 5.5}),
        "wrong chain": make_tx(seed, "other-chain", "trade.anchor", "tier1", now + 4,
                               {"doc_id": "x5", "kind": "invoice", "doc_hash": "ab" * 32,
                                "counterparty": "geely", "amount": 5}),
        "unknown signer": sign_payload(seed, {"chain_id": CHAIN_ID, "type": "trade.anchor", "signer": "mallory",
                                              "nonce": now, "body": {"doc_id": "x6", "kind": "invoice",
                                                                     "doc_hash": "ab" * 32,
                                                                     "counterparty": "geely", "amount": 5}}),
    }
    before = cluster.status("boc")["height"]
    for name, raw in cases.items():
        for node_id in ("boc", "geely"):
            status, got = cluster.submit(node_id, raw)
            assert 400 <= status < 500, (name, status, got)
            assert isinstance(got["error"]["code"], str) and got["error"]["code"], (name, got)
    assert cluster.status("boc")["height"] == before


def test_body_over_the_limit_is_413(cluster: Cluster) -> None:
    big = b"x" * (cluster.config.max_body_bytes + 10)
    status, got = http_json("POST", cluster.url("tier1", "/v1/tx"), big, content_type="application/msgpack")
    assert status == 413 and got["error"]["code"] == "body_too_large"


@pytest.mark.parametrize("path", ["/v1/blocks/abc", "/v1/blocks/-1", "/v1/blocks?limit=0", "/v1/blocks?before=x",
                                  "/v1/tx/xyz", "/v1/certs/c1?consistency=maybe"])
def test_bad_read_parameters_are_400(cluster: Cluster, path: str) -> None:
    status, got = cluster.signed("geely", "GET", "geely", path)
    assert status == 400, got
    assert got["error"]["code"]


@pytest.mark.parametrize("path", ["/v1/blocks/999999", "/v1/certs/nope", "/v1/certs/nope/lineage",
                                  "/v1/orgs/nope", "/v1/orgs/nope/certs", "/v1/nowhere",
                                  "/v1/docs/nope"])
def test_unknown_ids_are_404_json(cluster: Cluster, path: str) -> None:
    status, got = cluster.signed("geely", "GET", "geely", path)
    assert status == 404, got
    assert got["error"]["code"]


def test_reads_local_and_linearizable(cluster: Cluster) -> None:
    leader = cluster.wait_leader()
    follower = _followers(cluster, leader)[0]
    for node_id in (leader, follower):
        status, org = cluster.signed("tier1", "GET", node_id, "/v1/orgs/geely?consistency=linearizable")
        assert status == 200 and org["id"] == "geely" if "id" in org else org
        status, holdings = cluster.signed("tier1", "GET", node_id, "/v1/orgs/tier1/certs")
        assert status == 200 and holdings["certs"] == []
    status, api = http_json("GET", cluster.url(leader, "/openapi.json"))
    assert status == 200 and "/v1/tx" in api["paths"]
    status, view = http_json("GET", cluster.url(follower, "/v1/cluster"))
    assert status == 200 and view["leader_id"] == leader and len(view["nodes"]) == 3
    status, page = http_json("GET", cluster.url(follower, "/v1/blocks?limit=2"))
    assert status == 200 and len(page["blocks"]) == 2
    assert page["blocks"][0]["height"] == page["height"] and page["blocks"][1]["height"] == page["height"] - 1


def test_msgpack_answers_when_asked(cluster: Cluster) -> None:
    import urllib.request

    req = urllib.request.Request(cluster.url("tier1", "/v1/status"), headers={"Accept": "application/msgpack"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("application/msgpack")
        st = msgpack.unpackb(resp.read())
    assert st["node_id"] == "tier1"


def test_batch_submission(cluster: Cluster) -> None:
    raws = [cluster.anchor_tx("tier2", counterparty="geely") for _ in range(20)]
    status, got = http_json("POST", cluster.url("tier1", "/v1/txs"), msgpack.packb(raws),
                            content_type="application/msgpack")
    assert status == 200, got
    assert [r["status"] for r in got["results"]] == ["committed"] * 20
    # JSON form, with one bad envelope refused in place.
    good = cluster.anchor_tx("geely", counterparty="tier1")
    env = msgpack.unpackb(good)
    doc = {"txs": [{"payload": base64.b64encode(env["payload"]).decode(), "signer": "geely",
                    "sig": base64.b64encode(b"\x00" * 64).decode()},
                   {"payload": base64.b64encode(env["payload"]).decode(), "signer": "geely",
                    "sig": base64.b64encode(env["sig"]).decode()}]}
    status, got = http_json("POST", cluster.url("boc", "/v1/txs"), json.dumps(doc).encode())
    assert status == 200, got
    assert got["results"][0]["status"] == "refused" and got["results"][0]["error"]["code"]
    assert got["results"][1]["status"] == "committed"


def test_five_nodes_commit_through_every_node(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(5)
    leader = c.wait_leader()
    heights = []
    for node_id in c.nodes:
        status, body = c.submit(node_id, c.anchor_tx("tier3", counterparty="geely"))
        assert status == 200 and body["status"] == "committed", (node_id, body)
        heights.append(body["height"])
    top = c.wait_converged(min_height=max(heights))
    assert c.status(leader)["voters"] == sorted(c.nodes)
    assert top["height"] >= 1
