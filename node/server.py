"""One node process: wires config, keys, the peer transport, the Raft driver, the proposer and the HTTP API.

Lifecycle (aiohttp style): `start()` opens the stores, starts the transport, the driver and the HTTP site;
`stop()` stops accepting HTTP requests, drains in-flight ones, stops the driver after its current Ready, closes
the transport and then LevelDB (every write already synced by the driver). Logs are JSON lines in
<data_dir>/node.log.

Membership (CONTRACT §6): when genesis.json lists nodes, the membership in state decides who the peers are (the
transport's table follows it, node/transport.py) and the driver walks the Raft configuration to it
(node/driver.py); the cluster file only says how this node runs, and must agree with its record (id, org, key)
or the node does not start. A node the state lists as removed answers client requests with 503 `removed`. A
genesis without nodes (written before governance) still loads: the cluster file then gives the peers and the
bootstrap voters, as before, and the node says at start that membership is not governed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from consensus.membership import ConfChangeType
from consensus.ready import Role
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_from_json, genesis_hash, genesis_writes
from ecert.membership import MEMBER_PREFIX, REMOVED, NodeMember, get_member, membership
from ecert.state import CERT_INDEX, get_org
from ecert.tx import decode_tx, raw_tx_id
from ledger.store import PrefixWatch, StateStore
from node.config import ClusterConfig, clear_text_refusal
from node.custody import CustodyError, check_key_custody, check_org_key
from node.driver import RaftDriver
from node.forward import (
    FORWARD_BATCH_TXS_MAX,
    Forwarder,
    ForwardError,
    ForwardFrameError,
    ForwardTxs,
    decode_frame,
    encode_frame,
)
from node.genesis_file import GenesisFileError, check_own_membership
from node.http.audit_log import AUDIT_LOG_NAME, AuditLog
from node.http.auth_gate import AHEAD_HORIZON_NAME, AheadHorizon, AuthGate
from node.http.connection_cap import ConnectionCap
from node.http.openapi import HTTP_BLOCKS_PAGE_MAX, HTTP_BLOCKS_PAGE_TX_IDS_MAX
from node.keys import fingerprint, node_key_path, node_public_key
from node.proposer import Proposer
from node.removal_notices import RemovalNotices
from node.submission import answer_forwarded
from node.tls import PeerTls
from node.transport import PeerInfo, PeerTransport, member_peers

log = logging.getLogger("node")

DRAIN_TIMEOUT_S = 5.0
HTTP_KEEPALIVE_S = 75
"""An idle or never-finished HTTP connection is closed after this (aiohttp's default is 3,630 s, and it has no
separate header timeout: a flood of half-sent requests would otherwise hold sockets for an hour)."""
HTTPS_HANDSHAKE_TIMEOUT_S = 10.0
"""A TLS handshake on the API port must finish within this (asyncio's default, 60 s, would let a stranger hold a
descriptor per connection that long: handshakes in progress are not counted by the connection cap)."""
SERVED_WHEN_REMOVED = frozenset({"/v1/status", "/v1/cluster", "/v1/cluster/view"})
"""The /v1/ routes a removed node still answers: they say that it is removed, and who the cluster is now."""
_ROLE_NAMES = {Role.LEADER: "leader", Role.FOLLOWER: "follower", Role.CANDIDATE: "candidate",
               Role.PRE_CANDIDATE: "candidate", Role.LEARNER: "learner"}


class StartupError(Exception):
    """The node cannot start (bad genesis, missing keys, storage corruption); the message says why."""


class _PeerRow(NamedTuple):
    id: str
    org: str
    http: str
    raft: str
    removed: bool


# -- logging ----------------------------------------------------------------------------------------------------

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts (ms), level, logger, event, plus every `extra` field."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": int(record.created * 1000), "level": record.levelname.lower(),
                               "node": self.node_id, "logger": record.name, "event": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in _STD_ATTRS and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_logging(path: Path, node_id: str, level: int = logging.INFO, *, max_bytes: int = 64 << 20,
                  files_kept: int = 4) -> None:
    """JSON lines into `path`, rotated (stdlib RotatingFileHandler) before it grows past `max_bytes`: node.log.1
    is the newest old file, node.log.`files_kept` the oldest kept. A node that runs for months must not fill
    its disk with its own log."""
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=files_kept,
                                                   encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter(node_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# -- the node -----------------------------------------------------------------------------------------------------


class Node:
    """A running node. Implements node.source.NodeSource for the dashboard and metrics,
    node.submission.SubmissionNode for tx submission and node.http.api.ApiNode for the HTTP API."""

    def __init__(self, config: ClusterConfig, node_id: str, *, fault_injection: bool = False) -> None:
        self.config = config
        self.spec = config.node(node_id)
        self.node_id = node_id
        self.chain_id = config.chain_id
        self.data_dir = self.spec.data_dir
        self.fault_injection = fault_injection
        self.faults: Any = None
        self.metrics: Any = None
        self.started_ms = int(time.time() * 1000)
        self.store: Any = None
        self.executor: Any = None
        self.transport: PeerTransport | None = None
        self.driver: RaftDriver | None = None
        self.proposer: Proposer | None = None
        self.runner: web.AppRunner | None = None
        self._http_listener: asyncio.AbstractServer | None = None
        self._http_cap: ConnectionCap | None = None
        self.forwarder: Forwarder | None = None
        self.auth: AuthGate | None = None
        """Who asks (node/http/auth_gate.py): built in start() once the committed state is open."""
        self._tasks: list[asyncio.Task[Any]] = []
        self._forward_queue: list[bytes] = []
        self._forward_kick = asyncio.Event()
        self._role_changed = asyncio.Event()
        self._leader_known = asyncio.Event()
        """Set while a leader is known (this node or another): submission.await_leader waits on it."""
        self.stopping = False
        self.governed = False
        """True when genesis.json lists nodes: the state membership decides the peers and the Raft configuration."""
        self._bootstrap_voters: tuple[str, ...] = config.voter_ids
        self._members: tuple[NodeMember, ...] = ()
        """The state membership as last read through `_state_membership`, which the driver calls after every applied
        pass (empty for an ungoverned chain)."""
        self._removed_from_raft = False
        """A Raft change removing this node was applied in this run."""
        self._removal_notices = RemovalNotices(self.node_id)
        self._told_removed = False
        """A quorum of the voters this node knows said it was removed (it was down when it happened)."""
        self._member_watch: PrefixWatch | None = None
        """Moves when a block, genesis or an import may have changed the membership records (set at open)."""
        self._members_read_at = -1
        """The `_member_watch` version `_members` was read at."""

    # -- startup

    def _open_state(self, node_pk: bytes) -> None:
        gpath = self.config.genesis_path
        try:
            doc = genesis_from_json(json.loads(gpath.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise StartupError(f"{gpath} is missing: run `ecert init` (or ./scripts/run) first") from None
        except Exception as exc:
            raise StartupError(f"{gpath}: {exc}") from None
        if doc.chain_id != self.chain_id:
            raise StartupError(f"{gpath}: chain_id {doc.chain_id!r} != cluster.chain_id {self.chain_id!r}")
        self.executor = EcertExecutor(self.chain_id)
        # No fsync per block: the Raft log (fsynced) holds every committed block until a Raft snapshot, and a
        # Raft snapshot carries the store's state. After a power loss the store is rebuilt from those (the
        # driver re-imports the snapshot if the store is behind it, then replays the log).
        self.store = StateStore.open(str(self.data_dir / "state"), sync=False, index=CERT_INDEX)
        self._member_watch = self.store.watch(MEMBER_PREFIX)
        ghash = genesis_hash(doc)
        if self.store.initialized and self.store.genesis_hash != ghash:
            raise StartupError(f"{self.data_dir / 'state'} was built from another genesis document")
        self.store.init_genesis(ghash, genesis_writes(doc), chain_id=doc.chain_id, genesis_time=doc.genesis_time)
        self.governed = bool(doc.nodes)
        if not self.governed:
            self._warn("membership_ungoverned", f"{gpath} lists no nodes (written before membership governance): "
                       "membership is not governed on this chain; peers and voters come from the cluster file")
            self._check_org_key()
            return
        self._bootstrap_voters = tuple(sorted(n.id for n in doc.nodes if n.voter))
        self._members = self._state_membership()
        try:
            warning = check_own_membership(self.spec, node_pk, get_member(self.store.view(), self.node_id))
        except GenesisFileError as exc:
            raise StartupError(str(exc)) from None
        if warning is not None:
            self._warn("membership_check", warning)
        self._check_org_key()

    def _check_org_key(self) -> None:
        """keys/<org>.key, if this host keeps it, must be the org's current key in state (node/custody.py)."""
        org = get_org(self.store.view(), self.spec.org)
        try:
            warning = check_org_key(self.config.keys_dir, self.spec.org, org.sign_pk if org is not None else None,
                                    self.store.height)
        except CustodyError as exc:
            raise StartupError(str(exc)) from None
        if warning is not None:
            self._warn("org_key_check", warning)

    def _warn(self, event: str, message: str) -> None:
        """A start-up warning: in node.log, and on stderr (node.out) where whoever started the node looks."""
        log.warning(event, extra={"reason": message})
        print(f"node {self.node_id}: warning: {message}", file=sys.stderr, flush=True)

    def _state_membership(self) -> tuple[NodeMember, ...]:
        """The membership in state, read again only when a block, genesis or a snapshot touched its records
        (the driver asks after every pass that applied something: a scan and a decode of every record)."""
        assert self.store is not None and self._member_watch is not None
        if self._member_watch.version != self._members_read_at:
            self._members = membership(self.store.view())
            self._members_read_at = self._member_watch.version
        return self._members

    def _peer_infos(self) -> list[PeerInfo]:
        if self.governed:
            return member_peers(self._members, self.node_id, ())[0]
        out = []
        for n in self.config.nodes:
            if n.id == self.node_id:
                continue
            try:
                pk = node_public_key(self.config, n.id)
            except FileNotFoundError:
                raise StartupError(f"no node_pk for {n.id}: set nodes.node_pk in cluster.toml or provide "
                                   f"{node_key_path(self.config.keys_dir, n.id)}") from None
            out.append(PeerInfo(n.id, n.raft, pk))
        return out

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:  # its own node key, and no other org's or node's private key beside it (node/custody.py)
            key = check_key_custody(self.config, self.node_id)
        except CustodyError as exc:
            raise StartupError(str(exc)) from None
        if self.spec.node_pk is not None and bytes.fromhex(self.spec.node_pk) != key.sign_pk:
            raise StartupError(f"keys/node-{self.node_id}.key (node_pk {fingerprint(key.sign_pk)}) does not match "
                               f"nodes.node_pk in cluster.toml ({fingerprint(self.spec.node_pk)})")
        https = None
        if self.spec.https_cert is not None and self.spec.https_key is not None:
            from node.tls import TlsError, http_server_context

            # The files are this host's own, so only the node can check them (node/config.py loads paths); checked
            # before the peer transport starts, so a wrong path fails the start at once and opens no port.
            for name, path in (("https_cert", self.spec.https_cert), ("https_key", self.spec.https_key)):
                if not path.is_file():
                    raise StartupError(f"nodes.{name} of {self.node_id}: {path} not found")
            try:
                https = http_server_context(self.spec.https_cert, self.spec.https_key)
            except TlsError as exc:
                raise StartupError(f"nodes.https_cert / https_key of {self.node_id}: {exc}") from None
        if self.fault_injection:
            from node.faults import FaultRules

            self.faults = FaultRules(self.node_id, seed=int.from_bytes(os.urandom(4), "big"))
        try:
            from node.http.metrics import NodeMetrics

            self.metrics = NodeMetrics()
            self.metrics.set_info(self.node_id, self.spec.org, self.chain_id)
        except Exception:
            log.exception("metrics_unavailable")
            self.metrics = None
        self._open_state(key.sign_pk)
        peers = self._peer_infos()
        if not self.config.peer_tls and not self.config.peer_tls_off_beyond_loopback:
            for peer in peers:  # the cluster file was checked when it loaded; the state's members are checked here
                if not peer.raft.is_loopback:
                    raise StartupError("cluster.peer_tls = " + clear_text_refusal(f"the Raft address of member "
                                                                                  f"{peer.id}, {peer.raft},"))
        if not self.config.peer_tls:
            self._warn("peer_tls_off", "peer_tls = false: peer links are clear text (for measurement only; anyone on "
                       "the path reads every block and can inject frames)")
        self.transport = PeerTransport(
            node_id=self.node_id, chain_id=self.chain_id, key=key, listen=self.spec.raft_bind, peers=peers,
            on_message=self._on_peer_message, on_peer_connected=self._on_peer_connected,
            on_app_frame=self._on_app_frame, on_removal_notice=self._on_removal_notice,
            on_drop=self.metrics.count_message_dropped if self.metrics is not None else None, faults=self.faults,
            tls=PeerTls.from_key(key, self.node_id, self.chain_id) if self.config.peer_tls else None)
        cfg = self.config
        self.driver = RaftDriver(
            node_id=self.node_id, raft_dir=self.data_dir / "raft", store=self.store, executor=self.executor,
            bootstrap_voters=self._bootstrap_voters, send=self.transport.send, hooks=self,
            tick_ms=cfg.tick_ms, election_ticks=cfg.election_ticks, heartbeat_ticks=cfg.heartbeat_ticks,
            snapshot_entries=cfg.snapshot_entries,
            fsync_delay_ms=(lambda: self.faults.fsync_delay_ms) if self.faults is not None else None,
            break_invariant=self.faults.take_invariant_break if self.faults is not None else None,
            metrics=self.metrics, membership=self._state_membership if self.governed else None)
        if self.driver.leader_id is not None:
            self._leader_known.set()
        if self.governed:
            self._sync_peers()
        else:
            # Members in cluster.toml as voters but absent from the Raft configuration were removed earlier.
            members = self.driver.core.voters | self.driver.core.learners
            for n in cfg.nodes:
                if n.voter and n.id not in members and n.id != self.node_id:
                    self.transport.remove_member(n.id)
        self.proposer = Proposer(
            node_id=self.node_id, driver=self.driver, store=self.store, tx_id_of=raw_tx_id,
            block_max_txs=cfg.block_max_txs, block_max_bytes=cfg.block_max_bytes,
            block_timeout_ms=cfg.block_timeout_ms, queue_max=cfg.queue_max,
            clock_skew_ms=(lambda: self.faults.clock_skew_ms) if self.faults is not None else None,
            metrics=self.metrics)
        self.proposer.on_lost_leadership = self._forward_later
        self.forwarder = Forwarder(self.transport.send_app, lambda: self.driver.leader_id if self.driver else None)
        await self.transport.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.driver.run(), name="raft-driver"),
                       loop.create_task(self.proposer.run(), name="proposer"),
                       loop.create_task(self._forwarder(), name="forwarder")]
        from node.http.api import build_app

        self.auth = AuthGate(chain_id=self.chain_id, node_id=self.node_id, started_ms=self.started_ms,
                             view=self.store.view, read_access=cfg.read_access, body_bytes_max=cfg.max_body_bytes,
                             audit=AuditLog(self.data_dir / AUDIT_LOG_NAME),
                             ahead=AheadHorizon(self.data_dir / AHEAD_HORIZON_NAME))
        app = build_app(self)
        app.middlewares.append(self._refuse_when_removed)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=DRAIN_TIMEOUT_S,
                                    keepalive_timeout=HTTP_KEEPALIVE_S)
        await self.runner.setup()
        assert self.runner.server is not None  # made by setup()
        bind = self.spec.http_bind
        # Our own listener over the runner's server (aiohttp's low-level protocol factory) instead of a TCPSite,
        # so that the cap sits between accepting a connection and handling it.
        self._http_cap = ConnectionCap(self.runner.server, cfg.http_connections_max)
        self._http_listener = await loop.create_server(
            self._http_cap, bind.host, bind.port,
            reuse_address=True, ssl=https, ssl_handshake_timeout=HTTPS_HANDSHAKE_TIMEOUT_S if https else None)
        log.info("node_started", extra={"http": self.spec.http_url, "raft": str(self.spec.raft),
                                        "http_bind": str(bind), "raft_bind": str(self.spec.raft_bind),
                                        "pid": os.getpid(), "height": self.store.height,
                                        "applied_index": self.driver.applied_index})

    async def stop(self) -> None:
        """Graceful: stop accepting, drain in-flight HTTP requests, stop the driver, flush and close."""
        self.stopping = True
        log.info("node_stopping")
        with contextlib.suppress(Exception):
            await self._hand_over_leadership()
        if self._http_listener is not None:
            self._http_listener.close()  # stop accepting; the runner's cleanup drains what is open
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.cleanup()  # waits for in-flight handlers, closes idle connections
        if self.proposer is not None:
            self.proposer.stop()
        if self.driver is not None:
            self.driver.stop()
        for t in self._tasks:
            if t.get_name() != "raft-driver":
                t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(t, 2.0)
        if self.forwarder is not None:
            self.forwarder.close()
        if self.transport is not None:
            await self.transport.close()
        if self.driver is not None:
            self.driver.close()
        if self.auth is not None:
            self.auth.close()
        if self.store is not None:
            self.store.close()
        log.info("node_stopped")

    async def _hand_over_leadership(self) -> None:
        """A leader that stops gracefully first hands leadership to its most up-to-date connected voter
        (thesis §3.10), so the cluster does not wait an election timeout (etcd does the same)."""
        r, t = self.driver, self.transport
        if r is None or t is None or r.halted or r.role != Role.LEADER or len(r.core.voters) < 2:
            # (A halted driver runs no more Readies: the transfer could not happen.)
            return
        progress = getattr(r.core.status(), "progress", {}) or {}
        choices = [(pr.match_index, pid) for pid, pr in progress.items()
                   if pid != self.node_id and pid in r.core.voters and t.stats.get(pid) is not None
                   and t.stats[pid].connected]
        if not choices:
            return
        target = max(choices)[1]
        r.core.transfer_leadership(target)
        r.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.config.election_ticks * self.config.tick_ms / 1000
        while r.role == Role.LEADER and loop.time() < deadline:
            self._role_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._role_changed.wait(), max(0.0, deadline - loop.time()))
        log.info("leadership_handed_over", extra={"to": target, "done": r.role != Role.LEADER})

    # -- transport -> driver

    def _on_peer_message(self, msg: Any) -> None:
        assert self.driver is not None
        self.driver.step(msg)

    def _on_peer_connected(self, peer: str) -> None:
        if self.driver is not None and self.driver.reset_peer_progress(peer):
            log.info("peer_reprobed", extra={"peer": peer})

    # -- driver hooks (synchronous, inside a Ready)

    def on_block_applied(self, index: int, block: Any, outcomes: Any) -> None:
        assert self.proposer is not None
        self.proposer.on_block_applied(index, block, outcomes)
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.set_height(block.header.height)
                for o in outcomes:
                    self.metrics.count_tx(o.status, o.error_code)

    def on_block_skipped(self, index: int, block: Any, reason: str) -> None:
        assert self.proposer is not None
        self.proposer.on_block_skipped(index, block, reason)

    def on_role_change(self, role: Role, leader_id: str | None, term: int) -> None:
        assert self.proposer is not None
        log.info("role_changed", extra={"role": _ROLE_NAMES.get(role, str(role)), "leader_id": leader_id,
                                        "term": term})
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.note_leader(leader_id)
        self.proposer.on_role_change(role, leader_id, term)
        if self.forwarder is not None:
            self.forwarder.on_leader_change(leader_id)
        self._role_changed.set()
        if leader_id is None:
            self._leader_known.clear()
        else:
            self._leader_known.set()
        if leader_id is not None and leader_id != self.node_id and self._forward_queue:
            self._forward_kick.set()

    def on_conf_change(self, cc: Any) -> None:
        assert self.transport is not None
        if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == self.node_id:
            self._removed_from_raft = True
            log.warning("removed_from_cluster")
        if self.governed:
            self._sync_peers()  # a removed node stays a peer until the Raft configuration lets go of it
        elif cc.type == ConfChangeType.REMOVE_NODE:
            self.transport.remove_member(cc.node_id)
        else:
            self.transport.restore_member(cc.node_id)

    def on_membership(self, members: tuple[NodeMember, ...]) -> None:
        self._members = members
        if self.governed:
            self._sync_peers()

    def _sync_peers(self) -> None:
        """The transport's peer table from the state membership and the Raft configuration. Once this node has
        applied its own removal it has no peers left: they refuse it anyway (until then it may still lead, and
        hands leadership over). The removed members of the state this node applied are told so if they dial."""
        assert self.transport is not None and self.driver is not None
        peers, removed = member_peers(self._members, self.node_id, self.driver.core.voters | self.driver.core.learners)
        tell = {m.id for m in self._members if m.status == REMOVED}
        if self._removed_from_raft or self._told_removed:
            peers, removed, tell = [], {m.id for m in self._members if m.id != self.node_id}, set()
        self.transport.set_peers(peers, removed, tell)

    def _on_removal_notice(self, peer_id: str) -> None:
        """A peer verified its signed word that this node was removed (node/removal_notices.py: a quorum of the
        voters we know must say it). Then this node is removed as if it had applied the change itself."""
        assert self.driver is not None and self.transport is not None
        if self.removed:
            return
        if not self._removal_notices.note(peer_id, self.driver.core.voters):
            return
        self._told_removed = True
        log.warning("removed_from_cluster", extra={"told_by": sorted(self._removal_notices.told_by)})
        if self.governed:
            self._sync_peers()
        else:  # cut off from everyone, and tells nobody anything
            self.transport.set_peers([], set(self.transport.peers) | self.transport.removed)

    @property
    def removed(self) -> bool:
        """This node was removed from the cluster: by the state membership, or by a Raft change applied here."""
        if self._removed_from_raft or self._told_removed:
            return True
        return any(m.id == self.node_id and m.status == REMOVED for m in self._members)

    @web.middleware
    async def _refuse_when_removed(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A removed node's state stops advancing: it answers client requests with 503 `removed`, not stale data
        (CONTRACT §6); its status and the cluster view still answer, and say so."""
        if self.removed and request.path.startswith("/v1/") and request.path not in SERVED_WHEN_REMOVED:
            message = f"node {self.node_id} was removed from the cluster; ask another node"
            return web.json_response({"error": {"code": "removed", "message": message}}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    def on_applied(self, index: int) -> None:
        assert self.proposer is not None
        self.proposer.on_applied()

    def on_snapshot_installed(self, index: int) -> None:
        assert self.proposer is not None
        self.proposer.on_snapshot_installed()

    # -- forwarding txs queued on a deposed leader

    def _forward_later(self, raws: list[bytes]) -> None:
        room = self.config.queue_max - len(self._forward_queue)
        self._forward_queue.extend(raws[:max(0, room)])
        self._forward_kick.set()

    async def _forwarder(self) -> None:
        while True:
            await self._forward_kick.wait()
            self._forward_kick.clear()
            while self._forward_queue:
                leader = self.driver.leader_id if self.driver is not None else None
                if leader is None or leader == self.node_id:
                    break
                batch = self._forward_queue[:FORWARD_BATCH_TXS_MAX]
                try:
                    await self.forward_txs(batch)
                except ForwardError as exc:
                    log.info("forward_failed", extra={"leader": leader, "reason": exc.code})
                    await asyncio.sleep(0.2)
                    continue
                del self._forward_queue[:len(batch)]

    async def forward_txs(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Forward admitted txs to the leader over the peer transport (node/forward.py), coalesced with the
        other callers of this event-loop turn. Returns the leader's per-tx answers; raises ForwardError if the
        whole batch failed."""
        if self.forwarder is None:
            raise ForwardError(503, "not_ready", "the node is starting", None)
        return await self.forwarder.forward(raws)

    async def await_leader(self) -> None:
        """Returns once a leader is known, or after two election timeouts (the time a pre-vote and a vote
        take, with the randomised timeout at its longest) if none is."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._leader_known.wait(),
                                   2 * self.config.election_ticks * self.config.tick_ms / 1000)

    def _on_app_frame(self, peer: str, payload: bytes) -> None:
        try:
            frame = decode_frame(payload)
        except ForwardFrameError as exc:
            log.warning("bad_forward_frame", extra={"peer": peer, "reason": str(exc)})
            return
        if not isinstance(frame, ForwardTxs):
            if self.forwarder is not None:
                self.forwarder.on_frame(peer, frame)
            return
        assert self.transport is not None
        self.transport.send_app(peer, encode_frame(answer_forwarded(self, frame)))

    # -- NodeSource

    def role_name(self) -> str:
        assert self.driver is not None
        if self.node_id in self.driver.core.learners:
            return "learner"
        return _ROLE_NAMES.get(self.driver.role, "follower")

    def status(self) -> dict[str, Any]:
        r = self.driver
        assert r is not None and self.store is not None
        height = self.store.height
        return {
            "node_id": self.node_id, "org": self.spec.org, "pid": os.getpid(), "chain_id": self.chain_id,
            "role": self.role_name(), "term": r.core.term, "leader_id": r.leader_id,
            "commit_index": r.core.commit_index, "applied_index": r.applied_index,
            "height": height,
            "block_hash": self.store.block_hash.hex() if height > 0 else "",
            "state_root": self.store.state_root.hex() if height > 0 else "",
            "voters": sorted(r.core.voters), "learners": sorted(r.core.learners),
            "snapshot_index": r.snapshot_index, "last_index": r.last_index(),
            "queue": len(self.proposer.pending) if self.proposer else 0,
            "apply_error": r.halted,
            "started_ms": self.started_ms,
            "removed": self.removed,
        }

    def connections(self) -> dict[str, int]:
        """node.source.NodeSource.connections: the two connection caps' counts."""
        assert self.transport is not None
        cap = self._http_cap
        return {"http_open": cap.open if cap is not None else 0, "http_refused": cap.refused if cap is not None else 0,
                "peer_handshaking": self.transport.handshaking, "peer_refused": self.transport.refused_over_cap}

    def memory(self) -> dict[str, int]:
        """Bytes held in memory by part (state root cache, the two LevelDBs, the Raft log's tail cache): what
        the node can account for of its RSS (docs/MONITORING.md)."""
        assert self.driver is not None and self.store is not None
        return {**self.store.memory_bytes(), **self.driver.storage.memory_bytes()}

    def peers(self) -> list[dict[str, Any]]:
        r = self.driver
        t = self.transport
        assert r is not None and t is not None
        progress: dict[str, Any] = {}
        if r.role == Role.LEADER:
            with contextlib.suppress(Exception):
                progress = dict(getattr(r.core.status(), "progress", {}) or {})
        last_index = r.last_index()
        now_mono, now_ms = time.monotonic(), time.time() * 1000
        rows = []
        for n in self._peer_rows():
            st = t.stats.get(n.id)
            pr = progress.get(n.id)
            match = getattr(pr, "match_index", None)
            last = st.last_contact if st else None
            last_ms = int(now_ms - (now_mono - last) * 1000) if last is not None else None
            recent = last is not None and now_mono - last < max(2.0, 4 * self.config.election_ticks
                                                                  * self.config.tick_ms / 1000)
            rows.append({
                "id": n.id, "org": n.org, "http": n.http, "raft": n.raft,
                "voter": n.id in r.core.voters, "learner": n.id in r.core.learners,
                "removed": n.removed or n.id in t.removed,
                "match_index": match, "lag": (last_index - match) if match is not None else None,
                "last_contact_ms": last_ms, "reachable": bool(recent),
                "connected": bool(st and st.connected), "dropped": st.dropped if st else 0,
            })
        return rows

    def _peer_rows(self) -> list[_PeerRow]:
        """The other nodes: the state membership's (removed ones too) on a governed chain, else the cluster
        file's."""
        if self.governed:
            return [_PeerRow(m.id, m.org, m.http, m.raft, m.status == REMOVED) for m in self._members
                    if m.id != self.node_id]
        return [_PeerRow(n.id, n.org, str(n.http), str(n.raft), False) for n in self.config.nodes
                if n.id != self.node_id]

    def block_json(self, height: int) -> dict[str, Any] | None:
        record = self.store.block(height)
        if record is None:
            return None
        out: dict[str, Any] = record.to_json()
        out["txs"] = list(record.tx_ids)
        return out

    def recent_blocks(self, before: int | None, limit: int, tx_ids: bool = False) -> list[dict[str, Any]]:
        # Walks down with store.block(h): StateStore.blocks() (reverse LevelDB iterator) returned nothing here.
        top = self.store.height if before is None else min(before - 1, self.store.height)
        heights = range(top, max(0, top - max(0, min(limit, HTTP_BLOCKS_PAGE_MAX))), -1)
        return self._blocks_with_ids(heights) if tx_ids else self._block_headers(heights)

    def _block_headers(self, heights: range) -> list[dict[str, Any]]:
        """Header and tx count of each block, read without decoding its txs (store.block_summary)."""
        out: list[dict[str, Any]] = []
        for h in heights:
            summary = self.store.block_summary(h)
            if summary is None:  # below the base of an installed snapshot: not stored on this node
                break
            out.append(summary.to_json())
        return out

    def _blocks_with_ids(self, heights: range) -> list[dict[str, Any]]:
        """Header, count and tx ids of each block, until the next block would take the page over
        HTTP_BLOCKS_PAGE_TX_IDS_MAX ids (the first always goes in, so a client paging down never stalls)."""
        out: list[dict[str, Any]] = []
        ids_listed = 0
        for h in heights:
            record = self.store.block(h)
            if record is None:
                break
            ids_listed += len(record.tx_ids)
            if out and ids_listed > HTTP_BLOCKS_PAGE_TX_IDS_MAX:
                break
            out.append(record.to_json())
        return out

    def block_txs(self, height: int) -> list[dict[str, Any]]:
        from node.proposer import outcome_answer

        if not 1 <= height <= self.store.height:
            return []
        block = self.store.block(height)
        if block is None:
            return []
        out = []
        for tx_id, raw in zip(block.tx_ids, block.txs, strict=True):
            row: dict[str, Any] = {"tx_id": tx_id}
            try:
                tx = decode_tx(raw, None)
                row.update(type=tx.type, signer=tx.signer)
            except Exception:
                row.update(type=None, signer=None)
            record = self.store.tx_outcome(tx_id)
            if record is not None:
                ans = outcome_answer(record)
                ans.pop("tx_id", None)
                row.update(ans)
            out.append(row)
        return out

    def alarms(self) -> list[dict[str, Any]]:
        out = []
        if self.driver is not None and self.driver.halted:
            out.append({"name": "apply_halted", "severity": "critical", "subject": self.node_id,
                        "message": self.driver.halted})
        return out

    def apply_error(self) -> str | None:
        return self.driver.halted if self.driver else None
