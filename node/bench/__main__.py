"""`./scripts/bench`: signed E-certificate transfers on our cluster, side by side with etcd puts, same client.

Ends with one JSON line: {"tps", "p50_ms", "p99_ms", "etcd_tps", "etcd_p50_ms", "etcd_p99_ms", "ratio", ...}.
`--peer-tls both` runs our cluster twice in the same run, peer links over TLS 1.3 and in clear text, and adds
{"peer_tls_off": {"tps", "p50_ms", "p99_ms"}, "tls_ratio"} (tps with TLS / tps without).

Other modes:
  --mode raw       unsigned no-op entries through our Raft vs PySyncObj's replicated counter (3 processes each);
                   JSON {"ours_entries_per_s", "pysyncobj_entries_per_s", "ratio", ...}
  --mode failover  SIGKILL the leader --kills times; JSON {"p50_ms", "p99_ms", "max_ms", "tick_ms", ...}
  --mode soak      steady signed load for --duration s, every node's RSS and disk sampled every --sample-s s;
                   JSON {"rss_mb_first", "rss_mb_last", "rss_anon_mb_first", "rss_anon_mb_last", "disk_mb_first",
                   "disk_mb_last", "samples", ...}; each sample splits the largest RSS into private (anon) and
                   file-mapped (LevelDB's tables) memory and the node's ecert_memory_bytes parts
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from node.bench import ecert_side, etcd, failover, raw, soak
from node.bench.loadgen import LoadResult, run_closed_loop
from node.bench.resources import cluster_resources, cpu_s, node_pids, own_cpu_s
from node.build_info import python_path
from node.ops.localnet import free_ports

console = Console(stderr=True)
VALUE_BYTES = 300
"""About the size of one of our signed transfers, so both systems move the same bytes per request."""
TPS_CEILING = 7000
"""Pre-signing budget per second of run: above what three verifying nodes on two cores can do (issue 6)."""
RAW_DEFAULTS = raw.RawSettings(duration_s=1.0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per system (default 20)")
    p.add_argument("--nodes", type=int, default=3, help="nodes of each cluster in signed mode (3, 5 or 7; default 3); raw and failover use 3")
    p.add_argument("--concurrency", type=str, default="64",
                   help="clients in flight; a comma list sweeps, e.g. 1,16,64,256 (default 64)")
    p.add_argument("--skip-etcd", action="store_true", help="measure only ecert-chain")
    p.add_argument("--peer-tls", choices=("on", "off", "both"), default="on",
                   help="signed mode: our peer links over TLS 1.3 (on, the default, what nodes run), in clear text "
                        "(off: cluster.toml peer_tls = false, measurement only), or both in one run, TLS first")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    p.add_argument("--mode", choices=("signed", "raw", "failover", "soak"), default="signed",
                   help="signed (default): E-cert txs vs etcd; raw: consensus alone vs PySyncObj; "
                        "failover: SIGKILL the leader repeatedly; soak: memory and disk under steady load")
    p.add_argument("--repeat", type=int, default=1,
                   help="signed: this many rounds of etcd and ours, the order alternating, medians reported; "
                        "raw: alternate our run and PySyncObj's this many times (default 1)")
    g = p.add_argument_group("raw mode")
    g.add_argument("--batch", type=int, default=RAW_DEFAULTS.batch,
                   help=f"entries a leader proposes per turn (default {RAW_DEFAULTS.batch})")
    g.add_argument("--window", type=int, default=RAW_DEFAULTS.window,
                   help=f"max proposed-but-unapplied entries (default {RAW_DEFAULTS.window})")
    g.add_argument("--payload", type=int, default=RAW_DEFAULTS.payload,
                   help=f"bytes per entry (default {RAW_DEFAULTS.payload})")
    g.add_argument("--pysyncobj-journal", action="store_true",
                   help="PySyncObj with its file journal instead of its default in-memory log")
    g.add_argument("--per-entry-propose", action="store_true",
                   help="our leader calls Raft.propose once per entry (no batch append)")
    g.add_argument("--no-read-cache", action="store_true",
                   help="the core reads its log back from LevelDB (no in-memory tail)")
    g.add_argument("--no-write-thread", action="store_true",
                   help="our raw driver writes each Ready on its loop (default: on a thread while it steps the core)")
    g.add_argument("--gc-threshold0", type=int, default=500_000,
                   help="our raw nodes' young-generation GC threshold (default 500000; CPython's own is 700)")
    g = p.add_argument_group("failover mode")
    g.add_argument("--kills", type=int, default=50, help="leader kills (default 50)")
    g.add_argument("--clients", type=int, default=4, help="clients submitting through the survivors (default 4)")
    g.add_argument("--tick-ms", type=int, default=None, help="cluster tick_ms (default: the node's, 50)")
    g.add_argument("--election-ticks", type=int, default=None,
                   help="cluster election_ticks (default: the node's, 10)")
    g = p.add_argument_group("soak mode (uses --duration, --nodes and the first --concurrency level)")
    g.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    g.add_argument("--snapshot-entries", type=int, default=2000,
                   help="cluster snapshot_entries: snapshot + compact every this many entries (default 2000)")
    args = p.parse_args(argv)
    if args.sample_s <= 0 or args.snapshot_entries < 1:
        p.error("--sample-s must be positive and --snapshot-entries at least 1")
    if args.repeat < 1 or args.kills < 1 or args.clients < 1:
        p.error("--repeat, --kills and --clients must be at least 1")
    if args.batch < 1 or args.window < args.batch or args.payload < 0:
        p.error("--batch must be at least 1, --window at least --batch, --payload not negative")
    if (args.tick_ms is not None and args.tick_ms < 1) or (args.election_ticks is not None and args.election_ticks < 2):
        p.error("--tick-ms must be at least 1 and --election-ticks at least 2")
    if args.nodes < 1 or args.nodes > 9:
        p.error("--nodes must be between 1 and 9")
    if args.duration <= 0:
        p.error("--duration must be positive")
    try:
        args.concurrency_levels = [int(c) for c in args.concurrency.split(",")]
    except ValueError:
        p.error("--concurrency takes integers, e.g. 64 or 1,16,64")
    if any(c < 1 or c > 4096 for c in args.concurrency_levels):
        p.error("--concurrency levels must be in 1..4096")
    return args


def progress_bar(label: str, duration: float) -> Progress:
    return Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), TextColumn("{task.fields[ok]} ok"),
                    TimeElapsedColumn(), console=console, transient=True)


async def measure(label: str, workers: list[Any], duration: float, server_pids: list[int]) -> LoadResult:
    """One closed-loop run; also the CPU the servers (`server_pids`) and this client used meanwhile, so the two
    systems can be compared per operation by what they cost, not only by how fast this machine ran them."""
    with progress_bar(label, duration) as bar:
        task = bar.add_task(label, total=None, ok=0)
        server0, client0 = cpu_s(server_pids), own_cpu_s()
        result = await run_closed_loop(label, workers, duration,
                                       on_progress=lambda n: bar.update(task, ok=n))
        result.server_cpu_s, result.client_cpu_s = cpu_s(server_pids) - server0, own_cpu_s() - client0
    return result


async def bench_etcd(root: Path, nodes: int, levels: list[int], duration: float) -> tuple[dict[int, LoadResult], str]:
    binary = etcd.ensure_etcd()
    version = etcd.etcd_version(binary)
    base = free_ports(1)[0]
    cluster = etcd.EtcdCluster(binary, root / "etcd", nodes, base_port=30000 + base % 20000, procs=[])
    results = {}
    try:
        cluster.start()
        urls = cluster.client_urls
        value = os.urandom(VALUE_BYTES)
        for c in levels:
            def worker(i: int, c: int = c) -> Callable[[], Any]:
                n = 0

                def next_request() -> Any:
                    nonlocal n
                    n += 1
                    return etcd.put_request(urls[(i + n) % len(urls)], f"bench/{c}/{i}/{n}".encode(), value)

                return next_request

            results[c] = await measure(f"etcd c={c}", [worker(i) for i in range(c)], duration,
                                       [p.pid for p in cluster.procs])
    finally:
        cluster.stop()
    return results, version


async def bench_ecert(root: Path, nodes: int, levels: list[int], duration: float, peer_tls: bool = True,
                      ) -> tuple[dict[int, LoadResult], dict[str, Any]]:
    where = root / ("ecert" if peer_tls else "ecert-clear")
    where.mkdir()
    config_path = ecert_side.write_cluster_file(where, nodes, peer_tls=peer_tls)
    cluster = ecert_side.EcertCluster(config_path)
    results: dict[int, LoadResult] = {}
    resources: dict[str, Any] = {}
    try:
        with console.status("starting our cluster"):
            config = cluster.up()
        urls = [n.http_url for n in config.nodes]
        total_clients = sum(levels)
        with console.status(f"set-up: credit, invoice, {total_clients} certificates"):
            roots = await ecert_side.prepare_roots(config, urls[0], total_clients)
        signer = ecert_side.bench_signer(config, "tier1")
        used = 0
        for c in levels:
            per_client = math.ceil(TPS_CEILING * duration / c) + 8
            with console.status(f"pre-signing {per_client * c} transfers"):
                chains = [ecert_side.presign_chain(signer, roots[used + i], per_client) for i in range(c)]
            used += c
            workers = [ecert_side.transfer_worker(urls, chains[i], i) for i in range(c)]
            results[c] = await measure(f"ecert c={c}", workers, duration, node_pids(config))
        resources = cluster_resources(config)
    finally:
        cluster.down()
    return results, resources


def render(levels: list[int], ours: dict[int, LoadResult], theirs: dict[int, LoadResult],
           title: str = "peer links over TLS 1.3") -> Table:
    table = Table(title=f"signed E-cert transfers (ecert-chain) vs puts (etcd), same client; {title}")
    for col in ("concurrency", "ecert tps", "p50 ms", "p99 ms", "CPU ms/tx", "etcd tps", "p50 ms", "p99 ms",
                "CPU ms/put", "ratio"):
        table.add_column(col, justify="right")

    def cpu(r: LoadResult | None) -> str:
        ms = r.cpu_ms_per_op(r.server_cpu_s) if r else None
        return f"{ms:.2f}" if ms is not None else "-"

    for c in levels:
        a, b = ours[c], theirs.get(c)
        ratio = f"{a.tps / b.tps:.2f}" if b and b.tps else "-"
        table.add_row(str(c), f"{a.tps:.0f}", f"{a.percentile_ms(50):.1f}", f"{a.percentile_ms(99):.1f}", cpu(a),
                      f"{b.tps:.0f}" if b else "-", f"{b.percentile_ms(50):.1f}" if b else "-",
                      f"{b.percentile_ms(99):.1f}" if b else "-", cpu(b), ratio)
    return table


@dataclasses.dataclass(slots=True)
class SignedRound:
    """One round of the signed comparison: our cluster and etcd, one after the other, every level each."""

    order: str
    """"etcd first" or "ecert first": rounds alternate, so a machine that drifts during the run favours neither."""
    ours: dict[int, LoadResult]
    theirs: dict[int, LoadResult]
    clear: dict[int, LoadResult]

    def _ratio(self, c: int, of: Callable[[LoadResult], float | None]) -> float | None:
        """of(ours) / of(etcd's) at concurrency `c`; None without an etcd result or a value to divide by."""
        b = self.theirs.get(c)
        ours, theirs = of(self.ours[c]), of(b) if b is not None else None
        return ours / theirs if ours is not None and theirs else None

    def tps_ratio(self, c: int) -> float | None:
        return self._ratio(c, lambda r: r.tps)

    def p50_ratio(self, c: int) -> float | None:
        return self._ratio(c, lambda r: r.percentile_ms(50))

    def cpu_ratio(self, c: int) -> float | None:
        """etcd's server CPU per put / ours per tx at `c`: the share of etcd's efficiency we have (1.0: as
        cheap per operation as etcd), whatever speed the machine ran at."""
        inverse = self._ratio(c, lambda r: r.cpu_ms_per_op(r.server_cpu_s))
        return 1 / inverse if inverse else None


async def signed_round(root: Path, args: argparse.Namespace, r: int) -> tuple[SignedRound, dict[str, Any], str]:
    here = root / f"round-{r}"
    here.mkdir()
    etcd_first = r % 2 == 0
    theirs: dict[int, LoadResult] = {}
    version = "skipped"
    resources: dict[str, Any] = {}

    async def run_etcd() -> None:
        nonlocal theirs, version
        if not args.skip_etcd:
            theirs, version = await bench_etcd(here, args.nodes, args.concurrency_levels, args.duration)

    if etcd_first:
        await run_etcd()
    ours, resources = await bench_ecert(here, args.nodes, args.concurrency_levels, args.duration,
                                        peer_tls=args.peer_tls != "off")
    clear: dict[int, LoadResult] = {}
    if args.peer_tls == "both":
        clear, _ = await bench_ecert(here, args.nodes, args.concurrency_levels, args.duration, peer_tls=False)
    if not etcd_first:
        await run_etcd()
    order = "etcd first" if etcd_first or args.skip_etcd else "ecert first"
    return SignedRound(order, ours, theirs, clear), resources, version


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def summarise_rounds(rounds: list[SignedRound], levels: list[int]) -> dict[str, Any]:
    """Medians over the rounds per level (one round: its own numbers), and each round's numbers."""
    def level(c: int) -> dict[str, Any]:
        ours = [r.ours[c] for r in rounds]
        theirs = [r.theirs[c] for r in rounds if c in r.theirs]
        return {
            "concurrency": c,
            "tps": round(median([a.tps for a in ours]), 1),
            "p50_ms": round(median([a.percentile_ms(50) for a in ours]), 2),
            "p99_ms": round(median([a.percentile_ms(99) for a in ours]), 2),
            "etcd_tps": round(median([b.tps for b in theirs]), 1) if theirs else None,
            "etcd_p50_ms": round(median([b.percentile_ms(50) for b in theirs]), 2) if theirs else None,
            "etcd_p99_ms": round(median([b.percentile_ms(99) for b in theirs]), 2) if theirs else None,
            "ratio": _rounded(_median_or_none([r.tps_ratio(c) for r in rounds]), 3),
            "p50_ratio": _rounded(_median_or_none([r.p50_ratio(c) for r in rounds]), 3),
            "cpu_ms_per_tx": _rounded(_median_or_none([a.cpu_ms_per_op(a.server_cpu_s) for a in ours]), 3),
            "etcd_cpu_ms_per_put": _rounded(_median_or_none([b.cpu_ms_per_op(b.server_cpu_s) for b in theirs]), 3),
            "cpu_ratio": _rounded(_median_or_none([r.cpu_ratio(c) for r in rounds]), 3),
            "failed": sum(a.failed for a in ours),
        }

    return {"levels": {c: level(c) for c in levels},
            "rounds": [{"round": i + 1, "order": r.order, "levels": [
                {"concurrency": c, "ecert": r.ours[c].summary(),
                 "etcd": r.theirs[c].summary() if c in r.theirs else None,
                 "ratio": _rounded(r.tps_ratio(c), 3), "p50_ratio": _rounded(r.p50_ratio(c), 3),
                 "cpu_ratio": _rounded(r.cpu_ratio(c), 3)}
                for c in levels]} for i, r in enumerate(rounds)]}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ecert-bench-"))
    rounds: list[SignedRound] = []
    resources: dict[str, Any] = {}
    version = "skipped"
    try:
        for r in range(args.repeat):
            if args.repeat > 1:
                console.print(f"round {r + 1}/{args.repeat}")
            one, resources, round_version = await signed_round(root, args, r)
            rounds.append(one)
            version = round_version if round_version != "skipped" else version
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    last = rounds[-1]
    for i, one in enumerate(rounds):
        title = "peer links over TLS 1.3" + (f", round {i + 1} ({one.order})" if len(rounds) > 1 else "")
        console.print(render(args.concurrency_levels, one.ours, one.theirs, title=title))
        if one.clear:
            console.print(render(args.concurrency_levels, one.clear, one.theirs,
                                 title="peer links in clear text (peer_tls = false)"))
        for result in [*one.ours.values(), *one.clear.values(), *one.theirs.values()]:
            if result.failed:
                console.print(f"[yellow]{result.name}: {result.failed} requests failed[/] "
                              f"{dict(result.failures.most_common(5))}")
    head = args.concurrency_levels[-1]
    summary = summarise_rounds(rounds, args.concurrency_levels)
    top = summary["levels"][head]
    tls_part: dict[str, Any] = {"peer_tls": args.peer_tls}
    if last.clear:
        off, on = last.clear[head], last.ours[head]
        tls_part |= {"peer_tls_off": {"tps": round(off.tps, 1), "p50_ms": round(off.percentile_ms(50), 2),
                                      "p99_ms": round(off.percentile_ms(99), 2)},
                     "tls_ratio": round(on.tps / off.tps, 3) if off.tps else None}
    out: dict[str, Any] = {
        **{k: top[k] for k in ("tps", "p50_ms", "p99_ms", "etcd_tps", "etcd_p50_ms", "etcd_p99_ms", "ratio",
                               "cpu_ms_per_tx", "etcd_cpu_ms_per_put", "cpu_ratio")},
        "concurrency": head, "nodes": args.nodes, "duration_s": args.duration,
        "sweep": [{"concurrency": c, "ecert": last.ours[c].summary(),
                   "etcd": last.theirs[c].summary() if c in last.theirs else None,
                   **{k: summary["levels"][c][k] for k in ("p50_ratio", "cpu_ms_per_tx", "etcd_cpu_ms_per_put",
                                                            "cpu_ratio")}} for c in args.concurrency_levels],
        "resources": resources, "etcd_version": version, "python": platform.python_version(),
        "failed": sum(r.ours[c].failed for r in rounds for c in args.concurrency_levels), **tls_part,
    }
    if len(rounds) > 1:
        out |= {"repeat": len(rounds), "medians": list(summary["levels"].values()), "rounds": summary["rounds"]}
    return out


def raw_settings(args: argparse.Namespace) -> raw.RawSettings:
    return raw.RawSettings(duration_s=args.duration, batch=args.batch, window=args.window, payload=args.payload,
                           pso_journal=args.pysyncobj_journal, propose_many=not args.per_entry_propose,
                           read_cache=not args.no_read_cache, write_thread=not args.no_write_thread,
                           gc_threshold0=args.gc_threshold0)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main_raw(args: argparse.Namespace) -> dict[str, Any]:
    settings = raw_settings(args)
    root = Path(tempfile.mkdtemp(prefix="ecert-bench-raw-"))
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "pysyncobj": []}
    try:
        for r in range(args.repeat):
            for system in ("ours", "pysyncobj"):  # alternated, so drifting load on a shared machine hits both
                run_root = root / f"{system}-{r}"
                run_root.mkdir()
                with console.status(f"raw: {system} run {r + 1}/{args.repeat}, {args.duration:g}s"):
                    runs[system].append(raw.run_system(run_root, system, settings))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    ours = median([x["entries_per_s"] for x in runs["ours"]])
    theirs = median([x["entries_per_s"] for x in runs["pysyncobj"]])
    table = Table(title="raw: no-op entries committed and applied on the leader per second, 3 nodes, loopback")
    for col in ("system", "entries/s (median)", "runs", "CPU µs/entry (3 nodes)", "durable"):
        table.add_column(col, justify="right")
    for name, rows, rate, durable in (("ecert-chain Raft", runs["ours"], ours, "fsync per Ready"),
                                      ("PySyncObj", runs["pysyncobj"], theirs,
                                       "journal, no fsync" if args.pysyncobj_journal else "no (in memory)")):
        cpu = [x["cpu_us_per_entry"] for x in rows if x.get("cpu_us_per_entry")]
        table.add_row(name, f"{rate:,.0f}", " ".join(f"{x['entries_per_s']:,.0f}" for x in rows),
                      f"{median(cpu):.1f}" if cpu else "-", durable)
    console.print(table)
    console.print(f"ratio {ours / theirs:.2f}x (goal >= 3x)" if theirs else "PySyncObj committed nothing")
    return {"mode": "raw", "ours_entries_per_s": round(ours, 1), "pysyncobj_entries_per_s": round(theirs, 1),
            "ratio": round(ours / theirs, 3) if theirs else None, "duration_s": args.duration,
            "repeat": args.repeat, "settings": dataclasses.asdict(settings), "runs": runs,
            "python": platform.python_version()}


