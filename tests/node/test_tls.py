"""TLS 1.3 peer links (CONTRACT §6 "Peer links", node/tls.py) and the HTTPS certificate helpers, on real sockets.

A relay between two transports records every byte on the wire: with TLS a block's marker is not there, without
it it is (so the check can fail). Impostors on either side, a man in the middle with its own certificate, a
clear-text peer, an old-TLS client and an oversized frame are each refused, and the refusal is logged."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import node.tls as tls_module
from consensus.messages import Entry, Message, MessageType
from node.config import Address
from node.keys import KeyPair
from node.tls import (
    HTTPS_CERT_NAME,
    PeerTls,
    TlsError,
    certificate_key,
    channel_binding,
    http_server_context,
    peer_certificate,
    write_self_signed_https_cert,
)
from node.transport import PROTOCOL, PeerInfo, PeerTransport, encode_frame, transcript

CHAIN = "ecert-tls-test"
MARKER = b"DOC-MARKER-7f3a-tier1-invoice"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], Any], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def hb(src: str, dst: str, term: int = 1) -> Message:
    return Message(MessageType.HEARTBEAT, src, dst, term, commit=0)


def block_message(src: str, dst: str) -> Message:
    """An AppendEntries carrying about a block's worth of entry data with a marker in the middle."""
    data = os.urandom(100_000) + MARKER + os.urandom(100_000)
    return Message(MessageType.APPEND, src, dst, 2, log_term=1, index=4, entries=(Entry(2, 5, data=data),), commit=4)


class Node:
    """One transport and what it delivered."""

    def __init__(self, node_id: str, key: KeyPair, listen: Address, peers: list[PeerInfo], tls: bool,
                 **kw: Any) -> None:
        self.id, self.key, self.addr = node_id, key, listen
        self.got: list[Message] = []
        self.t = PeerTransport(node_id=node_id, chain_id=CHAIN, key=key, listen=listen, peers=peers,
                               on_message=self.got.append,
                               tls=PeerTls.from_key(key, node_id, CHAIN) if tls else None, **kw)


class Net:
    """Transports on free ports, each pinning the others' keys."""

    def __init__(self, ids: list[str], tls: bool = True, **kw: Any) -> None:
        self.keys = {i: KeyPair(os.urandom(32)) for i in ids}
        self.addrs = {i: Address("127.0.0.1", free_port()) for i in ids}
        self.n = {i: Node(i, self.keys[i], self.addrs[i],
                          [PeerInfo(p, self.addrs[p], self.keys[p].sign_pk) for p in ids if p != i], tls, **kw)
                  for i in ids}

    def dial_via(self, src: str, dst: str, addr: Address) -> None:
        """Before start: `src` dials `dst` at `addr` (a relay, a man in the middle), still pinning dst's key."""
        self.n[src].t.peers[dst] = PeerInfo(dst, addr, self.keys[dst].sign_pk)

    async def start(self) -> Net:
        for n in self.n.values():
            await n.t.start()
        return self

    async def close(self) -> None:
        for n in self.n.values():
            await n.t.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Relay:
    """A TCP (or TLS-terminating) forwarder to `target` that records the bytes it forwards, both directions."""

    def __init__(self, target: Address, *, accept_tls: ssl.SSLContext | None = None,
                 dial_tls: ssl.SSLContext | None = None) -> None:
        self.target, self.accept_tls, self.dial_tls = target, accept_tls, dial_tls
        self.port = free_port()
        self.addr = Address("127.0.0.1", self.port)
        self.seen = bytearray()
        self.connections = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.accept_tls)
        return self

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(1 << 16):
                self.seen += data
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            dst.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection(self.target.host, self.target.port, ssl=self.dial_tls)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (OSError, asyncio.CancelledError):
            writer.close()
        finally:
            self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t


