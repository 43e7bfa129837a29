"""Membership is governance (CONTRACT §6), end to end on real processes: `member.propose` / `member.approve`
transactions change the membership in state, and the cluster carries each approved change out (the leader
proposes the Raft change). No HTTP request on its own changes anything; a minority of approvals changes nothing.

- A voter, the leader, is removed: proposed by one org, approved by a majority of the orgs that run voting nodes;
  it hands leadership over, leaves the Raft configuration of the others and answers 503 `removed`; the rest keep
  committing without it.
- A node that is not in the cluster file joins: its addresses and key travel in an `add_learner` proposal that
  needs its org's approval too; it catches up as a learner, is promoted to voter (and then commits txs sent to
  it), and is removed again. The regulator's node follows the chain as a learner and is never promoted.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import pytest

from ecert.tx import make_tx
from node.client.api import Client, load_signer
from node.config import load_config
from tests.integration.conftest import CHAIN_ID, Cluster, http_json
from tests.polling import wait_for

pytestmark = pytest.mark.slow

_nonce = itertools.count(int(time.time() * 1000))
SETTLE_S = 1.0
"""How long a test waits to see that something does NOT happen (20 ticks: many reconcile passes)."""


def tx(c: Cluster, node_id: str, org: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Sign `kind` as `org`, submit it to `node_id` (POST /v1/tx is open: the envelope is its own signature) and
    wait for its outcome."""
    envelope = load_signer(c.config, org).sign(kind, body)
    doc: dict[str, Any] = Client([c.nodes[node_id].http_url]).submit(envelope)
    return doc


