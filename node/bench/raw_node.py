"""One node of the raw-mode benchmark: our Raft (or PySyncObj) replicating no-op entries, no application.

    python -m node.bench.raw_node --spec SPEC.json --id ID [--system ours|pysyncobj]

`ours` is a minimal driver around `consensus.raft.Raft`, over node/transport.py's authenticated peer
connections. Each Ready is carried out by `consensus.ready_loop.handle_ready`, the routine node/driver.py and the
simulator run, with `_RawIO` doing the work (persist with one synced LevelDB WriteBatch -> send -> apply ->
advance). node/driver.py is not reused because it decodes every non-empty entry as a block; here the
"application" only counts entries.

With `write_thread` (the default) the synced write of a Ready runs on a writer thread
(`LevelDBStorage.begin_save/write_save`; LevelDB releases the GIL) while the event loop keeps receiving
messages and stepping the core, as etcd's raft node keeps stepping while its storage writes run. Only once that
write has returned does the Ready go through `handle_ready`, whose persist step is then `end_save` (the store
takes the save in memory): so nothing of a Ready is sent, applied or advanced before its write is durable -
there is no early send in this mode, whose safety argument needs acknowledgements stepped only between Readies -
and the next Ready is taken only after `advance`. Proposals and acknowledgements that arrive meanwhile go into the
next Ready, so batches grow with the fsync latency instead of the loop idling through it. Without
`write_thread` the write runs inside `handle_ready` on the loop, early send included, as in node/driver.py.

`gc_threshold0` raises the cyclic collector's young-generation threshold in our node processes: a node keeps
hundreds of thousands of log entries alive in its tail cache, and with CPython's default (700) the collections
that their churn triggers (each traversing every live entry) cost more than the rest of a follower's per-entry
work (see node/bench/raw.py `RawSettings.gc_threshold0`). PySyncObj runs with CPython's defaults: its log
entries are plain tuples, which the collector stops tracking, and the same setting made it slightly slower.

Whichever node is leader proposes: up to `batch` entries per loop turn while fewer than `window` of its entries
are unapplied (a real leader with a full client queue does the same). After `warmup_s` it counts the entries it
applied during `duration_s` and writes one JSON result to `<root>/result-<system>.json`; then it idles until the
harness (node/bench/raw.py) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter, countOf
from pathlib import Path
from typing import Any

from consensus.config import Config
from consensus.leveldb_storage import LevelDBStorage, PendingSave
from consensus.log_cache import CACHE_BYTES_MAX
from consensus.messages import Entry, Message, Snapshot
from consensus.raft import Raft
from consensus.ready import HardState, ReadState, Ready, Role
from consensus.ready_loop import handle_ready, needs_write

_DATA = attrgetter("data")


@dataclass(slots=True)
class Meter:
    """Counts entries applied on the leader inside the measured window."""

    warmup_s: float
    duration_s: float
    started: float | None = None
    """monotonic time this node first became leader."""
    window_start: float | None = None
    base: int = 0
    applied: int = 0
    fsyncs: int = 0
    fsync_base: int = 0
    readies: int = 0
    ready_base: int = 0
    role_changes: int = 0
    """Role or leader changes seen by this node; the result reports those inside the window (0 = stable)."""
    role_base: int = 0
    result: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    report: tuple[Path, str, str] | None = None
    """(root, system, node id): where the leader writes its marker and result files."""

    def on_turn(self, now: float, is_leader: bool) -> None:
        if self.result is not None:
            return
        if self.started is None:
            if not is_leader:
                return
            self.started = now
        if self.window_start is None and now >= self.started + self.warmup_s:
            self.window_start, self.base = now, self.applied
            self.fsync_base, self.ready_base, self.role_base = self.fsyncs, self.readies, self.role_changes
            if self.report is not None:  # the harness samples every node's CPU time from here to the result
                root, system, _ = self.report
                (root / f"window-{system}").touch()
        if self.window_start is not None and now >= self.window_start + self.duration_s:
            seconds = now - self.window_start
            entries = self.applied - self.base
            fsyncs = self.fsyncs - self.fsync_base
            self.result = {"entries": entries, "seconds": round(seconds, 3),
                           "entries_per_s": round(entries / seconds, 1),
                           "fsyncs": fsyncs, "readies": self.readies - self.ready_base,
                           "entries_per_fsync": round(entries / fsyncs, 1) if fsyncs else None,
                           "role_changes": self.role_changes - self.role_base, **self.extra}
            if self.report is not None:
                write_result(*self.report, self.result)

    @property
    def proposing(self) -> bool:
        return self.started is not None and self.result is None


def write_result(root: Path, system: str, node_id: str, result: dict[str, Any]) -> None:
    tmp = root / f"result-{system}.json.tmp"
    tmp.write_text(json.dumps({"node": node_id, **result}))
    tmp.replace(root / f"result-{system}.json")


# -- ours ---------------------------------------------------------------------------------------------------


class RawDriver:
    """The Ready loop with a null application."""

    def __init__(self, spec: dict[str, Any], node_id: str) -> None:
        self.spec = spec
        self.node_id = node_id
        self.root = Path(spec["root"])
        voters = tuple(sorted(n["id"] for n in spec["nodes"]))
        raft_dir = self.root / "ours" / node_id
        raft_dir.mkdir(parents=True, exist_ok=True)
        # The storage keeps the log's tail in memory for the core's reads; `read_cache` false turns that off.
        self.storage = LevelDBStorage(str(raft_dir), voters,
                                      cache_bytes_max=CACHE_BYTES_MAX if spec["read_cache"] else 0)
        config = Config(id=node_id, election_ticks=spec["election_ticks"], heartbeat_ticks=1,
                        max_inflight_msgs=spec["max_inflight"])
        self.core = Raft(config, self.storage, random.Random(os.urandom(16)))
        self.tick_s = spec["tick_ms"] / 1000
        self.payload = bytes(spec["payload"])
        self.meter = Meter(spec["warmup_s"], spec["duration_s"],
                           extra={"batch": spec["batch"], "window": spec["window"],
                                  "max_inflight_msgs": spec["max_inflight"], "payload_bytes": spec["payload"],
                                  "tick_ms": spec["tick_ms"], "read_cache": spec["read_cache"],
                                  "propose_many": spec["propose_many"], "write_thread": spec.get("write_thread", False),
                                  "gc_threshold0": spec.get("gc_threshold0")})
        self.meter.report = (self.root, "ours", node_id)
        self.persisted: HardState = self.storage.initial_state()[0]
        """The hard state of the last finished write (for `handle_ready`'s early-send rule)."""
        self.written_role = Role.FOLLOWER
        """The core's role when it made the Ready now on the writer thread."""
        self.wake = asyncio.Event()
        self.stopping = False

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()

    def on_message(self, msg: Message) -> None:
        with contextlib.suppress(Exception):  # a bad message must not kill the node (as in node/driver.py)
            self.core.step(msg)
        self.wake.set()

    def propose(self) -> None:
        core = self.core
        room = self.spec["window"] - (core.last_index - core.applied_index)
        n = min(self.spec["batch"], room)
        if n > 0 and self.spec["propose_many"]:  # the whole batch appended and broadcast at once
            with contextlib.suppress(Exception):  # lost leadership or flow control: try again next turn
                core.propose_many([self.payload] * n)
            return
        for _ in range(n):
            try:
                core.propose(self.payload)
            except Exception:  # lost leadership or flow control: try again next turn
                return

    def handle_ready(self, rd: Ready, send: Callable[[Message], None], written: PendingSave | None = None) -> None:
        """Carry out `rd` through the shared routine. `written`: its save, already written and synced on the
        writer thread; else the write (one WriteBatch, fsynced when the core says so) is done here."""
        role = self.core.role if written is None else self.written_role
        self.persisted = handle_ready(rd, _RawIO(self, send, written), role=role, persisted=self.persisted)

    async def run(self) -> None:
        from node.config import Address
        from node.keys import KeyPair
        from node.transport import PeerInfo, PeerTransport

        spec = self.spec
        me = next(n for n in spec["nodes"] if n["id"] == self.node_id)
        peers = [PeerInfo(n["id"], Address("127.0.0.1", n["port"]), KeyPair(bytes.fromhex(n["seed"])).sign_pk)
                 for n in spec["nodes"] if n["id"] != self.node_id]
        transport = PeerTransport(node_id=self.node_id, chain_id=spec["chain_id"],
                                  key=KeyPair(bytes.fromhex(me["seed"])), listen=Address("127.0.0.1", me["port"]),
                                  peers=peers, on_message=self.on_message)
        await transport.start()
        loop = asyncio.get_running_loop()
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raft-write")
        writing: tuple[Ready, PendingSave, asyncio.Future[None]] | None = None
        next_tick = loop.time() + self.tick_s
        try:
            while not self.stopping:
                delay = next_tick - loop.time()
                if self.wake.is_set() or delay <= 0:
                    await asyncio.sleep(0)  # let the transport run between turns
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), delay)
                self.wake.clear()
                now = loop.time()
                if now >= next_tick:
                    self.core.tick()
                    next_tick = max(next_tick + self.tick_s, now)
                is_leader = self.core.role is Role.LEADER
                self.meter.on_turn(time.monotonic(), is_leader)
                if is_leader and self.meter.proposing:
                    self.propose()
                if writing is not None and writing[2].done():
                    rd, pending, done = writing
                    writing = None
                    done.result()  # a failed write stops the node before anything of its Ready leaves
                    self.handle_ready(rd, transport.send, written=pending)
                while writing is None and self.core.has_ready():
                    rd = self.core.ready()
                    if not (spec.get("write_thread") and needs_write(rd)):
                        self.handle_ready(rd, transport.send)
                        continue
                    self.written_role = self.core.role
                    pending = self.storage.begin_save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
                    done = loop.run_in_executor(writer, self.storage.write_save, pending)
                    done.add_done_callback(lambda _: self.wake.set())
                    writing = (rd, pending, done)
        finally:
            if writing is not None:
                with contextlib.suppress(Exception):
                    await writing[2]
            writer.shutdown(wait=True)
            await transport.close()
            self.storage.close()


