"""The dashboard, `/metrics` and the alarms of one node, mounted on the node's aiohttp application.

    setup_dashboard(app, source, metrics)      # call after the node's own API routes are added

adds (who may call each: CONTRACT §6; docs/MONITORING.md "Who sees what"):
- `GET /` and `GET /static/{file}`: the static dashboard (node/http/static/, no build step, works offline): anyone;
- `GET /metrics`: Prometheus text exposition of `metrics`: anyone (no label names an org: node/http/metrics.py);
- `GET /v1/events`: server-sent events. Anyone gets a `snapshot` event a second (`{"time_ms", "node",
  "status", "cluster"}`: what `/v1/status` and `/v1/cluster` show) and a `block` event per new block (its
  header and tx ids, as `/v1/blocks/{h}`); a signed or session subscriber also gets the alarms in the snapshot
  and, in each block event, `outcomes`: the tx outcomes of that block it may read (ecert/access.py);
- `GET /v1/alarms`: `{"node_id", "alarms": [...], "leader_alarms": [...]}`: any signed member org;
- `GET /v1/cluster/view`: the same cluster rows the events carry (for curl and tests): anyone, like /v1/cluster;
- `GET /v1/blocks/{height}/txs`: the txs of one block, each whole where the reader may read its outcome, else
  only `tx_id`, `status`, `height` (what anyone learns from `GET /v1/tx/{id}`): signed members;
- `GET /v1/dashboard/latest-cert`: the newest certificate the reader may see, for a first view: signed members;
- `GET /v1/dashboard/whoami`: who the page is logged in as (`{"org_id": null}` when anonymous): anyone;
- `GET /v1/supervision`: the regulator's views (ecert/supervision.py): the regulator only (403 for other orgs);
- `GET /login`, `POST /logout`: the one-time login link (node/http/login.py), when the node has a session issuer;
- and, only where the node has not registered them, `GET /v1/blocks` (paged) from `NodeSource.recent_blocks`.

Identity comes from node/http/auth_gate.py `authenticate` (a signed request, a Bearer token or the session
cookie), decisions from ecert/access.py over the committed state the node's `Ledger` gives; without a ledger
(a bare NodeSource) only the regulator sees tx outcomes.

A sampler task runs once a second: it reads the node through `NodeSource` (never its internals), asks the other
nodes for their `/v1/status` (so any node's dashboard shows the whole cluster), refreshes the level gauges,
evaluates the alarms (node/http/alarms.py), logs each alarm raised or cleared and reads the new blocks for the
event streams. Every SSE client gets the latest sample; a slow dashboard never makes the node do more work.

How the probe reaches a peer (`PeerApis`): at the URL of its [[nodes]] entry in the cluster file (https:// when
the entry has https_cert), verified, certificate and host name, with that entry's https_ca (else the system
store), by node/tls.py `https_client_context`, as the clients do; a node known only from the membership (added
by governance, not yet in this host's cluster file) at its recorded address with this node's own scheme,
verified against the system store. A peer whose API is plain HTTP on a non-loopback address (the operator's
choice: no https_cert in its entry) is still asked for its public /v1/status, but never sent the signed
/v1/alarms probe (CONTRACT §6: between hosts, signed requests belong on the API's TLS listener), and the node
warns once, naming those peers (`dashboard_plain_http`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import os
import shutil
import ssl
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import ClientSession, ClientTimeout, web
from yarl import URL

from ecert import access
from ecert import state as ecert_state
from ecert.access import Reader, TxFacts
from ecert.supervision import supervision
from ledger.executor import TxRecord
from ledger.schema import BlockRecord
from ledger.state_view import StateView
from node.config import Address
from node.http.alarms import Alarm, AlarmRules, AlarmTracker, BusinessWatch, Transition, evaluate
from node.http.auth_gate import authenticate, authenticated_org
from node.http.errors import HttpError, error_body
from node.http.login import setup_login
from node.http.metrics import NodeMetrics, contact_age_ms
from node.http.openapi import BLOCKS_BEFORE, BLOCKS_LIMIT, BLOCKS_TX_IDS
from node.keys import load_org_key
from node.request_auth import SESSION_TTL_MS, fresh_nonce, sign_request
from node.source import NodeSource
from node.tls import TlsError, https_client_context

log = logging.getLogger("node.http.alarms")

STATIC_DIR = Path(__file__).with_name("static")
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                  ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}

sample_interval_s = 1.0
sse_interval_s = 1.0
sse_clients_max = 64
sse_blocks_kept = 64            # block events kept for the streams (and for a reconnect's Last-Event-ID)
sse_blocks_per_sample_max = 32  # blocks read per sample for the streams; a burst beyond skips the older ones
sse_reconnect_grace_ms = 15_000  # blocks are still read this long after the last stream closed (a reconnect)
sse_signed_stream_ms_max = SESSION_TTL_MS
"""A signed stream ends after a session's lifetime: EventSource reconnects, and the reconnect is checked again
(an expired cookie then reads as anonymous, see node/http/login.py `POST /logout`)."""
peer_probe_timeout_s = 0.5
disk_sample_every = 5          # samples between disk / LevelDB size reads
latest_cert_scan_blocks_max = 200
latest_cert_readers_max = 256  # readers whose newest visible certificate is remembered
lagging_entries = 10           # a node this far behind the leader shows as "lagging" on the cluster view


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Ledger(Protocol):
    """The committed chain the access decisions read (node.server.Node.store, a ledger.store.StateStore)."""

    def view(self) -> StateView: ...

    def block(self, height: int) -> BlockRecord | None: ...

    def tx_outcome(self, tx_id: str) -> TxRecord | None: ...


@dataclass(frozen=True, slots=True)
class BlockEvent:
    """One new block for the event streams, as anyone sees it. The outcomes a member subscriber also gets are
    decided per subscriber (Dashboard.block_event_json) on facts read once per block, when first needed."""

    height: int
    header: Mapping[str, Any]
    """`GET /v1/blocks/{height}` without `txs`: header fields, `hash`, `tx_count` and `tx_ids` (public)."""


ProbeSigner = Callable[[str, str], str]
"""(node id addressed, path) -> Authorization header of a signed GET, for the probes that need a member."""


class PeerApis:
    """Where the probe reaches each peer's API, and how it verifies it (module docstring)."""

    __slots__ = ("_contexts", "cas", "known", "scheme")

    def __init__(self, known: Mapping[str, str] | None = None, cas: Mapping[str, Path] | None = None,
                 scheme: str = "http") -> None:
        self.known = {node_id: url.rstrip("/") for node_id, url in (known or {}).items()}
        """Node id -> base URL of its [[nodes]] entry in the cluster file."""
        self.cas = dict(cas or {})
        """Node id -> its https_ca (the PEM file its certificate is pinned to)."""
        self.scheme = scheme
        """This node's own ("https" if it serves HTTPS): for a node known only from the membership."""
        self._contexts: dict[str, ssl.SSLContext] = {}

    @classmethod
    def of_source(cls, source: Any) -> PeerApis:
        """From the node's cluster file (`source.config.nodes`) and its own entry (`source.spec`), if it has
        them; else every peer at its `http` address over plain HTTP."""
        nodes = getattr(getattr(source, "config", None), "nodes", None) or ()
        known: dict[str, str] = {}
        cas: dict[str, Path] = {}
        for n in nodes:
            url = getattr(n, "http_url", None)
            if isinstance(getattr(n, "id", None), str) and isinstance(url, str):
                known[n.id] = url
                if isinstance(getattr(n, "https_ca", None), Path):
                    cas[n.id] = n.https_ca
        own = getattr(getattr(source, "spec", None), "http_url", None)
        return cls(known, cas, "https" if isinstance(own, str) and own.startswith("https://") else "http")

    def base(self, peer: Mapping[str, Any]) -> str | None:
        """The base URL the probe asks `peer` (a `NodeSource.peers` row) at; None if it has no HTTP address."""
        pid, addr = peer.get("id"), peer.get("http")
        if isinstance(pid, str) and pid in self.known:
            return self.known[pid]
        if not isinstance(addr, str) or not addr:
            return None
        return addr.rstrip("/") if addr.startswith(("http://", "https://")) else f"{self.scheme}://{addr}"

    def tls(self, node_id: str, base: str) -> ssl.SSLContext | None:
        """The verifying context for an https:// `base` of `node_id`, None for http://. Raises TlsError (its
        https_ca file is missing or not PEM)."""
        if not base.startswith("https://"):
            return None
        ctx = self._contexts.get(node_id)
        if ctx is None:
            ca = self.cas.get(node_id)
            ctx = self._contexts[node_id] = https_client_context(
                [(f"https_ca of node {node_id}", ca)] if ca is not None else [])
        return ctx


