"""Checks of the deployment files (Dockerfile, compose.yaml, deploy/): what this machine can check without a
container engine (docs/DEPLOY.md "Validating the files")."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


def deploy_script(name: str) -> ModuleType:
    """deploy/<name>.py as a module (deploy/ is scripts for ops hosts, not a package)."""
    path = ROOT / "deploy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def tool(name: str) -> str | None:
    """The executable `name` from the project's virtualenv (where pyproject's test extras put them), else None."""
    path = VENV_BIN / name
    return str(path) if path.is_file() else None
