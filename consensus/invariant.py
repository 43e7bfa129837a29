"""Invariant checks that survive `python -O` (TigerBeetle style: a broken invariant stops the process loudly)."""

from __future__ import annotations


class InvariantViolation(AssertionError):
    """An internal invariant does not hold: the state can no longer be trusted."""


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise InvariantViolation(msg)
