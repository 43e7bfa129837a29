"""Hostile input against a real 3-node cluster (issue 13, "What it must show"; docs/SECURITY.md cites these tests).

One cluster for the module, killed at teardown even on failure. The tests run in file order and share `Watch`, which
keeps every HTTP status any node answered and each node's descriptor count before the first attack:

1. floods of idle connections and half-sent requests (headers never finished, bodies shorter than Content-Length)
   while the cluster keeps serving and committing; once the clients leave every slot is freed, and a body that
   stops arriving is answered 408 after node.http.body.BODY_IDLE_S instead of holding its handler for good;
2. garbage on the HTTP port (what aiohttp's parser refuses);
3. garbage on the raft port, inside TLS 1.3 and in clear text: random bytes, oversized length prefixes, truncated
   frames, fake handshakes (an unknown id, a member's id with a forged signature, no signature at all): each
   closed within the handshake timeout, never authenticated;
4. 200,000-deep JSON and msgpack bodies, huge bodies (413), wrong methods (405 + Allow), bad signatures and
   replayed nonces (401), a replay raced against itself;
5. double spends of one certificate submitted at the three nodes at once: exactly one commits, the others are
   rejected with a code, every node ends with the same state root;
6. after it all: every node serves /v1/status and commits a new tx, no 5xx was ever answered, descriptors are
   back where they were, and no node log holds a traceback of an unhandled error.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import http.client
import itertools
import json
import os
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack
import pytest
from nacl.signing import SigningKey

from ecert.tx import make_tx
from node.http.body import BODY_IDLE_S
from node.request_auth import fresh_nonce, sign_request
from node.transport import HANDSHAKE_FRAME_BYTES_MAX, HANDSHAKE_TIMEOUT_S, PROTOCOL, encode_frame
from tests.integration.conftest import CHAIN_ID, Cluster

pytestmark = pytest.mark.slow

FLOOD_PER_KIND = 100
"""Connections of each flood kind (idle, headers unfinished, body short) held open at every node at once."""
FD_SLACK = 20
"""Descriptors a node may hold above its count before the floods (LevelDB and log files come and go)."""
RAFT_FLOOD = 100
"""Connections per node that send half a length prefix and wait."""
DEPTH = 200_000
RACE_ROUNDS = 3
_nonce = itertools.count(time.time_ns())


@dataclass
class Watch:
    cluster: Cluster
    statuses: list[tuple[str, str, int]] = field(default_factory=list)
    """(node, what was sent, status) of every answer a node gave in this module."""
    fds_before: dict[str, int] = field(default_factory=dict)
    started_after_ms: int = 0
    """A time before any node of the cluster started."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, node_id: str, what: str, status: int) -> int:
        with self.lock:
            self.statuses.append((node_id, what, status))
        return status

    def http(self, node_id: str, method: str, path: str, body: bytes | None = None, *,
             headers: dict[str, str] | None = None, ctype: str = "application/json",
             timeout: float = 30.0) -> tuple[int, dict[str, str], Any]:
        """One request by http.client (headers visible, no redirects or retries); the status is recorded."""
        url = urlsplit(self.cluster.url(node_id, path))
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": ctype, "Accept": "application/json", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
            got_headers = {k: v for k, v in resp.getheaders()}
        finally:
            conn.close()
        self.saw(node_id, f"{method} {path[:60]}", resp.status)
        try:
            doc: Any = json.loads(data)
        except ValueError:
            doc = data.decode("utf-8", "replace")
        return resp.status, got_headers, doc

    def signed(self, org: str, node_id: str, method: str, path: str, body: bytes = b"", *,
               ts_ms: int | None = None, nonce: str | None = None, seed: bytes | None = None,
               for_node: str | None = None) -> str:
        """An Authorization header (the org's own key, this node, now, a fresh nonce unless told otherwise)."""
        return sign_request(seed or self.cluster.org_seed(org), CHAIN_ID, for_node or node_id, org, method, path,
                            body, time.time_ns() // 1_000_000 if ts_ms is None else ts_ms, nonce or fresh_nonce())

    def submit(self, node_id: str, raw: bytes) -> tuple[int, Any]:
        status, _, doc = self.http(node_id, "POST", "/v1/tx?wait=commit&timeout_ms=20000", raw,
                                   ctype="application/msgpack", timeout=40.0)
        return status, doc

    def tx(self, org: str, kind: str, body: dict[str, Any]) -> bytes:
        return make_tx(self.cluster.org_seed(org), CHAIN_ID, kind, org, next(_nonce), body)

    def commit(self, node_id: str, org: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        status, doc = self.submit(node_id, self.tx(org, kind, body))
        assert status == 200 and doc["status"] == "committed", (kind, status, doc)
        result: dict[str, Any] = doc["result"]
        return result


@pytest.fixture(scope="module")
def watch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watch]:
    c = Cluster.create(tmp_path_factory.mktemp("hostile"), 3)
    try:
        started_after_ms = time.time_ns() // 1_000_000
        c.start_all()
        c.wait_leader()
        c.wait_converged()
        w = Watch(c, started_after_ms=started_after_ms)
        for node_id in c.nodes:
            w.fds_before[node_id] = fd_count(c, node_id)
        yield w
    finally:
        c.close()


# -- helpers ------------------------------------------------------------------------------------------------------


def fd_count(c: Cluster, node_id: str) -> int:
    proc = c.nodes[node_id].proc
    assert proc is not None
    return len(os.listdir(f"/proc/{proc.pid}/fd"))


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def http_addr(c: Cluster, node_id: str) -> tuple[str, int]:
    spec = c.config.node(node_id).http
    return spec.host, spec.port


def raft_addr(c: Cluster, node_id: str) -> tuple[str, int]:
    spec = c.config.node(node_id).raft
    return spec.host, spec.port


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) [^\r\n]*\r\n")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)\r\n", re.IGNORECASE)


