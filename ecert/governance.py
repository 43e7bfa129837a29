"""Membership governance: `member.propose` and `member.approve` (CONTRACT §6), and the reads that show them.

A proposal freezes its electorate when it is made: the orgs running a voting node in that block (n of them). It
needs n // 2 + 1 of their approvals, the proposer's counted at once, and for an `add_learner` also the approval
of the org that will run the node. The approval that reaches the threshold carries the change out in that same
tx: the node's membership record changes (ecert/membership.py) and every other open proposal closes — so an
open proposal always reads the membership it was checked against. The Raft side follows the record
(ecert/reconcile.py). Expiry is evaluated at block time: an approval at or after `expires_at` is refused, and a
read shows such a proposal as `expired` even while it is stored `open`.

Rules follow ecert/rules.py: check everything (reads only), then write, then return the outcome's result.
Status moves go through ecert/lifecycle.py (PROPOSAL_TRANSITIONS). docs/RULES.md lists the checks in order.
"""

from __future__ import annotations

import hashlib
from typing import Any

from consensus.invariant import require
from ecert import codes, lifecycle
from ecert import membership as m
from ecert import state as s
from ecert.errors import TxRejected
from ecert.tx import MemberApprove, MemberPropose, Tx, unroutable_host
from ledger.state_view import StateView

PROPOSAL_ID_HEX_CHARS = 32


def proposal_id_for(tx_id: str) -> str:
    """Proposal ids are derived from the proposing tx id, as certificate ids are (a distinct tag keeps the two
    namespaces apart)."""
    return "MP" + hashlib.sha256(b"member.propose" + bytes.fromhex(tx_id)).hexdigest()[:PROPOSAL_ID_HEX_CHARS]


# --- checks -------------------------------------------------------------------------------------------------------
def _address_key(address: str) -> str:
    return address.lower()  # hostnames are case-insensitive; that is all the normalising we do


def _check_add_learner(view: StateView, members: tuple[m.NodeMember, ...], body: MemberPropose) -> None:
    if any(member.id == body.node_id for member in members):
        raise TxRejected(codes.NODE_EXISTS, f"node id {body.node_id!r} is taken (node ids are never reused)")
    if any(member.node_pk == body.node_pk for member in members):
        raise TxRejected(codes.NODE_PK_IN_USE, "that node key belongs to another node (keys are never reused)")
    assert body.org is not None and body.raft is not None and body.http is not None  # MemberPropose checked
    in_use = {_address_key(address) for member in members if member.status != m.REMOVED
              for address in (member.raft, member.http)}
    for address in (body.raft, body.http):
        if _address_key(address) in in_use:
            raise TxRejected(codes.ADDRESS_IN_USE, f"address {address} is used by a current node")
    if _address_key(body.raft) == _address_key(body.http):
        raise TxRejected(codes.ADDRESS_IN_USE, "raft and http must be different addresses")
    if s.chain_params(view).member_address_routable:
        for name, address in (("raft", body.raft), ("http", body.http)):
            why = unroutable_host(address.rpartition(":")[0])
            if why is not None:
                raise TxRejected(codes.UNROUTABLE_ADDRESS, f"{name} {address} is {why}: peers and clients must "
                                 "be able to dial it (a node binds a wildcard with raft_listen / http_listen)")
    org = s.get_org(view, body.org)
    if org is None:
        raise TxRejected(codes.UNKNOWN_ORG, f"no organisation {body.org!r}")
    if org.status != s.ORG_ACTIVE:
        raise TxRejected(codes.ORG_NOT_ACTIVE, f"organisation {body.org!r} is {org.status}")
    if len(members) >= m.MEMBERS_MAX:
        raise TxRejected(codes.MEMBERSHIP_FULL, f"the chain has admitted {m.MEMBERS_MAX} nodes, the most it can")


def _existing_node(members: tuple[m.NodeMember, ...], node_id: str) -> m.NodeMember:
    for member in members:
        if member.id == node_id:
            if member.status == m.REMOVED:
                raise TxRejected(codes.NODE_REMOVED, f"node {node_id!r} was removed")
            return member
    raise TxRejected(codes.UNKNOWN_NODE, f"no node {node_id!r}")


