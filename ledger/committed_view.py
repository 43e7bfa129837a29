"""Read views over the committed state (the `S` records): what queries read, and an executing block's base.

State changes only through blocks (ledger/store.py), so neither view writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from consensus.invariant import require
from ledger.schema import STATE
from ledger.state_view import prefix_end


class CommittedView:
    """Read-only StateView over the committed state (the overlay's base during a block, and what queries
    read). State changes only through blocks, so `put`/`delete` here are bugs and raise."""

    __slots__ = ("_db",)

    def __init__(self, db: Any) -> None:
        self._db = db

    def rebind(self, db: Any) -> None:
        """Read from `db` from now on: the store reopened its directory (a snapshot import), and whoever holds
        this view keeps a live one."""
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(STATE + key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        require(False, "the committed state is read-only: write through a block")

    def delete(self, key: bytes) -> None:
        require(False, "the committed state is read-only: write through a block")

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = STATE + prefix
        end = prefix_end(start)
        it = self._db.iterator(start=start, stop=end) if end is not None else self._db.iterator(start=start)
        with it:
            for key, value in it:
                yield key[1:], value


class BlockReadView:
    """The overlay's base while one block executes: reads the committed state and remembers what it read.

    The committed state cannot change during the block (one applier), so the memo is exact; at commit the store
    uses it to drop no-op writes without a second LevelDB read per changed key."""

    __slots__ = ("_db", "read")

    def __init__(self, db: Any) -> None:
        self._db = db
        self.read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        read = self.read
        if key in read:
            return read[key]
        value: bytes | None = self._db.get(STATE + key)
        read[key] = value
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return CommittedView(self._db).scan(prefix)
