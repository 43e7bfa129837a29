"""Membership at run time through POST /admin/members: add a learner, promote it, remove a node."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Cluster, http_json
from tests.polling import wait_for

pytestmark = pytest.mark.slow


def _members(c: Cluster, node_id: str, action: str, target: str) -> tuple[int, Any]:
    return http_json("POST", c.url(node_id, "/admin/members"),
                     json.dumps({"action": action, "node_id": target}).encode())


def test_add_learner_promote_and_remove(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, learners=1)
    leader = c.wait_leader()
    spare = "tier2"
    follower = next(i for i in c.nodes if i not in (leader, spare))
    for _ in range(3):
        status, body = c.submit(leader, c.anchor_tx("tier1"))
        assert status == 200
    # The spare runs but is not a member yet: it follows nobody and holds nothing.
    c.start(spare)
    c.wait_up(spare)
    assert c.status(spare)["height"] == 0

    status, body = _members(c, leader, "promote", spare)
    assert status == 409 and body["error"]["code"] == "not_a_learner"
    status, body = _members(c, follower, "add_learner", spare)  # a follower forwards to the leader
    assert status == 200, body
    assert spare in body["learners"] and spare not in body["voters"]
    top = c.wait_converged()
    assert c.status(spare)["role"] == "learner"
    assert top["height"] >= 3

    status, body = _members(c, leader, "promote", spare)
    assert status == 200, body
    assert spare in body["voters"]
    wait_for(lambda: c.status(spare)["role"] == "follower" and len(c.status(spare)["voters"]) == 4, 15.0,
             "the spare to be a voter")
    status, body = c.submit(spare, c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body

    status, body = _members(c, leader, "remove", spare)
    assert status == 200, body
    assert spare not in body["voters"] and spare not in body["learners"]
    # The rest keep committing; the removed node is cut off and falls behind.
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed"
    rest = [i for i in c.nodes if i != spare]
    top = c.wait_converged(rest, min_height=body["height"])
    assert c.status(spare)["height"] < top["height"]

    status, body = _members(c, leader, "add_learner", "nobody")
    assert status == 404
    status, body = http_json("POST", c.url(leader, "/admin/members"), b'{"action": "explode", "node_id": "boc"}')
    assert status == 400