def _check_promote(view: StateView, members: tuple[m.NodeMember, ...], node_id: str) -> None:
    node = _existing_node(members, node_id)
    if node.status != m.LEARNER:
        raise TxRejected(codes.NOT_A_LEARNER, f"node {node_id!r} is a {node.status}, not a learner")
    org = s.get_org(view, node.org)
    if org is not None and org.role == m.REGULATOR_ROLE:
        raise TxRejected(codes.REGULATOR_NODE, "the regulator's node is a learner and is never promoted")


def _check_remove(view: StateView, members: tuple[m.NodeMember, ...], node_id: str) -> None:
    node = _existing_node(members, node_id)
    if node.status == m.VOTER:
        voters = sum(1 for member in members if member.status == m.VOTER)
        floor = m.min_voters(m.genesis_voters(view))
        if voters - 1 < floor:
            raise TxRejected(codes.TOO_FEW_VOTERS,
                             f"removing {node_id!r} would leave {voters - 1} voting nodes, fewer than {floor}")


def _check_action(view: StateView, members: tuple[m.NodeMember, ...], body: MemberPropose) -> None:
    if body.action == m.ADD_LEARNER:
        _check_add_learner(view, members, body)
    elif body.action == m.PROMOTE:
        _check_promote(view, members, body.node_id)
    else:
        require(body.action == m.REMOVE, f"unknown member action {body.action!r}")
        _check_remove(view, members, body.node_id)


def _is_expired(proposal: m.Proposal, now: int) -> bool:
    return now >= proposal.expires_at


def _counted(proposal: m.Proposal) -> int:
    """Approvals that count toward `needed`: those of the recorded electorate."""
    return sum(1 for org in proposal.approvals if org in proposal.electorate)


def _org_approved(proposal: m.Proposal) -> bool:
    return proposal.action != m.ADD_LEARNER or proposal.org in proposal.approvals


def _reached(proposal: m.Proposal) -> bool:
    return _counted(proposal) >= proposal.needed and _org_approved(proposal)


def _open_proposals(view: StateView, proposer: str | None) -> list[m.Proposal]:
    """The proposals stored `open` (of one proposer, or all): at most OPEN_PROPOSALS_PER_ORG_MAX per org."""
    out = []
    for proposal_id in m.open_proposal_ids(view, proposer):
        proposal = m.get_proposal(view, proposal_id)
        require(proposal is not None and proposal.status == m.P_OPEN, f"open index lists {proposal_id} wrongly")
        assert proposal is not None
        out.append(proposal)
    return out


# --- effects ------------------------------------------------------------------------------------------------------
def _carry_out(view: StateView, proposal: m.Proposal, now: int) -> m.Proposal:
    """Change the membership record, close the proposal `effective` and every other open one. Returns it closed.

    Every other open proposal closes, so the membership this one was checked against at `member.propose` is
    still the membership now; the checks are repeated here as invariants."""
    members = m.membership(view)
    if proposal.action == m.ADD_LEARNER:
        require(all(member.id != proposal.node_id for member in members), f"node {proposal.node_id} appeared")
        require(len(members) < m.MEMBERS_MAX, "membership filled up under an open proposal")
        assert proposal.org is not None and proposal.raft is not None and proposal.http is not None
        assert proposal.node_pk is not None
        node = m.NodeMember(id=proposal.node_id, org=proposal.org, raft=proposal.raft, http=proposal.http,
                            node_pk=proposal.node_pk, status=m.LEARNER, since=now, proposal_id=proposal.id)
    else:
        old = m.get_member(view, proposal.node_id)
        require(old is not None and old.status != m.REMOVED, f"node {proposal.node_id} left before {proposal.id}")
        assert old is not None
        if proposal.action == m.PROMOTE:
            require(old.status == m.LEARNER, f"node {old.id} is no longer a learner")
        status = m.VOTER if proposal.action == m.PROMOTE else m.REMOVED
        node = old._replace(status=status, since=now, proposal_id=proposal.id)
    m.put_member(view, node)
    for other in _open_proposals(view, None):
        if other.id == proposal.id:
            continue
        event = lifecycle.EXPIRE if _is_expired(other, now) else lifecycle.SUPERSEDE
        m.put_proposal(view, other._replace(status=lifecycle.next_proposal_status(other.status, event),
                                            closed_at=now, closed_by=proposal.id))
    done = proposal._replace(status=lifecycle.next_proposal_status(proposal.status, lifecycle.CARRY_OUT),
                             closed_at=now)
    m.put_proposal(view, done)
    return done


