"""StateStore: chaining, per-tx rollback, dedup of tx ids, one batch per block, reads, reopen, snapshots."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import msgpack
import pytest

from consensus.invariant import InvariantViolation
from ledger.block import Block, block_hash, make_block
from ledger.buckets import BUCKET_OVERHEAD_BYTES
from ledger.errors import GenesisMismatchError, SnapshotError, StaleBlockError, StoreClosedError
from ledger.executor import STATUS_COMMITTED, STATUS_REJECTED, TxOutcome
from ledger.schema import STORE_FORMAT, decode_block_summary
from ledger.snapshot import SNAPSHOT_FORMAT
from ledger.state_root import EMPTY_ROOT, bucket_of, hashed_key, state_root_of
from ledger.store import StateStore
from tests.ledger.conftest import GENESIS
from tests.ledger.kv_executor import ExecutorBug, KvExecutor, kv_tx


def next_block(store: StateStore, *txs: bytes, time: int | None = None) -> Block:
    t = store.last_time + 1 if time is None else time
    return make_block(store.height + 1, store.block_hash, t, "node-1", tuple(txs))


def everything(store: StateStore) -> dict[bytes, bytes]:
    return dict(store.scan(b""))


def test_genesis(store: StateStore, tmp_path: Path) -> None:
    assert store.height == 0
    assert store.block_hash == store.genesis_hash == GENESIS
    assert store.chain_id == "kv-test" and store.last_time == 1000
    assert everything(store) == {b"org/bank": b"active"}
    assert store.state_root == state_root_of([(b"org/bank", b"active")])
    store.init_genesis(GENESIS, [(b"other", b"ignored")])  # a restart: idempotent
    assert everything(store) == {b"org/bank": b"active"}
    with pytest.raises(GenesisMismatchError):
        store.init_genesis(b"\x01" * 32, [])
    fresh = StateStore.open(tmp_path / "fresh", sync=False)
    assert (fresh.height, fresh.block_hash, fresh.state_root, fresh.initialized) == (
        0,
        b"",
        EMPTY_ROOT,
        False,
    )
    fresh.close()


def test_apply_block_chains_and_records_everything(store: StateStore, kv: KvExecutor) -> None:
    t1 = kv_tx(1, ["put", b"k/1", b"one"], ["put", b"k/2", b"two"])
    t2 = kv_tx(2, ["del", b"org/bank"], ["count", b"k/", b"count"])
    block = next_block(store, t1, t2)
    outcomes = store.apply_block(block, kv, applied_index=7)
    assert [o.status for o in outcomes] == [STATUS_COMMITTED, STATUS_COMMITTED]
    assert outcomes[0] == TxOutcome(kv.tx_id(t1), "committed", {"ops": 2, "height": 1}, None, None)
    assert everything(store) == {b"k/1": b"one", b"k/2": b"two", b"count": b"2"}
    assert (store.height, store.block_hash, store.applied_index) == (1, block_hash(block.header), 7)
    assert store.state_root == state_root_of(everything(store).items())
    record = store.tx_outcome(kv.tx_id(t2))
    assert record is not None and (record.height, record.position) == (1, 1)
    assert record.to_json()["status"] == "committed"
    stored = store.block(1)
    assert stored is not None
    assert stored.header == block.header and stored.txs == block.txs
    assert stored.tx_ids == (kv.tx_id(t1), kv.tx_id(t2))
    assert stored.to_json()["hash"] == block_hash(block.header).hex()
    store.check_integrity()


def test_memory_bytes_counts_the_root_cache_and_leveldb(store: StateStore, kv: KvExecutor) -> None:
    before = store.memory_bytes()
    assert set(before) == {"state_root_cache", "state_leveldb"}
    keys = [b"k/%d" % i for i in range(200)]
    store.apply_block(next_block(store, kv_tx(1, *(["put", k, b"v"] for k in keys))), kv)
    after = store.memory_bytes()
    buckets = {bucket_of(hashed_key(k)) for k in keys} | {bucket_of(hashed_key(k)) for k, _ in store.scan(b"org/")}
    # 64 bytes of hashes per key, plus CPython's overhead per unsplit bucket, over the fixed tree (2.2 MB).
    grown = after["state_root_cache"] - before["state_root_cache"]
    assert grown >= 64 * len(keys)
    assert after["state_root_cache"] < 2_300_000 + 64 * (len(keys) + 10) + BUCKET_OVERHEAD_BYTES * len(buckets)
    assert after["state_leveldb"] > 0


def test_rejected_tx_leaves_no_writes(store: StateStore, kv: KvExecutor) -> None:
    bad = kv_tx(1, ["put", b"a", b"1"], ["del", b"org/bank"], ["fail", "insufficient_credit"])
    good = kv_tx(2, ["count", b"", b"n"])
    outcomes = store.apply_block(next_block(store, bad, good), kv)
    assert outcomes[0].status == STATUS_REJECTED and outcomes[0].error_code == "insufficient_credit"
    assert outcomes[0].to_json()["error"]["code"] == "insufficient_credit"
    # the second tx's scan does not see the rejected writes either
    assert everything(store) == {b"org/bank": b"active", b"n": b"1"}
    undecodable = b"\xc1"
    [o] = store.apply_block(next_block(store, undecodable), kv)
    assert o.status == STATUS_REJECTED and o.error_code == "malformed"


def test_a_tx_id_is_applied_once_and_keeps_its_first_outcome(store: StateStore, kv: KvExecutor) -> None:
    inc = kv_tx("same", ["put", b"x", b"1"])
    fail = kv_tx("f", ["fail", "nope"])
    first = store.apply_block(next_block(store, inc, fail, inc), kv)
    assert first[0] == first[2]
    assert store.block(1).tx_ids == (kv.tx_id(inc), kv.tx_id(fail), kv.tx_id(inc))  # type: ignore[union-attr]
    store.apply_block(next_block(store, kv_tx("other", ["put", b"x", b"2"])), kv)
    again = store.apply_block(next_block(store, inc, fail), kv)
    assert again == [first[0], first[1]]
    assert store.get(b"x") == b"2"  # the replayed tx did not run again
    rec = store.tx_outcome(kv.tx_id(inc))
    assert rec is not None and (rec.height, rec.position) == (1, 0)
    assert store.tx_outcome("0" * 64) is None and store.tx_outcome("") is None
    assert store.tx_outcome("é") is None


@pytest.mark.parametrize("reason", ["height", "prev_hash", "time", "tx_root", "malformed"])
def test_a_block_that_does_not_chain_is_stale_and_writes_nothing(
    store: StateStore, kv: KvExecutor, reason: str
) -> None:
    store.apply_block(next_block(store, kv_tx(0, ["put", b"a", b"0"])), kv)
    good = next_block(store, kv_tx(1, ["put", b"a", b"1"]))
    header = good.header
    bad = {
        "height": dataclasses.replace(good, header=dataclasses.replace(header, height=3)),
        "prev_hash": dataclasses.replace(good, header=dataclasses.replace(header, prev_hash=GENESIS)),
        "time": dataclasses.replace(good, header=dataclasses.replace(header, time=store.last_time - 1)),
        "tx_root": dataclasses.replace(good, txs=(kv_tx(1, ["put", b"a", b"2"]),)),
        "malformed": dataclasses.replace(good, header=dataclasses.replace(header, proposer="")),
    }[reason]
    before = (store.height, store.block_hash, store.state_root, everything(store))
    with pytest.raises(StaleBlockError) as info:
        store.apply_block(bad, kv)
    assert info.value.reason == reason and info.value.code == "block_stale"
    assert (store.height, store.block_hash, store.state_root, everything(store)) == before
    assert store.block(2) is None
    store.apply_block(good, kv)  # the right block still applies
    with pytest.raises(StaleBlockError):
        store.apply_block(good, kv)  # a replay of an applied block is stale: skipped


def test_block_1_must_point_at_genesis_and_not_go_back_in_time(store: StateStore, kv: KvExecutor) -> None:
    with pytest.raises(StaleBlockError):
        store.apply_block(make_block(1, b"\x00" * 32, 2000, "n", ()), kv)
    with pytest.raises(StaleBlockError):
        store.apply_block(make_block(1, GENESIS, 999, "n", ()), kv)  # before the genesis time
    store.apply_block(make_block(1, GENESIS, 1000, "n", ()), kv)  # equal time is fine
    store.apply_block(next_block(store, time=1000), kv)
    assert store.height == 2


def test_executor_exception_commits_nothing(store: StateStore, kv: KvExecutor) -> None:
    block = next_block(store, kv_tx(1, ["put", b"a", b"1"]), kv_tx(2, ["raise"]))
    with pytest.raises(ExecutorBug):
        store.apply_block(block, kv)
    assert store.height == 0 and store.get(b"a") is None
    assert store.tx_outcome(kv.tx_id(kv_tx(1, ["put", b"a", b"1"]))) is None


def test_executor_outcome_must_name_the_tx(store: StateStore) -> None:
    class Liar(KvExecutor):
        def execute(self, view, raw, ctx):  # type: ignore[no-untyped-def]
            return TxOutcome.committed("not-the-id", {})

    with pytest.raises(InvariantViolation):
        store.apply_block(next_block(store, kv_tx(1)), Liar())
    assert store.height == 0


def test_float_results_are_refused(store: StateStore) -> None:
    class Floaty(KvExecutor):
        def execute(self, view, raw, ctx):  # type: ignore[no-untyped-def]
            return TxOutcome.committed(self.tx_id(raw), {"rate": [0.5]})

    with pytest.raises(InvariantViolation):
        store.apply_block(next_block(store, kv_tx(1)), Floaty())


def test_no_op_writes_do_not_change_the_root(store: StateStore, kv: KvExecutor) -> None:
    root = store.state_root
    store.apply_block(next_block(store, kv_tx(1, ["put", b"org/bank", b"active"], ["del", b"nothing"])), kv)
    assert store.state_root == root
    store.apply_block(next_block(store, kv_tx(2, ["put", b"t", b"1"], ["del", b"t"])), kv)
    assert store.state_root == root
    store.check_integrity()


def test_blocks_are_paged_newest_first(store: StateStore, kv: KvExecutor) -> None:
    for i in range(7):
        store.apply_block(next_block(store, kv_tx(i, ["put", b"k", str(i).encode()])), kv)
    assert [b.header.height for b in store.blocks(limit=3)] == [7, 6, 5]
    assert [b.header.height for b in store.blocks(before=5, limit=3)] == [4, 3, 2]
    assert [b.header.height for b in store.blocks(before=3, limit=10)] == [2, 1]
    assert store.blocks(before=1) == [] and store.blocks(limit=0) == []
    assert [b.header.height for b in store.blocks(before=100, limit=2)] == [7, 6]
    assert store.block(0) is None and store.block(8) is None


def test_a_block_summary_is_the_record_without_its_txs(store: StateStore, kv: KvExecutor) -> None:
    store.apply_block(next_block(store), kv)  # an empty block counts 0
    store.apply_block(next_block(store, *(kv_tx(i, ["put", b"k%d" % i, b"v"]) for i in range(40))), kv)
    for height in (1, 2):
        record, summary = store.block(height), store.block_summary(height)
        assert record is not None and summary is not None
        assert (summary.header, summary.hash, summary.tx_count) == (record.header, record.hash, len(record.tx_ids))
        assert summary.to_json() == {k: v for k, v in record.to_json().items() if k != "tx_ids"}
    assert store.block_summary(2).tx_count == 40  # type: ignore[union-attr]
    assert store.block_summary(0) is None and store.block_summary(3) is None


@pytest.mark.parametrize("data", [b"", b"\x92\x01\x02", b"\x93\x01", msgpack.packb({"header": 1}),
                                  msgpack.packb([[1, 2, 3, 4, 5], [], []])])
def test_a_malformed_block_record_is_a_broken_store(data: bytes) -> None:
    with pytest.raises(InvariantViolation):
        decode_block_summary(data)


def test_reopen_keeps_everything(tmp_path: Path, kv: KvExecutor) -> None:
    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [])
        s.apply_block(make_block(1, GENESIS, 5, "n", (kv_tx(1, ["put", b"a", b"1"]),)), kv, applied_index=3)
        s.mark_applied(4)
        head = s.head
    with StateStore.open(path, paranoid=True) as s:
        assert s.head == head and s.applied_index == 4
        assert s.get(b"a") == b"1"
        assert s.chain_id == ""  # not given at genesis: blocks take the executor's chain_id for their context
        s.check_integrity()
    s2 = StateStore.open(path)
    s2.close()
    with pytest.raises(StoreClosedError):
        s2.get(b"a")


def test_snapshot_roundtrip_keeps_state_outcomes_and_head(
    store: StateStore, kv: KvExecutor, tmp_path: Path
) -> None:
    txs = [kv_tx(i, ["put", f"k/{i}".encode(), bytes(i)]) for i in range(20)]
    rejected = kv_tx("r", ["fail", "nope"])
    store.apply_block(next_block(store, *txs[:10]), kv)
    store.apply_block(next_block(store, *txs[10:], rejected), kv, applied_index=12)
    data = store.export_snapshot()
    with StateStore.open(tmp_path / "other", paranoid=True, sync=False) as other:
        other.import_snapshot(data)
        assert other.head == store.head
        assert other.genesis_hash == GENESIS and other.chain_id == "kv-test"
        assert everything(other) == everything(store)
        assert other.block(2) == store.block(2) and other.block(1) is None
        assert other.tx_outcome(kv.tx_id(rejected)) == store.tx_outcome(kv.tx_id(rejected))
        other.check_integrity()
        # a replay after the import keeps the first outcome, and the chain continues from the head
        block = next_block(other, txs[0], kv_tx("new", ["put", b"z", b"z"]))
        assert other.apply_block(block, kv)[0] == store.apply_block(block, kv)[0]
        assert other.state_root == store.state_root
        # importing replaces everything, including state written after the snapshot
        other.import_snapshot(data)
        assert other.get(b"z") is None and other.height == 2
        other.check_integrity()


def test_corrupt_snapshots_are_refused_and_change_nothing(
    store: StateStore, kv: KvExecutor, tmp_path: Path
) -> None:
    store.apply_block(
        next_block(store, *[kv_tx(i, ["put", bytes([65 + i]), b"v" * 10]) for i in range(5)]), kv
    )
    data = store.export_snapshot()
    with StateStore.open(tmp_path / "other", sync=False) as other:
        other.init_genesis(GENESIS, [(b"mine", b"1")], chain_id="kv-test")
        before = (other.head, everything(other))
        bad_inputs = [b"", b"\x00", data[:-1], data[: len(data) // 2], data + b"\x00", b"garbage" * 10]
        for i in range(0, len(data), max(1, len(data) // 40)):
            bad_inputs.append(data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :])
        for bad in bad_inputs:
            with pytest.raises(SnapshotError):
                other.import_snapshot(bad)
            assert (other.head, everything(other)) == before
        other.check_integrity()
        other.import_snapshot(data)
        assert other.head == store.head


def test_an_import_is_built_aside_and_swapped_in(store: StateStore, kv: KvExecutor, tmp_path: Path) -> None:
    """import_snapshot fills `<path>.import` in bounded batches and swaps it in; a refused snapshot leaves no
    trace; views handed out before the import read the imported state after it."""
    store.apply_block(next_block(store, *[kv_tx(i, ["put", b"k/%d" % i, b"v" * 50]) for i in range(300)]), kv)
    data = store.export_snapshot()
    path = tmp_path / "other"
    with StateStore.open(path, sync=False) as other:
        view = other.view()
        with pytest.raises(SnapshotError):
            other.import_snapshot(data[:-3])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "state"]
        other.import_snapshot(data)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "state"]
        assert everything(other) == everything(store) and other.head == store.head
        assert view.get(b"k/7") == b"v" * 50
        other.check_integrity()
    with StateStore.open(path, sync=False) as other:
        assert other.head == store.head


def _swap_crash(store: StateStore, kv: KvExecutor, tmp_path: Path, renamed: int) -> tuple[Path, StateStore]:
    """An import of `store`'s snapshot into a new store at tmp_path/"b" whose process dies after the import
    directory is complete and `renamed` of the swap's two renames are done (the store is not closed)."""
    store.apply_block(next_block(store, *[kv_tx(i, ["put", b"k/%d" % i, b"w"]) for i in range(50)]), kv)
    path = tmp_path / "b"
    other = StateStore.open(path, sync=False)
    other.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
    renames = [0]
    real_rename = os.rename

    def rename_then_die(src: str, dst: str) -> None:
        if renames[0] == renamed:
            raise KeyboardInterrupt  # stands in for SIGKILL
        renames[0] += 1
        real_rename(src, dst)

    os.rename = rename_then_die  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            other.import_snapshot(store.export_snapshot())
    finally:
        os.rename = real_rename  # type: ignore[assignment]
    return path, other