def final_response(data: bytes) -> tuple[int, bytes, bytes] | None:
    """(status, head, body so far) of the first non-1xx response in `data`, or None before its head is whole."""
    pos = 0
    while True:
        m = _STATUS_LINE.match(data, pos)
        end = data.find(b"\r\n\r\n", pos)
        if m is None or end < 0:
            return None
        if not 100 <= int(m.group(1)) < 200:
            return int(m.group(1)), data[pos:end + 2], data[end + 4:]
        pos = end + 4


def answer_status(data: bytes) -> int | None:
    got = final_response(data)
    return None if got is None else got[0]


def complete(data: bytes) -> bool:
    got = final_response(data)
    if got is None:
        return False
    m = _CONTENT_LENGTH.search(got[1])
    return m is not None and len(got[2]) >= int(m.group(1))


def raw_http(w: Watch, node_id: str, data: bytes, what: str, *, wait_s: float = 10.0) -> int | None:
    """Send bytes to a node's HTTP port, read one whole answer (or until it closes, or `wait_s`), record its
    status. The node may answer and close before it has read everything sent (a 413): not an error here."""
    with socket.create_connection(http_addr(w.cluster, node_id), timeout=wait_s) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        got = read_until(s, wait_s, complete)
    status = answer_status(got)
    if status is not None:
        w.saw(node_id, what, status)
    return status


def read_until(s: socket.socket, wait_s: float, enough: Callable[[bytes], bool]) -> bytes:
    """What the peer sends until `enough(all of it)`, it closes, or `wait_s` passes."""
    chunks = []
    deadline = time.monotonic() + wait_s
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            chunk = s.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if enough(b"".join(chunks)):
            break
    return b"".join(chunks)


def hold(addr: tuple[str, int], first: bytes) -> socket.socket:
    s = socket.create_connection(addr, timeout=5.0)
    if first:
        s.sendall(first)
    return s


def drop(s: socket.socket, reset: bool) -> None:
    if reset:  # RST instead of FIN: the server learns of it as a reset, not an end of stream
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


POST_TX = b"POST /v1/tx HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
HALF_HEADERS = [
    b"",                                               # connect, then nothing
    b"PO",                                             # half a method
    b"GET /v1/status HTTP/1.1\r\nHost: no",            # a header line cut short
    POST_TX + b"Content-Length: 10",                   # no blank line ever
]
SHORT_BODIES = [
    POST_TX + b"Content-Length: 1000\r\n\r\n{\"payload\"",
    POST_TX + b"Transfer-Encoding: chunked\r\n\r\n100\r\n{\"pay",
    b"POST /v1/txs HTTP/1.1\r\nHost: node\r\nContent-Type: application/msgpack\r\nContent-Length: 5000\r\n\r\n\x91",
]


# -- 1. floods of idle and half-sent HTTP connections ---------------------------------------------------------------


