"""The cap on a node's open HTTP connections (docs/CONTRACT.md "Connections and logs a node keeps").

aiohttp has none: every accepted connection gets a request handler and keeps its socket for up to the keep-alive
timeout, so a client that opens connections and leaves them idle could take every file descriptor the node has
(its LevelDB stores need them too). `ConnectionCap` is the listening server's protocol factory: below the cap it
hands out the aiohttp server's handler, at the cap it answers the new connection `503 too_many_connections` and
closes it. Connections already open are not touched.

What it counts is aiohttp's own list of open connections. Over HTTPS a connection joins it once its TLS
handshake is done, so handshakes in progress are bounded in time (the listener's handshake timeout), not by
the cap.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from node.refusals import RefusalTally

log = logging.getLogger("node.http")

TOO_MANY_CONNECTIONS = "too_many_connections"


def _refusal() -> bytes:
    body = json.dumps({"error": {"code": TOO_MANY_CONNECTIONS,
                                 "message": "this node has as many HTTP connections open as it serves; "
                                            "retry, or reuse a connection"}}).encode()
    head = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body))
    return head + body


REFUSAL = _refusal()


class _Refuse(asyncio.Protocol):
    """A connection over the cap: the 503, then close, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSAL)
        transport.close()


class ConnectionCap:
    """Protocol factory for the API's listener: aiohttp's handler while fewer than `connections_max` connections
    are open, else a refusal."""

    __slots__ = ("_refusals", "_server", "connections_max")

    def __init__(self, server: web.Server, connections_max: int) -> None:
        if connections_max < 1:
            raise ValueError("connections_max must be at least 1")
        self._server = server
        self.connections_max = connections_max
        self._refusals = RefusalTally(log, "http_connections_refused")

    @property
    def refused(self) -> int:
        """Connections answered 503 since start."""
        return self._refusals.total

    @property
    def open(self) -> int:
        """HTTP connections open now (what the cap counts)."""
        return len(self._server.connections)

    def __call__(self) -> asyncio.BaseProtocol:
        open_now = self.open
        if open_now < self.connections_max:
            return self._server()
        self._refusals.note(open=open_now, connections_max=self.connections_max)
        return _Refuse()
