"""What a chaos run records: every request the workload made, every fault the nemesis injected, status samples,
and, after healing, what each node answers. Plain data; the checker and the report read only these.

Times are seconds since the start of the run (``time.monotonic() - t0``), floats; ``math.inf`` completion means
the client never learnt the outcome.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

COMMITTED = "committed"
REJECTED = "rejected"
UNKNOWN = "unknown"


@dataclass(slots=True)
class SubmitRecord:
    """One logical transaction (one tx id), possibly sent several times to several nodes."""

    tx_id: str
    kind: str  # payload type, e.g. "ecert.transfer"
    client: str  # the workload client (org + worker number)
    signer: str
    body: dict[str, Any]
    invoke: float
    complete: float = math.inf  # when the definite answer arrived; inf while unknown
    outcome: str = UNKNOWN
    height: int | None = None
    result: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None  # last transport-level failure (timeout, unavailable, ...) for unknown ones
    nodes: list[str] = field(default_factory=list)  # nodes tried, in order
    attempts: int = 0

    @property
    def latency(self) -> float | None:
        return None if math.isinf(self.complete) else self.complete - self.invoke


@dataclass(slots=True)
class ReadRecord:
    """One ``GET /v1/certs/{id}?consistency=linearizable``; ``ok`` False when no answer (then ignored)."""

    cert_id: str
    node: str
    client: str
    invoke: float
    complete: float
    ok: bool
    value: tuple[str, str] | None = None  # (holder, status); None: the node said 404
    error: str | None = None


@dataclass(slots=True)
class FaultEvent:
    """One injected fault: its kind, the nodes it hit, and when it started and was healed."""

    kind: str
    start: float
    end: float | None = None
    targets: list[str] = field(default_factory=list)
    detail: str = ""


@dataclass(slots=True)
class StatusSample:
    """One poll of every node's /v1/status; ``None`` for a node that did not answer in time."""

    t: float
    statuses: dict[str, dict[str, Any] | None]


@dataclass(slots=True)
class NodeDump:
    """What one node answers after healing and convergence."""

    node_id: str
    status: dict[str, Any] | None
    blocks: dict[int, dict[str, Any]] = field(default_factory=dict)  # height -> {"hash", "tx_ids", ...}
    txs: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # tx id -> /v1/tx answer (None: unknown)
    certs: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # cert id -> /v1/certs answer
    lineages: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # root id -> lineage
    credit: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # "bank/core" -> credit line
    errors: list[str] = field(default_factory=list)
    state_check: dict[str, Any] | None = None
    """Its data directory after the processes stopped (node/chaos/state_check.py); None: not checked."""


@dataclass(slots=True)
class Violation:
    kind: str  # lost | outcome_mismatch | unknown_divergent | applied_twice | block_mismatch | ...
    message: str
    txs: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    certs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class History:
    seed: int
    nodes: list[str]
    txs: list[SubmitRecord] = field(default_factory=list)
    reads: list[ReadRecord] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    samples: list[StatusSample] = field(default_factory=list)
    duration: float = 0.0
    crashes: list[dict[str, Any]] = field(default_factory=list)  # nodes that exited on their own


def history_from_json(doc: dict[str, Any]) -> tuple[History, list[NodeDump]]:
    """Read back what the runner writes to history.json (tests replay and doctor real runs with it)."""
    h = dict(doc["history"])
    history = History(
        seed=h["seed"], nodes=list(h["nodes"]), duration=h["duration"], crashes=list(h.get("crashes") or []),
        txs=[SubmitRecord(**t) for t in h["txs"]],
        reads=[ReadRecord(**{**r, "value": tuple(r["value"]) if r["value"] is not None else None})
               for r in h["reads"]],
        faults=[FaultEvent(**f) for f in h["faults"]],
        samples=[StatusSample(**s) for s in h["samples"]],
    )
    dumps = [NodeDump(**{**d, "blocks": {int(k): v for k, v in d["blocks"].items()}}) for d in doc["dumps"]]
    return history, dumps