def reasons(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [str(getattr(r, "reason", "")) for r in caplog.records if r.getMessage() == event]


@contextlib.asynccontextmanager
async def running(*things: Any):  # type: ignore[no-untyped-def]
    started = []
    try:
        for thing in things:
            await thing.start()
            started.append(thing)
        yield things
    finally:
        for thing in reversed(started):
            await thing.close()


# -- peer links -----------------------------------------------------------------------------------------------


async def test_raft_messages_flow_over_tls_1_3_and_the_fast_path_writes_at_once() -> None:
    net = Net(["a", "b", "c"])
    versions: list[str] = []
    acceptor_handshake = net.n["b"].t._handshake_acceptor

    async def record_version(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        versions.append(writer.get_extra_info("ssl_object").version())
        return await acceptor_handshake(reader, writer)

    net.n["b"].t._handshake_acceptor = record_version  # type: ignore[method-assign]
    async with running(net):
        app = block_message("a", "b")
        net.n["a"].t.send(app)
        net.n["b"].t.send(hb("b", "a"))
        net.n["c"].t.send(hb("c", "a"))
        await until(lambda: net.n["b"].got and len(net.n["a"].got) == 2)
        assert net.n["b"].got[0] == app
        assert {m.from_id for m in net.n["a"].got} == {"b", "c"}
        box = net.n["a"].t._outboxes["b"]
        assert box.writer is not None
        assert box.writer.get_extra_info("ssl_object").version() == "TLSv1.3"
        assert versions and set(versions) == {"TLSv1.3"}  # a and c dialled b
        # Connected: a frame goes straight to the TLS transport, nothing waits in the queue for the pump.
        sent = net.n["a"].t.stats["b"].sent
        net.n["a"].t.send(hb("a", "b", term=5))
        assert net.n["a"].t.stats["b"].sent == sent + 1 and not box.queue
        await until(lambda: any(m.term == 5 for m in net.n["b"].got))


def test_tls_links_come_up_under_uvloop_the_loop_nodes_run() -> None:
    """The node runs uvloop (node/__main__.py). A TLS upgrade of a plain accepted stream loses a ClientHello read
    before it there; a few rounds of three fresh nodes dialling each other at once catch that."""
    uvloop = pytest.importorskip("uvloop")

    async def rounds() -> None:
        for _ in range(5):
            net = Net(["a", "b", "c"])
            async with running(net):
                for src in "abc":
                    for dst in "abc":
                        if src != dst:
                            net.n[src].t.send(hb(src, dst))
                await until(lambda net=net: all(len(n.got) == 2 for n in net.n.values()), within_s=4.0)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(rounds())


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "clear"])
async def test_a_relay_on_the_path_sees_no_block_in_clear(tls: bool) -> None:
    net = Net(["a", "b"], tls=tls)
    relay = Relay(net.addrs["b"])
    net.dial_via("a", "b", relay.addr)
    async with running(relay, net):
        net.n["a"].t.send(block_message("a", "b"))
        net.n["a"].t.send_app("b", b"forwarded tx " + MARKER)
        await until(lambda: net.n["b"].got)
        assert relay.connections >= 1 and len(relay.seen) > 200_000
        wire = bytes(relay.seen)
        if tls:
            assert MARKER not in wire
            assert CHAIN.encode() not in wire and PROTOCOL.encode() not in wire  # the hello is inside TLS too
        else:
            assert MARKER in wire and CHAIN.encode() in wire


async def test_the_initiator_refuses_an_acceptor_whose_key_is_not_pinned(caplog: pytest.LogCaptureFixture) -> None:
    """A process at b's address with another key (a non-member, or b's old key) cannot take a's frames."""
    net = Net(["a", "b"])
    impostor = Node("b", KeyPair(os.urandom(32)), net.addrs["b"], [PeerInfo("a", net.addrs["a"], net.keys["a"].sign_pk)],
                    tls=True)
    net.n["b"] = impostor
    caplog.set_level(logging.WARNING, logger="node.transport")
    async with running(net):
        net.n["a"].t.send(hb("a", "b"))
        await until(lambda: net.n["a"].t.stats["b"].handshake_failures >= 1)
        await asyncio.sleep(0.1)
        assert impostor.got == [] and impostor.t.rejected_handshakes == 0  # refused before a hello was sent
        assert any("pin mismatch" in r for r in reasons(caplog, "handshake_failed"))


