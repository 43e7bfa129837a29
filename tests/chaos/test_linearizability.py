"""The linearizability checker against hand-made histories and against a brute-force oracle (hypothesis)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from node.chaos.linearizability import Operation, RegisterModel, check_history, check_ops


def w(v, t0, t1=math.inf, key="c"):
    return Operation(key, ("write", v), None, t0, t1, label=f"w{v}")


def r(v, t0, t1, key="c"):
    return Operation(key, ("read", None), v, t0, t1, label=f"r{v}")


def lin(ops) -> bool | None:
    return check_ops(RegisterModel(), ops).ok


def test_empty_and_sequential() -> None:
    assert lin([])
    assert lin([w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)])


def test_read_of_initial_value_before_any_write() -> None:
    assert lin([r(None, 0, 1), w(1, 2, 3), r(1, 4, 5)])
    assert not lin([w(1, 0, 1), r(None, 2, 3)])


def test_stale_read_after_completed_write_is_caught() -> None:
    ops = [w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)]
    res = check_ops(RegisterModel(), ops)
    assert res.ok is False
    assert res.stuck is not None and res.stuck.label == "r1"


def test_concurrent_write_may_be_seen_either_way() -> None:
    assert lin([w(1, 0, 1), w(2, 2, 10), r(1, 3, 4), r(2, 5, 6)])
    assert lin([w(1, 0, 1), w(2, 2, 10), r(2, 3, 4)])


def test_reads_never_go_back_in_time() -> None:
    # The write is concurrent with both reads, but once a read saw 2 a later read may not see 1 again.
    assert not lin([w(1, 0, 1), w(2, 2, 10), r(2, 3, 4), r(1, 5, 6)])


def test_unknown_write_may_take_effect_late_but_only_once() -> None:
    assert lin([w(1, 0, 1), w(2, 2), r(1, 3, 4), r(2, 50, 51)])
    assert not lin([w(1, 0, 1), w(2, 2), r(2, 3, 4), r(1, 50, 51)])


def test_touching_intervals_count_as_concurrent() -> None:
    assert lin([w(1, 0, 5), r(None, 5, 6)])


def test_keys_are_checked_independently() -> None:
    ops = [w(1, 0, 1, key="a"), r(1, 2, 3, key="a"), w(7, 0, 1, key="b"), r(None, 2, 3, key="b")]
    res = check_history(ops)
    assert not res.ok
    assert [k.key for k in res.violations] == ["b"]


def test_gives_up_instead_of_running_forever() -> None:
    ops = [w(i, 0, 100) for i in range(14)] + [r(99, 101, 102)]
    res = check_ops(RegisterModel(), ops, steps_max=1000)
    assert res.ok is None


def brute_force(ops: list[Operation]) -> bool:
    """Try every order that respects real time (a before b when a completes before b is invoked)."""
    n = len(ops)
    for perm in itertools.permutations(range(n)):
        pos = {op: i for i, op in enumerate(perm)}
        if any(ops[a].complete < ops[b].invoke and pos[a] > pos[b] for a in range(n) for b in range(n)):
            continue
        state = None
        ok = True
        for i in perm:
            kind, v = ops[i].input
            if kind == "write":
                state = v
            elif state != ops[i].output:
                ok = False
                break
        if ok:
            return True
    return False


@st.composite
def small_histories(draw) -> list[Operation]:
    n = draw(st.integers(0, 6))
    ops = []
    for _ in range(n):
        t0 = draw(st.integers(0, 20))
        pending = draw(st.integers(0, 9)) == 0
        t1 = math.inf if pending else t0 + draw(st.integers(0, 8))
        v = draw(st.integers(0, 2))
        if draw(st.booleans()):
            ops.append(w(v, t0, t1))
        else:
            ops.append(r(draw(st.sampled_from([None, 0, 1, 2])), t0, t0 + draw(st.integers(0, 8))))
    return ops


@settings(max_examples=250, deadline=None)
@given(small_histories())
def test_agrees_with_brute_force(ops: list[Operation]) -> None:
    assert lin(ops) == brute_force(ops)


@st.composite
def linearizable_histories(draw) -> list[Operation]:
    """Run ops on a real register at distinct instants, then widen each interval around its instant."""
    n = draw(st.integers(1, 30))
    ops = []
    state = None
    for i in range(n):
        at = i * 10
        before, after = draw(st.integers(0, 40)), draw(st.integers(0, 40))
        if draw(st.booleans()):
            state = draw(st.integers(0, 3))
            t1 = math.inf if draw(st.integers(0, 7)) == 0 else at + after
            ops.append(w(state, at - before, t1))
        else:
            ops.append(r(state, at - before, at + after))
    return ops


@settings(max_examples=100, deadline=None)
@given(linearizable_histories())
def test_histories_made_linearizable_pass(ops: list[Operation]) -> None:
    assert lin(ops) is True


@settings(max_examples=100, deadline=None)
@given(linearizable_histories(), st.data())
def test_a_read_of_a_never_written_value_fails(ops: list[Operation], data) -> None:
    t = data.draw(st.integers(0, 400))
    assert lin([*ops, r(42, t, t + 5)]) is False
