"""The ledger's exceptions: one hierarchy, each with a stable snake_case `code`.

`LedgerError` is the base. A `BlockDecodeError` means a peer (or a proposer) sent bytes that are not a block;
a `StaleBlockError` means a well-formed block that does not extend our chain (the node skips it, which every
replica does identically). Broken internal invariants are `consensus.invariant.InvariantViolation`, not these.
"""

from __future__ import annotations

from typing import ClassVar


class LedgerError(Exception):
    """Base of every ledger exception."""

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BlockDecodeError(LedgerError):
    """The bytes are not a well-formed block (strict decoding: wrong type, extra field, over a limit, ...)."""

    code: ClassVar[str] = "block_malformed"


class StaleBlockError(LedgerError):
    """A block that does not chain onto the current head. `reason` says which check failed: "height",
    "prev_hash", "time", "tx_root" or "malformed" (fields out of bounds)."""

    code: ClassVar[str] = "block_stale"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SnapshotError(LedgerError):
    """A snapshot that cannot be imported: malformed, or its state root does not match what it claims."""

    code: ClassVar[str] = "snapshot_invalid"


class GenesisMismatchError(LedgerError):
    """init_genesis with a different genesis hash than the one this store was initialised with."""

    code: ClassVar[str] = "genesis_mismatch"


class StoreClosedError(LedgerError):
    """The StateStore was used after close()."""

    code: ClassVar[str] = "store_closed"