@pytest.mark.parametrize("renamed", [0, 1])
def test_open_finishes_an_import_swap_a_crash_interrupted(
    store: StateStore, kv: KvExecutor, tmp_path: Path, renamed: int
) -> None:
    path, _dead = _swap_crash(store, kv, tmp_path, renamed)
    # 0: the live store is still in place next to a complete import; 1: only the import is left, complete.
    assert (path.exists(), Path(str(path) + ".import").exists()) == ((True, True) if renamed == 0 else (False, True))
    with StateStore.open(path, sync=False) as reopened:
        if renamed == 0:
            # The swap had not started: the old store stays (the node re-imports from its Raft snapshot).
            assert reopened.height == 0 and reopened.get(b"k/1") is None
        else:
            assert reopened.head == store.head and reopened.get(b"k/1") == b"w"
        reopened.check_integrity()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("b")) == ["b"]


def test_open_removes_a_half_filled_import_and_a_retired_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
    for leftover in (".import", ".retired"):
        (tmp_path / ("s" + leftover)).mkdir()
        (tmp_path / ("s" + leftover) / "000001.log").write_bytes(b"partial")
    with StateStore.open(path, sync=False) as s:
        assert s.genesis_hash == GENESIS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_snapshot_with_a_wrong_root_is_refused(store: StateStore, kv: KvExecutor, tmp_path: Path) -> None:
    """A snapshot whose checksum is fine but whose state does not hash to its claimed root."""
    import hashlib

    store.apply_block(next_block(store, kv_tx(1, ["put", b"a", b"1"])), kv)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(store.export_snapshot())
    rows = list(unpacker)
    header, records = rows[0], rows[1:-1]
    records[0][2] = b"forged"
    packed = [msgpack.packb(r, use_bin_type=True) for r in [header, *records]]
    body = b"".join(packed)
    forged = body + msgpack.packb(["end", len(records), hashlib.sha256(body).digest()], use_bin_type=True)
    with StateStore.open(tmp_path / "other", sync=False) as other, pytest.raises(SnapshotError, match="root"):
        other.import_snapshot(forged)


