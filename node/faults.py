"""Fault layer of the peer transport: what chaos runs use to cut, slow and lose Raft traffic.

Compiled into every node but inert unless the node runs with ``--fault-injection``: only then does the node
register ``POST /admin/faults`` (loopback clients only), and until a rule is posted every frame passes.

The transport asks before each frame it sends, ``outbound(dst) -> (drop, delay_ms)``, and after each frame it
receives, ``inbound(src) -> (drop, delay_ms)``. Every node of a cluster receives the *same* rule document and
keeps the part that concerns its own id; a link is cut when either end says so, so a rule that reached only one
side of a link still cuts it.

Rule documents (JSON bodies of ``POST /admin/faults``; keys may be combined, each replaces its part):

- ``{"partition": [[ids...], [ids...], ...]}``: two nodes named in the groups can talk only if some group holds
  both. A node in two groups bridges them (Jepsen's "bridge"). Nodes named in no group keep every link.
- ``{"block": [[src, dst], ...]}``: one-way cuts; frames from src to dst are dropped.
- ``{"loss": p}``: each outbound frame is dropped with probability p (0 <= p <= 1).
- ``{"delay_ms": n, "jitter_ms": j}``: each outbound frame waits n + uniform(0, j) ms.
- ``{"fsync_delay_ms": n}``, ``{"clock_skew_ms": n}``: hooks the node may read (slow disk, skewed proposer
  clock); the layer itself only stores them.
- ``{"seed": n}``: re-seed the loss/jitter randomness (with the node id), so a chaos seed replays the same draws.
- ``{"break_invariant": {"node": id, "at": "apply" | "step"}}``: node `id` breaks an invariant (raises
  `InvariantViolation`) once, when it next applies a committed entry or steps a peer message; the other nodes
  ignore the rule. Tests use it to see a broken invariant stop a running node (exit status 70).
- ``{"heal": true}``: forget every rule.
"""

from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOSS_MAX = 1.0
DELAY_MS_MAX = 60_000
GROUPS_MAX = 64
BLOCKS_MAX = 4096
RULE_BODY_BYTES_MAX = 64 << 10
INVARIANT_BREAK_POINTS = ("apply", "step")
"""Where `break_invariant` may strike (node/driver.py asks at each)."""


class FaultRuleError(ValueError):
    """A rule document is malformed; ``code`` is the stable error code sent to the client."""

    code = "bad_fault_rule"


@dataclass(slots=True)
class FaultRules:
    """The fault state of one node. Mutable: the admin endpoint replaces parts of it while the node runs."""

    node_id: str
    seed: int = 0
    groups: tuple[frozenset[str], ...] = ()
    blocked: frozenset[tuple[str, str]] = frozenset()
    loss: float = 0.0
    delay_ms: int = 0
    jitter_ms: int = 0
    fsync_delay_ms: int = 0
    clock_skew_ms: int = 0
    invariant_break: str | None = None
    """One of INVARIANT_BREAK_POINTS, armed by `break_invariant`; cleared when it strikes."""
    dropped: int = 0
    delayed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:{self.node_id}")

    # -- the transport's questions --------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return bool(self.groups or self.blocked or self.loss or self.delay_ms or self.jitter_ms)

    def link_cut(self, src: str, dst: str) -> bool:
        """Whether frames from src to dst are cut by the partition or a one-way block (no randomness)."""
        if (src, dst) in self.blocked:
            return True
        if not self.groups:
            return False
        src_in = [g for g in self.groups if src in g]
        dst_in = [g for g in self.groups if dst in g]
        if not src_in or not dst_in:
            return False
        return not any(dst in g for g in src_in)

    def outbound(self, dst: str) -> tuple[bool, int]:
        """Before sending a frame to dst: (drop it?, delay in ms)."""
        if not self.active:
            return False, 0
        if self.link_cut(self.node_id, dst) or (self.loss and self._rng.random() < self.loss):
            self.dropped += 1
            return True, 0
        return False, self._delay()

    def inbound(self, src: str) -> tuple[bool, int]:
        """After receiving a frame from src: (drop it?, delay in ms). Loss and delay act on the sender side
        only, so a lossy link is not made twice as lossy."""
        if not (self.groups or self.blocked):
            return False, 0
        if self.link_cut(src, self.node_id):
            self.dropped += 1
            return True, 0
        return False, 0

    def take_invariant_break(self, point: str) -> bool:
        """The driver, at `point`: whether to break an invariant here (once: the rule is then spent)."""
        if self.invariant_break != point:
            return False
        self.invariant_break = None
        return True

    def _delay(self) -> int:
        if not (self.delay_ms or self.jitter_ms):
            return 0
        self.delayed += 1
        return self.delay_ms + (self._rng.randint(0, self.jitter_ms) if self.jitter_ms else 0)

    # -- rule documents -------------------------------------------------------------------------------

    def heal(self) -> None:
        self.groups = ()
        self.blocked = frozenset()
        self.loss = 0.0
        self.delay_ms = 0
        self.jitter_ms = 0
        self.fsync_delay_ms = 0
        self.clock_skew_ms = 0
        self.invariant_break = None

    def apply(self, doc: Any) -> None:
        """Validate a whole rule document first, then apply it, so a bad document changes nothing."""
        if not isinstance(doc, dict) or not doc:
            raise FaultRuleError("rule document must be a non-empty JSON object")
        unknown = set(doc) - {"partition", "block", "loss", "delay_ms", "jitter_ms", "fsync_delay_ms",
                              "clock_skew_ms", "heal", "seed", "break_invariant"}
        if unknown:
            raise FaultRuleError(f"unknown keys: {sorted(unknown)}")
        groups = _parse_groups(doc["partition"]) if "partition" in doc else None
        blocked = _parse_blocks(doc["block"]) if "block" in doc else None
        loss = _parse_loss(doc["loss"]) if "loss" in doc else None
        ints = {k: _parse_ms(k, doc[k]) for k in ("delay_ms", "jitter_ms", "fsync_delay_ms") if k in doc}
        skew = _parse_skew(doc["clock_skew_ms"]) if "clock_skew_ms" in doc else None
        breaks = _parse_invariant_break(doc["break_invariant"]) if "break_invariant" in doc else None
        seed = doc.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultRuleError("seed must be an integer")
        if doc.get("heal") is True:
            self.heal()
        elif "heal" in doc:
            raise FaultRuleError("heal must be true")
        if groups is not None:
            self.groups = groups
        if blocked is not None:
            self.blocked = blocked
        if loss is not None:
            self.loss = loss
        for k, v in ints.items():
            setattr(self, k, v)
        if skew is not None:
            self.clock_skew_ms = skew
        if seed is not None:
            self.seed = seed
            self._rng = random.Random(f"{seed}:{self.node_id}")
        if breaks is not None and breaks[0] == self.node_id:
            self.invariant_break = breaks[1]

    def describe(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "partition": [sorted(g) for g in self.groups],
            "block": sorted([list(b) for b in self.blocked]),
            "loss": self.loss,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "fsync_delay_ms": self.fsync_delay_ms,
            "clock_skew_ms": self.clock_skew_ms,
            "invariant_break": self.invariant_break,
            "dropped": self.dropped,
            "delayed": self.delayed,
        }


