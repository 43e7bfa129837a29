"""Cheap checks a node runs before it queues a tx for a block (so garbage never reaches consensus).

`precheck` decodes strictly, checks the chain id, verifies the signature against the signer's key in the
node's current state (after an `org.rotate_key` is applied, the new key: a tx signed with the old one is
refused here and, if it was queued before, again at apply), and checks the signer is active, a regulator signs
only what it may, and the nonce is unused. It does not run the rules: state
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
