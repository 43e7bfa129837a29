"""One chaos run, end to end: start a fresh cluster with fault injection, run the workload under the nemesis,
heal, wait for convergence, collect every node's answers, check, write the report.

`run_chaos(options)` returns the summary dict; every process it started is killed on the way out, whether the
run finished, failed or was cancelled (Ctrl-C / SIGTERM cancel the task that runs it).

What it collects is read signed (CONTRACT §6) for the workload's reader (`reader_org`: the regulator, who reads
every outcome whole, also of a rejected tx or one below a node's snapshot). Status samples and fault rules go to
public routes, unsigned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node.chaos.checker import CheckReport, check_run, leader_of, tx_answer
from node.chaos.cluster import ChaosCluster
from node.chaos.history import COMMITTED, History, NodeDump, StatusSample
from node.chaos.nemesis import FAULT_KINDS, Nemesis, schedule
from node.chaos.report import write_report
from node.chaos.state_check import check_node_state
from node.chaos.workload import Api, Workload, reader_org
from node.client.api import AsyncClient, CounterNonces, json_body

SAMPLE_INTERVAL_S = 0.25
STATUS_TIMEOUT_S = 0.6
ADMIN_TIMEOUT_S = 1.0
ADMIN_ATTEMPTS = 4
READY_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 45.0
DRAIN_TIMEOUT_S = 15.0
DUMP_CONCURRENCY = 8  # per node; the session's pool holds them all, so no request waits for a connection
FETCH_TIMEOUT_S = 10.0
FETCH_ATTEMPTS = 5
HTTP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class Options:
    duration: float = 60.0
    seed: int = 7
    nodes: int = 5
    report_dir: Path | None = None
    workdir: Path | None = None
    keep: bool = False
    workers_per_org: int = 1
    readers: int = 2
    kinds: tuple[str, ...] = FAULT_KINDS
    netns: bool = False
    """Real-network mode: each node in its own network namespace (node/chaos/netns.py; root only)."""
    progress: Callable[[dict[str, Any]], None] | None = None
    cluster_factory: Callable[[Path], ChaosCluster] | None = None
    """Builds the run's cluster in the given directory instead of a ChaosCluster (node/chaos/multihost.py)."""


@dataclass(slots=True)
class RunState:
    """Live figures for the progress display."""

    phase: str = "starting"
    t: float = 0.0
    duration: float = 0.0
    leader: str | None = None
    fault: str = ""
    alive: dict[str, str] = field(default_factory=dict)


