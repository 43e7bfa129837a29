"""How a node counts and reports connections a cap turned away (node/transport.py, node/http/connection_cap.py).

Each refusal is counted (the counts go to /metrics); only the first and every REFUSALS_LOGGED_EVERY-th is
logged, so that a flood of connections cannot also flood node.log.
"""

from __future__ import annotations

import logging
from typing import Any

REFUSALS_LOGGED_EVERY = 1000


class RefusalTally:
    """The running count of one cap's refusals, and its sparse log line `event`."""

    __slots__ = ("_event", "_log", "total")

    def __init__(self, logger: logging.Logger, event: str) -> None:
        self._log = logger
        self._event = event
        self.total = 0

    def note(self, **extra: Any) -> None:
        self.total += 1
        if self.total == 1 or self.total % REFUSALS_LOGGED_EVERY == 0:
            self._log.warning(self._event, extra={**extra, "refused_total": self.total})