def test_snapshot_of_another_chain_is_refused(store: StateStore, tmp_path: Path) -> None:
    data = store.export_snapshot()
    with StateStore.open(tmp_path / "other", sync=False) as other:
        other.init_genesis(b"\x07" * 32, [])
        with pytest.raises(SnapshotError, match="another chain"):
            other.import_snapshot(data)


def test_paranoid_mode_catches_a_root_that_drifted_from_the_state(tmp_path: Path, kv: KvExecutor) -> None:
    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"a", b"1")])
    import plyvel

    db = plyvel.DB(str(path))
    db.put(b"S" + b"smuggled", b"x")  # a state entry written behind the root's back
    db.close()
    with StateStore.open(path, paranoid=True, sync=False) as s:
        with pytest.raises(InvariantViolation):
            s.check_integrity()
        with pytest.raises(InvariantViolation, match="state root"):
            s.apply_block(make_block(1, GENESIS, 1, "n", (kv_tx(1, ["put", b"b", b"2"]),)), kv)


def test_the_committed_view_is_a_read_only_state_view(store: StateStore) -> None:

    view = store.view()
    assert all(callable(getattr(view, name, None)) for name in ("get", "put", "delete", "scan"))  # a StateView
    assert view.get(b"org/bank") == b"active" and list(view.scan(b"org/")) == [(b"org/bank", b"active")]
    with pytest.raises(InvariantViolation):
        view.put(b"x", b"y")
    with pytest.raises(InvariantViolation):
        view.delete(b"org/bank")
    assert store.get(b"org/bank") == b"active"


