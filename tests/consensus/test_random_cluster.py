"""Seeded random schedules on the in-memory network, checking Figure 3's properties after every step
(a small sibling of the simulator in consensus/sim/, kept here so the core's own suite exercises faults)."""

from __future__ import annotations

import contextlib
import random

import pytest

from consensus.errors import RaftError
from consensus.membership import ConfChange, ConfChangeType
from consensus.messages import Snapshot, SnapshotMeta
from consensus.ready import Role
from tests.consensus.harness import Network

STEPS = 250


def check(net: Network, leaders_by_term: dict[int, str], committed: dict[int, bytes]) -> None:
    for nid, node in net.nodes.items():
        core = node.core
        if core.role is Role.LEADER:
            # Election Safety: at most one leader per term.
            assert leaders_by_term.setdefault(core.term, nid) == nid, f"two leaders in term {core.term}"
        # State Machine Safety: no two nodes apply different entries at one index.
        for e in node.applied:
            assert committed.setdefault(e.index, e.data) == e.data, f"{nid} applied a different entry @{e.index}"
    # Log Matching on the persisted logs: same index and term -> same entry.
    seen: dict[tuple[int, int], bytes] = {}
    for node in net.nodes.values():
        st = node.storage
        for e in st.entries(st.first_index(), st.last_index() + 1, 1 << 30) if st.last_index() >= st.first_index() \
                else []:
            assert seen.setdefault((e.index, e.term), e.data) == e.data


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_keep_figure_3_properties(seed: int) -> None:
    rng = random.Random(seed)
    ids = ["n1", "n2", "n3", "n4", "n5"][: rng.choice([3, 5])]
    net = Network(ids, seed=seed, max_inflight_msgs=4, max_msg_bytes=256)
    leaders_by_term: dict[int, str] = {}
    committed: dict[int, bytes] = {}
    proposed = 0
    for step in range(STEPS):
        roll = rng.randrange(100)
        if roll < 50:
            net.tick_all(deliver=False)
        elif roll < 75:
            leader = next(iter(net.leaders()), None)
            if leader is not None:
                proposed += 1
                with contextlib.suppress(RaftError):  # dropped during a transfer, or over a limit
                    net.core(leader).propose(b"%d-%d" % (seed, step))
        elif roll < 80:
            a, b = rng.sample(ids, 2)
            net.cut(a, b)
        elif roll < 85:
            net.recover()
        elif roll < 88:
            net.restart(rng.choice(ids))
        elif roll < 91:
            for a in ids:
                for b in ids:
                    if a != b:
                        net.drop(a, b, 0.2)
        elif roll < 93:
            leader = next(iter(net.leaders()), None)
            if leader is not None:
                net.core(leader).transfer_leadership(rng.choice(ids))
        elif roll < 95:
            leader = next(iter(net.leaders()), None)
            if leader is not None:
                with contextlib.suppress(RaftError):
                    net.core(leader).read_index(b"r%d" % step)
        elif roll < 97:
            leader = next(iter(net.leaders()), None)
            if leader is not None:
                core = net.core(leader)
                node = net.nodes[leader]
                if core.applied_index > node.storage.first_index() + 5:
                    t = core._log.term(core.applied_index)
                    assert t is not None
                    meta = SnapshotMeta(core.applied_index, t, tuple(sorted(core.voters)),
                                        tuple(sorted(core.learners)))
                    node.storage.compact(Snapshot(meta, b"app-state"))
        else:
            leader = next(iter(net.leaders()), None)
            if leader is not None and len(ids) == 5:
                core = net.core(leader)
                removed = set(ids) - core.voters - core.learners
                choices = [ConfChange(ConfChangeType.ADD_LEARNER, n) for n in sorted(removed)]
                choices += [ConfChange(ConfChangeType.ADD_VOTER, n) for n in sorted(core.learners)]
                if len(core.voters) > 3:
                    choices += [ConfChange(ConfChangeType.REMOVE_NODE, n) for n in sorted(core.voters) if n != leader]
                if choices:
                    with contextlib.suppress(RaftError):
                        core.propose_conf_change(rng.choice(choices))
        net.deliver()
        check(net, leaders_by_term, committed)
    # Liveness once healed: everyone converges on one leader and the same applied log.
    net.recover()
    for _ in range(60):
        net.tick_all()
    leader = net.leaders()
    assert len(leader) == 1
    net.propose(leader[0], b"final")
    net.tick_all(3)
    members = net.core(leader[0]).voters | net.core(leader[0]).learners
    for nid in ids:
        if nid in members:
            assert net.nodes[nid].core.commit_index == net.core(leader[0]).commit_index
    check(net, leaders_by_term, committed)
    assert proposed > 0
