"""The HTML report is self-contained and shows the verdict, the plots, the violations and the replay command;
the workload's amount splitting always conserves value."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from node.chaos.checker import check_run
from node.chaos.history import ReadRecord, history_from_json
from node.chaos.nemesis import schedule
from node.chaos.report import write_report
from node.chaos.runner import history_json, make_summary
from node.chaos.workload import _split_amount

from .synthetic import build


def render(tmp_path, hist, dumps):
    report = check_run(hist, dumps)
    summary = make_summary(hist, report, tmp_path)
    opts = SimpleNamespace(duration=20.0, seed=hist.seed, nodes=len(hist.nodes))
    path = write_report(tmp_path, hist, report, summary, opts, schedule(hist.seed, 20))
    return path.read_text(), summary


def test_clean_report(tmp_path) -> None:
    hist, dumps = build()
    page, summary = render(tmp_path, hist, dumps)
    assert summary == {"seed": 7, "acked": 5, "lost": 0, "violations": 0,
                       "faults": {"kill_leader": 1, "partition_halves": 1}, "report": str(tmp_path / "index.html")}
    assert "PASS" in page and page.count("<svg") == 3
    assert "./scripts/chaos --duration 20 --seed 7 --nodes 3" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_lists_each_violation_with_its_txs(tmp_path) -> None:
    hist, dumps = build()
    hist.reads.append(ReadRecord("c1", "tier1", "r", 2.7, 2.8, True, ("tier1", "issued")))
    dumps[0].txs[hist.txs[1].tx_id] = None
    page, summary = render(tmp_path, hist, dumps)
    assert summary["violations"] >= 2 and summary["lost"] == 1
    assert "FAIL" in page and "lost" in page and "linearizability" in page
    assert hist.txs[1].tx_id in page
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert {v["kind"] for v in saved["violations"]} >= {"lost", "linearizability"}


def test_history_json_round_trip() -> None:
    hist, dumps = build()
    doc = json.loads(json.dumps(history_json(hist, dumps), default=str))
    hist2, dumps2 = history_from_json(doc)
    assert hist2 == hist and dumps2 == dumps


@given(st.integers(2, 10**15), st.integers(1, 3), st.integers(0, 1000))
def test_split_amount_conserves_value(total: int, parts: int, seed: int) -> None:
    parts = min(parts, total)
    out = _split_amount(random.Random(seed), total, parts)
    assert sum(out) == total and len(out) == parts and all(a > 0 for a in out)
