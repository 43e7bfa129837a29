"""monitoring/: the alerting rules and the Grafana dashboard only use metrics the node really exposes, and
promtool accepts (and unit-tests) the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.http.alarms import ALARM_NAMES


def exercised():
    """test_metrics.exercised, loaded by path (works whether or not tests/node is a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ecert_test_metrics", Path(__file__).with_name("test_metrics.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.exercised()


MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`); .ci should apt-get install it")


def exposed_names() -> set[str]:
    body, _ = exercised().render()
    return {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}


def referenced(text: str) -> set[str]:
    return set(re.findall(r"\becert_[a-z0-9_]+", text))


def test_alert_rules_use_exposed_metrics_only():
    text = (MONITORING / "alerts.yml").read_text()
    names = referenced(text)
    assert names, "no ecert_ metric in alerts.yml"
    assert names <= exposed_names(), names - exposed_names()


def test_every_node_alarm_has_an_alert_rule():
    text = (MONITORING / "alerts.yml").read_text()
    # The rule comments name the node alarm each alert mirrors; EcertNodeAlarm covers any other.
    missing = [a for a in ALARM_NAMES if f"`{a}`" not in text]
    assert missing == []


def test_grafana_dashboard_is_valid_and_uses_exposed_metrics():
    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dash["title"] == "ecert-chain" and dash["uid"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    names = set().union(*(referenced(e) for e in exprs))
    assert names <= exposed_names(), names - exposed_names()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]


@needs_promtool
def test_promtool_check_rules():
    proc = subprocess.run([PROMTOOL, "check", "rules", str(MONITORING / "alerts.yml")], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()


@needs_promtool
def test_promtool_rule_unit_tests():
    proc = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=MONITORING, capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
