"""Replays recorded chains through a real StateStore and prints what they produced (tests/test_compiled.py runs it
once from the pure tree and once from the compiled one: `python -m tests.compiled_replay IN OUT`).

IN (msgpack): a list of chains, each `[genesis_hash, [[key, value], ...], chain_id, genesis_time, [[time, [raw
tx, ...]], ...]]`. OUT (JSON): `python_path`, how many blocks and txs were applied, and per chain one sha256 over
every block's hash, state root and encoded tx records in order."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import msgpack

from ecert.executor import EcertExecutor
from ecert.state import CERT_INDEX
from ledger.block import make_block
from ledger.executor import TxRecord, encode_tx_record
from ledger.store import StateStore
from node.build_info import python_path


def replay(chains: list[list[object]]) -> dict[str, object]:
    digests, blocks, txs = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (ghash, writes, chain_id, gtime, recorded) in enumerate(chains):  # type: ignore[misc]
            digest = hashlib.sha256()
            with StateStore.open(Path(tmp) / str(n), paranoid=True, sync=False, index=CERT_INDEX) as store:
                store.init_genesis(ghash, [tuple(w) for w in writes], chain_id=chain_id, genesis_time=gtime)
                executor = EcertExecutor(chain_id)
                for time, raws in recorded:
                    block = make_block(store.height + 1, store.block_hash, time, "n1", tuple(raws))
                    outcomes = store.apply_block(block, executor)
                    digest.update(store.block_hash + store.state_root)
                    for position, outcome in enumerate(outcomes):
                        digest.update(encode_tx_record(TxRecord(store.height, position, outcome)))
                    blocks, txs = blocks + 1, txs + len(raws)
                store.check_integrity()
            digests.append(digest.hexdigest())
    return {"python_path": python_path(), "blocks": blocks, "txs": txs, "chains": digests}


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    chains = msgpack.unpackb(Path(source).read_bytes(), raw=False, use_list=True)
    Path(target).write_text(json.dumps(replay(chains)))


if __name__ == "__main__":
    main()
