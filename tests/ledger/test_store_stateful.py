"""Hypothesis stateful test: the StateStore against a dict model under random txs, blocks, reopens and
snapshot installs; after every step the state equals the model and the incremental root equals a root
recomputed from scratch."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.block import make_block
from ledger.state_root import state_root_of
from ledger.store import StateStore
from tests.ledger.kv_executor import KvExecutor, apply_to_model, kv_tx

GENESIS = b"\x11" * 32
# Real LevelDB, on tmpfs when there is one: this test checks logic, and reopening a DB on a busy disk costs
# ~30 ms of fsyncs (the crash test covers durability on a real disk).
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
KEYS = [b"a", b"a/1", b"a/2", b"b", b"b/\xff", b"c\x00", b"\xff"]
_key = st.sampled_from(KEYS)
_op = st.one_of(
    st.tuples(st.just("put"), _key, st.binary(max_size=3)).map(list),
    st.tuples(st.just("del"), _key).map(list),
    st.tuples(st.just("count"), st.sampled_from([b"a", b"b/", b""]), _key).map(list),
    st.tuples(st.just("fail"), st.just("nope")).map(list),
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-stateful-", dir=FAST_TMP))
        self.generation = 0
        self.store = StateStore.open(self._path(), sync=False)
        self.store.init_genesis(GENESIS, [(b"a", b"genesis")])
        self.executor = KvExecutor()
        self.model: dict[bytes, bytes] = {b"a": b"genesis"}
        self.seen: set[str] = set()
        self.pending: list[bytes] = []
        self.history: list[bytes] = []
        self.nonce = 0
        self.time = 0

    def _path(self) -> Path:
        return self.dir / f"db{self.generation}"

    @rule(ops=st.lists(_op, max_size=4))
    def add_tx(self, ops: list[Any]) -> None:
        self.nonce += 1
        self.pending.append(kv_tx(self.nonce, *ops))

    @precondition(lambda self: bool(self.history))
    @rule(data=st.data())
    def replay_old_tx(self, data: st.DataObject) -> None:
        self.pending.append(data.draw(st.sampled_from(self.history)))

    @rule(dt=st.integers(0, 3))
    def apply_block(self, dt: int) -> None:
        self.time += dt
        block = make_block(self.store.height + 1, self.store.block_hash, self.time, "p", tuple(self.pending))
        outcomes = self.store.apply_block(block, self.executor)
        assert len(outcomes) == len(self.pending)
        for raw in self.pending:
            apply_to_model(self.model, raw, self.seen)
        self.history.extend(self.pending)
        self.pending = []

    @rule()
    def reopen(self) -> None:
        head = self.store.head
        self.store.close()
        self.store = StateStore.open(self._path(), sync=False)
        assert self.store.head == head

    @rule()
    def install_snapshot_elsewhere(self) -> None:
        data = self.store.export_snapshot()
        head = self.store.head
        self.store.close()
        shutil.rmtree(self._path())
        self.generation += 1
        self.store = StateStore.open(self._path(), sync=False)
        self.store.import_snapshot(data)
        assert self.store.head == head

    @invariant()
    def state_matches_model_and_root_matches_recomputation(self) -> None:
        assert dict(self.store.scan(b"")) == self.model
        assert self.store.state_root == state_root_of(self.model.items())
        for key in KEYS:
            assert self.store.get(key) == self.model.get(key)

    def teardown(self) -> None:
        try:
            self.store.check_integrity()
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestStoreMachine = StoreMachine.TestCase
