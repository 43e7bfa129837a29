"""`python -m consensus.sim`: run the deterministic Raft simulator over seeds 1..N (or one seed to replay).

Ends with one JSON line: {"seeds", "violations", "elections", "committed", "crashes", "partitions", "dropped"}.
Exit status 1 if any seed broke a safety property (each failure prints its replay command).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consensus.sim.simulation import FAULT_KINDS, Failure, RunStats, SimConfig, parse_faults, run_seed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./scripts/simulate",
        description="Run the Raft core in the deterministic simulator under faults, checking Raft's safety "
                    "properties after every step. Same seed, same run.")
    p.add_argument("--seeds", type=int, default=100, help="run seeds 1..N (default 100)")
    p.add_argument("--seed", type=int, default=None, help="run only this seed (replay a failure)")
    p.add_argument("--nodes", type=int, default=5, help="initial voters (default 5)")
    p.add_argument("--faults", default="all",
                   help=f"all, none, or a comma list of: {', '.join(FAULT_KINDS)} (default all)")
    p.add_argument("--steps", type=int, default=SimConfig(seed=0).steps,
                   help="events per seed before the final heal-and-converge phase")
    p.add_argument("--set", action="append", default=[], metavar="NAME=INT",
                   help="override a tuning knob of SimConfig, e.g. crash_permille=100 (repeatable; replay "
                        "commands of tests use it)")
    p.add_argument("--trace", action="store_true", help="print every event (use with --seed)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _report(console: Console, f: Failure) -> None:
    console.print(f"[bold red]VIOLATION[/] seed {f.seed}: {f.prop}: {f.detail}", highlight=False, soft_wrap=True)
    console.print("last events:", highlight=False)
    for line in f.recent[-25:]:
        console.print(f"  {line}", highlight=False, markup=False)
    console.print(f"replay: [bold]{f.replay}[/]", highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        faults = parse_faults(args.faults)
        base = SimConfig(seed=0, nodes=args.nodes, faults=faults, steps=args.steps).with_overrides(args.set)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.nodes < 1 or args.seeds < 1 or args.steps < 1:
        print("error: --nodes, --seeds and --steps must be positive", file=sys.stderr)
        return 2
    seeds = [args.seed] if args.seed is not None else list(range(1, args.seeds + 1))
    console = Console(stderr=True)
    totals = {"seeds": 0, "violations": 0, "elections": 0, "committed": 0, "crashes": 0, "partitions": 0,
              "dropped": 0}
    extra = dict.fromkeys(("proposals", "reads", "conf_changes", "transfers", "compactions",
                           "snapshots_installed", "lost_writes", "early_sends", "crashes_in_write",
                           "crashes_after_early_send", "duplicated", "messages", "steps", "sim_ms"), 0)
    failures: list[Failure] = []
    with Progress(TextColumn("simulate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, disable=args.quiet or args.trace,
                  transient=True) as progress:
        task = progress.add_task("seeds", total=len(seeds), info="")
        for seed in seeds:
            cfg = replace(base, seed=seed)
            stats, failure = run_seed(cfg, echo=args.trace)
            _add(totals, stats)
            for k in extra:
                extra[k] += getattr(stats, k)
            if failure is not None:
                failures.append(failure)
                totals["violations"] += 1
                progress.console.print()
                _report(progress.console, failure)
            progress.update(task, advance=1, info=f"violations {totals['violations']}  elections "
                                                  f"{totals['elections']}  committed {totals['committed']}")
    if args.seed is not None and not failures:
        console.print(f"seed {args.seed}: ok, trace {stats.trace_hash}", highlight=False)
    console.print("also: " + "  ".join(f"{k} {v}" for k, v in extra.items()), highlight=False, soft_wrap=True)
    print(json.dumps(totals))
    return 1 if failures else 0


def _add(totals: dict[str, int], s: RunStats) -> None:
    totals["seeds"] += 1
    totals["elections"] += s.elections
    totals["committed"] += s.committed
    totals["crashes"] += s.crashes
    totals["partitions"] += s.partitions
    totals["dropped"] += s.dropped


if __name__ == "__main__":
    sys.exit(main())
