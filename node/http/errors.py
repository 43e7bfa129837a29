"""The HTTP API's error answer: `{"error": {"code", "message"}, ...extra}` with a 4xx for bad input (CONTRACT §4).

Handlers and the identity gate (node/http/auth_gate.py) raise `HttpError`; the node's error middleware
(node/http/api.py) renders it. A handler mounted outside the node's app renders it itself with `error_body`.
"""

from __future__ import annotations

from typing import Any


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}, **extra}