class _RawIO:
    """RawDriver's `consensus.ready_loop.ReadyIO`: LevelDB, the transport, and a null application that counts."""

    __slots__ = ("_d", "_send", "_written")

    def __init__(self, driver: RawDriver, send: Callable[[Message], None], written: PendingSave | None) -> None:
        self._d = driver
        self._send = send
        self._written = written

    def persist(self, rd: Ready) -> None:
        d = self._d
        if self._written is None:
            d.storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
        else:  # already durable (the writer thread's write_save returned): the store takes it in memory
            d.storage.end_save(self._written)
        if rd.must_sync or rd.entries:
            d.meter.fsyncs += 1

    def send(self, messages: tuple[Message, ...]) -> None:
        send = self._send
        for m in messages:
            send(m)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        pass  # the null application has no state to restore (and the benchmark never compacts)

    def apply(self, entries: tuple[Entry, ...]) -> None:
        # The null application only counts its proposals, and only on a node that leads or has led (a follower's
        # count is never reported): entries with data (a leader's no-op is empty; the benchmark changes no
        # membership, so there are no CONF_CHANGE entries).
        d = self._d
        if d.meter.started is not None or d.core.role is Role.LEADER:
            d.meter.applied += len(entries) - countOf(map(_DATA, entries), b"")

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        pass  # the benchmark makes no reads

    def advance(self, rd: Ready) -> None:
        d = self._d
        if rd.soft_state is not None:
            d.meter.role_changes += 1
        d.core.advance(rd)
        d.meter.readies += 1


