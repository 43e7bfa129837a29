"""Which build of the per-tx path this process runs: the pure-Python modules or their mypyc-compiled copy
(setup.py). Printed by the benchmarks, so that a number always says what produced it."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys

COMPILED_PACKAGES = ("ledger", "ecert", "consensus")
"""What setup.py compiles, but for NOT_COMPILED (setup.py says why)."""
NOT_COMPILED = ("consensus.sim", "consensus.invariant")
"""Modules (and packages) of COMPILED_PACKAGES that stay pure in a compiled build."""
PER_TX_PATH = ("ledger.store", "ecert.executor", "consensus.raft")
"""Imported before answering, so that a process that has not loaded the path yet (a load generator) still
says what the nodes it starts from the same tree will run."""


def loaded_modules() -> dict[str, bool]:
    """Every loaded module of the compiled packages -> whether it was imported from a C extension."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    loaded = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in COMPILED_PACKAGES and not any(
                name == pure or name.startswith(pure + ".") for pure in NOT_COMPILED):
            path = getattr(module, "__file__", None) or ""
            loaded[name] = path.endswith(suffixes)
    return loaded


def python_path() -> str:
    """"compiled" if every loaded module of the per-tx path is a C extension, "pure" if none is, else "mixed"."""
    for name in PER_TX_PATH:
        importlib.import_module(name)
    kinds = set(loaded_modules().values())
    if kinds == {True}:
        return "compiled"
    return "pure" if True not in kinds else "mixed"
