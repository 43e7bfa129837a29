"""Every limit of the core, named and validated once at start (etcd's raft.Config.validate)."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.errors import ConfigError
from consensus.invariant import require
from consensus.messages import NodeId

# Defaults of the size limits, named so that a host can assert its own limits against them (node/transport.py:
# a peer frame must hold the largest message the core sends).
MSG_BYTES_MAX_DEFAULT = 1 << 20
UNCOMMITTED_BYTES_MAX_DEFAULT = 64 << 20
SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT = 256 << 10
require(MSG_BYTES_MAX_DEFAULT <= UNCOMMITTED_BYTES_MAX_DEFAULT,
        "the default max_uncommitted_bytes must be at least the default max_msg_bytes (see Config)")


@dataclass(frozen=True, slots=True)
class Config:
    id: NodeId
    election_ticks: int = 10
    """Minimum election timeout in ticks; the randomized timeout is drawn from [election_ticks, 2*election_ticks)."""
    heartbeat_ticks: int = 1
    """A leader sends heartbeats every `heartbeat_ticks` ticks; must be below `election_ticks`."""
    max_inflight_msgs: int = 256
    """Max unacknowledged AppendEntries per follower in the replicate state (pipelining window)."""
    max_msg_bytes: int = MSG_BYTES_MAX_DEFAULT
    """Max entry data bytes per AppendEntries (and per Ready's committed entries); a single larger entry still
    goes alone."""
    max_uncommitted_bytes: int = UNCOMMITTED_BYTES_MAX_DEFAULT
    """A leader drops proposals while the data of its uncommitted (not yet applied) tail exceeds this."""
    max_snapshot_chunk_bytes: int = SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT
    """InstallSnapshot carries the snapshot's data in chunks of at most this many bytes."""
    pre_vote: bool = True
    check_quorum: bool = True
    max_pending_reads: int = 4096
    """ReadIndex requests a leader holds at once (waiting for its first commit or for a heartbeat quorum);
    more are refused with ProposalDroppedError (local) or dropped (forwarded)."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError("id must be a non-empty string")
        _positive("election_ticks", self.election_ticks)
        _positive("heartbeat_ticks", self.heartbeat_ticks)
        if self.heartbeat_ticks >= self.election_ticks:
            raise ConfigError("heartbeat_ticks must be below election_ticks")
        _positive("max_inflight_msgs", self.max_inflight_msgs)
        _positive("max_msg_bytes", self.max_msg_bytes)
        _positive("max_uncommitted_bytes", self.max_uncommitted_bytes)
        _positive("max_snapshot_chunk_bytes", self.max_snapshot_chunk_bytes)
        _positive("max_pending_reads", self.max_pending_reads)
        if self.max_uncommitted_bytes < self.max_msg_bytes:
            raise ConfigError("max_uncommitted_bytes must be at least max_msg_bytes")
        for name in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool")


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
