"""Applying one block, up to its WriteBatch: does it chain onto the head, and what do its txs do.

`check_chaining` is the whole validity rule of a block against the head (a failure is a `StaleBlockError`,
which every replica hits identically, so the node skips the entry). `run_block` executes the txs in order over
one `OverlayView` of the committed state, a savepoint per tx, rolled back if the tx is rejected; a tx id
applied before (in an earlier block or earlier in this one) is not executed again and reports its first
outcome. Nothing here writes: the store commits what `run_block` returns in one batch (ledger/store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.invariant import require
from ledger.block import Block, header_problem, txs_problem
from ledger.committed_view import BlockReadView
from ledger.errors import StaleBlockError
from ledger.executor import (
    STATUS_REJECTED,
    BlockContext,
    TxExecutor,
    TxOutcome,
    TxRecord,
    decode_tx_record,
    encode_tx_record,
)
from ledger.merkle import tx_root
from ledger.schema import TX, TX_ID_CHARS_MAX, Head
from ledger.state_view import OverlayView


def check_chaining(head: Head, block: Block) -> None:
    """Raise StaleBlockError unless `block` is well-formed and extends `head`: the next height, the head's
    hash as prev_hash, a time not before the head's, a tx_root of its txs."""
    header = block.header
    problem = header_problem(header) or txs_problem(block.txs)
    if problem is not None:
        raise StaleBlockError("malformed", f"block is malformed: {problem}")
    if header.height != head.height + 1:
        raise StaleBlockError("height", f"block height {header.height}, expected {head.height + 1}")
    if header.prev_hash != head.block_hash:
        raise StaleBlockError(
            "prev_hash",
            f"block {header.height} prev_hash {header.prev_hash.hex()[:16]}.. "
            f"does not match head {head.block_hash.hex()[:16]}..",
        )
    if header.time < head.time:
        raise StaleBlockError("time", f"block time {header.time} before head time {head.time}")
    if header.tx_root != tx_root(block.txs):
        raise StaleBlockError("tx_root", f"block {header.height} tx_root does not match its txs")


@dataclass(frozen=True, slots=True)
class BlockRun:
    """What executing a block produced, for the store to commit."""

    outcomes: list[TxOutcome]
    """One per tx, in block order (a repeated tx id: its first outcome)."""
    tx_ids: list[str]
    """The tx id at each position."""
    tx_records: dict[str, bytes]
    """Encoded `TxRecord` of each tx id applied for the first time in this block."""
    changes: dict[bytes, bytes | None]
    """Net state writes (None: deleted)."""
    read: dict[bytes, bytes | None]
    """Committed values the block read (key -> value or None)."""


def run_block(db: Any, block: Block, executor: TxExecutor, chain_id: str) -> BlockRun:
    """Execute `block`'s txs over the committed state in `db` (read only). An exception from the executor
    propagates."""
    header = block.header
    ctx = BlockContext(header.height, header.time, header.proposer, chain_id)
    base = BlockReadView(db)
    overlay = OverlayView(base)
    outcomes: list[TxOutcome] = []
    tx_ids: list[str] = []
    new_records: dict[str, bytes] = {}
    # Optional hook: what falls due at block time without a tx (ecert: acceptance deadlines). Its writes are
    # the block's, before the first tx, so every replica makes them and the state root covers them.
    begin_block = getattr(executor, "begin_block", None)
    if begin_block is not None:
        begin_block(overlay, ctx)
    for position, raw in enumerate(block.txs):
        tx_id = executor.tx_id(raw)
        # `if not ...: require(False, f"...")` on hot paths: the message is formatted only on failure.
        if not (type(tx_id) is str and 0 < len(tx_id) <= TX_ID_CHARS_MAX and tx_id.isascii()):
            require(False, f"executor gave a bad tx id {tx_id!r}")
        tx_ids.append(tx_id)
        earlier = new_records.get(tx_id)
        if earlier is None:
            earlier = db.get(TX + tx_id.encode("ascii"))
        if earlier is not None:
            outcomes.append(decode_tx_record(earlier).outcome)
            continue
        savepoint = overlay.savepoint()
        outcome = executor.execute(overlay, raw, ctx)
        require(isinstance(outcome, TxOutcome), "executor must return a TxOutcome")
        if outcome.tx_id != tx_id:
            require(False, f"executor outcome tx id {outcome.tx_id} != {tx_id}")
        if outcome.status == STATUS_REJECTED:
            overlay.rollback(savepoint)
        encoded = encode_tx_record(TxRecord(header.height, position, outcome))
        new_records[tx_id] = encoded
        # Hand back what a later read returns (msgpack-normalised), so callers see one shape; a result of
        # str-keyed maps, lists and scalars already has it (the common case: skip the decode).
        outcomes.append(outcome if _plain(outcome.result) else decode_tx_record(encoded).outcome)
    return BlockRun(outcomes, tx_ids, new_records, overlay.changes(), base.read)


_PLAIN_SCALARS = (str, int, bytes, bool, type(None))


def _plain(value: Any) -> bool:
    """True if msgpack (use_bin_type, raw=False, use_list) round-trips `value` to an equal value of the same
    types: maps with str keys, lists, str, int, bytes, bool, None."""
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False
