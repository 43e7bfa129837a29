"""The next Raft configuration change that brings the Raft configuration to the membership in state.

A `member.*` proposal changes the membership *record* when it becomes effective (ecert/governance.py); the
leader then walks the actual Raft configuration to it, one change at a time (Raft's single-server changes, the
only kind consensus/ supports), by calling `next_conf_change` after each applied change. The function is pure:
it looks only at its arguments, so every leader computes the same plan from the same applied state, and a change
already done is simply no longer needed ("carried out once" is idempotence, not bookkeeping).

Order, and why (S = state voters, R = Raft voters, L = Raft learners):
1. remove a Raft learner the state does not list as voter or learner — quorum is untouched;
2. add as learner every node the state lists (voter or learner) that Raft does not know — quorum is untouched,
   and a future voter must catch up as a learner first (etcd does the same);
3. then voters: while R holds more stale voters (in R, not in S) than there are pending promotions (in S, a
   learner in Raft), remove one; otherwise promote one. A removal therefore never takes R below |S|, and R never
   falls below min(its size before, |S|), where the rules keep |S| >= min(3, voters at genesis): replacing
   voter A by D promotes D before removing A, so a 3-voter cluster passes through 4 voters, never through 2.
   The last Raft voter is never removed, and no voter at all is removed while the state lists no voter (the
   rules never let that happen; a state that says so is not one to hand the quorum to).
Ties go to the smallest node id. A state learner that Raft runs as a voter (a cluster file that disagrees with
genesis) is a stale voter: removed under rule 3, then added back as a learner under rule 2.

The leader promotes only once the learner's log has caught up (the driver's check, not this function's); while
it waits, the plan waits too. If a learner never catches up, governance removes it (a new proposal), which
turns it into a stale learner that rule 1 removes first.

An empty state membership (a genesis without `nodes`) means the state does not govern Raft: no change.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import NamedTuple

from consensus.invariant import require
from ecert.membership import ADD_LEARNER, LEARNER, PROMOTE, REMOVE, VOTER, NodeMember


class ConfStep(NamedTuple):
    """One Raft configuration change: `add_learner` (ConfChangeType.ADD_LEARNER), `promote` (ADD_VOTER) or
    `remove` (REMOVE_NODE)."""

    action: str
    node_id: str


def next_conf_change(state_membership: Iterable[NodeMember], raft_voters: Collection[str],
                     raft_learners: Collection[str]) -> ConfStep | None:
    """The one change to make next, or None when Raft already matches the state (or the state lists no nodes)."""
    members = tuple(state_membership)
    voters, learners = frozenset(raft_voters), frozenset(raft_learners)
    require(not voters & learners, f"nodes both voter and learner in Raft: {sorted(voters & learners)}")
    if not members:
        return None
    want_voters = frozenset(m.id for m in members if m.status == VOTER)
    want_learners = frozenset(m.id for m in members if m.status == LEARNER)
    wanted = want_voters | want_learners

    stale_learners = learners - wanted
    if stale_learners:
        return ConfStep(REMOVE, min(stale_learners))
    missing = wanted - voters - learners
    if missing:
        return ConfStep(ADD_LEARNER, min(missing))
    stale_voters = voters - want_voters
    pending = want_voters & learners
    if want_voters and len(stale_voters) > len(pending):  # then |R| - 1 >= |S| >= 1
        return ConfStep(REMOVE, min(stale_voters))
    if pending:
        return ConfStep(PROMOTE, min(pending))
    return None
