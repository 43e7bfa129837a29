"""Failover mode: SIGKILL the leader of a real 3-node cluster, time the first commit under its successor.

One round: wait for a leader the cluster agrees on and for commits flowing; SIGKILL the leader's process group;
from that instant, `clients` clients keep submitting small signed txs (`trade.anchor` with fresh doc ids,
`wait=commit`) through the surviving nodes; the first tx *submitted after the kill* that comes back committed
ends the downtime (it can only have been committed under a new leader). Then the killed node is restarted on
its data and the round waits until it has caught up with the leader's height before the next kill.

Downtime here = detection (an election timeout) + election + the new leader's no-op + one block committed and
applied + the HTTP answer: an upper bound on the Raft paper's Figure 16 metric, which stops at "leader elected".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node.bench import ecert_side
from node.bench.loadgen import LoadResult
from node.config import ClusterConfig, NodeSpec
from node.ops import control

REQUEST_TIMEOUT_S = 2.0
RECOVERY_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 60.0


@dataclass(slots=True)
class KillSample:
    round: int
    killed: str
    new_leader: str | None
    downtime_ms: float | None
    """Kill to the first committed answer of a tx submitted after the kill; None if none within the timeout."""
    catch_up_s: float | None
    """Restart of the killed node until its height reaches the leader's."""
    restart_errors: list[str] = field(default_factory=list)
    """Why earlier attempts to restart the killed node failed (empty when the first start worked)."""


@dataclass(slots=True)
class FailoverReport:
    tick_ms: int
    election_ticks: int
    samples: list[KillSample] = field(default_factory=list)
    error: str | None = None
    """Why the run stopped before all kills were done."""

    def summary(self) -> dict[str, Any]:
        done = [s.downtime_ms for s in self.samples if s.downtime_ms is not None]
        stats = LoadResult("failover", 1.0, ok=len(done), latencies_ms=list(done))
        return {
            "mode": "failover", "kills": len(self.samples), "recovered": len(done),
            "failed": len(self.samples) - len(done),
            "p50_ms": round(stats.percentile_ms(50), 1), "p99_ms": round(stats.percentile_ms(99), 1),
            "max_ms": round(max(done), 1) if done else None, "min_ms": round(min(done), 1) if done else None,
            "tick_ms": self.tick_ms, "election_ticks": self.election_ticks,
            "election_timeout_ms": [self.election_ticks * self.tick_ms, 2 * self.election_ticks * self.tick_ms],
            "samples": [{"round": s.round, "killed": s.killed, "new_leader": s.new_leader,
                         "downtime_ms": None if s.downtime_ms is None else round(s.downtime_ms, 1),
                         "catch_up_s": None if s.catch_up_s is None else round(s.catch_up_s, 2),
                         "restart_errors": s.restart_errors}
                        for s in self.samples],
            "restart_failures": sum(len(s.restart_errors) for s in self.samples),
            "error": self.error,
        }


def write_failover_cluster(root: Path, tick_ms: int | None, election_ticks: int | None) -> Path:
    """The bench cluster file of ecert_side, with the Raft timing keys set if asked."""
    timing = {"tick_ms": tick_ms, "election_ticks": election_ticks}
    return ecert_side.write_cluster_file(root, 3, **{k: v for k, v in timing.items() if v is not None})


class Submitters:
    """Clients that keep submitting `trade.anchor` txs to the nodes not marked down, recording commits."""

    def __init__(self, config: ClusterConfig, clients: int) -> None:
        self.config = config
        self.clients = clients
        self.signer = ecert_side.bench_signer(config, "tier1")
        self.run_tag = time.time_ns()  # unique doc ids per run
        self.down: set[str] = set()
        self.commits: list[tuple[float, float]] = []
        """(monotonic submit time, monotonic committed-answer time) of each committed tx."""
        self.refused = 0
        self._stop = False
        self._n = 0

    def tx(self) -> bytes:
        self._n += 1
        # A delivery note: it needs no contract, so it commits under a new chain's rules (node/genesis_file.py).
        return self.signer.sign("trade.anchor", {"doc_id": f"FO-{self.run_tag}-{self._n}", "kind": "delivery",
                                                 "doc_hash": "00" * 32, "counterparty": "geely", "amount": 1})

    async def client(self, i: int, session: aiohttp.ClientSession) -> None:
        turn = 0
        while not self._stop:
            up = [n for n in self.config.nodes if n.id not in self.down]
            turn += 1
            node = up[(i + turn) % len(up)]
            raw = self.tx()
            t0 = time.monotonic()
            try:
                ok = ecert_side.committed(*await ecert_side.CLIENT.post_tx(session, node.http_url, raw))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                ok = False
            if ok:
                self.commits.append((t0, time.monotonic()))
            else:
                self.refused += 1
                await asyncio.sleep(0.005)  # no leader yet: retry soon, without spinning

    def first_commit_after(self, t: float) -> float | None:
        done = [t1 for t0, t1 in self.commits if t0 >= t]
        return min(done) if done else None

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(self.client(i, session) for i in range(self.clients)))

    def stop(self) -> None:
        self._stop = True


