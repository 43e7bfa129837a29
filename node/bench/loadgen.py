"""A closed-loop load generator: C concurrent clients, each sending its next request when the last one answered.

The same generator drives etcd and ecert-chain so that the client's own cost is the same on both sides.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

Request = Callable[[aiohttp.ClientSession], Awaitable[bool]]
"""Sends one request; returns True if the server acknowledged it as durable, False on a refusal (or raises
Refused to say why)."""


class Refused(Exception):
    """A request the server answered without acknowledging it; the message is the reason counted."""


@dataclass(slots=True)
class LoadResult:
    name: str
    duration_s: float
    ok: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    """Why requests failed (reason -> count): a refusal's message, or the client exception's type."""
    server_cpu_s: float | None = None
    """CPU seconds the servers' processes used during the run (all of them, every thread); None: not measured."""
    client_cpu_s: float | None = None
    """CPU seconds this load generator used during the run."""

    def cpu_ms_per_op(self, seconds: float | None) -> float | None:
        return None if seconds is None or not self.ok else seconds * 1000 / self.ok

    @property
    def tps(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        rank = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank]

    def summary(self) -> dict[str, float | int | str | dict[str, int]]:
        return {
            "name": self.name,
            "tps": round(self.tps, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(self.failures.most_common(5)),
            **({"server_cpu_ms_per_op": round(self.cpu_ms_per_op(self.server_cpu_s) or 0.0, 3),
                "client_cpu_ms_per_op": round(self.cpu_ms_per_op(self.client_cpu_s) or 0.0, 3)}
               if self.server_cpu_s is not None else {}),
        }


async def run_closed_loop(name: str, workers: Sequence[Callable[[], Request | None]], duration_s: float,
                          on_progress: Callable[[int], None] | None = None) -> LoadResult:
    """Each worker is a factory of requests (None when it has nothing left to send)."""
    result = LoadResult(name=name, duration_s=duration_s)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    deadline = time.monotonic() + duration_s
    started = time.monotonic()

    async def worker(next_request: Callable[[], Request | None], session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            request = next_request()
            if request is None:
                return
            t0 = time.perf_counter()
            try:
                ok = await request(session)
                reason = "refused"
            except Refused as exc:
                ok, reason = False, str(exc)[:120]
            except (TimeoutError, aiohttp.ClientError) as exc:
                ok, reason = False, type(exc).__name__
            if ok:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
                if on_progress is not None:
                    on_progress(result.ok)
            else:
                result.failed += 1
                result.failures[reason] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(w, session) for w in workers))
    result.duration_s = time.monotonic() - started
    return result
