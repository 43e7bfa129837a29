"""The environment a launcher gives its node processes (node/ops/localnet.py `node_env`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.ops.localnet import SOURCE_TREE, node_env


def test_relative_pythonpath_entries_become_absolute_behind_the_source_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = node_env({"PYTHONPATH": f".{os.pathsep}lib", "HOME": "/x"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(SOURCE_TREE), str(tmp_path), str(tmp_path / "lib")]
    assert env["HOME"] == "/x" and env["PYTHONUNBUFFERED"] == "1"


def test_the_source_tree_is_not_listed_twice_and_nothing_is_added_without_pythonpath() -> None:
    env = node_env({"PYTHONPATH": str(SOURCE_TREE)})
    assert env["PYTHONPATH"] == str(SOURCE_TREE)
    assert node_env({})["PYTHONPATH"] == str(SOURCE_TREE)  # a checkout: its own tree leads


def test_a_node_started_elsewhere_imports_the_launchers_modules(tmp_path: Path) -> None:
    """The case that misled the compiled benchmarks: a child in another directory, given `PYTHONPATH=.`."""
    probe = [sys.executable, "-c", "import node.ops.localnet as m; print(m.__file__)"]
    env = node_env(dict(os.environ, PYTHONPATH="."))
    got = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60)
    assert Path(got.stdout.strip()).resolve() == SOURCE_TREE / "node" / "ops" / "localnet.py"
