"""Codec round-trips for every message shape, and strictness: malformed input raises ProtocolError only."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import decode_message, encode_message
from consensus.errors import ProtocolError
from consensus.membership import ConfChange, ConfChangeType, decode_conf_change, encode_conf_change
from consensus.messages import Entry, EntryType, Message, MessageType, SnapshotChunk, SnapshotMeta

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
small = st.integers(min_value=0, max_value=1 << 40)
node_ids = st.text(min_size=1, max_size=12)
entries = st.builds(Entry, term=small, index=small, type=st.sampled_from(EntryType), data=st.binary(max_size=64))
metas = st.builds(SnapshotMeta, index=small, term=small, voters=st.lists(node_ids, max_size=5).map(tuple),
                  learners=st.lists(node_ids, max_size=3).map(tuple))


@st.composite
def chunks(draw: st.DrawFn) -> SnapshotChunk:
    data = draw(st.binary(max_size=64))
    offset = draw(st.integers(min_value=0, max_value=1000))
    extra = draw(st.integers(min_value=0, max_value=1000))
    total = offset + len(data) + extra
    return SnapshotChunk(offset=offset, data=data, done=extra == 0, total_size=total)


messages = st.builds(
    Message,
    type=st.sampled_from(MessageType), from_id=node_ids, to=node_ids, term=u64, log_term=u64, index=u64,
    entries=st.lists(entries, max_size=4).map(tuple), commit=u64, reject=st.booleans(), reject_hint=u64,
    hint_term=u64, context=st.binary(max_size=16), snapshot=st.none() | metas, chunk=st.none() | chunks(),
)


@given(messages)
@settings(max_examples=150, deadline=None)
def test_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data)


@given(messages, st.data())
@settings(max_examples=150, deadline=None)
def test_corrupted_fields_raise_protocol_error(msg: Message, data: st.DataObject) -> None:
    obj = msgpack.unpackb(encode_message(msg), raw=False)
    i = data.draw(st.integers(min_value=0, max_value=len(obj) - 1))
    bad = data.draw(st.sampled_from([-1, "x", b"x", 1.5, None, [], {}, True]))
    if bad is None and i in (13, 14):
        return  # snapshot/chunk may be nil
    if isinstance(bad, bool) and i == 9:
        return  # reject is a bool
    if isinstance(bad, bytes) and i == 12:
        return  # context is bytes
    if isinstance(bad, str) and i in (2, 3):
        return  # ids are strings
    if isinstance(bad, list) and i == 7:
        return  # an empty entry list is valid
    obj[i] = bad
    with pytest.raises(ProtocolError):
        decode_message(msgpack.packb(obj, use_bin_type=True))


@given(st.binary(min_size=1, max_size=100), st.integers(min_value=1, max_value=40))
@settings(max_examples=100, deadline=None)
def test_truncated_message_raises_protocol_error(ctx: bytes, cut: int) -> None:
    wire = encode_message(Message(MessageType.APPEND, "a", "b", 3, entries=(Entry(3, 4, data=ctx),)))
    with pytest.raises(ProtocolError):
        decode_message(wire[:-cut] if cut < len(wire) else wire[:1])


@pytest.mark.parametrize("obj", [
    [2, 1, "a", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, None],  # unknown version
    [1, 99, "a", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, None],  # unknown type
    [1, 1, "", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, None],  # empty id
    [1, 1, "a", "b", 0, 0, 0, [[1, 1, 7, b""]], 0, False, 0, 0, b"", None, None],  # unknown entry type
    [1, 1, "a", "b", 0, 0, 0, [], 0, 0, 0, 0, b"", None, None],  # reject not a bool
    [1, 9, "a", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, [5, b"xx", True, 6]],  # chunk past total
    [True, 1, "a", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, None],  # bool version
    {"type": 1},
])
def test_malformed_shapes(obj: object) -> None:
    with pytest.raises(ProtocolError):
        decode_message(msgpack.packb(obj, use_bin_type=True))


def test_extra_must_be_empty_on_the_wire() -> None:
    with pytest.raises(ProtocolError):
        encode_message(Message(MessageType.APPEND, "a", "b", 1, extra={"x": 1}))


@given(st.sampled_from(ConfChangeType), node_ids)
def test_conf_change_round_trip(kind: ConfChangeType, nid: str) -> None:
    cc = ConfChange(kind, nid)
    assert decode_conf_change(encode_conf_change(cc)) == cc


@given(st.binary(max_size=50))
@settings(max_examples=200, deadline=None)
def test_conf_change_malformed(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_conf_change(data)
