"""Memory, disk and CPU of a running cluster: RSS per node process, what the node accounts for of it (its
`ecert_memory_bytes` gauges), on-disk size of its data directory, and the CPU time its processes used."""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from node.config import ClusterConfig
from node.ops.control import running_pid


def rss_split(pid: int) -> dict[str, int]:
    """VmRSS and its parts RssAnon (private memory) and RssFile (mapped files: for a node, mostly LevelDB's
    table files, which LevelDB reads through mmap; page cache the kernel can reclaim), in bytes; {} if gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process `pid`, all its threads (LevelDB's included); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces; fields after it are fixed
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14 and 15 of proc(5))


def cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds of the processes `pids` together (one that is gone counts 0)."""
    return sum(process_cpu_s(pid) or 0.0 for pid in pids)


def own_cpu_s() -> float:
    """CPU seconds of this process: the load generator's cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def node_pids(config: ClusterConfig) -> list[int]:
    """The pids of the cluster's running nodes (node/ops/control.py: a pid file is checked against /proc)."""
    return [pid for node in config.nodes if (pid := running_pid(config, node)) is not None]


def dir_bytes(path: Path) -> int:
    """Bytes of the files under `path`; a file LevelDB deletes while we walk (compaction) counts as 0."""
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size
        except FileNotFoundError:
            continue
    return total


_MEMORY_LINE = re.compile(r'^ecert_memory_bytes\{part="([a-z_]+)"\} ([0-9.e+]+)$', re.MULTILINE)


async def memory_parts(session: aiohttp.ClientSession, http_url: str) -> dict[str, int]:
    """A node's `ecert_memory_bytes` by part, from its /metrics ({} if it does not answer within 2 s)."""
    try:
        async with session.get(http_url + "/metrics", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return parse_memory_parts(text)


def parse_memory_parts(metrics_text: str) -> dict[str, int]:
    """`ecert_memory_bytes` by part from a /metrics page (Prometheus text format)."""
    return {part: int(float(value)) for part, value in _MEMORY_LINE.findall(metrics_text)}


def cluster_resources(config: ClusterConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in config.nodes:
        pid = running_pid(config, node)
        split = rss_split(pid) if pid else {}
        out[node.id] = {"rss_bytes": split.get("VmRSS"), "rss_anon_bytes": split.get("RssAnon"),
                        "rss_file_bytes": split.get("RssFile"),
                        "disk_bytes": dir_bytes(node.data_dir) if node.data_dir.exists() else 0}
    return out
