"""TLS for the peer links (TLS 1.3, pinned node keys) and for the client API's HTTPS listener.

Peer links (CONTRACT §6 "Peer links", docs/CONTRACT.md "Peer links (TLS)"). Each node's certificate is
self-signed by its Ed25519 node key (keys/node-<id>.key), whose public half the membership pins for that node id
(genesis for the first members, the approved `member.propose` for later ones). No CA: trust comes from the
membership, not from an issuer, so the certificate is only a carrier for the key. It is a pure function of (node
key, node id, chain id): fixed serial, fixed validity (2000 to 9999, RFC 5280's "no expiry"), and Ed25519
signatures are deterministic, so every start builds the same bytes and no clock is involved.

Who authenticates whom, and why it is split. Python's `ssl` cannot ask for a client certificate without checking
it against a CA file, and there is no verify callback to pin a key instead; a member's certificate cannot be
rebuilt by the others without its private key, so no trust file could list them before they connect. So:
- the acceptor presents its certificate; the initiator refuses the connection unless the certificate's raw
  Ed25519 key is the pinned `node_pk` of the node it dialled (`certificate_key`). TLS 1.3's CertificateVerify
  proves the acceptor holds that key, so only the real peer can terminate the initiator's TLS;
- the signed hello/auth handshake of node/transport.py then runs inside TLS and authenticates the initiator by
  its node key. Its transcript carries the SHA-256 of the acceptor's certificate as each side saw it (RFC 5929
  tls-server-end-point; for Ed25519, which has no hash of its own, SHA-256): a handshake relayed through a man in
  the middle who terminates TLS with another certificate has different bindings on its two sides, and the
  acceptor refuses the initiator's signature even if the initiator's pin check were missing.
Python's `ssl` exposes neither tls-unique for TLS 1.3 nor RFC 9266's exporter, so the certificate binding is the
strongest one at hand; it suffices because only the holder of the pinned key can complete TLS as the acceptor.

TLS 1.3 only (min = max version), no compression, no renegotiation (TLS 1.3 has none), no session tickets
(nothing resumes; a resumed session would also not re-present the certificate we pin).

The PEM files `ssl` insists on (load_cert_chain reads only paths) live in an anonymous memory file (memfd,
Linux) that never touches a file system; elsewhere in a private temporary directory (0700, files 0600) removed
as soon as they are loaded.

HTTPS for the client API: `http_server_context` (TLS 1.2+, what browsers and curl speak),
`https_client_context` (the one verifying context of everything that calls a node's HTTPS listener: the clients'
`HttpsTrust` in node/client/api.py and the dashboard's probe of its peers, node/http/dashboard.py) and
`write_self_signed_https_cert` (ECDSA P-256, which browsers accept and Ed25519 they do not; SANs for DNS names
and IP addresses).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.keys import KeyPair

PEER_TLS_VERSION = ssl.TLSVersion.TLSv1_3
PEER_CERT_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
PEER_CERT_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
"""RFC 5280 4.1.2.5: 99991231235959Z means no well-defined expiration. Keys are rotated by governance, not by
certificate expiry, and nothing on the peer link reads a clock."""
PEER_CERT_OU = "ecert-chain peer"
HTTPS_CERT_DAYS_DEFAULT = 397
"""Just under the 398 days browsers accept for a publicly trusted server certificate."""
HTTPS_CERT_NAME = "https-cert.pem"
HTTPS_KEY_NAME = "https-key.pem"
HTTPS_HOSTS_MAX = 100
_PEER_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET


class TlsError(ValueError):
    """A certificate or key is unusable here: `code` is stable, the message says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- peer links -----------------------------------------------------------------------------------------------


