"""The key-value view of chain state that transaction rules (ecert/) read and write.

`StateView` is the seam: `get`, `put`, `delete`, `scan(prefix)`. Keys and values are raw bytes; what they mean
is the executor's business (the ledger only commits to them in the state root, see ledger/state_root.py).

Three implementations:
- `MemoryStateView`: a dict, for unit tests of the rules and as the model in ledger tests.
- `OverlayView(base)`: buffered writes over any read base. The store runs each block in one overlay over the
  committed state and takes a `savepoint()` before each transaction; a rejected transaction is undone with
  `rollback(sp)`, so it leaves no writes. `changes()` hands the net writes to the store's WriteBatch.
- the store's committed view (ledger/committed_view.py), read-only, used as an overlay's base.

`scan(prefix)` yields `(key, value)` sorted by key (bytewise, as LevelDB orders them) and sees the view's own
writes. It iterates over a snapshot taken when the scan starts: writes made while iterating are not seen by that
scan (as with LevelDB iterators), and they never break it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Protocol

from consensus.invariant import require

KEY_BYTES_MAX = 1024
"""Longest state key. Rules build keys from ids they validated, so a longer key is a bug in the rules."""
VALUE_BYTES_MAX = 4 << 20
"""Largest state value (a tx is at most `ledger.block.TX_BYTES_MAX`, so no honest value comes close)."""


class StateView(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for every key starting with `prefix`, sorted by key; sees the view's own writes."""
        ...


class ReadView(Protocol):
    """What an overlay needs from its base: reads only."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


def check_key(key: bytes) -> None:
    require(type(key) is bytes, f"state key must be bytes, got {type(key).__name__}")
    require(0 < len(key) <= KEY_BYTES_MAX, f"state key length {len(key)} outside 1..{KEY_BYTES_MAX}")


def check_value(value: bytes) -> None:
    require(type(value) is bytes, f"state value must be bytes, got {type(value).__name__}")
    require(len(value) <= VALUE_BYTES_MAX, f"state value of {len(value)} bytes over {VALUE_BYTES_MAX}")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with `prefix`; None if there is none (all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _prefix_range(sorted_keys: list[bytes], prefix: bytes) -> list[bytes]:
    start = bisect.bisect_left(sorted_keys, prefix)
    end_key = prefix_end(prefix)
    stop = len(sorted_keys) if end_key is None else bisect.bisect_left(sorted_keys, end_key, lo=start)
    return sorted_keys[start:stop]


class MemoryStateView:
    """A dict-backed StateView (ordered scans via a sorted key list)."""

    __slots__ = ("_data", "_sorted")

    def __init__(self, items: Iterable[tuple[bytes, bytes]] = ()) -> None:
        self._data: dict[bytes, bytes] = {}
        self._sorted: list[bytes] = []
        for key, value in items:
            self.put(key, value)

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        check_key(key)
        check_value(value)
        if key not in self._data:
            bisect.insort(self._sorted, key)
        self._data[key] = value

    def delete(self, key: bytes) -> None:
        check_key(key)
        if self._data.pop(key, None) is not None:
            i = bisect.bisect_left(self._sorted, key)
            require(self._sorted[i] == key, "sorted key index out of step with the dict")
            del self._sorted[i]

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        keys = _prefix_range(self._sorted, prefix)
        data = self._data
        return iter([(k, data[k]) for k in keys])

    def items(self) -> dict[bytes, bytes]:
        """A copy of the whole state (tests compare it against the store)."""
        return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)


_ABSENT = object()
"""In the undo journal: the key had no buffered write before (distinct from a buffered delete, None)."""


class OverlayView:
    """Buffered writes over a read-only base, with savepoints.

    `_writes` maps key -> value, or None for a delete (a tombstone hiding the base's value). Every write
    first records the key's previous buffered entry in `_journal`, so `rollback(sp)` undoes exactly the writes
    made since `savepoint()` returned `sp`, in time proportional to them.

    The sorted key list that `scan` needs is built on the first scan and only then kept up to date: the rules
    write thousands of keys per block and scan none, so they never pay for ordered inserts.
    """

    __slots__ = ("_base", "_journal", "_sorted", "_writes")

    def __init__(self, base: ReadView) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}
        self._sorted: list[bytes] | None = None
        self._journal: list[tuple[bytes, object]] = []

    # reads

    def get(self, key: bytes) -> bytes | None:
        writes = self._writes
        if key in writes:
            return writes[key]
        return self._base.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if not self._writes:
            return self._base.scan(prefix)  # nothing to merge: no sorted list, so later writes stay cheap
        if self._sorted is None:
            self._sorted = sorted(self._writes)
        own = [(k, self._writes[k]) for k in _prefix_range(self._sorted, prefix)]
        return _merge(self._base.scan(prefix), own)

    # writes

    def put(self, key: bytes, value: bytes) -> None:
        # check_key / check_value inlined: this is the hottest write path of a block.
        if type(key) is not bytes or not 0 < len(key) <= KEY_BYTES_MAX:
            check_key(key)
        if type(value) is not bytes or len(value) > VALUE_BYTES_MAX:
            check_value(value)
        writes = self._writes
        previous = writes.get(key, _ABSENT)  # _record, inlined
        self._journal.append((key, previous))
        if previous is _ABSENT and self._sorted is not None:
            bisect.insort(self._sorted, key)
        writes[key] = value

    def delete(self, key: bytes) -> None:
        check_key(key)
        self._record(key)
        self._writes[key] = None

    def _record(self, key: bytes) -> None:
        previous = self._writes.get(key, _ABSENT)
        self._journal.append((key, previous))
        if previous is _ABSENT and self._sorted is not None:
            bisect.insort(self._sorted, key)

    # savepoints

    def savepoint(self) -> int:
        """A mark to roll back to; marks nest (roll back to an older mark undoes the newer ones too)."""
        return len(self._journal)

    def rollback(self, savepoint: int) -> None:
        require(0 <= savepoint <= len(self._journal), f"savepoint {savepoint} is not live")
        while len(self._journal) > savepoint:
            key, previous = self._journal.pop()
            if previous is _ABSENT:
                del self._writes[key]
                if self._sorted is not None:
                    i = bisect.bisect_left(self._sorted, key)
                    require(self._sorted[i] == key, "overlay sorted index out of step")
                    del self._sorted[i]
            else:
                self._writes[key] = previous  # type: ignore[assignment]

    def changes(self) -> dict[bytes, bytes | None]:
        """Net buffered writes (None = delete), for the commit batch. Includes no-op writes; the store drops
        those whose value equals the base's before touching the state root."""
        return dict(self._writes)

    def __len__(self) -> int:
        return len(self._writes)


def _merge(
    base: Iterator[tuple[bytes, bytes]], own: list[tuple[bytes, bytes | None]]
) -> Iterator[tuple[bytes, bytes]]:
    """Merge two key-sorted streams; `own` wins on equal keys and its None entries hide the base's."""
    i = 0
    for key, value in base:
        while i < len(own) and own[i][0] < key:
            own_value = own[i][1]
            if own_value is not None:
                yield own[i][0], own_value
            i += 1
        if i < len(own) and own[i][0] == key:
            own_value = own[i][1]
            if own_value is not None:
                yield key, own_value
            i += 1
        else:
            yield key, value
    for key, own_value in own[i:]:
        if own_value is not None:
            yield key, own_value
