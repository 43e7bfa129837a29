"""Wire codec for `Message`: msgpack arrays with a version tag, decoded strictly.

`decode_message` validates every field's type and range and raises `ProtocolError` on anything malformed — never
another exception — because its input comes from the network.

The entries of a message travel as columns, not as one array per entry, so that a batch of thousands is encoded
and validated per batch (a few C-level passes) rather than per entry in Python:

    None                                        no entries
    [index_runs, term_runs, types, datas]       n entries, where
        index_runs  [first, count, first, count, ...]  runs of consecutive indexes (one run for a normal APPEND)
        term_runs   [term, count, term, count, ...]    runs of equal terms (usually one or two)
        types       bytes, one EntryType value per entry
        datas       [bytes, ...], one per entry

Both run lists must add up to exactly n = len(datas) = len(types): a peer cannot make us expand a run beyond the
entries it actually sent.

`encode_message` packs the entries apart from the rest of the message and keeps the last such encoding: a leader
broadcasting a batch sends the same entries to every follower, and encodes them once.
"""

from __future__ import annotations

from itertools import chain, count, groupby, repeat
from operator import sub
from typing import Any, ClassVar

import msgpack

from consensus.errors import ProtocolError
from consensus.messages import (
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
    entries_from_columns,
    entry_columns,
)

WIRE_VERSION = 2
_U64_MAX = (1 << 64) - 1
_NODE_ID_MAX_LEN = 256
_MEMBERS_MAX = 1024
_ENTRY_TYPES = tuple(EntryType)
"""EntryType by value: the values are 0..n-1 (checked below), so a byte indexes this tuple directly."""
_ENTRY_TYPE_BYTES = bytes(range(len(_ENTRY_TYPES)))
assert [int(t) for t in _ENTRY_TYPES] == list(range(len(_ENTRY_TYPES)))


def encode_message(msg: Message) -> bytes:
    if msg.extra:
        raise ProtocolError("Message.extra must be empty on the wire")
    snap = msg.snapshot
    chunk = msg.chunk
    head = [WIRE_VERSION, int(msg.type), msg.from_id, msg.to, msg.term, msg.log_term, msg.index]
    tail = [
        msg.commit,
        msg.reject,
        msg.reject_hint,
        msg.hint_term,
        msg.context,
        None if snap is None else [snap.index, snap.term, list(snap.voters), list(snap.learners)],
        None if chunk is None else [chunk.offset, chunk.data, chunk.done, chunk.total_size],
    ]
    if not msg.entries:
        data: bytes = msgpack.packb([*head, None, *tail], use_bin_type=True)
        return data
    # The 15-element array spliced from its packed parts (a fixarray header is one byte: 0x90 | length), so
    # that the entries' encoding can be reused: a leader sends the same entries to each follower in turn.
    return b"".join([b"\x9f", msgpack.packb(head, use_bin_type=True)[1:], _packed_entries(msg.entries),
                     msgpack.packb(tail, use_bin_type=True)[1:]])


class _LastEntries:
    """The last entries encoded, with their encoding, replaced as one tuple. Reused when the next message carries
    equal entries (a C-level check: identical objects compare equal without calling `Entry.__eq__`), so that a
    leader's broadcast encodes its entries once, not once per follower."""

    last: ClassVar[tuple[tuple[Entry, ...], bytes]] = ((), b"")


def _packed_entries(entries: tuple[Entry, ...]) -> bytes:
    last_entries, packed = _LastEntries.last
    if entries != last_entries:
        packed = msgpack.packb(_encode_entries(entries), use_bin_type=True)
        _LastEntries.last = (entries, packed)
    return packed


def _encode_entries(entries: tuple[Entry, ...]) -> list[Any]:
    """The columns of a batch. A leader encodes thousands of entries per message, so the work is C-level passes:
    one to split the entries into columns, and one each to recognise the usual single index run and term run."""
    terms, indexes, types, datas = entry_columns(entries)
    n = len(datas)
    index_runs: list[int] = []
    if indexes == tuple(range(indexes[0], indexes[0] + n)):
        index_runs += (indexes[0], n)
    else:
        at = 0
        # Consecutive indexes share one value of (index - position): each group is one run.
        for offset, group in groupby(map(sub, indexes, count())):
            k = len(list(group))
            index_runs += (offset + at, k)
            at += k
    term_runs: list[int] = []
    if terms.count(terms[0]) == n:
        term_runs += (terms[0], n)
    else:
        for term, group in groupby(terms):
            term_runs += (term, len(list(group)))
    return [index_runs, term_runs, bytes(types), datas]


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
    return Message(
        type=MessageType(kind),
        from_id=_node_id(obj[2], "from_id"),
        to=_node_id(obj[3], "to"),
        term=_uint(obj[4], "term"),
        log_term=_uint(obj[5], "log_term"),
        index=_uint(obj[6], "index"),
        entries=() if obj[7] is None else _entries(obj[7]),
        commit=_uint(obj[8], "commit"),
        reject=_bool(obj[9], "reject"),
        reject_hint=_uint(obj[10], "reject_hint"),
        hint_term=_uint(obj[11], "hint_term"),
        context=_bytes(obj[12], "context"),
        snapshot=None if obj[13] is None else _snapshot_meta(obj[13]),
        chunk=None if obj[14] is None else _chunk(obj[14]),
    )


def _entries(v: Any) -> tuple[Entry, ...]:
    if not isinstance(v, list) or len(v) != 4:
        raise ProtocolError("message: entries must be [index_runs, term_runs, types, datas]")
    raw_index_runs, raw_term_runs, types, datas = v
    if not isinstance(types, bytes) or types.translate(None, _ENTRY_TYPE_BYTES):
        raise ProtocolError("message: entry types must be bytes of known EntryType values")
    if not isinstance(datas, list) or not datas or set(map(type, datas)) != {bytes}:
        raise ProtocolError("message: entry datas must be a non-empty array of bytes")
    n = len(datas)
    if len(types) != n:
        raise ProtocolError("message: one entry type per entry")
    index_runs = _runs(raw_index_runs, n, "entry index", consecutive=True)
    term_runs = _runs(raw_term_runs, n, "entry term", consecutive=False)
    indexes = chain.from_iterable(range(first, first + k) for first, k in index_runs)
    terms = chain.from_iterable(repeat(term, k) for term, k in term_runs)
    return tuple(entries_from_columns(terms, indexes, map(_ENTRY_TYPES.__getitem__, types), datas))


def _runs(v: Any, n: int, name: str, consecutive: bool) -> list[tuple[int, int]]:
    """Validate a flat run list [value, count, ...] covering exactly `n` entries; yields (value, count) pairs.
    Runs of consecutive values must not pass the u64 limit."""
    if not isinstance(v, list) or not v or len(v) % 2 or len(v) > 2 * n:
        raise ProtocolError(f"message: {name} runs must be [value, count, ...] pairs")
    for x in v:
        if type(x) is not int or not 0 <= x <= _U64_MAX:
            raise ProtocolError(f"message: {name} runs must hold unsigned ints")
    pairs = list(zip(v[::2], v[1::2], strict=True))
    total = 0
    for value, k in pairs:
        if k == 0 or (consecutive and value + k - 1 > _U64_MAX):
            raise ProtocolError(f"message: {name} run out of range")
        total += k
    if total != n:
        raise ProtocolError(f"message: {name} runs cover {total} entries, not {n}")
    return pairs


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
