"""How a node process ends: its exit statuses, and the record it leaves for `scripts/cluster status`.

Exit statuses of `python -m node`:
    0  stopped on SIGTERM / SIGINT (graceful)
    1  could not start (or crashed on an unexpected error)
    2  bad command line or cluster file
    70 EXIT_INVARIANT_VIOLATION: an invariant broke (consensus.invariant.InvariantViolation); the node stopped
       rather than go on with state it can no longer trust. (70 is sysexits.h's EX_SOFTWARE.)

Nodes started by the scripts run detached, so no parent collects their status. A node that exits with
EXIT_INVARIANT_VIOLATION therefore first writes <data_dir>/node.exit, one JSON object
`{"status": 70, "reason": "invariant_violation", "detail": "...", "ts_ms": ...}`; node/ops/control.py reads it
when the process is gone. A node removes a stale record when it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_CANNOT_START = 1
EXIT_USAGE = 2
EXIT_INVARIANT_VIOLATION = 70

EXIT_FILE = "node.exit"
EXIT_RECORD_BYTES_MAX = 64 << 10
"""A record is a few hundred bytes; a larger file is not ours (or is damaged) and is ignored."""
DETAIL_CHARS_MAX = 2000


def exit_record_path(data_dir: Path) -> Path:
    return data_dir / EXIT_FILE


def write_exit_record(data_dir: Path, status: int, reason: str, detail: str) -> None:
    """Write the record atomically (a reader never sees half of it) and fsync it: the process exits next."""
    path = exit_record_path(data_dir)
    tmp = path.with_suffix(".exit.tmp")
    doc = {"status": status, "reason": reason, "detail": detail[:DETAIL_CHARS_MAX], "ts_ms": int(time.time() * 1000)}
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def clear_exit_record(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        exit_record_path(data_dir).unlink()


def read_exit_record(data_dir: Path) -> dict[str, Any] | None:
    """The record of the node's last exit, or None if there is none (or it is not a record we wrote)."""
    try:
        raw = exit_record_path(data_dir).read_bytes()[:EXIT_RECORD_BYTES_MAX + 1]
    except OSError:
        return None
    if len(raw) > EXIT_RECORD_BYTES_MAX:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or type(doc.get("status")) is not int or not isinstance(doc.get("reason"), str):
        return None
    return doc
