"""Authenticated peer transport: persistent TLS 1.3 connections carrying length-prefixed msgpack Raft frames.

Shape (like etcd's rafthttp "streams"): each node dials every peer once and uses that connection only to *send*;
what it receives arrives on connections the peers dialled. So a connection has one writer and one reader, and
there is no tie-breaking between two connections of the same pair.

Frame: 4-byte big-endian length, then that many bytes of msgpack. Lengths over `frame_bytes_max` close the
connection (a peer cannot make us allocate without limit).

TLS (node/tls.py explains the shape): with `tls` set, the acceptor presents a certificate self-signed by its node
key and the initiator refuses the connection unless that key is the pinned key of the node it dialled; TLS 1.3
only. Everything below then runs inside TLS. A connection that does not speak TLS 1.3 is closed before a frame
is read, and logged with the reason. `tls=None` is the clear-text transport of ecert-raft/1, kept to measure
what TLS costs (cluster.toml `peer_tls = false`): anyone on the path reads it and can inject into it.

Handshake (before any Raft message; both directions authenticated):

    initiator -> acceptor   hello {chain_id, from: I, to: A, nonce: Ni (32 fresh random bytes)}
    acceptor  -> initiator  hello {chain_id, from: A, to: I, nonce: Na}     (or error, then close)
    initiator -> acceptor   auth  {sig: Sign_I(transcript("initiator", chain_id, I, A, Ni, Na, B))}
    acceptor  -> initiator  auth  {sig: Sign_A(transcript("acceptor",  chain_id, A, I, Ni, Na, B))}

B is the channel binding: SHA-256 of the acceptor's TLS certificate, the one the initiator received and the one
the acceptor presented (RFC 5929 tls-server-end-point), empty in clear text. A man in the middle who terminates
TLS with its own certificate has different bindings on its two sides, so the signatures it relays do not verify.
Each side checks the claimed id is a current member and verifies the signature with that id's node key; the
same pinned key is what the initiator compares the acceptor's certificate with. The peer table (id -> raft
address, node key) comes from the membership in state when the chain's genesis lists nodes: genesis for the
first members, the approved `member.propose` for later ones (`member_peers`; the node replaces the table with
`set_peers` whenever the membership or the Raft configuration changes), so a node that is not in this node's
cluster.toml can join. A chain whose genesis lists no nodes takes the table from cluster.toml, and removals from
the Raft configuration (`remove_member`). A recorded transcript is useless later: the other side's nonce is fresh
each time. After the handshake every frame's `from_id` must equal the authenticated id and `to` our own id, or
the connection closes.

Removal notice: an acceptor whose applied membership says the initiator was removed answers its hello with

    acceptor  -> initiator  removed {from: A, to: I, sig: Sign_A(transcript("removed", chain_id, A, I, Ni, "", B))}

and closes. The initiator verifies it with A's pinned key (fresh: it covers Ni; bound to the channel like the
auth) and reports it (`on_removal_notice`); a node that was down while it was removed learns it this way, from
a quorum of the voters it knows (node/removal_notices.py), not from any one peer. A peer of an older version
that does not know the frame counts it as a failed handshake, as before.

Application frames: a frame whose body starts with the byte 0xC1 (which msgpack never produces, so no Raft frame
can start with it) carries an application payload instead of a Raft message: the nodes use them to forward
clients' txs to the leader and to answer. They share the authenticated connection, its ordering, its bounded queue
and the fault layer with Raft frames; the payload is not interpreted here.

Bounded per-peer send queues: when full the *oldest* frame is dropped (Raft retransmits; newer state matters
more) and counted. Reconnects back off exponentially, capped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from consensus.config import MSG_BYTES_MAX_DEFAULT, SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT
from consensus.invariant import require
from consensus.messages import Message
from ecert.membership import REMOVED, NodeMember
from ledger.block import BLOCK_BYTES_MAX
from node.config import Address, ClusterConfigError, parse_address
from node.keys import KeyPair, verify
from node.refusals import RefusalTally
from node.tls import PeerTls, TlsError, certificate_key, channel_binding, describe_ssl_error

log = logging.getLogger("node.transport")

PROTOCOL = "ecert-raft/2"
"""/2: the transcript carries the TLS channel binding (peer links are TLS 1.3 unless peer_tls = false)."""
NONCE_BYTES = 32
HANDSHAKE_FRAME_BYTES_MAX = 4096
HANDSHAKE_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 2.0
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
SEND_QUEUE_MAX = 4096
RAFT_MSG_OVERHEAD_BYTES_MAX = 1 << 20
"""What a Raft message adds to the entry data or snapshot chunk it carries: fixed fields, node ids, a snapshot's
membership (at most 1024 ids of 256 bytes) and per entry its type, bin header and term run. Measured worst cases
(tests/node/test_limits.py): 0.6 KiB around one block, 160 KiB around max_msg_bytes of the smallest blocks,
260 KiB around a snapshot chunk."""
FRAME_BYTES_MAX = BLOCK_BYTES_MAX + RAFT_MSG_OVERHEAD_BYTES_MAX
"""Largest frame body read from a peer: an AppendEntries carrying one block of BLOCK_BYTES_MAX (Raft sends a
single entry over max_msg_bytes alone) with its message around it."""
WRITE_BUFFER_BYTES_MAX = 4 << 20
STREAM_LIMIT_BYTES = 64 << 10
"""asyncio.StreamReader's buffer limit on accepted connections (it pauses reading above twice this)."""
LISTEN_BACKLOG = 100
TLS_SHUTDOWN_TIMEOUT_S = 1.0
"""How long a closed TLS connection waits for the peer's close_notify before the socket goes (asyncio's default,
30 s, would hold a descriptor per connection a stranger leaves hanging)."""
ACCEPT_RETRY_S = 0.1
HANDSHAKES_PENDING_MAX = 64
"""Inbound connections at most at once that have not finished the handshake (TLS, then ours): a stranger who
opens connections and sends nothing holds each for HANDSHAKE_TIMEOUT_S, and without a cap could take every file
descriptor the node has. Above it a new connection is closed at once; an authenticated peer's link does not
count (a consortium's peers are a few dozen at most)."""
_LEN = struct.Struct(">I")
TLS_HANDSHAKE_RECORD = b"\x16\x03"
"""First two bytes of a TLS ClientHello (record type handshake, version 3.x): a frame length no handshake
frame has (over 369 MB)."""
APP_FRAME_MARK = b"\xc1"
"""First byte of an application frame's body: msgpack's one never-used byte."""