def test_tree_node_cache_follows_imports_and_failed_blocks(
    store: StateStore, kv: KvExecutor, tmp_path: Path
) -> None:
    """The store caches the state-root tree in memory: after a snapshot import, or a block whose executor
    raised, the next block's root must still equal a from-scratch recomputation (paranoid stores check it)."""
    store.apply_block(next_block(store, *[kv_tx(i, ["put", f"a/{i}".encode(), b"1"]) for i in range(50)]), kv)
    data = store.export_snapshot()
    store.apply_block(next_block(store, *[kv_tx(i, ["put", f"a/{i}".encode(), b"2"]) for i in range(50, 80)]), kv)
    with pytest.raises(ExecutorBug):
        store.apply_block(next_block(store, kv_tx("b1", ["put", b"a/1", b"3"]), kv_tx("b2", ["raise"])), kv)
    store.apply_block(next_block(store, kv_tx("c", ["del", b"a/1"], ["count", b"a/", b"n"])), kv)
    assert store.state_root == state_root_of(store.scan(b""))
    store.import_snapshot(data)  # back to height 1: every cached node from heights 2-3 is stale
    store.apply_block(next_block(store, kv_tx("d", ["put", b"a/2", b"4"])), kv)
    assert store.state_root == state_root_of(store.scan(b""))
    store.check_integrity()


