"""Process control for a local cluster: what ./scripts/cluster and ./scripts/run drive.

    python -m node.ops.control up|down|status [--config FILE]
    python -m node.ops.control start|stop|kill|pause|resume NODE_ID [--config FILE]

Every node is one detached OS process (`python -m node --config FILE --id ID`, its own session, so it outlives the
script that started it). Its pid is kept in <data_dir>/node.pid, its stdout/stderr (crash traces) go to
<data_dir>/node.out; the node itself writes its JSON-lines log to <data_dir>/node.log.

A pid file alone is never trusted: a pid is "ours" only while /proc says that process runs `-m node` with this
cluster file and this node id (pids are reused) and is not a zombie.

A detached node's exit status reaches no parent: a node that stopped on a broken invariant (exit 70) leaves
<data_dir>/node.exit (node/exit_status.py), and `status` shows it as "stopped (exit 70)", with the reason
("stopped: invariant violation (exit 70): ...") below the table.

Human output (progress, tables) goes to stderr; the last line on stdout is one JSON summary (CONTRACT §5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from node.config import ClusterConfig, ClusterConfigError, NodeSpec, load_config
from node.exit_status import read_exit_record
from node.ops.localnet import OUT_FILE, start_node

PID_FILE = "node.pid"
LOG_FILE = "node.log"

stop_timeout_s_default = 10.0
ready_timeout_s_default = 30.0
status_timeout_s = 1.0
poll_interval_s = 0.1

# Off a terminal (logs, CI) rich would wrap tables at 80 columns; give them room instead.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)


class ControlError(Exception):
    """A cluster file or a process did not do what the command needs; the message says what."""


def pid_file(node: NodeSpec) -> Path:
    return node.data_dir / PID_FILE


def out_file(node: NodeSpec) -> Path:
    return node.data_dir / OUT_FILE


def log_file(node: NodeSpec) -> Path:
    return node.data_dir / LOG_FILE


def quorum(cluster: ClusterConfig) -> int:
    return len(cluster.voter_ids) // 2 + 1


# --- processes -----------------------------------------------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat (R, S, T, Z, ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"
    # The command name sits in parentheses and may itself contain spaces or parentheses.
    return stat[stat.rfind(")") + 2 :].split(" ", 1)[0]


def _is_our_node(pid: int, cluster: ClusterConfig, node: NodeSpec) -> bool:
    state = _proc_state(pid)
    if state is None or state in ("Z", "X"):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in argv]
    config = _arg_after(args, "--config")
    if "node" not in args or _arg_after(args, "--id") != node.id or config is None:
        return False
    # The node may have been started by hand with a relative --config: resolve it from the process's cwd.
    config_path = Path(config)
    if not config_path.is_absolute():
        try:
            config_path = Path(os.readlink(f"/proc/{pid}/cwd")) / config_path
        except OSError:
            return False
    return config_path.resolve() == cluster.path.resolve()


def _arg_after(args: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(args[:-1]):
        if a == flag:
            return args[i + 1]
    return None


def read_pid(node: NodeSpec) -> int | None:
    try:
        text = pid_file(node).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(cluster: ClusterConfig, node: NodeSpec) -> int | None:
    """The pid of this node's live process, or None. A stale pid file is left for the caller to remove."""
    pid = read_pid(node)
    if pid is None or not _is_our_node(pid, cluster, node):
        return None
    return pid


def is_paused(pid: int) -> bool:
    return _proc_state(pid) in ("T", "t")


def _write_pid_file(node: NodeSpec, pid: int) -> None:
    tmp = pid_file(node).with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file(node))


def _remove_pid_file(node: NodeSpec) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_file(node).unlink()


def spawn_node(cluster: ClusterConfig, node: NodeSpec, extra_args: Sequence[str] = ()) -> int:
    """Start the node process detached (own session); its output goes to node.out. Returns its pid."""
    proc = start_node(cluster.path, node.id, node.data_dir, cwd=cluster.path.parent, extra_args=extra_args,
                      outlive_parent=True)
    _write_pid_file(node, proc.pid)
    # The node outlives us; keep Popen from warning that it is "still running" when we exit.
    proc.returncode = 0
    return proc.pid


