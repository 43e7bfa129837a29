"""`--mode soak`: steady signed load on a real cluster for `--duration` seconds, sampling every node's RSS and
on-disk size every `--sample-s` seconds. Snapshots (every `snapshot_entries` applied entries) and Raft log
compaction should keep both flat apart from the state itself, which grows with what the load writes.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from node.bench import ecert_side
from node.bench.loadgen import run_closed_loop
from node.bench.resources import cluster_resources, memory_parts

MB = 1_000_000


async def run_soak(root: Path, nodes: int, concurrency: int, duration_s: float, sample_s: float,
                   snapshot_entries: int, on_sample: Any = None) -> dict[str, Any]:
    (root / "ecert").mkdir()
    config_path = ecert_side.write_cluster_file(root / "ecert", nodes, snapshot_entries=snapshot_entries)
    cluster = ecert_side.EcertCluster(config_path)
    samples: list[dict[str, Any]] = []
    acked = 0

    def count(n: int) -> None:
        nonlocal acked
        acked = n

    try:
        config = cluster.up()
        urls = [n.http_url for n in config.nodes]
        roots = await ecert_side.prepare_roots(config, urls[0], concurrency)
        signer = ecert_side.bench_signer(config, "tier1")
        # Signed as they are sent: the soak is about the nodes' memory and disk, not the client's peak rate.
        workers = [ecert_side.transfer_worker(urls, ecert_side.transfer_chain(signer, roots[i]), i)
                   for i in range(concurrency)]
        started = time.monotonic()

        http = {n.id: n.http_url for n in config.nodes}

        async def sample_forever() -> None:
            async with aiohttp.ClientSession() as session:
                while True:
                    per_node = cluster_resources(config)
                    biggest = max(per_node, key=lambda nid: per_node[nid]["rss_bytes"] or 0)
                    rss = per_node[biggest]["rss_bytes"] or 0
                    anon = per_node[biggest]["rss_anon_bytes"] or 0
                    # The node with the largest RSS: its private (anon) and file-mapped parts (LevelDB reads its
                    # tables through mmap: page cache, reclaimable), and what it accounts for of the whole;
                    # "other_anon" is the rest of the private memory: the interpreter's own heap (Python objects,
                    # pymalloc arenas), code and stacks.
                    parts = await memory_parts(session, http[biggest])
                    parts_mb = {k: round(v / MB, 1) for k, v in sorted(parts.items())}
                    if parts:
                        parts_mb["other_anon"] = round((anon - sum(parts.values())) / MB, 1)
                    sample = {"t_s": round(time.monotonic() - started), "acked": acked,
                              "rss_mb_max": round(rss / MB, 1),
                              "rss_anon_mb": round(anon / MB, 1),
                              "rss_file_mb": round((per_node[biggest]["rss_file_bytes"] or 0) / MB, 1),
                              "disk_mb_max": round(max(v["disk_bytes"] for v in per_node.values()) / MB, 1),
                              "rss_parts_mb": parts_mb}
                    samples.append(sample)
                    if on_sample is not None:
                        on_sample(sample)
                    await asyncio.sleep(sample_s)

        sampler = asyncio.create_task(sample_forever())
        try:
            result = await run_closed_loop("ecert soak", workers, duration_s, on_progress=count)
        finally:
            sampler.cancel()
        samples.append({"t_s": round(time.monotonic() - started), "acked": result.ok,
                        **{k: v for k, v in samples[-1].items() if k not in ("t_s", "acked")}})
    finally:
        cluster.down()
    rss = [s["rss_mb_max"] for s in samples]
    anon = [s["rss_anon_mb"] for s in samples]
    disk = [s["disk_mb_max"] for s in samples]
    return {"mode": "soak", "duration_s": duration_s, "concurrency": concurrency, "nodes": nodes,
            "snapshot_entries": snapshot_entries, "acked": result.ok, "failed": result.failed,
            "failures": dict(result.failures.most_common(5)),
            "tps": round(result.tps, 1), "p50_ms": round(result.percentile_ms(50), 2),
            "p99_ms": round(result.percentile_ms(99), 2),
            "rss_mb_first": rss[0], "rss_mb_last": rss[-1], "rss_mb_max": max(rss),
            "rss_anon_mb_first": anon[0], "rss_anon_mb_last": anon[-1], "rss_anon_mb_max": max(anon),
            "disk_mb_first": disk[0], "disk_mb_last": disk[-1], "disk_mb_max": max(disk), "samples": samples}
