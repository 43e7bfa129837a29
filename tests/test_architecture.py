"""The import contracts in pyproject.toml ([tool.importlinter]): which package may import which, and that
consensus, ledger and ecert import no network, event loop, clock or randomness. `lint-imports` checks them all,
indirect imports included; this test runs it so that ./scripts/test (CI) keeps them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The venv's own script, beside its python (not resolved: the venv's python is a link to the system's).
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LINT_TIMEOUT_S = 300


def test_every_import_contract_is_kept() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extras (pip install -e '.[test]')")
    proc = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True,
                          text=True, timeout=LINT_TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"lint-imports found broken contracts:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