def wait_gone(cluster: ClusterConfig, node: NodeSpec, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_our_node(pid, cluster, node):
            return True
        time.sleep(poll_interval_s)
    return not _is_our_node(pid, cluster, node)


def stop_node(cluster: ClusterConfig, node: NodeSpec, timeout_s: float = stop_timeout_s_default) -> str:
    """SIGTERM (the node drains and flushes), then SIGKILL to its process group after timeout_s.

    Returns "stopped", "killed" or "not_running".
    """
    pid = running_pid(cluster, node)
    if pid is None:
        _remove_pid_file(node)
        return "not_running"
    terminate(pid)
    return finish_stop(cluster, node, pid, timeout_s)


def terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        # A paused (SIGSTOPped) process only acts on the SIGTERM once continued.
        os.kill(pid, signal.SIGCONT)


def finish_stop(cluster: ClusterConfig, node: NodeSpec, pid: int, timeout_s: float) -> str:
    """Wait for a SIGTERMed node to exit; SIGKILL it at the deadline. Returns "stopped" or "killed"."""
    if wait_gone(cluster, node, pid, timeout_s):
        _remove_pid_file(node)
        return "stopped"
    kill_node_pid(cluster, node, pid)
    return "killed"


def sigkill_group(pid: int) -> None:
    """SIGKILL a node's process group (it leads its own session, so the group is its own) and the process."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def kill_node_pid(cluster: ClusterConfig, node: NodeSpec, pid: int) -> None:
    sigkill_group(pid)
    if not wait_gone(cluster, node, pid, 5.0):
        raise ControlError(f"{node.id}: pid {pid} survived SIGKILL")
    _remove_pid_file(node)


# --- the node's HTTP API -------------------------------------------------------------------------------------------


def https_context(node: NodeSpec) -> ssl.SSLContext | None:
    """For an HTTPS node: verify it with its https_ca (else the system store), as the clients do
    (node/client/api.py HttpsTrust; ops may not import the clients)."""
    if node.https_cert is None:
        return None
    return ssl.create_default_context(cafile=str(node.https_ca) if node.https_ca is not None else None)


def fetch_status(node: NodeSpec, timeout_s: float = status_timeout_s) -> dict[str, Any] | None:
    """GET /v1/status, or None if the node does not answer (down, paused, still starting; an HTTPS node whose
    certificate its https_ca does not verify)."""
    try:
        with urllib.request.urlopen(f"{node.http_url}/v1/status", timeout=timeout_s,
                                    context=https_context(node)) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def fetch_statuses(nodes: Sequence[NodeSpec]) -> dict[str, dict[str, Any] | None]:
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return dict(zip([n.id for n in nodes], pool.map(fetch_status, nodes), strict=True))


def agreed_leader(cluster: ClusterConfig, statuses: dict[str, dict[str, Any] | None]) -> str | None:
    """The leader a quorum of nodes agrees on, provided that node itself says it leads; else None."""
    votes: dict[str, int] = {}
    for st in statuses.values():
        if st and st.get("leader_id"):
            votes[st["leader_id"]] = votes.get(st["leader_id"], 0) + 1
    for leader, count in votes.items():
        own = statuses.get(leader)
        if count >= quorum(cluster) and own is not None and own.get("role") == "leader":
            return leader
    return None


def wait_until(check: Callable[[], Any], timeout_s: float) -> Any:
    """Poll check() until it returns something truthy; return that, or None at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(poll_interval_s * 2)


def wait_ready(cluster: ClusterConfig, node: NodeSpec, pid: int, timeout_s: float) -> None:
    """Wait until the node answers /v1/status; fail early (with its last output) if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fetch_status(node, timeout_s=0.5) is not None:
            return
        # We just spawned `pid`, so only its death matters here: right after fork its cmdline is still ours,
        # and an identity check (_is_our_node) would take the starting node for a stranger.
        if _proc_state(pid) in (None, "Z", "X"):
            _remove_pid_file(node)
            raise ControlError(f"{node.id}: the process exited during start-up\n{tail(out_file(node))}")
        time.sleep(poll_interval_s)
    raise ControlError(f"{node.id}: no answer on {node.http_url}/v1/status after {timeout_s:.0f}s\n{tail(out_file(node))}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(f"  | {line}" for line in text[-lines:])


# --- commands ------------------------------------------------------------------------------------------------------


def cmd_up(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    started, already = [], []
    pids: dict[str, int] = {}
    extra = ["--fault-injection"] if args.fault_injection else []
    for node in cluster.nodes:
        pid = running_pid(cluster, node)
        if pid is not None:
            already.append(node.id)
            pids[node.id] = pid
            console.print(f"  {node.id:<10} already running (pid {pid})")
            continue
        pid = spawn_node(cluster, node, extra)
        started.append(node.id)
        pids[node.id] = pid
        console.print(f"  {node.id:<10} started (pid {pid}) http {node.http_url}  log {_rel(log_file(node))}")
    errors: list[str] = []
    with console.status("waiting for the nodes' HTTP APIs ..."):
        for node in cluster.nodes:
            try:
                wait_ready(cluster, node, pids[node.id], args.timeout)
            except ControlError as e:
                errors.append(str(e))
    for err in errors:
        console.print(f"[red]error:[/red] {err}")
    leader = None
    if not errors and not args.no_wait_leader:
        with console.status("waiting for a leader ..."):
            leader = wait_until(lambda: agreed_leader(cluster, fetch_statuses(cluster.nodes)), args.timeout)
        if leader is None:
            errors.append(f"no leader elected within {args.timeout:.0f}s")
            console.print(f"[red]error:[/red] no leader elected within {args.timeout:.0f}s")
        else:
            console.print(_status_table(cluster, status_rows(cluster, fetch_statuses(cluster.nodes)), leader))
    summary = {
        "command": "up",
        "config": str(cluster.path),
        "started": started,
        "already_running": already,
        "leader": leader,
        "nodes": {n.id: {"pid": pids[n.id], "http": n.http_url} for n in cluster.nodes},
        "errors": errors,
    }
    return (1 if errors else 0), summary


def cmd_down(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    outcome: dict[str, list[str]] = {"stopped": [], "killed": [], "not_running": []}
    # SIGTERM every node first so they drain in parallel, then wait for each.
    pids = {n.id: running_pid(cluster, n) for n in cluster.nodes}
    for pid in pids.values():
        if pid is not None:
            terminate(pid)
    with console.status("stopping ..."):
        for node in cluster.nodes:
            pid = pids[node.id]
            if pid is None:
                _remove_pid_file(node)
                result = "not_running"
            else:
                result = finish_stop(cluster, node, pid, args.timeout)
            outcome[result].append(node.id)
            console.print(f"  {node.id:<10} {result.replace('_', ' ')}")
    return 0, {"command": "down", "config": str(cluster.path), **outcome}


LIVE_STATES = ("running", "paused", "no_answer")


def status_rows(cluster: ClusterConfig, statuses: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One row per node: its process state (running, paused, no_answer; or, with no process, stopped - it
    left an exit record, see node/exit_status.py - or down) and its /v1/status fields."""
    rows = []
    for node in cluster.nodes:
        pid = running_pid(cluster, node)
        st = statuses[node.id]
        exit_record = read_exit_record(node.data_dir) if pid is None else None
        if pid is None:
            state = "stopped" if exit_record is not None else "down"
        elif is_paused(pid):
            state = "paused"
        elif st is None:
            state = "no_answer"
        else:
            state = "running"
        row: dict[str, Any] = {"id": node.id, "org": node.org, "http": node.http_url, "pid": pid, "state": state}
        if exit_record is not None:
            row["exit"] = {k: exit_record.get(k) for k in ("status", "reason", "detail", "ts_ms")}
        if st is not None:
            for key in ("role", "term", "leader_id", "commit_index", "applied_index", "height", "block_hash",
                        "state_root"):
                row[key] = st.get(key)
        rows.append(row)
    return rows


def cmd_status(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    statuses = fetch_statuses(cluster.nodes)
    rows = status_rows(cluster, statuses)
    leader = agreed_leader(cluster, statuses)
    answered = [r for r in rows if "height" in r]
    heads = {(r["height"], r["block_hash"], r["state_root"]) for r in answered}
    console.print(_status_table(cluster, rows, leader))
    for r in rows:
        if r.get("exit"):
            node = cluster.node(r["id"])
            console.print(f"  {r['id']}: {escape(state_text(r))}: {escape(str(r['exit'].get('detail') or ''))}"
                          f"  (log {_rel(log_file(node))}, output {_rel(out_file(node))})", soft_wrap=True)
    summary = {
        "command": "status",
        "config": str(cluster.path),
        "leader": leader,
        "running": sum(r["state"] in LIVE_STATES for r in rows),
        "converged": len(heads) == 1 and len(answered) == len(rows),
        "nodes": rows,
    }
    return 0, summary


def state_text(row: dict[str, Any], *, short: bool = False) -> str:
    """A node's state for people: "running", "no answer", "stopped: invariant violation (exit 70)"; `short`
    (the table's column) leaves the reason out: "stopped (exit 70)"."""
    text = str(row["state"]).replace("_", " ")
    exit_record = row.get("exit")
    if row["state"] == "stopped" and exit_record is not None:
        reason = "" if short else f": {str(exit_record['reason']).replace('_', ' ')}"
        text += f"{reason} (exit {exit_record['status']})"
    return text


def _short(h: Any) -> str:
    return f"{h[:10]}…" if isinstance(h, str) and len(h) > 10 else (h or "")


def _status_table(cluster: ClusterConfig, rows: Iterable[dict[str, Any]], leader: str | None) -> Table:
    table = Table(title=f"{cluster.chain_id} — {_rel(cluster.path)}", title_justify="left")
    numeric = ("pid", "term", "commit", "applied", "height")
    for col in ("node", "pid", "state", "role", "term", "leader", "commit", "applied", "height", "block hash",
                "state root", "http"):
        table.add_column(col, justify="right" if col in numeric else "left", no_wrap=True)
    colors = {"running": "green", "paused": "yellow", "no_answer": "yellow", "down": "red", "stopped": "bold red"}
    for r in rows:
        role = r.get("role") or ""
        table.add_row(
            f"[bold]{r['id']}[/bold]" if r["id"] == leader else r["id"],
            str(r["pid"] or ""),
            f"[{colors[r['state']]}]{escape(state_text(r, short=True))}[/]",
            f"[bold cyan]{role}[/]" if role == "leader" else role,
            str(r.get("term", "")),
            r.get("leader_id") or "",
            str(r.get("commit_index", "")),
            str(r.get("applied_index", "")),
            str(r.get("height", "")),
            _short(r.get("block_hash")),
            _short(r.get("state_root")),
            r["http"].removeprefix("http://"),
        )
    return table


def cmd_start(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    node = cluster.node(args.node_id)
    pid = running_pid(cluster, node)
    if pid is not None:
        console.print(f"{node.id} is already running (pid {pid})")
        return 0, {"command": "start", "node": node.id, "pid": pid, "result": "already_running"}
    pid = spawn_node(cluster, node, ["--fault-injection"] if args.fault_injection else [])
    console.print(f"{node.id} started (pid {pid}), waiting for {node.http_url} ...")
    wait_ready(cluster, node, pid, args.timeout)
    return 0, {"command": "start", "node": node.id, "pid": pid, "result": "started", "http": node.http_url}


def cmd_stop(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    node = cluster.node(args.node_id)
    pid = running_pid(cluster, node)
    result = stop_node(cluster, node, args.timeout)
    console.print(f"{node.id}: {result.replace('_', ' ')}")
    return 0, {"command": "stop", "node": node.id, "pid": pid, "result": result}


def cmd_kill(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    node = cluster.node(args.node_id)
    pid = running_pid(cluster, node)
    if pid is None:
        _remove_pid_file(node)
        console.print(f"{node.id}: not running")
        return 0, {"command": "kill", "node": node.id, "pid": None, "result": "not_running"}
    kill_node_pid(cluster, node, pid)
    console.print(f"{node.id}: killed (SIGKILL, pid {pid})")
    return 0, {"command": "kill", "node": node.id, "pid": pid, "result": "killed"}


def _signal_cmd(name: str, sig: signal.Signals, done: str) -> Callable[..., tuple[int, dict[str, Any]]]:
    def run(cluster: ClusterConfig, args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
        node = cluster.node(args.node_id)
        pid = running_pid(cluster, node)
        if pid is None:
            console.print(f"[red]{node.id}: not running[/red]")
            return 1, {"command": name, "node": node.id, "pid": None, "result": "not_running"}
        os.kill(pid, sig)
        console.print(f"{node.id}: {done} ({sig.name}, pid {pid})")
        return 0, {"command": name, "node": node.id, "pid": pid, "result": done}

    return run


COMMANDS: dict[str, Callable[[ClusterConfig, argparse.Namespace], tuple[int, dict[str, Any]]]] = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "start": cmd_start,
    "stop": cmd_stop,
    "kill": cmd_kill,
    "pause": _signal_cmd("pause", signal.SIGSTOP, "paused"),
    "resume": _signal_cmd("resume", signal.SIGCONT, "resumed"),
}


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def build_parser(prog: str = "scripts/cluster") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Start, stop and inspect the node processes of a local ecert-chain cluster. "
        "Progress goes to stderr; the last line on stdout is a JSON summary.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default="cluster.toml", help="cluster file (default: cluster.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "up": "start every node that is not running, wait for a leader",
        "down": "stop every node (SIGTERM, then SIGKILL after --timeout)",
        "status": "a table of the nodes: process, role, term, height, hashes",
        "start": "start one node with its existing data",
        "stop": "stop one node gracefully (SIGTERM, then SIGKILL after --timeout)",
        "kill": "SIGKILL one node",
        "pause": "SIGSTOP one node",
        "resume": "SIGCONT one node",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        if name not in ("up", "down", "status"):
            p.add_argument("node_id", metavar="NODE_ID")
        if name in ("up", "start"):
            p.add_argument("--timeout", type=float, default=ready_timeout_s_default,
                           help="seconds to wait for the node(s) and the leader (default 30)")
            p.add_argument("--fault-injection", action="store_true",
                           help="start nodes with --fault-injection (chaos runs only)")
        if name == "up":
            p.add_argument("--no-wait-leader", action="store_true", help="do not wait for a leader")
        if name in ("down", "stop"):
            p.add_argument("--timeout", type=float, default=stop_timeout_s_default,
                           help="seconds between SIGTERM and SIGKILL (default 10)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "scripts/cluster") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        cluster = load_config(args.config)
        code, summary = COMMANDS[args.command](cluster, args)
    except (ControlError, ClusterConfigError) as e:
        console.print(f"[red]error:[/red] {e}")
        code, summary = 1, {"command": args.command, "error": str(e)}
    print(json.dumps(summary), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