async def poll(check: Callable[[], Any], timeout_s: float, every_s: float = 0.02) -> Any:
    """Await check() (run in a thread: it may do blocking HTTP) until truthy, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(check)
        if value or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(every_s)


def node_by_id(config: ClusterConfig, node_id: str) -> NodeSpec:
    return next(n for n in config.nodes if n.id == node_id)


async def one_round(k: int, config: ClusterConfig, subs: Submitters, spawned: set[int]) -> KillSample:
    leader_id = await poll(lambda: control.agreed_leader(config, control.fetch_statuses(config.nodes)), 30.0)
    if leader_id is None:
        raise RuntimeError("no agreed leader before the kill")
    # Commits must be flowing before the kill, so the downtime measured is the failover's alone.
    t_ready = time.monotonic()
    if await poll(lambda: subs.first_commit_after(t_ready), 30.0, every_s=0.01) is None:
        raise RuntimeError("no commits before the kill")
    leader = node_by_id(config, leader_id)
    pid = control.running_pid(config, leader)
    if pid is None:
        raise RuntimeError(f"leader {leader_id} has no live process")
    subs.down.add(leader_id)
    t_kill = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # the node runs in its own session: its group is its own
    first = await poll(lambda: subs.first_commit_after(t_kill), RECOVERY_TIMEOUT_S, every_s=0.005)
    downtime_ms = (first - t_kill) * 1000 if first is not None else None
    survivors = [n for n in config.nodes if n.id != leader_id]
    new_leader = await asyncio.to_thread(lambda: control.agreed_leader(config, control.fetch_statuses(survivors)))
    # Restart on its own data, then wait for it to catch up with the leader's height.
    await asyncio.to_thread(control.kill_node_pid, config, leader, pid)  # waits it gone, removes its pid file
    if pid in spawned:
        kill_group(pid)  # we restarted it in an earlier round: it is our child, reap it
    t_restart = time.monotonic()
    restart_errors = await restart(config, leader, spawned)
    subs.down.discard(leader_id)

    def caught_up() -> bool:
        st = control.fetch_statuses(config.nodes)
        lead = control.agreed_leader(config, st)
        mine, theirs = st.get(leader_id), st.get(lead) if lead else None
        return bool(mine and theirs and mine.get("height", -1) >= theirs.get("height", 0) - 1)

    catch_up_s = time.monotonic() - t_restart if await poll(caught_up, CATCH_UP_TIMEOUT_S, 0.05) else None
    return KillSample(k, leader_id, new_leader, downtime_ms, catch_up_s, restart_errors)


async def restart(config: ClusterConfig, node: NodeSpec, spawned: set[int], attempts: int = 3) -> list[str]:
    """Start a killed node again on its data. A failed start is a finding, not noise: its reason (the tail of
    node.out and node.log) is returned and reported; we retry, and give up after `attempts`.

    Readiness is judged by /v1/status and by waitpid on our own child, not by /proc's cmdline: between fork
    and exec a child still shows our command line, which control.wait_ready takes for an exited node."""
    errors: list[str] = []
    for _ in range(attempts):
        pid = await asyncio.to_thread(control.spawn_node, config, node)
        spawned.add(pid)
        why = await asyncio.to_thread(wait_started, node, pid, 60.0)
        if why is None:
            return errors
        kill_group(pid)  # never leave a half-started process behind us
        errors.append(f"{node.id}: {why}\nnode.out:\n{control.tail(control.out_file(node), 8)}"
                      f"\nnode.log:\n{control.tail(control.log_file(node), 5)}")
        await asyncio.sleep(1.0)
    raise RestartFailed(f"{node.id} did not restart after SIGKILL:\n" + "\n".join(errors))


def wait_started(node: NodeSpec, pid: int, timeout_s: float) -> str | None:
    """None once the node answers /v1/status; else why not (it exited, or no answer in time)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if control.fetch_status(node, timeout_s=0.5) is not None:
            return None
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done == pid:
            return f"exited during start-up (wait status {status})"
        time.sleep(0.1)
    return f"no answer on /v1/status after {timeout_s:.0f}s"


def kill_group(pid: int) -> None:
    """SIGKILL a node process we started (its own session, so its own group) and reap it if it is our child."""
    control.sigkill_group(pid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


class RestartFailed(RuntimeError):
    pass


async def run_failover(root: Path, kills: int, clients: int = 4, tick_ms: int | None = None,
                       election_ticks: int | None = None,
                       on_sample: Callable[[KillSample], None] | None = None) -> FailoverReport:
    (root / "failover").mkdir(parents=True, exist_ok=True)
    config_path = write_failover_cluster(root / "failover", tick_ms, election_ticks)
    cluster = ecert_side.EcertCluster(config_path)
    spawned: set[int] = set()
    """Every node process this run restarted: all are stopped at the end, whatever the pid files say."""
    try:
        config = await asyncio.to_thread(cluster.up)
        report = FailoverReport(config.tick_ms, config.election_ticks)
        subs = Submitters(config, clients)
        load = asyncio.create_task(subs.run())
        try:
            for k in range(kills):
                try:
                    sample = await one_round(k, config, subs, spawned)
                except (RuntimeError, control.ControlError) as exc:
                    report.error = f"round {k + 1}: {exc}"  # report what was measured, and why it stopped
                    break
                report.samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
        finally:
            subs.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(load, REQUEST_TIMEOUT_S + 5)
            if not load.done():
                load.cancel()
        return report
    finally:
        await asyncio.to_thread(cluster.down)
        for pid in spawned:
            kill_group(pid)
