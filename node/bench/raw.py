"""Raw mode: the consensus layer alone. Unsigned no-op entries through our Raft vs PySyncObj's replicated
counter, three processes each on loopback, same duration, counted the same way: entries committed and applied
on the leader per second (node/bench/raw_node.py runs the nodes).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

from node.bench.ecert_side import free_ports

NODE_IDS = ("n0", "n1", "n2")


@dataclass(frozen=True, slots=True)
class RawSettings:
    duration_s: float
    warmup_s: float = 2.0
    batch: int = 2048
    """Entries a leader proposes per loop turn (one Ready, one fsync)."""
    window: int = 16384
    """Max entries proposed but not yet applied on the leader (the client queue a real leader holds)."""
    payload: int = 16
    """Bytes of data per entry (PySyncObj's pickled `inc()` call is of this order)."""
    max_inflight: int = 16
    """Our AppendEntries pipelining window per follower; few in flight means more entries per message."""
    read_cache: bool = True
    """LevelDBStorage keeps the log tail in memory for the core's reads (its default); False turns that off."""
    propose_many: bool = True
    """Our leader appends each batch with one `Raft.propose_many` call instead of one `propose` per entry."""
    write_thread: bool = True
    """Our driver runs each Ready's synced write on a writer thread while its loop keeps stepping the core (as
    etcd's raft node does); False blocks the loop on it."""
    gc_threshold0: int = 500_000
    """Young-generation threshold of CPython's cyclic GC in our node processes (CPython's default is 700; PySyncObj
    keeps it). Above the number of log entries a node keeps alive (the 64 MiB tail cache holds ~380k entries of 16
    bytes), so that their steady churn, freed by reference counting, no longer triggers collections that traverse
    them all; with 700 those cost about 0.8 µs per entry per node."""
    tick_ms: int = 50
    election_ticks: int = 10
    pso_append_period_s: float = 0.1
    """PySyncObj's appendEntriesPeriod (its default)."""
    pso_journal: bool = False
    """PySyncObj keeps its log in memory by default (no fsync); True uses its file journal."""


def spec_for(root: Path, settings: RawSettings) -> dict[str, Any]:
    ports = free_ports(len(NODE_IDS))
    return {
        "root": str(root), "chain_id": "raw-bench",
        "nodes": [{"id": nid, "port": port, "seed": os.urandom(32).hex()} for nid, port in zip(NODE_IDS, ports, strict=True)],
        "duration_s": settings.duration_s, "warmup_s": settings.warmup_s, "batch": settings.batch,
        "window": settings.window, "payload": settings.payload, "max_inflight": settings.max_inflight,
        "read_cache": settings.read_cache, "propose_many": settings.propose_many,
        "write_thread": settings.write_thread, "gc_threshold0": settings.gc_threshold0,
        "tick_ms": settings.tick_ms, "election_ticks": settings.election_ticks,
        "pso_append_period_s": settings.pso_append_period_s, "pso_journal": settings.pso_journal,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (0 if it is gone)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process and all its threads, from /proc ((0, 0) if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def stop_all(procs: list[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """SIGTERM each process group we started, then SIGKILL what is left after `grace_s`."""
    for proc in procs:
        if proc.poll() is None:
            with _quiet():
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError)


def run_system(root: Path, system: str, settings: RawSettings) -> dict[str, Any]:
    """Start three nodes of `system`, wait for the leader's result, stop them all (also on Ctrl-C)."""
    spec = spec_for(root, settings)
    spec_path = root / f"spec-{system}.json"
    spec_path.write_text(json.dumps(spec))
    result_path = root / f"result-{system}.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for nid in NODE_IDS:
            out = open(root / f"{system}-{nid}.out", "wb")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "node.bench.raw_node", "--spec", str(spec_path), "--id", nid,
                 "--system", system], stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
            out.close()
        deadline = time.monotonic() + settings.warmup_s + settings.duration_s + 60
        cpu_start: list[float] | None = None
        while not result_path.exists():
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = "a node exited" if dead else "no result in time"
                raise RuntimeError(f"{system}: {why}; logs in {root}")
            if cpu_start is None and (root / f"window-{system}").exists():
                cpu_start = [sum(x) for x in zip(*(cpu_split(p.pid) for p in procs), strict=True)]
            time.sleep(0.05)
        cpu_end = [sum(x) for x in zip(*(cpu_split(p.pid) for p in procs), strict=True)]
        result: dict[str, Any] = json.loads(result_path.read_text())
        if cpu_start is not None and result["entries"]:
            # CPU of all three nodes per entry: a figure less bent by other load on a shared machine.
            user, system = cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1]
            result["cluster_cpu_s"] = round(user + system, 2)
            result["cpu_us_per_entry"] = round((user + system) / result["entries"] * 1e6, 1)
            # System time is the kernel's share (fsync, loopback TCP): none of it is Python work.
            result["cpu_sys_us_per_entry"] = round(system / result["entries"] * 1e6, 1)
        return result
    finally:
        stop_all(procs)


def codec_micro(entries: int = 64, payload: int = 16, rounds: int = 200, repeat: int = 5) -> dict[str, float]:
    """µs to encode and to decode one APPEND of `entries` entries (best of `repeat` rounds: the least disturbed
    by other load), and its size on the wire. `python -m node.bench.raw` prints it."""
    from consensus.codec import decode_message, encode_message
    from consensus.messages import Entry, Message, MessageType

    def message() -> Message:
        return Message(MessageType.APPEND, "n0", "n1", 7, log_term=7, index=1000, commit=990,
                       entries=tuple(Entry(7, 1001 + i, data=bytes(payload)) for i in range(entries)))

    msg, other = message(), message()
    wire = encode_message(msg)
    if decode_message(wire) != msg:
        raise RuntimeError("codec does not round-trip")
    out: dict[str, float] = {"entries": entries, "payload_bytes": payload, "wire_bytes": len(wire)}
    # Encoding alternates between two messages of distinct entries: the codec reuses the encoding of entries
    # it has just encoded (a leader's broadcast), which this figure should not count.
    messages = cycle((msg, other))
    for name, run in (("encode_us", lambda: encode_message(next(messages))),
                      ("decode_us", lambda: decode_message(wire))):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(rounds):
                run()
            best = min(best, (time.perf_counter() - start) / rounds)
        out[name] = round(best * 1e6, 1)
    return out


if __name__ == "__main__":
    print(json.dumps(codec_micro()))
