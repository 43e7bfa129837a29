"""Membership changes one server at a time (Raft thesis §4.1; paper §6).

A change is proposed as a CONF_CHANGE log entry and takes effect on every node when that entry is *applied*
(etcd-io/raft's approach): the driver calls `Raft.apply_conf_change`. Safety relies on at most one change being
pending at a time and on a new leader not proposing one before its own no-op is applied.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from consensus.errors import ProtocolError
from consensus.messages import NodeId

_NODE_ID_MAX_LEN = 256


class ConfChangeType(enum.IntEnum):
    ADD_VOTER = 0
    """Add a new voter, or promote a learner to voter."""
    ADD_LEARNER = 1
    """Add a learner (receives the log, never votes or counts for quorum). Ignored for an existing voter."""
    REMOVE_NODE = 2


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: NodeId


def encode_conf_change(cc: ConfChange) -> bytes:
    data: bytes = msgpack.packb([int(cc.type), cc.node_id], use_bin_type=True)
    return data


def decode_conf_change(data: bytes) -> ConfChange:
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # msgpack raises many types (ExtraData, ValueError, TypeError, ...)
        raise ProtocolError(f"conf change: undecodable: {e}") from None
    if not isinstance(obj, list) or len(obj) != 2:
        raise ProtocolError("conf change: expected [type, node_id]")
    kind, node_id = obj
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in ConfChangeType._value2member_map_:
        raise ProtocolError(f"conf change: bad type {kind!r}")
    if not isinstance(node_id, str) or not node_id or len(node_id) > _NODE_ID_MAX_LEN:
        raise ProtocolError("conf change: bad node_id")
    return ConfChange(ConfChangeType(kind), node_id)