def plain_between_hosts(base: str) -> bool:
    """An http:// URL whose host is not a loopback address: its requests cross a network in clear."""
    if not base.startswith("http://"):
        return False
    try:
        host = URL(base).host
    except ValueError:
        return True
    return not (host and Address(host, 0).is_loopback)


class Dashboard:
    """State of the dashboard for one node: the latest sample, alarms, SSE clients."""

    def __init__(self, source: NodeSource, metrics: NodeMetrics, *, rules: AlarmRules | None = None,
                 data_dir: str | os.PathLike[str] | None = None, probe_peers: bool = True,
                 clock: Callable[[], int] = now_ms, ledger: Ledger | None = None,
                 probe_signer: ProbeSigner | None = None, peer_apis: PeerApis | None = None) -> None:
        self.source = source
        self.peer_apis = peer_apis if peer_apis is not None else PeerApis.of_source(source)
        self._warned_plain: set[str] = set()
        """Peers already named in a `dashboard_plain_http` warning."""
        self._warned_tls: set[str] = set()
        """Peers whose https_ca could not be loaded, already logged."""
        self.metrics = metrics
        self.ledger = ledger
        self.probe_signer = probe_signer
        """Signs the probe of the leader's /v1/alarms (a member-only route); None: the leader's alarms are not
        fetched."""
        self.rules = rules or AlarmRules()
        self.data_dir = Path(data_dir) if data_dir is not None else _source_data_dir(source)
        self.probe_peers = probe_peers
        self.clock = clock
        status = _safe(source.status, {})
        self.node_id = str(status.get("node_id") or getattr(source, "node_id", None) or "?")
        self.tracker = AlarmTracker(self.node_id, self.rules, started_ms=clock())
        self.business = BusinessWatch()  # business alarms and gauges (issue 14): bounded scans, once per height
        self.alarms: list[Alarm] = []
        self.snapshot: dict[str, Any] = {}
        self.peer_status: dict[str, dict[str, Any]] = {}
        """Each peer's own /v1/status, from the last successful probe."""
        self.peer_seen_ms: dict[str, int] = {}
        self.leader_alarms: list[dict[str, Any]] = []
        """The leader's own alarms (it alone sees every follower), shown on every node's dashboard."""
        self.closing = asyncio.Event()
        self.sse_clients = 0
        self._samples = 0
        self._disk: tuple[int, int] | None = None
        self._rejected_seen: int | None = None
        self._latest_cert: dict[str, tuple[int, str | None]] = {}
        """Per reader org: (height scanned to, newest certificate it may see)."""
        self._supervision: tuple[int, dict[str, Any]] | None = None
        self.feed: collections.deque[BlockEvent] = collections.deque(maxlen=sse_blocks_kept)
        """The newest blocks, for the event streams."""
        self.fed_height: int | None = None
        """Height of the newest block in `feed` (or skipped); None until the first sample."""
        self._watched_until_ms = 0
        """The feed is kept until then: while a stream is open, and sse_reconnect_grace_ms after."""
        self._facts: collections.OrderedDict[int, tuple[TxFacts, ...]] = collections.OrderedDict()
        """Tx facts of the feed's blocks, by height, read the first time a member subscriber needs them."""
        self._session: ClientSession | None = None

    # --- sampling ------------------------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        """One observation of the node: gauges, alarms (logged on change), the snapshot SSE clients get."""
        t = self.clock()
        status = _safe(self.source.status, {})
        peers = _safe(self.source.peers, [])
        if self.node_id == "?" and isinstance(status.get("node_id"), str):  # the node was not up at setup
            self.node_id = self.tracker.node_id = status["node_id"]
        if self.probe_peers:
            # Raft followers only talk to the leader, so a follower's transport cannot tell whether another
            # follower is up: followers judge peers by the HTTP probe. The leader needs both Raft traffic and
            # the probe (a killed process refuses the probe at once; Raft silence takes a few heartbeats).
            leader = status.get("role") == "leader"
            peers = [self._probed_reachability(p, keep_transport=leader) for p in peers]
        self.metrics.update_from_status(status)
        self.metrics.update_from_peers(peers, now_ms=t)
        self._count_rejections(t)
        connections = getattr(self.source, "connections", None)
        if connections is not None:
            self.metrics.set_connections(_safe(connections, {}))
        if self._samples % disk_sample_every == 0:
            self._sample_disk()
        self._samples += 1

        alarm_input = self.tracker.sample(t, status, peers, apply_error=_apply_error(self.source, status),
                                          disk=self._disk)
        raised = evaluate(alarm_input, self.rules) + _node_alarms(self.source) + self.business.sample_ledger(
            t, status.get("height"), self.ledger, self.metrics.set_business)
        self.alarms, transitions = self.tracker.update(t, _dedupe(raised))
        for tr in transitions:
            _log_transition(tr, self.node_id)
        self.metrics.set_alarms(a.key for a in self.alarms)

        self.snapshot = {"time_ms": t, "node": self.node_id, "status": status,
                         "cluster": self.cluster_rows(status, peers, t), "alarms": self.alarm_dicts()}
        height = status.get("height")
        if isinstance(height, int):
            self.follow_chain(height)
        return self.snapshot

    def public_snapshot(self) -> dict[str, Any]:
        """The snapshot as anyone may see it: status and cluster (public routes), no alarms."""
        snap = self.snapshot or self.sample()
        return {k: v for k, v in snap.items() if k != "alarms"}

    # --- the chain feed for the event streams ---------------------------------------------------------------

    def follow_chain(self, height: int) -> None:
        """Read the blocks applied since the last sample into `feed` (at most sse_blocks_per_sample_max), and
        only while someone watches (or may reconnect soon): without a stream the node reads nothing for it."""
        if self.fed_height is None or height < self.fed_height:  # first sample, or a wiped / restored node
            self.fed_height = height
            self.feed.clear()
            self._facts.clear()
            return
        now = self.clock()
        if self.sse_clients > 0:
            self._watched_until_ms = now + sse_reconnect_grace_ms
        if now < self._watched_until_ms:
            for h in range(max(self.fed_height + 1, height - sse_blocks_per_sample_max + 1), height + 1):
                event = self._block_event(h)
                if event is not None:
                    self.feed.append(event)
        self.fed_height = height

    def _block_event(self, height: int) -> BlockEvent | None:
        if self.ledger is None:
            rows = _safe(functools.partial(self.source.recent_blocks, height + 1, 1, tx_ids=True), [])
            if not rows or rows[0].get("height") != height:
                return None
            return BlockEvent(height, rows[0])
        record = self.ledger.block(height)
        return None if record is None else BlockEvent(height, record.to_json())

    def _feed_facts(self, height: int) -> tuple[TxFacts, ...]:
        facts = self._facts.get(height)
        if facts is None:
            facts = self._facts[height] = self.block_facts(height)
            while len(self._facts) > sse_blocks_kept:
                self._facts.popitem(last=False)
        return facts

    def block_facts(self, height: int) -> tuple[TxFacts, ...]:
        """Each tx first applied in block `height`, with its outcome (a repeated tx id reports its first block's
        outcome and is not this block's business)."""
        if self.ledger is None:
            return ()
        record = self.ledger.block(height)
        if record is None:
            return ()
        facts = []
        for tx_id, raw in zip(record.tx_ids, record.txs, strict=True):
            applied = self.ledger.tx_outcome(tx_id)
            if applied is not None and applied.height == height:
                facts.append(access.tx_facts(applied.outcome, raw))
        return tuple(facts)

    def block_event_json(self, event: BlockEvent, reader: Reader | None) -> dict[str, Any]:
        """A block event as `reader` may see it: the header for anyone, the readable outcomes for a member."""
        out = dict(event.header)
        if reader is not None:
            outcomes = access.visible_outcomes(self.ledger.view(), reader, self._feed_facts(event.height)) \
                if self.ledger is not None else []
            out["outcomes"] = [dict(o.to_json(), height=event.height) for o in outcomes]
        return out

    # --- reads by party --------------------------------------------------------------------------------------

    def can_read_cert(self, reader: Reader, cert_id: str) -> bool:
        if self.ledger is None:
            return reader.role == ecert_state.REGULATOR
        return access.can_read_cert(self.ledger.view(), reader, cert_id)

    def block_rows(self, reader: Reader, height: int) -> list[dict[str, Any]]:
        """NodeSource.block_txs, each row whole where `reader` may read the tx's outcome, else only what anyone
        learns of a tx (`tx_id`, `status`, `height`)."""
        rows = self.source.block_txs(height)
        if self.ledger is None:
            readable = {r.get("tx_id") for r in rows} if reader.role == ecert_state.REGULATOR else set()
        else:
            view = self.ledger.view()
            readable = {f.outcome.tx_id for f in self.block_facts(height)
                        if access.can_read_tx_outcome(view, reader, f)}
        return [row if row.get("tx_id") in readable else
                {k: row[k] for k in ("tx_id", "status", "height") if k in row} for row in rows]

    def supervision(self) -> dict[str, Any] | None:
        """ecert/supervision.py over the committed state, computed once per height; None without a ledger."""
        if self.ledger is None:
            return None
        height = _safe(self.source.status, {}).get("height")
        if self._supervision is None or self._supervision[0] != height:
            self._supervision = (height if isinstance(height, int) else -1, supervision(self.ledger.view(), now=getattr(self.ledger, "last_time", None)))
        return dict(self._supervision[1], height=height)

    def alarm_dicts(self) -> list[dict[str, Any]]:
        """This node's alarms, then the leader's that this node does not raise itself."""
        own = [dict(a.to_dict(), reported_by=self.node_id) for a in self.alarms]
        keys = {(a["name"], a["subject"]) for a in own}
        remote = [a for a in self.leader_alarms if (a.get("name"), a.get("subject")) not in keys]
        return own + remote

    def _probed_reachability(self, peer: dict[str, Any], keep_transport: bool) -> dict[str, Any]:
        pid = peer.get("id")
        if not isinstance(pid, str) or self.peer_apis.base(peer) is None:  # not probed
            return peer
        probed = pid in self.peer_status
        if keep_transport:
            return dict(peer, reachable=probed and peer.get("reachable") is not False)
        return dict(peer, reachable=probed, last_contact_ms=self.peer_seen_ms.get(pid))

    def _count_rejections(self, t: int) -> None:
        """Rejected txs since the last sample, from the counter the node keeps (NodeMetrics.count_tx)."""
        total = self.metrics.rejected_total()
        if self._rejected_seen is not None and total > self._rejected_seen:
            self.tracker.note_rejected(t, total - self._rejected_seen)
        self._rejected_seen = total

    def _sample_disk(self) -> None:
        if self.data_dir is None or not self.data_dir.exists():
            return
        try:
            usage = shutil.disk_usage(self.data_dir)
        except OSError:
            return
        self._disk = (usage.free, usage.total)
        self.metrics.set_disk(usage.free, usage.total)
        for db in ("raft", "state"):
            path = self.data_dir / db
            if path.is_dir():
                self.metrics.set_db_size(db, _dir_size(path))
        memory = getattr(self.source, "memory", None)
        if memory is not None:
            self.metrics.set_memory(_safe(memory, {}))

    def cluster_rows(self, status: Mapping[str, Any], peers: list[dict[str, Any]], t: int) -> list[dict[str, Any]]:
        """Every node as this node sees it, merged with what each node says about itself."""
        me = self.node_id
        leader_id = status.get("leader_id")
        rows: dict[str, dict[str, Any]] = {me: {"id": me, "org": status.get("org"), "http": None, "self": True,
                                                "reachable": True, "last_contact_ms": 0, **_status_fields(status)}}
        for p in peers:
            pid = p.get("id")
            if not isinstance(pid, str) or pid == me:
                continue
            row = {"id": pid, "org": p.get("org"), "http": p.get("http"), "self": False,
                   "reachable": p.get("reachable") is not False, "match_index": p.get("match_index"),
                   "lag": p.get("lag"), "last_contact_ms": contact_age_ms(p.get("last_contact_ms"), t)}
            probed = self.peer_status.get(pid)
            if probed is not None:
                row.update(_status_fields(probed))
            if self.probe_peers:
                row["probed"] = probed is not None
            rows[pid] = row
        leader_row = rows.get(leader_id) if isinstance(leader_id, str) else None
        alarm_subjects = {a.subject for a in self.alarms}
        for row in rows.values():
            if row.get("lag") is None and leader_row is not None and isinstance(row.get("applied_index"), int) \
                    and isinstance(leader_row.get("applied_index"), int):
                row["lag"] = max(0, leader_row["applied_index"] - row["applied_index"])
            row["is_leader"] = row["id"] == leader_id
            row["health"] = _health(row, row["id"] in alarm_subjects)
        return sorted(rows.values(), key=lambda r: r["id"])

    async def probe(self) -> None:
        """Ask every peer with an HTTP address for its /v1/status (concurrently, short timeout)."""
        if not self.probe_peers:
            return
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=peer_probe_timeout_s))
        bases: dict[str, str] = {}
        for p in _safe(self.source.peers, []):
            base = self.peer_apis.base(p)
            if isinstance(p.get("id"), str) and p["id"] != self.node_id and base is not None:
                bases[p["id"]] = base
        self._warn_plain_http(bases)

        async def one(pid: str, base: str) -> None:
            body = await self._get_json(pid, base, "/v1/status")
            if isinstance(body, dict):
                self.peer_status[pid] = body
                self.peer_seen_ms[pid] = self.clock()
            else:
                self.peer_status.pop(pid, None)

        async def leader_alarms() -> None:
            leader = _safe(self.source.status, {}).get("leader_id")
            base = bases.get(leader) if isinstance(leader, str) else None
            sign = self.probe_signer
            # /v1/alarms is for members: the probe signs as this node's org, fresh for each request; never in
            # clear between hosts (CONTRACT §6), so a plain-HTTP leader elsewhere is not asked.
            body = await self._get_json(leader, base, "/v1/alarms", {"Authorization": sign(leader, "/v1/alarms")}) \
                if base and sign is not None and isinstance(leader, str) and not plain_between_hosts(base) else None
            alarms = body.get("alarms") if isinstance(body, dict) else None
            self.leader_alarms = [dict(a, reported_by=leader) for a in alarms or []
                                  if isinstance(a, dict) and a.get("reported_by", leader) == leader]

        await asyncio.gather(*(one(pid, base) for pid, base in bases.items()), leader_alarms())

    def _warn_plain_http(self, bases: Mapping[str, str]) -> None:
        """Once per peer (all of them at the first probe, at start): whose API this node reaches in clear across
        a network."""
        new = sorted(pid for pid, base in bases.items() if pid not in self._warned_plain and plain_between_hosts(base))
        if not new:
            return
        self._warned_plain.update(new)
        where = ", ".join(f"{pid} ({bases[pid]})" for pid in new)
        message = (f"the client API of {where} is plain HTTP between hosts: the dashboard reads their public "
                   "/v1/status in clear and does not send them its signed /v1/alarms probe (CONTRACT §6); give "
                   "those nodes https_cert / https_key (and https_ca) in the cluster file to change that")
        log.warning("dashboard_plain_http", extra={"reason": message, "node_id": self.node_id, "peers": new})
        print(f"node {self.node_id}: warning: {message}", file=sys.stderr, flush=True)

    async def _get_json(self, node_id: str, base: str, path: str, headers: Mapping[str, str] | None = None) -> Any:
        assert self._session is not None
        try:
            context = self.peer_apis.tls(node_id, base)
        except TlsError as exc:  # this host's copy of the peer's https_ca is missing or broken: say so once
            if node_id not in self._warned_tls:
                self._warned_tls.add(node_id)
                log.warning("dashboard_probe_tls", extra={"reason": str(exc), "node_id": self.node_id})
            return None
        try:
            async with self._session.get(base + path, headers=headers,
                                         ssl=context if context is not None else True) as resp:
                if resp.status == 200:
                    return await resp.json()
        except Exception:  # timeouts, refused connections, bad JSON: a down peer is normal here
            pass
        return None

    async def run(self) -> None:
        """The sampler loop, until the app shuts down."""
        while not self.closing.is_set():
            try:
                await self.probe()
                self.sample()
            except Exception:  # a dashboard bug must never take the node down
                log.exception("dashboard sample failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), sample_interval_s)

    async def close(self) -> None:
        self.closing.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- first view --------------------------------------------------------------------------------------

    def latest_cert(self, reader: Reader) -> dict[str, Any]:
        """The newest certificate created by a committed tx that `reader` may see (a first view for a newcomer).

        Scans only blocks it has not scanned for this reader (newest first, at most
        `latest_cert_scan_blocks_max` per call), so a long chain costs one bounded scan once per reader and
        almost nothing after. What a reader may see only grows (ecert/access.py), so a remembered answer holds.
        """
        status = _safe(self.source.status, {})
        height = status.get("height") if isinstance(status.get("height"), int) else 0
        seen_height, found = self._latest_cert.get(reader.org_id, (0, None))
        if height < seen_height:  # a restored snapshot or a wiped node: start over
            seen_height, found = 0, None
        lowest = max(seen_height, height - latest_cert_scan_blocks_max)
        for h in range(height, lowest, -1):
            certs = [c for tx in _safe(functools.partial(self.source.block_txs, h), [])
                     for c in _result_certs(tx) if self.can_read_cert(reader, c)]
            if certs:
                found = certs[-1]
                break
        if len(self._latest_cert) >= latest_cert_readers_max and reader.org_id not in self._latest_cert:
            self._latest_cert.clear()
        self._latest_cert[reader.org_id] = (height, found)
        return {"cert_id": found, "height": height}


DASHBOARD_KEY = web.AppKey("ecert_dashboard", Dashboard)


def setup_dashboard(app: web.Application, source: NodeSource, metrics: NodeMetrics | None = None, *,
                    rules: AlarmRules | None = None, data_dir: str | os.PathLike[str] | None = None,
                    probe_peers: bool = True, instrument: bool = True, sample_loop: bool = True,
                    clock: Callable[[], int] = now_ms, ledger: Ledger | None = None,
                    probe_signer: ProbeSigner | None = None, login_base_url: str | None = None) -> Dashboard:
    """Mount the dashboard on `app`. Routes the node already has are left alone (the node's win).

    `ledger` defaults to the node's `store`, `probe_signer` to one signing as the node's org with its key from
    the cluster's keys/ directory (when the file is there), `login_base_url` to the node's `spec.http_url`: with
    it and `data_dir`, node/http/login.py writes the one-time login link at start. `sample_loop=False` and
    `clock` are for tests: samples are then taken only by `Dashboard.sample()`.
    """
    if metrics is None:
        metrics = getattr(source, "metrics", None) or NodeMetrics()
    if ledger is None:
        ledger = _source_ledger(source)
    if probe_signer is None:
        probe_signer = _org_probe_signer(source)
    dash = Dashboard(source, metrics, rules=rules, data_dir=data_dir, probe_peers=probe_peers, clock=clock,
                     ledger=ledger, probe_signer=probe_signer)
    app[DASHBOARD_KEY] = dash
    status = _safe(source.status, {})
    if isinstance(status.get("node_id"), str):
        metrics.set_info(status["node_id"], str(status.get("org", "")), str(status.get("chain_id", "")))

    routes: list[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("/", _index), ("/static/{file}", _static), ("/metrics", _metrics), ("/v1/events", _events),
        ("/v1/alarms", _alarms), ("/v1/cluster/view", _cluster_view), ("/v1/blocks/{height}/txs", _block_txs),
        ("/v1/dashboard/latest-cert", _latest_cert), ("/v1/dashboard/whoami", _whoami),
        ("/v1/supervision", _supervision), ("/v1/blocks", _blocks)]
    existing = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for path, handler in routes:
        if ("GET", path) not in existing:
            app.router.add_get(path, _renders_errors(handler))
    if login_base_url is None:
        login_base_url = getattr(getattr(source, "spec", None), "http_url", None)
    org = status.get("org")
    if data_dir is not None and isinstance(login_base_url, str) and isinstance(org, str) \
            and ("GET", "/login") not in existing:
        setup_login(app, org, login_base_url, data_dir, clock=clock)
    if instrument:
        # Outermost, so it sees the status the node's error middleware finally answers.
        app.middlewares.insert(0, _request_metrics)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(dash.run(), name="dashboard-sampler") if sample_loop else None
        yield
        await dash.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def on_shutdown(app: web.Application) -> None:
        dash.closing.set()  # ends SSE streams so a graceful shutdown does not wait on them

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return dash


# --- who asks -------------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _renders_errors(handler: Handler) -> Handler:
    """HttpError (the identity gate's 401, our own refusals) as the API's JSON error, also where the dashboard is
    mounted outside the node's app (no error middleware there)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as e:
            headers = {"WWW-Authenticate": "ECERT-ED25519, Bearer"} if e.status == 401 else None
            return web.json_response(error_body(e.code, e.message, **e.extra), status=e.status, headers=headers)

    return wrapped


async def _member(request: web.Request) -> Reader:
    """The signed (or session) reader of a member-only route; 401 for an anonymous request."""
    reader = await authenticate(request)
    if reader is None:
        raise HttpError(401, "unauthenticated", f"{request.path} is for member organisations: sign the request "
                        "(CONTRACT §6) or log in to the dashboard with the link ./scripts/run prints")
    return reader


# --- handlers -------------------------------------------------------------------------------------------------

async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache",
                                                                "Content-Type": "text/html; charset=utf-8"})


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    path = STATIC_DIR / name
    # Only plain file names of the shipped directory: no "..", no sub paths, no dotfiles.
    if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
        return _error(404, "not_found", f"no static file {name!r}")
    ctype = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache", "Content-Type": ctype})


async def _metrics(request: web.Request) -> web.StreamResponse:
    body, content_type = request.app[DASHBOARD_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _alarms(request: web.Request) -> web.StreamResponse:
    await _member(request)
    dash = request.app[DASHBOARD_KEY]
    if not dash.snapshot:
        dash.sample()
    return web.json_response({"node_id": dash.node_id,
                              "alarms": [dict(a.to_dict(), reported_by=dash.node_id) for a in dash.alarms],
                              "leader_alarms": dash.leader_alarms})


async def _cluster_view(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD_KEY]
    snap = dash.snapshot or dash.sample()
    return web.json_response({"node_id": dash.node_id, "leader_id": snap["status"].get("leader_id"),
                              "nodes": snap["cluster"]})


async def _whoami(request: web.Request) -> web.StreamResponse:
    reader = await authenticate(request)
    dash = request.app[DASHBOARD_KEY]
    org_id = authenticated_org(request)
    # `read_access = "open"`: an anonymous request reads as the regulator would, without being an org.
    return web.json_response({"org_id": org_id, "role": reader.role if reader is not None else None,
                              "open_reads": reader is not None and org_id is None, "node_id": dash.node_id})


async def _supervision(request: web.Request) -> web.StreamResponse:
    reader = await _member(request)
    if reader.role != ecert_state.REGULATOR:
        raise HttpError(403, "forbidden", "the supervision views are the regulator's")
    views = request.app[DASHBOARD_KEY].supervision()
    if views is None:
        raise HttpError(503, "unavailable", "this node has no committed state to read")
    return web.json_response(views)


async def _events(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD_KEY]
    if dash.sse_clients >= sse_clients_max:
        return _error(429, "too_many_streams", f"at most {sse_clients_max} event streams per node")
    reader = await authenticate(request)  # checked once, before the stream starts (a 401 is a plain answer)
    last_height = _last_event_id(request, dash)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    dash.sse_clients += 1
    dash.metrics.sse_clients.set(dash.sse_clients)
    ends_ms = dash.clock() + sse_signed_stream_ms_max if reader is not None else None
    try:
        await resp.write(b"retry: 2000\n\n")
        while not dash.closing.is_set() and (ends_ms is None or dash.clock() < ends_ms):
            snap = dash.snapshot or dash.sample()
            if reader is None:
                snap = dash.public_snapshot()
            await resp.write(_sse("snapshot", snap))
            for event in list(dash.feed):
                if event.height > last_height:
                    await resp.write(_sse("block", dash.block_event_json(event, reader), event_id=event.height))
                    last_height = event.height
            if dash.fed_height is not None:
                last_height = max(last_height, dash.fed_height)  # blocks skipped in a burst are not sent later
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dash.closing.wait(), sse_interval_s)
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        dash.sse_clients -= 1
        dash.metrics.sse_clients.set(dash.sse_clients)
    return resp


def _last_event_id(request: web.Request, dash: Dashboard) -> int:
    """Blocks above this height are sent: the browser's Last-Event-ID on a reconnect (so a short drop loses no
    block that is still in the feed), else the current height."""
    if not dash.snapshot:
        dash.sample()
    current = dash.fed_height or 0
    raw = request.headers.get("Last-Event-ID", "")
    if raw.isdigit() and len(raw) <= 15:
        return min(int(raw), current)
    return current


def _sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"), default=_json_default)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


async def _blocks(request: web.Request) -> web.StreamResponse:
    """The API's page of blocks (node/http/api.py `get_blocks`), read with the same parameter definitions."""
    dash = request.app[DASHBOARD_KEY]
    before = BLOCKS_BEFORE.read(request)
    limit = BLOCKS_LIMIT.value(request)
    tx_ids = BLOCKS_TX_IDS.value(request)
    return web.json_response({"blocks": dash.source.recent_blocks(before, limit, tx_ids)}, dumps=_dumps)