async def main_failover_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    def on_sample(s: failover.KillSample) -> None:
        shown = f"{s.downtime_ms:.0f} ms" if s.downtime_ms is not None else "no commit in time"
        console.print(f"kill {s.round + 1}/{args.kills}: {s.killed} -> {s.new_leader}: {shown}, "
                      f"caught up in {s.catch_up_s or float('nan'):.1f}s")
        for err in s.restart_errors:
            console.print(f"[yellow]restart failed once[/]: {err}")

    report = await failover.run_failover(root, args.kills, clients=args.clients, tick_ms=args.tick_ms,
                                         election_ticks=args.election_ticks, on_sample=on_sample)
    summary = report.summary()
    table = Table(title="leader SIGKILL -> first commit under the new leader (3 nodes)")
    for col in ("kills", "p50 ms", "p99 ms", "max ms", "election timeout", "Raft paper, Fig. 16 (150-300 ms)"):
        table.add_column(col, justify="right")
    lo, hi = summary["election_timeout_ms"]
    table.add_row(str(summary["kills"]), str(summary["p50_ms"]), str(summary["p99_ms"]), str(summary["max_ms"]),
                  f"{lo}-{hi} ms", "leader elected, not yet committing; see BENCHMARKS.md")
    console.print(table)
    if summary["error"]:
        console.print(f"[red]stopped early[/]: {summary['error']}")
    if summary["restart_failures"]:
        console.print(f"[yellow]{summary['restart_failures']} restart attempt(s) failed[/]; see samples[].restart_errors")
    return summary


