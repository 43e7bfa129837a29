"""The HTML report of a chaos run: one self-contained file (inline CSS and SVG, no scripts, no network).

Plots in the manner of Jepsen's perf graphs: throughput and latency over time with the fault intervals shaded,
the nemesis timeline with every node's role over time, then the verdict, each violation with its txs, the
figures, and the seed with the command that replays the schedule.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from node.chaos.checker import CheckReport
from node.chaos.history import COMMITTED, REJECTED, UNKNOWN, FaultEvent, History

W, PAD_L, PAD_R, PAD_T, PAD_B = 960, 118, 16, 14, 28
COLORS = {COMMITTED: "#2a9d4b", REJECTED: "#e09b1a", UNKNOWN: "#d1343a"}
FAULT_COLORS = {
    "kill": "#f4b6b6", "pause": "#f7d9a8", "restart": "#d8c8f0", "partition": "#b9d3f0", "delay": "#c9e7d2",
    "loss": "#e6e0a8", "slow_disk": "#e8c8b0", "clock_skew": "#c8e0e8",
}
ROLE_COLORS = {"leader": "#1f5fbf", "follower": "#8fc18f", "candidate": "#e0a030", "learner": "#bbbbbb"}


def esc(x: Any) -> str:
    return html.escape(str(x))


def fault_color(kind: str) -> str:
    return next((c for k, c in FAULT_COLORS.items() if kind.startswith(k)), "#dddddd")


class Frame:
    """Maps data to an SVG box: x is time in seconds."""

    def __init__(self, t_max: float, height: int, y_min: float, y_max: float, log: bool = False) -> None:
        self.t_max = max(t_max, 1.0)
        self.h = height
        self.log = log
        self.y_min, self.y_max = (math.log10(y_min), math.log10(y_max)) if log else (y_min, y_max)
        if self.y_max <= self.y_min:
            self.y_max = self.y_min + 1

    def x(self, t: float) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * max(0.0, min(t, self.t_max)) / self.t_max

    def y(self, v: float) -> float:
        v = math.log10(max(v, 10**self.y_min)) if self.log else v
        frac = (v - self.y_min) / (self.y_max - self.y_min)
        return PAD_T + (self.h - PAD_T - PAD_B) * (1 - max(0.0, min(frac, 1.0)))

    def shade(self, faults: list[FaultEvent]) -> str:
        out = []
        for f in faults:
            x0, x1 = self.x(f.start), self.x(f.end if f.end is not None else self.t_max)
            out.append(f'<rect x="{x0:.1f}" y="{PAD_T}" width="{max(1.0, x1 - x0):.1f}" '
                       f'height="{self.h - PAD_T - PAD_B}" fill="{fault_color(f.kind)}" opacity="0.55">'
                       f"<title>{esc(f.kind)} {esc(','.join(f.targets))} {f.start:.1f}-{(f.end or 0):.1f}s"
                       "</title></rect>")
        return "".join(out)

    def axes(self, y_label: str, ticks: list[float]) -> str:
        out = [f'<line x1="{PAD_L}" y1="{self.h - PAD_B}" x2="{W - PAD_R}" y2="{self.h - PAD_B}" stroke="#555"/>',
               f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{self.h - PAD_B}" stroke="#555"/>']
        step = _nice_step(self.t_max)
        t = 0.0
        while t <= self.t_max + 1e-9:
            x = self.x(t)
            out.append(f'<line x1="{x:.1f}" y1="{self.h - PAD_B}" x2="{x:.1f}" y2="{self.h - PAD_B + 4}" '
                       f'stroke="#555"/><text x="{x:.1f}" y="{self.h - 8}" class="tick" '
                       f'text-anchor="middle">{t:g}s</text>')
            t += step
        for v in ticks:
            y = self.y(v)
            out.append(f'<line x1="{PAD_L - 4}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
                       f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>')
        out.append(f'<text x="70" y="{self.h / 2:.0f}" class="axis" transform="rotate(-90 70 {self.h / 2:.0f})" '
                   f'text-anchor="middle">{esc(y_label)}</text>')
        return "".join(out)


def _nice_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= 15:
            return float(step)
    return 7200.0


def svg(height: int, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="100%" '
            f'preserveAspectRatio="xMinYMin meet">{body}</svg>')


def throughput_svg(history: History) -> str:
    t_max = max(history.duration, 1.0)
    buckets = math.ceil(t_max)
    counts = {k: [0] * (buckets + 1) for k in COLORS}
    for r in history.txs:
        t = r.complete if r.outcome != UNKNOWN else r.invoke
        if 0 <= t <= t_max:
            counts[r.outcome][int(t)] += 1
    y_max = max([sum(counts[k][i] for k in counts) for i in range(buckets + 1)] + [1])
    f = Frame(t_max, 220, 0, y_max * 1.1)
    bars = []
    bw = (W - PAD_L - PAD_R) / (buckets + 1) * 0.9
    for i in range(buckets + 1):
        base = 0
        for k in (COMMITTED, REJECTED, UNKNOWN):
            c = counts[k][i]
            if c:
                y0, y1 = f.y(base), f.y(base + c)
                bars.append(f'<rect x="{f.x(i):.1f}" y="{y1:.1f}" width="{bw:.1f}" height="{y0 - y1:.1f}" '
                            f'fill="{COLORS[k]}"><title>{i}s: {c} {k}</title></rect>')
                base += c
    ticks = [float(round(y_max * q)) for q in (0, 0.25, 0.5, 0.75, 1.0)]
    return svg(220, f.shade(history.faults) + f.axes("txs / s", sorted(set(ticks))) + "".join(bars))


def latency_svg(history: History) -> str:
    t_max = max(history.duration, 1.0)
    lats = [(r.invoke, 1000 * (r.complete - r.invoke), r.outcome) for r in history.txs
            if r.outcome != UNKNOWN and not math.isinf(r.complete) and r.invoke >= 0]
    y_max = max([lat for _, lat, _ in lats] + [100.0]) * 1.3
    f = Frame(t_max, 260, 1.0, y_max, log=True)
    dots = []
    for t, lat, outcome in lats:
        dots.append(f'<circle cx="{f.x(t):.1f}" cy="{f.y(lat):.1f}" r="2" fill="{COLORS[outcome]}" '
                    f'opacity="0.7"/>')
    for r in history.txs:
        if r.outcome == UNKNOWN and r.invoke >= 0:
            dots.append(f'<path d="M{f.x(r.invoke) - 3:.1f},{PAD_T + 2} l6,0 l-3,6 z" fill="{COLORS[UNKNOWN]}">'
                        f"<title>unknown: {esc(r.kind)} {esc(r.tx_id[:12])} ({esc(r.error)})</title></path>")
    ticks = [float(v) for v in (1, 10, 100, 1000, 10000, 100000) if v <= y_max]
    return svg(260, f.shade(history.faults) + f.axes("latency ms (log)", ticks) + "".join(dots))


def timeline_svg(history: History) -> str:
    """One row per node (its role over time, grey when it did not answer), then the faults."""
    t_max = max(history.duration, 1.0)
    row = 18
    nodes = history.nodes
    kinds = sorted({f.kind for f in history.faults})
    height = PAD_T + row * (len(nodes) + len(kinds)) + PAD_B + 6
    f = Frame(t_max, height, 0, 1)
    out = [f.axes("", [])]
    for i, n in enumerate(nodes):
        y = PAD_T + i * row
        out.append(f'<text x="{PAD_L - 6}" y="{y + 13}" class="tick" text-anchor="end">{esc(n)}</text>')
        for a, b in zip(history.samples, history.samples[1:], strict=False):
            if a.t > t_max:
                break
            st = a.statuses.get(n)
            color = ROLE_COLORS.get(str(st.get("role")), "#999") if st else "#d9d9d9"
            out.append(f'<rect x="{f.x(a.t):.1f}" y="{y + 2}" width="{max(0.5, f.x(b.t) - f.x(a.t)):.1f}" '
                       f'height="{row - 4}" fill="{color}"/>')
    for j, k in enumerate(kinds):
        y = PAD_T + (len(nodes) + j) * row
        out.append(f'<text x="{PAD_L - 6}" y="{y + 13}" class="tick" text-anchor="end">{esc(k)}</text>')
        for ev in history.faults:
            if ev.kind != k:
                continue
            x0, x1 = f.x(ev.start), f.x(ev.end if ev.end is not None else t_max)
            out.append(f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(1.0, x1 - x0):.1f}" height="{row - 4}" '
                       f'fill="{fault_color(k)}" stroke="#888"><title>{esc(k)}: {esc(",".join(ev.targets))} '
                       f"{esc(ev.detail)}</title></rect>"
                       f'<text x="{x0 + 3:.1f}" y="{y + 13}" class="lbl">{esc(",".join(ev.targets))}</text>')
    return svg(height, "".join(out))


def table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(d: dict[str, Any]) -> str:
    return table([[esc(k), esc(json.dumps(v) if isinstance(v, dict | list) else v)] for k, v in d.items()],
                 ["figure", "value"])


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.ok{color:#1d7a36;font-weight:600} .bad{color:#b3202a;font-weight:600}
table{border-collapse:collapse;margin:8px 0;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top} th{background:#f4f4f4} code,pre{background:#f4f4f4;padding:2px 5px}
.tick{font-size:10px;fill:#555} .axis{font-size:11px;fill:#333} .lbl{font-size:10px;fill:#222}
.legend span{display:inline-block;margin-right:14px} .sw{display:inline-block;width:11px;height:11px;
margin-right:4px;vertical-align:-1px}
"""