# -- PySyncObj ----------------------------------------------------------------------------------------------


def run_pysyncobj(spec: dict[str, Any], node_id: str, stop: list[bool]) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]  # the replicated counter of PySyncObj's own README and benchmarks
        def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
            super().__init__(self_addr, partners, conf)
            self.value = 0

        @replicated  # type: ignore[untyped-decorator]
        def inc(self) -> int:
            self.value += 1
            return self.value

    addr = {n["id"]: f"127.0.0.1:{n['port']}" for n in spec["nodes"]}
    root = Path(spec["root"])
    kwargs: dict[str, Any] = {"autoTick": False, "appendEntriesPeriod": spec["pso_append_period_s"],
                              "raftMinTimeout": 0.4, "raftMaxTimeout": 1.4}
    if spec.get("pso_journal"):
        (root / "pysyncobj").mkdir(exist_ok=True)
        kwargs["journalFile"] = str(root / "pysyncobj" / f"{node_id}.journal")
    counter = Counter(addr[node_id], [a for i, a in addr.items() if i != node_id], SyncObjConf(**kwargs))
    meter = Meter(spec["warmup_s"], spec["duration_s"],
                  extra={"batch": spec["batch"], "window": spec["window"], "journal": bool(spec.get("pso_journal")),
                         "append_entries_period_s": spec["pso_append_period_s"]}, report=(root, "pysyncobj", node_id))
    submitted = 0
    try:
        while not stop[0]:
            counter.doTick(0.001)
            is_leader = counter._isLeader()
            meter.applied = counter.value
            meter.on_turn(time.monotonic(), is_leader)
            if is_leader and meter.proposing:
                room = spec["window"] - (submitted - counter.value)
                for _ in range(min(spec["batch"], room)):
                    counter.inc(sync=False)  # no callback: fire and forget, counted when applied
                    submitted += 1
    finally:
        counter.destroy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m node.bench.raw_node")
    p.add_argument("--spec", required=True, type=Path)
    p.add_argument("--id", required=True)
    p.add_argument("--system", choices=("ours", "pysyncobj"), default="ours")
    args = p.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    if args.system == "ours" and spec.get("gc_threshold0"):
        gc.set_threshold(spec["gc_threshold0"], *gc.get_threshold()[1:])
    if args.system == "pysyncobj":
        stop = [False]
        signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
        signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
        run_pysyncobj(spec, args.id, stop)
        return 0
    driver = RawDriver(spec, args.id)

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, driver.stop)
        await driver.run()

    if os.environ.get("RAW_NODE_PROFILE"):  # where the time goes: cProfile into <root>/profile-<id>.pstats
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(amain())
        prof.dump_stats(str(driver.root / f"profile-{args.id}.pstats"))
        return 0
    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
