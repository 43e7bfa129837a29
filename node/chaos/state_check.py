"""After a chaos run, with every node process gone: each node's own LevelDB state, checked with the ledger's
invariants (ecert/invariants.py) and its state root recomputed from scratch.

The checker (node/chaos/checker.py) sees what nodes answer over HTTP; some invariants need the whole state,
which no route returns: paid + outstanding = amount for every root, each bank's exposure = what it financed less
what it recovered and wrote off, the claim, lock and acceptance indexes. So the runner opens each node's data
directory once the processes are killed (LevelDB recovers its log, as a restarted node would) and records here
what it found; the checker turns a failure into a violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consensus.invariant import InvariantViolation
from ecert.invariants import check_invariants
from ecert.state import CERT_INDEX
from ledger.errors import LedgerError
from ledger.store import StateStore

STATE_DIR = "state"  # node/server.py: <data_dir>/state


def check_node_state(data_dir: Path) -> dict[str, Any]:
    """{"height", "state_root", "invariants": "ok" | the broken invariant, "error": None | why it could not be
    checked}. Never raises for a bad state: that is what it reports."""
    path = data_dir / STATE_DIR
    out: dict[str, Any] = {"height": None, "state_root": None, "invariants": None, "error": None}
    if not path.is_dir():
        out["error"] = f"no state directory at {path}"
        return out
    try:
        store = StateStore.open(path, sync=False, index=CERT_INDEX)
    except (LedgerError, OSError, ValueError) as e:
        out["error"] = f"cannot open {path}: {type(e).__name__}: {e}"
        return out
    try:
        out["height"], out["state_root"] = store.height, store.state_root.hex()
        try:
            store.check_integrity()
            check_invariants(store.view())
        except InvariantViolation as e:
            out["invariants"] = str(e)
        else:
            out["invariants"] = "ok"
    finally:
        store.close()
    return out
