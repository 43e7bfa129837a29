"""The nemesis: a fault schedule drawn from the seed, and the coroutine that plays it against a live cluster.

The schedule (kind, start, duration, salt) is a pure function of (seed, duration, node count), so a seed replays
the same sequence of faults at the same times. Targets that name a role ("the leader") are resolved when the fault
starts, from the cluster's answers then, with a random.Random seeded by (seed, step) for the rest.

Faults are sequential: one at a time, each healed before a quiet gap. Process faults act on the OS processes
(SIGKILL, SIGSTOP/SIGCONT, SIGTERM + start); network faults go through each node's fault layer
(`POST /admin/faults`, see node/faults.py), as do the leader's slow disk (fsync delay) and clock skew. In
real-network mode (the cluster has a `network`, node/chaos/netns.py) partitions, one-way links, delay and loss are
made by the kernel (tc on each namespace's veth) instead, and the in-process rules are posted from inside the
node's namespace (the admin route answers loopback clients only).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from node.chaos.cluster import ChaosCluster
from node.chaos.history import FaultEvent

FAULT_KINDS = (
    "kill_leader",
    "kill_follower",
    "kill_minority",
    "kill_all",
    "pause_leader",
    "pause_follower",
    "restart",
    "partition_halves",
    "partition_leader",
    "partition_bridge",
    "partition_oneway",
    "delay",
    "loss",
    "slow_disk",
    "clock_skew",
)
NODE_RULE_KINDS = ("slow_disk", "clock_skew")  # a rule for one node only (the leader), not the whole cluster
WARMUP_S = 3.0
TAIL_S = 1.0  # no fault starts this close to the end
SLOT_S = (3.0, 8.0)  # one fault plus the quiet gap after it
FAULT_SHARE = (0.5, 0.65)  # of a slot, the fault's part; the rest is quiet time to recover


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    duration: float
    kind: str
    salt: int


def schedule(seed: int, duration: float, kinds: tuple[str, ...] = FAULT_KINDS) -> list[Step]:
    """Faults for a run of `duration` seconds: every kind once (in a seeded order) before any repeats. Slots
    shrink (down to SLOT_S[0]) so that every kind fits when the run is long enough for it."""
    rng = random.Random(f"nemesis:{seed}")
    usable = duration - WARMUP_S - TAIL_S
    slot = min(SLOT_S[1], max(SLOT_S[0], usable / max(1, len(kinds))))
    steps: list[Step] = []
    t = WARMUP_S
    order: list[str] = []
    while t + slot <= duration - TAIL_S + 1e-9:
        if not order:
            order = list(kinds)
            rng.shuffle(order)
        d = round(slot * rng.uniform(*FAULT_SHARE), 2)
        steps.append(Step(round(t, 2), d, order.pop(), rng.randrange(1 << 30)))
        t += slot
    return steps


def minority_size(n: int) -> int:
    return (n - 1) // 2


def partition_groups(kind: str, ids: list[str], leader: str | None, rng: random.Random) -> dict[str, Any]:
    """The rule document for a network fault (see node/faults.py)."""
    nodes = list(ids)
    rng.shuffle(nodes)
    if kind == "partition_halves":
        k = len(nodes) // 2
        return {"partition": [sorted(nodes[:k]), sorted(nodes[k:])]}
    if kind == "partition_leader":
        lead = leader or nodes[0]
        return {"partition": [[lead], sorted(n for n in ids if n != lead)]}
    if kind == "partition_bridge":
        bridge, rest = nodes[0], nodes[1:]
        k = len(rest) // 2
        return {"partition": [sorted([bridge, *rest[:k]]), sorted([bridge, *rest[k:]])]}
    if kind == "partition_oneway":
        # The leader still hears everyone but nobody hears it: followers elect anew while it keeps leading.
        lead = leader or nodes[0]
        return {"block": [[lead, n] for n in ids if n != lead]}
    if kind == "delay":
        return {"delay_ms": rng.randrange(40, 200), "jitter_ms": rng.randrange(10, 80),
                "seed": rng.randrange(1 << 31)}
    if kind == "loss":
        return {"loss": round(rng.uniform(0.1, 0.35), 2), "seed": rng.randrange(1 << 31)}
    if kind == "slow_disk":
        return {"fsync_delay_ms": rng.randrange(50, 400)}
    if kind == "clock_skew":
        # Either way: a leader ahead stamps future block times; one behind must still never go back in time.
        return {"clock_skew_ms": rng.choice([-1, 1]) * rng.randrange(5_000, 60_000)}
    raise ValueError(f"not a network fault: {kind}")


def affected_by_rule(rule: dict[str, Any], ids: list[str]) -> list[str]:
    if "partition" in rule:
        groups: list[list[str]] = rule["partition"]
        smallest = sorted(groups, key=len)[0]
        return sorted(smallest)
    if "block" in rule:
        return sorted({src for src, _ in rule["block"]})
    return list(ids)


PostRule = Callable[[str, dict[str, Any]], Awaitable[bool]]
LeaderNow = Callable[[], str | None]


class Nemesis:
    """Plays a schedule. `faults` collects one FaultEvent per step, with its start and heal times."""

    def __init__(self, seed: int, cluster: ChaosCluster, steps: list[Step], post_rule: PostRule,
                 leader_now: LeaderNow, clock: Callable[[], float]) -> None:
        self.seed = seed
        self.cluster = cluster
        self.steps = steps
        self.post_rule = post_rule
        self.leader_now = leader_now
        self.clock = clock
        self.faults: list[FaultEvent] = []
        self.current: FaultEvent | None = None
        self._killed: list[str] = []
        self._paused: list[str] = []
        self._rule_active = False

    async def run(self) -> None:
        """Play every step. Cancelled (Ctrl-C), it returns at once without healing: the runner kills the
        cluster anyway. Any other failure heals first, then propagates."""
        for i, step in enumerate(self.steps):
            await self._sleep_until(step.at)
            rng = random.Random(f"nemesis:{self.seed}:{i}:{step.salt}")
            event = FaultEvent(step.kind, self.clock())
            self.current = event
            self.faults.append(event)
            try:
                await self._inject(step.kind, event, rng)
                await self._sleep_until(step.at + step.duration)
            except asyncio.CancelledError:
                event.end = self.clock()
                raise
            except Exception:
                await self.heal()
                raise
            await self.heal()
            event.end = self.clock()
            self.current = None

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def _followers(self, leader: str | None) -> list[str]:
        return [n for n in self.cluster.ids if n != leader and self.cluster.alive(n)]

    async def _inject(self, kind: str, event: FaultEvent, rng: random.Random) -> None:
        ids = self.cluster.ids
        leader = self.leader_now()
        pick_leader = leader if leader is not None else rng.choice(ids)
        if leader is None:
            event.detail = "no leader known; picked a random node. "
        if kind == "kill_leader":
            await self._kill([pick_leader], event)
        elif kind == "kill_follower":
            await self._kill([rng.choice(self._followers(leader) or ids)], event)
        elif kind == "kill_minority":
            await self._kill(rng.sample(ids, minority_size(len(ids))), event)
        elif kind == "kill_all":
            # Every node at once: only what each persisted before acknowledging survives.
            await self._kill(list(ids), event)
        elif kind == "pause_leader":
            self._pause([pick_leader], event)
        elif kind == "pause_follower":
            self._pause([rng.choice(self._followers(leader) or ids)], event)
        elif kind == "restart":
            target = rng.choice(ids)
            event.targets = [target]
            how = await asyncio.to_thread(self.cluster.stop, target)
            self.cluster.start(target)
            event.detail += f"graceful stop ({how}) and start again"
        elif kind in NODE_RULE_KINDS:
            rule = partition_groups(kind, ids, leader, rng)
            event.targets = [pick_leader]
            event.detail += _describe_rule(rule)
            self._rule_active = True
            await self._post_one(pick_leader, rule)
        else:
            rule = partition_groups(kind, ids, leader, rng)
            event.targets = affected_by_rule(rule, ids)
            event.detail += _describe_rule(rule)
            self._rule_active = True
            network = self.cluster.network
            if network is not None:
                how = await asyncio.to_thread(network.apply, rule)
                event.detail += f" [{how}]"
            else:
                await self._post_all(rule)

    async def _kill(self, targets: list[str], event: FaultEvent) -> None:
        event.targets = sorted(targets)
        event.detail += "SIGKILL; restarted at heal"
        for t in targets:
            await asyncio.to_thread(self.cluster.kill, t)
            self._killed.append(t)

    def _pause(self, targets: list[str], event: FaultEvent) -> None:
        event.targets = sorted(targets)
        event.detail += "SIGSTOP; SIGCONT at heal"
        for t in targets:
            self.cluster.pause(t)
            self._paused.append(t)

    async def _post_one(self, node: str, rule: dict[str, Any]) -> bool:
        network = self.cluster.network
        if network is not None:
            return await asyncio.to_thread(network.post_admin, node, rule)
        return await self.post_rule(node, rule)

    async def _post_all(self, rule: dict[str, Any]) -> None:
        await asyncio.gather(*(self._post_one(n, rule) for n in self.cluster.ids if self.cluster.alive(n)))

    async def heal(self) -> None:
        """Undo whatever is in force: resume paused nodes, restart killed ones, clear fault rules."""
        for n in self._paused:
            self.cluster.resume(n)
        self._paused.clear()
        for n in self._killed:
            self.cluster.start(n)
        self._killed.clear()
        if self._rule_active:
            if self.cluster.network is not None:
                await asyncio.to_thread(self.cluster.network.heal)
            await self._post_all({"heal": True})
            self._rule_active = False


def _describe_rule(rule: dict[str, Any]) -> str:
    rule = {k: v for k, v in rule.items() if k != "seed"}
    if "partition" in rule:
        return " | ".join(",".join(g) for g in rule["partition"])
    if "block" in rule:
        return "one-way: " + ", ".join(f"{a}->{b}" for a, b in rule["block"])
    return ", ".join(f"{k}={v}" for k, v in rule.items())


def monotonic_clock(t0: float) -> Callable[[], float]:
    return lambda: time.monotonic() - t0
