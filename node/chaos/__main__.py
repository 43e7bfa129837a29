"""python -m node.chaos --duration S --seed N --nodes K --report DIR

A chaos run against a real multi-process cluster (CONTRACT §5): progress on stderr, the HTML report in DIR, and
as the last line on stdout one JSON summary {"seed", "acked", "lost", "violations", "faults", "report"}.
Exit 0 when the checker found nothing, 1 on any violation, 2 when the run itself could not be done, 130 when
interrupted (Ctrl-C / SIGTERM): every process the run started is stopped in every case.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from node.chaos import netns
from node.chaos.checker import check_run
from node.chaos.history import history_from_json
from node.chaos.nemesis import FAULT_KINDS
from node.chaos.runner import Options, make_summary, run_chaos

err = Console(stderr=True, highlight=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="./scripts/chaos",
        description="Chaos run: a real cluster (one process per node, fault injection on), a concurrent "
                    "E-certificate workload, a seeded nemesis (kills, pauses, restarts, partitions, delay, loss), "
                    "then a checker (lost txs, double application, invariants, identical chains, linearizable "
                    "reads). Ends with one JSON line; exit 1 on any violation.")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload under faults (default 60)")
    p.add_argument("--seed", type=int, default=7, help="seed of the fault schedule and the workload (default 7)")
    p.add_argument("--nodes", type=int, default=5, help="number of nodes, 3..9 (default 5)")
    p.add_argument("--report", type=Path, default=None, help="directory for the HTML report "
                   "(default: reports/chaos-SEED in the current directory)")
    p.add_argument("--workdir", type=Path, default=None, help="where the cluster's files go (default: a temp dir, "
                   "removed after a clean run)")
    p.add_argument("--keep", action="store_true", help="keep the cluster's data and logs after a clean run")
    p.add_argument("--faults", default="all", help="comma-separated fault kinds, or 'all' "
                   f"(kinds: {', '.join(FAULT_KINDS)})")
    p.add_argument("--workers", type=int, default=1, help="clients per organisation (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--netns", action="store_true", help="real-network mode (root only): each node in its own "
                   "network namespace on a private bridge (10.77.R.0/24), partitions and one-way links made by "
                   "the kernel (tc), delay and loss by tc netem; everything torn down at the end")
    p.add_argument("--recheck", type=Path, default=None, metavar="REPORT_DIR",
                   help="run no cluster: check the history.json of an earlier run again and print its summary")
    args = p.parse_args(argv)
    if args.duration < 5:
        p.error("--duration must be at least 5 seconds")
    if not 3 <= args.nodes <= 9:
        p.error("--nodes must be in 3..9")
    if args.faults != "all":
        kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad or not kinds:
            p.error(f"unknown fault kinds: {bad}; known: {', '.join(FAULT_KINDS)}")
        args.kinds = kinds
    else:
        args.kinds = FAULT_KINDS
    return args


class Progress:
    """A live table on a terminal; a line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live: Live | None = None
        self.last_line = 0.0

    def __enter__(self) -> Progress:
        if not self.quiet and err.is_terminal:
            self.live = Live(console=err, refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def __call__(self, v: dict[str, Any]) -> None:
        if self.quiet:
            return
        if self.live is not None:
            t = Table.grid(padding=(0, 2))
            t.add_row("phase", f"[bold]{v['phase']}[/]", "time", f"{v['t']:.0f}/{v['duration']:.0f}s")
            t.add_row("acked", str(v["acked"]), "rejected", str(v["rejected"]))
            t.add_row("unknown/in flight", str(v["in_flight_or_unknown"]), "reads", str(v["reads"]))
            t.add_row("leader", str(v["leader"] or "-"), "faults so far", str(v["faults"]))
            t.add_row("fault now", f"[red]{v['fault']}[/]" if v["fault"] else "-", "nodes",
                      " ".join(f"{n}:{s}" for n, s in v["nodes"].items()))
            self.live.update(t)
        elif time.monotonic() - self.last_line > 5:
            self.last_line = time.monotonic()
            err.print(f"[{v['t']:5.1f}s] {v['phase']}: acked {v['acked']} rejected {v['rejected']} "
                      f"in flight/unknown {v['in_flight_or_unknown']} reads {v['reads']} leader {v['leader']} "
                      f"fault {v['fault'] or '-'}", soft_wrap=True)


async def amain(args: argparse.Namespace, progress: Progress) -> tuple[dict[str, Any], Any]:
    opts = Options(duration=args.duration, seed=args.seed, nodes=args.nodes,
                   report_dir=args.report or Path("reports") / f"chaos-{args.seed}", workdir=args.workdir,
                   keep=args.keep, workers_per_org=args.workers, kinds=args.kinds, netns=args.netns,
                   progress=progress)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    return await run_chaos(opts)


def recheck(report_dir: Path) -> int:
    history, dumps = history_from_json(json.loads((report_dir / "history.json").read_text()))
    report = check_run(history, dumps)
    for v in report.violations[:20]:
        err.print(f"[red]violation[/] {v.kind}: {v.message}")
    summary = make_summary(history, report, report_dir)
    print(json.dumps(summary), flush=True)
    return 1 if summary["violations"] else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.recheck is not None:
        return recheck(args.recheck)
    if args.netns:
        try:
            netns.require_netns()
        except netns.NetnsError as exc:
            err.print(f"[red]--netns refused: {exc}[/]")
            print(json.dumps({"seed": args.seed, "error": f"netns: {exc}"}), flush=True)
            return 2
    with Progress(args.quiet) as progress:
        try:
            summary, report = asyncio.run(amain(args, progress))
        except (KeyboardInterrupt, asyncio.CancelledError):
            err.print("[yellow]interrupted: every node process this run started has been stopped[/]")
            print(json.dumps({"seed": args.seed, "interrupted": True}), flush=True)
            return 130
        except Exception as exc:  # the run itself failed (cluster never ready, ...): say what, exit 2
            err.print(f"[red]chaos run failed: {type(exc).__name__}: {exc}[/]")
            print(json.dumps({"seed": args.seed, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return 2
    for v in report.violations[:20]:
        err.print(f"[red]violation[/] {v.kind}: {v.message}")
    stats = report.stats
    err.print(f"availability: {json.dumps(stats.get('availability'))}")
    err.print(f"linearizability: {json.dumps(stats.get('linearizability'))}")
    err.print(f"report: {summary['report']}")
    print(json.dumps(summary), flush=True)
    return 1 if summary["violations"] else 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
