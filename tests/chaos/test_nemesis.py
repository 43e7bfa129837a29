"""The fault schedule is a pure function of the seed, covers every kind in a one-minute run, and the rule
documents it builds cut the links the fault's name promises."""

from __future__ import annotations

import itertools
import random

import pytest

from node.chaos.nemesis import FAULT_KINDS, TAIL_S, WARMUP_S, affected_by_rule, partition_groups, schedule
from node.faults import FaultRules

IDS = ["boc", "geely", "tier1", "tier2", "tier3"]


@pytest.mark.parametrize("seed", [1, 7, 42, 1234])
def test_schedule_is_seeded_sequential_and_covers_every_kind_in_a_minute(seed: int) -> None:
    steps = schedule(seed, 60)
    assert steps == schedule(seed, 60)
    assert {s.kind for s in steps} == set(FAULT_KINDS)
    assert steps[0].at >= WARMUP_S
    for a, b in itertools.pairwise(steps):
        assert a.at + a.duration < b.at, "faults must not overlap: each is healed before the next"
    assert steps[-1].at + steps[-1].duration <= 60 - TAIL_S


def test_different_seeds_give_different_schedules() -> None:
    assert [s.kind for s in schedule(1, 60)] != [s.kind for s in schedule(2, 60)]


def test_long_runs_repeat_kinds_and_short_runs_still_fault() -> None:
    long = schedule(3, 3600)
    assert len(long) > 10 * len(FAULT_KINDS)
    assert 0 < len(schedule(3, 10)) < len(FAULT_KINDS)
    assert {s.kind for s in schedule(3, 60, ("delay",))} == {"delay"}


def cut(rule: dict) -> set[tuple[str, str]]:
    rules = {i: FaultRules(i) for i in IDS}
    for r in rules.values():
        r.apply(rule)
    return {(a, b) for a in IDS for b in IDS if a != b and rules[a].outbound(b)[0]}


def test_halves_leave_a_majority_and_a_minority() -> None:
    rule = partition_groups("partition_halves", IDS, "boc", random.Random(1))
    small, big = sorted(rule["partition"], key=len)
    assert len(small) == 2 and len(big) == 3 and not set(small) & set(big)
    assert affected_by_rule(rule, IDS) == small


def test_isolated_leader_talks_to_nobody() -> None:
    rule = partition_groups("partition_leader", IDS, "tier2", random.Random(1))
    links = cut(rule)
    assert {b for a, b in links if a == "tier2"} == set(IDS) - {"tier2"}
    assert all("tier2" in link for link in links)


def test_bridge_node_reaches_both_sides() -> None:
    rule = partition_groups("partition_bridge", IDS, None, random.Random(5))
    left, right = rule["partition"]
    (bridge,) = set(left) & set(right)
    links = cut(rule)
    assert not any(bridge in link for link in links)
    assert len(links) == 2 * 2 * 2


def test_one_way_leader_can_hear_but_not_speak() -> None:
    rule = partition_groups("partition_oneway", IDS, "geely", random.Random(1))
    links = cut(rule)
    assert links == {("geely", x) for x in IDS if x != "geely"}


def test_node_rules_are_valid_fault_documents() -> None:
    for kind in ("delay", "loss", "slow_disk", "clock_skew"):
        rule = partition_groups(kind, IDS, "boc", random.Random(3))
        FaultRules("boc").apply(rule)
    with pytest.raises(ValueError):
        partition_groups("kill_leader", IDS, "boc", random.Random(1))
