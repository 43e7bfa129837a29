"""Membership in state: which node of which org runs with which keys, and the proposals that change that.

The consortium's node membership is chain state, written at genesis and changed only by `member.propose` /
`member.approve` (ecert/governance.py, CONTRACT §6 "Membership is governance"). The Raft configuration follows
it (ecert/reconcile.py); nothing else adds, promotes or removes a node.

Key schema (every key starts with `m`; ids match [A-Za-z0-9][A-Za-z0-9._-]{0,63}, so "/" never occurs in one):

    m/<node_id>                   -> NodeMember record (every node ever admitted, `removed` ones included)
    mg                            -> genesis voter count (decimal ASCII); absent if genesis listed no nodes
    mp/<proposal_id>              -> Proposal record
    mo/<proposer>/<proposal_id>   -> b""  open-proposal index (stored status `open`; may be past its expiry)
    ms/<seq:010d>                 -> proposal_id  creation order, for bounded listing
    mc                            -> number of proposals ever made (decimal ASCII)

Records are NamedTuples encoded as msgpack arrays, as in ecert/state.py (a field added later goes at the end
with a default). Every scan here is bounded: at most MEMBERS_MAX member records, and at most
OPEN_PROPOSALS_PER_ORG_MAX open proposals per org that ever proposed.
"""

from __future__ import annotations

from typing import NamedTuple

from consensus.invariant import require
from ecert.state import decode_record, encode_record
from ecert.tx import MEMBER_ACTIONS
from ledger.state_view import StateView

# --- limits -------------------------------------------------------------------------------------------------------
MEMBERS_MAX = 256
"""Node records ever admitted (removed ones keep their record: a node id and a node key are never reused)."""
OPEN_PROPOSALS_PER_ORG_MAX = 4
"""Open proposals one org may have at a time: a voting org cannot flood the others' review."""
PROPOSAL_TTL_MS = 24 * 60 * 60 * 1000
"""A proposal expires this long after the block time of its `member.propose` (CONTRACT §6: 24 hours)."""
MIN_VOTERS_FLOOR = 3
"""No proposal may leave fewer than min(MIN_VOTERS_FLOOR, voters at genesis) voting nodes."""
PROPOSALS_LIST_MAX = 100
"""Most proposals one `list_proposals` answer holds."""

REGULATOR_ROLE = "regulator"
"""The regulator's node is a learner that is never promoted (CONTRACT §6)."""

# --- statuses -----------------------------------------------------------------------------------------------------
VOTER = "voter"
LEARNER = "learner"
REMOVED = "removed"
MEMBER_STATUSES = (VOTER, LEARNER, REMOVED)

ACTIONS = MEMBER_ACTIONS
ADD_LEARNER, PROMOTE, REMOVE = ACTIONS  # the values of a member.propose body's `action`

P_OPEN = "open"
P_EFFECTIVE = "effective"
P_SUPERSEDED = "superseded"
P_EXPIRED = "expired"
PROPOSAL_STATUSES = (P_OPEN, P_EFFECTIVE, P_SUPERSEDED, P_EXPIRED)
"""`open` is the only status that takes approvals; the other three are final (ecert/lifecycle.py)."""


class NodeMember(NamedTuple):
    id: str
    org: str  # the org that runs the node
    raft: str  # "host:port" of its Raft transport
    http: str  # "host:port" of its HTTP API
    node_pk: str  # hex Ed25519 public key of its transport key (peers pin it)
    status: str  # voter | learner | removed
    since: int  # block time the status was set (genesis_time for genesis nodes)
    proposal_id: str | None = None  # the proposal that set the status; None for a genesis status


class Proposal(NamedTuple):
    id: str
    seq: int  # creation order, 0, 1, ...
    action: str  # add_learner | promote | remove
    node_id: str
    proposer: str
    tx_id: str  # the member.propose tx
    created_at: int  # its block time
    expires_at: int  # created_at + PROPOSAL_TTL_MS; expired when block time >= expires_at
    electorate: tuple[str, ...]  # sorted orgs that ran a voting node at created_at; never changes
    needed: int  # len(electorate) // 2 + 1
    approvals: tuple[str, ...]  # orgs that approved, in order; the proposer first
    status: str  # open | effective | superseded | expired (stored; a query derives `expired` from the time)
    org: str | None = None  # add_learner: the org that will run the node (its approval is needed too)
    raft: str | None = None
    http: str | None = None
    node_pk: str | None = None
    closed_at: int | None = None  # block time it left `open`
    closed_by: str | None = None  # superseded: the proposal that was carried out


def needed_for(electorate_size: int) -> int:
    """A strict majority of the orgs that ran voting nodes when the proposal was made."""
    require(electorate_size > 0, "a proposal needs at least one voting org")
    return electorate_size // 2 + 1


def min_voters(genesis_voters: int) -> int:
    return min(MIN_VOTERS_FLOOR, genesis_voters)


# --- codec --------------------------------------------------------------------------------------------------------
# Records encode as the domain's others do (ecert/state.py: a msgpack array of the fields in order).


def encode_member(member: NodeMember) -> bytes:
    return encode_record(member)


