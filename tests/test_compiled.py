"""The compiled path gives byte-identical results (issue 16): the same txs through the pure modules and through
their mypyc-compiled copy (setup.py) give the same block hashes, state roots and encoded outcomes, block by block.

The txs are what the E-certificate model test (tests/ecert/test_model.py) submits, valid and invalid, every kind,
recorded from a seeded run here; tests/compiled_replay.py replays them through a real StateStore (paranoid, with
the certificate index) in a process started from each tree. Run by ./scripts/test-compiled, which builds the
compiled tree first and names it in ECERT_COMPILED_TREE; deselected from the default suite (marker `compiled`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from ecert.genesis import genesis_hash, genesis_writes
from tests.ecert import world as world_module
from tests.ecert.test_model import EcertModel

REPO = Path(__file__).resolve().parents[1]
MAX_BLOCK_TXS = 8
"""Consecutive txs at the same block time go into one block (up to this many): the savepoints between txs of a
block are on the path too."""


def _record(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Run the model machine (seeded) and return every World it made as a chain of blocks."""
    worlds: list[tuple[world_module.World, list[list[Any]]]] = []
    init, apply, begin = world_module.World.__init__, world_module.World.apply, world_module.World.begin_block

    def recording_init(self: world_module.World, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        worlds.append((self, []))
        self._recorded = worlds[-1][1]  # type: ignore[attr-defined]

    def recording_apply(self: world_module.World, raw: bytes) -> Any:
        blocks = self._recorded  # type: ignore[attr-defined]
        if blocks and blocks[-1][0] == self.now and blocks[-1][1] and len(blocks[-1][1]) < MAX_BLOCK_TXS:
            blocks[-1][1].append(raw)
        else:
            blocks.append([self.now, [raw]])
        return apply(self, raw)

    def recording_begin(self: world_module.World) -> Any:
        self._recorded.append([self.now, []])  # type: ignore[attr-defined]
        return begin(self)

    monkeypatch.setattr(world_module.World, "__init__", recording_init)
    monkeypatch.setattr(world_module.World, "apply", recording_apply)
    monkeypatch.setattr(world_module.World, "begin_block", recording_begin)
    run_state_machine_as_test(EcertModel, settings=settings(
        max_examples=60, stateful_step_count=60, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
    chains = []
    for w, blocks in worlds:
        if blocks:
            g = w.genesis
            chains.append([genesis_hash(g), [list(kv) for kv in genesis_writes(g)], g.chain_id, g.genesis_time, blocks])
    return chains


def _replay(tree: Path, chains_file: Path, out: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, "-m", "tests.compiled_replay", str(chains_file), str(out)], cwd=tree,
                   check=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    result: dict[str, Any] = json.loads(out.read_text())
    return result


@pytest.mark.compiled
def test_compiled_and_pure_paths_give_the_same_blocks_roots_and_outcomes(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tree = os.environ.get("ECERT_COMPILED_TREE")
    if not tree:
        pytest.fail("ECERT_COMPILED_TREE is not set: run ./scripts/test-compiled (it builds the compiled tree)")
    chains = _record(monkeypatch)
    chains_file = tmp_path / "chains.msgpack"
    chains_file.write_bytes(msgpack.packb(chains, use_bin_type=True))
    pure = _replay(REPO, chains_file, tmp_path / "pure.json")
    compiled = _replay(Path(tree), chains_file, tmp_path / "compiled.json")
    assert (pure["python_path"], compiled["python_path"]) == ("pure", "compiled")
    assert pure["txs"] > 1000 and pure["blocks"] == compiled["blocks"] and pure["txs"] == compiled["txs"]
    assert compiled["chains"] == pure["chains"]


def _simulate(tree: Path, *args: str) -> str:
    """What `python -m consensus.sim` prints to stdout from `tree` (each tree imports its own consensus/)."""
    run = subprocess.run([sys.executable, "-m", "consensus.sim", "--quiet", *args], cwd=tree, capture_output=True,
                         text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout


@pytest.mark.compiled
def test_compiled_and_pure_raft_take_the_same_steps_under_the_simulator() -> None:
    """The Raft core and its log compiled (consensus/ but its simulator) take the same steps as the pure modules
    on the same seeds: every event of a traced run under all faults is the same line, and the totals of a batch
    of seeds (elections, commits, crashes, drops) are the same."""
    tree = os.environ.get("ECERT_COMPILED_TREE")
    if not tree:
        pytest.fail("ECERT_COMPILED_TREE is not set: run ./scripts/test-compiled (it builds the compiled tree)")
    where = subprocess.run([sys.executable, "-c", "import consensus.raft as r, consensus.log as l; "
                            "print(r.__file__.endswith('.so'), l.__file__.endswith('.so'))"],
                           cwd=tree, capture_output=True, text=True, check=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert where.stdout.split() == ["True", "True"], "the compiled tree does not run a compiled Raft core"
    # What a node started by that tree's launcher imports (another working directory, `PYTHONPATH=.`, the
    # editable install of the checkout on the path): the compiled modules too, not the checkout's pure ones.
    child = subprocess.run([sys.executable, "-c", "import os, subprocess, sys, tempfile\n"
                            "from node.ops.localnet import node_env\n"
                            "code = 'import consensus.raft as r, ledger.store as s; print(r.__file__, s.__file__)'\n"
                            "subprocess.run([sys.executable, '-c', code], cwd=tempfile.gettempdir(), check=True,\n"
                            "               env=node_env(dict(os.environ, PYTHONPATH='.')))"],
                           cwd=tree, capture_output=True, text=True, check=True, timeout=60,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert all(f.startswith(str(Path(tree).resolve())) and f.endswith(".so") for f in child.stdout.split()), \
        child.stdout
    traced = ("--seed", "11", "--trace", "--steps", "3000")
    pure_trace, compiled_trace = _simulate(REPO, *traced), _simulate(Path(tree), *traced)
    assert pure_trace.count("\n") > 1000
    assert compiled_trace == pure_trace
    batch = ("--seeds", "12", "--steps", "2000")
    pure_totals, compiled_totals = _simulate(REPO, *batch), _simulate(Path(tree), *batch)
    assert json.loads(pure_totals.splitlines()[-1])["committed"] > 0
    assert compiled_totals == pure_totals