def test_floods_of_idle_and_half_sent_connections_leave_the_nodes_serving(watch: Watch) -> None:
    c = watch.cluster
    nodes = list(c.nodes)
    # Sentinels: a body that stops arriving, and one whose chunked framing breaks after its headers were read
    # (aiohttp drops that parse error on the floor): each must end in a 408, not hold its handler for good.
    sentinels: list[tuple[str, socket.socket]] = []
    for node_id in nodes:
        sentinels.append((node_id, hold(http_addr(c, node_id), POST_TX + b"Content-Length: 100\r\n\r\n{\"a")))
        broken = hold(http_addr(c, node_id), POST_TX + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        time.sleep(0.05)  # the headers are parsed and the handler waits on the body before the bad chunk comes
        broken.sendall(b"ZZZ\r\nabc\r\n")
        sentinels.append((node_id, broken))
    opened = time.monotonic()

    held: dict[str, list[socket.socket]] = {n: [] for n in nodes}
    for node_id in nodes:
        addr = http_addr(c, node_id)
        for i in range(FLOOD_PER_KIND):
            held[node_id].append(hold(addr, HALF_HEADERS[i % len(HALF_HEADERS)]))
            held[node_id].append(hold(addr, SHORT_BODIES[i % len(SHORT_BODIES)]))
            held[node_id].append(hold(addr, b""))
    try:
        for node_id in nodes:  # the flood really landed: the node holds a descriptor for each connection
            wait_for(lambda n=node_id: fd_count(c, n) >= watch.fds_before[n] + 3 * FLOOD_PER_KIND - FD_SLACK, 10,
                     f"{node_id} accepted the flood")
        # Meanwhile every node serves and commits, through the leader and through followers.
        for node_id in nodes:
            status, _, st = watch.http(node_id, "GET", "/v1/status", timeout=5.0)
            assert status == 200 and st["leader_id"] is not None, st
        for node_id in nodes:
            status, doc = watch.submit(node_id, c.anchor_tx("tier1"))
            assert status == 200 and doc["status"] == "committed", doc
    finally:
        for node_id in nodes:
            for i, s in enumerate(held[node_id]):
                drop(s, reset=i % 2 == 0)
    # The clients left: every slot they held is free again.
    for node_id in nodes:
        wait_for(lambda n=node_id: fd_count(c, n) <= watch.fds_before[n] + FD_SLACK, 10,
                 f"{node_id} freed the flood's connections ({fd_count(c, node_id)} fds, "
                 f"{watch.fds_before[node_id]} before)")

    try:
        for node_id, s in sentinels:
            got = read_until(s, max(1.0, BODY_IDLE_S + 5 - (time.monotonic() - opened)), complete)
            status = answer_status(got)
            assert status == 408, (node_id, got[:200])
            watch.saw(node_id, "body that stopped", status)
            assert b'"body_timeout"' in got
    finally:
        for _, s in sentinels:
            s.close()


# -- 2. garbage on the HTTP port ------------------------------------------------------------------------------------


HTTP_GARBAGE = [
    ("random bytes", os.urandom(512) + b"\r\n\r\n"),
    ("binary method", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64)),  # a TLS ClientHello
    ("unknown method", b"FOO /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"),  # the parser's 400, not a 405
    ("bad version", b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n"),
    ("url too long", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("header too long", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\n"),
    ("header without colon", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n"),
    ("nul in header", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
    ("bad content-length", POST_TX + b"Content-Length: ten\r\n\r\n"),
    ("negative content-length", POST_TX + b"Content-Length: -1\r\n\r\n"),
    ("content-length overflow", POST_TX + b"Content-Length: 99999999999999999999999\r\n\r\n"),
    ("two content-lengths", POST_TX + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
    ("content-length and chunked", POST_TX + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bad chunk size", POST_TX + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n"),
]


@pytest.mark.parametrize(("name", "data"), HTTP_GARBAGE, ids=[g[0] for g in HTTP_GARBAGE])
def test_garbage_on_the_http_port_is_a_4xx(watch: Watch, name: str, data: bytes) -> None:
    for node_id in watch.cluster.nodes:
        status = raw_http(watch, node_id, data, name)
        assert status is not None and 400 <= status < 500, (node_id, name, status)


# -- 3. garbage on the raft port ------------------------------------------------------------------------------------


@dataclass
class RaftProbe:
    closed: bool
    seconds: float
    frames: list[Any]


def _tls_client() -> ssl.SSLContext:
    """What anyone can do: complete TLS 1.3 with a node (it asks no client certificate), verifying nothing."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


async def raft_probe(addr: tuple[str, int], first: bytes, answer: Callable[[dict[str, Any]], bytes] | None = None,
                     wait_s: float = HANDSHAKE_TIMEOUT_S + 5, tls: bool = True) -> RaftProbe:
    """Connect to a raft port (over TLS unless `tls` is False), send `first`, answer the node's hello with
    `answer(hello)`, read the node's frames until it closes the connection (or `wait_s`)."""
    reader, writer = await asyncio.open_connection(*addr, ssl=_tls_client() if tls else None)
    started = time.monotonic()
    frames: list[Any] = []
    closed = False
    try:
        writer.write(first)
        async with asyncio.timeout(wait_s):
            while True:
                try:
                    (length,) = struct.unpack(">I", await reader.readexactly(4))
                    body = await reader.readexactly(length)
                except (asyncio.IncompleteReadError, ConnectionResetError, ssl.SSLError):
                    closed = True
                    break
                frame = msgpack.unpackb(body, raw=False)
                frames.append(frame)
                if answer is not None and isinstance(frame, dict) and frame.get("t") == "hello":
                    writer.write(answer(frame))
    except TimeoutError:
        pass
    finally:
        writer.close()
    return RaftProbe(closed, time.monotonic() - started, frames)


def _hello(**fields: Any) -> bytes:
    base = {"t": "hello", "v": PROTOCOL, "chain_id": CHAIN_ID, "nonce": os.urandom(32)}
    return encode_frame(msgpack.packb({**base, **fields}, use_bin_type=True))


def _auth(sig: Any) -> Callable[[dict[str, Any]], bytes]:
    return lambda hello: encode_frame(msgpack.packb({"t": "auth", "sig": sig}, use_bin_type=True))


def raft_garbage(c: Cluster, node_id: str) -> list[tuple[str, bytes, Callable[[dict[str, Any]], bytes] | None]]:
    peer = next(n for n in c.nodes if n != node_id)  # a real member's id: the node answers its hello
    forged = SigningKey(os.urandom(32))
    raft_like = msgpack.packb({"type": "MsgApp", "from": peer, "to": node_id, "term": 1 << 40}, use_bin_type=True)
    return [
        ("random bytes", os.urandom(600), None),
        ("length prefix 2^32-1", struct.pack(">I", 0xFFFFFFFF), None),
        ("length over the handshake limit", struct.pack(">I", HANDSHAKE_FRAME_BYTES_MAX + 1) + b"x" * 64, None),
        ("truncated frame", struct.pack(">I", 200) + b"\x85" + b"x" * 20, None),
        ("half a length prefix", b"\x00\x00", None),
        ("not a map", encode_frame(msgpack.packb([1, 2, 3])), None),
        ("deep msgpack", encode_frame(b"\x91" * 4000 + b"\xc0"), None),
        ("a raft frame before any handshake", encode_frame(raft_like), None),
        ("hello from an unknown id", _hello(**{"from": "mallory", "to": node_id}), None),
        ("hello from the node itself", _hello(**{"from": node_id, "to": node_id}), None),
        ("hello to another node", _hello(**{"from": peer, "to": peer}), None),
        ("hello of another chain", _hello(**{"from": peer, "to": node_id, "chain_id": "other"}), None),
        ("hello with a short nonce", _hello(**{"from": peer, "to": node_id, "nonce": b"x"}), None),
        ("a member's id, forged signature",
         _hello(**{"from": peer, "to": node_id}), _auth(forged.sign(b"anything").signature)),
        ("a member's id, signature not bytes", _hello(**{"from": peer, "to": node_id}), _auth("AAAA")),
        ("a member's id, a raft frame instead of auth", _hello(**{"from": peer, "to": node_id}),
         lambda h: encode_frame(raft_like)),
        ("a member's id, then silence", _hello(**{"from": peer, "to": node_id}), None),
    ]


def test_garbage_on_the_raft_port_never_gets_a_connection(watch: Watch) -> None:
    c = watch.cluster

    async def run() -> list[tuple[str, str, RaftProbe]]:
        jobs = []
        for node_id in c.nodes:
            addr = raft_addr(c, node_id)
            for name, first, answer in raft_garbage(c, node_id):
                jobs.append((node_id, name, raft_probe(addr, first, answer)))
            # In clear text the node's TLS listener answers nothing: closed at once, or at the TLS timeout.
            for name, first in (("clear text: random bytes", os.urandom(600)),
                                ("clear text: a member's hello", _hello(**{"from": node_id, "to": node_id}))):
                jobs.append((node_id, name, raft_probe(addr, first, tls=False)))
            for i in range(RAFT_FLOOD):
                jobs.append((node_id, f"clear text: flood {i}", raft_probe(addr, b"\x00\x00", tls=False)))
        probes = await asyncio.gather(*(job for _, _, job in jobs))
        return [(node_id, name, probe) for (node_id, name, _), probe in zip(jobs, probes, strict=True)]

    for node_id, name, probe in asyncio.run(run()):
        where = f"{node_id}: {name}"
        assert probe.closed, f"{where}: still open after {probe.seconds:.1f} s"
        assert probe.seconds <= HANDSHAKE_TIMEOUT_S + 3, f"{where}: closed only after {probe.seconds:.1f} s"
        kinds = [f.get("t") if isinstance(f, dict) else f for f in probe.frames]
        assert "auth" not in kinds, f"{where}: the node authenticated itself to a stranger: {kinds}"
        if name.startswith("clear text"):
            assert kinds == [], f"{where}: a TLS listener answered clear text: {probe.frames}"
        else:
            assert set(kinds) <= {"hello", "error"} and kinds[-1:] == ["error"], f"{where}: {probe.frames}"
    # The real peer links were never disturbed: a leader all agree on, every outbound link up.
    c.wait_leader()
    for node_id in c.nodes:
        def linked(n: str = node_id) -> bool:
            status, _, view = watch.http(n, "GET", "/v1/cluster", timeout=5.0)
            return status == 200 and all(row["self"] or row["connected"] for row in view["nodes"])
        wait_for(linked, 10, f"{node_id}'s peer links up")


# -- 4. deep nesting, huge bodies, wrong methods, bad signatures ----------------------------------------------------


def _deep_envelope(c: Cluster) -> bytes:
    """A correctly signed envelope whose payload is 200,000-deep msgpack: it gets past the envelope's checks."""
    payload = b"\x91" * DEPTH + b"\xc0"
    sig = SigningKey(c.org_seed("tier1")).sign(payload).signature
    data: bytes = msgpack.packb({"payload": payload, "signer": "tier1", "sig": sig}, use_bin_type=True)
    return data


def deep_bodies(c: Cluster) -> list[tuple[str, str, bytes, str]]:
    deep_env = _deep_envelope(c)
    env_json = json.dumps({"payload": base64.b64encode(msgpack.unpackb(deep_env)["payload"]).decode(),
                           "signer": "tier1", "sig": base64.b64encode(b"\x00" * 64).decode()}).encode()
    return [
        ("json arrays", "/v1/tx", b"[" * DEPTH + b"]" * DEPTH, "application/json"),
        ("json arrays, never closed", "/v1/tx", b"[" * DEPTH, "application/json"),
        ("json objects", "/v1/tx", b'{"":' * DEPTH + b"1" + b"}" * DEPTH, "application/json"),
        ("json batch", "/v1/txs", b'{"txs": ' + b"[" * DEPTH + b"]" * DEPTH + b"}", "application/json"),
        ("json int of 300,000 digits", "/v1/tx", b'{"payload": ' + b"9" * 300_000 + b"}", "application/json"),
        ("msgpack arrays", "/v1/tx", b"\x91" * DEPTH + b"\xc0", "application/msgpack"),
        ("msgpack maps", "/v1/tx", b"\x81\xa0" * DEPTH + b"\xc0", "application/msgpack"),
        ("msgpack batch", "/v1/txs", b"\x91" * DEPTH + b"\xc0", "application/msgpack"),
        ("msgpack batch of maps", "/v1/txs", b"\x81\xa3txs" + b"\x91" * DEPTH + b"\xc0", "application/msgpack"),
        ("signed envelope, deep payload", "/v1/tx", deep_env, "application/msgpack"),
        ("json envelope, deep payload", "/v1/tx", env_json, "application/json"),
    ]


def test_deep_nesting_is_a_4xx_at_every_node(watch: Watch) -> None:
    c = watch.cluster
    for node_id in c.nodes:
        for name, path, body, ctype in deep_bodies(c):
            status, _, doc = watch.http(node_id, "POST", path, body, ctype=ctype)
            assert 400 <= status < 500, (node_id, name, status, doc)
            assert isinstance(doc, dict) and doc["error"]["code"], (node_id, name, doc)
        # On a signed route the body is hashed, never parsed; the session route caps it small.
        deep = b"[" * DEPTH
        header = watch.signed("tier1", node_id, "POST", "/v1/session", deep)
        status, _, doc = watch.http(node_id, "POST", "/v1/session", deep, headers={"Authorization": header})
        assert status == 413, doc
        status, _, doc = watch.http(node_id, "POST", "/admin/members", deep)
        assert status == 403 and doc["error"]["code"] == "governance_required"


def test_huge_bodies_are_413(watch: Watch) -> None:
    c = watch.cluster
    limit = c.config.max_body_bytes
    batch_limit = max(limit, 4 * c.config.block_max_bytes)
    for node_id in c.nodes:
        for path, size, ctype in (("/v1/tx", limit + 1, "application/json"),
                                  ("/v1/tx", limit + 1, "application/msgpack"),
                                  ("/v1/txs", batch_limit + 1, "application/msgpack")):
            status, _, doc = watch.http(node_id, "POST", path, b"[" * size, ctype=ctype)
            assert status == 413 and doc["error"]["code"] == "body_too_large", (node_id, path, doc)
        # A length announced but never sent, and one behind Expect: 100-continue: refused before any body.
        assert raw_http(watch, node_id, POST_TX + b"Content-Length: 1000000000000\r\n\r\n",
                        "content-length 10^12", wait_s=5.0) == 413
        assert raw_http(watch, node_id, POST_TX + b"Expect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n",
                        "expect 100-continue", wait_s=5.0) in (100, 413)
        # Chunked: no length to check up front; counted while read.
        chunk = b"[" * (64 << 10)
        chunked = POST_TX + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + (
            b"%x\r\n%s\r\n" % (len(chunk), chunk)) * (limit // len(chunk) + 2) + b"0\r\n\r\n"
        assert raw_http(watch, node_id, chunked, "chunked over the limit") == 413


WRONG_METHODS = [
    ("PUT", "/v1/tx"), ("GET", "/v1/tx"), ("DELETE", "/v1/txs"), ("POST", "/v1/status"), ("DELETE", "/v1/status"),
    ("PATCH", "/v1/blocks/1"), ("POST", "/v1/certs/EC1"), ("PUT", "/v1/orgs/boc"), ("GET", "/admin/members"),
    ("GET", "/v1/session"), ("TRACE", "/v1/status"), ("OPTIONS", "/v1/tx"),
]


def test_wrong_methods_are_405_with_allow(watch: Watch) -> None:
    for node_id in watch.cluster.nodes:
        for method, path in WRONG_METHODS:
            status, headers, doc = watch.http(node_id, method, path, b"{}")
            assert status == 405, (node_id, method, path, status, doc)
            allow = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
            assert allow and method not in allow, (method, path, headers)
            assert doc["error"]["code"] == "method_not_allowed"


def test_bad_signatures_and_replayed_nonces_are_401(watch: Watch) -> None:
    c = watch.cluster
    path = "/v1/orgs/geely"
    now = time.time_ns() // 1_000_000
    nodes = list(c.nodes)
    for i, node_id in enumerate(nodes):
        other = nodes[(i + 1) % len(nodes)]
        bad = {
            "another org's key": watch.signed("tier1", node_id, "GET", path, seed=c.org_seed("tier2")),
            "a random key": watch.signed("tier1", node_id, "GET", path, seed=os.urandom(32)),
            "signed for another node": watch.signed("tier1", node_id, "GET", path, for_node=other),
            "signed for another path": watch.signed("tier1", node_id, "GET", "/v1/orgs/boc"),
            "signed for another method": watch.signed("tier1", node_id, "POST", path),
            "ts 60 s old": watch.signed("tier1", node_id, "GET", path, ts_ms=now - 60_000),
            "ts 60 s ahead": watch.signed("tier1", node_id, "GET", path, ts_ms=now + 60_000),
            "ts before the node started": watch.signed("tier1", node_id, "GET", path,
                                                       ts_ms=watch.started_after_ms - 1),
            "unknown org": sign_request(os.urandom(32), CHAIN_ID, node_id, "mallory", "GET", path, b"", now,
                                        fresh_nonce()),
            "garbage": "ECERT-ED25519 " + "A" * 400,
            "too long": "ECERT-ED25519 " + "A" * 5000,
            "bearer garbage": "Bearer ecs1~nonsense",
            "basic": "Basic dXNlcjpwYXNz",
        }
        if now - watch.started_after_ms >= 29_000:
            del bad["ts before the node started"]  # meaningful only while the node's start is inside the window
        for name, header in bad.items():
            status, _, doc = watch.http(node_id, "GET", path, headers={"Authorization": header})
            assert status == 401 and doc["error"]["code"] == "unauthenticated", (node_id, name, status, doc)
        # A replayed header, and a fresh signature over a used nonce: refused; the first use was fine.
        header = watch.signed("tier1", node_id, "GET", path, nonce="cd" * 16)
        assert watch.http(node_id, "GET", path, headers={"Authorization": header})[0] == 200
        assert watch.http(node_id, "GET", path, headers={"Authorization": header})[0] == 401
        again = watch.signed("tier1", node_id, "GET", path, nonce="cd" * 16)
        status, _, doc = watch.http(node_id, "GET", path, headers={"Authorization": again})
        assert status == 401 and "nonce" in doc["error"]["message"]
        # The same header raced against itself: exactly one read gets through.
        header = watch.signed("tier1", node_id, "GET", path)
        got = race([lambda h=header, n=node_id: watch.http(n, "GET", path, headers={"Authorization": h})[0]] * 8)
        assert sorted(got) == [200] + [401] * 7, got
        # Two Authorization headers: which one would count is ambiguous, so neither does.
        two = (f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {header}\r\n"
               f"Authorization: {watch.signed('tier1', node_id, 'GET', path)}\r\n\r\n").encode()
        assert raw_http(watch, node_id, two, "two authorization headers", wait_s=5.0) == 401


# -- 5. double spends raced at different nodes ----------------------------------------------------------------------


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; their results in order (an exception is re-raised)."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # handed to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_double_spends_raced_at_different_nodes_commit_once(watch: Watch) -> None:
    c = watch.cluster
    nodes = list(c.nodes)
    now = time.time_ns() // 1_000_000
    amount = 100_000
    doc_id = f"inv-race-{next(_nonce)}"
    watch.commit(nodes[0], "boc", "credit.grant", {"core": "geely", "limit": 10 * RACE_ROUNDS * amount,
                                                   "expires_at": now + 86_400_000})
    # A new chain's rules (node/genesis_file.py): the invoice under a contract, each transfer on a contract
    # between holder and recipient, so that every racing spend is valid on its own.
    contracts = {}
    for seller, buyer in (("tier1", "geely"), ("tier2", "tier1"), ("tier3", "tier1")):
        contracts[seller, buyer] = ct = f"ct-race-{seller}-{buyer}-{next(_nonce)}"
        watch.commit(nodes[1], seller, "trade.anchor", {
            "doc_id": ct, "kind": "contract", "doc_hash": hashlib.sha256(ct.encode()).hexdigest(),
            "counterparty": buyer, "amount": RACE_ROUNDS * amount})
        watch.commit(nodes[2], buyer, "trade.confirm", {"doc_id": ct})
    watch.commit(nodes[1], "tier1", "trade.anchor", {
        "doc_id": doc_id, "kind": "invoice", "doc_hash": hashlib.sha256(doc_id.encode()).hexdigest(),
        "counterparty": "geely", "amount": RACE_ROUNDS * amount, "contract_id": contracts["tier1", "geely"]})
    watch.commit(nodes[2], "geely", "trade.confirm", {"doc_id": doc_id})
    certs = []
    for _ in range(RACE_ROUNDS):
        (cert_id,) = watch.commit(nodes[0], "geely", "ecert.issue", {
            "to": "tier1", "amount": amount, "maturity": now + 3_600_000, "bank": "boc", "invoice_ids": [doc_id]
        })["certs"]
        watch.commit(nodes[1], "tier1", "ecert.accept", {"cert_id": cert_id})
        certs.append(cert_id)

    for cert_id in certs:
        # Three different spends of one certificate by its holder, each at a different node, at once.
        spends = [
            watch.tx("tier1", "ecert.transfer", {"cert_id": cert_id, "to": [{"org": "tier2", "amount": amount}],
                                                 "trade_docs": [contracts["tier2", "tier1"]]}),
            watch.tx("tier1", "ecert.transfer", {"cert_id": cert_id, "to": [{"org": "tier3", "amount": 1}],
                                                 "trade_docs": [contracts["tier3", "tier1"]]}),
            watch.tx("tier1", "ecert.split", {"cert_id": cert_id, "amounts": [amount // 2, amount - amount // 2]}),
            watch.tx("tier1", "finance.request", {"cert_id": cert_id, "bank": "boc"}),
        ]
        at = [nodes[i % len(nodes)] for i in range(len(spends))]
        answers = race([lambda raw=raw, n=n: watch.submit(n, raw) for raw, n in zip(spends, at, strict=True)])
        assert all(status == 200 for status, _ in answers), answers
        outcomes = [doc["status"] for _, doc in answers]
        assert outcomes.count("committed") == 1, answers
        assert outcomes.count("rejected") == len(spends) - 1, answers
        for _, doc in answers:
            if doc["status"] == "rejected":
                assert isinstance(doc["error"]["code"], str) and doc["error"]["code"], doc
        financed = outcomes.index("committed") == 3  # else a transfer or split spent it
        top = c.wait_converged(min_height=max(doc["height"] for _, doc in answers))
        assert top["state_root"]
        stories = []
        for node_id in nodes:  # every node tells the holder the same story
            path = "/v1/orgs/tier1/certs"
            header = watch.signed("tier1", node_id, "GET", path)
            status, _, holdings = watch.http(node_id, "GET", path, headers={"Authorization": header})
            assert status == 200, holdings
            live = {cert["id"]: cert["status"] for cert in holdings["certs"]}
            assert live.get(cert_id) == ("financing" if financed else None), (node_id, cert_id, live)
            stories.append(holdings)
        assert all(story == stories[0] for story in stories), stories

    # One tx submitted at every node at once: applied once, one answer everywhere.
    raw = c.anchor_tx("tier2", counterparty="geely")
    answers = race([lambda n=n: watch.submit(n, raw) for n in nodes])
    assert all(status == 200 and doc["status"] == "committed" for status, doc in answers), answers
    assert len({(doc["tx_id"], doc["height"]) for _, doc in answers}) == 1, answers
    c.wait_converged()


# -- 6. after it all ------------------------------------------------------------------------------------------------


def handled_by_aiohttp(entry: dict[str, Any]) -> bool:
    """aiohttp's own log line for a request its parser refused (it answered 400 and closed): a traceback at error
    level, but of an error that was handled (see the report in docs/SECURITY.md, "Limits")."""
    unindented = [line for line in str(entry.get("exc", "")).splitlines() if line[:1] not in ("", " ")]
    return (entry.get("logger") == "aiohttp.server" and str(entry.get("event", "")).startswith("Error handling")
            and bool(unindented) and unindented[-1].startswith("aiohttp.http_exceptions."))  # the raised one


def unhandled_tracebacks(data_dir: Path) -> list[str]:
    bad = []
    log_file = data_dir / "node.log"
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            bad.append(line[:300])
            continue
        if entry.get("level") == "critical" or ("exc" in entry and not handled_by_aiohttp(entry)):
            bad.append(f"{entry.get('logger')} {entry.get('event')}: {str(entry.get('exc', ''))[-600:]}")
    out = (data_dir / "node.out").read_text(encoding="utf-8", errors="replace")
    if "Traceback" in out:
        bad.append("node.out: " + out[out.index("Traceback"):][:600])
    return bad


def test_after_it_all_every_node_serves_and_commits_and_nothing_was_a_5xx(watch: Watch) -> None:
    c = watch.cluster
    for node_id in c.nodes:
        assert c.nodes[node_id].alive, f"{node_id} died:\n{c.tail(node_id)}"
        status, _, st = watch.http(node_id, "GET", "/v1/status", timeout=5.0)
        assert status == 200 and st["node_id"] == node_id
    heights = []
    for node_id in c.nodes:
        status, doc = watch.submit(node_id, c.anchor_tx("tier1"))
        assert status == 200 and doc["status"] == "committed", (node_id, doc)
        heights.append(doc["height"])
    c.wait_converged(min_height=max(heights))
    for node_id in c.nodes:
        wait_for(lambda n=node_id: fd_count(c, n) <= watch.fds_before[n] + FD_SLACK, 10,
                 f"{node_id} back to its descriptors ({fd_count(c, node_id)}, {watch.fds_before[node_id]} before)")

    fives = [s for s in watch.statuses if s[2] >= 500]
    assert not fives, (fives, collections.Counter(status for _, _, status in watch.statuses))
    for node_id in c.nodes:
        bad = unhandled_tracebacks(c.nodes[node_id].data_dir)
        assert not bad, f"{node_id}:\n" + "\n".join(bad)
