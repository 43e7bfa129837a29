"""Wire codec for `Message`: msgpack arrays with a version tag, decoded strictly.

`decode_message` validates every field's type and range and raises `ProtocolError` on anything malformed — never
another exception — because its input comes from the network.
"""

from __future__ import annotations

from typing import Any

import msgpack

from consensus.errors import ProtocolError
from consensus.messages import Entry, EntryType, Message, MessageType, SnapshotChunk, SnapshotMeta

WIRE_VERSION = 1
_U64_MAX = (1 << 64) - 1
_NODE_ID_MAX_LEN = 256
_MEMBERS_MAX = 1024


def encode_message(msg: Message) -> bytes:
    if msg.extra:
        raise ProtocolError("Message.extra must be empty on the wire")
    snap = msg.snapshot
    chunk = msg.chunk
    obj = [
        WIRE_VERSION,
        int(msg.type),
        msg.from_id,
        msg.to,
        msg.term,
        msg.log_term,
        msg.index,
        [[e.term, e.index, int(e.type), e.data] for e in msg.entries],
        msg.commit,
        msg.reject,
        msg.reject_hint,
        msg.hint_term,
        msg.context,
        None if snap is None else [snap.index, snap.term, list(snap.voters), list(snap.learners)],
        None if chunk is None else [chunk.offset, chunk.data, chunk.done, chunk.total_size],
    ]
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def decode_message(data: bytes) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError("message: expected bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as e:  # ExtraData, FormatError, StackError, ValueError, UnicodeDecodeError, ...
        raise ProtocolError(f"message: undecodable: {type(e).__name__}") from None
    if not isinstance(obj, list) or len(obj) != 15:
        raise ProtocolError("message: expected a 15-element array")
    if obj[0] != WIRE_VERSION or isinstance(obj[0], bool):
        raise ProtocolError(f"message: unsupported version {obj[0]!r}")
    kind = _uint(obj[1], "type")
    if kind not in MessageType._value2member_map_:
        raise ProtocolError(f"message: unknown type {kind}")
    raw_entries = obj[7]
    if not isinstance(raw_entries, list):
        raise ProtocolError("message: entries must be an array")
    return Message(
        type=MessageType(kind),
        from_id=_node_id(obj[2], "from_id"),
        to=_node_id(obj[3], "to"),
        term=_uint(obj[4], "term"),
        log_term=_uint(obj[5], "log_term"),
        index=_uint(obj[6], "index"),
        entries=tuple(_entry(e) for e in raw_entries),
        commit=_uint(obj[8], "commit"),
        reject=_bool(obj[9], "reject"),
        reject_hint=_uint(obj[10], "reject_hint"),
        hint_term=_uint(obj[11], "hint_term"),
        context=_bytes(obj[12], "context"),
        snapshot=None if obj[13] is None else _snapshot_meta(obj[13]),
        chunk=None if obj[14] is None else _chunk(obj[14]),
    )


def _uint(v: Any, name: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _U64_MAX:
        raise ProtocolError(f"message: {name} must be an unsigned int")
    return v


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise ProtocolError(f"message: {name} must be a bool")
    return v


def _bytes(v: Any, name: str) -> bytes:
    if not isinstance(v, bytes):
        raise ProtocolError(f"message: {name} must be bytes")
    return v


def _node_id(v: Any, name: str) -> str:
    if not isinstance(v, str) or not v or len(v) > _NODE_ID_MAX_LEN:
        raise ProtocolError(f"message: {name} must be a non-empty string")
    return v


def _entry(v: Any) -> Entry:
    if not isinstance(v, list) or len(v) != 4:
        raise ProtocolError("message: entry must be [term, index, type, data]")
    kind = _uint(v[2], "entry.type")
    if kind not in EntryType._value2member_map_:
        raise ProtocolError(f"message: unknown entry type {kind}")
    return Entry(term=_uint(v[0], "entry.term"), index=_uint(v[1], "entry.index"), type=EntryType(kind),
                 data=_bytes(v[3], "entry.data"))


def _members(v: Any, name: str) -> tuple[str, ...]:
    if not isinstance(v, list) or len(v) > _MEMBERS_MAX:
        raise ProtocolError(f"message: {name} must be an array")
    return tuple(_node_id(x, name) for x in v)


def _snapshot_meta(v: Any) -> SnapshotMeta:
    if not isinstance(v, list) or len(v) != 4:
        raise ProtocolError("message: snapshot must be [index, term, voters, learners]")
    return SnapshotMeta(index=_uint(v[0], "snapshot.index"), term=_uint(v[1], "snapshot.term"),
                        voters=_members(v[2], "snapshot.voters"), learners=_members(v[3], "snapshot.learners"))


def _chunk(v: Any) -> SnapshotChunk:
    if not isinstance(v, list) or len(v) != 4:
        raise ProtocolError("message: chunk must be [offset, data, done, total_size]")
    chunk = SnapshotChunk(offset=_uint(v[0], "chunk.offset"), data=_bytes(v[1], "chunk.data"),
                          done=_bool(v[2], "chunk.done"), total_size=_uint(v[3], "chunk.total_size"))
    if chunk.offset + len(chunk.data) > chunk.total_size:
        raise ProtocolError("message: chunk extends past total_size")
    return chunk