class Run:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.t0 = time.monotonic()
        self.state = RunState(duration=opts.duration)
        self.history = History(seed=opts.seed, nodes=[])
        self.cluster: ChaosCluster | None = None
        self.session: aiohttp.ClientSession | None = None
        self.http = AsyncClient()
        """Public routes only (status samples, fault rules): anonymous, so they cost no signature."""
        self.reads = AsyncClient()
        """The collected state and tx outcomes: signed for the workload's reader (set once the keys exist)."""
        self.latest: StatusSample | None = None
        self.nemesis: Nemesis | None = None
        self.workload: Workload | None = None
        self.phase_s: dict[str, float] = {}
        self._phase_t = time.monotonic()

    def phase(self, name: str) -> None:
        """Enter a phase; the time spent in the previous one goes to the report."""
        now = time.monotonic()
        self.phase_s[self.state.phase] = round(now - self._phase_t, 2)
        self._phase_t = now
        self.state.phase = name

    def clock(self) -> float:
        return time.monotonic() - self.t0

    # -- HTTP helpers ------------------------------------------------------------------------------------

    async def get_json(self, node: str, path: str, timeout_s: float = HTTP_TIMEOUT_S,
                       http: AsyncClient | None = None) -> tuple[int, Any]:
        assert self.session is not None and self.cluster is not None
        return await (http or self.reads).request(self.session, self.cluster.url(node), "GET", path,
                                                  timeout_s=timeout_s)

    async def status_of(self, node: str) -> dict[str, Any] | None:
        try:
            code, body = await self.get_json(node, "/v1/status", STATUS_TIMEOUT_S, self.http)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return body if code == 200 else None

    async def sample(self) -> StatusSample:
        assert self.cluster is not None
        ids = self.cluster.ids
        statuses = await asyncio.gather(*(self.status_of(n) for n in ids))
        s = StatusSample(self.clock(), dict(zip(ids, statuses, strict=True)))
        self.latest = s
        self.state.leader = leader_of(s, len(ids))
        return s

    async def post_rule(self, node: str, rule: dict[str, Any]) -> bool:
        assert self.session is not None and self.cluster is not None
        body = json_body(rule)
        for _ in range(ADMIN_ATTEMPTS):
            try:
                status, _ = await self.http.request(self.session, self.cluster.url(node), "POST", "/admin/faults",
                                                    body, timeout_s=ADMIN_TIMEOUT_S)
                if status == 200:
                    return True
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(0.1)
        return False

    def leader_now(self) -> str | None:
        if self.latest is None or self.cluster is None:
            return None
        lead = leader_of(self.latest, len(self.cluster.ids))
        if lead is not None:
            return lead
        # Fall back to any node that says it leads (a minority may disagree during elections).
        for n, st in self.latest.statuses.items():
            if st and st.get("role") == "leader":
                return n
        return None

    # -- phases ------------------------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            s = await self.sample()
            if self.state.leader is not None and all(v is not None for v in s.statuses.values()):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"cluster not ready after {READY_TIMEOUT_S:.0f}s: {self.latest and self.latest.statuses}")

    async def sampler(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            s = await self.sample()
            self.history.samples.append(s)
            self._tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)

    def note_crashes(self) -> None:
        assert self.cluster is not None
        for node_id, pid, code, tail in self.cluster.unexpected_exits():
            self.history.crashes.append({"node": node_id, "pid": pid, "exit_code": code, "t": round(self.clock(), 2),
                                         "output_tail": tail})

    def _tick(self) -> None:
        self.note_crashes()
        self.state.t = self.clock()
        n = self.nemesis
        self.state.fault = (f"{n.current.kind} {','.join(n.current.targets)}" if n and n.current else "")
        if self.cluster is not None:
            self.state.alive = {i: ("paused" if i in self.cluster.paused else "up" if self.cluster.alive(i)
                                    else "down") for i in self.cluster.ids}
        if self.opts.progress:
            self.opts.progress(self.progress_view())

    def progress_view(self) -> dict[str, Any]:
        txs = self.history.txs
        return {
            "phase": self.state.phase, "t": self.state.t, "duration": self.opts.duration,
            "acked": sum(1 for r in txs if r.outcome == COMMITTED and r.complete != float("inf")),
            "rejected": sum(1 for r in txs if r.outcome == "rejected"),
            "in_flight_or_unknown": sum(1 for r in txs if r.outcome == "unknown"),
            "reads": len(self.history.reads), "leader": self.state.leader, "fault": self.state.fault,
            "faults": len(self.nemesis.faults) if self.nemesis else 0, "nodes": self.state.alive,
        }

    async def heal_all(self) -> None:
        assert self.cluster is not None
        self.note_crashes()
        if self.nemesis is not None:
            await self.nemesis.heal()
        for n in self.cluster.ids:
            self.cluster.resume(n)
            if not self.cluster.alive(n):
                self.cluster.start(n)
        await asyncio.gather(*(self.post_rule(n, {"heal": True}) for n in self.cluster.ids))

    async def converge(self) -> bool:
        """Wait until every node answers with the same height and hash, applied up to its commit index."""
        assert self.cluster is not None
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        stable = 0
        last = None
        while time.monotonic() < deadline:
            s = await self.sample()
            self.history.samples.append(s)
            sts = list(s.statuses.values())
            if all(sts) and self.state.leader is not None:
                heads = {(st["height"], st["block_hash"], st.get("state_root")) for st in sts if st}
                applied = all(st.get("applied_index") == st.get("commit_index") for st in sts if st)
                if len(heads) == 1 and applied:
                    stable = stable + 1 if heads == last else 1
                    last = heads
                    if stable >= 3:
                        return True
            await asyncio.sleep(0.3)
        return False

    async def fetch(self, dump: NodeDump, path: str, sem: asyncio.Semaphore) -> tuple[bool, Any]:
        """(answered?, body or None for a non-200). A node that never answers is recorded in dump.errors and
        its part of the check is reported as unverified, never as a loss."""
        for attempt in range(FETCH_ATTEMPTS):
            async with sem:
                try:
                    code, body = await self.get_json(dump.node_id, path, FETCH_TIMEOUT_S)
                    return True, (body if code == 200 else None)
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    error = type(exc).__name__
            await asyncio.sleep(0.2 * (attempt + 1))
        dump.errors.append(f"{path}: {error}")
        return False, None

    async def dump_node(self, node: str, tx_ids: list[str]) -> NodeDump:
        sem = asyncio.Semaphore(DUMP_CONCURRENCY)
        dump = NodeDump(node_id=node, status=await self.status_of(node))
        if dump.status is None:
            return dump
        top = dump.status.get("height") or 0
        before = top + 1
        while before > 1:
            # The checker compares tx ids across nodes: ask for them (such a page stops at
            # HTTP_BLOCKS_PAGE_TX_IDS_MAX ids; the next one starts below its lowest height).
            _ok, page = await self.fetch(dump, f"/v1/blocks?before={before}&limit=100&tx_ids=true", sem)
            blocks = (page or {}).get("blocks")
            if not blocks:
                break
            for b in blocks:
                dump.blocks[int(b["height"])] = b
            before = min(int(b["height"]) for b in blocks)
        if not dump.blocks and top:
            # No paged listing on this node: one GET /v1/blocks/{h} per height (CONTRACT §4).
            async def block(h: int) -> None:
                _ok, body = await self.fetch(dump, f"/v1/blocks/{h}", sem)
                if body is not None:
                    dump.blocks[h] = body

            await asyncio.gather(*(block(h) for h in range(1, top + 1)))

        async def tx(tx_id: str) -> None:
            ok, body = await self.fetch(dump, f"/v1/tx/{tx_id}", sem)
            if ok:  # no key at all: this node never answered about this tx
                dump.txs[tx_id] = body

        await asyncio.gather(*(tx(t) for t in tx_ids))
        return dump

    async def dump_state(self, dump: NodeDump, cert_ids: list[str], roots: list[str], credit_keys: list[str]
                         ) -> None:
        sem = asyncio.Semaphore(DUMP_CONCURRENCY)
        wanted = set(cert_ids)

        async def into(target: dict[str, Any], key: str, path: str) -> None:
            ok, body = await self.fetch(dump, path, sem)
            if ok:
                target[key] = body

        await asyncio.gather(*(into(dump.lineages, r, f"/v1/certs/{r}/lineage") for r in roots),
                             *(into(dump.credit, k, f"/v1/credit/{k}") for k in credit_keys))
        # A lineage lists every certificate of its tree: read certificates from there, one by one only if absent.
        for lin in dump.lineages.values():
            for c in (lin or {}).get("certs") or []:
                if c.get("id") in wanted:
                    dump.certs[c["id"]] = c
        await asyncio.gather(*(into(dump.certs, c, f"/v1/certs/{c}") for c in cert_ids if c not in dump.certs))

    async def collect(self) -> list[NodeDump]:
        assert self.cluster is not None
        tx_ids = [r.tx_id for r in self.history.txs]
        dumps = list(await asyncio.gather(*(self.dump_node(n, tx_ids) for n in self.cluster.ids)))
        ref = next((d for d in dumps if d.status is not None), None)
        cert_ids: set[str] = set()
        roots: list[str] = []
        credit_keys: set[str] = set()
        for rec in self.history.txs:
            status, _, result = tx_answer(ref.txs.get(rec.tx_id)) if ref else ("absent", None, None)
            if status != COMMITTED or not isinstance(result, dict):
                continue
            certs = list(result.get("certs") or [])
            cert_ids.update(certs)
            if rec.kind == "ecert.issue" and certs:
                roots.append(certs[0])
                credit_keys.add(f"{rec.body['bank']}/{rec.signer}")
            if "cert_id" in rec.body:
                cert_ids.add(rec.body["cert_id"])
        await asyncio.gather(*(self.dump_state(d, sorted(cert_ids), roots, sorted(credit_keys))
                               for d in dumps if d.status is not None))
        return dumps

    # -- the whole run -----------------------------------------------------------------------------------

    async def run(self) -> tuple[dict[str, Any], CheckReport | None]:
        opts = self.opts
        workdir = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix=f"chaos-{opts.seed}-"))
        report_dir = Path(opts.report_dir) if opts.report_dir else workdir / "report"
        self.cluster = cluster = (opts.cluster_factory(workdir / "cluster") if opts.cluster_factory is not None
                                  else ChaosCluster(workdir / "cluster", opts.nodes, netns=opts.netns))
        self.history.nodes = cluster.ids
        steps = schedule(opts.seed, opts.duration, opts.kinds)
        try:
            cluster.write_files()
            trust = cluster.https_trust()  # known once the files are written (the multi-host run's certificates)
            self.http = AsyncClient(trust=trust)
            for n in cluster.ids:
                cluster.start(n)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
                self.session = session
                self.phase("waiting for a leader")
                await self.wait_ready()
                # Nonces count per signer from the seed: cheap, and the same from run to run.
                signers = {o: cluster.signer(o, CounterNonces(str(opts.seed))) for o, _, _ in cluster.orgs}
                urls = {n: cluster.url(n) for n in cluster.ids}
                reader = signers[reader_org(cluster.orgs)]
                self.reads = AsyncClient(reader, {url: n for n, url in urls.items()}, trust)
                api = Api(session, urls, self.history, self.clock, signers, random.Random(f"api:{opts.seed}"),
                          reader, trust)
                stop_workload = asyncio.Event()
                stop_sampler = asyncio.Event()
                self.workload = Workload(api, cluster.orgs, opts.seed, stop_workload, opts.workers_per_org,
                                         opts.readers)
                self.phase("setup")
                await self.workload.setup()
                # The schedule's clock starts with the workload; the setup tx keeps its (negative) times.
                shift = time.monotonic() - self.t0
                self.t0 += shift
                for rec in self.history.txs:
                    rec.invoke -= shift
                    rec.complete -= shift
                self.history.samples.clear()
                self.nemesis = Nemesis(opts.seed, cluster, steps, self.post_rule, self.leader_now, self.clock)
                self.phase("chaos")
                sampler = asyncio.create_task(self.sampler(stop_sampler))
                work = asyncio.create_task(self.workload.run())
                try:
                    await self.nemesis.run()
                    await asyncio.sleep(max(0.0, opts.duration - self.clock()))
                finally:
                    stop_workload.set()
                self.phase("draining")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(work), DRAIN_TIMEOUT_S)
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                self.history.duration = self.clock()
                self.history.faults = self.nemesis.faults
                self.phase("healing")
                await self.heal_all()
                self.phase("converging")
                converged = await self.converge()
                stop_sampler.set()
                await sampler
                self.phase("collecting")
                self._tick()
                dumps = await self.collect()
        finally:
            cluster.close()
        self.phase("checking")
        for dump in dumps:  # every process is gone: each node's own state, with the ledger's invariants
            dump.state_check = await asyncio.to_thread(check_node_state, cluster.data_dir(dump.node_id))
        report = check_run(self.history, dumps)
        self.phase("writing the report")
        report.stats["converged"] = converged
        report.stats["client_errors"] = self.workload.errors if self.workload else []
        report.stats["phase_s"] = self.phase_s
        summary = make_summary(self.history, report, report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        write_report(report_dir, self.history, report, summary, opts, steps)
        (report_dir / "history.json").write_text(json.dumps(history_json(self.history, dumps), default=str))
        self.phase("done")
        if not report.violations and not opts.keep and opts.workdir is None:
            shutil.rmtree(workdir / "cluster", ignore_errors=True)
        else:
            summary["cluster_dir"] = str(workdir / "cluster")
        return summary, report


def make_summary(history: History, report: CheckReport, report_dir: Path) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for f in history.faults:
        kinds[f.kind] = kinds.get(f.kind, 0) + 1
    return {
        "seed": history.seed,
        "acked": report.stats.get("acked", 0),
        "lost": report.stats.get("lost", 0),
        "violations": len(report.violations),
        "faults": kinds,
        "report": str((report_dir / "index.html").resolve()),
    }


def history_json(history: History, dumps: list[NodeDump]) -> dict[str, Any]:
    return {"history": asdict(history), "dumps": [asdict(d) for d in dumps]}


async def run_chaos(opts: Options) -> tuple[dict[str, Any], CheckReport | None]:
    return await Run(opts).run()
