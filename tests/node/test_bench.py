"""The pure parts of ./scripts/bench: percentiles, argument parsing, the raw driver's pieces (real LevelDB)."""

from __future__ import annotations

import pytest

from consensus.ready import Role
from node.bench.__main__ import SignedRound, median, parse_args, raw_settings, summarise_rounds
from node.bench.failover import FailoverReport, KillSample
from node.bench.loadgen import LoadResult
from node.bench.raw_node import Meter, RawDriver
from node.bench.resources import cpu_s, own_cpu_s, parse_memory_parts, process_cpu_s
from node.http.metrics import NodeMetrics

# -- loadgen percentiles (nearest rank) ---------------------------------------------------------------------


def test_percentile_nearest_rank() -> None:
    r = LoadResult("x", 2.0, ok=100, latencies_ms=[float(v) for v in range(100, 0, -1)])  # 100..1, unsorted
    assert r.percentile_ms(50) == 50.0
    assert r.percentile_ms(99) == 99.0
    assert r.percentile_ms(100) == 100.0
    assert r.percentile_ms(0) == 1.0
    assert r.tps == 50.0


def test_percentile_small_and_empty() -> None:
    assert LoadResult("x", 1.0).percentile_ms(99) == 0.0
    one = LoadResult("x", 1.0, ok=1, latencies_ms=[7.5])
    assert one.percentile_ms(50) == one.percentile_ms(99) == 7.5
    three = LoadResult("x", 1.0, ok=3, latencies_ms=[3.0, 1.0, 2.0])
    assert three.percentile_ms(50) == 2.0  # ceil(0.5 * 3) = rank 2
    assert three.percentile_ms(99) == 3.0
    assert LoadResult("x", 0.0, ok=5).tps == 0.0


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5


def load(name: str, ok: int, p50: float) -> LoadResult:
    return LoadResult(name, 1.0, ok=ok, latencies_ms=[p50] * 3)


def test_rounds_report_the_median_of_each_rounds_ratio_not_the_ratio_of_medians() -> None:
    """--repeat: rounds alternate which system runs first; each round's ratio compares two runs minutes apart
    at most, and the headline is the median of those ratios."""
    rounds = [SignedRound("etcd first", {1: load("e", 100, 4.0), 64: load("e", 700, 80.0)},
                          {1: load("t", 400, 2.0), 64: load("t", 2000, 30.0)}, {}),
              SignedRound("ecert first", {1: load("e", 120, 5.0), 64: load("e", 800, 70.0)},
                          {1: load("t", 300, 1.0), 64: load("t", 1000, 60.0)}, {}),
              SignedRound("etcd first", {1: load("e", 110, 6.0), 64: load("e", 600, 90.0)},
                          {1: load("t", 350, 3.0), 64: load("t", 1500, 40.0)}, {})]
    summary = summarise_rounds(rounds, [1, 64])
    top = summary["levels"][64]
    assert (top["tps"], top["etcd_tps"]) == (700.0, 1500.0)
    assert top["ratio"] == 0.4  # the per-round ratios are 0.35, 0.8, 0.4; 700/1500 would say 0.467
    assert summary["levels"][1]["p50_ratio"] == 2.0  # 4/2, 5/1, 6/3
    assert [r["order"] for r in summary["rounds"]] == ["etcd first", "ecert first", "etcd first"]
    assert summary["rounds"][1]["levels"][1]["ratio"] == 0.8
    # Without etcd (--skip-etcd) there is no ratio, and nothing breaks.
    alone = summarise_rounds([SignedRound("etcd first", {1: load("e", 100, 4.0)}, {}, {})], [1])
    assert alone["levels"][1]["ratio"] is None and alone["levels"][1]["etcd_tps"] is None


def test_cpu_per_operation_compares_what_each_system_costs() -> None:
    ours = LoadResult("e", 10.0, ok=7000, server_cpu_s=15.4, client_cpu_s=1.4)
    etcd = LoadResult("t", 10.0, ok=20000, server_cpu_s=9.0, client_cpu_s=4.0)
    one = SignedRound("etcd first", {64: ours}, {64: etcd}, {})
    assert ours.cpu_ms_per_op(ours.server_cpu_s) == pytest.approx(2.2)
    assert one.cpu_ratio(64) == pytest.approx(0.45 / 2.2)
    level = summarise_rounds([one], [64])["levels"][64]
    assert (level["cpu_ms_per_tx"], level["etcd_cpu_ms_per_put"], level["cpu_ratio"]) == (2.2, 0.45, 0.205)
    assert ours.summary()["server_cpu_ms_per_op"] == 2.2 and ours.summary()["client_cpu_ms_per_op"] == 0.2
    assert "server_cpu_ms_per_op" not in LoadResult("x", 1.0).summary()  # not measured: not reported


def test_process_cpu_time_is_read_from_proc() -> None:
    import os
    import time

    before = process_cpu_s(os.getpid())
    assert before is not None and before == pytest.approx(own_cpu_s(), abs=0.05)
    spin = time.process_time() + 0.05
    while time.process_time() < spin:
        pass
    assert cpu_s([os.getpid()]) >= before + 0.04
    assert process_cpu_s(2**22 + 1) is None and cpu_s([2**22 + 1]) == 0.0  # above pid_max: gone


def test_repeat_is_for_the_signed_mode_too() -> None:
    assert parse_args(["--repeat", "3"]).repeat == 3 and parse_args([]).repeat == 1


