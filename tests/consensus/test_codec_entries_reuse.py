"""The codec reuses the encoding of the entries it encoded last (a leader's broadcast): never a stale one."""

from __future__ import annotations

from consensus.codec import decode_message, encode_message
from consensus.messages import Entry, EntryType, Message, MessageType


def batch(lo: int, hi: int, term: int, tag: bytes = b"") -> tuple[Entry, ...]:
    return tuple(Entry(term, i, EntryType(i % 5 == 0), tag + b"%d" % i) for i in range(lo, hi))


def append(to: str, entries: tuple[Entry, ...], commit: int = 0) -> Message:
    return Message(MessageType.APPEND, "n1", to, 3, log_term=2, index=entries[0].index - 1, entries=entries,
                   commit=commit)


def test_a_broadcast_encodes_each_follower_its_own_message() -> None:
    ents = batch(10, 40, 3)
    for msg in (append("n2", ents, commit=5), append("n3", ents, commit=9), append("n2", ents)):
        assert decode_message(encode_message(msg)) == msg


def test_different_or_equal_entries_are_never_confused() -> None:
    a = batch(10, 20, 3, b"a")
    same_values = batch(10, 20, 3, b"a")  # equal, other objects
    shifted = batch(11, 21, 3, b"a")
    other_data = batch(10, 20, 3, b"b")
    other_terms = (*batch(10, 15, 2, b"a"), *batch(15, 20, 3, b"a"))
    for entries in (a, same_values, a, shifted, a, other_data, other_terms, a[:5], a):
        msg = append("n2", entries)
        assert decode_message(encode_message(msg)) == msg


def test_the_entries_columns_are_unchanged_on_the_wire() -> None:
    """Splicing the packed parts gives the same bytes as packing the whole message at once."""
    import msgpack

    ents = (*batch(4, 6, 2), *batch(8, 9, 3))  # two index runs, two term runs
    msg = append("n2", ents, commit=4)
    whole = msgpack.packb([2, 1, "n1", "n2", 3, 2, 3, [[4, 2, 8, 1], [2, 2, 3, 1], b"\x00\x01\x00",
                                                         [b"4", b"5", b"8"]], 4, False, 0, 0, b"", None, None],
                          use_bin_type=True)
    assert encode_message(msg) == whole
