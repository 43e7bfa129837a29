"""A tiny deterministic TxExecutor for ledger tests (the ledger must not depend on ecert's rules).

A tx is msgpack `{"n": nonce, "ops": [op, ...]}` where op is one of
`["put", key, value]`, `["del", key]`, `["count", prefix, dest]` (writes the number of keys under `prefix`,
as seen by the tx itself, to `dest`: exercises scans over the overlay), `["fail", code]` (reject the tx after its
earlier ops wrote: the store must roll those writes back) and `["raise"]` (the executor raises: a rules bug).
Undecodable bytes are rejected with code "malformed". tx id = hex sha256 of the raw bytes.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from ledger.executor import BlockContext, TxOutcome
from ledger.state_view import StateView


class ExecutorBug(Exception):
    pass


def kv_tx(nonce: Any, *ops: list[Any]) -> bytes:
    return msgpack.packb({"n": nonce, "ops": list(ops)}, use_bin_type=True)


class KvExecutor:
    chain_id = "kv-test"

    def tx_id(self, raw: bytes) -> str:
        return hashlib.sha256(raw).hexdigest()

    def execute(self, view: StateView, raw: bytes, ctx: BlockContext) -> TxOutcome:
        tx_id = self.tx_id(raw)
        try:
            tx = msgpack.unpackb(raw, raw=False)
            ops = tx["ops"]
        except Exception:
            return TxOutcome.rejected(tx_id, "malformed", "not a kv tx")
        for op in ops:
            kind = op[0]
            if kind == "put":
                view.put(op[1], op[2])
            elif kind == "del":
                view.delete(op[1])
            elif kind == "count":
                view.put(op[2], str(sum(1 for _ in view.scan(op[1]))).encode())
            elif kind == "fail":
                return TxOutcome.rejected(tx_id, op[1], "asked to fail")
            elif kind == "raise":
                raise ExecutorBug("asked to raise")
        return TxOutcome.committed(tx_id, {"ops": len(ops), "height": ctx.height})


def apply_to_model(model: dict[bytes, bytes], raw: bytes, seen: set[str]) -> None:
    """What KvExecutor + StateStore do to a plain dict (the reference model for stateful tests)."""
    tx_id = hashlib.sha256(raw).hexdigest()
    if tx_id in seen:
        return
    seen.add(tx_id)
    scratch = dict(model)
    for op in msgpack.unpackb(raw, raw=False)["ops"]:
        if op[0] == "put":
            scratch[op[1]] = op[2]
        elif op[0] == "del":
            scratch.pop(op[1], None)
        elif op[0] == "count":
            scratch[op[2]] = str(sum(1 for k in scratch if k.startswith(op[1]))).encode()
        elif op[0] == "fail":
            return
    model.clear()
    model.update(scratch)
