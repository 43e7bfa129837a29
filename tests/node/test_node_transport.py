"""The peer transport in one process: framing, authenticated handshake, identity checks, bounds, faults.

The connection-level tests run twice: over TLS 1.3 (what nodes run) and in clear text (peer_tls = false);
tests/node/test_tls.py has what only TLS does."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import msgpack
import pytest

from consensus.codec import encode_message
from consensus.messages import Entry, Message, MessageType
from node.config import Address
from node.keys import KeyPair
from node.tls import PeerTls
from node.transport import (
    HANDSHAKE_FRAME_BYTES_MAX,
    PROTOCOL,
    FrameTooLargeError,
    PeerInfo,
    PeerTransport,
    encode_frame,
    read_frame,
    transcript,
)

CHAIN = "ecert-test"
BOTH = pytest.mark.parametrize("tls", [True, False], ids=["tls", "clear"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _reader_of(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


async def test_frames_round_trip_and_limits() -> None:
    bodies = [b"", b"x", os.urandom(70_000)]
    r = await _reader_of(b"".join(encode_frame(b) for b in bodies))
    assert [await read_frame(r, 1 << 20) for _ in bodies] == bodies
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(r, 1 << 20)
    r = await _reader_of(encode_frame(b"y" * 101))
    with pytest.raises(FrameTooLargeError):
        await read_frame(r, 100)
    r = await _reader_of(encode_frame(b"abc")[:5])  # truncated
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(r, 100)


class Net:
    """n transports on free ports, each recording what it delivers."""

    def __init__(self, ids: list[str], tls: bool = True, **kw: object) -> None:
        self.keys = {i: KeyPair(os.urandom(32)) for i in ids}
        self.tls = {i: PeerTls.from_key(self.keys[i], i, CHAIN) if tls else None for i in ids}
        self.addrs = {i: Address("127.0.0.1", free_port()) for i in ids}
        self.got: dict[str, list[Message]] = {i: [] for i in ids}
        peers = [PeerInfo(i, self.addrs[i], self.keys[i].sign_pk) for i in ids]
        self.t = {i: PeerTransport(node_id=i, chain_id=CHAIN, key=self.keys[i], listen=self.addrs[i], peers=peers,
                                   on_message=self.got[i].append, tls=self.tls[i],
                                   **kw)  # type: ignore[arg-type]
                  for i in ids}

    async def __aenter__(self) -> Net:
        for t in self.t.values():
            await t.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self.t.values():
            await t.close()


async def until(cond, within_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def hb(src: str, dst: str, term: int = 1) -> Message:
    return Message(MessageType.HEARTBEAT, src, dst, term, commit=0)


@BOTH
async def test_messages_flow_both_ways_after_handshake(tls: bool) -> None:
    async with Net(["a", "b", "c"], tls) as net:
        app = Message(MessageType.APPEND, "a", "b", 3, log_term=2, index=7,
                      entries=(Entry(3, 8, data=b"block"),), commit=6)
        net.t["a"].send(app)
        net.t["b"].send(hb("b", "a"))
        net.t["c"].send(hb("c", "a"))
        await until(lambda: len(net.got["b"]) == 1 and len(net.got["a"]) == 2)
        assert net.got["b"][0] == app
        assert {m.from_id for m in net.got["a"]} == {"b", "c"}
        assert net.t["a"].stats["b"].sent == 1 and net.t["b"].stats["a"].received == 1


@BOTH
async def test_unknown_bad_key_and_replay_are_refused(tls: bool) -> None:
    async with Net(["a", "b"], tls) as net:
        b = net.addrs["b"]
        b_tls = net.tls["b"]
        client = b_tls.client_context if b_tls is not None else None
        binding = hashlib.sha256(b_tls.cert_der).digest() if b_tls is not None else b""

        async def attempt(claimed: str, key: KeyPair | None, replay: list[bytes] | None = None,
                          chain: str = CHAIN) -> tuple[list[bytes], bool]:
            reader, writer = await asyncio.open_connection(b.host, b.port, ssl=client)
            sent = []
            try:
                nonce = os.urandom(32)
                hello = replay[0] if replay else encode_frame(msgpack.packb(
                    {"t": "hello", "v": PROTOCOL, "chain_id": chain, "from": claimed, "to": "b", "nonce": nonce}))
                writer.write(hello)
                sent.append(hello)
                ans = msgpack.unpackb(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX))
                if ans["t"] != "hello":
                    return sent, False
                if replay:
                    auth = replay[1]
                else:
                    assert key is not None
                    sig = key.sign(transcript("initiator", chain, claimed, "b", nonce, ans["nonce"], binding))
                    auth = encode_frame(msgpack.packb({"t": "auth", "sig": sig}))
                writer.write(auth)
                sent.append(auth)
                try:
                    ans = msgpack.unpackb(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX))
                except (asyncio.IncompleteReadError, ConnectionError):
                    return sent, False
                if ans["t"] != "auth":
                    return sent, False
                # Authenticated: a frame claiming another sender closes the connection undelivered.
                writer.write(encode_frame(encode_message(hb("mallory" if claimed == "a" else "a", "b"))))
                writer.write(encode_frame(encode_message(hb(claimed, "b", term=9))))
                await writer.drain()
                await asyncio.sleep(0.2)
                return sent, True
            finally:
                writer.close()

        stranger = KeyPair(os.urandom(32))
        assert not (await attempt("mallory", stranger))[1]
        assert not (await attempt("a", stranger))[1]
        assert not (await attempt("a", net.keys["a"], chain="other"))[1]
        frames, ok = await attempt("a", net.keys["a"])
        assert ok
        assert not (await attempt("a", None, replay=frames))[1]
        assert net.t["b"].rejected_handshakes == 4
        # The spoofed frame closed the connection: the term-9 heartbeat after it never arrived.
        assert all(m.term != 9 for m in net.got["b"])


@BOTH
async def test_removed_member_is_refused_and_not_sent_to(tls: bool) -> None:
    async with Net(["a", "b"], tls) as net:
        net.t["b"].remove_member("a")
        net.t["a"].send(hb("a", "b"))
        await asyncio.sleep(0.3)
        assert net.got["b"] == [] and net.t["b"].rejected_handshakes >= 1
        net.t["a"].remove_member("b")
        net.t["a"].send(hb("a", "b"))
        assert "b" not in net.t["a"]._outboxes
        net.t["b"].restore_member("a")
        net.t["a"].restore_member("b")
        net.t["a"].send(hb("a", "b"))
        await until(lambda: len(net.got["b"]) == 1)


@BOTH
async def test_a_removed_node_that_dials_is_told_with_a_signature_only_its_peer_makes(tls: bool) -> None:
    """The removal notice (node/transport.py): a peer whose applied state removed the dialler answers its hello
    with a signed notice; one that only cut it off (or a forger) does not make it report anything."""
    async with Net(["a", "b", "c"], tls) as net:
        told: dict[str, list[str]] = {i: [] for i in net.t}
        for i, t in net.t.items():
            t.on_removal_notice = told[i].append
        peers = {i: PeerInfo(i, net.addrs[i], net.keys[i].sign_pk) for i in net.t}
        # c only cuts a off (e.g. a Raft change it applied without the state's record): refused, not told.
        net.t["c"].set_peers([peers["b"]], removed={"a"})
        net.t["a"].send(hb("a", "c"))
        await until(lambda: net.t["c"].rejected_handshakes >= 1)
        # b applied a's removal: a's next dial to b is answered with b's signed notice, and a reports it.
        net.t["b"].set_peers([peers["c"]], removed={"a"}, tell={"a"})
        net.t["a"].send(hb("a", "b"))
        await until(lambda: told["a"] == ["b"] or len(told["a"]) > 1)
        assert set(told["a"]) == {"b"} and net.got["b"] == []
        assert net.t["a"].stats["b"].handshake_failures >= 1
        # A notice is only good from the pinned key: with b's key unknown to a, the same notice is refused.
        before = len(told["a"])
        wrong = KeyPair(os.urandom(32))
        net.t["a"].set_peers([PeerInfo("b", net.addrs["b"], wrong.sign_pk), peers["c"]], removed=())
        net.t["a"].send(hb("a", "b"))
        await until(lambda: net.t["a"].stats["b"].handshake_failures >= 3)
        assert len(told["a"]) == before


async def test_a_forged_removal_notice_is_not_believed() -> None:
    """A stranger on b's port answering a's hello with a notice it signed itself (or did not sign over a's
    nonce) makes a report nothing."""
    key_a, key_b, stranger = (KeyPair(os.urandom(32)) for _ in range(3))
    port = free_port()
    sent: list[bytes] = []

    async def fake_b(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = msgpack.unpackb(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX))
        nonce_i = hello["nonce"] if len(sent) % 2 == 0 else os.urandom(32)  # own key, then a stale nonce
        signer = stranger if len(sent) % 2 == 0 else key_b
        sig = signer.sign(transcript("removed", CHAIN, "b", "a", nonce_i, b"", b""))
        frame = encode_frame(msgpack.packb({"t": "removed", "from": "b", "to": "a", "sig": sig}))
        sent.append(frame)
        writer.write(frame)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(fake_b, "127.0.0.1", port)
    told: list[str] = []
    a = PeerTransport(node_id="a", chain_id=CHAIN, key=key_a, listen=Address("127.0.0.1", free_port()),
                      peers=[PeerInfo("b", Address("127.0.0.1", port), key_b.sign_pk)], on_message=lambda m: None,
                      on_removal_notice=told.append)
    await a.start()
    try:
        a.send(hb("a", "b"))
        await until(lambda: a.stats["b"].handshake_failures >= 2, within_s=10.0)
        assert told == [] and len(sent) >= 2
    finally:
        await a.close()
        server.close()


async def test_send_queue_is_bounded_and_drops_oldest() -> None:
    keys = {i: KeyPair(os.urandom(32)) for i in "ab"}
    down = Address("127.0.0.1", free_port())  # nobody listens: frames pile up
    t = PeerTransport(node_id="a", chain_id=CHAIN, key=keys["a"], listen=Address("127.0.0.1", free_port()),
                      peers=[PeerInfo("b", down, keys["b"].sign_pk)], on_message=lambda m: None,
                      send_queue_max=10)
    await t.start()
    try:
        for term in range(25):
            t.send(hb("a", "b", term))
        box = t._outboxes["b"]
        assert len(box.queue) == 10 and t.stats["b"].dropped == 15
        # The newest survive (Raft cares about the latest state).
        assert box.queue[-1] == encode_frame(encode_message(hb("a", "b", 24)))
    finally:
        await t.close()


class DropTo:
    def __init__(self, victim: str) -> None:
        self.victim = victim

    def outbound(self, dst: str) -> tuple[bool, int]:
        return dst == self.victim, 0 if dst == self.victim else 30

    def inbound(self, src: str) -> tuple[bool, int]:
        return False, 0


@BOTH
async def test_fault_hook_drops_and_delays(tls: bool) -> None:
    async with Net(["a", "b", "c"], tls, faults=DropTo("c")) as net:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        net.t["a"].send(hb("a", "b"))
        net.t["a"].send(hb("a", "c"))
        await until(lambda: len(net.got["b"]) == 1)
        assert loop.time() - t0 >= 0.03
        await asyncio.sleep(0.2)
        assert net.got["c"] == []


@BOTH
async def test_application_frames_share_the_connection_and_a_failing_handler_keeps_it(tls: bool) -> None:
    apps: dict[str, list[tuple[str, bytes]]] = {"a": [], "b": []}

    def on_app(node: str):  # type: ignore[no-untyped-def]
        def handle(peer: str, payload: bytes) -> None:
            apps[node].append((peer, payload))
            if payload == b"boom":
                raise ValueError("a handler bug must not take the connection down")
        return handle

    async with Net(["a", "b"], tls) as net:
        for node in ("a", "b"):
            net.t[node].on_app_frame = on_app(node)
        net.t["a"].send_app("b", b"boom")
        net.t["a"].send_app("b", b"\xc1\x00 any bytes")  # the payload itself is opaque to the transport
        net.t["a"].send(Message(type=MessageType.HEARTBEAT, from_id="a", to="b", term=1))
        net.t["b"].send_app("a", b"answer")
        net.t["a"].send_app("nobody", b"dropped")  # not a member: ignored
        await until(lambda: len(apps["b"]) == 2 and net.got["b"] and apps["a"])
        assert apps["b"] == [("a", b"boom"), ("a", b"\xc1\x00 any bytes")]
        assert apps["a"] == [("b", b"answer")]
        assert net.got["b"][0].type == MessageType.HEARTBEAT


@BOTH
async def test_a_peer_that_dials_us_ends_our_backoff(monkeypatch: pytest.MonkeyPatch, tls: bool) -> None:
    """A restarted peer must not wait out our reconnect backoff for our messages (votes included)."""
    import node.transport as transport

    monkeypatch.setattr(transport, "BACKOFF_MIN_S", 2.0)  # every failed dial then waits 1-3 s
    net = Net(["a", "b"], tls)
    await net.t["a"].start()  # b is down: a's dial fails and backs off
    try:
        net.t["a"].send(hb("a", "b"))
        await asyncio.sleep(0.3)
        await net.t["b"].start()
        t0 = asyncio.get_running_loop().time()
        net.t["b"].send(hb("b", "a"))  # b dials a: a learns b is up
        await until(lambda: net.got["b"], within_s=5.0)
        assert asyncio.get_running_loop().time() - t0 < 0.8, "a waited out its backoff"
    finally:
        await net.__aexit__()