def legend(items: dict[str, str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="sw" style="background:{c}"></i>{esc(k)}</span>' for k, c in items.items()) + "</div>"


def render(history: History, report: CheckReport, summary: dict[str, Any], replay: str,
           schedule_rows: list[list[Any]]) -> str:
    ok = not report.violations
    verdict = ('<span class="ok">PASS: no violations</span>' if ok
               else f'<span class="bad">FAIL: {len(report.violations)} violation(s)</span>')
    by_id = {r.tx_id: r for r in history.txs}

    def tx_cell(tx_id: str) -> str:
        r = by_id.get(tx_id)
        if r is None:
            return f"<code>{esc(tx_id)}</code>"
        done = "never" if math.isinf(r.complete) else f"{r.complete:.2f}s"
        return (f"<code>{esc(tx_id)}</code><br>{esc(r.kind)} by {esc(r.client)}: {esc(r.outcome)} "
                f"(sent {r.invoke:.2f}s, answered {done}, height {esc(r.height)}, via {esc(','.join(r.nodes))})")

    viol_rows = [[esc(v.kind), esc(v.message), "<br>".join(tx_cell(t) for t in v.txs),
                  esc(", ".join(v.nodes)), esc(", ".join(v.certs))] for v in report.violations]
    fault_rows = [[f"{f.start:.1f}", f"{(f.end or 0):.1f}", esc(f.kind), esc(", ".join(f.targets)), esc(f.detail)]
                  for f in history.faults]
    stats = dict(report.stats)
    avail = stats.pop("availability", {})
    lin = stats.pop("linearizability", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>chaos seed {esc(history.seed)}</title><style>{CSS}</style></head><body>",
        f"<h1>Chaos run, seed {esc(history.seed)}: {verdict}</h1>",
        f"<p>{len(history.nodes)} nodes ({esc(', '.join(history.nodes))}), {history.duration:.1f} s of workload, "
        f"{summary['acked']} acknowledged txs, {summary['lost']} lost, {len(history.faults)} faults.</p>",
        f"<p>Replay this schedule: <code>{esc(replay)}</code></p>",
        f"<pre>{esc(json.dumps(summary))}</pre>",
        "<h2>Throughput</h2>", legend({**COLORS, **{f"fault: {k}": c for k, c in FAULT_COLORS.items()}}),
        throughput_svg(history),
        "<h2>Latency (by invocation time)</h2><p>Dots: txs with a definite answer; red marks at the top: txs "
        "whose outcome stayed unknown.</p>", latency_svg(history),
        "<h2>Nemesis timeline</h2>", legend({**ROLE_COLORS, "no answer": "#d9d9d9"}), timeline_svg(history),
        "<h2>Violations</h2>",
        table(viol_rows, ["kind", "what", "txs", "nodes", "certificates"]) if viol_rows else "<p>None.</p>",
        "<h2>Availability</h2>", kv_table(avail),
        "<h2>Linearizability (register per certificate: holder, status)</h2>", kv_table(lin),
        "<h2>Figures</h2>", kv_table(stats),
        "<h2>Faults injected</h2>", table(fault_rows, ["start s", "healed s", "kind", "targets", "detail"]),
        "<h2>Schedule (from the seed)</h2>", table(schedule_rows, ["at s", "for s", "kind"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(report_dir: Path, history: History, report: CheckReport, summary: dict[str, Any], opts: Any,
                 steps: list[Any]) -> Path:
    replay = f"./scripts/chaos --duration {opts.duration:g} --seed {opts.seed} --nodes {opts.nodes}"
    rows = [[f"{s.at:.2f}", f"{s.duration:.2f}", esc(s.kind)] for s in steps]
    report_dir.mkdir(parents=True, exist_ok=True)
    path = report_dir / "index.html"
    path.write_text(render(history, report, summary, replay, rows), encoding="utf-8")
    (report_dir / "summary.json").write_text(json.dumps(
        {**summary, "stats": report.stats, "violations": [v.to_json() for v in report.violations]},
        default=str, indent=1))
    return path