async def _block_txs(request: web.Request) -> web.StreamResponse:
    reader = await _member(request)
    dash = request.app[DASHBOARD_KEY]
    try:
        height = int(request.match_info["height"])
    except ValueError:
        return _error(400, "bad_height", "height must be an integer")
    status = _safe(dash.source.status, {})
    if height < 1 or height > int(status.get("height") or 0):
        return _error(404, "block_not_found", f"no block at height {height}")
    return web.json_response({"height": height, "txs": dash.block_rows(reader, height)}, dumps=_dumps)


async def _latest_cert(request: web.Request) -> web.StreamResponse:
    reader = await _member(request)
    return web.json_response(request.app[DASHBOARD_KEY].latest_cert(reader))


@web.middleware
async def _request_metrics(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Latency by route template (never the raw path: bounded label values), method and status."""
    start = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "unmatched"
        if template != "/v1/events":  # a stream's lifetime is not a latency
            dash = request.app.get(DASHBOARD_KEY)
            if dash is not None:
                dash.metrics.observe_request(template, status, time.perf_counter() - start, request.method)


# --- helpers --------------------------------------------------------------------------------------------------

def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes | bytearray):
        return o.hex()
    return str(o)


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    """Call a NodeSource method; a failing read shows as missing data, never as a dead sampler."""
    try:
        value = fn()
    except Exception:
        log.debug("NodeSource read failed", exc_info=True)
        return default
    return value if value is not None else default


def _status_fields(s: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("role", "term", "leader_id", "commit_index", "applied_index", "height", "block_hash", "state_root",
            "org", "pid")
    return {k: s[k] for k in keys if k in s and s[k] is not None}


def _health(row: Mapping[str, Any], alarmed: bool) -> str:
    if not row.get("reachable", True) or (not row.get("self") and row.get("probed") is False
                                          and row.get("http")):
        return "down"
    lag = row.get("lag")
    if isinstance(lag, int) and lag > lagging_entries:
        return "lagging"
    return "alarm" if alarmed else "ok"


def _result_certs(tx: Any) -> list[str]:
    if not isinstance(tx, Mapping) or tx.get("status") not in (None, "committed"):
        return []
    result = tx.get("result")
    certs = result.get("certs") if isinstance(result, Mapping) else None
    return [c for c in certs if isinstance(c, str)] if isinstance(certs, list | tuple) else []


def _apply_error(source: Any, status: Mapping[str, Any]) -> str | None:
    err = status.get("apply_error")
    if err is None:
        attr = getattr(source, "apply_error", None)
        err = _safe(attr, None) if callable(attr) else attr
    return str(err) if err else None


def _node_alarms(source: Any) -> list[Alarm]:
    """Alarms the node raises itself (NodeSource.alarms), as Alarm values."""
    out = []
    for a in _safe(source.alarms, []) if hasattr(source, "alarms") else []:
        if isinstance(a, Mapping) and isinstance(a.get("name"), str):
            out.append(Alarm(a["name"], str(a.get("severity", "warning")), str(a.get("subject", "")),
                             str(a.get("message", a["name"]))))
    return out


def _dedupe(alarms: list[Alarm]) -> list[Alarm]:
    seen: dict[tuple[str, str], Alarm] = {}
    for a in alarms:
        seen.setdefault(a.key, a)
    return list(seen.values())


def _log_transition(tr: Transition, node_id: str) -> None:
    a = tr.alarm
    fields = {"alarm": a.name, "severity": a.severity, "subject": a.subject, "node_id": node_id}
    if tr.raised:
        log.warning("alarm raised: %s [%s] %s", a.name, a.subject, a.message, extra=fields)
    else:
        log.info("alarm cleared: %s [%s]", a.name, a.subject, extra=fields)


def _source_ledger(source: Any) -> Ledger | None:
    """The node's committed store, if the source is a node with one (node.server.Node.store)."""
    store = getattr(source, "store", None)
    return store if all(callable(getattr(store, m, None)) for m in ("view", "block", "tx_outcome")) else None


def _org_probe_signer(source: Any) -> ProbeSigner | None:
    """Signs as the org running this node, with its key from the cluster's keys/ (None if the node cannot)."""
    config = getattr(source, "config", None)
    org = _safe(source.status, {}).get("org")
    keys_dir = getattr(config, "keys_dir", None)
    chain_id = getattr(config, "chain_id", None)
    if not isinstance(org, str) or not isinstance(keys_dir, Path) or not isinstance(chain_id, str):
        return None
    try:
        seed = load_org_key(keys_dir, org).seed
    except Exception:  # no key file for this org on this host: the leader's alarms are not shown here
        log.info("dashboard probes unsigned: no key for org %s in %s", org, keys_dir)
        return None

    def sign(node_id: str, path: str) -> str:
        return sign_request(seed, chain_id, node_id, org, "GET", path, b"", now_ms(), fresh_nonce())

    return sign


def _source_data_dir(source: Any) -> Path | None:
    d = getattr(source, "data_dir", None)
    return Path(d) if isinstance(d, str | os.PathLike) else None


def _dir_size(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