def _keys_in_crowded_buckets(buckets: int, per_bucket: int) -> list[bytes]:
    """Keys from `buckets` state-root buckets holding at least `per_bucket` of them each."""
    by_bucket: dict[int, list[bytes]] = {}
    for i in range(200_000):
        key = f"crowd/{i}".encode()
        by_bucket.setdefault(bucket_of(hashed_key(key)), []).append(key)
    crowded = sorted((ks for ks in by_bucket.values() if len(ks) >= per_bucket), key=len, reverse=True)
    return [k for ks in crowded[:buckets] for k in ks[:per_bucket]]


def test_split_buckets_stay_equal_to_the_from_scratch_root(
    tmp_path: Path, kv: KvExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Buckets split above a threshold and merge back below it, rereading only touched sub-buckets while split.
    A threshold of 2 makes that happen in a small state: every block's root must equal the from-scratch one
    (paranoid store) and the stored split records must equal the recomputed ones."""
    import random

    import ledger.buckets
    import ledger.state_root

    monkeypatch.setattr(ledger.state_root, "SPLIT_ABOVE", 2)
    monkeypatch.setattr(ledger.buckets, "SPLIT_ABOVE", 2)
    keys = _keys_in_crowded_buckets(12, 7)
    rng = random.Random(7)
    splits_seen = merges_seen = 0
    with StateStore.open(tmp_path / "db", paranoid=True, sync=False) as s:
        s.init_genesis(GENESIS, [(k, b"g") for k in keys[::3]])
        db = s._live_db()
        before = 0
        for height in range(40):
            txs = []
            for t in range(rng.randrange(1, 8)):
                ops = [
                    ["del", k] if rng.random() < 0.45 else ["put", k, bytes([height, t])]
                    for k in rng.sample(keys, rng.randrange(1, 6))
                ]
                txs.append(kv_tx(f"{height}-{t}", *ops))
            s.apply_block(next_block(s, *txs), kv)
            split_now = sum(1 for _k in db.iterator(prefix=b"R", include_value=False))  # split bucket summaries
            splits_seen += split_now > before
            merges_seen += split_now < before
            before = split_now
        s.check_integrity()
        assert s.state_root == state_root_of(s.scan(b""))
    assert splits_seen and merges_seen  # both transitions were exercised


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    """Format 1 stores hold roots without split buckets: opening one must fail, not mix two definitions."""
    import plyvel

    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"a", b"1")])
    db = plyvel.DB(str(path))
    assert db.get(b"Mformat") == STORE_FORMAT == b"4"
    db.put(b"Mformat", b"1")
    db.close()
    with pytest.raises(InvariantViolation, match="format"):
        StateStore.open(path, sync=False)


def _rewrite_snapshot(data: bytes, fmt: int, state_root: bytes) -> bytes:
    """The same snapshot with another format number and claimed root, and a valid trailer."""
    import hashlib

    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    rows = list(unpacker)
    header, records = rows[0], rows[1:-1]
    head = msgpack.unpackb(header[2], raw=False)
    head[2] = state_root
    header[1], header[2] = fmt, msgpack.packb(head, use_bin_type=True)
    body = b"".join(msgpack.packb(r, use_bin_type=True) for r in [header, *records])
    return body + msgpack.packb(["end", len(records), hashlib.sha256(body).digest()], use_bin_type=True)


def test_a_format_1_snapshot_imports_with_its_root_recomputed(
    store: StateStore, kv: KvExecutor, tmp_path: Path
) -> None:
    """Format 1 snapshots (taken before split buckets) stay usable to rebuild a store: their root is replaced
    by this state's root. Other unknown formats are refused, and formats 2 and 3 still check their root."""
    store.apply_block(next_block(store, *[kv_tx(i, ["put", f"k/{i}".encode(), b"v"]) for i in range(30)]), kv)
    data = store.export_snapshot()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    assert unpacker.unpack()[1] == SNAPSHOT_FORMAT == 3  # what an export writes now
    old_root = b"\x5a" * 32  # stands for the format 1 root such a snapshot carried
    with StateStore.open(tmp_path / "other", paranoid=True, sync=False) as other:
        other.import_snapshot(_rewrite_snapshot(data, 1, old_root))
        assert other.state_root == store.state_root != old_root
        assert (other.height, other.block_hash) == (store.height, store.block_hash)
        other.check_integrity()
        for fmt in (0, 4):
            with pytest.raises(SnapshotError, match="format"):
                other.import_snapshot(_rewrite_snapshot(data, fmt, store.state_root))
        for fmt in (2, 3):
            with pytest.raises(SnapshotError, match="root"):
                other.import_snapshot(_rewrite_snapshot(data, fmt, old_root))
        assert other.head == store.head


def _split_above_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buckets split above 2 entries instead of 16, so small states have split buckets."""
    import ledger.buckets
    import ledger.state_root

    monkeypatch.setattr(ledger.state_root, "SPLIT_ABOVE", 2)
    monkeypatch.setattr(ledger.buckets, "SPLIT_ABOVE", 2)


def _crowded_state(kv: KvExecutor, store: StateStore) -> None:
    """Blocks that leave small buckets, an emptied bucket and (with `_split_above_2`) split ones."""
    crowded = _keys_in_crowded_buckets(2, 5)
    store.apply_block(next_block(store, *[kv_tx(f"c{i}", ["put", k, b"c"]) for i, k in enumerate(crowded)]), kv)
    store.apply_block(next_block(store, *[kv_tx(f"p{i}", ["put", f"p/{i}".encode(), b"v"]) for i in range(40)]), kv)
    store.apply_block(next_block(store, kv_tx("d", ["del", b"p/3"], ["del", crowded[0]])), kv)


def _rewrite_as_format_2(path: Path) -> None:
    """Turn a store into the format 2 layout (docs/STORAGE.md before format 3): a leaf index entry `H` per key,
    every non-empty inner node `N` (levels 0-3) and a split record `N` level 4 per split bucket."""
    import plyvel

    from ledger.state_root import bucket_hashes, buckets_from_sorted_leaves, leaf_hash, tree_from_buckets

    db = plyvel.DB(str(path))
    with db.write_batch() as batch:
        for tag in (b"R", b"H", b"P"):
            for key in db.iterator(prefix=tag, include_value=False):
                batch.delete(key)
        leaves = sorted((hashed_key(k[1:]), leaf_hash(k[1:], v)) for k, v in db.iterator(prefix=b"S"))
        for hk, leaf in leaves:
            batch.put(b"H" + hk, leaf)
        buckets = buckets_from_sorted_leaves(leaves)
        _root, nodes = tree_from_buckets(bucket_hashes(buckets))
        nodes.update({(4, b): record for b, (_h, record) in buckets.items() if record is not None})
        assert any(level == 4 for level, _ in nodes)  # a split record is part of what gets migrated
        for (level, prefix), record in nodes.items():
            batch.put(b"N" + bytes([level]) + prefix.to_bytes(2, "big"), record)
        batch.put(b"Mformat", b"2")
    db.close()


def _crowded_format_2_store(tmp_path: Path, kv: KvExecutor, monkeypatch: pytest.MonkeyPatch
                            ) -> tuple[Path, Any, dict[bytes, bytes]]:
    """A store with split buckets, rewritten as format 2 wrote it: (path, its head, its state)."""
    _split_above_2(monkeypatch)
    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"org/bank", b"active")])
        _crowded_state(kv, s)
        head, state = s.head, everything(s)
    _rewrite_as_format_2(path)
    return path, head, state


def test_a_format_2_store_is_migrated_on_open(tmp_path: Path, kv: KvExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Format 2 has the same roots with another root index: opening rewrites it in format 3, once."""
    import plyvel

    path, head, state = _crowded_format_2_store(tmp_path, kv, monkeypatch)
    with StateStore.open(path, paranoid=True, sync=False) as s:
        assert s.head == head and everything(s) == state
        s.check_integrity()
        s.apply_block(next_block(s, kv_tx("after", ["put", b"p/3", b"back"])), kv)
        s.check_integrity()
    db = plyvel.DB(str(path))
    assert db.get(b"Mformat") == b"4"
    assert not any(True for _ in db.iterator(prefix=b"N"))  # stored inner nodes are gone
    assert any(True for _ in db.iterator(prefix=b"R")) and any(True for _ in db.iterator(prefix=b"P"))  # split
    db.close()


def test_a_format_2_store_whose_index_disagrees_with_its_root_is_refused(tmp_path: Path, kv: KvExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plyvel

    path, _head, _state = _crowded_format_2_store(tmp_path, kv, monkeypatch)
    db = plyvel.DB(str(path))
    hk, _leaf = next(db.iterator(prefix=b"H"))
    db.put(hk, b"\x00" * 32)
    db.close()
    with pytest.raises(InvariantViolation, match="format 2"):
        StateStore.open(path, sync=False)
    db = plyvel.DB(str(path))
    assert db.get(b"Mformat") == b"2"  # nothing was written
    db.close()


def test_reopening_rebuilds_the_same_in_memory_tree(tmp_path: Path, kv: KvExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _split_above_2(monkeypatch)
    import random

    rng = random.Random(3)
    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"org/bank", b"active")])
        _crowded_state(kv, s)
        for height in range(30):
            txs = [kv_tx(f"{height}-{t}", *[["del", f"r/{rng.randrange(300)}".encode()] if rng.random() < 0.3
                                            else ["put", f"r/{rng.randrange(300)}".encode(), bytes([t])]
                                            for _ in range(rng.randrange(1, 9))]) for t in range(rng.randrange(1, 12))]
            s.apply_block(next_block(s, *txs), kv)
            assert s.state_root == s.recompute_state_root()
        tree, counts = s._buckets.tree, list(s._buckets.counts)
        root = s.state_root
    with StateStore.open(path, sync=False) as s:
        assert s.state_root == root and s._buckets.tree.same_as(tree) and s._buckets.counts == counts
        s.check_integrity()


