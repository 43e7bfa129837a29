"""MemoryStateView and OverlayView: ordered prefix scans, own writes, savepoints and rollback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.invariant import InvariantViolation
from ledger.state_view import KEY_BYTES_MAX, MemoryStateView, OverlayView, prefix_end


def test_prefix_end() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None
    assert prefix_end(b"") is None


def test_memory_view_scan_is_sorted_and_prefix_bounded() -> None:
    view = MemoryStateView([(b"b/2", b"x"), (b"a/1", b"y"), (b"b/1", b"z"), (b"b\xff", b"w"), (b"c", b"v")])
    assert all(callable(getattr(view, name, None)) for name in ("get", "put", "delete", "scan"))  # a StateView
    assert list(view.scan(b"b/")) == [(b"b/1", b"z"), (b"b/2", b"x")]
    assert [k for k, _ in view.scan(b"")] == [b"a/1", b"b/1", b"b/2", b"b\xff", b"c"]
    assert list(view.scan(b"b\xff")) == [(b"b\xff", b"w")]
    view.delete(b"b/1")
    view.delete(b"missing")
    assert list(view.scan(b"b/")) == [(b"b/2", b"x")]


def test_writes_during_a_scan_do_not_break_it() -> None:
    view = MemoryStateView([(b"k1", b"1"), (b"k2", b"2")])
    for key, _value in view.scan(b"k"):
        view.put(key + b"x", b"new")
        view.delete(key)
    assert view.items() == {b"k1x": b"new", b"k2x": b"new"}


def test_keys_and_values_are_checked() -> None:
    view = MemoryStateView()
    # A key or value that is not bytes is a rules bug: the pure modules stop it with an InvariantViolation, a
    # compiled build (setup.py) with a TypeError at the typed call; either stops the node.
    with pytest.raises((InvariantViolation, TypeError)):
        view.put("str", b"v")  # type: ignore[arg-type]
    with pytest.raises((InvariantViolation, TypeError)):
        view.put(b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(InvariantViolation):
        view.put(b"", b"v")
    with pytest.raises(InvariantViolation):
        OverlayView(view).put(b"k" * (KEY_BYTES_MAX + 1), b"v")


def test_overlay_sees_own_writes_and_hides_deletes() -> None:
    base = MemoryStateView([(b"a1", b"base"), (b"a2", b"base"), (b"b", b"base")])
    overlay = OverlayView(base)
    overlay.put(b"a0", b"new")
    overlay.put(b"a2", b"changed")
    overlay.delete(b"a1")
    assert overlay.get(b"a1") is None
    assert overlay.get(b"b") == b"base"
    assert list(overlay.scan(b"a")) == [(b"a0", b"new"), (b"a2", b"changed")]
    assert base.get(b"a1") == b"base"  # the base is untouched
    assert overlay.changes() == {b"a0": b"new", b"a2": b"changed", b"a1": None}


def test_rollback_to_nested_savepoints() -> None:
    base = MemoryStateView([(b"k", b"0")])
    overlay = OverlayView(base)
    overlay.put(b"k", b"1")
    sp1 = overlay.savepoint()
    overlay.put(b"k", b"2")
    overlay.put(b"n", b"x")
    sp2 = overlay.savepoint()
    overlay.delete(b"k")
    overlay.rollback(sp2)
    assert overlay.get(b"k") == b"2"
    overlay.rollback(sp1)
    assert overlay.get(b"k") == b"1"
    assert overlay.get(b"n") is None
    assert list(overlay.scan(b"")) == [(b"k", b"1")]
    overlay.rollback(0)
    assert overlay.changes() == {}
    assert len(overlay) == 0
    with pytest.raises(InvariantViolation):
        overlay.rollback(5)


# Few keys, chosen around prefix boundaries (0x00, 0xff), so puts, deletes and scans collide often.
_keys = st.sampled_from([b"a", b"a\x00", b"a\xff", b"ab", b"b", b"ba", b"\xff", b"\xff\xff", b"c"])
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, st.binary(max_size=2)),
        st.tuples(st.just("del"), _keys),
        st.tuples(st.just("savepoint")),
        st.tuples(st.just("rollback"), st.integers(0, 5)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, st.binary(max_size=2)), _ops, st.sampled_from([b"", b"a", b"b", b"\xff", b"c"]))
def test_overlay_matches_a_dict_model(initial: dict[bytes, bytes], ops: list[tuple], prefix: bytes) -> None:
    base = MemoryStateView(initial.items())
    overlay = OverlayView(base)
    model = dict(initial)
    saved: list[tuple[int, dict[bytes, bytes]]] = []
    for op in ops:
        if op[0] == "put":
            overlay.put(op[1], op[2])
            model[op[1]] = op[2]
        elif op[0] == "del":
            overlay.delete(op[1])
            model.pop(op[1], None)
        elif op[0] == "savepoint":
            saved.append((overlay.savepoint(), dict(model)))
        elif saved:
            sp, snapshot = saved[op[1] % len(saved)]
            saved = [s for s in saved if s[0] <= sp]
            overlay.rollback(sp)
            model = dict(snapshot)
        expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
        assert list(overlay.scan(prefix)) == expected
    for key in {op[1] for op in ops if op[0] in ("put", "del")} | set(initial):
        assert overlay.get(key) == model.get(key)
    assert base.items() == initial
