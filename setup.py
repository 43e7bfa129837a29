"""The build: pure-Python packages (pyproject.toml), and, where it can be built, a compiled copy of the per-tx path.

The compiled copy is the same typed source (ledger/ and ecert/, the per-tx path: decode, rules, state writes,
state root; and consensus/, the Raft core, its log and codec, which a node runs per block and per message; all
`mypy --strict` clean) run through mypyc: one C extension per module, imported instead of the .py beside it.
Left pure: the deterministic simulator (consensus/sim/: its tests plant bugs by subclassing and patching, which
compiled classes do not allow; it drives the compiled core all the same) and consensus/invariant.py
(InvariantViolation subclasses AssertionError, which mypyc cannot compile). It is built when

- mypyc is importable (pyproject.toml's build requirements bring it to an isolated build),
- a C compiler is on PATH (`$CC` or `cc`), and
- `ECERT_PURE` is not `1` (scripts/_venv.sh sets it: the development venv is an editable install of the pure
  modules, so the default suite tests the pure path; scripts/test-compiled builds and tests the compiled one).

Otherwise, or if compiling fails, the install is the pure-Python modules alone, and it says so. Which one a
process runs is `node.build_info.python_path()` (the bench prints it).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
COMPILED_PACKAGES = ("ledger", "ecert", "consensus")
NOT_COMPILED = ("consensus/sim/", "consensus/invariant.py")


def compiled_sources() -> list[str]:
    """Every module of the compiled packages (relative paths, sorted), but the simulator's."""
    sources = []
    for package in COMPILED_PACKAGES:
        for path in sorted((HERE / package).rglob("*.py")):
            relative = path.relative_to(HERE).as_posix()
            if not relative.startswith(NOT_COMPILED):
                sources.append(relative)
    return sources


def _why_not_compiled() -> str | None:
    if os.environ.get("ECERT_PURE") == "1":
        return "ECERT_PURE=1"
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler on PATH"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed"
    return None


class OptionalBuildExt(build_ext):
    """Build the extensions; if that fails, remove what was built and install the pure modules."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # a compiler error: the pure modules are a complete install
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            print(f"ecert-chain: compiling failed ({exc}); installing the pure-Python modules", file=sys.stderr)


def extensions() -> list[object]:
    why = _why_not_compiled()
    if why is not None:
        print(f"ecert-chain: pure-Python modules only ({why})", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    old = os.getcwd()
    os.chdir(HERE)  # mypyc names modules by their path from the working directory
    try:
        return list(mypycify(compiled_sources(), opt_level="3"))
    except BaseException as exc:  # a type error mypyc refuses: keep the pure modules
        print(f"ecert-chain: mypyc refused the sources ({exc}); pure-Python modules only", file=sys.stderr)
        return []
    finally:
        os.chdir(old)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
