"""A derived index beside the state root (ledger/derived_index.py): written in the block's batch and readable
like state, left out of the root and of snapshots, rebuilt on import, and bound to the store it was made with."""

from __future__ import annotations

from pathlib import Path

import msgpack
import plyvel
import pytest

from consensus.invariant import InvariantViolation
from ledger.block import make_block
from ledger.errors import SnapshotError
from ledger.state_root import state_root_of
from ledger.store import StateStore
from tests.ledger.conftest import GENESIS
from tests.ledger.kv_executor import KvExecutor, kv_tx
from tests.ledger.test_store import _rewrite_snapshot


class OwnerIndex:
    """`c/<id>` -> owner name; the index `i/<owner>/<id>` -> b"" lists each owner's items."""

    prefixes = (b"i/",)

    def entries(self, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        if not key.startswith(b"c/"):
            return []
        return [(b"i/" + value + b"/" + key[2:], b"")]


INDEX = OwnerIndex()


def _block(store: StateStore, *txs: bytes) -> object:
    return make_block(store.height + 1, store.block_hash, 1000 + store.height + 1, "n1", tuple(txs))


def _give(nonce: int, item: str, owner: str, before: str | None = None) -> bytes:
    """The app's write of an item and its index entries (what ecert's put_cert does for certificates)."""
    ops: list[list[object]] = [["put", f"c/{item}".encode(), owner.encode()], ["put", f"i/{owner}/{item}".encode(), b""]]
    if before is not None:
        ops.append(["del", f"i/{before}/{item}".encode()])
    return kv_tx(nonce, *ops)


def _open(path: Path) -> StateStore:
    store = StateStore.open(path, paranoid=True, sync=False, index=INDEX)
    store.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
    return store


def test_index_keys_are_state_but_not_under_the_root(tmp_path: Path) -> None:
    kv = KvExecutor()
    with _open(tmp_path / "a") as store:
        store.apply_block(_block(store, _give(1, "x", "ann"), _give(2, "y", "ann")), kv)  # type: ignore[arg-type]
        store.apply_block(_block(store, _give(3, "x", "bob", before="ann")), kv)  # type: ignore[arg-type]
        assert [k for k, _ in store.scan(b"i/")] == [b"i/ann/y", b"i/bob/x"]
        rooted = [(k, v) for k, v in store.scan(b"") if not k.startswith(b"i/")]
        assert store.state_root == state_root_of(rooted) != state_root_of(store.scan(b""))
        store.check_integrity()
        # The same state without its index has the same root: the root does not commit to index keys.
        with StateStore.open(tmp_path / "plain", sync=False) as plain:
            plain.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
            plain.apply_block(_block(plain, kv_tx(1, *[["put", k, v] for k, v in rooted if k != b"org/bank"])), kv)  # type: ignore[arg-type]
            assert plain.state_root == store.state_root


def test_a_snapshot_leaves_the_index_out_and_the_import_rebuilds_it(tmp_path: Path) -> None:
    kv = KvExecutor()
    with _open(tmp_path / "a") as store, _open(tmp_path / "b") as other:
        store.apply_block(_block(store, *[_give(i, f"it{i}", f"o{i % 3}") for i in range(40)]), kv)  # type: ignore[arg-type]
        data = store.export_snapshot()
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(data)
        shipped = [row[1] for row in list(unpacker)[1:-1] if row[0] == 0]
        assert shipped and not any(key.startswith(b"i/") for key in shipped)
        other.import_snapshot(data)
        assert list(other.scan(b"")) == list(store.scan(b""))
        assert other.state_root == store.state_root
        other.check_integrity()


def test_a_snapshot_that_ships_index_keys_is_refused(tmp_path: Path) -> None:
    """A sender cannot hand over index entries of its own: only the state the root vouches for is taken."""
    kv = KvExecutor()
    with StateStore.open(tmp_path / "plain", sync=False) as plain, _open(tmp_path / "b") as other:
        plain.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
        plain.apply_block(_block(plain, _give(1, "x", "ann"), kv_tx(2, ["put", b"i/eve/x", b""])), kv)  # type: ignore[arg-type]
        data = plain.export_snapshot()  # a store without the index ships i/ keys under its root
        before = other.head
        with pytest.raises(SnapshotError, match="derived index key"):
            other.import_snapshot(data)
        with pytest.raises(SnapshotError, match="format 2"):
            other.import_snapshot(_rewrite_snapshot(data, 2, plain.state_root))
        assert other.head == before
        other.check_integrity()


def test_an_index_that_disagrees_with_the_state_stops_the_store(tmp_path: Path) -> None:
    kv = KvExecutor()
    with _open(tmp_path / "a") as store, pytest.raises(InvariantViolation, match="derived index differs"):
        # a rules bug: the item is written without its index entry (paranoid stores check every block)
        store.apply_block(_block(store, kv_tx(1, ["put", b"c/x", b"ann"])), kv)  # type: ignore[arg-type]


def test_a_store_opens_only_with_the_index_it_was_made_with(tmp_path: Path) -> None:
    kv = KvExecutor()
    with _open(tmp_path / "a") as store:
        store.apply_block(_block(store, _give(1, "x", "ann")), kv)  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation, match="derived index"):
        StateStore.open(tmp_path / "a", sync=False)
    with StateStore.open(tmp_path / "a", sync=False, index=INDEX) as again:
        again.check_integrity()


def test_a_format_3_store_is_bound_to_the_index_unless_it_hashed_index_keys(tmp_path: Path) -> None:
    kv = KvExecutor()
    for name, txs in (("clean", [kv_tx(1, ["put", b"c0", b"v"])]), ("hashed", [_give(1, "x", "ann")])):
        path = tmp_path / name
        with StateStore.open(path, sync=False) as old:  # no index: every key under the root
            old.init_genesis(GENESIS, [(b"org/bank", b"active")], chain_id="kv-test", genesis_time=1000)
            old.apply_block(_block(old, *txs), kv)  # type: ignore[arg-type]
            root = old.state_root
        db = plyvel.DB(str(path))
        db.put(b"Mformat", b"3")  # what a store written before format 4 looks like
        db.delete(b"Mindex")
        db.close()
        if name == "clean":
            with StateStore.open(path, sync=False, index=INDEX) as store:
                assert store.state_root == root
                store.check_integrity()
        else:
            with pytest.raises(InvariantViolation, match="rebuild the store"):
                StateStore.open(path, sync=False, index=INDEX)
            db = plyvel.DB(str(path))
            assert db.get(b"Mformat") == b"3"  # nothing was written
            db.close()
