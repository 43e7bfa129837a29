"""`python -m node --config cluster.toml --id NODE_ID [--fault-injection]`: run one node until SIGTERM/SIGINT.

Exit codes (node/exit_status.py): 0 after a graceful stop, 2 for a bad command line or cluster file, 1 if the
node cannot start, 70 (EXIT_INVARIANT_VIOLATION) if an invariant broke: the node logs `invariant_violation`,
writes <data_dir>/node.exit for `scripts/cluster status`, says why on stderr (node.out) and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from consensus.invariant import InvariantViolation
from node.config import ClusterConfigError, load_config
from node.exit_status import (
    EXIT_CANNOT_START,
    EXIT_INVARIANT_VIOLATION,
    EXIT_OK,
    EXIT_USAGE,
    clear_exit_record,
    write_exit_record,
)

log = logging.getLogger("node")


def _loop_factory() -> Any:
    """uvloop's event loop when installed (less event-loop overhead per socket read/write and per wake-up); the
    stock asyncio loop otherwise or with ECERT_NODE_NO_UVLOOP=1 (to measure one against the other)."""
    if os.environ.get("ECERT_NODE_NO_UVLOOP"):
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


GC_THRESHOLD = (50_000, 20, 20)
"""CPython's default (700, 10, 10) runs a young collection every 700 net allocations of tracked objects; a node
allocates tuples, dicts and futures per tx and holds many long-lived ones (the Raft log's tail, state caches),
so collections were a steady tax. ECERT_NODE_GC_THRESHOLD="a,b,c" overrides (to measure one against another)."""


def _gc_threshold() -> tuple[int, ...]:
    raw = os.environ.get("ECERT_NODE_GC_THRESHOLD")
    if raw:
        with contextlib.suppress(ValueError):
            values = tuple(int(v) for v in raw.split(","))
            if len(values) == 3 and all(v >= 0 for v in values):
                return values
    return GC_THRESHOLD


def _run_node(config_path: str, node_id: str, fault_injection: bool) -> int:
    gc.set_threshold(*_gc_threshold())
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(config_path, node_id, fault_injection))


def _write_pid(path: Path) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    os.replace(tmp, path)


def _remove_pid(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()


async def _run(config_path: str, node_id: str, fault_injection: bool) -> int:
    from node.server import Node, StartupError

    config = load_config(config_path)
    node = Node(config, node_id, fault_injection=fault_injection)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except StartupError as exc:
        log.error("startup_failed", extra={"reason": str(exc)})
        print(f"node {node_id}: cannot start: {exc}", file=sys.stderr)
        await node.stop()
        return EXIT_CANNOT_START
    except OSError as exc:
        log.exception("startup_failed")
        print(f"node {node_id}: cannot start: {exc}", file=sys.stderr)
        await node.stop()
        return EXIT_CANNOT_START
    assert node.driver is not None
    stopped = loop.create_task(stop.wait(), name="stop-signal")
    broken = loop.create_task(node.driver.wait_broken_invariant(), name="invariant-watch")
    await asyncio.wait((stopped, broken), return_when=asyncio.FIRST_COMPLETED)
    for t in (stopped, broken):
        t.cancel()
    await node.stop()
    reason = node.driver.broken_invariant
    if reason is not None:
        _stopped_by_invariant(node.data_dir, node_id, reason)
        return EXIT_INVARIANT_VIOLATION
    return EXIT_OK


def _stopped_by_invariant(data_dir: Path, node_id: str, reason: str) -> None:
    """The loud part of stopping on a broken invariant: the record, a log line, a line on stderr (node.out)."""
    with contextlib.suppress(OSError):
        write_exit_record(data_dir, EXIT_INVARIANT_VIOLATION, "invariant_violation", reason)
    log.critical("node_exit", extra={"status": EXIT_INVARIANT_VIOLATION, "reason": "invariant_violation",
                                     "detail": reason})
    print(f"node {node_id}: stopped: invariant violation: {reason} (exit {EXIT_INVARIANT_VIOLATION})",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node", description="Run one ecert-chain node.")
    parser.add_argument("--config", required=True, help="cluster file (cluster.toml)")
    parser.add_argument("--id", required=True, help="this node's id in the cluster file")
    parser.add_argument("--fault-injection", action="store_true",
                        help="enable POST /admin/faults (loopback only; chaos runs)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        spec = config.node(args.id)
    except ClusterConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    spec.data_dir.mkdir(parents=True, exist_ok=True)
    from node.server import setup_logging

    setup_logging(spec.data_dir / "node.log", args.id, max_bytes=config.log_file_max_mb << 20,
                  files_kept=config.log_files_kept)
    pid_path = spec.data_dir / "node.pid"
    _write_pid(pid_path)
    clear_exit_record(spec.data_dir)  # from an earlier run: this one has not exited
    profile_to = os.environ.get("ECERT_NODE_PROFILE")  # opt-in: cProfile stats written at exit
    try:
        if profile_to:
            import cProfile
            import time

            # ECERT_NODE_PROFILE_CLOCK=thread: the main thread's CPU time, not wall time, so a node that is
            # runnable but waiting for a core (3 nodes and a client on 2 cores) is not charged for the wait.
            thread_clock = os.environ.get("ECERT_NODE_PROFILE_CLOCK") == "thread"
            prof = cProfile.Profile(time.thread_time) if thread_clock else cProfile.Profile()
            try:
                return prof.runcall(_run_node, args.config, args.id, args.fault_injection)
            finally:
                prof.dump_stats(f"{profile_to}.{args.id}")
        return _run_node(args.config, args.id, args.fault_injection)
    except InvariantViolation as exc:  # outside the driver's loop (opening a store, ...): the same stop
        log.critical("invariant_violation", exc_info=exc, extra={"where": "node", "reason": str(exc)})
        _stopped_by_invariant(spec.data_dir, args.id, f"node: {exc}")
        return EXIT_INVARIANT_VIOLATION
    except Exception:
        log.exception("node_crashed")
        raise
    finally:
        _remove_pid(pid_path)


if __name__ == "__main__":
    sys.exit(main())
