"""node/bench/apply_bench.py's cluster-like mode at a toy scale: every transfer of the chains commits, the state
grew by the prefill, and the store's integrity check passes at the end."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return importlib.import_module("node.bench.apply_bench")


@pytest.mark.parametrize("rules", ["new", "off"])
def test_transfer_chains_all_commit_over_a_prefilled_state(bench: ModuleType, rules: str) -> None:
    args = argparse.Namespace(txs=90, chains=4, block_txs=7, prefill_keys=500, sync=False, check=True, profile=None,
                              rules=rules)
    summary = bench.bench_transfers(args)
    assert summary["rules"] == rules
    assert summary["committed"] == summary["txs"] == 90
    # genesis orgs + prefill + set-up records, then per transfer ~4 new keys (2 certs, 2 lineage, holdings +1 -1,
    # a nonce): the state grew by the prefill and by the chains
    assert summary["state_keys"] > 500 + 90 * 4
    assert summary["us_per_tx"] > 0