def check_frame_limits(frame_bytes_max: int, handshake_frame_bytes_max: int, block_bytes_max: int,
                       msg_bytes_max: int, snapshot_chunk_bytes_max: int, raft_msg_overhead_bytes_max: int) -> None:
    """Raise InvariantViolation unless a frame holds the largest Raft message the node sends: one block alone,
    `max_msg_bytes` of entries, or a snapshot chunk, each with its message around it. The node runs the Raft core
    with consensus/config.py's default sizes (node/driver.py)."""
    payload = max(block_bytes_max, msg_bytes_max, snapshot_chunk_bytes_max)
    require(payload + raft_msg_overhead_bytes_max <= frame_bytes_max,
            f"a Raft message of {payload} data bytes plus {raft_msg_overhead_bytes_max} of overhead does not fit "
            f"in FRAME_BYTES_MAX {frame_bytes_max}")
    require(handshake_frame_bytes_max <= frame_bytes_max, "a handshake frame must fit in a frame")


check_frame_limits(FRAME_BYTES_MAX, HANDSHAKE_FRAME_BYTES_MAX, BLOCK_BYTES_MAX, MSG_BYTES_MAX_DEFAULT,
                   SNAPSHOT_CHUNK_BYTES_MAX_DEFAULT, RAFT_MSG_OVERHEAD_BYTES_MAX)


class TransportError(Exception):
    """A peer broke the framing or handshake protocol; the connection is closed."""


class HandshakeError(TransportError):
    pass


class FrameTooLargeError(TransportError):
    pass


class RemovedByPeer(HandshakeError):
    """The peer we dialled answered with a verified removal notice: its membership says we were removed."""

    def __init__(self, peer_id: str) -> None:
        super().__init__(f"{peer_id} says this node was removed from the cluster")
        self.peer_id = peer_id


class _RefusedAsRemoved(HandshakeError):
    """Acceptor side: the initiator was removed; `frame` is the signed notice to answer with."""

    def __init__(self, sender: str, frame: bytes) -> None:
        super().__init__(f"node {sender!r} was removed from the cluster")
        self.frame = frame


class Faults(Protocol):
    def outbound(self, dst: str) -> tuple[bool, int]: ...
    def inbound(self, src: str) -> tuple[bool, int]: ...


@dataclass(frozen=True, slots=True)
class PeerInfo:
    id: str
    raft: Address
    public_key: bytes
    """32-byte Ed25519 node public key."""


