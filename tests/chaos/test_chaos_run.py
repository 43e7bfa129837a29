"""A real chaos run (slow, in the default suite) and its record doctored three ways; Ctrl-C / SIGTERM stop
every process a run started. Long soaks: `-m soak`."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.chaos.checker import check_run, tx_effects
from node.chaos.history import COMMITTED, ReadRecord, history_from_json

ROOT = Path(__file__).resolve().parents[2]
SHORT_RUN_S = 35


def die_with_parent() -> None:
    # If pytest dies, the chaos runner dies too (and its nodes with it: they carry the same flag).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def chaos(args: list[str], timeout: float) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "node.chaos", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=die_with_parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), proc.stderr


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    report = tmp_path_factory.mktemp("chaos") / "report"
    rc, summary, stderr = chaos(["--duration", str(SHORT_RUN_S), "--seed", "11", "--report", str(report)],
                                timeout=SHORT_RUN_S + 150)
    assert rc == 0, f"chaos run failed (rc {rc}): {summary}\n{stderr[-3000:]}"
    return summary, report


@pytest.mark.slow
def test_short_chaos_run_loses_nothing(short_run: tuple[dict, Path]) -> None:
    summary, report = short_run
    assert summary["seed"] == 11 and summary["lost"] == 0 and summary["violations"] == 0
    assert summary["acked"] > 100
    assert len(summary["faults"]) >= 5, summary["faults"]
    html = (report / "index.html").read_text()
    assert "PASS" in html and "<svg" in html and "--seed 11" in html
    stats = json.loads((report / "summary.json").read_text())["stats"]
    assert stats["linearizability"]["reads"] > 20 and stats["linearizability"]["violations"] == 0
    assert stats["converged"] is True


def load(report: Path):
    return history_from_json(json.loads((report / "history.json").read_text()))


@pytest.mark.slow
def test_recorded_run_rechecks_clean(short_run: tuple[dict, Path]) -> None:
    history, dumps = load(short_run[1])
    assert check_run(history, dumps).violations == []


@pytest.mark.slow
def test_planted_lost_tx_in_a_copy_of_a_real_run(short_run: tuple[dict, Path]) -> None:
    history, dumps = load(short_run[1])
    acked = [r for r in history.txs if r.outcome == COMMITTED and r.kind == "ecert.transfer"]
    victim, node = acked[len(acked) // 2], dumps[3]
    node.txs[victim.tx_id] = {"tx_id": victim.tx_id, "status": "unknown"}
    node.blocks[victim.height]["tx_ids"].remove(victim.tx_id)
    report = check_run(history, dumps)
    lost = [v for v in report.violations if v.kind == "lost"]
    assert [v.txs for v in lost] == [[victim.tx_id]] and lost[0].nodes == [node.node_id]


@pytest.mark.slow
def test_planted_state_root_in_a_copy_of_a_real_run(short_run: tuple[dict, Path]) -> None:
    history, dumps = load(short_run[1])
    dumps[1].status = {**dumps[1].status, "state_root": "00" * 32}
    report = check_run(history, dumps)
    assert [v.kind for v in report.violations] == ["state_root_mismatch"]
    assert report.violations[0].nodes == [dumps[1].node_id]


@pytest.mark.slow
def test_planted_stale_read_in_a_copy_of_a_real_run(short_run: tuple[dict, Path]) -> None:
    history, dumps = load(short_run[1])
    # A certificate written twice by acknowledged txs: after the second ack, read the first value.
    writes: dict[str, list] = {}
    for rec in history.txs:
        if rec.outcome == COMMITTED:
            for cert_id, value in tx_effects(rec, rec.result):
                writes.setdefault(cert_id, []).append((rec, value))
    cert_id, ws = next((c, ws) for c, ws in writes.items() if len(ws) >= 2 and ws[0][1] != ws[-1][1])
    last = max(w[0].complete for w in ws)
    stale = copy.deepcopy(ws[0][1])
    history.reads.append(ReadRecord(cert_id, history.nodes[0], "planted", last + 0.01, last + 0.02, True, stale))
    report = check_run(history, dumps)
    assert [v.kind for v in report.violations] == ["linearizability"]
    assert report.violations[0].certs == [cert_id]


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(line.startswith("State:") and "Z" in line for line in state.splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_stops_every_process_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "node.chaos", "--quiet", "--duration", "120", "--seed", "3",
                             "--workdir", str(tmp_path), "--report", str(tmp_path / "report")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=die_with_parent)
    pids: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 5:
            for f in tmp_path.glob("cluster/data/*/node.pid"):
                with contextlib.suppress(ValueError):
                    pids.add(int(f.read_text().strip()))
            time.sleep(0.2)
        assert len(pids) == 5, "the cluster did not start"
        time.sleep(2)  # into the chaos phase: workload running, faults being injected
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1])["interrupted"] is True
        time.sleep(0.5)
        assert [p for p in pids if not pid_gone(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in pids:
            if not pid_gone(p):
                os.kill(p, signal.SIGKILL)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_soak(tmp_path: Path, seed: int) -> None:
    duration = int(os.environ.get("CHAOS_SOAK_S", "600"))
    rc, summary, stderr = chaos(["--duration", str(duration), "--seed", str(seed), "--report",
                                 str(tmp_path / "report")], timeout=duration + 600)
    assert rc == 0 and summary["lost"] == 0 and summary["violations"] == 0, (summary, stderr[-3000:])