def _result(proposal: m.Proposal) -> dict[str, Any]:
    out: dict[str, Any] = {"proposal_id": proposal.id, "action": proposal.action, "node_id": proposal.node_id,
                           "approvals": _counted(proposal), "needed": proposal.needed,
                           "effective": proposal.status == m.P_EFFECTIVE, "status": proposal.status}
    if proposal.action == m.ADD_LEARNER:
        out["org"] = proposal.org
        out["org_approved"] = _org_approved(proposal)
    return out


# --- rules --------------------------------------------------------------------------------------------------------
def apply_member_propose(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: MemberPropose = tx.body
    members = m.membership(view)
    electorate = tuple(sorted({member.org for member in members if member.status == m.VOTER}))
    if tx.signer not in electorate:
        raise TxRejected(codes.NOT_VOTING_ORG, f"{tx.signer} runs no voting node")
    _check_action(view, members, body)
    mine = _open_proposals(view, tx.signer)
    still_open = [p for p in mine if not _is_expired(p, now)]
    if len(still_open) >= m.OPEN_PROPOSALS_PER_ORG_MAX:
        raise TxRejected(codes.TOO_MANY_PROPOSALS,
                         f"{tx.signer} already has {len(still_open)} open proposals, the most one org may have")

    for old in mine:  # the proposer's own expired ones leave the open index, so it stays bounded
        if _is_expired(old, now):
            m.put_proposal(view, old._replace(status=lifecycle.next_proposal_status(old.status, lifecycle.EXPIRE),
                                              closed_at=now))
    proposal = m.Proposal(
        id=proposal_id_for(tx.tx_id), seq=m.proposal_count(view), action=body.action, node_id=body.node_id,
        proposer=tx.signer, tx_id=tx.tx_id, created_at=now, expires_at=now + m.PROPOSAL_TTL_MS,
        electorate=electorate, needed=m.needed_for(len(electorate)), approvals=(tx.signer,), status=m.P_OPEN,
        org=body.org, raft=body.raft, http=body.http, node_pk=body.node_pk)
    m.add_proposal(view, proposal)
    if _reached(proposal):  # a lone voting org (n = 1) needs no one else
        proposal = _carry_out(view, proposal, now)
    return _result(proposal)


def apply_member_approve(view: StateView, tx: Tx, now: int) -> dict[str, Any]:
    body: MemberApprove = tx.body
    proposal = m.get_proposal(view, body.proposal_id)
    if proposal is None:
        raise TxRejected(codes.UNKNOWN_PROPOSAL, f"no membership proposal {body.proposal_id!r}")
    if proposal.status in (m.P_EFFECTIVE, m.P_SUPERSEDED):
        raise TxRejected(codes.PROPOSAL_CLOSED, f"proposal {proposal.id} is {proposal.status}")
    if proposal.status == m.P_EXPIRED or _is_expired(proposal, now):
        raise TxRejected(codes.PROPOSAL_EXPIRED, f"proposal {proposal.id} expired at {proposal.expires_at}")
    if tx.signer == proposal.proposer:
        raise TxRejected(codes.OWN_PROPOSAL, "the proposer's approval is already counted")
    if tx.signer not in proposal.electorate and tx.signer != proposal.org:
        raise TxRejected(codes.NOT_VOTING_ORG,
                         f"{tx.signer} ran no voting node when proposal {proposal.id} was made")
    if tx.signer in proposal.approvals:
        raise TxRejected(codes.ALREADY_APPROVED, f"{tx.signer} already approved proposal {proposal.id}")
    approved = proposal._replace(approvals=(*proposal.approvals, tx.signer),
                                 status=lifecycle.next_proposal_status(proposal.status, lifecycle.APPROVE))
    if _reached(approved) and approved.action == m.ADD_LEARNER:
        assert approved.org is not None
        org = s.get_org(view, approved.org)  # frozen since it was proposed: it gets no node until unfrozen
        if org is None or org.status != s.ORG_ACTIVE:
            raise TxRejected(codes.ORG_NOT_ACTIVE, f"organisation {approved.org!r} is not active")
    m.put_proposal(view, approved)
    if _reached(approved):
        approved = _carry_out(view, approved, now)
    return _result(approved)


# --- reads (JSON-ready, as ecert/queries.py) ----------------------------------------------------------------------
def member_to_json(member: m.NodeMember) -> dict[str, Any]:
    return {"id": member.id, "org": member.org, "raft": member.raft, "http": member.http,
            "node_pk": member.node_pk, "status": member.status, "since": member.since,
            "proposal_id": member.proposal_id}


def proposal_to_json(proposal: m.Proposal, now: int | None = None) -> dict[str, Any]:
    """`status` is the stored one, except that an `open` proposal reads `expired` once `now` reaches its expiry."""
    status = proposal.status
    if status == m.P_OPEN and now is not None and _is_expired(proposal, now):
        status = m.P_EXPIRED
    out: dict[str, Any] = {
        "id": proposal.id, "seq": proposal.seq, "action": proposal.action, "node_id": proposal.node_id,
        "proposer": proposal.proposer, "tx_id": proposal.tx_id, "created_at": proposal.created_at,
        "expires_at": proposal.expires_at, "electorate": list(proposal.electorate), "needed": proposal.needed,
        "approved_by": list(proposal.approvals), "approvals": _counted(proposal),
        "effective": proposal.status == m.P_EFFECTIVE, "status": status, "closed_at": proposal.closed_at,
        "closed_by": proposal.closed_by, "node": None,
    }
    if proposal.action == m.ADD_LEARNER:
        out["node"] = {"org": proposal.org, "raft": proposal.raft, "http": proposal.http,
                       "node_pk": proposal.node_pk}
        out["org_approved"] = _org_approved(proposal)
    return out


def get_proposal(view: StateView, proposal_id: str, now: int | None = None) -> dict[str, Any] | None:
    proposal = m.get_proposal(view, proposal_id)
    return None if proposal is None else proposal_to_json(proposal, now)


def list_proposals(view: StateView, now: int | None = None, limit: int = m.PROPOSALS_LIST_MAX,
                   before: int | None = None) -> dict[str, Any]:
    """The newest proposals first, at most `limit` (capped at PROPOSALS_LIST_MAX), all with `seq` < `before`
    if given. `next_before` pages on (None at the oldest). Point reads of the sequence index: no scan."""
    require(limit > 0, "list_proposals needs a positive limit")
    total = m.proposal_count(view)
    stop = total if before is None else max(0, min(before, total))
    start = max(0, stop - min(limit, m.PROPOSALS_LIST_MAX))
    proposals = []
    for seq in range(stop - 1, start - 1, -1):
        proposal_id = m.proposal_id_at(view, seq)
        require(proposal_id is not None, f"proposal sequence has a hole at {seq}")
        assert proposal_id is not None
        proposal = m.get_proposal(view, proposal_id)
        require(proposal is not None, f"sequence lists a missing proposal {proposal_id}")
        assert proposal is not None
        proposals.append(proposal_to_json(proposal, now))
    return {"proposals": proposals, "total": total, "next_before": start if start > 0 else None}


def get_membership(view: StateView) -> dict[str, Any]:
    """Every node record (removed ones too), the voting orgs, and the floor the rules keep voters above.
    `governed` is false for a chain whose genesis listed no nodes (membership then comes from the cluster file
    and no member.* transaction can pass)."""
    members = m.membership(view)
    genesis_voters = m.genesis_voters(view)
    return {
        "members": [member_to_json(member) for member in members],
        "voters": [member.id for member in members if member.status == m.VOTER],
        "learners": [member.id for member in members if member.status == m.LEARNER],
        "voter_orgs": list(m.voter_orgs(view)),
        "genesis_voters": genesis_voters,
        "min_voters": m.min_voters(genesis_voters),
        "governed": bool(members),
    }
