"""Alarms of one node: a pure rule evaluation over plain frozen data, plus a small clock-free tracker.

`evaluate(snapshot, rules)` reads nothing but its arguments: every time is passed in as milliseconds, so a
test states a situation and the alarms it must raise. `AlarmTracker` keeps the little history the rules need
(since when no leader, since when a peer is unreachable, recent leader changes and rejections) and says which
alarms were raised or cleared since the last call, for the log. The caller (node/http/dashboard.py) owns the clock.

The rules (issue 7), names stable for dashboards and alerting:
- `no_leader`: no leader known for longer than `no_leader_election_timeouts` election timeouts;
- `peer_unreachable`: a peer not heard from for `peer_unreachable_ms`;
- `follower_lagging`: a follower more than `follower_lag_entries_max` entries behind the leader;
- `leader_flapping`: more than `leader_changes_max` leader changes within `leader_changes_window_ms`;
- `apply_halted`: the node stopped applying blocks (apply error or invariant breach) and says why;
- `disk_nearly_full`: free space on the data directory's filesystem below a share or a byte floor;
- `tx_rejection_burst`: more than `rejected_burst_max` rejected txs within `rejected_window_ms`.

Business alarms (issue 14, item 8), from the committed state at the last block time (`business_scan`, pure over
a StateView; `BusinessWatch` runs it at most once per height and `business_every_ms`). Each names no org: its
subject is "business" and its message counts (the alarms are for every member, `/metrics` for anyone — CONTRACT
§6: credit lines, certificates and disputes are their parties'):
- `certs_overdue`: live certificates past maturity, not defaulted;
- `certs_defaulted`: defaulted certificates still owed;
- `credit_near_limit`: credit lines, and banks' financing limits per org, used to `near_limit_pct` or more;
- `credit_expiring`: credit lines expiring within `expiry_window_ms`, or expired with credit still used;
- `disputes_overdue`: unresolved disputes past their resolution deadline (escalated to the regulator);
- `complaints_overdue`: complaints not closed that are escalated or unanswered past their deadline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.invariant import require
from ecert import disputes, financing
from ecert import state as ecert_state
from ledger.state_view import StateView

WARNING = "warning"
CRITICAL = "critical"

NO_LEADER = "no_leader"
PEER_UNREACHABLE = "peer_unreachable"
FOLLOWER_LAGGING = "follower_lagging"
LEADER_FLAPPING = "leader_flapping"
APPLY_HALTED = "apply_halted"
DISK_NEARLY_FULL = "disk_nearly_full"
TX_REJECTION_BURST = "tx_rejection_burst"

ALARM_NAMES = (NO_LEADER, PEER_UNREACHABLE, FOLLOWER_LAGGING, LEADER_FLAPPING, APPLY_HALTED, DISK_NEARLY_FULL,
               TX_REJECTION_BURST)
CERTS_OVERDUE = "certs_overdue"
CERTS_DEFAULTED = "certs_defaulted"
CREDIT_NEAR_LIMIT = "credit_near_limit"
CREDIT_EXPIRING = "credit_expiring"
DISPUTES_OVERDUE = "disputes_overdue"
COMPLAINTS_OVERDUE = "complaints_overdue"
BUSINESS_ALARM_NAMES = (CERTS_OVERDUE, CERTS_DEFAULTED, CREDIT_NEAR_LIMIT, CREDIT_EXPIRING, DISPUTES_OVERDUE,
                        COMPLAINTS_OVERDUE)
BUSINESS_SUBJECT = "business"
"""The subject of every business alarm: no org, no certificate (module docstring)."""


@dataclass(frozen=True, slots=True)
class AlarmRules:
    """Thresholds. Defaults suit the shipped cluster (tick 50 ms x 10 ticks = 500 ms election timeout)."""

    election_timeout_ms: int = 500
    no_leader_election_timeouts: int = 4
    peer_unreachable_ms: int = 2_000
    follower_lag_entries_max: int = 1_000
    leader_changes_max: int = 3
    leader_changes_window_ms: int = 60_000
    disk_free_ratio_min_pct: int = 10
    disk_free_critical_pct: int = 3
    disk_free_bytes_min: int = 256 << 20
    rejected_burst_max: int = 50
    rejected_window_ms: int = 10_000

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 0, f"alarm rule {name} must be a non-negative int")
        require(self.election_timeout_ms > 0, "election_timeout_ms must be positive")
        require(self.leader_changes_window_ms > 0 and self.rejected_window_ms > 0, "windows must be positive")

    @property
    def no_leader_ms(self) -> int:
        return self.election_timeout_ms * self.no_leader_election_timeouts


@dataclass(frozen=True, slots=True)
class PeerInput:
    id: str
    """The peer's node id."""
    reachable: bool
    """The transport or the leader's progress says the peer answers."""
    unreachable_since_ms: int | None = None
    """When it was first seen unreachable in the current outage (None while reachable)."""
    lag: int | None = None
    """Entries behind the leader's last index; known on the leader only."""


