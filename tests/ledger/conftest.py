from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.store import StateStore
from tests.ledger.kv_executor import KvExecutor

GENESIS = bytes.fromhex("ab" * 32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore.open(tmp_path / "state", paranoid=True, sync=False)
    s.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def kv() -> KvExecutor:
    return KvExecutor()
