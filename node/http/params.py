"""Request parameters as typed definitions: one object reads a parameter from a request and describes it.

`IntParam`, `ChoiceParam`, `BoolParam` and `IdParam` each `read` their value from an aiohttp request (HttpError
400 for a bad one, before any handler logic runs) and give the OpenAPI parameter object that states the same rule
(`openapi()`): node/http/api.py decodes with the very objects node/http/openapi.py describes, so the document and
the decoding cannot drift. The API's parameters themselves (names, bounds, defaults) are in node/http/openapi.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from consensus.invariant import InvariantViolation, require
from node.http.errors import HttpError

Where = Literal["query", "path", "header"]

INT_DIGITS_MAX = 19
"""Most digits an integer parameter may have (int64 range): a 5,000-digit value is refused before int() sees it."""
_INT_RE = re.compile(rf"-?[0-9]{{1,{INT_DIGITS_MAX}}}")  # ASCII digits only: "١٢" is not a number here
_ECHO_CHARS_MAX = 40
"""Most characters of a refused value an error message repeats."""


def _raw(request: web.Request, where: Where, name: str) -> str | None:
    if where == "path":
        return request.match_info.get(name)
    if where == "header":
        return request.headers.get(name)
    return request.query.get(name)


def _param(name: str, where: Where, schema: dict[str, Any], description: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        out["description"] = description
    return out


@dataclass(frozen=True, slots=True)
class IntParam:
    """An integer in [lo, hi]; absent (query only) means `default`, which may be None."""

    name: str
    lo: int
    hi: int
    default: int | None = None
    where: Where = "query"
    description: str = ""

    def __post_init__(self) -> None:
        require(self.lo <= self.hi, f"{self.name}: empty range")
        require(max(len(str(self.lo)), len(str(self.hi))) <= INT_DIGITS_MAX + 1, f"{self.name}: range over int64")
        require(self.default is None or self.lo <= self.default <= self.hi, f"{self.name}: default out of range")
        require(self.where != "path" or self.default is None, f"{self.name}: a path parameter has no default")

    def read(self, request: web.Request) -> int | None:
        raw = _raw(request, self.where, self.name)
        if raw is None:
            return self.default
        if not _INT_RE.fullmatch(raw):
            raise HttpError(400, "bad_parameter", f"{self.name} must be an integer, got {raw[:_ECHO_CHARS_MAX]!r}")
        value = int(raw)
        if not self.lo <= value <= self.hi:
            raise HttpError(400, "bad_parameter", f"{self.name} must be in [{self.lo}, {self.hi}], got {value}")
        return value

    def value(self, request: web.Request) -> int:
        """`read` for a parameter that always has a value (a path parameter, or one with a default)."""
        value = self.read(request)
        if value is None:
            raise InvariantViolation(f"{self.name} has no default: use read()")
        return value

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.lo, "maximum": self.hi}
        if self.default is not None:
            schema["default"] = self.default
        return _param(self.name, self.where, schema, self.description)


@dataclass(frozen=True, slots=True)
class ChoiceParam:
    """One of a few strings; absent means `default`."""

    name: str
    values: tuple[str, ...]
    default: str
    description: str = ""
    where: Where = "query"

    def __post_init__(self) -> None:
        require(self.default in self.values, f"{self.name}: default not among the values")

    def value(self, request: web.Request) -> str:
        raw = _raw(request, self.where, self.name)
        if raw is None:
            return self.default
        if raw not in self.values:
            raise HttpError(400, "bad_parameter", f"{self.name} must be one of {', '.join(self.values)}, "
                                                  f"got {raw[:_ECHO_CHARS_MAX]!r}")
        return raw

    def openapi(self) -> dict[str, Any]:
        return _param(self.name, self.where, {"type": "string", "enum": list(self.values), "default": self.default},
                      self.description)


@dataclass(frozen=True, slots=True)
class BoolParam:
    """A query flag: exactly `true` or `false`, the spelling of the boolean the document declares (absent means
    `default`); `1`, `yes` or `True` are refused, not guessed at."""

    name: str
    default: bool = False
    description: str = ""
    where: Where = "query"

    def value(self, request: web.Request) -> bool:
        raw = _raw(request, self.where, self.name)
        if raw is None:
            return self.default
        if raw not in ("true", "false"):
            raise HttpError(400, "bad_parameter", f"{self.name} must be true or false, got {raw[:_ECHO_CHARS_MAX]!r}")
        return raw == "true"

    def openapi(self) -> dict[str, Any]:
        return _param(self.name, self.where, {"type": "boolean", "default": self.default}, self.description)


@dataclass(frozen=True, slots=True)
class IdParam:
    """A string matching `pattern` whole (a path id: the ids of ecert/tx.py, a tx id); 400 `code` otherwise.
    A value that cannot be an id of its kind is bad input, not an unknown resource: it says nothing about what
    exists."""

    name: str
    pattern: str
    """A regular expression without anchors; the document states it anchored (JSON Schema patterns search)."""
    code: str = "bad_id"
    what: str = "an id"
    where: Where = "path"
    description: str = ""
    _re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(not self.pattern.startswith("^") and not self.pattern.endswith("$"), f"{self.name}: unanchored")
        object.__setattr__(self, "_re", re.compile(self.pattern))

    def value(self, request: web.Request) -> str:
        raw = _raw(request, self.where, self.name)
        if raw is None:
            raise HttpError(400, "bad_parameter", f"{self.name} is required")
        if not self._re.fullmatch(raw):
            raise HttpError(400, self.code, f"{self.name} must be {self.what}, got {raw[:_ECHO_CHARS_MAX]!r}")
        return raw

    def openapi(self) -> dict[str, Any]:
        schema = {"type": "string", "pattern": f"^{self.pattern}$"}
        out = _param(self.name, self.where, schema, self.description or f"{self.what}")
        if self.where == "query":
            out["required"] = True
        return out


@dataclass(frozen=True, slots=True)
class OptionalStrParam:
    """An optional query string: absent means None; present, it must match `pattern` whole (400 `code`
    otherwise), or be one of `values` when they are given (the document says which)."""

    name: str
    pattern: str = ""
    values: tuple[str, ...] = ()
    code: str = "bad_parameter"
    what: str = "a value"
    description: str = ""
    where: Where = "query"
    _re: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require(bool(self.pattern) != bool(self.values), f"{self.name}: a pattern or values, not both")
        require(not self.pattern.startswith("^") and not self.pattern.endswith("$"), f"{self.name}: unanchored")
        object.__setattr__(self, "_re", re.compile(self.pattern) if self.pattern else None)

    def read(self, request: web.Request) -> str | None:
        raw = _raw(request, self.where, self.name)
        if raw is None:
            return None
        if self._re is not None and not self._re.fullmatch(raw):
            raise HttpError(400, self.code, f"{self.name} must be {self.what}, got {raw[:_ECHO_CHARS_MAX]!r}")
        if self.values and raw not in self.values:
            raise HttpError(400, self.code, f"{self.name} must be one of {', '.join(self.values)}, "
                                            f"got {raw[:_ECHO_CHARS_MAX]!r}")
        return raw

    def openapi(self) -> dict[str, Any]:
        schema: dict[str, Any] = ({"type": "string", "pattern": f"^{self.pattern}$"} if self.pattern
                                  else {"type": "string", "enum": list(self.values)})
        return _param(self.name, self.where, schema, self.description or self.what)