async def test_the_acceptor_refuses_an_initiator_with_a_wrong_key(caplog: pytest.LogCaptureFixture) -> None:
    net = Net(["a", "b"])
    forger = Node("a", KeyPair(os.urandom(32)), Address("127.0.0.1", free_port()),
                  [PeerInfo("b", net.addrs["b"], net.keys["b"].sign_pk)], tls=True)
    caplog.set_level(logging.WARNING, logger="node.transport")
    async with running(net, forger.t):
        forger.t.send(hb("a", "b"))
        await until(lambda: net.n["b"].t.rejected_handshakes >= 1)
        await asyncio.sleep(0.1)
        assert net.n["b"].got == []
        assert any("bad signature" in r for r in reasons(caplog, "handshake_refused"))
        assert any("peer refused" in r for r in reasons(caplog, "handshake_failed"))


async def test_a_man_in_the_middle_with_its_own_certificate_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The MITM terminates a's TLS with a certificate of its own key (claiming to be b) and relays the inner
    handshake to b over a TLS connection of its own. a's pin check refuses it; with that check switched off,
    b still refuses, because a signed the binding of the MITM's certificate, not of b's."""
    net = Net(["a", "b"])
    mitm_tls = PeerTls.from_key(KeyPair(os.urandom(32)), "b", CHAIN)
    mitm = Relay(net.addrs["b"], accept_tls=mitm_tls.server_context, dial_tls=mitm_tls.client_context)
    net.dial_via("a", "b", mitm.addr)
    caplog.set_level(logging.WARNING, logger="node.transport")
    async with running(mitm, net):
        a, b = net.n["a"].t, net.n["b"].t
        a.send(hb("a", "b"))
        await until(lambda: a.stats["b"].handshake_failures >= 1)
        assert any("pin mismatch" in r for r in reasons(caplog, "handshake_failed"))
        assert b.rejected_handshakes == 0 and net.n["b"].got == []

        monkeypatch.setattr(a, "_check_pin", lambda writer, peer: None)
        a._outboxes["b"].redial.set()
        a.send(hb("a", "b", term=2))
        await until(lambda: b.rejected_handshakes >= 1)
        await asyncio.sleep(0.1)
        assert net.n["b"].got == [] and not a.stats["b"].connected
        assert any(f"bad signature for {'a'!r}" in r for r in reasons(caplog, "handshake_refused"))
        assert b"hello" in mitm.seen  # the MITM did read the inner handshake: only the binding stopped it


async def test_a_clear_text_peer_and_a_tls_peer_do_not_talk_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node.transport")
    keys = {i: KeyPair(os.urandom(32)) for i in "ab"}
    addrs = {i: Address("127.0.0.1", free_port()) for i in "ab"}
    a = Node("a", keys["a"], addrs["a"], [PeerInfo("b", addrs["b"], keys["b"].sign_pk)], tls=False)
    b = Node("b", keys["b"], addrs["b"], [PeerInfo("a", addrs["a"], keys["a"].sign_pk)], tls=True)
    async with running(a.t, b.t):
        a.t.send(hb("a", "b"))  # clear text to a TLS listener
        b.t.send(hb("b", "a"))  # TLS to a clear-text listener
        await until(lambda: b.t.rejected_handshakes >= 1 and a.t.rejected_handshakes >= 1)
        await asyncio.sleep(0.1)
        assert a.got == [] and b.got == []
    refused = reasons(caplog, "handshake_refused")
    assert any("does not speak TLS" in r and "peer_tls = false" in r for r in refused), refused
    assert any("TLS ClientHello on a clear-text listener" in r for r in refused), refused


async def test_a_client_without_tls_1_3_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node.transport")
    net = Net(["a", "b"])
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    async with running(net):
        b = net.addrs["b"]
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await asyncio.open_connection(b.host, b.port, ssl=old)
        await until(lambda: net.n["b"].t.rejected_handshakes >= 1)
    assert any("no TLS 1.3" in r for r in reasons(caplog, "handshake_refused"))


async def test_a_frame_over_the_limit_closes_the_tls_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="node.transport")
    net = Net(["a", "b"], frame_bytes_max=64 << 10)
    async with running(net):
        a = net.n["a"].t
        a.send(hb("a", "b"))
        await until(lambda: net.n["b"].got)
        a._enqueue("b", encode_frame(b"\x92" + b"\x00" * (100 << 10)))
        await until(lambda: any("over the limit" in r for r in reasons(caplog, "peer_protocol_error")))
        # a saw the close and dials again; frames sent after it arrive on the new connection.
        await until(lambda: sum(r.getMessage() == "peer_connected" for r in caplog.records) >= 2)
        a.send(hb("a", "b", term=7))
        await until(lambda: any(m.term == 7 for m in net.n["b"].got))
        assert len(net.n["b"].got) == 2


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "clear"])
async def test_connections_that_never_handshake_are_capped_and_a_peer_gets_in_once_they_go(
        tls: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="node.transport")
    net = Net(["a", "b"], tls=tls, handshakes_pending_max=3)
    async with running(net):
        b, bt = net.addrs["b"], net.n["b"].t
        idle = [await asyncio.open_connection(b.host, b.port) for _ in range(3)]  # connect, then say nothing
        await until(lambda: len(bt._handshaking) == 3)
        reader, writer = await asyncio.open_connection(b.host, b.port)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(1), 2) == b""  # closed unread
        writer.close()
        assert bt.refused_over_cap >= 1
        net.n["a"].t.send(hb("a", "b"))  # a peer is a stranger until it has authenticated: it waits too
        await asyncio.sleep(0.3)
        assert net.n["b"].got == []
        for _, idle_writer in idle:
            idle_writer.close()
        await until(lambda: net.n["b"].got)  # a dials again (backoff at most BACKOFF_MAX_S) and gets in
        await until(lambda: not bt._handshaking)  # an authenticated link no longer counts
    assert "too many pending handshakes" in reasons(caplog, "connections_refused")


async def test_a_replayed_tls_handshake_from_another_session_is_refused() -> None:
    """A transcript signed for one TLS session (its binding) is worthless in another: the nonces differ, and
    a binding of another certificate never verifies at b."""
    net = Net(["a", "b"])
    async with running(net):
        tls_b = net.n["b"].t.tls
        assert tls_b is not None
        other = PeerTls.from_key(KeyPair(os.urandom(32)), "b", CHAIN)
        nonces = (os.urandom(32), os.urandom(32))
        good = transcript("initiator", CHAIN, "a", "b", *nonces, tls_b.binding)
        relayed = transcript("initiator", CHAIN, "a", "b", *nonces, other.binding)
        assert good != relayed != transcript("initiator", CHAIN, "a", "b", *nonces)
        assert tls_b.binding == channel_binding(tls_b.cert_der)


def test_transport_refuses_a_certificate_of_another_node() -> None:
    key = KeyPair(os.urandom(32))
    with pytest.raises(Exception, match="another node or chain"):
        PeerTransport(node_id="a", chain_id=CHAIN, key=key, listen=Address("127.0.0.1", 1), peers=[],
                      on_message=lambda m: None, tls=PeerTls.from_key(key, "b", CHAIN))


def test_the_bench_runs_our_cluster_with_or_without_peer_tls(tmp_path: Path) -> None:
    from node.bench import ecert_side
    from node.bench.__main__ import parse_args
    from node.config import load_config

    assert parse_args([]).peer_tls == "on" and parse_args(["--peer-tls", "both"]).peer_tls == "both"
    for peer_tls in (True, False):
        path = ecert_side.write_cluster_file(tmp_path / str(peer_tls), 3, peer_tls=peer_tls)
        assert load_config(path).peer_tls is peer_tls


# -- the peer certificate -------------------------------------------------------------------------------------


def test_the_peer_certificate_is_a_pure_function_of_key_node_and_chain() -> None:
    key = KeyPair(os.urandom(32))
    one, two = PeerTls.from_key(key, "boc", CHAIN), PeerTls.from_key(key, "boc", CHAIN)
    assert one.cert_der == two.cert_der
    assert PeerTls.from_key(key, "geely", CHAIN).cert_der != one.cert_der
    cert = x509.load_der_x509_certificate(one.cert_der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "boc"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CHAIN
    assert cert.subject == cert.issuer and cert.not_valid_after_utc.year == 9999
    cert.verify_directly_issued_by(cert)  # self-signed by the node key
    assert certificate_key(one.cert_der) == key.sign_pk
    assert peer_certificate(key, "boc", CHAIN).public_bytes(serialization.Encoding.DER) == one.cert_der


def test_certificate_key_refuses_what_is_not_an_ed25519_certificate() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ec_key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ec_key, hashes.SHA256()))
    for der, code in ((cert.public_bytes(serialization.Encoding.DER), "not_ed25519"), (None, "no_certificate"),
                      (b"\x30\x03junk", "bad_certificate")):
        with pytest.raises(TlsError) as info:
            certificate_key(der)
        assert info.value.code == code


def test_the_key_pem_fallback_lives_in_a_private_directory_and_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []
    with tls_module._private_temp_file(b"secret") as path:
        seen.append((stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), stat.S_IMODE(os.stat(path).st_mode)))
        assert Path(path).read_bytes() == b"secret"
    assert seen == [(0o700, 0o600)] and not os.path.exists(os.path.dirname(path))
    monkeypatch.delattr(os, "memfd_create")  # no memfd: PeerTls still loads, through the temporary directory
    key = KeyPair(os.urandom(32))
    assert PeerTls.from_key(key, "a", CHAIN).cert_der == PeerTls.from_key(key, "a", CHAIN).cert_der


# -- HTTPS ----------------------------------------------------------------------------------------------------


async def test_self_signed_https_certificate_serves_and_verifies_by_name_and_address(tmp_path: Path) -> None:
    cert_path, key_path = write_self_signed_https_cert(tmp_path / "tls", ["LocalHost", "127.0.0.1", "[::1]"])
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and cert_path.name == HTTPS_CERT_NAME
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    with pytest.raises(TlsError) as info:
        write_self_signed_https_cert(tmp_path / "tls", ["localhost"])
    assert info.value.code == "https_exists"

    server_ctx = http_server_context(cert_path, key_path)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        for name in ("localhost", "127.0.0.1"):
            client = ssl.create_default_context(cafile=str(cert_path))  # the node's https_ca
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=name)
            assert await reader.read() == b"ok"
            writer.close()
        client = ssl.create_default_context(cafile=str(cert_path))
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="bank.example")
        stranger = ssl.create_default_context()  # the system's CAs do not know it
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("127.0.0.1", port, ssl=stranger, server_hostname="localhost")
    finally:
        server.close()
        await server.wait_closed()


def test_https_helpers_refuse_bad_input(tmp_path: Path) -> None:
    for hosts in ([], ["bad host"], ["http://x"], ["bänk.example"]):
        with pytest.raises(TlsError) as info:
            write_self_signed_https_cert(tmp_path / "x", hosts)
        assert info.value.code == "bad_https_host", hosts
    with pytest.raises(TlsError) as info:
        write_self_signed_https_cert(tmp_path / "x", ["a"], ec.generate_private_key(ec.SECP256K1()))
    assert info.value.code == "bad_https_key"
    a_cert, _ = write_self_signed_https_cert(tmp_path / "a", ["a.example"])
    _, b_key = write_self_signed_https_cert(tmp_path / "b", ["b.example"])
    with pytest.raises(TlsError) as info:
        http_server_context(a_cert, b_key)
    assert info.value.code == "https_bad_pair"
    with pytest.raises(TlsError) as info:
        http_server_context(tmp_path / "none.pem", b_key)
    assert info.value.code == "https_file_missing"
