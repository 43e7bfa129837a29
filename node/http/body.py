"""Request bodies: read once, bounded in size, and parsed bounded in nesting before any recursive parser runs.

- `read_body`: at most `limit` bytes (413 `body_too_large` past it), read from the socket once per request and
  kept on it, so the identity gate (which hashes the body to check a signature) and the handler see the same
  bytes and neither reads the stream twice. A body that stops arriving for BODY_IDLE_S is a 408, one whose
  connection closes (or whose chunked framing breaks, which aiohttp reports to no one) before its end a 400: a
  half-sent body holds neither its handler nor its connection for good, nor reaches the 5xx path. The limit
  counts the bytes after aiohttp undid a Content-Encoding (a gzip bomb stops at it too); a body it cannot decode
  (a corrupt gzip) is a 400 `malformed_body`.
- `parse_json`: UTF-8 JSON whose bracket depth a linear pre-scan has found to be at most JSON_DEPTH_MAX, so
  `json.loads` (recursive in C) never meets a 200,000-deep body; collections are bounded by the body size.
- `unpack_msgpack`: msgpack with every length capped (arrays, maps, strings, bins, no ext); the C unpacker's
  own fixed stack bounds the depth (msgpack.StackError, a ValueError).
Every failure is an HttpError 4xx: client input never reaches the 5xx path.
"""

from __future__ import annotations

import asyncio
import json
import re
from itertools import accumulate
from typing import Any

import msgpack
from aiohttp import web

from consensus.invariant import require
from node.http.errors import HttpError

JSON_DEPTH_MAX = 32
"""Deepest JSON body accepted (an envelope is 1 deep, a batch 3): far below CPython's recursion limit."""
READ_CHUNK_BYTES = 64 << 10
BODY_IDLE_S = 10.0
"""Longest wait for the next bytes of a request body (nginx's client_body_timeout, shorter)."""
_REASON_CHARS_MAX = 120

BODY_KEY: web.RequestKey[bytes] = web.RequestKey("ecert_body", bytes)

require(JSON_DEPTH_MAX < 200, "the JSON depth cap stays far below the interpreter's recursion limit")

# A JSON string literal (escapes included); possessive, so a long string costs one linear pass.
_JSON_STRING_RE = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [0] * 256
for _open in b"[{":
    _DEPTH_STEP[_open] = 1
for _close in b"]}":
    _DEPTH_STEP[_close] = -1


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body, at most `limit` bytes (413 past it); read once, later calls get the same bytes."""
    if BODY_KEY in request:
        cached = request[BODY_KEY]
        if len(cached) > limit:
            raise HttpError(413, "body_too_large", f"body of {len(cached)} bytes over the limit of {limit}")
        return cached
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "body_too_large", f"body of {request.content_length} bytes over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(BODY_IDLE_S):
                chunk = await request.content.read(READ_CHUNK_BYTES)
        except TimeoutError:
            raise HttpError(408, "body_timeout", f"no body bytes for {BODY_IDLE_S:g} s") from None
        except ConnectionResetError:  # the client went away mid-body: nobody reads the answer
            raise HttpError(400, "incomplete_body", "the connection closed before the body was complete") from None
        except web.RequestPayloadError as exc:  # aiohttp could not decode it: a corrupt gzip / deflate body
            reason = str(exc.__cause__ or exc).replace("\n", " ")[:_REASON_CHARS_MAX]
            raise HttpError(400, "malformed_body", f"the body cannot be decoded: {reason}") from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "body_too_large", f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request[BODY_KEY] = body
    return body


def json_depth(body: bytes) -> int:
    """The deepest bracket nesting of a JSON text, brackets inside strings not counted (an upper bound when the
    text is malformed: the parser refuses it anyway). Linear, C-speed passes only."""
    skeleton = _JSON_STRING_RE.sub(b"", body).translate(None, _NOT_BRACKETS)
    opens = skeleton.count(b"[") + skeleton.count(b"{")
    if opens <= JSON_DEPTH_MAX:
        return opens  # the common case (an envelope): no deeper than its number of brackets
    return max(accumulate(map(_DEPTH_STEP.__getitem__, skeleton)), default=0)


def parse_json(body: bytes) -> Any:
    """The JSON document of a body (HttpError 400 `malformed_json` or `too_deep`)."""
    depth = json_depth(body)
    if depth > JSON_DEPTH_MAX:
        raise HttpError(400, "too_deep", f"JSON nested {depth} deep, at most {JSON_DEPTH_MAX}")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise HttpError(400, "malformed_json", "body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, "malformed_json", f"body is not JSON: {exc}") from None


def unpack_msgpack(body: bytes, *, array_len_max: int, map_len_max: int, str_len_max: int,
                   bin_len_max: int) -> Any:
    """A msgpack document with every collection and string capped (HttpError 400 `malformed_msgpack`, 413
    `body_too_large` for a length over a cap)."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, max_array_len=array_len_max,
                               max_map_len=map_len_max, max_str_len=str_len_max, max_bin_len=bin_len_max,
                               max_ext_len=0)
    except ValueError as exc:
        if "exceeds max_" in str(exc):
            raise HttpError(413, "body_too_large", f"msgpack body over a length limit: {exc}") from None
        raise HttpError(400, "malformed_msgpack", f"body is not msgpack: {type(exc).__name__}") from None
    except Exception as exc:  # msgpack raises a zoo of types on bad input; all mean the same here
        raise HttpError(400, "malformed_msgpack", f"body is not msgpack: {type(exc).__name__}") from None