def _parse_groups(raw: Any) -> tuple[frozenset[str], ...]:
    if not isinstance(raw, list) or len(raw) > GROUPS_MAX:
        raise FaultRuleError("partition must be a list of groups of node ids")
    groups = []
    for g in raw:
        if not isinstance(g, list) or not g or not all(isinstance(x, str) and x for x in g):
            raise FaultRuleError("each partition group must be a non-empty list of node ids")
        groups.append(frozenset(g))
    return tuple(groups)


def _parse_blocks(raw: Any) -> frozenset[tuple[str, str]]:
    if not isinstance(raw, list) or len(raw) > BLOCKS_MAX:
        raise FaultRuleError("block must be a list of [src, dst] pairs")
    out = set()
    for pair in raw:
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, str) and x for x in pair) or pair[0] == pair[1]):
            raise FaultRuleError("each block must be [src, dst] with two different node ids")
        out.add((pair[0], pair[1]))
    return frozenset(out)


def _parse_loss(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= LOSS_MAX:
        raise FaultRuleError("loss must be a number in [0, 1]")
    return float(raw)


def _parse_ms(key: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= DELAY_MS_MAX:
        raise FaultRuleError(f"{key} must be an integer in [0, {DELAY_MS_MAX}]")
    return raw


def _parse_skew(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > DELAY_MS_MAX * 10:
        raise FaultRuleError("clock_skew_ms must be an integer")
    return raw


def _parse_invariant_break(raw: Any) -> tuple[str, str]:
    if (not isinstance(raw, dict) or set(raw) != {"node", "at"} or not isinstance(raw["node"], str)
            or not raw["node"] or raw["at"] not in INVARIANT_BREAK_POINTS):
        raise FaultRuleError(f"break_invariant must be {{\"node\": id, \"at\": one of "
                             f"{', '.join(INVARIANT_BREAK_POINTS)}}}")
    return raw["node"], raw["at"]


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


FAULT_RULES_KEY = web.AppKey("fault_rules", FaultRules)


def setup_admin_routes(app: web.Application, rules: FaultRules) -> None:
    """Add ``POST /admin/faults`` (apply a rule document) and ``GET /admin/faults`` (current rules).
    Register only when the node runs with ``--fault-injection``; both refuse non-loopback clients."""
    app[FAULT_RULES_KEY] = rules

    async def post_faults(request: web.Request) -> web.Response:
        if not _is_loopback(request.remote):
            return _error(403, "forbidden", "fault injection is accepted from loopback clients only")
        if request.content_length is not None and request.content_length > RULE_BODY_BYTES_MAX:
            return _error(413, "body_too_large", "rule document too large")
        body = await request.content.read(RULE_BODY_BYTES_MAX + 1)
        if len(body) > RULE_BODY_BYTES_MAX:
            return _error(413, "body_too_large", "rule document too large")
        try:
            doc = json.loads(body or b"null")
            rules.apply(doc)
        except ValueError as exc:
            return _error(400, FaultRuleError.code, str(exc))
        return web.json_response(rules.describe())

    async def get_faults(request: web.Request) -> web.Response:
        if not _is_loopback(request.remote):
            return _error(403, "forbidden", "fault injection is accepted from loopback clients only")
        return web.json_response(rules.describe())

    app.router.add_post("/admin/faults", post_faults)
    app.router.add_get("/admin/faults", get_faults)
