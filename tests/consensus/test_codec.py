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
    if bad is None and i in (7, 13, 14):
        return  # entries/snapshot/chunk may be nil
    if isinstance(bad, bool) and i == 9:
        return  # reject is a bool
    if isinstance(bad, bytes) and i == 12:
        return  # context is bytes
    if isinstance(bad, str) and i in (2, 3):
        return  # ids are strings
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
    [1, 1, "a", "b", 0, 0, 0, None, 0, False, 0, 0, b"", None, None],  # unknown version (1: per-entry arrays)
    [1, 99, "a", "b", 0, 0, 0, None, 0, False, 0, 0, b"", None, None],  # unknown type
    [1, 1, "", "b", 0, 0, 0, None, 0, False, 0, 0, b"", None, None],  # empty id
    [1, 1, "a", "b", 0, 0, 0, [[1, 1], [1, 1], b"\x07", [b""]], 0, False, 0, 0, b"", None, None],  # unknown entry type
    [1, 1, "a", "b", 0, 0, 0, None, 0, 0, 0, 0, b"", None, None],  # reject not a bool
    [1, 9, "a", "b", 0, 0, 0, None, 0, False, 0, 0, b"", None, [5, b"xx", True, 6]],  # chunk past total
    [True, 1, "a", "b", 0, 0, 0, None, 0, False, 0, 0, b"", None, None],  # bool version
    [2, 1, "a", "b", 0, 0, 0, [], 0, False, 0, 0, b"", None, None],  # entries: no columns
    {"type": 1},
])
def test_malformed_shapes(obj: object) -> None:
    with pytest.raises(ProtocolError):
        decode_message(msgpack.packb(obj, use_bin_type=True))


def append_with(entries_field: object) -> bytes:
    return msgpack.packb([2, 1, "a", "b", 3, 0, 0, entries_field, 0, False, 0, 0, b"", None, None],
                         use_bin_type=True)


def test_entries_travel_as_columns_with_runs() -> None:
    ents = (*(Entry(2, i, data=b"d%d" % i) for i in range(5, 9)), Entry(3, 9, EntryType.CONF_CHANGE, b"cc"),
            Entry(3, 20))
    wire = encode_message(Message(MessageType.APPEND, "a", "b", 3, index=4, entries=ents))
    assert msgpack.unpackb(wire)[7] == [[5, 5, 20, 1], [2, 4, 3, 2], b"\x00\x00\x00\x00\x01\x00",
                                        [b"d5", b"d6", b"d7", b"d8", b"cc", b""]]
    assert decode_message(wire).entries == ents


def test_a_64_entry_append_round_trips() -> None:
    ents = tuple(Entry(7, 1001 + i, data=bytes(16)) for i in range(64))
    msg = Message(MessageType.APPEND, "n0", "n1", 7, log_term=7, index=1000, entries=ents, commit=990)
    assert decode_message(encode_message(msg)) == msg
    assert len(encode_message(msg)) < 64 * 19 + 60  # a one-byte type and the data's bin header per entry


@pytest.mark.parametrize("entries_field", [
    [[1, 2], [1, 1], b"\x00", [b""]],  # index runs cover 2 entries, datas 1
    [[1, 1], [1, 2], b"\x00", [b""]],  # term runs cover 2
    [[1, 0, 1, 1], [1, 1], b"\x00", [b""]],  # a run of 0
    [[1, 1 << 40], [1, 1 << 40], b"\x00", [b""]],  # a run longer than what was sent: never expanded
    [[(1 << 64) - 1, 2], [1, 2], b"\x00\x00", [b"", b""]],  # consecutive indexes past u64
    [[1, 1], [-1, 1], b"\x00", [b""]],  # negative term
    [[1, 1], [True, 1], b"\x00", [b""]],  # bool term
    [[1, 1], [1], b"\x00", [b""]],  # odd run list
    [[1, 1], [], b"\x00", [b""]],  # no runs
    [[1, 1], [1, 1], b"\x00\x00", [b""]],  # two types, one entry
    [[1, 1], [1, 1], "\x00", [b""]],  # types as a string
    [[1, 1], [1, 1], b"\x00", ["x"]],  # data as a string
    [[1, 1], [1, 1], b"\x00", b""],  # datas not an array
    [[], [], b"", []],  # empty columns: no entries is nil
    [[1, 1], [1, 1], b"\x00"],  # three columns
])
def test_malformed_entry_columns(entries_field: object) -> None:
    with pytest.raises(ProtocolError):
        decode_message(append_with(entries_field))


@given(st.lists(entries, min_size=1, max_size=6), st.data())
@settings(max_examples=200, deadline=None)
def test_corrupted_entry_columns_raise_protocol_error(ents: list[Entry], data: st.DataObject) -> None:
    """Any single column or run value replaced by a wrong type or an out-of-range value is refused."""
    cols = msgpack.unpackb(encode_message(Message(MessageType.APPEND, "a", "b", 1, entries=tuple(ents))))[7]
    col = data.draw(st.integers(min_value=0, max_value=3))
    if col in (0, 1):
        at = data.draw(st.integers(min_value=0, max_value=len(cols[col]) - 1))
        cols[col][at] = data.draw(st.sampled_from([-1, "x", b"x", 1.5, None, [], True]))
    elif col == 2:
        cols[2] = data.draw(st.sampled_from([b"\x02" * len(ents), "x", None, cols[2] + b"\x00"]))
    else:
        cols[3][data.draw(st.integers(min_value=0, max_value=len(ents) - 1))] = data.draw(
            st.sampled_from(["x", 1, None, []]))
    with pytest.raises(ProtocolError):
        decode_message(append_with(cols))


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