def main_failover(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ecert-bench-failover-"))
    try:
        return asyncio.run(main_failover_async(args, root))
    finally:
        # Whatever happened (Ctrl-C included), no node of ours outlives the bench.
        cluster_file = root / "failover" / "cluster.toml"
        if cluster_file.exists():
            ecert_side.EcertCluster(cluster_file).down()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main_soak(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ecert-soak-"))

    def show(sample: dict[str, Any]) -> None:
        parts = "  ".join(f"{k} {v:.0f}" for k, v in sample.get("rss_parts_mb", {}).items())
        console.print(f"t={sample['t_s']:>5}s  acked {sample['acked']:>8}  RSS max {sample['rss_mb_max']:>7.1f} MB"
                      f" (anon {sample['rss_anon_mb']:.0f}, file {sample['rss_file_mb']:.0f})"
                      f"  disk max {sample['disk_mb_max']:>7.1f} MB" + (f"  [MB: {parts}]" if parts else ""),
                      soft_wrap=True)

    try:
        return asyncio.run(soak.run_soak(root, args.nodes, args.concurrency_levels[0], args.duration,
                                         args.sample_s, args.snapshot_entries, on_sample=show))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C or SIGTERM: unwind through the finally blocks so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if args.mode == "raw":
            summary = main_raw(args)
        elif args.mode == "failover":
            summary = main_failover(args)
        elif args.mode == "soak":
            summary = main_soak(args)
        else:
            summary = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print(json.dumps({"error": "interrupted"}))
        return 130
    print(json.dumps({**summary, "python_path": python_path()}))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
