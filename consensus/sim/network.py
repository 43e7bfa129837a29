"""A simulated network: seeded drop, duplication, delay (and so reordering), and partitions as cut links.

Time is an integer count of milliseconds. Every decision comes from the `random.Random` the simulation owns,
so a seed replays the same deliveries in the same order.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from consensus.messages import Message, NodeId

PARTITION_KINDS = ("halves", "isolate_leader", "bridge", "ring", "one_way")


@dataclass(slots=True)
class LinkFaults:
    """Per-run network misbehaviour, in parts per thousand and milliseconds."""

    drop_permille: int = 0
    duplicate_permille: int = 0
    latency_ms_min: int = 1
    latency_ms_max: int = 1
    slow_permille: int = 0
    """Messages delayed by up to `slow_ms_max` more: these overtake nothing but get overtaken (reordering)."""
    slow_ms_max: int = 0


def cut_links(kind: str, nodes: Sequence[NodeId], leader: NodeId | None,
              rng: random.Random) -> set[tuple[NodeId, NodeId]]:
    """The directed links (from, to) a partition of `kind` blocks among `nodes`."""
    order = list(nodes)
    rng.shuffle(order)
    if kind == "isolate_leader":
        alone = leader if leader in order else order[0]
        return _between([alone], [n for n in order if n != alone])
    if kind == "halves":
        k = rng.randrange(1, len(order))
        return _between(order[:k], order[k:])
    if kind == "bridge":
        # Two sides that only a single node can talk to: it may be elected by both in turn.
        bridge, rest = order[0], order[1:]
        k = max(1, len(rest) // 2)
        return _between(rest[:k], rest[k:]) - {(bridge, n) for n in rest} - {(n, bridge) for n in rest}
    if kind == "ring":
        # Each node hears only its two ring neighbours.
        n = len(order)
        allowed = {(order[i], order[(i + d) % n]) for i in range(n) for d in (1, -1)}
        return {(a, b) for a in order for b in order if a != b and (a, b) not in allowed}
    if kind == "one_way":
        # A node whose outgoing (or incoming) links are dead: it hears but is not heard, or the reverse.
        victim = leader if leader in order and rng.randrange(2) else order[0]
        others = [n for n in order if n != victim]
        if rng.randrange(2):
            return {(victim, n) for n in others}
        return {(n, victim) for n in others}
    raise ValueError(f"unknown partition kind {kind!r}")


def _between(a: Iterable[NodeId], b: Iterable[NodeId]) -> set[tuple[NodeId, NodeId]]:
    side_b = list(b)
    return {(x, y) for x in a for y in side_b} | {(y, x) for x in a for y in side_b}


class Network:
    def __init__(self, rng: random.Random, faults: LinkFaults) -> None:
        self._rng = rng
        self.faults = faults
        self.cut: set[tuple[NodeId, NodeId]] = set()
        self._in_flight: list[tuple[int, int, Message]] = []
        self._seq = 0
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def send(self, now_ms: int, msg: Message) -> None:
        self.sent += 1
        f = self.faults
        if (msg.from_id, msg.to) in self.cut or self._rng.randrange(1000) < f.drop_permille:
            self.dropped += 1
            return
        copies = 2 if self._rng.randrange(1000) < f.duplicate_permille else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            delay = self._rng.randint(f.latency_ms_min, f.latency_ms_max)
            if f.slow_ms_max and self._rng.randrange(1000) < f.slow_permille:
                delay += self._rng.randint(1, f.slow_ms_max)
            self._seq += 1
            heapq.heappush(self._in_flight, (now_ms + delay, self._seq, msg))

    def next_delivery_ms(self) -> int | None:
        return self._in_flight[0][0] if self._in_flight else None

    def pop_due(self, now_ms: int) -> Message | None:
        """The next message due at or before `now_ms`, unless a partition cut its link meanwhile."""
        while self._in_flight and self._in_flight[0][0] <= now_ms:
            _, _, msg = heapq.heappop(self._in_flight)
            if (msg.from_id, msg.to) in self.cut:
                self.dropped += 1
                continue
            return msg
        return None

    def drop_on_cut_links(self) -> None:
        """Drop now what is in flight on a cut link (a scripted test wants it gone before a later reconnect)."""
        kept = [item for item in self._in_flight if (item[2].from_id, item[2].to) not in self.cut]
        self.dropped += len(self._in_flight) - len(kept)
        heapq.heapify(kept)
        self._in_flight = kept

    def drop_to(self, node: NodeId) -> None:
        """A crashed node loses what was in flight to it (its socket buffers died with it)."""
        kept = [item for item in self._in_flight if item[2].to != node]
        self.dropped += len(self._in_flight) - len(kept)
        heapq.heapify(kept)
        self._in_flight = kept

    def in_flight(self) -> int:
        return len(self._in_flight)