# -- argument parsing ---------------------------------------------------------------------------------------


def test_signed_mode_is_the_default() -> None:
    args = parse_args([])
    assert args.mode == "signed"
    assert args.concurrency_levels == [64]
    assert args.duration == 20.0
    assert parse_args(["--concurrency", "1,16,64"]).concurrency_levels == [1, 16, 64]


def test_raw_and_failover_options() -> None:
    args = parse_args(["--mode", "raw", "--duration", "3", "--repeat", "2", "--batch", "64", "--window", "128"])
    s = raw_settings(args)
    assert (args.mode, args.repeat, s.duration_s, s.batch, s.window) == ("raw", 2, 3.0, 64, 128)
    assert s.propose_many and not s.pso_journal
    stock = raw_settings(parse_args(["--mode", "raw", "--per-entry-propose", "--no-read-cache"]))
    assert not stock.propose_many and not stock.read_cache
    f = parse_args(["--mode", "failover", "--kills", "5", "--tick-ms", "15"])
    assert (f.kills, f.tick_ms, f.election_ticks) == (5, 15, None)
    assert parse_args(["--mode", "failover"]).kills == 50
    soak = parse_args(["--mode", "soak", "--duration", "600", "--sample-s", "30", "--snapshot-entries", "500"])
    assert (soak.mode, soak.duration, soak.sample_s, soak.snapshot_entries) == ("soak", 600, 30, 500)


@pytest.mark.parametrize("argv", [
    ["--mode", "fast"], ["--duration", "0"], ["--concurrency", "a,b"], ["--concurrency", "0"], ["--nodes", "0"],
    ["--kills", "0"], ["--batch", "10", "--window", "5"], ["--election-ticks", "1"], ["--repeat", "0"],
    ["--mode", "soak", "--sample-s", "0"], ["--mode", "soak", "--snapshot-entries", "0"],
])
def test_bad_arguments_exit(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


# -- failover summary ---------------------------------------------------------------------------------------


def test_failover_summary() -> None:
    rep = FailoverReport(tick_ms=50, election_ticks=10)
    for i, ms in enumerate([900.0, 700.0, None, 800.0]):
        rep.samples.append(KillSample(i, "a", "b" if ms else None, ms, 3.0))
    s = rep.summary()
    assert (s["kills"], s["recovered"], s["failed"]) == (4, 3, 1)
    assert (s["p50_ms"], s["p99_ms"], s["max_ms"], s["min_ms"]) == (800.0, 900.0, 900.0, 700.0)
    assert s["election_timeout_ms"] == [500, 1000]


# -- raw driver pieces --------------------------------------------------------------------------------------


def test_meter_counts_only_the_window() -> None:
    m = Meter(warmup_s=1.0, duration_s=2.0)
    m.on_turn(0.0, is_leader=False)
    assert not m.proposing
    m.on_turn(10.0, is_leader=True)
    m.applied = 500  # during warm-up: not counted
    m.on_turn(11.0, is_leader=True)
    m.applied, m.fsyncs = 2500, 4
    m.on_turn(12.0, is_leader=True)
    assert m.result is None and m.proposing
    m.on_turn(13.0, is_leader=True)
    assert m.result is not None and not m.proposing
    assert (m.result["entries"], m.result["entries_per_s"], m.result["entries_per_fsync"]) == (2000, 1000.0, 500.0)


def test_raw_driver_proposes_batches_within_its_window(tmp_path) -> None:
    spec = {"root": str(tmp_path), "chain_id": "t", "nodes": [{"id": "a", "port": 1, "seed": "00" * 32}],
            "election_ticks": 10, "max_inflight": 4, "read_cache": True, "propose_many": True, "tick_ms": 50,
            "payload": 8, "warmup_s": 0.0, "duration_s": 1.0, "batch": 5, "window": 12}
    sent: list[object] = []
    for propose_many, read_cache in ((True, True), (False, False)):
        root = tmp_path / str(propose_many)
        root.mkdir()
        driver = RawDriver({**spec, "root": str(root), "propose_many": propose_many, "read_cache": read_cache},
                           "a")
        try:
            core = driver.core
            core.campaign()  # a single voter elects itself
            while core.has_ready():
                driver.handle_ready(core.ready(), sent.append)
            assert core.role is Role.LEADER
            noop = core.last_index
            driver.propose()
            assert core.last_index == noop + 5  # one batch
            driver.propose()
            driver.propose()
            assert core.last_index == noop + 12  # the window caps what is proposed but not applied
            while core.has_ready():  # alone, the leader commits on its own fsync
                driver.handle_ready(core.ready(), sent.append)
            assert driver.meter.applied == 12 and driver.meter.fsyncs >= 1
            assert driver.storage.last_index() == noop + 12
            assert (len(driver.storage._cache) == noop + 12) is read_cache  # the storage's tail cache, or none
        finally:
            driver.storage.close()


def test_soak_reads_the_memory_parts_a_node_exports() -> None:
    metrics = NodeMetrics(process=False)
    metrics.set_memory({"state_root_cache": 81_234_567, "raft_leveldb": 4_200_000})
    metrics.set_db_size("raft", 1 << 20)
    parts = parse_memory_parts(metrics.render()[0].decode())
    assert parts == {"state_root_cache": 81_234_567, "raft_leveldb": 4_200_000}
    assert parse_memory_parts("") == {}
