"""node/bench/scale_bench.py at a toy scale (50 orgs, 500 certificates): the workload it builds is valid under the
real rules, a new chain's included (trade documents at every hop, KYC in approvals: nothing rejected), it counts
what it built, and its numbers are sane and deterministic."""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from rich.console import Console

from ecert.genesis import chain_params_of
from ecert.tx import decode_envelope, tx_id_of
from node.build_info import python_path


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return importlib.import_module("node.bench.scale_bench")


def _run(bench: ModuleType, path: Path, workers: int) -> dict[str, Any]:
    quiet = Console(file=io.StringIO(), width=200)
    return bench.run_bench(50, 500, 100, path, banks=2, cores=3, steady=120, sign_workers=workers,  # type: ignore[no-any-return]
                           console=quiet)


def test_toy_scale_builds_a_valid_state_and_reports_sane_numbers(bench: ModuleType, tmp_path: Path) -> None:
    s = _run(bench, tmp_path / "pool", workers=1)
    assert s["rejected"] == {}
    rounds = -(-500 // 7)
    assert s["rounds"] == rounds
    assert s["population_certs"] == 7 * rounds
    assert s["certs"] == 7 * rounds + 2 * 120  # each steady transfer: a child and a remainder
    assert s["steady_committed"] == s["steady_txs"] == 120
    grants, org_txs = 2 * 3, 2 * (50 - 2 - 3)
    assert s["population_txs"] == grants + org_txs + bench.TXS_PER_ROUND * rounds
    entries = s["disk_by_tag"]["state_entries"]
    assert entries["o"]["count"] == 50
    assert entries["c"]["count"] == s["certs"]
    assert entries["n"]["count"] == s["population_txs"] + 120  # one nonce per committed tx
    assert entries["d"]["count"] == bench.DOCS_PER_ROUND * rounds  # every hop on its own contract
    # live leaves: 4 per round, +1 per steady transfer (the parent is spent, two children live)
    assert entries["h"]["count"] == 4 * rounds + 120

    windows = s["windows"]
    assert windows[0]["window"] == "orgs" and windows[-1]["window"] == "steady"
    assert len(windows) >= 4
    certs_seen = [w["certs_total"] for w in windows]
    assert certs_seen == sorted(certs_seen) and certs_seen[-1] == s["certs"]
    for w in windows:
        assert w["txs"] > 0 and w["committed"] == w["txs"]
        assert 0 < w["tps_cpu"] < 10**6 and 0 < w["tps_wall"] < 10**6
        assert w["block_ms"] >= w["executor_ms"] > 0
        if python_path() == "pure":  # the step the bench times; 0 (and a warning) when compiled (no wrapping)
            assert w["root_ms"] > 0
        assert w["rss_mb"] > 10
    assert s["sign_cpu_s"] >= 0 and s["sign_per_s_per_worker"] > 100
    assert 100 < s["disk_bytes_per_cert"] < 100_000
    assert s["disk_by_tag"]["state"] > 0 and s["disk_by_tag"]["tx records"] > 0

    # Same plan signed in this process instead of the pool: the same chain, block for block.
    again = _run(bench, tmp_path / "inline", workers=0)
    assert (again["height"], again["state_root"]) == (s["height"], s["state_root"])


def test_precomputed_ids_match_the_signed_txs(bench: ModuleType) -> None:
    """Rounds name certificates by tx ids computed without signing; they must be the signed txs' ids."""
    plan = bench.Plan(banks=2, cores=3, suppliers=10, rounds=5, steady=0, seed=1)
    params = chain_params_of(plan.genesis())  # the toy run's "nothing rejected" is under a new chain's rules
    assert params.transfer_requires_trade_docs and params.invoice_requires_contract and params.approve_requires_kyc
    for r in range(3):
        for tx in bench.round_txs(plan, r).txs:
            assert bench._tx_id(tx) == tx_id_of(decode_envelope(bench._sign(tx)).payload)


def test_refuses_a_directory_that_is_not_empty(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "LOCK").write_bytes(b"")
    with pytest.raises(SystemExit):
        bench.run_bench(50, 10, 10, tmp_path, sign_workers=0, console=Console(file=io.StringIO()))
