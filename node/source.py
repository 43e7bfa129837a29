"""The read-only view of a running node that the dashboard, metrics and alarms use (docs/INTERFACES.md).

They code against this Protocol, never against the node's internals, so the node can change shape freely.
"""

from __future__ import annotations

from typing import Any, Protocol


class NodeSource(Protocol):
    def status(self) -> dict[str, Any]:
        """CONTRACT §4 /v1/status: node_id, org, pid, role, term, leader_id, commit_index, applied_index,
        height, block_hash, state_root (plus chain_id, apply_error and a few extras)."""
        ...

    def peers(self) -> list[dict[str, Any]]:
        """One row per other node: id, org, http, match_index, lag, last_contact_ms (wall clock ms or None),
        reachable."""
        ...

    def recent_blocks(self, before: int | None, limit: int, tx_ids: bool = False) -> list[dict[str, Any]]:
        """Up to `limit` blocks, newest first, heights < `before`: each its header fields, `hash` and `tx_count`,
        and with `tx_ids` its `tx_ids` too (then as many blocks as fit in HTTP_BLOCKS_PAGE_TX_IDS_MAX ids, and
        at least one: node/http/openapi.py)."""
        ...

    def block_txs(self, height: int) -> list[dict[str, Any]]:
        """The txs of one block with their outcome: tx_id, type, signer, status, result | error."""
        ...

    def alarms(self) -> list[dict[str, Any]]:
        """Alarms the node raises itself: name, severity, subject, message."""
        ...

    def memory(self) -> dict[str, int]:
        """Bytes held in memory by part (part name -> bytes); optional: a source without it reports none."""
        ...

    def connections(self) -> dict[str, int]:
        """What strangers hold of the node (docs/CONTRACT.md "Connections and logs a node keeps"): `http_open`,
        `peer_handshaking` (now) and `http_refused`, `peer_refused` (since start); optional, like `memory`."""
        ...
