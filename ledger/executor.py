"""The seam between the chain and the transaction rules: the store calls a `TxExecutor` for each tx of a block.

The ledger knows nothing of E-certificates: it hands the executor one raw tx, a `StateView` to read and write
(an overlay the store rolls back if the outcome is "rejected"), and the `BlockContext` (the block's height and
time are the only clock and height a rule may read). The executor returns a `TxOutcome`; it must be a pure,
deterministic function of (state, raw, ctx): same inputs, same outcome and same writes on every node.

Rejections are outcomes, not exceptions: an executor that raises has a bug, and the store lets it propagate
(the block is not committed), rather than guess at an outcome that other nodes might not share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from consensus.invariant import require
from ledger.state_view import StateView

STATUS_COMMITTED = "committed"
STATUS_REJECTED = "rejected"
TX_STATUSES = (STATUS_COMMITTED, STATUS_REJECTED)


@dataclass(frozen=True, slots=True)
class BlockContext:
    height: int
    """Height of the block being applied (the first block after genesis is 1)."""
    time: int
    """Block time in ms since the Unix epoch, set by the proposer, never decreasing along the chain."""
    proposer: str
    """Node id of the proposing leader."""
    chain_id: str


@dataclass(frozen=True, slots=True)
class TxOutcome:
    tx_id: str
    """Lowercase hex sha256 of the tx payload (see `TxExecutor.tx_id`)."""
    status: str
    """"committed" (its writes are kept) or "rejected" (its writes are rolled back)."""
    result: Mapping[str, Any] | None = None
    """For a committed tx: a msgpack-able map (str keys; ints, str, bytes, bool, None, lists, maps; no floats)."""
    error_code: str | None = None
    """For a rejected tx: the stable snake_case code of the rule it broke."""
    error_message: str | None = None

    def __post_init__(self) -> None:
        require(self.status in TX_STATUSES, f"tx status {self.status!r} not in {TX_STATUSES}")
        if self.status == STATUS_REJECTED:
            require(self.error_code is not None, "a rejected tx outcome needs an error_code")

    @classmethod
    def committed(cls, tx_id: str, result: Mapping[str, Any] | None = None) -> TxOutcome:
        return cls(tx_id, STATUS_COMMITTED, dict(result) if result is not None else {}, None, None)

    @classmethod
    def rejected(cls, tx_id: str, code: str, message: str) -> TxOutcome:
        return cls(tx_id, STATUS_REJECTED, None, code, message)

    def to_json(self) -> dict[str, Any]:
        """The CONTRACT §4 shape minus height: {"tx_id", "status", "result" | "error": {"code", "message"}}."""
        if self.status == STATUS_COMMITTED:
            return {"tx_id": self.tx_id, "status": self.status, "result": _jsonable(self.result or {})}
        return {
            "tx_id": self.tx_id,
            "status": self.status,
            "error": {"code": self.error_code, "message": self.error_message or ""},
        }


@dataclass(frozen=True, slots=True)
class TxRecord:
    """Where and how a tx was applied: what `StateStore.tx_outcome(tx_id)` returns."""

    height: int
    """Height of the block that first carried this tx id."""
    position: int
    """Index of the tx in that block's tx list."""
    outcome: TxOutcome

    def to_json(self) -> dict[str, Any]:
        answer = self.outcome.to_json()
        answer["height"] = self.height
        answer["position"] = self.position
        return answer


class TxExecutor(Protocol):
    def tx_id(self, raw: bytes) -> str:
        """Lowercase hex sha256 of the payload inside the envelope; hex sha256(raw) if `raw` is undecodable."""
        ...

    def execute(self, view: StateView, raw: bytes, ctx: BlockContext) -> TxOutcome:
        """Apply one tx. Must not raise for bad input (return a rejected outcome); must be deterministic."""
        ...


# An executor may also define `begin_block(view, ctx) -> None`: ledger/apply.py calls it once per block, before
# the first tx, on the block's overlay (nothing written yet). It must be deterministic like `execute`, and bounded
# per block; an exception propagates as from `execute`. Optional, so it is not part of the Protocol.


_packer = msgpack.Packer(use_bin_type=True)
"""Reused: `msgpack.packb` builds a Packer per call. `pack` runs in C under the GIL, so sharing is safe."""


# Encoding of outcomes for the store (msgpack array, versioned by position: new fields go at the end).


def encode_tx_record(record: TxRecord) -> bytes:
    o = record.outcome
    result = None if o.result is None else dict(o.result)
    # Floats could round differently across platforms; state and outcomes are integers only.
    require(not _has_float(result), f"tx {o.tx_id}: outcome result contains a float")
    row = [record.height, record.position, o.tx_id, o.status, result, o.error_code, o.error_message]
    try:
        return _packer.pack(row)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        # The executor produced a result we cannot store identically everywhere: a bug in the rules.
        require(False, f"tx {o.tx_id}: outcome result is not msgpack-able: {exc}")
        raise  # unreachable: require raised


def decode_tx_record(data: bytes) -> TxRecord:
    row = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    require(isinstance(row, list) and len(row) >= 7, "stored tx record is malformed")
    height, position, tx_id, status, result, error_code, error_message = row[:7]
    return TxRecord(height, position, TxOutcome(tx_id, status, result, error_code, error_message))


_SCALARS = (str, int, bytes, bool, type(None))


def _has_float(value: Any) -> bool:
    if type(value) in _SCALARS:  # the common case first: isinstance against the Mapping ABC is slow
        return False
    if isinstance(value, float):
        return True
    if type(value) is dict or isinstance(value, Mapping):
        return any(_has_float(k) or _has_float(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_float(v) for v in value)
    return False


def _jsonable(value: Any) -> Any:
    """bytes -> lowercase hex, recursively, so a result can go into JSON."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