def member_peers(members: Iterable[NodeMember], self_id: str, in_raft: Collection[str]
                 ) -> tuple[list[PeerInfo], set[str]]:
    """The peer table of the state membership: every node but us that is not removed, and, until this node's
    Raft configuration has let go of it too, a removed one (the change that removes it must still reach it and
    be acknowledged by the old configuration). Returns (peers, removed ids). A record whose address or key does
    not parse (the chain validated both) is left out and logged."""
    peers: list[PeerInfo] = []
    removed: set[str] = set()
    for m in members:
        if m.id == self_id:
            continue
        if m.status == REMOVED and m.id not in in_raft:
            removed.add(m.id)
            continue
        try:
            peers.append(PeerInfo(m.id, parse_address(m.raft, f"membership.{m.id}.raft"), bytes.fromhex(m.node_pk)))
        except (ClusterConfigError, ValueError) as exc:
            log.error("bad_member_record", extra={"peer": m.id, "reason": str(exc)})
    return peers, removed


@dataclass(slots=True)
class PeerStats:
    sent: int = 0
    received: int = 0
    dropped: int = 0
    """Frames dropped because the send queue was full."""
    connected: bool = False
    last_contact: float | None = None
    """time.monotonic() of the last frame received from this peer."""
    handshake_failures: int = 0


# -- framing (pure helpers) ---------------------------------------------------------------------------


def encode_frame(body: bytes) -> bytes:
    return bytes(_LEN.pack(len(body)) + body)


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One frame's body. Raises IncompleteReadError on EOF, FrameTooLargeError over `limit`."""
    header = await reader.readexactly(_LEN.size)
    (length,) = _LEN.unpack(header)
    if length > limit:
        raise FrameTooLargeError(f"frame of {length} bytes over the limit of {limit}")
    return await reader.readexactly(length)


def transcript(role: str, chain_id: str, signer: str, peer: str, nonce_i: bytes, nonce_a: bytes,
               binding: bytes = b"") -> bytes:
    """The bytes a side signs in the handshake. `role` stops a signature being reflected to the other side;
    `binding` (the acceptor certificate's tls-server-end-point, b"" in clear text) ties it to this TLS channel."""
    data: bytes = msgpack.packb([PROTOCOL, role, chain_id, signer, peer, nonce_i, nonce_a,
                                 "tls-server-end-point", binding], use_bin_type=True)
    return data


def _pack(obj: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def _unpack_handshake(body: bytes, kind: str, or_kind: str | None = None) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=HANDSHAKE_FRAME_BYTES_MAX)
    except Exception as exc:  # msgpack raises several types on garbage
        raise HandshakeError(f"undecodable {kind} frame") from exc
    if not isinstance(obj, dict):
        raise HandshakeError(f"{kind} frame is not a map")
    if obj.get("t") == "error":
        raise HandshakeError(f"peer refused: {obj.get('reason')!r}")
    if obj.get("t") != kind and (or_kind is None or obj.get("t") != or_kind):
        raise HandshakeError(f"expected {kind} frame, got {obj.get('t')!r}")
    return obj


def _check_hello(obj: dict[str, Any], chain_id: str, to: str) -> tuple[str, bytes]:
    if obj.get("v") != PROTOCOL:
        raise HandshakeError(f"protocol {obj.get('v')!r} != {PROTOCOL}")
    if obj.get("chain_id") != chain_id:
        raise HandshakeError(f"chain_id {obj.get('chain_id')!r} != {chain_id!r}")
    if obj.get("to") != to:
        raise HandshakeError(f"hello addressed to {obj.get('to')!r}, not {to!r}")
    sender, nonce = obj.get("from"), obj.get("nonce")
    if not isinstance(sender, str) or not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise HandshakeError("hello needs a string 'from' and a 32-byte 'nonce'")
    return sender, nonce


async def _listen(addr: Address) -> list[socket.socket]:
    """Non-blocking listening sockets for `addr`, bound as asyncio.start_server binds them: every address the
    host resolves to (a wildcard, a name with an IPv4 and an IPv6 address), SO_REUSEADDR, IPv6 sockets v6-only."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(addr.host or None, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, sockaddr in dict.fromkeys(infos):
            s = socket.socket(family, kind, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(sockaddr)
            s.listen(LISTEN_BACKLOG)
            s.setblocking(False)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


# -- the transport ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outbox:
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    writer: asyncio.StreamWriter | None = None
    """Set while connected and authenticated: frames may be written at once when nothing is queued."""
    redial: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the peer dialled us: it is up, so a dial loop backing off tries again now."""