def test_bucket_records_that_disagree_with_the_head_are_refused_at_open(tmp_path: Path) -> None:
    import plyvel

    path = tmp_path / "db"
    with StateStore.open(path, sync=False) as s:
        s.init_genesis(GENESIS, [(b"a", b"1"), (b"b", b"2")])
    db = plyvel.DB(str(path))
    key, leaf = next(db.iterator(prefix=b"H"))
    db.put(key, bytes([leaf[0] ^ 1]) + leaf[1:])
    db.close()
    with pytest.raises(InvariantViolation, match="the head says"):
        StateStore.open(path, sync=False)


def test_a_failed_batch_write_leaves_the_in_memory_tree_at_the_committed_state(
    store: StateStore, kv: KvExecutor
) -> None:
    """The tree changes while a block is staged; if the batch is not written, it must come back."""
    store.apply_block(next_block(store, *[kv_tx(i, ["put", f"a/{i}".encode(), b"1"]) for i in range(30)]), kv)
    import copy

    before, tree, counts = store.head, copy.deepcopy(store._buckets.tree), list(store._buckets.counts)
    real_db = store._db

    class FailingBatch:
        def __init__(self, batch: object) -> None:
            self._batch = batch

        def __getattr__(self, name: str) -> object:
            return getattr(self._batch, name)

        def write(self) -> None:
            raise OSError("disk full")

    class FailingDb:
        def __getattr__(self, name: str) -> object:
            return getattr(real_db, name)

        def write_batch(self, **kw: object) -> FailingBatch:
            return FailingBatch(real_db.write_batch(**kw))

    block = next_block(store, *[kv_tx(f"b{i}", ["put", f"a/{i}".encode(), b"2"]) for i in range(20)])
    store._db = FailingDb()
    try:
        with pytest.raises(OSError, match="disk full"):
            store.apply_block(block, kv)
    finally:
        store._db = real_db
    assert store.head == before and store._buckets.counts == counts and store._buckets.tree.same_as(tree)
    assert store._buckets.tree.root == before.state_root
    store.apply_block(block, kv)
    store.check_integrity()