def decode_member(data: bytes) -> NodeMember:
    member = decode_record(NodeMember, data)
    require(member.status in MEMBER_STATUSES, f"node {member.id}: bad status {member.status!r}")
    return member


def encode_proposal(proposal: Proposal) -> bytes:
    return encode_record(proposal)


def decode_proposal(data: bytes) -> Proposal:
    proposal = decode_record(Proposal, data)
    require(proposal.status in PROPOSAL_STATUSES, f"proposal {proposal.id}: bad status {proposal.status!r}")
    require(proposal.action in ACTIONS, f"proposal {proposal.id}: bad action {proposal.action!r}")
    return proposal


# --- keys ---------------------------------------------------------------------------------------------------------
MEMBER_PREFIX = b"m/"
PROPOSAL_PREFIX = b"mp/"
OPEN_PREFIX = b"mo/"
SEQ_PREFIX = b"ms/"
GENESIS_VOTERS_KEY = b"mg"
PROPOSAL_COUNT_KEY = b"mc"


def member_key(node_id: str) -> bytes:
    return MEMBER_PREFIX + node_id.encode()


def proposal_key(proposal_id: str) -> bytes:
    return PROPOSAL_PREFIX + proposal_id.encode()


def open_prefix(proposer: str) -> bytes:
    return OPEN_PREFIX + proposer.encode() + b"/"


def open_key(proposer: str, proposal_id: str) -> bytes:
    return open_prefix(proposer) + proposal_id.encode()


def seq_key(seq: int) -> bytes:
    return SEQ_PREFIX + b"%010d" % seq


# --- reads --------------------------------------------------------------------------------------------------------
def membership(view: StateView) -> tuple[NodeMember, ...]:
    """Every node record, removed ones included, sorted by node id. Empty for a chain whose genesis listed no
    nodes: then the state does not govern membership (see docs/RULES.md)."""
    members = tuple(sorted((decode_member(value) for _, value in view.scan(MEMBER_PREFIX)), key=lambda m: m.id))
    require(len(members) <= MEMBERS_MAX, f"{len(members)} node records, over MEMBERS_MAX {MEMBERS_MAX}")
    return members


def get_member(view: StateView, node_id: str) -> NodeMember | None:
    data = view.get(member_key(node_id))
    return None if data is None else decode_member(data)


def voter_orgs(view: StateView) -> tuple[str, ...]:
    """The orgs that run at least one voting node now, sorted (each counts once, however many nodes it runs)."""
    return tuple(sorted({m.org for m in membership(view) if m.status == VOTER}))


def genesis_voters(view: StateView) -> int:
    raw = view.get(GENESIS_VOTERS_KEY)
    return 0 if raw is None else int(raw)


def get_proposal(view: StateView, proposal_id: str) -> Proposal | None:
    data = view.get(proposal_key(proposal_id))
    return None if data is None else decode_proposal(data)


def open_proposal_ids(view: StateView, proposer: str | None = None) -> list[str]:
    """Ids of the proposals stored `open` (of one proposer, or of all), in key order."""
    prefix = OPEN_PREFIX if proposer is None else open_prefix(proposer)
    return [key.rsplit(b"/", 1)[1].decode() for key, _ in view.scan(prefix)]


def proposal_count(view: StateView) -> int:
    raw = view.get(PROPOSAL_COUNT_KEY)
    return 0 if raw is None else int(raw)


def proposal_id_at(view: StateView, seq: int) -> str | None:
    raw = view.get(seq_key(seq))
    return None if raw is None else raw.decode()


# --- writes -------------------------------------------------------------------------------------------------------
def put_member(view: StateView, member: NodeMember) -> None:
    require(member.status in MEMBER_STATUSES, f"node {member.id}: bad status {member.status!r}")
    view.put(member_key(member.id), encode_member(member))


def put_proposal(view: StateView, proposal: Proposal) -> None:
    """Write a proposal and keep the open index in step with its status."""
    require(proposal.status in PROPOSAL_STATUSES, f"proposal {proposal.id}: bad status {proposal.status!r}")
    require(len(set(proposal.approvals)) == len(proposal.approvals), f"proposal {proposal.id}: approval twice")
    require(proposal.needed == needed_for(len(proposal.electorate)), f"proposal {proposal.id}: needed is off")
    view.put(proposal_key(proposal.id), encode_proposal(proposal))
    index = open_key(proposal.proposer, proposal.id)
    if proposal.status == P_OPEN:
        view.put(index, b"")
    elif view.get(index) is not None:  # deleting an absent key would still write a tombstone
        view.delete(index)


def add_proposal(view: StateView, proposal: Proposal) -> None:
    """Write a new proposal at the next sequence number (`proposal.seq` must be that number)."""
    count = proposal_count(view)
    require(proposal.seq == count, f"proposal {proposal.id}: seq {proposal.seq}, expected {count}")
    require(view.get(proposal_key(proposal.id)) is None, f"derived proposal id {proposal.id} already exists")
    put_proposal(view, proposal)
    view.put(seq_key(count), proposal.id.encode())
    view.put(PROPOSAL_COUNT_KEY, str(count + 1).encode())
