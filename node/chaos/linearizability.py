"""A linearizability checker in the manner of Porcupine (anishathalye/porcupine): Wing & Gong's search made fast
with Lowe's memoization of (linearized set, model state), over a history split by key (linearizability is local).

A history is a list of `Operation`s, each with its invocation and completion time (``math.inf`` when the client
never learnt the outcome: the op may take effect at any time after its invocation). A `Model` says which
outputs an input may give in a state and what the next state is.

Chaos runs use `RegisterModel` for one certificate: the value is ``(holder, status)`` or ``None`` (no such
certificate yet); committed transactions write it, ``?consistency=linearizable`` reads return it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

STEPS_MAX = 2_000_000


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation: ``input`` given at ``invoke``, ``output`` seen at ``complete``."""

    key: Hashable
    input: Any
    output: Any
    invoke: float
    complete: float = math.inf
    client: str = ""
    label: str = ""  # what a report shows for it (tx id, read node...)


class Model(Protocol):
    def init(self) -> Hashable: ...
    def step(self, state: Hashable, input: Any, output: Any) -> tuple[bool, Hashable]: ...


class RegisterModel:
    """A register: input ``("write", v)`` sets v (output ignored); ``("read", None)`` must output the value."""

    def __init__(self, initial: Hashable = None) -> None:
        self._initial = initial

    def init(self) -> Hashable:
        return self._initial

    def step(self, state: Hashable, input: Any, output: Any) -> tuple[bool, Hashable]:
        kind, value = input
        if kind == "write":
            return True, value
        if kind == "read":
            return output == state, state
        raise ValueError(f"unknown register input {kind!r}")


@dataclass(slots=True)
class KeyResult:
    key: Hashable
    ok: bool | None  # None: gave up after STEPS_MAX steps
    ops: int
    # On failure: the ops of the longest linearizable prefix found, and the op that could not be placed after it.
    linearized: tuple[Operation, ...] = ()
    stuck: Operation | None = None
    steps: int = 0


@dataclass(slots=True)
class CheckResult:
    ok: bool
    keys: list[KeyResult] = field(default_factory=list)

    @property
    def violations(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is False]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys if k.ok is None]


class _Entry:
    __slots__ = ("is_call", "match", "next", "op", "op_id", "prev", "time")

    def __init__(self, op_id: int, op: Operation, is_call: bool, time: float) -> None:
        self.op_id = op_id
        self.op = op
        self.is_call = is_call
        self.time = time
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _build_list(ops: Sequence[Operation]) -> _Entry:
    entries: list[_Entry] = []
    for i, op in enumerate(ops):
        if op.complete < op.invoke:
            raise ValueError(f"operation completes before it is invoked: {op}")
        call = _Entry(i, op, True, op.invoke)
        ret = _Entry(i, op, False, op.complete)
        call.match = ret
        entries += [call, ret]
    # Calls before returns at equal times: touching ops count as concurrent (the permissive reading).
    entries.sort(key=lambda e: (e.time, 0 if e.is_call else 1, e.op_id))
    head = _Entry(-1, ops[0] if ops else Operation(None, None, None, 0), True, -math.inf)
    prev = head
    for e in entries:
        prev.next = e
        e.prev = prev
        prev = e
    return head


def _lift(call: _Entry) -> None:
    assert call.prev is not None and call.match is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    ret = call.match
    assert ret is not None and ret.prev is not None and call.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


def check_ops(model: Model, ops: Sequence[Operation], key: Hashable = None,
              steps_max: int = STEPS_MAX) -> KeyResult:
    """Whether one key's history is linearizable with respect to the model."""
    if not ops:
        return KeyResult(key, True, 0)
    head = _build_list(ops)
    state = model.init()
    linearized = 0
    cache: set[tuple[int, Hashable]] = set()
    calls: list[tuple[_Entry, Hashable]] = []
    best: tuple[int, tuple[_Entry, ...], _Entry | None] = (-1, (), None)
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > steps_max:
            return KeyResult(key, None, len(ops), steps=steps)
        assert entry is not None
        if entry.is_call:
            assert entry.match is not None
            ok, new_state = model.step(state, entry.op.input, entry.op.output)
            if ok:
                new_linearized = linearized | (1 << entry.op_id)
                memo = (new_linearized, new_state)
                if memo not in cache:
                    cache.add(memo)
                    calls.append((entry, state))
                    state = new_state
                    linearized = new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return reached with its call still pending: this op cannot be placed; backtrack.
            if len(calls) > best[0]:
                best = (len(calls), tuple(c for c, _ in calls), entry)
            if not calls:
                return _failure(key, ops, best, steps)
            top, state = calls.pop()
            linearized &= ~(1 << top.op_id)
            _unlift(top)
            entry = top.next
    return KeyResult(key, True, len(ops), steps=steps)


def _failure(key: Hashable, ops: Sequence[Operation],
             best: tuple[int, tuple[_Entry, ...], _Entry | None], steps: int) -> KeyResult:
    _, prefix, stuck = best
    return KeyResult(key, False, len(ops), linearized=tuple(e.op for e in prefix),
                     stuck=stuck.op if stuck is not None else None, steps=steps)


def check_history(ops: Iterable[Operation], model_for: Callable[[Hashable], Model] | None = None,
                  steps_max: int = STEPS_MAX) -> CheckResult:
    """Check every key's sub-history on its own (P-compositionality); a register per key by default."""
    by_key: dict[Hashable, list[Operation]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    result = CheckResult(ok=True)
    for key in sorted(by_key, key=repr):
        model = model_for(key) if model_for else RegisterModel()
        r = check_ops(model, by_key[key], key, steps_max)
        result.keys.append(r)
        if r.ok is False:
            result.ok = False
    return result
