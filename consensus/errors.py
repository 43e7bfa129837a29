"""The consensus package's exceptions: one hierarchy, each with a stable snake_case `code`.

Two families, as in h11: the *caller* misused the API (`ConfigError`, `NotLeaderError`, `ProposalDroppedError`,
`InvalidRequestError`)
or a *peer* broke the protocol (`ProtocolError`, raised by the codec on malformed bytes).
"""

from __future__ import annotations

from typing import ClassVar

from consensus.messages import NodeId


class RaftError(Exception):
    code: ClassVar[str] = "raft_error"


class ConfigError(RaftError):
    """A `Config` limit is missing, out of range or inconsistent with another."""

    code: ClassVar[str] = "invalid_config"


class NotLeaderError(RaftError):
    """The request needs the leader; `leader_id` is the leader this node knows of (None if none)."""

    code: ClassVar[str] = "not_leader"

    def __init__(self, leader_id: NodeId | None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id


class ProposalDroppedError(RaftError):
    """The leader refused a proposal: a leadership transfer or a conf change is pending, or the uncommitted
    tail is over `max_uncommitted_bytes`. Retrying later may succeed."""

    code: ClassVar[str] = "proposal_dropped"


class InvalidRequestError(RaftError):
    """The caller passed an argument the core cannot act on (e.g. an empty ReadIndex context)."""

    code: ClassVar[str] = "invalid_request"


class ProtocolError(RaftError):
    """Bytes from a peer are not a well-formed message (or conf change)."""

    code: ClassVar[str] = "protocol_error"
