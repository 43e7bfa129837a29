"""The ecert/ exception hierarchy.

`TxRejected` is the peer-broke-the-rules error (h11's RemoteProtocolError): a transaction that cannot be applied,
with a stable snake_case `code` from ecert/codes.py. `GenesisError` is a bad genesis document (an operator mistake,
found at startup). Internal invariants use `consensus.invariant.require` and are not part of this hierarchy.
"""

from __future__ import annotations

from ecert.codes import ALL_CODES


class EcertError(Exception):
    """Base of every error ecert/ raises on purpose."""


class TxRejected(EcertError):
    """The transaction breaks a rule; `code` names the rule (see docs/RULES.md)."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ALL_CODES:  # a typo in a code would silently break clients
            raise ValueError(f"unknown rejection code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class GenesisError(EcertError):
    """The genesis document is malformed or inconsistent."""
