"""Membership governance (CONTRACT §6, docs/RULES.md "Membership governance"): genesis nodes, member.propose /
member.approve through the executor, the reads, the Raft reconciliation plan, and a model-based test against an
independent reading of the rules.

Most scenarios run on `five()`: five orgs each running one voting node (majority 3), tier2 running a learner,
tier3 running none.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from consensus.invariant import InvariantViolation
from ecert import codes as C
from ecert import governance, lifecycle
from ecert import membership as m
from ecert.errors import GenesisError, TxRejected
from ecert.genesis import (
    GenesisDoc,
    GenesisNode,
    GenesisOrg,
    genesis_from_json,
    genesis_hash,
    genesis_to_json,
    genesis_writes,
)
from ecert.reconcile import ConfStep, next_conf_change
from ecert.rules import REGULATOR_TX_TYPES
from ecert.tx import decode_envelope, ipv6_hextets, is_ipv4, is_ipv6, tx_id_of, unroutable_host, v_address
from ledger.executor import TxOutcome
from tests.ecert.world import World, genesis_node, node_pk_for

VOTING = ("boc", "icbc", "geely", "byd", "tier1")
HOUR = 3_600_000
TTL = 24 * HOUR


def five() -> World:
    nodes = [genesis_node(f"n-{o}", o) for o in VOTING] + [genesis_node("n-tier2", "tier2", voter=False)]
    return World(nodes=nodes)


def new_node(node_id: str, org: str, host: str | None = None) -> dict[str, Any]:
    host = host or f"{node_id}.new.test"
    return {"action": "add_learner", "node_id": node_id, "org": org, "raft": f"{host}:9701",
            "http": f"{host}:8701", "node_pk": node_pk_for(node_id)}


def propose(w: World, signer: str, action: str, node_id: str) -> dict[str, Any]:
    return w.ok(signer, "member.propose", {"action": action, "node_id": node_id})


def approve(w: World, signer: str, proposal_id: str) -> dict[str, Any]:
    return w.ok(signer, "member.approve", {"proposal_id": proposal_id})


def status_of(w: World, node_id: str) -> str | None:
    member = m.get_member(w.view, node_id)
    return None if member is None else member.status


def proposal_status(w: World, proposal_id: str) -> str:
    got = governance.get_proposal(w.view, proposal_id, now=w.now)
    assert got is not None
    return str(got["status"])


def carried(w: World, action: str, node_id: str, proposer: str = "boc",
            approvers: tuple[str, ...] = ("icbc", "geely")) -> str:
    pid = propose(w, proposer, action, node_id)["proposal_id"]
    for org in approvers:
        result = approve(w, org, pid)
    assert result["effective"] is True
    return str(pid)


# --- genesis ------------------------------------------------------------------------------------------------------
def test_genesis_nodes_become_membership_records() -> None:
    w = five()
    members = m.membership(w.view)
    assert [x.id for x in members] == sorted(x.id for x in members)
    assert {x.id: x.status for x in members} == {**{f"n-{o}": "voter" for o in VOTING}, "n-tier2": "learner"}
    assert all(x.since == w.genesis.genesis_time and x.proposal_id is None for x in members)
    assert m.voter_orgs(w.view) == tuple(sorted(VOTING))
    assert m.genesis_voters(w.view) == 5
    got = governance.get_membership(w.view)
    assert (got["governed"], got["genesis_voters"], got["min_voters"]) == (True, 5, 3)
    assert got["learners"] == ["n-tier2"] and got["voter_orgs"] == sorted(VOTING)


def test_genesis_json_with_nodes_roundtrips_and_the_hash_covers_every_node_field() -> None:
    w = five()
    js = genesis_to_json(w.genesis)
    assert [n["id"] for n in js["nodes"]] == [n.id for n in w.genesis.nodes]
    assert genesis_from_json(copy.deepcopy(js)) == w.genesis
    base = genesis_hash(w.genesis)
    for field, value in (("id", "n-other"), ("org", "tier3"), ("raft", "x.test:1"), ("http", "x.test:2"),
                         ("node_pk", "ab" * 32), ("voter", False)):
        changed = copy.deepcopy(js)
        changed["nodes"][0][field] = value
        assert genesis_hash(genesis_from_json(changed)) != base, field
    reordered = copy.deepcopy(js)
    reordered["nodes"].reverse()
    assert genesis_hash(genesis_from_json(reordered)) != base  # order is part of the document
    assert genesis_writes(genesis_from_json(reordered)) == genesis_writes(w.genesis)  # the state is not


def test_genesis_without_nodes_loads_with_its_old_hash_and_an_empty_membership() -> None:
    w = World(legacy=True)
    js = genesis_to_json(w.genesis)
    assert "nodes" not in js
    doc = genesis_from_json(js)
    # The hash as it was computed before nodes existed, written out independently.
    import msgpack
    canonical = [doc.chain_id, doc.genesis_time, [[o.id, o.name, o.role, o.sign_pk, o.box_pk] for o in doc.orgs]]
    old = hashlib.sha256(b"ecert-genesis-v1" + msgpack.packb(canonical, use_bin_type=True)).digest()
    assert genesis_hash(doc) == old
    assert genesis_hash(genesis_from_json({**js, "nodes": []})) == old
    assert m.membership(w.view) == () and m.genesis_voters(w.view) == 0
    assert governance.get_membership(w.view)["governed"] is False
    w.fail(C.NOT_VOTING_ORG, "boc", "member.propose", new_node("n1", "boc"))
    assert next_conf_change(m.membership(w.view), {"a", "b"}, {"c"}) is None


@pytest.mark.parametrize("mutate", [
    lambda js: js.update(nodes={}),
    lambda js: js["nodes"][0].pop("voter"),
    lambda js: js["nodes"][0].update(extra=1),
    lambda js: js["nodes"][0].update(voter=1),
    lambda js: js["nodes"][0].update(org="ghost"),
    lambda js: js["nodes"][0].update(id="a/b"),
    lambda js: js["nodes"][0].update(raft="no-port"),
    lambda js: js["nodes"][0].update(http="::1:80"),
    lambda js: js["nodes"][0].update(node_pk="AB" * 32),
    lambda js: js["nodes"][1].update(id=js["nodes"][0]["id"]),
    lambda js: js["nodes"][1].update(node_pk=js["nodes"][0]["node_pk"]),
    lambda js: js["nodes"][1].update(raft=js["nodes"][0]["http"]),
    lambda js: js["nodes"][0].update(http=js["nodes"][0]["raft"].upper()),
    lambda js: [n.update(voter=False) for n in js["nodes"]],
])
def test_genesis_rejects_bad_nodes(mutate: Callable[[dict[str, Any]], object]) -> None:
    js = genesis_to_json(five().genesis)
    mutate(js)
    with pytest.raises(GenesisError):
        genesis_from_json(js)


def test_genesis_regulator_node_must_be_a_learner() -> None:
    w = five()
    k = w.key("pboc")
    orgs = (*w.genesis.orgs, GenesisOrg("pboc", "PBoC", m.REGULATOR_ROLE, k.sign_pk, k.box_pk))
    learner = GenesisDoc(w.genesis.chain_id, w.genesis.genesis_time, orgs,
                         (*w.genesis.nodes, genesis_node("n-pboc", "pboc", voter=False)))
    assert dict(genesis_writes(learner))[m.member_key("n-pboc")] is not None
    with pytest.raises(GenesisError, match="regulator"):
        GenesisDoc(w.genesis.chain_id, w.genesis.genesis_time, orgs,
                   (*w.genesis.nodes, genesis_node("n-pboc", "pboc", voter=True)))


def test_genesis_node_limit() -> None:
    w = World()
    nodes = tuple(GenesisNode(f"n{i}", "boc", f"h{i}.test:1", f"h{i}.test:2", node_pk_for(f"n{i}"), True)
                  for i in range(m.MEMBERS_MAX + 1))
    with pytest.raises(GenesisError, match="at most"):
        GenesisDoc(w.genesis.chain_id, w.genesis.genesis_time, w.genesis.orgs, nodes)


# --- addresses ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["127.0.0.1:9701", "[::1]:9701", "[2001:db8::7]:1", "localhost:65535",
                                     "node-1.Example.com:80", "[::ffff:10.0.0.1]:8701", "a:1"])
def test_good_addresses(address: str) -> None:
    assert v_address("raft", address) == address


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", ":80", "host:0", "host:65536", "host:080",
                                     "host:+80", "::1:80", "[::1]", "[1.2.3.4]:80", "[::1%eth0]:80",
                                     "999.1.1.1:80", "1.2.3:80", "01.2.3.4:80", "-host:80", "host-:80",
                                     "a..b:80", "a_b:80", "h\u00e9:80", "a" * 254 + ":80", "[::1]x:80", 80])
def test_bad_addresses(address: object) -> None:
    with pytest.raises(TxRejected) as info:
        v_address("raft", address)
    assert info.value.code == C.BAD_FIELD


@given(st.ip_addresses(v=6))
def test_every_ipv6_spelling_is_accepted(ip: ipaddress.IPv6Address) -> None:
    assert is_ipv6(ip.compressed) and is_ipv6(ip.exploded)
    assert v_address("raft", f"[{ip.compressed}]:1")


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_is_accepted(ip: ipaddress.IPv4Address) -> None:
    assert is_ipv4(str(ip)) and v_address("http", f"{ip}:8701")


@given(st.ip_addresses())
def test_unroutable_hosts_are_what_the_stdlib_calls_unspecified_multicast_or_reserved(
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    host = f"[{ip.compressed}]" if ip.version == 6 else str(ip)
    expected = (ip.is_unspecified or ip.is_multicast or (ip.version == 4 and (ip in ipaddress.ip_network("0.0.0.0/8")
                or ip in ipaddress.ip_network("240.0.0.0/4"))))
    assert (unroutable_host(host) is not None) == expected, host
    if ip.version == 6:
        assert ipv6_hextets(ip.compressed) == ipv6_hextets(ip.exploded) == tuple(
            int(ip) >> (16 * (7 - i)) & 0xFFFF for i in range(8))


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "[0:0:0:0:0:0:0:0]", "[::0.0.0.0]", "224.0.0.1",
                                  "255.255.255.255", "[ff02::1]", "0.1.2.3"])
def test_a_new_chain_refuses_a_learner_nobody_can_dial_and_an_old_chain_replays_as_before(host: str) -> None:
    for field in ("raft", "http"):
        body = {**new_node("n9", "boc"), field: f"{host}:9{len(field)}01"}
        outcome = routable_five().run("boc", "member.propose", body)
        assert (outcome.status, outcome.error_code) == ("rejected", C.UNROUTABLE_ADDRESS), outcome
        assert field in (outcome.error_message or "")
        assert five().run("boc", "member.propose", body).status == "committed"  # the parameter off: as it was
    for fine in ("127.0.0.1", "[::1]", "10.0.0.5", "node9.example", "[2001:db8::1]"):
        body = {**new_node("n9", "boc"), "raft": f"{fine}:9701", "http": f"{fine}:8701"}
        assert routable_five().run("boc", "member.propose", body).status == "committed", fine


def _stdlib_ipv6(text: str) -> bool:
    if "%" in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=2000)
@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=46))
def test_ipv6_syntax_agrees_with_the_stdlib(text: str) -> None:
    assert is_ipv6(text) == _stdlib_ipv6(text)


@settings(max_examples=1000)
@given(st.text(alphabet="0123456789.", max_size=16))
def test_ipv4_syntax_agrees_with_the_stdlib(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        expected = True
    except ValueError:
        expected = False
    assert is_ipv4(text) == expected


# --- decoding -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "code"), [
    ({"action": "add_learner", "node_id": "n1", "org": "boc", "raft": "a.test:1", "http": "a.test:2"},
     C.MISSING_FIELD),
    ({"action": "promote", "node_id": "n-tier2", "org": "tier2"}, C.UNKNOWN_FIELD),
    ({"action": "remove", "node_id": "n-tier2", "node_pk": "00" * 32}, C.UNKNOWN_FIELD),
    ({"action": "demote", "node_id": "n-tier2"}, C.BAD_FIELD),
    ({"action": "promote"}, C.MISSING_FIELD),
    ({"action": "promote", "node_id": "n-tier2", "colour": "red"}, C.UNKNOWN_FIELD),
    ({**new_node("n1", "boc"), "raft": "a.test"}, C.BAD_FIELD),
    ({**new_node("n1", "boc"), "node_pk": "AB" * 32}, C.BAD_FIELD),
])
def test_propose_body_schema(body: dict[str, Any], code: str) -> None:
    five().fail(code, "boc", "member.propose", body)


def test_approve_body_schema() -> None:
    w = five()
    w.fail(C.MISSING_FIELD, "boc", "member.approve", {})
    w.fail(C.BAD_FIELD, "boc", "member.approve", {"proposal_id": 7})


# --- flows --------------------------------------------------------------------------------------------------------
def test_proposal_id_is_derived_from_the_tx_id() -> None:
    w = five()
    raw = w.raw("boc", "member.propose", {"action": "promote", "node_id": "n-tier2"})
    outcome = w.apply(raw)
    tx_id = tx_id_of(decode_envelope(raw).payload)
    assert outcome.result is not None
    assert outcome.result["proposal_id"] == "MP" + hashlib.sha256(b"member.propose" + bytes.fromhex(tx_id)
                                                                  ).hexdigest()[:32]


def test_promote_needs_a_majority_of_voting_orgs() -> None:
    w = five()
    first = propose(w, "boc", "promote", "n-tier2")
    assert first == {"proposal_id": first["proposal_id"], "action": "promote", "node_id": "n-tier2",
                     "approvals": 1, "needed": 3, "effective": False, "status": "open"}
    pid = first["proposal_id"]
    assert approve(w, "icbc", pid)["approvals"] == 2
    assert status_of(w, "n-tier2") == "learner"
    w.now += 1000
    done = approve(w, "byd", pid)
    assert (done["approvals"], done["needed"], done["effective"], done["status"]) == (3, 3, True, "effective")
    member = m.get_member(w.view, "n-tier2")
    assert member is not None and (member.status, member.since, member.proposal_id) == ("voter", w.now, pid)
    got = governance.get_proposal(w.view, pid, now=w.now)
    assert got is not None
    assert (got["approved_by"], got["electorate"], got["closed_at"]) == (["boc", "icbc", "byd"], sorted(VOTING),
                                                                         w.now)
    assert "tier2" in m.voter_orgs(w.view)
    w.fail(C.PROPOSAL_CLOSED, "geely", "member.approve", {"proposal_id": pid})


def test_remove_a_voter_and_a_learner() -> None:
    w = five()
    carried(w, "remove", "n-tier1")
    assert status_of(w, "n-tier1") == "removed"
    assert "tier1" not in m.voter_orgs(w.view)
    carried(w, "remove", "n-tier2")
    assert status_of(w, "n-tier2") == "removed"
    # tier1 runs no voting node any more: it may neither propose nor approve.
    w.fail(C.NOT_VOTING_ORG, "tier1", "member.propose", {"action": "remove", "node_id": "n-byd"})
    pid = propose(w, "boc", "remove", "n-byd")["proposal_id"]
    assert governance.get_proposal(w.view, pid)["needed"] == 3  # type: ignore[index]  # 4 voting orgs now
    w.fail(C.NOT_VOTING_ORG, "tier1", "member.approve", {"proposal_id": pid})


def test_add_learner_needs_the_majority_and_the_new_nodes_org() -> None:
    w = five()
    result = w.ok("boc", "member.propose", new_node("n-tier3", "tier3"))
    pid = result["proposal_id"]
    assert (result["org"], result["org_approved"], result["needed"]) == ("tier3", False, 3)
    approve(w, "icbc", pid)
    almost = approve(w, "geely", pid)
    assert (almost["approvals"], almost["effective"], almost["org_approved"]) == (3, False, False)
    assert status_of(w, "n-tier3") is None
    done = approve(w, "tier3", pid)  # the org is not in the electorate: its approval does not count toward 3
    assert (done["approvals"], done["effective"], done["org_approved"]) == (3, True, True)
    member = m.get_member(w.view, "n-tier3")
    assert member is not None
    assert (member.org, member.status, member.raft, member.node_pk) == ("tier3", "learner", "n-tier3.new.test:9701",
                                                                        node_pk_for("n-tier3"))
    assert next_conf_change(m.membership(w.view), {f"n-{o}" for o in VOTING}, {"n-tier2"}) == \
        ConfStep("add_learner", "n-tier3")


def test_add_learner_org_may_approve_first() -> None:
    w = five()
    pid = w.ok("boc", "member.propose", new_node("n-tier3", "tier3"))["proposal_id"]
    assert approve(w, "tier3", pid)["org_approved"] is True
    approve(w, "icbc", pid)
    assert approve(w, "byd", pid)["effective"] is True


def test_add_learner_for_a_voting_org_counts_its_approval_once_for_both() -> None:
    w = five()
    pid = w.ok("boc", "member.propose", new_node("n-boc-2", "boc"))["proposal_id"]  # the proposer is O
    approve(w, "icbc", pid)
    assert approve(w, "geely", pid)["effective"] is True
    pid = w.ok("boc", "member.propose", new_node("n-icbc-2", "icbc"))["proposal_id"]
    approve(w, "geely", pid)
    assert approve(w, "icbc", pid)["effective"] is True  # icbc's approval is both a vote and O's consent


def test_add_learner_whose_org_was_frozen_waits_for_it() -> None:
    w = five()
    pid = w.ok("boc", "member.propose", new_node("n-tier3", "tier3"))["proposal_id"]
    approve(w, "tier3", pid)
    approve(w, "icbc", pid)
    w.ok("boc", "org.freeze", {"org_id": "tier3"})
    w.fail(C.ORG_NOT_ACTIVE, "geely", "member.approve", {"proposal_id": pid})
    w.ok("boc", "org.unfreeze", {"org_id": "tier3"})
    assert approve(w, "geely", pid)["effective"] is True


def test_a_lone_voting_org_carries_its_own_proposal_at_once() -> None:
    w = World(nodes=[genesis_node("solo", "boc"), genesis_node("n-geely", "geely", voter=False)])
    result = propose(w, "boc", "promote", "n-geely")
    assert (result["needed"], result["effective"]) == (1, True)
    assert status_of(w, "n-geely") == "voter"


def test_two_voting_orgs_need_both() -> None:
    w = World(nodes=[genesis_node("a", "boc"), genesis_node("b", "icbc"), genesis_node("c", "geely", False)])
    pid = propose(w, "boc", "promote", "c")["proposal_id"]
    assert governance.get_proposal(w.view, pid)["needed"] == 2  # type: ignore[index]
    assert approve(w, "icbc", pid)["effective"] is True


def test_an_org_with_two_voting_nodes_counts_once() -> None:
    w = World(nodes=[genesis_node("a1", "boc"), genesis_node("a2", "boc"), genesis_node("b", "icbc"),
                     genesis_node("c", "geely"), genesis_node("d", "byd", voter=False)])
    pid = propose(w, "boc", "promote", "d")["proposal_id"]
    got = governance.get_proposal(w.view, pid)
    assert got is not None and (got["electorate"], got["needed"]) == (["boc", "geely", "icbc"], 2)


# --- expiry and superseding ---------------------------------------------------------------------------------------
def test_expiry_at_24_hours_of_block_time() -> None:
    w = five()
    created = w.now
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    got = governance.get_proposal(w.view, pid)
    assert got is not None and got["expires_at"] == created + TTL == created + m.PROPOSAL_TTL_MS
    w.now = created + TTL - 1
    approve(w, "icbc", pid)
    assert proposal_status(w, pid) == "open"
    w.now = created + TTL
    assert proposal_status(w, pid) == "expired"  # derived by the read ...
    assert m.get_proposal(w.view, pid).status == "open"  # type: ignore[union-attr]  # ... while stored open
    assert governance.get_proposal(w.view, pid)["status"] == "open"  # type: ignore[index]  # no time given
    w.fail(C.PROPOSAL_EXPIRED, "geely", "member.approve", {"proposal_id": pid})
    assert status_of(w, "n-tier2") == "learner"


def test_carrying_one_out_supersedes_every_other_open_proposal() -> None:
    w = five()
    stale = propose(w, "icbc", "remove", "n-tier2")["proposal_id"]
    w.now += TTL  # `stale` is past its expiry but still stored open
    other = propose(w, "geely", "remove", "n-tier2")["proposal_id"]
    rival = w.ok("byd", "member.propose", new_node("n-tier3", "tier3"))["proposal_id"]
    winner = carried(w, "promote", "n-tier2", approvers=("icbc", "tier1"))
    for pid, status in ((other, "superseded"), (rival, "superseded"), (stale, "expired"), (winner, "effective")):
        assert m.get_proposal(w.view, pid).status == status  # type: ignore[union-attr]
    got = governance.get_proposal(w.view, other)
    assert got is not None and (got["closed_by"], got["closed_at"]) == (winner, w.now)
    assert m.open_proposal_ids(w.view) == []
    w.fail(C.PROPOSAL_CLOSED, "boc", "member.approve", {"proposal_id": other})
    w.fail(C.PROPOSAL_EXPIRED, "boc", "member.approve", {"proposal_id": stale})


def test_open_proposals_per_org_are_capped_and_expired_ones_make_room() -> None:
    w = five()
    first = [propose(w, "boc", "remove", "n-tier2")["proposal_id"] for _ in range(m.OPEN_PROPOSALS_PER_ORG_MAX)]
    w.fail(C.TOO_MANY_PROPOSALS, "boc", "member.propose", {"action": "remove", "node_id": "n-tier2"})
    propose(w, "icbc", "remove", "n-tier2")  # the cap is per org
    w.now += TTL
    propose(w, "boc", "remove", "n-tier2")
    assert all(m.get_proposal(w.view, pid).status == "expired" for pid in first)  # type: ignore[union-attr]
    assert len(m.open_proposal_ids(w.view, "boc")) == 1


def test_list_proposals_is_newest_first_and_pages() -> None:
    w = five()
    ids = [propose(w, org, "remove", "n-tier2")["proposal_id"] for org in VOTING]
    page = governance.list_proposals(w.view, now=w.now, limit=2)
    assert [p["id"] for p in page["proposals"]] == ids[::-1][:2] and page["total"] == 5
    rest = governance.list_proposals(w.view, now=w.now, limit=10, before=page["next_before"])
    assert [p["id"] for p in rest["proposals"]] == ids[::-1][2:] and rest["next_before"] is None
    w.now += TTL
    assert {p["status"] for p in governance.list_proposals(w.view, now=w.now)["proposals"]} == {"expired"}
    assert governance.list_proposals(w.view, before=0)["proposals"] == []
    assert governance.get_proposal(w.view, "MP" + "0" * 32) is None


# --- refusals -----------------------------------------------------------------------------------------------------
def test_proposer_must_run_a_voting_node() -> None:
    w = five()
    w.fail(C.NOT_VOTING_ORG, "tier2", "member.propose", {"action": "promote", "node_id": "n-tier2"})  # a learner
    w.fail(C.NOT_VOTING_ORG, "tier3", "member.propose", {"action": "promote", "node_id": "n-tier2"})  # no node


def test_approver_must_have_run_a_voting_node_when_it_was_proposed() -> None:
    w = five()
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    w.fail(C.NOT_VOTING_ORG, "tier2", "member.approve", {"proposal_id": pid})
    w.fail(C.NOT_VOTING_ORG, "tier3", "member.approve", {"proposal_id": pid})


def test_min_voters_rule() -> None:
    w = five()  # 5 voters at genesis: never fewer than 3
    carried(w, "remove", "n-tier1")
    carried(w, "remove", "n-byd")
    out = w.fail(C.TOO_FEW_VOTERS, "boc", "member.propose", {"action": "remove", "node_id": "n-geely"})
    assert "fewer than 3" in (out.error_message or "")
    carried(w, "remove", "n-tier2", approvers=("icbc",))  # removing a learner is always fine (3 orgs: need 2)
    pid = w.ok("boc", "member.propose", new_node("n-new", "tier3"))["proposal_id"]
    approve(w, "icbc", pid)
    approve(w, "tier3", pid)
    carried(w, "promote", "n-new", approvers=("icbc",))
    carried(w, "remove", "n-geely", approvers=("icbc", "tier3"))  # 4 voters -> 3
    two = World(nodes=[genesis_node("a", "boc"), genesis_node("b", "icbc")])  # 2 at genesis: never fewer than 2
    two.fail(C.TOO_FEW_VOTERS, "boc", "member.propose", {"action": "remove", "node_id": "b"})
    assert m.min_voters(1) == 1 and m.min_voters(7) == 3


def test_the_regulators_node_is_never_promoted() -> None:
    w = five()
    w.set_role("tier2", m.REGULATOR_ROLE)
    w.fail(C.REGULATOR_NODE, "boc", "member.propose", {"action": "promote", "node_id": "n-tier2"})
    carried(w, "remove", "n-tier2")  # it may still be removed


@pytest.mark.parametrize(("action", "node_id", "code"), [
    ("promote", "n-boc", C.NOT_A_LEARNER),
    ("promote", "ghost", C.UNKNOWN_NODE),
    ("remove", "ghost", C.UNKNOWN_NODE),
])
def test_promote_and_remove_need_a_fitting_node(action: str, node_id: str, code: str) -> None:
    five().fail(code, "boc", "member.propose", {"action": action, "node_id": node_id})


def test_a_removed_node_stays_removed() -> None:
    w = five()
    carried(w, "remove", "n-tier2")
    w.fail(C.NODE_REMOVED, "boc", "member.propose", {"action": "remove", "node_id": "n-tier2"})
    w.fail(C.NODE_REMOVED, "boc", "member.propose", {"action": "promote", "node_id": "n-tier2"})
    w.fail(C.NODE_EXISTS, "boc", "member.propose", new_node("n-tier2", "tier2"))  # ids are never reused
    old = m.get_member(w.view, "n-tier2")
    assert old is not None
    w.fail(C.NODE_PK_IN_USE, "boc", "member.propose", {**new_node("n-tier2b", "tier2"), "node_pk": old.node_pk})
    # Its addresses are free again: a replacement may run on the same host.
    w.ok("boc", "member.propose", {**new_node("n-tier2b", "tier2"), "raft": old.raft, "http": old.http})


def test_add_learner_refusals() -> None:
    w = five()
    taken = m.get_member(w.view, "n-boc")
    assert taken is not None
    w.fail(C.NODE_EXISTS, "boc", "member.propose", new_node("n-boc", "boc"))
    w.fail(C.NODE_PK_IN_USE, "boc", "member.propose", {**new_node("n9", "boc"), "node_pk": taken.node_pk})
    w.fail(C.ADDRESS_IN_USE, "boc", "member.propose", {**new_node("n9", "boc"), "raft": taken.http})
    w.fail(C.ADDRESS_IN_USE, "boc", "member.propose", {**new_node("n9", "boc"), "http": taken.raft.upper()})
    w.fail(C.ADDRESS_IN_USE, "boc", "member.propose", {**new_node("n9", "boc"), "http": "n9.new.test:9701"})
    w.fail(C.UNKNOWN_ORG, "boc", "member.propose", new_node("n9", "ghost"))
    k = w.key("newco")
    w.ok("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier", "sign_pk": k.sign_pk,
                                   "box_pk": k.box_pk})
    w.fail(C.ORG_NOT_ACTIVE, "boc", "member.propose", new_node("n9", "newco"))


def test_membership_full(monkeypatch: pytest.MonkeyPatch) -> None:
    w = five()
    monkeypatch.setattr(m, "MEMBERS_MAX", 7)
    pid = w.ok("boc", "member.propose", new_node("n7", "boc"))["proposal_id"]
    approve(w, "icbc", pid)
    approve(w, "geely", pid)
    w.fail(C.MEMBERSHIP_FULL, "boc", "member.propose", new_node("n8", "boc"))


def test_approval_refusals() -> None:
    w = five()
    w.fail(C.UNKNOWN_PROPOSAL, "icbc", "member.approve", {"proposal_id": "MP" + "0" * 32})
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    w.fail(C.OWN_PROPOSAL, "boc", "member.approve", {"proposal_id": pid})
    approve(w, "icbc", pid)
    w.fail(C.ALREADY_APPROVED, "icbc", "member.approve", {"proposal_id": pid})
    approve(w, "geely", pid)
    w.fail(C.PROPOSAL_CLOSED, "byd", "member.approve", {"proposal_id": pid})


# --- lifecycle table ----------------------------------------------------------------------------------------------
def test_proposal_transitions() -> None:
    assert lifecycle.next_proposal_status("open", lifecycle.CARRY_OUT) == "effective"
    assert lifecycle.next_proposal_status("open", lifecycle.SUPERSEDE) == "superseded"
    assert lifecycle.next_proposal_status("open", lifecycle.EXPIRE) == "expired"
    assert lifecycle.next_proposal_status("open", lifecycle.APPROVE) == "open"
    for final in ("effective", "superseded", "expired"):
        for event in lifecycle.PROPOSAL_EVENTS:
            with pytest.raises(TxRejected) as info:
                lifecycle.next_proposal_status(final, event)
            assert info.value.code == C.INVALID_STATUS_TRANSITION
    with pytest.raises(InvariantViolation):
        lifecycle.check_proposal_table({("open", "vanish"): "gone"})


# --- every new code, for tests/ecert/test_codes.py ----------------------------------------------------------------
def _fresh(run: Callable[[World], TxOutcome]) -> Callable[[World], TxOutcome]:
    """test_codes hands each case a World without nodes; governance cases need the five-org one."""
    return lambda _w: run(five())


def _expired(w: World) -> TxOutcome:
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    w.now += TTL
    return w.run("icbc", "member.approve", {"proposal_id": pid})


def _closed(w: World) -> TxOutcome:
    pid = carried(w, "promote", "n-tier2")
    return w.run("byd", "member.approve", {"proposal_id": pid})


def _own(w: World) -> TxOutcome:
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    return w.run("boc", "member.approve", {"proposal_id": pid})


def _twice(w: World) -> TxOutcome:
    pid = propose(w, "boc", "promote", "n-tier2")["proposal_id"]
    approve(w, "icbc", pid)
    return w.run("icbc", "member.approve", {"proposal_id": pid})


def _too_many(w: World) -> TxOutcome:
    for _ in range(m.OPEN_PROPOSALS_PER_ORG_MAX):
        propose(w, "boc", "promote", "n-tier2")
    return w.run("boc", "member.propose", {"action": "promote", "node_id": "n-tier2"})


def _too_few(w: World) -> TxOutcome:
    carried(w, "remove", "n-tier1")
    carried(w, "remove", "n-byd")
    return w.run("boc", "member.propose", {"action": "remove", "node_id": "n-icbc"})


def _regulator(w: World) -> TxOutcome:
    w.set_role("tier2", m.REGULATOR_ROLE)
    return w.run("boc", "member.propose", {"action": "promote", "node_id": "n-tier2"})


def _removed(w: World) -> TxOutcome:
    carried(w, "remove", "n-tier2")
    return w.run("boc", "member.propose", {"action": "remove", "node_id": "n-tier2"})


def _full(w: World) -> TxOutcome:
    original = m.MEMBERS_MAX
    m.MEMBERS_MAX = len(m.membership(w.view))
    try:
        return w.run("boc", "member.propose", new_node("n9", "boc"))
    finally:
        m.MEMBERS_MAX = original


def _pk_in_use(w: World) -> TxOutcome:
    return w.run("boc", "member.propose", {**new_node("n9", "boc"), "node_pk": node_pk_for("n-boc")})


def _address_in_use(w: World) -> TxOutcome:
    member = m.get_member(w.view, "n-boc")
    assert member is not None
    return w.run("boc", "member.propose", {**new_node("n9", "boc"), "raft": member.raft})


def routable_five() -> World:
    nodes = [genesis_node(f"n-{o}", o) for o in VOTING] + [genesis_node("n-tier2", "tier2", voter=False)]
    return World(nodes=nodes, params={"member_address_routable": True})


def _unroutable(_w: World) -> TxOutcome:
    return routable_five().run("boc", "member.propose", {**new_node("n9", "boc"), "raft": "0.0.0.0:9701"})


GOVERNANCE_CASES: dict[str, Callable[[World], TxOutcome]] = {C.UNROUTABLE_ADDRESS: _unroutable} | {
    code: _fresh(run) for code, run in {
    C.NOT_VOTING_ORG: lambda w: w.run("tier3", "member.propose", {"action": "promote", "node_id": "n-tier2"}),
    C.TOO_MANY_PROPOSALS: _too_many,
    C.TOO_FEW_VOTERS: _too_few,
    C.REGULATOR_NODE: _regulator,
    C.NOT_A_LEARNER: lambda w: w.run("boc", "member.propose", {"action": "promote", "node_id": "n-icbc"}),
    C.UNKNOWN_NODE: lambda w: w.run("boc", "member.propose", {"action": "remove", "node_id": "ghost"}),
    C.NODE_REMOVED: _removed,
    C.NODE_EXISTS: lambda w: w.run("boc", "member.propose", new_node("n-icbc", "icbc")),
    C.NODE_PK_IN_USE: _pk_in_use,
    C.ADDRESS_IN_USE: _address_in_use,
    C.MEMBERSHIP_FULL: _full,
    C.UNKNOWN_PROPOSAL: lambda w: w.run("boc", "member.approve", {"proposal_id": "MP" + "0" * 32}),
    C.PROPOSAL_EXPIRED: _expired,
    C.PROPOSAL_CLOSED: _closed,
    C.OWN_PROPOSAL: _own,
    C.ALREADY_APPROVED: _twice,
}.items()}
"""One scenario per governance code; tests/ecert/test_codes.py merges these into its CASES."""


def test_every_governance_code_has_a_case() -> None:
    new = {value for name, value in vars(C).items() if name.isupper() and isinstance(value, str)
           and value in GOVERNANCE_CASES}
    assert set(GOVERNANCE_CASES) == new
    for code, case in GOVERNANCE_CASES.items():
        outcome = case(World())
        assert (outcome.status, outcome.error_code) == ("rejected", code), outcome.error_message


# --- reconciliation -----------------------------------------------------------------------------------------------
def member(node_id: str, status: str) -> m.NodeMember:
    return m.NodeMember(node_id, "org", f"{node_id}.test:1", f"{node_id}.test:2", node_pk_for(node_id), status, 0)


def apply_step(step: ConfStep, voters: set[str], learners: set[str]) -> None:
    """What consensus.raft.Raft.apply_conf_change does with each kind of change."""
    if step.action == "promote":
        learners.discard(step.node_id)
        voters.add(step.node_id)
    elif step.action == "add_learner":
        if step.node_id not in voters:
            learners.add(step.node_id)
    else:
        assert step.action == "remove"
        voters.discard(step.node_id)
        learners.discard(step.node_id)


def plan(members: list[m.NodeMember], voters: set[str], learners: set[str]) -> list[ConfStep]:
    steps = []
    while (step := next_conf_change(members, voters, learners)) is not None:
        steps.append(step)
        apply_step(step, voters, learners)
        assert len(steps) <= 3 * (len(members) + len(voters) + len(learners)) + 3, steps
    return steps


def test_replacing_a_voter_promotes_before_it_removes() -> None:
    members = [member("a", "removed"), member("b", "voter"), member("c", "voter"), member("d", "voter")]
    assert plan(members, {"a", "b", "c"}, set()) == [ConfStep("add_learner", "d"), ConfStep("promote", "d"),
                                                     ConfStep("remove", "a")]


def test_a_backlog_of_changes_never_shrinks_raft_below_the_target() -> None:
    # Promote d, remove a, promote e, remove b were all carried out before the leader reconciled anything.
    members = [member("a", "removed"), member("b", "removed"), member("c", "voter"), member("d", "voter"),
               member("e", "voter"), member("f", "learner")]
    voters, learners = {"a", "b", "c"}, {"d", "x"}
    steps = plan(members, voters, learners)
    # Raft voters go 3 -> 4 -> 3 -> 4 -> 3: a removal waits until it no longer takes them below the target.
    assert steps == [ConfStep("remove", "x"), ConfStep("add_learner", "e"), ConfStep("add_learner", "f"),
                     ConfStep("promote", "d"), ConfStep("remove", "a"), ConfStep("promote", "e"),
                     ConfStep("remove", "b")]
    assert (voters, learners) == ({"c", "d", "e"}, {"f"})


def test_a_state_learner_that_raft_runs_as_voter_is_demoted_by_remove_and_add() -> None:
    members = [member("a", "voter"), member("b", "voter"), member("c", "voter"), member("d", "learner")]
    assert plan(members, {"a", "b", "c", "d"}, set()) == [ConfStep("remove", "d"), ConfStep("add_learner", "d")]


def test_the_last_raft_voter_is_never_removed() -> None:
    assert next_conf_change([member("a", "removed"), member("b", "learner")], {"a"}, {"b"}) is None
    with pytest.raises(InvariantViolation):
        next_conf_change([member("a", "voter")], {"a"}, {"a"})


STATUSES = st.sampled_from(["voter", "learner", "removed"])
POOL = [f"n{i}" for i in range(7)]


@st.composite
def configurations(draw: st.DrawFn) -> tuple[list[m.NodeMember], set[str], set[str]]:
    listed = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=len(POOL)))
    members = [member(node_id, draw(STATUSES)) for node_id in listed]
    roles = {node_id: draw(st.sampled_from(["voter", "learner", "none"])) for node_id in POOL}
    voters = {n for n, r in roles.items() if r == "voter"}
    learners = {n for n, r in roles.items() if r == "learner"}
    return members, voters, learners


@settings(max_examples=500)
@given(configurations(), st.randoms(use_true_random=False))
def test_reconciliation_converges_safely_one_change_at_a_time(
        config: tuple[list[m.NodeMember], set[str], set[str]], rnd: Any) -> None:
    members, voters, learners = config
    initial_voters = set(voters)
    want_voters = {x.id for x in members if x.status == "voter"}
    want_learners = {x.id for x in members if x.status == "learner"}
    floor = min(len(voters), len(want_voters))
    shuffled = list(members)
    rnd.shuffle(shuffled)
    assert next_conf_change(shuffled, list(voters), list(learners)) == next_conf_change(members, voters, learners)
    steps: list[ConfStep] = []
    while (step := next_conf_change(members, voters, learners)) is not None:
        before = (set(voters), set(learners))
        if step.action == "add_learner":
            assert step.node_id in want_voters | want_learners and step.node_id not in voters | learners
        elif step.action == "promote":
            assert step.node_id in want_voters and step.node_id in learners
        else:
            assert step.node_id not in want_voters or step.node_id not in voters
            assert step.node_id not in want_learners or step.node_id in voters
        apply_step(step, voters, learners)
        assert (voters, learners) != before  # every step changes something: nothing is carried out twice
        if before[0]:
            assert voters, "the last voter was removed"
        assert len(voters) >= min(floor, len(before[0])), (step, before, voters)
        steps.append(step)
        assert len(steps) <= 2 * len(POOL)
    if not members:
        assert steps == []
    elif want_voters:
        assert (voters, learners) == (want_voters, want_learners)
    else:  # the state lists no voter (the rules never allow it): Raft's voters are left alone
        assert voters == initial_voters and learners == want_learners - voters


# --- model-based: the rules against an independent reading of CONTRACT §6 -----------------------------------------
def model_proposal_id(tx_id: str) -> str:
    return "MP" + hashlib.sha256(b"member.propose" + bytes.fromhex(tx_id)).hexdigest()[:32]


ORGS = ["boc", "icbc", "geely", "byd", "tier1", "tier2", "tier3"]
SIGNERS = [*ORGS, "newco"]
NEW_IDS = ["x1", "x2", "x3", "x4"]
NODE_IDS = ["n-boc", "n-icbc", "n-geely", "n-byd", "n-tier1", "n-tier2", *NEW_IDS, "ghost"]
SIGNER = st.one_of(st.sampled_from(VOTING), st.sampled_from(SIGNERS))  # voting orgs half the time
REUSE = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(NODE_IDS[:6]))  # another node's key/address


class GovernanceModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = five()
        self.nodes: dict[str, dict[str, Any]] = {
            n.id: {"org": n.org, "status": "voter" if n.voter else "learner", "pk": n.node_pk,
                   "addrs": {n.raft.lower(), n.http.lower()}} for n in self.w.genesis.nodes}
        self.org_status = {o: "active" for o in ORGS}
        self.roles = {o: "supplier" for o in ORGS}
        self.proposals: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.pk_seq = itertools.count()
        self.host_seq = itertools.count()

    # --- the model's reading of the rules ----------------------------------------------------------------------
    def voter_orgs(self) -> set[str]:
        return {n["org"] for n in self.nodes.values() if n["status"] == "voter"}

    def expired(self, p: dict[str, Any]) -> bool:
        return p["status"] == "expired" or (p["status"] == "open" and self.w.now >= p["expires_at"])

    def reached(self, p: dict[str, Any]) -> bool:
        counted = len(set(p["approvals"]) & set(p["electorate"]))
        return counted >= len(p["electorate"]) // 2 + 1 and (p["action"] != "add_learner"
                                                                 or p["org"] in p["approvals"])

    def carry_out(self, pid: str) -> None:
        p = self.proposals[pid]
        if p["action"] == "add_learner":
            self.nodes[p["node_id"]] = {"org": p["org"], "status": "learner", "pk": p["pk"], "addrs": p["addrs"]}
        else:
            self.nodes[p["node_id"]]["status"] = "voter" if p["action"] == "promote" else "removed"
        for other_id, other in self.proposals.items():
            if other_id != pid and other["status"] == "open":
                other["status"] = "expired" if self.w.now >= other["expires_at"] else "superseded"
        p["status"] = "effective"

    def submit(self, signer: str, kind: str, body: dict[str, Any], broken: set[str]) -> dict[str, Any] | None:
        if self.org_status.get(signer) != "active":  # authentication comes before every rule
            broken = {C.SIGNER_NOT_ACTIVE}
        elif self.roles.get(signer) == m.REGULATOR_ROLE and kind not in REGULATOR_TX_TYPES:
            broken = {C.ROLE_NOT_ALLOWED}
        raw = self.w.raw(signer, kind, body)
        outcome = self.w.apply(raw)
        if broken:
            assert outcome.status == "rejected", f"{kind} {body} committed; the model says {broken}"
            assert outcome.error_code in broken, (outcome.error_code, outcome.error_message, broken)
            return None
        assert outcome.status == "committed", (kind, body, outcome.error_code, outcome.error_message)
        assert outcome.result is not None
        return {"tx_id": tx_id_of(decode_envelope(raw).payload), **outcome.result}

    # --- steps -------------------------------------------------------------------------------------------------
    @initialize()
    def register_newco(self) -> None:
        k = self.w.key("newco")
        self.w.ok("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier",
                                            "sign_pk": k.sign_pk, "box_pk": k.box_pk})
        self.org_status["newco"] = "pending"

    @rule(hours=st.sampled_from([0, 1, 6, 23, 24, 30]))
    def advance_time(self, hours: int) -> None:
        self.w.now += hours * HOUR + 1

    @rule()
    def make_tier3_regulator(self) -> None:
        self.w.set_role("tier3", m.REGULATOR_ROLE)
        self.roles["tier3"] = m.REGULATOR_ROLE

    @rule(org=st.sampled_from(["tier2", "tier3"]), valid=st.integers(0, 4))
    def freeze(self, org: str, valid: int) -> None:
        if self.roles[org] == m.REGULATOR_ROLE:
            return  # no tx changes the regulator's status (another rule, tested elsewhere)
        freeze = (self.org_status[org] == "active") == (valid > 0)  # mostly the move that applies
        kind, before, after = ("org.freeze", "active", "frozen") if freeze else ("org.unfreeze", "frozen", "active")
        broken = set() if self.org_status[org] == before else {C.INVALID_STATUS_TRANSITION}
        if self.submit("boc", kind, {"org_id": org}, broken) is not None:
            self.org_status[org] = after

    @rule(signer=SIGNER, action=st.sampled_from(["promote", "remove"]), node_id=st.sampled_from(NODE_IDS))
    def propose_change(self, signer: str, action: str, node_id: str) -> None:
        broken = self.propose_broken(signer)
        node = self.nodes.get(node_id)
        if node is None:
            broken.add(C.UNKNOWN_NODE)
        elif node["status"] == "removed":
            broken.add(C.NODE_REMOVED)
        elif action == "promote":
            if node["status"] != "learner":
                broken.add(C.NOT_A_LEARNER)
            if self.roles.get(node["org"]) == m.REGULATOR_ROLE:
                broken.add(C.REGULATOR_NODE)
        elif node["status"] == "voter":
            voters = sum(1 for n in self.nodes.values() if n["status"] == "voter")
            if voters - 1 < min(3, 5):
                broken.add(C.TOO_FEW_VOTERS)
        self.record(signer, {"action": action, "node_id": node_id}, broken)

    @rule(signer=SIGNER, node_id=st.sampled_from([*NEW_IDS, "n-boc", "n-tier2"]),
          org=st.one_of(st.sampled_from(["tier2", "tier3", "boc"]), st.sampled_from([*SIGNERS, "ghost"])),
          reuse_pk=REUSE, reuse_addr=REUSE)
    def propose_add(self, signer: str, node_id: str, org: str, reuse_pk: str | None,
                    reuse_addr: str | None) -> None:
        broken = self.propose_broken(signer)
        pk = (self.nodes[reuse_pk]["pk"] if reuse_pk in self.nodes else
              hashlib.sha256(b"model-pk %d" % next(self.pk_seq)).hexdigest())
        host = f"h{next(self.host_seq)}.model.test"
        raft, http = f"{host}:1", f"{host}:2"
        if reuse_addr in self.nodes:
            raft = sorted(self.nodes[reuse_addr]["addrs"])[0]
        if node_id in self.nodes:
            broken.add(C.NODE_EXISTS)
        if any(n["pk"] == pk for n in self.nodes.values()):
            broken.add(C.NODE_PK_IN_USE)
        if any(raft.lower() in n["addrs"] for n in self.nodes.values() if n["status"] != "removed"):
            broken.add(C.ADDRESS_IN_USE)
        if org not in self.org_status:
            broken.add(C.UNKNOWN_ORG)
        elif self.org_status[org] != "active":
            broken.add(C.ORG_NOT_ACTIVE)
        body = {"action": "add_learner", "node_id": node_id, "org": org, "raft": raft, "http": http, "node_pk": pk}
        self.record(signer, body, broken, extra={"org": org, "pk": pk, "addrs": {raft.lower(), http.lower()}})

    def propose_broken(self, signer: str) -> set[str]:
        broken: set[str] = set()
        if signer not in self.voter_orgs():
            broken.add(C.NOT_VOTING_ORG)
        mine = [p for p in self.proposals.values() if p["proposer"] == signer and p["status"] == "open"
                and not self.expired(p)]
        if len(mine) >= m.OPEN_PROPOSALS_PER_ORG_MAX:
            broken.add(C.TOO_MANY_PROPOSALS)
        return broken

    def record(self, signer: str, body: dict[str, Any], broken: set[str],
               extra: dict[str, Any] | None = None) -> None:
        result = self.submit(signer, "member.propose", body, broken)
        if result is None:
            return
        pid = model_proposal_id(result["tx_id"])
        assert result["proposal_id"] == pid
        for p in self.proposals.values():  # the proposer's expired ones are closed on the way
            if p["proposer"] == signer and p["status"] == "open" and self.w.now >= p["expires_at"]:
                p["status"] = "expired"
        electorate = sorted(self.voter_orgs())
        self.proposals[pid] = {"action": body["action"], "node_id": body["node_id"], "proposer": signer,
                               "electorate": electorate, "approvals": [signer], "status": "open",
                               "expires_at": self.w.now + TTL, "org": None, **(extra or {})}
        self.order.append(pid)
        if self.reached(self.proposals[pid]):
            self.carry_out(pid)
        self.check_result(pid, result)

    @rule(signer=SIGNER, data=st.data())
    def approve(self, signer: str, data: st.DataObject) -> None:
        if self.order and data.draw(st.integers(0, 9)) > 0:
            self.do_approve(signer, data.draw(st.sampled_from(self.order)))
        else:
            self.do_approve(signer, "MP" + "0" * 32)

    @precondition(lambda self: bool(self.voter_orgs()))
    @rule(data=st.data())
    def propose_plausibly(self, data: st.DataObject) -> None:
        """Steer toward proposals that pass: a voting org, a node that is there, the action that fits it."""
        signer = data.draw(st.sampled_from(sorted(self.voter_orgs())))
        node_id = data.draw(st.sampled_from(sorted(n for n, v in self.nodes.items() if v["status"] != "removed")))
        action = "promote" if self.nodes[node_id]["status"] == "learner" else "remove"
        self.propose_change(signer, data.draw(st.sampled_from([action, action, "remove"])), node_id)

    @precondition(lambda self: bool(self.order))
    @rule(data=st.data())
    def approve_plausibly(self, data: st.DataObject) -> None:
        """Steer toward carried-out changes: an eligible approver of an open proposal."""
        open_ones = [pid for pid in self.order if not self.expired(self.proposals[pid])
                     and self.proposals[pid]["status"] == "open"]
        if not open_ones:
            return
        pid = data.draw(st.sampled_from(open_ones))
        p = self.proposals[pid]
        eligible = sorted({*p["electorate"], *([p["org"]] if p["org"] else [])} - set(p["approvals"]))
        if eligible:
            self.do_approve(data.draw(st.sampled_from(eligible)), pid)

    def do_approve(self, signer: str, pid: str) -> None:
        p = self.proposals.get(pid)
        broken: set[str] = set()
        if p is None:
            broken.add(C.UNKNOWN_PROPOSAL)
        elif p["status"] in ("effective", "superseded"):
            broken.add(C.PROPOSAL_CLOSED)
        elif self.expired(p):
            broken.add(C.PROPOSAL_EXPIRED)
        elif signer == p["proposer"]:
            broken.add(C.OWN_PROPOSAL)
        elif signer not in p["electorate"] and signer != p["org"]:
            broken.add(C.NOT_VOTING_ORG)
        elif signer in p["approvals"]:
            broken.add(C.ALREADY_APPROVED)
        elif (p["action"] == "add_learner" and self.org_status.get(p["org"]) != "active"
              and self.reached({**p, "approvals": [*p["approvals"], signer]})):
            broken.add(C.ORG_NOT_ACTIVE)
        result = self.submit(signer, "member.approve", {"proposal_id": pid}, broken)
        if result is None:
            return
        assert p is not None
        p["approvals"].append(signer)
        if self.reached(p):
            self.carry_out(pid)
        self.check_result(pid, result)

    def check_result(self, pid: str, result: dict[str, Any]) -> None:
        p = self.proposals[pid]
        assert result["proposal_id"] == pid
        assert result["needed"] == len(p["electorate"]) // 2 + 1
        assert result["approvals"] == len(set(p["approvals"]) & set(p["electorate"]))
        assert result["effective"] == (p["status"] == "effective")

    # --- agreement ---------------------------------------------------------------------------------------------
    @invariant()
    def model_agrees_with_chain(self) -> None:
        view, now = self.w.view, self.w.now
        got = {x.id: (x.org, x.status) for x in m.membership(view)}
        assert got == {nid: (n["org"], n["status"]) for nid, n in self.nodes.items()}
        assert sum(1 for n in self.nodes.values() if n["status"] == "voter") >= 3
        for pid, p in self.proposals.items():
            read = governance.get_proposal(view, pid, now=now)
            assert read is not None
            expected = "expired" if p["status"] == "open" and now >= p["expires_at"] else p["status"]
            assert (read["status"], read["approved_by"], read["electorate"]) == (expected, p["approvals"],
                                                                                p["electorate"]), pid
        assert len(m.open_proposal_ids(view)) <= m.OPEN_PROPOSALS_PER_ORG_MAX * len(ORGS)

    @invariant()
    def raft_can_follow(self) -> None:
        members = list(m.membership(self.w.view))
        voters, learners = {f"n-{o}" for o in VOTING}, {"n-tier2"}
        plan(members, voters, learners)
        assert voters == {x.id for x in members if x.status == "voter"}


GovernanceModel.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
test_governance_model = GovernanceModel.TestCase