@dataclass(frozen=True, slots=True)
class AlarmInput:
    now_ms: int
    node_id: str
    role: str
    leader_id: str | None
    leaderless_since_ms: int | None = None
    """When this node last lost (or, after start, began without) a leader; None while one is known."""
    peers: tuple[PeerInput, ...] = ()
    leader_change_times_ms: tuple[int, ...] = ()
    apply_error: str | None = None
    """Why the node stopped applying, or None while it applies."""
    disk_free_bytes: int | None = None
    disk_total_bytes: int | None = None
    rejected_txs: tuple[tuple[int, int], ...] = ()
    """(time_ms, count) of rejected txs seen, oldest first."""


@dataclass(frozen=True, slots=True)
class Alarm:
    name: str
    severity: str
    subject: str
    """What the alarm is about: a node id, or "cluster"."""
    message: str
    since_ms: int | None = None
    """When it was first raised (filled in by AlarmTracker; evaluate leaves it None)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity, "subject": self.subject, "message": self.message,
                "since_ms": self.since_ms}


def evaluate(snapshot: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    """Every alarm the snapshot raises under the rules, in a stable order."""
    alarms: list[Alarm] = []
    alarms += _no_leader(snapshot, rules)
    alarms += _peers(snapshot, rules)
    alarms += _leader_flapping(snapshot, rules)
    alarms += _apply_halted(snapshot)
    alarms += _disk(snapshot, rules)
    alarms += _rejections(snapshot, rules)
    return alarms


def _no_leader(s: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    if s.leader_id or s.leaderless_since_ms is None:
        return []
    waited = s.now_ms - s.leaderless_since_ms
    if waited <= rules.no_leader_ms:
        return []
    return [Alarm(NO_LEADER, CRITICAL, s.node_id,
                  f"{s.node_id} has known no leader for {waited} ms "
                  f"(> {rules.no_leader_election_timeouts} election timeouts of {rules.election_timeout_ms} ms)")]


def _peers(s: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    alarms: list[Alarm] = []
    for p in sorted(s.peers, key=lambda p: p.id):
        if p.id == s.node_id:
            continue
        if not p.reachable and p.unreachable_since_ms is not None:
            down = s.now_ms - p.unreachable_since_ms
            if down >= rules.peer_unreachable_ms:
                alarms.append(Alarm(PEER_UNREACHABLE, CRITICAL, p.id,
                                    f"{p.id} unreachable from {s.node_id} for {down} ms"))
                continue
        if s.role == "leader" and p.lag is not None and p.lag > rules.follower_lag_entries_max:
            alarms.append(Alarm(FOLLOWER_LAGGING, WARNING, p.id,
                                f"{p.id} is {p.lag} entries behind the leader {s.node_id} "
                                f"(> {rules.follower_lag_entries_max})"))
    return alarms


def _leader_flapping(s: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    start = s.now_ms - rules.leader_changes_window_ms
    changes = sum(1 for t in s.leader_change_times_ms if t > start)
    if changes <= rules.leader_changes_max:
        return []
    return [Alarm(LEADER_FLAPPING, WARNING, "cluster",
                  f"leader changed {changes} times in {rules.leader_changes_window_ms // 1000} s "
                  f"(> {rules.leader_changes_max}) as seen by {s.node_id}")]


def _apply_halted(s: AlarmInput) -> list[Alarm]:
    if s.apply_error is None:
        return []
    return [Alarm(APPLY_HALTED, CRITICAL, s.node_id, f"{s.node_id} stopped applying blocks: {s.apply_error}")]


def _disk(s: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    if s.disk_free_bytes is None or not s.disk_total_bytes:
        return []
    free_pct_x100 = s.disk_free_bytes * 10_000 // s.disk_total_bytes
    low_share = free_pct_x100 < rules.disk_free_ratio_min_pct * 100
    low_bytes = s.disk_free_bytes < rules.disk_free_bytes_min
    if not (low_share or low_bytes):
        return []
    critical = free_pct_x100 < rules.disk_free_critical_pct * 100
    return [Alarm(DISK_NEARLY_FULL, CRITICAL if critical else WARNING, s.node_id,
                  f"{s.node_id} data disk has {s.disk_free_bytes >> 20} MiB free "
                  f"({free_pct_x100 // 100}.{free_pct_x100 % 100:02d}% of {s.disk_total_bytes >> 20} MiB)")]


def _rejections(s: AlarmInput, rules: AlarmRules) -> list[Alarm]:
    start = s.now_ms - rules.rejected_window_ms
    rejected = sum(n for t, n in s.rejected_txs if t > start)
    if rejected <= rules.rejected_burst_max:
        return []
    return [Alarm(TX_REJECTION_BURST, WARNING, s.node_id,
                  f"{rejected} txs rejected in {rules.rejected_window_ms // 1000} s on {s.node_id} "
                  f"(> {rules.rejected_burst_max}): a client may be misbehaving")]


# --- the tracker: history for the rules, and transitions for the log -----------------------------------------

history_max = 1024


@dataclass(frozen=True, slots=True)
class Transition:
    raised: bool
    alarm: Alarm


@dataclass(slots=True)
class AlarmTracker:
    """Keeps what the rules need across samples. Clock-free: every method takes `now_ms`."""

    node_id: str
    rules: AlarmRules
    started_ms: int
    _leader_id: str | None = None
    _leaderless_since_ms: int | None = None
    _unreachable_since: dict[str, int] = field(default_factory=dict)
    _leader_changes: deque[int] = field(default_factory=lambda: deque(maxlen=history_max))
    _rejected: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=history_max))
    _active: dict[tuple[str, str], Alarm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A node starts without a leader: the clock for `no_leader` runs from start.
        self._leaderless_since_ms = self.started_ms

    def note_rejected(self, now_ms: int, count: int) -> None:
        if count > 0:
            self._rejected.append((now_ms, count))

    def note_leader_change(self, now_ms: int) -> None:
        """For a node that counts leader changes itself (more precise than sampling)."""
        self._leader_changes.append(now_ms)

    def sample(self, now_ms: int, status: Mapping[str, Any], peers: Sequence[Mapping[str, Any]],
               *, apply_error: str | None = None, disk: tuple[int, int] | None = None,
               count_leader_changes: bool = True) -> AlarmInput:
        """Fold one observation of the node (its /v1/status map and peers list) into an AlarmInput."""
        leader = status.get("leader_id") or None
        if leader is None:
            if self._leaderless_since_ms is None:
                self._leaderless_since_ms = now_ms
        else:
            if count_leader_changes and self._leader_id is not None and leader != self._leader_id:
                self._leader_changes.append(now_ms)
            self._leader_id = leader
            self._leaderless_since_ms = None
        peer_inputs = []
        for p in peers:
            pid = p.get("id")
            if not isinstance(pid, str) or pid == self.node_id:
                continue
            reachable = p.get("reachable") is not False
            if reachable:
                self._unreachable_since.pop(pid, None)
            else:
                # An unreachable peer at start has been "down" since the node started.
                self._unreachable_since.setdefault(pid, max(self.started_ms, now_ms - _age(p, now_ms)))
            lag = p.get("lag")
            peer_inputs.append(PeerInput(pid, reachable, self._unreachable_since.get(pid),
                                         lag if isinstance(lag, int) and not isinstance(lag, bool) else None))
        return AlarmInput(
            now_ms=now_ms, node_id=self.node_id, role=str(status.get("role", "")), leader_id=leader,
            leaderless_since_ms=self._leaderless_since_ms, peers=tuple(peer_inputs),
            leader_change_times_ms=tuple(self._leader_changes), apply_error=apply_error,
            disk_free_bytes=disk[0] if disk else None, disk_total_bytes=disk[1] if disk else None,
            rejected_txs=tuple(self._rejected))

    def update(self, now_ms: int, alarms: Iterable[Alarm]) -> tuple[list[Alarm], list[Transition]]:
        """Record the alarms now raised; return them with `since_ms` set, and what was raised / cleared."""
        current: dict[tuple[str, str], Alarm] = {}
        transitions: list[Transition] = []
        for a in alarms:
            before = self._active.get(a.key)
            since = before.since_ms if before is not None else now_ms
            current[a.key] = Alarm(a.name, a.severity, a.subject, a.message, since)
            if before is None:
                transitions.append(Transition(True, current[a.key]))
        for key, a in self._active.items():
            if key not in current:
                transitions.append(Transition(False, a))
        self._active = current
        return list(current.values()), transitions


def _age(peer: Mapping[str, Any], now_ms: int) -> int:
    """How long ago the peer was last heard from, 0 if unknown (so the outage starts now)."""
    last = peer.get("last_contact_ms")
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        return 0
    if last > 10**12:  # a wall-clock time rather than an age
        return max(0, now_ms - last)
    return last


# --- business alarms -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusinessRules:
    near_limit_pct: int = 90
    expiry_window_ms: int = 30 * 86_400_000
    certs_max: int = 20_000
    """Live certificates one scan reads (the holdings index): past it the counts cover those read."""
    records_max: int = 10_000
    """Credit lines, financing records, disputes and complaints one scan reads, each."""
    business_every_ms: int = 10_000
    """The least time between two scans (and at most one per height: state only changes with a block)."""

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 0, f"business rule {name} must be a non-negative int")
        require(0 < self.near_limit_pct <= 100, "near_limit_pct must be in 1..100")
        require(self.certs_max > 0 and self.records_max > 0, "a scan reads at least one record")


@dataclass(frozen=True, slots=True)
class BusinessCounts:
    """Aggregate counts (no org): what `/metrics` exports and the business alarms are raised on."""

    certs_overdue: int = 0
    overdue_unpaid: int = 0
    certs_defaulted: int = 0
    defaulted_unpaid: int = 0
    credit_near_limit: int = 0
    finance_near_limit: int = 0
    credit_expiring: int = 0
    credit_expired_used: int = 0
    disputes_open: int = 0
    disputes_overdue: int = 0
    complaints_open: int = 0
    complaints_overdue: int = 0
    complete: bool = True
    """False when a bound cut a scan short (the counts are then lower bounds)."""


def _bounded(view: StateView, prefix: bytes, most: int) -> tuple[list[tuple[bytes, bytes]], bool]:
    rows: list[tuple[bytes, bytes]] = []
    for row in view.scan(prefix):
        if len(rows) >= most:
            return rows, False
        rows.append(row)
    return rows, True


def _near(used: int, limit: int, pct: int) -> bool:
    return limit > 0 and used * 100 >= limit * pct


def business_counts(view: StateView, now: int, rules: BusinessRules) -> BusinessCounts:
    """The counts at block time `now`: bounded scans of the holdings (live certificates), credit lines,
    financing records, unresolved disputes (their locks) and open complaints. Reads nothing else."""
    complete = True
    overdue = [0, 0]
    defaulted = [0, 0]
    held, ok = _bounded(view, b"h/", rules.certs_max)
    complete &= ok
    for key, _ in held:
        cert = ecert_state.get_cert(view, key.rpartition(b"/")[2].decode())
        if cert is None:
            continue
        unpaid = cert.amount - cert.paid
        if cert.status == ecert_state.DEFAULTED:
            defaulted[0] += 1
            defaulted[1] += unpaid
        elif now >= cert.maturity:
            overdue[0] += 1
            overdue[1] += unpaid
    near = expiring = expired_used = 0
    lines, ok = _bounded(view, ecert_state.CREDIT_PREFIX, rules.records_max)
    complete &= ok
    for _, value in lines:
        line = ecert_state.decode_record(ecert_state.CreditLine, value)
        near += _near(line.used, line.limit, rules.near_limit_pct)
        if now < line.expires_at <= now + rules.expiry_window_ms:
            expiring += 1
        elif line.expires_at <= now and line.used > 0:
            expired_used += 1
    finance_near = 0
    exposures, ok = _bounded(view, financing.EXPOSURE_PREFIX, rules.records_max)
    complete &= ok
    for _, value in exposures:
        exposure = ecert_state.decode_record(financing.Exposure, value)
        finance_near += exposure.limit is not None and _near(exposure.used, exposure.limit, rules.near_limit_pct)
    disputes_overdue = 0
    locks, ok = _bounded(view, disputes.LOCK_PREFIX, rules.records_max)
    complete &= ok
    for _, value in locks:
        dispute = disputes.get_dispute(view, value.decode())
        disputes_overdue += dispute is not None and disputes.dispute_escalated(dispute, now)
    complaints_overdue = 0
    complaints, ok = _bounded(view, disputes.COMPLAINT_OPEN_PREFIX, rules.records_max)
    complete &= ok
    for key, _ in complaints:
        complaint = disputes.get_complaint(view, key[len(disputes.COMPLAINT_OPEN_PREFIX):].decode())
        complaints_overdue += complaint is not None and disputes.complaint_escalated(complaint, now)
    return BusinessCounts(
        certs_overdue=overdue[0], overdue_unpaid=overdue[1], certs_defaulted=defaulted[0],
        defaulted_unpaid=defaulted[1], credit_near_limit=near, finance_near_limit=finance_near,
        credit_expiring=expiring, credit_expired_used=expired_used, disputes_open=len(locks),
        disputes_overdue=disputes_overdue, complaints_open=len(complaints), complaints_overdue=complaints_overdue,
        complete=complete)


def business_alarms(counts: BusinessCounts, rules: BusinessRules) -> list[Alarm]:
    """The business alarms the counts raise, in a stable order (subject "business", messages of counts only)."""
    alarms: list[Alarm] = []
    cut = "" if counts.complete else " (at least: a scan reached its bound)"
    if counts.certs_overdue:
        alarms.append(Alarm(CERTS_OVERDUE, WARNING, BUSINESS_SUBJECT,
                            f"{counts.certs_overdue} certificates past maturity and unpaid, {counts.overdue_unpaid} "
                            f"fen{cut}"))
    if counts.certs_defaulted:
        alarms.append(Alarm(CERTS_DEFAULTED, CRITICAL, BUSINESS_SUBJECT,
                            f"{counts.certs_defaulted} certificates defaulted, {counts.defaulted_unpaid} fen unpaid{cut}"))
    if counts.credit_near_limit or counts.finance_near_limit:
        alarms.append(Alarm(CREDIT_NEAR_LIMIT, WARNING, BUSINESS_SUBJECT,
                            f"{counts.credit_near_limit} credit lines and {counts.finance_near_limit} financing "
                            f"limits at {rules.near_limit_pct}% or more of their limit{cut}"))
    if counts.credit_expiring or counts.credit_expired_used:
        alarms.append(Alarm(CREDIT_EXPIRING, WARNING, BUSINESS_SUBJECT,
                            f"{counts.credit_expiring} credit lines expire within "
                            f"{rules.expiry_window_ms // 86_400_000} days; {counts.credit_expired_used} expired "
                            f"with credit still used{cut}"))
    if counts.disputes_overdue:
        alarms.append(Alarm(DISPUTES_OVERDUE, WARNING, BUSINESS_SUBJECT,
                            f"{counts.disputes_overdue} disputes past their resolution deadline, escalated to the "
                            f"regulator{cut}"))
    if counts.complaints_overdue:
        alarms.append(Alarm(COMPLAINTS_OVERDUE, WARNING, BUSINESS_SUBJECT,
                            f"{counts.complaints_overdue} complaints escalated or unanswered past their "
                            f"deadline{cut}"))
    return alarms


@dataclass(slots=True)
class BusinessWatch:
    """Runs `business_counts` over the node's committed state at most once per height and per
    `business_every_ms` of the caller's clock, and keeps the last counts and alarms in between."""

    rules: BusinessRules = field(default_factory=BusinessRules)
    counts: BusinessCounts | None = None
    alarms: list[Alarm] = field(default_factory=list)
    _height: int | None = None
    _at_ms: int | None = None

    def sample(self, now_ms: int, height: int | None, view: StateView | None, block_time: int | None
               ) -> list[Alarm]:
        """The business alarms; rescans when the height moved and `business_every_ms` passed since the last."""
        if view is None or block_time is None or height is None:
            return self.alarms
        due = self._at_ms is None or now_ms - self._at_ms >= self.rules.business_every_ms
        if height != self._height and due:
            self.counts = business_counts(view, block_time, self.rules)
            self.alarms = business_alarms(self.counts, self.rules)
            self._height, self._at_ms = height, now_ms
        return self.alarms

    def sample_ledger(self, now_ms: int, height: object, ledger: Any, on_counts: Callable[[BusinessCounts], None]
                      ) -> list[Alarm]:
        """`sample` over a node's committed store (`view()`, `last_time`: ledger.store.StateStore); a rescan's
        counts go to `on_counts` (NodeMetrics.set_business). Without a ledger: no business alarms."""
        before = self.counts
        view = ledger.view() if ledger is not None else None
        block_time = getattr(ledger, "last_time", None)
        alarms = self.sample(now_ms, height if isinstance(height, int) else None, view,
                             block_time if isinstance(block_time, int) else None)
        if self.counts is not None and self.counts is not before:
            on_counts(self.counts)
        return alarms
