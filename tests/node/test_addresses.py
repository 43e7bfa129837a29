"""cluster.toml addresses and the issue-15 keys (node/config.py): listen vs advertise, IPv6, hostnames, peer_tls,
HTTPS files; the local launcher's cluster files (node/ops/localnet.py); the clients' HTTPS trust
(node/client/api.py HttpsTrust)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecert.errors import TxRejected
from ecert.tx import v_address
from node.client.api import Client, HttpsTrust, HttpsTrustError, Unreachable
from node.config import Address, ClusterConfig, ClusterConfigError, load_config, parse_address, parse_config
from node.genesis_file import address_text
from node.ops import localnet

BASE = """
[cluster]
chain_id = "ecert-local"
{cluster}

[[orgs]]
id = "boc"
name = "Bank of China"
role = "bank"

[[orgs]]
id = "geely"
name = "Geely"
role = "core"

[[nodes]]
id = "boc"
org = "boc"
http = "10.0.0.1:8701"
raft = "10.0.0.1:9701"
data_dir = "data/boc"
{boc}

[[nodes]]
id = "geely"
org = "geely"
http = "10.0.0.2:8701"
raft = "10.0.0.2:9701"
data_dir = "data/geely"
{geely}
"""


def load(tmp_path: Path, cluster: str = "", boc: str = "", geely: str = "") -> ClusterConfig:
    p = tmp_path / "cluster.toml"
    p.write_text(BASE.format(cluster=cluster, boc=boc, geely=geely))
    return load_config(p)


def refused(tmp_path: Path, **parts: str) -> ClusterConfigError:
    with pytest.raises(ClusterConfigError) as exc:
        load(tmp_path, **parts)
    return exc.value


# -- address syntax: the chain's (ecert.tx.v_address) ----------------------------------------------------------------

GOOD = ["127.0.0.1:9701", "[::1]:9701", "[2001:db8::7]:1", "localhost:65535", "node-1.Example.com:80",
        "[::ffff:10.0.0.1]:8701", "a:1", "bank-node.internal:9700"]


@pytest.mark.parametrize("text", GOOD)
def test_advertised_addresses_the_chain_accepts_parse_and_print_back_as_written(text: str) -> None:
    addr = parse_address(text, "nodes[0].raft")
    assert str(addr) == text == address_text(addr) == v_address("raft", text)
    assert not addr.host.startswith("[")  # Address.host holds an IPv6 address without brackets
    assert addr.is_ipv6 == text.startswith("[")


@pytest.mark.parametrize(("text", "says"), [
    ("127.0.0.1", "HOST:PORT"), ("127.0.0.1:", "port"), (":80", "HOST:PORT"), ("host:0", "port"),
    ("host:65536", "port"), ("host:080", "leading zero"), ("host:+80", "port"), ("::1:80", "needs brackets"),
    ("[::1]", "port"), ("[1.2.3.4]:80", "not an IPv6"), ("[::1%eth0]:80", "zone"), ("999.1.1.1:80", "neither"),
    ("01.2.3.4:80", "neither"), ("-host:80", "neither"), ("a_b:80", "neither"), ("h\u00e9:80", "neither"),
    ("a" * 254 + ":80", "at most 253"),
    ("a" * 300 + ":80", "longer than"), (80, "must be a string"), ("0.0.0.0:9701", "raft_listen"),
    ("[::]:9701", "cannot be dialled"), ("[0:0::0]:9701", "cannot be dialled"),
])
def test_bad_advertised_addresses_are_refused_naming_the_key(text: object, says: str) -> None:
    with pytest.raises(ClusterConfigError) as exc:
        parse_address(text, "nodes[3].raft")
    assert exc.value.key == "nodes[3].raft" and says in str(exc.value)


@pytest.mark.parametrize("text", ["0.0.0.0:9701", "[::]:9701", "127.0.0.1:9701", "[::1]:8701", "localhost:1"])
def test_listen_addresses_may_be_wildcards(text: str) -> None:
    addr = parse_address(text, "nodes[0].raft_listen", listen=True)
    assert str(addr) == text and addr.is_wildcard == (text in ("0.0.0.0:9701", "[::]:9701"))


@settings(max_examples=1500)
@given(st.text(alphabet="0123456789abcdefxyz-.:[]%", max_size=24))
def test_the_config_accepts_exactly_what_the_chain_accepts(text: str) -> None:
    """An address the cluster file takes is one genesis and member.propose take, and the other way round (but
    for the wildcards, which a record may hold and nobody can dial)."""
    try:
        v_address("raft", text)
        chain = True
    except TxRejected:
        chain = False
    try:
        config = str(parse_address(text, "k", listen=True)) == text
    except ClusterConfigError:
        config = False
    assert config == chain


def test_hostnames_are_not_resolved_at_load(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 6761): loading must not try.
    cfg = load(tmp_path, geely='raft_listen = "0.0.0.0:9701"').nodes[1]
    assert cfg.raft_bind == Address("0.0.0.0", 9701)
    p = tmp_path / "c2.toml"
    p.write_text(BASE.format(cluster="", boc="", geely="").replace("10.0.0.2:9701", "geely.bank.invalid:9701"))
    assert load_config(p).node("geely").raft == Address("geely.bank.invalid", 9701)


# -- listen vs advertise ---------------------------------------------------------------------------------------------


def test_listen_defaults_to_the_advertised_address_and_can_differ(tmp_path: Path) -> None:
    cfg = load(tmp_path, boc='raft_listen = "0.0.0.0:9701"\nhttp_listen = "[::]:8701"')
    boc, geely = cfg.nodes
    assert (boc.raft_bind, boc.http_bind) == (Address("0.0.0.0", 9701), Address("::", 8701))
    assert (boc.raft, boc.http) == (Address("10.0.0.1", 9701), Address("10.0.0.1", 8701))  # what peers dial
    assert (geely.raft_listen, geely.raft_bind) == (None, geely.raft)
    assert boc.http_url == "http://10.0.0.1:8701"  # the advertised address, never the bound one


def test_two_hosts_may_bind_the_same_wildcard_and_port(tmp_path: Path) -> None:
    both = 'raft_listen = "0.0.0.0:9701"\nhttp_listen = "0.0.0.0:8701"'
    cfg = load(tmp_path, boc=both, geely=both)
    assert cfg.nodes[0].raft_bind == cfg.nodes[1].raft_bind == Address("0.0.0.0", 9701)


@pytest.mark.parametrize(("boc", "geely", "key", "says"), [
    # One node: its two listeners clash (a wildcard covers every address of its family).
    ('raft_listen = "0.0.0.0:8701"', "", "nodes[0].http", "clashes with 0.0.0.0:8701 bound by nodes[0].raft_listen"),
    ('http_listen = "0.0.0.0:5000"\nraft_listen = "10.0.0.1:5000"', "", "nodes[0].http_listen", "clashes"),
    ('http_listen = "[::]:5000"\nraft_listen = "[::1]:5000"', "", "nodes[0].http_listen", "clashes"),
    ('http_listen = "[::]:5000"\nraft_listen = "myhost:5000"', "", "nodes[0].http_listen", "clashes"),
    # Bad listen syntax names the key.
    ('raft_listen = "0.0.0.0"', "", "nodes[0].raft_listen", "HOST:PORT"),
    ('http_listen = "::9701"', "", "nodes[0].http_listen", "brackets"),
    ('http_listen = 9701', "", "nodes[0].http_listen", "string"),
])
def test_bind_clashes_on_one_node_are_refused(tmp_path: Path, boc: str, geely: str, key: str, says: str) -> None:
    err = refused(tmp_path, boc=boc, geely=geely)
    assert err.key == key and says in str(err), err


def test_ipv4_and_ipv6_wildcards_do_not_clash(tmp_path: Path) -> None:
    # asyncio binds "::" with IPV6_V6ONLY: 0.0.0.0:P and [::]:P coexist.
    cfg = load(tmp_path, boc='http_listen = "[::]:5000"\nraft_listen = "0.0.0.0:5000"')
    assert cfg.nodes[0].raft_bind.port == cfg.nodes[0].http_bind.port == 5000


def test_nodes_on_one_host_may_not_bind_clashing_addresses(tmp_path: Path) -> None:
    """Nodes whose advertised hosts are the same machine (here both loopback) share a host: one binding
    0.0.0.0:P forbids the other binding 127.0.0.1:P, whatever they advertise."""
    p = tmp_path / "cluster.toml"
    text = (BASE.format(cluster="", boc='raft_listen = "0.0.0.0:7000"', geely='raft_listen = "127.0.0.1:7000"')
            .replace("10.0.0.1:9701", "127.0.0.1:9701").replace("10.0.0.2:9701", "localhost:9702"))
    p.write_text(text)
    with pytest.raises(ClusterConfigError) as exc:
        load_config(p)
    assert exc.value.key == "nodes[1].raft_listen" and "nodes[0].raft_listen" in str(exc.value)
    # The same pair on two hosts (different advertised hosts) is fine.
    assert load(tmp_path, boc='raft_listen = "0.0.0.0:7000"', geely='raft_listen = "127.0.0.1:7000"')


@pytest.mark.parametrize(("old", "new"), [
    ("10.0.0.2:9701", "10.0.0.1:9701"),                # the same advertised address
    ("10.0.0.2:9701", "10.0.0.1:8701"),                # another node's HTTP address
])
def test_advertised_addresses_differ_cluster_wide(tmp_path: Path, old: str, new: str) -> None:
    p = tmp_path / "cluster.toml"
    p.write_text(BASE.format(cluster="", boc="", geely="").replace(old, new))
    with pytest.raises(ClusterConfigError) as exc:
        load_config(p)
    assert exc.value.key == "nodes[1].raft" and "already used by nodes[0]" in str(exc.value)


def test_advertised_duplicates_are_found_in_any_spelling(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        "cluster": {"chain_id": "c"},
        "nodes": [{"id": "a", "org": "a", "http": "[2001:db8::1]:1", "raft": "Bank.Example:2", "data_dir": "a"},
                  {"id": "b", "org": "b", "http": "[2001:0db8:0:0::1]:1", "raft": "x:3", "data_dir": "b"}]}
    with pytest.raises(ClusterConfigError, match="already used by nodes") as exc:
        parse_config(raw, tmp_path / "cluster.toml")
    assert exc.value.key == "nodes[1].http"
    raw["nodes"][1]["http"], raw["nodes"][1]["raft"] = "[2001:db8::2]:1", "bank.example:2"
    with pytest.raises(ClusterConfigError) as exc:
        parse_config(raw, tmp_path / "cluster.toml")
    assert exc.value.key == "nodes[1].raft"


# -- [cluster] peer_tls ----------------------------------------------------------------------------------------------


def on_loopback(tmp_path: Path, cluster: str, boc: str = "") -> ClusterConfig:
    p = tmp_path / "cluster.toml"
    p.write_text(BASE.format(cluster=cluster, boc=boc, geely="").replace("10.0.0.", "127.0.0."))
    return load_config(p)


def test_peer_tls_defaults_to_true_and_takes_a_bool(tmp_path: Path) -> None:
    assert load(tmp_path).peer_tls is True
    assert on_loopback(tmp_path, cluster="peer_tls = false").peer_tls is False
    assert load(tmp_path, cluster="peer_tls = true").peer_tls is True


def test_clear_text_peer_links_off_loopback_are_refused_unless_asked_for_by_name(tmp_path: Path) -> None:
    err = refused(tmp_path, cluster="peer_tls = false")
    assert err.key == "cluster.peer_tls" and "nodes[0].raft = 10.0.0.1:9701" in str(err)
    assert "peer_tls_off_beyond_loopback" in str(err)
    # A wildcard bind is off loopback too, even when every advertised address is on it.
    with pytest.raises(ClusterConfigError) as exc:
        on_loopback(tmp_path, cluster="peer_tls = false", boc='raft_listen = "0.0.0.0:9801"')
    assert "nodes[0].raft_listen = 0.0.0.0:9801" in str(exc.value)
    cfg = load(tmp_path, cluster="peer_tls = false\npeer_tls_off_beyond_loopback = true")
    assert cfg.peer_tls is False and cfg.peer_tls_off_beyond_loopback is True
    assert load(tmp_path).peer_tls_off_beyond_loopback is False
    err = refused(tmp_path, cluster='peer_tls = false\npeer_tls_off_beyond_loopback = "yes"')
    assert err.key == "cluster.peer_tls_off_beyond_loopback"


@pytest.mark.parametrize("value", ['"false"', "0", "1", '"no"'])
def test_peer_tls_refuses_anything_but_a_bool(tmp_path: Path, value: str) -> None:
    err = refused(tmp_path, cluster=f"peer_tls = {value}")
    assert err.key == "cluster.peer_tls" and "true or false" in str(err)


# -- HTTPS keys ------------------------------------------------------------------------------------------------------


def test_https_paths_are_relative_to_the_cluster_file_and_make_the_url_https(tmp_path: Path) -> None:
    cfg = load(tmp_path, boc='https_cert = "tls/cert.pem"\nhttps_key = "tls/key.pem"\nhttps_ca = "tls/ca.pem"')
    boc, geely = cfg.nodes
    base = tmp_path.resolve()
    assert (boc.https_cert, boc.https_key, boc.https_ca) == (base / "tls/cert.pem", base / "tls/key.pem",
                                                             base / "tls/ca.pem")
    assert boc.http_url == "https://10.0.0.1:8701" and geely.http_url == "http://10.0.0.2:8701"
    assert geely.https_cert is None and geely.https_key is None and geely.https_ca is None
    # Not checked for existence at load: the key is the node's host's own (the node checks at start).
    assert not (base / "tls").exists()


@pytest.mark.parametrize(("lines", "key", "says"), [
    ('https_cert = "c.pem"', "nodes[0].https_key", "both"),
    ('https_key = "k.pem"', "nodes[0].https_cert", "both"),
    ('https_ca = "ca.pem"', "nodes[0].https_ca", "plain HTTP"),
    ('https_cert = ""\nhttps_key = "k.pem"', "nodes[0].https_cert", "non-empty path"),
    ('https_cert = "c.pem"\nhttps_key = 5', "nodes[0].https_key", "non-empty path"),
])
def test_https_keys_errors_name_the_key(tmp_path: Path, lines: str, key: str, says: str) -> None:
    err = refused(tmp_path, boc=lines)
    assert err.key == key and says in str(err), err


def test_ipv6_urls_are_bracketed(tmp_path: Path) -> None:
    p = tmp_path / "cluster.toml"
    p.write_text(BASE.format(cluster="", boc="", geely="").replace('"10.0.0.1:8701"', '"[fd00::1]:8701"'))
    assert load_config(p).node("boc").http_url == "http://[fd00::1]:8701"


# -- the local launcher ----------------------------------------------------------------------------------------------


def test_localnet_writes_peer_tls_listen_https_and_ipv6(tmp_path: Path) -> None:
    nodes = [localnet.LocalNode("boc", "boc", 8001, 9001, listen_host="0.0.0.0"),
             localnet.LocalNode("geely", "geely", 8002, 9002, host="localhost", https_cert="h/c.pem",
                                https_key="h/k.pem", https_ca="h/c.pem"),
             localnet.LocalNode("tier1", "tier1", 8003, 9003, host="::1", listen_host="::")]
    # Wildcard binds in clear text: only with the key that says so by name (test_clear_text_peer_links_...).
    path = localnet.write_cluster_file(tmp_path, "x", localnet.consortium_orgs(3), nodes,
                                       {"tick_ms": 20, "peer_tls_off_beyond_loopback": True}, peer_tls=False)
    cfg = load_config(path)
    assert cfg.peer_tls is False and cfg.tick_ms == 20
    boc, geely, tier1 = cfg.nodes
    assert (str(boc.raft), str(boc.raft_bind), str(boc.http_bind)) == ("127.0.0.1:9001", "0.0.0.0:9001",
                                                                        "0.0.0.0:8001")
    assert geely.http_url == nodes[1].url == "https://localhost:8002"
    assert geely.https_ca == tmp_path.resolve() / "h/c.pem"
    assert (str(tier1.raft), str(tier1.raft_bind)) == ("[::1]:9003", "[::]:9003")
    assert tier1.http_url == nodes[2].url == "http://[::1]:8003"
    # The default keeps peer_tls out of the file (TLS on).
    again = localnet.write_cluster_file(tmp_path / "on", "x", localnet.consortium_orgs(3), nodes[:1])
    assert "peer_tls" not in again.read_text() and load_config(again).peer_tls is True


def test_local_nodes_on_ipv6_loopback() -> None:
    if not localnet.has_ipv6_loopback():
        pytest.skip("this machine has no ::1 (no IPv6 on loopback)")
    nodes = localnet.local_nodes([("boc", "boc"), ("geely", "geely")], host=localnet.IPV6_LOOPBACK)
    assert all(n.host == "::1" and n.url.startswith("http://[::1]:") for n in nodes)
    assert len({p for n in nodes for p in (n.http_port, n.raft_port)}) == 4


# -- clients: HTTPS trust --------------------------------------------------------------------------------------------


def test_trust_is_per_node_and_never_off(tmp_path: Path) -> None:
    from node.tls import write_self_signed_https_cert

    cert, _ = write_self_signed_https_cert(tmp_path / "h", ["localhost"])
    trust = HttpsTrust(None, {"https://a:1": cert})
    assert trust.context("http://a:1") is None
    for base in ("https://a:1", "https://b:1"):  # its own CA / the system store: both verify
        ctx = trust.context(base)
        assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert trust.context("https://a:1") is trust.context("https://a:1/")  # built once


def test_a_missing_or_bad_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HttpsTrustError, match=r"--cacert: CA file .*nope\.pem not found"):
        HttpsTrust(tmp_path / "nope.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(HttpsTrustError, match="not a PEM file of CA certificates"):
        HttpsTrust(bad)
    # A node's https_ca that is missing: that node fails with the reason, as Unreachable when none answers.
    client = Client(["https://127.0.0.1:1"], timeout_s=1, trust=HttpsTrust(None, {"https://127.0.0.1:1": bad}))
    with pytest.raises(Unreachable, match=re.escape("https_ca of https://127.0.0.1:1")):
        client.get("/v1/status")


def test_a_bare_node_address_takes_the_scheme_the_cluster_file_gives_it(tmp_path: Path) -> None:
    from node.client.cli import addressed_node, node_url

    cfg = load(tmp_path, boc='https_cert = "tls/cert.pem"\nhttps_key = "tls/key.pem"')
    assert node_url("10.0.0.1:8701", cfg) == "https://10.0.0.1:8701"  # boc serves HTTPS
    assert node_url("10.0.0.2:8701/", cfg) == "http://10.0.0.2:8701"
    assert node_url("10.0.0.9:8701", cfg) == "http://10.0.0.9:8701"  # no entry of the cluster file
    assert node_url("10.0.0.1:8701") == "http://10.0.0.1:8701"  # no cluster file
    assert node_url("http://10.0.0.1:8701", cfg) == "http://10.0.0.1:8701"  # a scheme given is kept
    assert node_url("not an address", cfg) == "http://not an address"  # the request's error tells
    spec = addressed_node(cfg, "10.0.0.1:8701")
    assert spec is not None and spec.id == "boc"


def test_a_missing_org_key_says_how_it_is_made_here(tmp_path: Path) -> None:
    from node.client.api import load_signer
    from node.keys import KeyFileError

    with pytest.raises(KeyFileError, match=r"on boc's, `ecert keygen --org boc \.\.\.` made it"):
        load_signer(load(tmp_path), "boc")  # real hosts: each org's key is made on its own
    local = tmp_path / "local"
    local.mkdir()
    (local / "cluster.toml").write_text(BASE.format(cluster="", boc="", geely="").replace("10.0.0.", "127.0.0."))
    with pytest.raises(KeyFileError, match=r"run `ecert init`"):
        load_signer(load_config(local / "cluster.toml"), "boc")
