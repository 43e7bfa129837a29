"""Subprocess for the crash test: applies a deterministic block sequence to a store, printing each new head.

    python -m tests.ledger.crash_worker PATH SEED LAST_HEIGHT

Block contents depend only on (seed, height); block chaining on the store's head. So any process, resumed at
any height, builds the same blocks as an uninterrupted run.
"""

from __future__ import annotations

import random
import sys

from ledger.block import Block, make_block
from ledger.store import StateStore
from tests.ledger.kv_executor import KvExecutor, kv_tx

GENESIS = b"\x42" * 32
TXS_PER_BLOCK = 60


def block_txs(seed: int, height: int) -> tuple[bytes, ...]:
    rng = random.Random(seed * 1_000_003 + height)
    txs = []
    for i in range(TXS_PER_BLOCK):
        ops: list[list[object]] = []
        for _ in range(rng.randrange(1, 6)):
            key = f"k/{rng.randrange(400)}".encode()
            if rng.random() < 0.2:
                ops.append(["del", key])
            else:
                ops.append(["put", key, rng.randbytes(rng.randrange(1, 2048))])
        if rng.random() < 0.1:
            ops.append(["fail", "nope"])
        txs.append(kv_tx(f"{height}/{i}", *ops))
    if height > 1 and rng.random() < 0.5:
        txs.append(block_txs(seed, height - 1)[0])  # a replay of an applied tx
    return tuple(txs)


def open_store(path: str) -> StateStore:
    store = StateStore.open(path, sync=False)
    store.init_genesis(GENESIS, [(b"genesis", b"1")])
    return store


def next_block(store: StateStore, seed: int) -> Block:
    h = store.height + 1
    return make_block(h, store.block_hash, h * 10, "worker", block_txs(seed, h))


def main() -> None:
    path, seed, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = open_store(path)
    executor = KvExecutor()
    print(f"start {store.height}", flush=True)
    while store.height < last:
        store.apply_block(next_block(store, seed), executor)
        print(f"applied {store.height} {store.state_root.hex()}", flush=True)
    store.close()


if __name__ == "__main__":
    main()