def test_snapshot_stream_chunks_join_to_the_export(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The node writes snapshots chunk by chunk: whatever the chunk size, the bytes are the export's."""
    st = StateStore.open(str(tmp_path / "s"))
    try:
        st.init_genesis(b"\x00" * 32, [(f"k{i}".encode(), b"v" * i) for i in range(300)], chain_id="c",
                        genesis_time=1)
        whole = st.snapshot_exporter()()
        for chunk_bytes in (1, 100, 1 << 20):
            chunks = list(st.snapshot_stream(chunk_bytes)())
            assert b"".join(chunks) == whole
        assert len(list(st.snapshot_stream(1 << 20)())) == 1
        assert len(list(st.snapshot_stream(100)())) > 100
        other = StateStore.open(str(tmp_path / "t"))
        try:
            other.import_snapshot(whole)
            assert other.state_root == st.state_root
        finally:
            other.close()
    finally:
        st.close()


def test_a_prefix_watch_moves_when_a_key_under_it_may_have_changed(
    store: StateStore, kv: KvExecutor, tmp_path: Path
) -> None:
    """What the node's cached membership relies on: a block that writes or deletes a key under the prefix, a
    snapshot import and a genesis write move the version; a block that touches nothing under it, a rejected tx
    and a stale block do not."""
    watch = store.watch(b"m/")
    assert watch.version == 0
    store.apply_block(next_block(store, kv_tx(1, ["put", b"k/1", b"one"])), kv)
    assert watch.version == 0
    store.apply_block(next_block(store, kv_tx(2, ["put", b"m/n1", b"voter"])), kv)
    assert watch.version == 1
    store.apply_block(next_block(store, kv_tx(3, ["put", b"m/n1", b"x"], ["fail", "rolled back"])), kv)
    assert watch.version == 1 and store.get(b"m/n1") == b"voter"
    stale = next_block(store, kv_tx(4, ["del", b"m/n1"]))
    store.apply_block(stale, kv)
    assert watch.version == 2 and store.get(b"m/n1") is None
    with pytest.raises(StaleBlockError):
        store.apply_block(stale, kv)
    assert watch.version == 2
    data = store.export_snapshot()
    with StateStore.open(tmp_path / "other", sync=False) as other:
        seen = other.watch(b"m/")
        other.import_snapshot(data)
        assert seen.version == 1
    with StateStore.open(tmp_path / "fresh", sync=False) as fresh:
        seen = fresh.watch(b"m/")
        fresh.init_genesis(GENESIS, [(b"m/n0", b"voter")])
        assert seen.version == 1
