"""Prometheus metrics of one node, behind explicit methods the node calls.

Every collector lives in the node's own `CollectorRegistry` (never the global one), so several nodes in one
test process do not collide and `render()` shows exactly this node. Names follow Prometheus conventions:
`ecert_` prefix, base units (`_seconds`, `_bytes`), counters end in `_total`.

Two ways values get in:
- events the node reports as they happen (`observe_fsync`, `observe_block`, `count_tx`, `observe_request`, ...);
- levels read from the node's `NodeSource` once a second (`update_from_status`, `update_from_peers`), so the
  gauges are right even where the node calls nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from node.http.alarms import BusinessCounts

ROLES = ("follower", "pre_candidate", "candidate", "leader", "learner")

# Buckets in seconds / bytes / counts. Disk and loopback round trips are sub-millisecond to tens of ms.
_FAST_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REQUEST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BLOCK_TXS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
_BLOCK_BYTES = (512, 2048, 8192, 32768, 131072, 524288, 1048576, 4194304)

# Label values come from the node; cap what we accept so a bug cannot explode cardinality.
route_label_max = 64
code_label_max = 64
peer_label_max = 64


class NodeMetrics:
    """All metrics of one node. Methods are cheap and never raise on odd input (metrics must not kill a node)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        # `*_created` timestamps double the series count and no dashboard here uses them (process-wide switch;
        # the node process exposes nothing else through prometheus_client).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            # Process CPU / memory / fds of this node process (Linux /proc); harmless elsewhere.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

        # `/metrics` is anonymous (CONTRACT §6): no label names an org. Labels name nodes (node_id, peer,
        # subject), routes, codes and roles; nodes are public in /v1/cluster, and nothing here counts an org's
        # business (no per-org tx, certificate or credit series).
        self.node_info = Gauge(
            "ecert_node_info", "Static facts about this node (value is always 1).",
            ["node_id", "chain_id"], registry=r)

        # Raft
        self.raft_term = Gauge("ecert_raft_term", "Current Raft term of this node.", registry=r)
        self.raft_role = Gauge(
            "ecert_raft_role", "1 for this node's current Raft role, 0 for the others.", ["role"], registry=r)
        self.raft_leader_known = Gauge(
            "ecert_raft_leader_known", "1 if this node currently knows a leader, else 0.", registry=r)
        self.raft_leader_changes = Counter(
            "ecert_raft_leader_changes", "Times the leader known to this node changed.", registry=r)
        self.raft_commit_index = Gauge("ecert_raft_commit_index", "Highest log index known committed.", registry=r)
        self.raft_applied_index = Gauge("ecert_raft_applied_index", "Highest log index applied.", registry=r)
        self.raft_peer_match_index = Gauge(
            "ecert_raft_peer_match_index", "Leader's view: highest index known replicated on the peer.",
            ["peer"], registry=r)
        self.raft_peer_lag = Gauge(
            "ecert_raft_peer_lag_entries", "Entries the peer is behind the leader's last index (leader's view).",
            ["peer"], registry=r)
        self.raft_peer_reachable = Gauge(
            "ecert_raft_peer_reachable", "1 if the peer answered recently, else 0.", ["peer"], registry=r)
        self.raft_peer_last_contact = Gauge(
            "ecert_raft_peer_last_contact_seconds", "Seconds since the peer was last heard from.",
            ["peer"], registry=r)
        self.raft_rtt = Histogram(
            "ecert_raft_rtt_seconds", "Round-trip time of replication messages, by kind (append, heartbeat).",
            ["kind"], buckets=_FAST_SECONDS, registry=r)
        self.raft_snapshot_sends = Counter(
            "ecert_raft_snapshot_sends", "Snapshots sent to lagging followers.", ["peer"], registry=r)
        self.raft_messages_dropped = Counter(
            "ecert_raft_messages_dropped", "Raft messages dropped by the transport (queue full, no connection).",
            ["peer"], registry=r)

        # Ledger
        self.chain_height = Gauge("ecert_ledger_height", "Height of the last applied block.", registry=r)
        self.txs_committed = Counter(
            "ecert_ledger_txs_committed", "Transactions applied with status committed.", registry=r)
        self.txs_rejected = Counter(
            "ecert_ledger_txs_rejected", "Transactions applied with status rejected, by error code.",
            ["code"], registry=r)
        self.block_txs = Histogram(
            "ecert_ledger_block_txs", "Transactions per applied block.", buckets=_BLOCK_TXS, registry=r)
        self.block_size = Histogram(
            "ecert_ledger_block_size_bytes", "Encoded size of applied blocks.", buckets=_BLOCK_BYTES, registry=r)
        self.block_apply = Histogram(
            "ecert_ledger_block_apply_seconds", "Time to execute and commit one block into the state store.",
            buckets=_FAST_SECONDS, registry=r)
        self.apply_halted = Gauge(
            "ecert_ledger_apply_halted",
            "1 if the node stopped applying blocks (apply error or invariant breach), else 0.", registry=r)
        self.apply_errors = Counter(
            "ecert_ledger_apply_errors", "Apply errors and invariant breaches.", ["kind"], registry=r)

        # Storage
        self.fsync = Histogram(
            "ecert_storage_fsync_seconds", "Latency of synced (fsync) writes to the Raft log.",
            buckets=_FAST_SECONDS, registry=r)
        self.db_size = Gauge(
            "ecert_storage_db_size_bytes", "On-disk size of a LevelDB database, by database (raft, state).",
            ["db"], registry=r)
        self.memory = Gauge(
            "ecert_memory_bytes", "Bytes the node holds in memory, by part: state_root_cache, state_leveldb, "
            "raft_leveldb, raft_log_cache (LevelDB's parts are its own estimate of memtables and block cache).",
            ["part"], registry=r)
        self.disk_free = Gauge(
            "ecert_storage_disk_free_bytes", "Free bytes on the filesystem holding the data directory.", registry=r)
        self.disk_total = Gauge(
            "ecert_storage_disk_total_bytes", "Size of the filesystem holding the data directory.", registry=r)

        # API
        self.requests = Histogram(
            "ecert_http_request_duration_seconds", "HTTP request latency by route template, method and status.",
            ["route", "method", "status"], buckets=_REQUEST_SECONDS, registry=r)
        self.throttled = Counter(
            "ecert_http_throttled_requests", "Requests refused with 429 (queue full).", ["route"], registry=r)
        self.queue_depth = Gauge(
            "ecert_api_queue_depth", "Transactions admitted and waiting to be put into a block.", registry=r)
        self.sse_clients = Gauge(
            "ecert_http_sse_clients", "Open server-sent-event streams (dashboards watching).", registry=r)
        self.connections_open = Gauge(
            "ecert_connections_open", "Connections held now: kind=http (open API connections, what "
            "http_connections_max caps), kind=peer_handshake (inbound peer connections not yet authenticated).",
            ["kind"], registry=r)
        self.connections_refused = Counter(
            "ecert_connections_refused", "Connections closed unserved because a cap was reached: kind=http "
            "(answered 503 too_many_connections), kind=peer_handshake.", ["kind"], registry=r)

        # Alarms
        self.alarm_active = Gauge(
            "ecert_alarm_active", "1 while the named alarm is raised on this node.", ["alarm", "subject"],
            registry=r)

        # Business (issue 14, node/http/alarms.py business_counts): aggregate counts over the committed state at
        # the last block time, no label at all (CONTRACT §6: nothing here names an org or a certificate).
        self.business = {name: Gauge(f"ecert_business_{name}", help_text, registry=r) for name, help_text in (
            ("certs_overdue", "Live certificates past maturity, not defaulted."),
            ("overdue_unpaid_fen", "Unpaid principal of the overdue certificates (fen)."),
            ("certs_defaulted", "Defaulted certificates still owed."),
            ("defaulted_unpaid_fen", "Unpaid principal of the defaulted certificates (fen)."),
            ("credit_lines_near_limit", "Credit lines used to 90% of their limit or more."),
            ("finance_limits_near_limit", "Banks' financing limits per org used to 90% or more."),
            ("credit_lines_expiring", "Credit lines expiring within 30 days."),
            ("credit_lines_expired_used", "Expired credit lines with credit still used."),
            ("disputes_open", "Unresolved disputes."),
            ("disputes_overdue", "Unresolved disputes past their resolution deadline."),
            ("complaints_open", "Complaints not closed."),
            ("complaints_overdue", "Complaints escalated or unanswered past their deadline."),
            ("scan_complete", "1 if the last business scan read everything; 0 if a bound cut it short or none ran yet."))}

        self._last_leader: object = _UNSET
        self._peers: set[str] = set()
        self._alarms: set[tuple[str, str]] = set()

    # --- facts -----------------------------------------------------------------------------------------------

    def set_info(self, node_id: str, org: str, chain_id: str) -> None:
        """`org` is not exported: the org running a node is in /v1/status, not in an anonymous label."""
        self.node_info.labels(node_id=node_id, chain_id=chain_id).set(1)

    # --- Raft --------------------------------------------------------------------------------------------------

    def set_raft(self, term: int, role: str, commit: int, applied: int, leader_changes: int | None = None,
                 leader_id: str | None = None) -> None:
        """Levels of the Raft core. `leader_changes`, if given, is the node's own running total."""
        self.raft_term.set(term)
        self.raft_commit_index.set(commit)
        self.raft_applied_index.set(applied)
        self._set_role(role)
        if leader_changes is not None:
            _advance_to(self.raft_leader_changes, leader_changes)
        else:
            self.note_leader(leader_id)

    def note_leader(self, leader_id: str | None) -> None:
        """Count a change of the known leader (None means no leader: not a change by itself)."""
        self.raft_leader_known.set(1 if leader_id else 0)
        if not leader_id:
            return
        if self._last_leader is not _UNSET and self._last_leader != leader_id:
            self.raft_leader_changes.inc()
        self._last_leader = leader_id

    def _set_role(self, role: str) -> None:
        role = role.lower()
        for r in ROLES:
            self.raft_role.labels(role=r).set(1 if r == role else 0)

    def set_peer(self, peer: str, match_index: int | None = None, lag: int | None = None,
                 reachable: bool | None = None, last_contact_seconds: float | None = None) -> None:
        if peer not in self._peers and len(self._peers) >= peer_label_max:
            return
        self._peers.add(peer)
        if match_index is not None:
            self.raft_peer_match_index.labels(peer=peer).set(match_index)
        if lag is not None:
            self.raft_peer_lag.labels(peer=peer).set(lag)
        if reachable is not None:
            self.raft_peer_reachable.labels(peer=peer).set(1 if reachable else 0)
        if last_contact_seconds is not None:
            self.raft_peer_last_contact.labels(peer=peer).set(last_contact_seconds)

    def observe_rtt(self, kind: str, seconds: float) -> None:
        self.raft_rtt.labels(kind=kind if kind in ("append", "heartbeat", "snapshot") else "other").observe(seconds)

    def count_snapshot_send(self, peer: str) -> None:
        self.raft_snapshot_sends.labels(peer=peer).inc()

    def count_message_dropped(self, peer: str, n: int = 1) -> None:
        self.raft_messages_dropped.labels(peer=peer).inc(n)

    # --- ledger ------------------------------------------------------------------------------------------------

    def set_height(self, height: int) -> None:
        self.chain_height.set(height)

    def observe_block(self, txs: int, size_bytes: int, apply_seconds: float, height: int | None = None) -> None:
        self.block_txs.observe(txs)
        self.block_size.observe(size_bytes)
        self.block_apply.observe(apply_seconds)
        if height is not None:
            self.chain_height.set(height)

    def count_tx(self, status: str, code: str | None = None, n: int = 1) -> None:
        if status == "committed":
            self.txs_committed.inc(n)
        elif status == "rejected":
            self.txs_rejected.labels(code=_clip(code or "unknown", code_label_max)).inc(n)

    def rejected_total(self) -> int:
        """Rejected txs counted so far, every code (for the rejection-burst alarm)."""
        return int(sum(s.value for m in self.txs_rejected.collect() for s in m.samples
                       if s.name.endswith("_total")))

    def set_apply_halted(self, halted: bool, kind: str | None = None) -> None:
        """The node stopped (or resumed) applying; `kind` e.g. "apply_error" or "invariant" is counted once."""
        if halted and self.apply_halted._value.get() == 0:
            self.apply_errors.labels(kind=kind or "apply_error").inc()
        self.apply_halted.set(1 if halted else 0)

    # --- storage -----------------------------------------------------------------------------------------------

    def observe_fsync(self, seconds: float) -> None:
        self.fsync.observe(seconds)

    def set_db_size(self, db: str, size_bytes: int) -> None:
        self.db_size.labels(db=db).set(size_bytes)

    def set_memory(self, parts: Mapping[str, int]) -> None:
        for part, n in parts.items():
            self.memory.labels(part=part).set(n)

    def set_disk(self, free_bytes: int, total_bytes: int) -> None:
        self.disk_free.set(free_bytes)
        self.disk_total.set(total_bytes)

    # --- API ---------------------------------------------------------------------------------------------------

    def observe_request(self, route: str, status: int, seconds: float, method: str = "GET") -> None:
        route = _clip(route, route_label_max)
        self.requests.labels(route=route, method=method, status=str(status)).observe(seconds)
        if status == 429:
            self.throttled.labels(route=route).inc()

    def set_queue_depth(self, n: int) -> None:
        self.queue_depth.set(n)

    def set_connections(self, counts: Mapping[str, int]) -> None:
        """From NodeSource.connections: the open counts as gauges, the refusals since start (the node's running
        totals) as counters, exported from 0 so that rate() sees the first refusal."""
        for kind, open_key, refused_key in (("http", "http_open", "http_refused"),
                                            ("peer_handshake", "peer_handshaking", "peer_refused")):
            self.connections_open.labels(kind=kind).set(int(counts.get(open_key, 0)))
            _advance_to(self.connections_refused.labels(kind=kind), int(counts.get(refused_key, 0)))

    # --- alarms ------------------------------------------------------------------------------------------------

    def set_alarms(self, active: Iterable[tuple[str, str]]) -> None:
        """Exactly the given (alarm, subject) pairs are raised; others drop to 0 (kept, so rate() works)."""
        now = set(active)
        for key in self._alarms - now:
            self.alarm_active.labels(alarm=key[0], subject=key[1]).set(0)
        for key in now:
            self.alarm_active.labels(alarm=key[0], subject=key[1]).set(1)
        self._alarms |= now

    def set_business(self, counts: BusinessCounts) -> None:
        """The business gauges from one scan (node/http/alarms.py BusinessWatch)."""
        for name, value in (
                ("certs_overdue", counts.certs_overdue), ("overdue_unpaid_fen", counts.overdue_unpaid),
                ("certs_defaulted", counts.certs_defaulted), ("defaulted_unpaid_fen", counts.defaulted_unpaid),
                ("credit_lines_near_limit", counts.credit_near_limit),
                ("finance_limits_near_limit", counts.finance_near_limit),
                ("credit_lines_expiring", counts.credit_expiring),
                ("credit_lines_expired_used", counts.credit_expired_used),
                ("disputes_open", counts.disputes_open), ("disputes_overdue", counts.disputes_overdue),
                ("complaints_open", counts.complaints_open), ("complaints_overdue", counts.complaints_overdue),
                ("scan_complete", 1 if counts.complete else 0)):
            self.business[name].set(value)

    # --- from a NodeSource -------------------------------------------------------------------------------------

    def update_from_status(self, status: Mapping[str, Any]) -> None:
        """Gauges from a CONTRACT §4 /v1/status map (missing keys are left alone)."""
        for key, gauge in (("term", self.raft_term), ("commit_index", self.raft_commit_index),
                           ("applied_index", self.raft_applied_index), ("height", self.chain_height)):
            value = status.get(key)
            if isinstance(value, int):
                gauge.set(value)
        if isinstance(status.get("queue"), int):
            self.queue_depth.set(status["queue"])
        if isinstance(status.get("role"), str):
            self._set_role(status["role"])
        if "leader_id" in status:
            self.note_leader(status.get("leader_id") or None)

    def update_from_peers(self, peers: Iterable[Mapping[str, Any]], now_ms: int | None = None) -> None:
        for p in peers:
            peer = p.get("id")
            if not isinstance(peer, str):
                continue
            age_ms = contact_age_ms(p.get("last_contact_ms"), now_ms)
            since = None if age_ms is None else age_ms / 1000
            self.set_peer(peer, _int_or_none(p.get("match_index")), _int_or_none(p.get("lag")),
                          p.get("reachable") if isinstance(p.get("reachable"), bool) else None, since)
            dropped = _int_or_none(p.get("dropped"))
            if dropped is not None and peer in self._peers:
                _advance_to(self.raft_messages_dropped.labels(peer=peer), dropped)  # the transport's total

    # --- exposition --------------------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (version 0.0.4) and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_UNSET = object()


def _advance_to(counter: Any, total: int) -> None:
    """A Counter cannot be set: advance it to a running total the node keeps itself (never backwards)."""
    delta = total - counter._value.get()
    if delta > 0:
        counter.inc(delta)


def contact_age_ms(last_contact_ms: object, now_ms: int | None) -> int | None:
    """Milliseconds since a peer was heard from.

    Accepts both readings of a peer's `last_contact_ms`: a wall-clock time (ms since the epoch, > 10^12) or
    an age already (ms ago). None when unknown.
    """
    if not isinstance(last_contact_ms, int) or isinstance(last_contact_ms, bool) or last_contact_ms < 0:
        return None
    if last_contact_ms > 10**12:
        return None if now_ms is None else max(0, now_ms - last_contact_ms)
    return last_contact_ms


def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[:n]


def _int_or_none(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None