class PeerTransport:
    def __init__(
        self,
        *,
        node_id: str,
        chain_id: str,
        key: KeyPair,
        listen: Address,
        peers: Iterable[PeerInfo],
        on_message: Callable[[Message], None],
        on_peer_connected: Callable[[str], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_app_frame: Callable[[str, bytes], None] | None = None,
        on_removal_notice: Callable[[str], None] | None = None,
        encode: Callable[[Message], bytes] | None = None,
        decode: Callable[[bytes], Message] | None = None,
        faults: Faults | None = None,
        send_queue_max: int = SEND_QUEUE_MAX,
        frame_bytes_max: int = FRAME_BYTES_MAX,
        tls: PeerTls | None = None,
        handshakes_pending_max: int = HANDSHAKES_PENDING_MAX,
    ) -> None:
        if encode is None or decode is None:
            from consensus.codec import decode_message, encode_message

            encode, decode = encode or encode_message, decode or decode_message
        self.node_id = node_id
        self.chain_id = chain_id
        self.key = key
        self.listen = listen
        self.peers: dict[str, PeerInfo] = {p.id: p for p in peers if p.id != node_id}
        self.removed: set[str] = set()
        self.told_removed: set[str] = set()
        """The removed ids whose removal this node applied itself: their handshakes get a signed notice."""
        self.on_message = on_message
        self.on_removal_notice = on_removal_notice
        self.on_peer_connected = on_peer_connected
        self.on_drop = on_drop
        self.on_app_frame = on_app_frame
        self.encode = encode
        self.decode = decode
        self.faults = faults
        self.send_queue_max = send_queue_max
        self.frame_bytes_max = frame_bytes_max
        self.tls = tls
        """None: clear text (measurement only, see the module docstring)."""
        require(tls is None or (tls.node_id == node_id and tls.chain_id == chain_id),
                "the TLS certificate is for another node or chain")
        self.stats: dict[str, PeerStats] = {pid: PeerStats() for pid in self.peers}
        self.rejected_handshakes = 0
        self.handshakes_pending_max = handshakes_pending_max
        self._refusals = RefusalTally(log, "connections_refused")
        self._handshaking: set[asyncio.Task[None]] = set()
        """Inbound connections (their tasks) not yet authenticated: what the cap counts."""
        self._outboxes: dict[str, _Outbox] = {}
        self._server: asyncio.AbstractServer | None = None
        self._listeners: list[socket.socket] = []
        """With TLS: the listening sockets, served by _accept_loop (without TLS, `_server`)."""
        self._accept_loops: list[asyncio.Task[None]] = []
        self._inbound: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._closed = False

    # -- lifecycle

    async def start(self) -> None:
        if self.tls is None:
            self._server = await asyncio.start_server(
                self._accept, self.listen.host, self.listen.port, reuse_address=True, limit=STREAM_LIMIT_BYTES)
        else:
            # Our own accept loop, not start_server(ssl=...): asyncio and uvloop drop a connection whose TLS
            # handshake fails without a word, and we want to log why (a clear-text peer, an old TLS) and count it.
            # (StreamWriter.start_tls after a plain accept loses a ClientHello read before it, under uvloop.)
            loop = asyncio.get_running_loop()
            self._listeners = await _listen(self.listen)
            self._accept_loops = [loop.create_task(self._accept_loop(s, self.tls), name=f"accept-{s.getsockname()}")
                                  for s in self._listeners]
        for pid in self.peers:
            self._outbox(pid)

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        for t in self._accept_loops:
            t.cancel()
        for s in self._listeners:
            s.close()
        for handle in self._timers:
            handle.cancel()
        tasks = [o.task for o in self._outboxes.values() if o.task] + list(self._inbound)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    # -- membership

    def remove_member(self, node_id: str) -> None:
        """A removed member may neither send to us nor receive from us any more; if it dials us it is told."""
        self.removed.add(node_id)
        self.told_removed.add(node_id)
        box = self._outboxes.pop(node_id, None)
        if box and box.task:
            box.task.cancel()

    def restore_member(self, node_id: str) -> None:
        self.removed.discard(node_id)
        self.told_removed.discard(node_id)
        if node_id in self.peers and not self._closed:
            self._outbox(node_id)

    def set_peers(self, peers: Iterable[PeerInfo], removed: Iterable[str], tell: Iterable[str] = ()) -> None:
        """Replace the peer table (the membership changed): a new peer is dialled, one whose address or key
        changed is dialled again, one that left the table or is `removed` is cut off (its connections close at
        their next frame, and its handshakes are refused). Those of `removed` also in `tell` (their removal is
        in the state this node applied) get a signed removal notice when they dial us."""
        table = {p.id: p for p in peers if p.id != self.node_id}
        cut = set(removed) - set(table)
        told = set(tell) & cut
        if table == self.peers and cut == self.removed and told == self.told_removed:
            return
        gone = [pid for pid, old in self.peers.items() if table.get(pid) != old]
        self.peers, self.removed, self.told_removed = table, cut, told
        for pid in gone:
            box = self._outboxes.pop(pid, None)
            if box and box.task:
                box.task.cancel()
        for pid in table:
            self.stats.setdefault(pid, PeerStats())
            if not self._closed and (self._server is not None or self._listeners):  # else start() dials them
                self._outbox(pid)
        log.info("peers_changed", extra={"peers": sorted(table), "removed": sorted(cut)})

    def is_member(self, node_id: str) -> bool:
        return node_id in self.peers and node_id not in self.removed

    # -- sending

    def send(self, msg: Message) -> None:
        """Queue a Raft message for its peer; never blocks. Unknown or removed peers are ignored."""
        dst = msg.to
        if self._closed or not self.is_member(dst):
            return
        self._send_frame(dst, encode_frame(self.encode(msg)))

    def send_app(self, dst: str, payload: bytes) -> None:
        """Queue an application payload for peer `dst` (see the module docstring); never blocks. Like Raft
        frames it may be dropped (partition, full queue, lost connection): the caller needs its own timeout."""
        if self._closed or not self.is_member(dst):
            return
        self._send_frame(dst, encode_frame(APP_FRAME_MARK + payload))

    def _send_frame(self, dst: str, frame: bytes) -> None:
        if self.faults is not None:
            drop, delay_ms = self.faults.outbound(dst)
            if drop:
                return
            if delay_ms > 0:
                self._later(delay_ms, lambda: self._enqueue(dst, frame))
                return
        self._enqueue(dst, frame)

    def _enqueue(self, dst: str, frame: bytes) -> None:
        if self._closed or not self.is_member(dst):
            return
        box = self._outbox(dst)
        w = box.writer
        if (w is not None and not box.queue and not w.is_closing()
                and w.transport.get_write_buffer_size() < WRITE_BUFFER_BYTES_MAX):
            # Straight to the socket (asyncio tries a synchronous send): no task switch, and the frame is on
            # the wire before the caller goes on (e.g. to its own fsync).
            w.write(frame)
            self.stats[dst].sent += 1
            return
        if len(box.queue) >= self.send_queue_max:
            box.queue.popleft()
            self.stats[dst].dropped += 1
            if self.on_drop is not None:
                self.on_drop(dst)
        box.queue.append(frame)
        box.ready.set()

    def _later(self, delay_ms: int, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            fn()

        handle = loop.call_later(delay_ms / 1000, fire)
        self._timers.add(handle)

    def _outbox(self, dst: str) -> _Outbox:
        box = self._outboxes.get(dst)
        if box is None:
            box = self._outboxes[dst] = _Outbox()
        if box.task is None or box.task.done():
            box.task = asyncio.get_running_loop().create_task(self._dial_loop(dst, box), name=f"dial-{dst}")
        return box

    async def _dial_loop(self, dst: str, box: _Outbox) -> None:
        stats = self.stats[dst]
        backoff = BACKOFF_MIN_S
        while not self._closed:
            peer = self.peers.get(dst)
            if peer is None:  # left the table (set_peers cancels us too; this is for a race with it)
                return
            writer: asyncio.StreamWriter | None = None
            try:
                reader, conn = await asyncio.wait_for(self._connect(peer), CONNECT_TIMEOUT_S)
                writer = conn
                await asyncio.wait_for(self._handshake_initiator(reader, conn, peer), HANDSHAKE_TIMEOUT_S)
                stats.connected = True
                backoff = BACKOFF_MIN_S
                log.info("peer_connected", extra={"peer": dst})
                box.writer = conn
                await self._pump(box, reader, conn, stats)
            except asyncio.CancelledError:
                raise
            except HandshakeError as exc:
                stats.handshake_failures += 1
                if isinstance(exc, RemovedByPeer):
                    log.warning("removal_notice", extra={"peer": dst})
                    if self.on_removal_notice is not None:
                        try:
                            self.on_removal_notice(dst)
                        except Exception:
                            log.exception("on_removal_notice_failed", extra={"peer": dst})
                else:
                    log.warning("handshake_failed", extra={"peer": dst, "reason": str(exc)})
            except (OSError, TransportError, asyncio.IncompleteReadError, TimeoutError):
                pass
            finally:
                box.writer = None
                if stats.connected:
                    log.info("peer_disconnected", extra={"peer": dst})
                stats.connected = False
                if writer is not None:
                    writer.close()
            # Back off, unless the peer dials us meanwhile: a restarted peer would otherwise wait up to
            # BACKOFF_MAX_S for our messages (votes included), which showed as 1-1.7 s failovers.
            box.redial.clear()
            try:
                await asyncio.wait_for(box.redial.wait(), backoff * (0.5 + random.random()))
                backoff = BACKOFF_MIN_S
            except TimeoutError:
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _pump(self, box: _Outbox, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stats: PeerStats) -> None:
        # The peer never writes on this connection after the handshake: a read completing means it closed.
        eof = asyncio.ensure_future(reader.read(1))
        try:
            while not self._closed:
                if not box.queue:
                    box.ready.clear()
                    waiter = asyncio.ensure_future(box.ready.wait())
                    done, _ = await asyncio.wait({waiter, eof}, return_when=asyncio.FIRST_COMPLETED)
                    if eof in done:
                        waiter.cancel()
                        return
                batch: list[bytes] = []
                while box.queue and len(batch) < 256:
                    batch.append(box.queue.popleft())
                if batch:
                    writer.writelines(batch)
                    stats.sent += len(batch)
                await writer.drain()
        finally:
            eof.cancel()

    async def _connect(self, peer: PeerInfo) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to `peer`; with TLS, only once the acceptor proved it holds the key pinned for it."""
        if self.tls is None:
            return await asyncio.open_connection(peer.raft.host, peer.raft.port)
        try:
            # server_hostname defaults to the host dialled: SNI for a hostname, none for an IP address.
            reader, writer = await asyncio.open_connection(
                peer.raft.host, peer.raft.port, ssl=self.tls.client_context,
                ssl_handshake_timeout=CONNECT_TIMEOUT_S, ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S)
        except ssl.SSLError as exc:
            raise HandshakeError(describe_ssl_error(exc)) from None
        try:
            self._check_pin(writer, peer)
        except HandshakeError:
            writer.close()
            raise
        return reader, writer

    def _check_pin(self, writer: asyncio.StreamWriter, peer: PeerInfo) -> None:
        tls_object = writer.get_extra_info("ssl_object")
        version = tls_object.version() if tls_object is not None else None
        if version != "TLSv1.3":
            raise HandshakeError(f"negotiated {version}, not TLSv1.3")
        try:
            key = certificate_key(tls_object.getpeercert(binary_form=True))
        except TlsError as exc:
            raise HandshakeError(f"{peer.id}: {exc}") from None
        if key != peer.public_key:
            raise HandshakeError(f"pin mismatch: {peer.raft} presented key {key.hex()[:16]}..., the membership "
                                 f"pins {peer.public_key.hex()[:16]}... for {peer.id}")

    def _binding(self, writer: asyncio.StreamWriter, acceptor: bool) -> bytes:
        """The handshake's channel binding: the acceptor's certificate, as this side of the connection has it."""
        if self.tls is None:
            return b""
        if acceptor:
            return self.tls.binding
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return channel_binding(der)

    async def _handshake_initiator(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                   peer: PeerInfo) -> None:
        binding = self._binding(writer, acceptor=False)
        nonce_i = os.urandom(NONCE_BYTES)
        writer.write(encode_frame(_pack({"t": "hello", "v": PROTOCOL, "chain_id": self.chain_id,
                                         "from": self.node_id, "to": peer.id, "nonce": nonce_i})))
        hello = _unpack_handshake(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX), "hello", "removed")
        if hello["t"] == "removed":
            self._check_removal_notice(hello, peer, nonce_i, binding)
        sender, nonce_a = _check_hello(hello, self.chain_id, self.node_id)
        if sender != peer.id:
            raise HandshakeError(f"dialled {peer.id} but {sender!r} answered")
        sig = self.key.sign(transcript("initiator", self.chain_id, self.node_id, peer.id, nonce_i, nonce_a,
                                       binding))
        writer.write(encode_frame(_pack({"t": "auth", "sig": sig})))
        auth = _unpack_handshake(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX), "auth")
        expected = transcript("acceptor", self.chain_id, peer.id, self.node_id, nonce_i, nonce_a, binding)
        if not isinstance(auth.get("sig"), bytes) or not verify(peer.public_key, expected, auth["sig"]):
            raise HandshakeError(f"bad signature from {peer.id}")

    def _check_removal_notice(self, notice: dict[str, Any], peer: PeerInfo, nonce_i: bytes, binding: bytes) -> None:
        """Raises RemovedByPeer if `notice` is `peer`'s signature over our removal on this connection, else
        HandshakeError (a notice anyone else could have written says nothing)."""
        if notice.get("from") != peer.id or notice.get("to") != self.node_id:
            raise HandshakeError(f"a removal notice from {notice.get('from')!r} to {notice.get('to')!r}")
        signed = transcript("removed", self.chain_id, peer.id, self.node_id, nonce_i, b"", binding)
        if not isinstance(notice.get("sig"), bytes) or not verify(peer.public_key, signed, notice["sig"]):
            raise HandshakeError(f"a removal notice from {peer.id} with a bad signature")
        raise RemovedByPeer(peer.id)

    # -- receiving

    async def _accept_loop(self, listener: socket.socket, tls: PeerTls) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and the like: the listener stays, the next accept may succeed
                log.warning("accept_failed", extra={"reason": str(exc)})
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            if self._closed:
                conn.close()
                return
            if self._over_handshake_cap():
                conn.close()
                continue
            task = loop.create_task(self._accept_tls(conn, tls), name="accept-tls")
            self._inbound.add(task)
            self._count_handshake(task)

    async def _accept_tls(self, conn: socket.socket, tls: PeerTls) -> None:
        """TLS 1.3 on an accepted socket, then the handshake of _accept; a failed TLS handshake is logged with
        its cause and counted as a refused handshake (there is no channel to send an error frame on)."""
        task = asyncio.current_task()
        if task is None or self._closed:
            conn.close()
            if task is not None:
                self._inbound.discard(task)
            return
        loop = asyncio.get_running_loop()
        try:
            remote = str(conn.getpeername())
        except OSError:
            remote = "?"
        reader = asyncio.StreamReader(limit=STREAM_LIMIT_BYTES, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        refused: str | None = None
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=tls.server_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
                ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S)
        except ssl.SSLError as exc:
            refused = describe_ssl_error(exc)
        except (OSError, TimeoutError) as exc:
            refused = f"TLS handshake did not complete: {exc or type(exc).__name__}"
        except asyncio.CancelledError:
            refused = "closing"
        if refused is not None:
            conn.close()
            self._inbound.discard(task)
            if refused != "closing":
                self.rejected_handshakes += 1
                log.warning("handshake_refused", extra={"remote": remote, "reason": refused})
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        version = writer.get_extra_info("ssl_object").version()
        if version != "TLSv1.3":  # the context allows nothing else: a second lock on the same door
            self.rejected_handshakes += 1
            log.warning("handshake_refused", extra={"remote": remote, "reason": f"negotiated {version}"})
            writer.close()
            self._inbound.discard(task)
            return
        await self._accept(reader, writer)

    @property
    def handshaking(self) -> int:
        """Inbound connections in their handshake now (what `handshakes_pending_max` caps)."""
        return len(self._handshaking)

    @property
    def refused_over_cap(self) -> int:
        """Inbound connections closed unread because `handshakes_pending_max` were already pending."""
        return self._refusals.total

    def _over_handshake_cap(self) -> bool:
        if len(self._handshaking) < self.handshakes_pending_max:
            return False
        self._refusals.note(reason="too many pending handshakes", pending=len(self._handshaking))
        return True

    def _count_handshake(self, task: asyncio.Task[None]) -> None:
        """Count `task`'s connection against the cap until it authenticates (`_accept`) or ends, whichever is
        first."""
        self._handshaking.add(task)
        task.add_done_callback(self._handshaking.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self._closed:
            writer.close()
            return
        if task not in self._handshaking:  # clear text: asyncio's server made this task, not our accept loop
            if self._over_handshake_cap():
                writer.close()
                return
            self._count_handshake(task)
        self._inbound.add(task)
        peer_id: str | None = None
        try:
            try:
                peer_id = await asyncio.wait_for(self._handshake_acceptor(reader, writer), HANDSHAKE_TIMEOUT_S)
                self._handshaking.discard(task)
            except (HandshakeError, FrameTooLargeError, TimeoutError) as exc:
                self.rejected_handshakes += 1
                log.warning("handshake_refused", extra={"remote": str(writer.get_extra_info("peername")),
                                                        "reason": str(exc)})
                answer = (exc.frame if isinstance(exc, _RefusedAsRemoved)
                          else encode_frame(_pack({"t": "error", "reason": str(exc)[:200]})))
                with contextlib.suppress(Exception):
                    writer.write(answer)
                    await asyncio.wait_for(writer.drain(), 0.5)
                return
            box = self._outboxes.get(peer_id)
            if box is not None and box.writer is None:
                box.redial.set()
            if self.on_peer_connected is not None:
                try:
                    self.on_peer_connected(peer_id)
                except Exception:
                    log.exception("on_peer_connected_failed", extra={"peer": peer_id})
            await self._receive_loop(peer_id, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except TransportError as exc:
            log.warning("peer_protocol_error", extra={"peer": peer_id, "reason": str(exc)})
        except asyncio.CancelledError:
            # close() cancels us. Ending normally: asyncio 3.11's done-callback for a connection handler calls
            # task.exception(), which raises on a cancelled task and logs an ERROR per connection at shutdown.
            pass
        finally:
            self._inbound.discard(task)
            writer.close()

    async def _handshake_acceptor(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        binding = self._binding(writer, acceptor=True)
        hello = _unpack_handshake(await self._read_first_frame(reader), "hello")
        sender, nonce_i = _check_hello(hello, self.chain_id, self.node_id)
        if sender in self.told_removed:
            sig = self.key.sign(transcript("removed", self.chain_id, self.node_id, sender, nonce_i, b"", binding))
            raise _RefusedAsRemoved(sender, encode_frame(_pack({"t": "removed", "from": self.node_id, "to": sender,
                                                                "sig": sig})))
        if sender in self.removed:
            raise HandshakeError(f"node {sender!r} was removed from the cluster")
        if sender not in self.peers:
            raise HandshakeError(f"unknown node id {sender!r}")
        nonce_a = os.urandom(NONCE_BYTES)
        writer.write(encode_frame(_pack({"t": "hello", "v": PROTOCOL, "chain_id": self.chain_id,
                                         "from": self.node_id, "to": sender, "nonce": nonce_a})))
        auth = _unpack_handshake(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX), "auth")
        expected = transcript("initiator", self.chain_id, sender, self.node_id, nonce_i, nonce_a, binding)
        if not isinstance(auth.get("sig"), bytes) or not verify(self.peers[sender].public_key, expected,
                                                                 auth["sig"]):
            raise HandshakeError(f"bad signature for {sender!r}")
        sig = self.key.sign(transcript("acceptor", self.chain_id, self.node_id, sender, nonce_i, nonce_a, binding))
        writer.write(encode_frame(_pack({"t": "auth", "sig": sig})))
        await writer.drain()
        return sender

    async def _read_first_frame(self, reader: asyncio.StreamReader) -> bytes:
        header = await reader.readexactly(_LEN.size)
        if self.tls is None and header[:2] == TLS_HANDSHAKE_RECORD:
            raise HandshakeError("a TLS ClientHello on a clear-text listener: this node runs peer_tls = false, "
                                 "the peer does not")
        (length,) = _LEN.unpack(header)
        if length > HANDSHAKE_FRAME_BYTES_MAX:
            raise FrameTooLargeError(f"frame of {length} bytes over the limit of {HANDSHAKE_FRAME_BYTES_MAX}")
        return await reader.readexactly(length)

    async def _receive_loop(self, peer_id: str, reader: asyncio.StreamReader) -> None:
        stats = self.stats[peer_id]
        while not self._closed:
            body = await read_frame(reader, self.frame_bytes_max)
            if not self.is_member(peer_id):
                raise TransportError(f"{peer_id} was removed")
            if body[:1] == APP_FRAME_MARK:
                stats.received += 1
                stats.last_contact = time.monotonic()
                self._receive_app(peer_id, body[1:])
                continue
            try:
                msg = self.decode(body)
            except Exception as exc:  # the codec raises ProtocolError; anything else is also a bad frame
                raise TransportError(f"undecodable frame from {peer_id}: {exc}") from exc
            if msg.from_id != peer_id or msg.to != self.node_id:
                raise TransportError(f"frame from {msg.from_id!r} to {msg.to!r} on {peer_id}'s connection")
            stats.received += 1
            stats.last_contact = time.monotonic()
            if self.faults is not None:
                drop, delay_ms = self.faults.inbound(peer_id)
                if drop:
                    continue
                if delay_ms > 0:
                    self._later(delay_ms, functools.partial(self._deliver, msg))
                    continue
            self._deliver(msg)

    def _receive_app(self, peer_id: str, payload: bytes) -> None:
        if self.faults is not None:
            drop, delay_ms = self.faults.inbound(peer_id)
            if drop:
                return
            if delay_ms > 0:
                self._later(delay_ms, functools.partial(self._deliver_app, peer_id, payload))
                return
        self._deliver_app(peer_id, payload)

    def _deliver_app(self, peer_id: str, payload: bytes) -> None:
        if self._closed or self.on_app_frame is None:
            return
        try:
            self.on_app_frame(peer_id, payload)
        except Exception:
            log.exception("on_app_frame_failed", extra={"peer": peer_id})

    def _deliver(self, msg: Message) -> None:
        if self._closed:
            return
        try:
            self.on_message(msg)
        except Exception:
            log.exception("on_message_failed", extra={"peer": msg.from_id})