def peer_certificate(key: KeyPair, node_id: str, chain_id: str) -> x509.Certificate:
    """The node's self-signed peer certificate: subject CN = node id, O = chain id, signed by the node key."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, PEER_CERT_OU),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, chain_id)])
    public = private.public_key()
    serial = int.from_bytes(hashlib.sha256(key.sign_pk).digest()[:16], "big") >> 1 | 1  # positive, <= 20 bytes
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public).serial_number(serial)
            .not_valid_before(PEER_CERT_NOT_BEFORE).not_valid_after(PEER_CERT_NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(private, None))


def certificate_key(der: bytes | None) -> bytes:
    """The raw 32-byte Ed25519 public key of a DER certificate; TlsError if there is none or it is another type."""
    if not der:
        raise TlsError("no_certificate", "the peer presented no certificate")
    try:
        public = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise TlsError("bad_certificate", f"undecodable peer certificate: {exc}") from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise TlsError("not_ed25519", f"peer certificate key is {type(public).__name__}, not an Ed25519 node key")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def channel_binding(der: bytes) -> bytes:
    """RFC 5929 tls-server-end-point of the acceptor's certificate (SHA-256: Ed25519 names no hash)."""
    return hashlib.sha256(der).digest()


def _peer_context(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ctx.maximum_version = PEER_TLS_VERSION
    ctx.options |= _PEER_OPTIONS
    if purpose == ssl.PROTOCOL_TLS_CLIENT:
        # No CA exists for peer certificates: the initiator pins the key itself after the handshake.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True, slots=True)
class PeerTls:
    """What a node needs to speak TLS on its peer links: its certificate and the two contexts."""

    node_id: str
    chain_id: str
    cert_der: bytes
    """This node's certificate, as it presents it when accepting."""
    server_context: ssl.SSLContext
    """For connections peers dialled: presents `cert_der`, asks for no client certificate."""
    client_context: ssl.SSLContext
    """For connections we dial: no CA verification; the caller pins the acceptor's key (`certificate_key`)."""

    @classmethod
    def from_key(cls, key: KeyPair, node_id: str, chain_id: str) -> PeerTls:
        cert = peer_certificate(key, node_id, chain_id)
        private = ed25519.Ed25519PrivateKey.from_private_bytes(key.seed)
        pem = cert.public_bytes(serialization.Encoding.PEM) + private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        server = _peer_context(ssl.PROTOCOL_TLS_SERVER)
        with _pem_path(pem) as path:
            server.load_cert_chain(path)
        return cls(node_id, chain_id, cert.public_bytes(serialization.Encoding.DER), server,
                   _peer_context(ssl.PROTOCOL_TLS_CLIENT))

    @property
    def binding(self) -> bytes:
        """The channel binding the acceptor side uses: of its own certificate."""
        return channel_binding(self.cert_der)


@contextlib.contextmanager
def _pem_path(pem: bytes) -> Iterator[str]:
    """A path `ssl` can read `pem` from, gone when the block ends."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("ecert-peer-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with _private_temp_file(pem) as path:
        yield path


@contextlib.contextmanager
def _private_temp_file(pem: bytes) -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="ecert-tls-")  # mode 0700
    try:
        path = os.path.join(directory, "peer.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def describe_ssl_error(exc: ssl.SSLError) -> str:
    """A log line for a failed TLS handshake that says the likely cause, not only OpenSSL's reason code."""
    reason = exc.reason or ""
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        hint = "the peer does not speak TLS (a clear-text peer: is peer_tls = false on one side?)"
    elif reason in ("UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"):
        hint = "the peer offers no TLS 1.3"
    else:
        hint = "TLS handshake failed"
    return f"{hint}: {exc}"


# -- HTTPS for the client API ---------------------------------------------------------------------------------


def http_server_context(cert_path: Path | str, key_path: Path | str) -> ssl.SSLContext:
    """The client API's TLS context: TLS 1.2 or 1.3 (browsers, curl), OpenSSL's default ciphers for the server
    side (forward-secret AEAD first), no client certificates (clients sign requests, CONTRACT §6)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except FileNotFoundError as exc:
        raise TlsError("https_file_missing", f"HTTPS certificate or key not found: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise TlsError("https_bad_pair",
                       f"{cert_path} / {key_path}: not a PEM certificate and its matching key ({exc})") from None
    return ctx


def https_client_context(cafiles: Sequence[tuple[str, Path]]) -> ssl.SSLContext:
    """A client context for a node's HTTPS listener that checks the certificate chain and the host name (ssl's
    defaults, kept; there is no switch to turn them off): against exactly `cafiles` (pinned: the system store is
    then not consulted), or the system store if there are none. `cafiles`: (what names the file in an error,
    path). TlsError `https_ca_missing` / `https_ca_bad` names the file."""
    if not cafiles:
        return ssl.create_default_context()
    ctx: ssl.SSLContext | None = None
    for what, path in cafiles:
        try:
            if ctx is None:
                ctx = ssl.create_default_context(cafile=str(path))
            else:
                ctx.load_verify_locations(cafile=str(path))
        except FileNotFoundError:
            raise TlsError("https_ca_missing", f"{what}: CA file {path} not found") from None
        except (ssl.SSLError, OSError) as exc:
            raise TlsError("https_ca_bad", f"{what}: {path} is not a PEM file of CA certificates ({exc})") from None
    assert ctx is not None
    return ctx

def _san(host: str) -> x509.GeneralName:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return x509.IPAddress(ipaddress.ip_address(bare))
    except ValueError:
        pass
    try:
        bare.encode("ascii")
    except UnicodeEncodeError:
        raise TlsError("bad_https_host", f"host {host!r}: use its IDNA (xn--) form") from None
    if not bare or any(c in bare for c in " /:@") or len(bare) > 253:
        raise TlsError("bad_https_host", f"host {host!r} is neither a DNS name nor an IP address")
    return x509.DNSName(bare.lower())


def self_signed_https_cert(hosts: Sequence[str], key: ec.EllipticCurvePrivateKey,
                           now: datetime.datetime, days: int = HTTPS_CERT_DAYS_DEFAULT) -> x509.Certificate:
    """A self-signed server certificate for `hosts` (DNS names or IP addresses, IPv6 bracketed or not)."""
    if not hosts:
        raise TlsError("bad_https_host", "at least one host name or address is needed")
    if len(hosts) > HTTPS_HOSTS_MAX:
        raise TlsError("bad_https_host", f"{len(hosts)} hosts, at most {HTTPS_HOSTS_MAX}")
    if days < 1:
        raise TlsError("bad_https_days", f"validity must be at least one day, got {days}")
    sans = [_san(h) for h in hosts]
    cn = hosts[0].strip("[]")[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    public = key.public_key()
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # a client clock a little behind still accepts
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))


def write_self_signed_https_cert(directory: Path | str, hosts: Sequence[str],
                                 key: ec.EllipticCurvePrivateKey | None = None, *,
                                 days: int = HTTPS_CERT_DAYS_DEFAULT) -> tuple[Path, Path]:
    """Write DIR/https-cert.pem and DIR/https-key.pem (0600; a new ECDSA P-256 key unless `key` is given) for
    `hosts`; returns (cert_path, key_path). Never overwrites: an existing file raises TlsError `https_exists`.
    Clients trust the certificate by pinning it as the node's `https_ca`."""
    directory = Path(directory)
    cert_path, key_path = directory / HTTPS_CERT_NAME, directory / HTTPS_KEY_NAME
    for p in (cert_path, key_path):
        if p.exists():
            raise TlsError("https_exists", f"{p} exists; remove it first to replace it")
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
        raise TlsError("bad_https_key", f"curve {key.curve.name}: browsers accept P-256 or P-384")
    cert = self_signed_https_cert(hosts, key, datetime.datetime.now(datetime.UTC), days)
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(key_path, key_pem, 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise TlsError("https_exists", f"{path} exists; remove it first to replace it") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