def committed(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["status"] == "committed", doc
    result: dict[str, Any] = doc["result"]
    return result


def rejected(doc: dict[str, Any]) -> str:
    assert doc["status"] == "rejected", doc
    code: str = doc["error"]["code"]
    return code


def raft_view(c: Cluster, node_id: str) -> tuple[list[str], list[str]]:
    st = c.status(node_id)
    return st["voters"], st["learners"]


def answers_removed(c: Cluster, node_id: str) -> bool:
    status, body = http_json("GET", c.url(node_id, "/v1/blocks"), timeout=3.0)
    return status == 503 and isinstance(body, dict) and body["error"]["code"] == "removed"


def test_a_voter_is_removed_by_a_majority_and_nothing_else_removes_it(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(4)  # boc, geely, tier1, tier2: four voting orgs, so a proposal needs 3
    everyone = sorted(c.nodes)
    leader = c.wait_leader()
    wait_for(lambda: all(raft_view(c, i) == (everyone, []) for i in everyone), 20.0, "four voters everywhere")
    # The leader itself is the node to remove: it hands leadership over, and its successor removes it.
    target = leader
    rest = [i for i in everyone if i != target]
    follower = rest[0]
    proposer, *approvers = ["boc", "geely", "tier1"]  # orgs that run voting nodes (node id = org id here)

    # No HTTP request changes membership: not the old admin route, not a forged proposal, not a non-voting org.
    status, body = http_json("POST", c.url(leader, "/admin/members"),
                             json.dumps({"action": "remove", "node_id": target}).encode())
    assert status == 403 and body["error"]["code"] == "governance_required", body
    forged = make_tx(os.urandom(32), CHAIN_ID, "member.propose", "boc", next(_nonce),
                     {"action": "remove", "node_id": target})
    status, body = c.submit(follower, forged)
    assert status == 400, body
    assert rejected(tx(c, follower, "tier3", "member.propose",
                       {"action": "remove", "node_id": target})) == "not_voting_org"
    assert rejected(tx(c, follower, "boc", "member.propose",
                       {"action": "promote", "node_id": "nobody"})) == "unknown_node"

    # One org proposes (through a follower: the tx is forwarded), a second approves: 2 of 4, short of 3.
    result = committed(tx(c, follower, proposer, "member.propose", {"action": "remove", "node_id": target}))
    assert (result["approvals"], result["needed"], result["effective"]) == (1, 3, False)
    proposal = {"proposal_id": result["proposal_id"]}
    assert rejected(tx(c, leader, proposer, "member.approve", proposal)) == "own_proposal"
    result = committed(tx(c, leader, approvers[0], "member.approve", proposal))
    assert (result["approvals"], result["effective"]) == (2, False)
    assert rejected(tx(c, leader, approvers[0], "member.approve", proposal)) == "already_approved"
    time.sleep(SETTLE_S)
    assert all(raft_view(c, i) == (everyone, []) for i in everyone)
    assert not answers_removed(c, target)

    # The third approval carries it out: the node leaves every other node's Raft configuration.
    result = committed(tx(c, follower, approvers[1], "member.approve", proposal))
    assert (result["approvals"], result["effective"]) == (3, True)
    wait_for(lambda: all(raft_view(c, i)[0] == rest for i in rest), 20.0, f"{target} to leave the voters")
    wait_for(lambda: answers_removed(c, target), 20.0, f"{target} to answer 503 removed")
    assert c.status(target)["removed"] is True
    events = [json.loads(line)["event"] for line in (c.nodes[target].data_dir / "node.log").read_text().splitlines()]
    assert "leadership_handed_over_before_removal" in events and "conf_change_proposed" not in events
    status, body = c.submit(target, c.anchor_tx("tier1"))
    assert status == 503 and body["error"]["code"] == "removed"
    assert rejected(tx(c, follower, approvers[1], "member.approve", proposal)) == "proposal_closed"

    # The rest keep committing; the removed node is cut off and falls behind.
    new_leader = c.wait_leader(among=rest)
    status, body = c.submit(new_leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body
    top = c.wait_converged(rest, min_height=body["height"])
    assert c.status(target)["height"] < top["height"]
    assert all(raft_view(c, i) == (rest, []) for i in rest)  # carried out once: nothing else changed
    members = Client([c.nodes[new_leader].http_url], signer=load_signer(c.config, "boc")).get("/v1/members")
    assert {m["id"]: m["status"] for m in members["members"]}[target] == "removed"


def test_a_voter_removed_while_it_was_down_is_told_by_a_quorum_when_it_comes_back(cluster_factory: Any) -> None:
    """The change that removes a node cannot reach it while it is down, and after it the others send it nothing:
    on restart its peers refuse it with signed removal notices, and once a quorum of the voters it knows has
    said so it answers 503 `removed` (CONTRACT §6 "Membership")."""
    c: Cluster = cluster_factory(4)
    everyone = sorted(c.nodes)
    leader = c.wait_leader()
    wait_for(lambda: all(raft_view(c, i) == (everyone, []) for i in everyone), 20.0, "four voters everywhere")
    target = next(i for i in everyone if i != leader)
    rest = [i for i in everyone if i != target]
    assert c.stop(target) == 0
    result = committed(tx(c, leader, rest[0], "member.propose", {"action": "remove", "node_id": target}))
    proposal = {"proposal_id": result["proposal_id"]}
    committed(tx(c, leader, rest[1], "member.approve", proposal))
    assert committed(tx(c, leader, rest[2], "member.approve", proposal))["effective"] is True
    wait_for(lambda: all(raft_view(c, i)[0] == rest for i in rest), 20.0, f"{target} to leave the voters")

    c.start(target)
    c.wait_up(target)
    wait_for(lambda: answers_removed(c, target), 30.0, f"{target} to learn it was removed")
    assert c.status(target)["removed"] is True
    records = [json.loads(line) for line in (c.nodes[target].data_dir / "node.log").read_text().splitlines()]
    told = [r for r in records if r["event"] == "removed_from_cluster"]
    assert len(told) == 1 and len(set(told[0]["told_by"]) & set(rest)) >= 3, told  # a quorum of its four voters
    # The rest carry on without it.
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body


def test_a_node_not_in_the_cluster_file_joins_is_promoted_and_removed(cluster_factory: Any) -> None:
    # boc, geely, tier1 vote; pbc (the regulator) runs a learner from genesis. tier2 has no node yet.
    c: Cluster = cluster_factory(3, regulator=True, start_learners=True)
    voters = ["boc", "geely", "tier1"]
    leader = c.wait_leader(among=voters)
    follower = next(i for i in voters if i != leader)

    # The regulator's node follows the whole chain as a learner, and no proposal may promote it.
    wait_for(lambda: c.status(leader)["learners"] == ["pbc"], 20.0, "pbc to be added as a learner")
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body
    c.wait_converged(min_height=body["height"])
    assert c.status("pbc")["role"] == "learner"
    assert rejected(tx(c, follower, "boc", "member.propose",
                       {"action": "promote", "node_id": "pbc"})) == "regulator_node"

    # The new node: its own cluster file (listing itself and the others) and genesis.json; it runs, but no peer
    # lets it in and it holds nothing.
    joiner = c.joining_node("tier2", "tier2").id
    c.start(joiner)
    c.wait_up(joiner)
    assert c.status(joiner)["height"] == 0
    assert rejected(tx(c, follower, "boc", "member.propose",
                       {"action": "promote", "node_id": joiner})) == "unknown_node"
    spec = load_config(c.config_paths[joiner]).node(joiner)
    add = {"action": "add_learner", "node_id": joiner, "org": "tier2", "raft": str(spec.raft),
           "http": str(spec.http), "node_pk": c.node_pk(joiner)}
    result = committed(tx(c, follower, "geely", "member.propose", add))
    assert (result["approvals"], result["needed"], result["org_approved"]) == (1, 2, False)
    proposal = {"proposal_id": result["proposal_id"]}
    # A majority of the voting orgs, but not yet the org that will run the node: nothing happens.
    result = committed(tx(c, leader, "tier1", "member.approve", proposal))
    assert (result["approvals"], result["effective"]) == (2, False)
    time.sleep(SETTLE_S)
    assert raft_view(c, leader) == (voters, ["pbc"]) and c.status(joiner)["height"] == 0

    result = committed(tx(c, leader, "tier2", "member.approve", proposal))
    assert result["effective"] is True
    wait_for(lambda: c.status(joiner)["role"] == "learner", 20.0, f"{joiner} to follow as a learner")
    top = c.wait_converged(min_height=c.status(leader)["height"])  # caught up, pbc too
    assert top["height"] >= 4
    assert raft_view(c, leader) == (voters, sorted(["pbc", joiner]))

    # Promoted by a majority of the three voting orgs: it becomes a voter once caught up, and commits.
    result = committed(tx(c, leader, "boc", "member.propose", {"action": "promote", "node_id": joiner}))
    committed(tx(c, follower, "tier1", "member.approve", {"proposal_id": result["proposal_id"]}))
    four = sorted([*voters, joiner])
    wait_for(lambda: raft_view(c, joiner) == (four, ["pbc"]) and c.status(joiner)["role"] in ("follower", "leader"),
             20.0, f"{joiner} to be a voter")
    status, body = c.submit(joiner, c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body

    # Removed again: four voting orgs now, so three approvals.
    result = committed(tx(c, leader, "geely", "member.propose", {"action": "remove", "node_id": joiner}))
    assert result["needed"] == 3
    for org in ("boc", "tier2"):
        result = committed(tx(c, follower, org, "member.approve", {"proposal_id": result["proposal_id"]}))
    assert result["effective"] is True
    wait_for(lambda: all(raft_view(c, i) == (voters, ["pbc"]) for i in voters), 20.0, f"{joiner} to leave")
    wait_for(lambda: answers_removed(c, joiner), 20.0, f"{joiner} to answer 503 removed")
    leader = c.wait_leader(among=voters)
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body
    c.wait_converged([*voters, "pbc"], min_height=body["height"])


def test_a_genesis_without_nodes_still_runs_ungoverned_and_a_wrong_node_key_does_not_start(
        cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(1, start=False)
    genesis = json.loads(c.config.genesis_path.read_text())
    key_file = c.config.keys_dir / "node-boc.key"
    real_key = key_file.read_text()
    # A stranger's key where boc's node key should be: the genesis membership says otherwise, so it refuses.
    key_file.write_text(os.urandom(32).hex() + "\n")
    c.start("boc")
    proc = c.nodes["boc"].proc
    assert proc is not None and proc.wait(20) == 1
    assert "is not the one genesis.json lists" in c.tail("boc")

    # A genesis written before governance (no "nodes"): the node starts, says so, and no proposal can pass.
    key_file.write_text(real_key)
    del genesis["nodes"]
    c.config.genesis_path.write_text(json.dumps(genesis))
    c.wipe("boc")
    c.start("boc")
    c.wait_leader()
    assert "membership is not governed" in c.tail("boc")
    assert rejected(tx(c, "boc", "boc", "member.propose", {"action": "remove", "node_id": "boc"})) == "not_voting_org"
    status, body = c.submit("boc", c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed", body
