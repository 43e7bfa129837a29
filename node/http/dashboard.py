"""The dashboard, `/metrics` and the alarms of one node, mounted on the node's aiohttp application.

    setup_dashboard(app, source, metrics)      # call after the node's own API routes are added

adds
- `GET /` and `GET /static/{file}`: the static dashboard (node/static/, no build step, works offline);
- `GET /metrics`: Prometheus text exposition of `metrics`;
- `GET /v1/events`: server-sent events, one `snapshot` event a second: `{"time_ms", "node", "status",
  "cluster", "alarms"}`;
- `GET /v1/alarms`: `{"node_id", "alarms": [{"name", "severity", "subject", "message", "since_ms"}]}`;
- `GET /v1/cluster/view`: the same cluster rows the events carry (for curl and tests);
- `GET /v1/blocks/{height}/txs` and `GET /v1/dashboard/latest-cert`: reads the dashboard needs that the core
  API does not have (tx outcomes of one block; the most recent certificate created, for a first view);
- and, only where the node has not registered them, `GET /v1/blocks` (paged) from `NodeSource.recent_blocks`.

A sampler task runs once a second: it reads the node through `NodeSource` (never its internals), asks the other
nodes for their `/v1/status` (so any node's dashboard shows the whole cluster), refreshes the level gauges,
evaluates the alarms (node/http/alarms.py) and logs each alarm raised or cleared. Every SSE client gets the latest
sample; a slow dashboard never makes the node do more work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from node.http.alarms import Alarm, AlarmRules, AlarmTracker, Transition, evaluate
from node.http.metrics import NodeMetrics, contact_age_ms
from node.http.openapi import HTTP_BLOCKS_PAGE_MAX
from node.source import NodeSource

log = logging.getLogger("node.http.alarms")

STATIC_DIR = Path(__file__).with_name("static")
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                  ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}

sample_interval_s = 1.0
sse_interval_s = 1.0
sse_clients_max = 64
peer_probe_timeout_s = 0.5
disk_sample_every = 5          # samples between disk / LevelDB size reads
latest_cert_scan_blocks_max = 200
lagging_entries = 10           # a node this far behind the leader shows as "lagging" on the cluster view


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Dashboard:
    """State of the dashboard for one node: the latest sample, alarms, SSE clients."""

    def __init__(self, source: NodeSource, metrics: NodeMetrics, *, rules: AlarmRules | None = None,
                 data_dir: str | os.PathLike[str] | None = None, probe_peers: bool = True,
                 clock: Callable[[], int] = now_ms) -> None:
        self.source = source
        self.metrics = metrics
        self.rules = rules or AlarmRules()
        self.data_dir = Path(data_dir) if data_dir is not None else _source_data_dir(source)
        self.probe_peers = probe_peers
        self.clock = clock
        status = _safe(source.status, {})
        self.node_id = str(status.get("node_id") or getattr(source, "node_id", None) or "?")
        self.tracker = AlarmTracker(self.node_id, self.rules, started_ms=clock())
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
        self._latest_cert: tuple[int, str | None] | None = None
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
        if self._samples % disk_sample_every == 0:
            self._sample_disk()
        self._samples += 1

        alarm_input = self.tracker.sample(t, status, peers, apply_error=_apply_error(self.source, status),
                                          disk=self._disk)
        raised = evaluate(alarm_input, self.rules) + _node_alarms(self.source)
        self.alarms, transitions = self.tracker.update(t, _dedupe(raised))
        for tr in transitions:
            _log_transition(tr, self.node_id)
        self.metrics.set_alarms(a.key for a in self.alarms)

        self.snapshot = {"time_ms": t, "node": self.node_id, "status": status,
                         "cluster": self.cluster_rows(status, peers, t), "alarms": self.alarm_dicts()}
        return self.snapshot

    def alarm_dicts(self) -> list[dict[str, Any]]:
        """This node's alarms, then the leader's that this node does not raise itself."""
        own = [dict(a.to_dict(), reported_by=self.node_id) for a in self.alarms]
        keys = {(a["name"], a["subject"]) for a in own}
        remote = [a for a in self.leader_alarms if (a.get("name"), a.get("subject")) not in keys]
        return own + remote

    def _probed_reachability(self, peer: dict[str, Any], keep_transport: bool) -> dict[str, Any]:
        pid = peer.get("id")
        if not isinstance(pid, str) or not isinstance(peer.get("http"), str):
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
        peers = [p for p in _safe(self.source.peers, []) if isinstance(p.get("http"), str)
                 and p.get("id") != self.node_id]

        async def one(p: dict[str, Any]) -> None:
            body = await self._get_json(_base_url(p["http"]) + "/v1/status")
            if isinstance(body, dict):
                self.peer_status[p["id"]] = body
                self.peer_seen_ms[p["id"]] = self.clock()
            else:
                self.peer_status.pop(p["id"], None)

        async def leader_alarms() -> None:
            leader = _safe(self.source.status, {}).get("leader_id")
            addr = next((p["http"] for p in peers if p.get("id") == leader), None)
            body = await self._get_json(_base_url(addr) + "/v1/alarms") if addr else None
            alarms = body.get("alarms") if isinstance(body, dict) else None
            self.leader_alarms = [dict(a, reported_by=leader) for a in alarms or []
                                  if isinstance(a, dict) and a.get("reported_by", leader) == leader]

        await asyncio.gather(*(one(p) for p in peers), leader_alarms())

    async def _get_json(self, url: str) -> Any:
        assert self._session is not None
        try:
            async with self._session.get(url) as resp:
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

    def latest_cert(self) -> dict[str, Any]:
        """The newest certificate created by a committed tx (a first view for a newcomer).

        Scans only blocks it has not seen (newest first, at most `latest_cert_scan_blocks_max` per call), so a
        long chain costs one bounded scan once and almost nothing after.
        """
        status = _safe(self.source.status, {})
        height = status.get("height") if isinstance(status.get("height"), int) else 0
        seen_height, found = self._latest_cert or (0, None)
        if height < seen_height:  # a restored snapshot or a wiped node: start over
            seen_height, found = 0, None
        lowest = max(seen_height, height - latest_cert_scan_blocks_max)
        for h in range(height, lowest, -1):
            certs = [c for tx in _safe(functools.partial(self.source.block_txs, h), [])
                     for c in _result_certs(tx)]
            if certs:
                found = certs[-1]
                break
        self._latest_cert = (height, found)
        return {"cert_id": found, "height": height}


DASHBOARD_KEY = web.AppKey("ecert_dashboard", Dashboard)


def setup_dashboard(app: web.Application, source: NodeSource, metrics: NodeMetrics | None = None, *,
                    rules: AlarmRules | None = None, data_dir: str | os.PathLike[str] | None = None,
                    probe_peers: bool = True, instrument: bool = True, sample_loop: bool = True,
                    clock: Callable[[], int] = now_ms) -> Dashboard:
    """Mount the dashboard on `app`. Routes the node already has are left alone (the node's win).

    `sample_loop=False` and `clock` are for tests: samples are then taken only by `Dashboard.sample()`.
    """
    if metrics is None:
        metrics = getattr(source, "metrics", None) or NodeMetrics()
    dash = Dashboard(source, metrics, rules=rules, data_dir=data_dir, probe_peers=probe_peers, clock=clock)
    app[DASHBOARD_KEY] = dash
    status = _safe(source.status, {})
    if isinstance(status.get("node_id"), str):
        metrics.set_info(status["node_id"], str(status.get("org", "")), str(status.get("chain_id", "")))

    routes: list[tuple[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("/", _index), ("/static/{file}", _static), ("/metrics", _metrics), ("/v1/events", _events),
        ("/v1/alarms", _alarms), ("/v1/cluster/view", _cluster_view), ("/v1/blocks/{height}/txs", _block_txs),
        ("/v1/dashboard/latest-cert", _latest_cert), ("/v1/blocks", _blocks)]
    existing = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for path, handler in routes:
        if ("GET", path) not in existing:
            app.router.add_get(path, handler)
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


async def _events(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD_KEY]
    if dash.sse_clients >= sse_clients_max:
        return _error(429, "too_many_streams", f"at most {sse_clients_max} event streams per node")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    dash.sse_clients += 1
    dash.metrics.sse_clients.set(dash.sse_clients)
    try:
        await resp.write(b"retry: 2000\n\n")
        while not dash.closing.is_set():
            snap = dash.snapshot or dash.sample()
            data = json.dumps(snap, separators=(",", ":"), default=str)
            await resp.write(f"event: snapshot\ndata: {data}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dash.closing.wait(), sse_interval_s)
    except ConnectionResetError:  # the browser went away
        pass
    finally:
        dash.sse_clients -= 1
        dash.metrics.sse_clients.set(dash.sse_clients)
    return resp


async def _blocks(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD_KEY]
    try:
        before = int(request.query["before"]) if request.query.get("before") else None
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return _error(400, "bad_query", "before and limit must be integers")
    if limit < 1 or limit > HTTP_BLOCKS_PAGE_MAX or (before is not None and before < 0):
        return _error(400, "bad_query", f"limit must be 1..{HTTP_BLOCKS_PAGE_MAX} and before >= 0")
    return web.json_response({"blocks": dash.source.recent_blocks(before, limit)}, dumps=_dumps)


async def _block_txs(request: web.Request) -> web.StreamResponse:
    dash = request.app[DASHBOARD_KEY]
    try:
        height = int(request.match_info["height"])
    except ValueError:
        return _error(400, "bad_height", "height must be an integer")
    status = _safe(dash.source.status, {})
    if height < 1 or height > int(status.get("height") or 0):
        return _error(404, "block_not_found", f"no block at height {height}")
    return web.json_response({"height": height, "txs": dash.source.block_txs(height)}, dumps=_dumps)


async def _latest_cert(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[DASHBOARD_KEY].latest_cert())


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

def _base_url(addr: str) -> str:
    """A peer's `http` from cluster.toml is "host:port" (CONTRACT §2); accept a full URL too."""
    return addr.rstrip("/") if addr.startswith(("http://", "https://")) else f"http://{addr}"


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
