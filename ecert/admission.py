"""Cheap checks a node runs before it queues a tx for a block (so garbage never reaches consensus).

`precheck` decodes strictly, checks the chain id, verifies the signature against the signer's key in the
node's current state, and checks the signer is active and the nonce unused. It does not run the rules: state
may change before the tx is applied, and the rules run again, deterministically, at apply time.
"""

from __future__ import annotations

from ecert.executor import authenticate
from ecert.tx import decode_tx
from ledger.state_view import StateView


def precheck(view: StateView, raw: bytes, chain_id: str) -> str:
    """Return the tx id, or raise `TxRejected` with the code of the first failed check."""
    tx = decode_tx(raw, chain_id)
    authenticate(view, tx)
    return tx.tx_id
