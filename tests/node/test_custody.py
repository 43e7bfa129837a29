"""Key custody at start (node/custody.py): a node starts with its own org key and node key and nobody else's,
except in the local demo (keys/LOCAL-DEMO and every [[nodes]] address on loopback); its org key must be the
org's current key in state. Also what `ecert init` / local clusters write for the demo, and the wiring into
Node.start() (a refusal is a StartupError before any socket is opened)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from node.client import cli
from node.client.rotate import next_key_path, old_key_path
from node.config import Address, ClusterConfig, load_config
from node.custody import (
    LOCAL_DEMO_MARKER,
    CustodyError,
    check_key_custody,
    check_org_key,
    foreign_key_files,
    is_loopback_host,
    local_demo_applies,
)
from node.genesis_file import GenesisFileError, init_cluster_files
from node.keys import (
    KeyPair,
    fingerprint,
    load_key,
    load_or_create_key,
    node_key_path,
    org_key_path,
    org_next_key_path,
    org_old_key_paths,
)
from node.ops.localnet import consortium_orgs, init_cluster, local_nodes, write_cluster_file
from node.server import Node, StartupError

CLUSTER = """
[cluster]
chain_id = "custody-test"

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
raft = "{boc}:7101"
http = "{boc}:7001"
data_dir = "data/boc"

[[nodes]]
id = "geely"
org = "geely"
raft = "{geely}:7102"
http = "{geely}:7002"
data_dir = "data/geely"
"""


def host(tmp_path: Path, boc: str = "127.0.0.1", geely: str = "127.0.0.1") -> ClusterConfig:
    """A cluster file in tmp_path (addresses as given) and, in keys/, boc's own two keys: boc's host."""
    (tmp_path / "cluster.toml").write_text(CLUSTER.format(boc=boc, geely=geely))
    config = load_config(tmp_path / "cluster.toml")
    load_or_create_key(org_key_path(config.keys_dir, "boc"))
    load_or_create_key(node_key_path(config.keys_dir, "boc"))
    return config


def other_seed(path: Path) -> KeyPair:
    return load_or_create_key(path)[0]


# -- what a host may hold ---------------------------------------------------------------------------------------


def test_own_keys_only_start_and_give_the_node_key(tmp_path: Path) -> None:
    config = host(tmp_path)
    assert check_key_custody(config, "boc") == load_key(node_key_path(config.keys_dir, "boc"))
    # Its own rotation's leftovers are its own: the next key, rotated-out keys, and a copy of its own key.
    other_seed(org_next_key_path(config.keys_dir, "boc"))
    shutil.copy(org_key_path(config.keys_dir, "boc"), config.keys_dir / "boc.key.old-12")
    shutil.copy(org_key_path(config.keys_dir, "boc"), config.keys_dir / "boc.key.bak")
    (config.keys_dir / "README").write_text("our keys\n")
    (config.keys_dir / "..data").mkdir()  # a Kubernetes Secret volume's directory: its files show beside it
    assert check_key_custody(config, "boc") == load_key(node_key_path(config.keys_dir, "boc"))


def test_a_missing_node_key_is_refused_not_made(tmp_path: Path) -> None:
    config = host(tmp_path)
    node_key_path(config.keys_dir, "boc").unlink()
    with pytest.raises(CustodyError, match=r"node-boc\.key is missing.*ecert keygen --org boc --node boc"):
        check_key_custody(config, "boc")
    assert not node_key_path(config.keys_dir, "boc").exists()


def test_a_malformed_node_key_is_refused(tmp_path: Path) -> None:
    config = host(tmp_path)
    node_key_path(config.keys_dir, "boc").write_text("not a key\n")
    with pytest.raises(CustodyError, match="never replaced"):
        check_key_custody(config, "boc")
    assert node_key_path(config.keys_dir, "boc").read_text() == "not a key\n"


@pytest.mark.parametrize(("name", "what"), [
    ("geely.key", "org geely's key"),
    ("node-geely.key", "node geely's key"),
    ("geely.key.next", "org geely's next key"),
    ("geely.key.old-7", "org geely's rotated-out key"),
    ("tier9.key", "org tier9's key"),  # an org the cluster file does not even list
    ("node-boc2.key", "node boc2's key"),  # another node, even of the same org
])
def test_another_orgs_or_nodes_key_is_refused(tmp_path: Path, name: str, what: str) -> None:
    config = host(tmp_path)
    other_seed(config.keys_dir / name)
    with pytest.raises(CustodyError) as exc:
        check_key_custody(config, "boc")
    assert f"{name} ({what})" in str(exc.value) and str(config.keys_dir) in str(exc.value)
    assert "there is no" in str(exc.value) and LOCAL_DEMO_MARKER in str(exc.value)


def test_a_foreign_seed_under_another_name_is_found_by_its_content(tmp_path: Path) -> None:
    config = host(tmp_path)
    other = load_or_create_key(tmp_path / "elsewhere" / "geely.key")[0]
    (config.keys_dir / "backup.txt").write_text(other.seed.hex() + "\n")
    with pytest.raises(CustodyError, match=r"backup\.txt \(holds a private key"):
        check_key_custody(config, "boc")
    assert [f.path.name for f in foreign_key_files(config.keys_dir, "boc", "boc")] == ["backup.txt"]


# -- the local demo -------------------------------------------------------------------------------------------


def demo(tmp_path: Path, boc: str = "127.0.0.1", geely: str = "127.0.0.1") -> ClusterConfig:
    """What `ecert init` leaves: every key in one keys/, and the marker."""
    config = host(tmp_path, boc, geely)
    result = init_cluster_files(config, 1_700_000_000_000)
    assert result.local_demo == config.keys_dir / LOCAL_DEMO_MARKER
    return config


def test_the_local_demo_on_loopback_may_hold_every_key(tmp_path: Path) -> None:
    config = demo(tmp_path, geely="localhost")
    marker = config.keys_dir / LOCAL_DEMO_MARKER
    assert "ecert keygen" in marker.read_text() and "loopback" in marker.read_text()
    assert local_demo_applies(config) == (True, "")
    for node_id in ("boc", "geely"):
        assert check_key_custody(config, node_id) == load_key(node_key_path(config.keys_dir, node_id))
    # The demo keeps the old behaviour for a node key that is missing: it is made at start.
    node_key_path(config.keys_dir, "geely").unlink()
    made = check_key_custody(config, "geely")
    assert load_key(node_key_path(config.keys_dir, "geely")) == made


@pytest.mark.parametrize("address", ["10.0.0.5", "boc-node.bank.example", "192.168.1.7", "[2001:db8::1]"])
def test_the_marker_does_not_excuse_a_cluster_that_reaches_the_network(tmp_path: Path, address: str) -> None:
    config = demo(tmp_path, boc=address)
    applies, why = local_demo_applies(config)
    assert not applies and f"node boc raft {address}:7101" in why
    with pytest.raises(CustodyError) as exc:
        check_key_custody(config, "geely")  # geely's own address is loopback: boc's is not, and that is enough
    assert "boc.key (org boc's key)" in str(exc.value) and "is there, but" in str(exc.value)


def test_a_listen_address_off_loopback_ends_the_demo_too(tmp_path: Path) -> None:
    config = demo(tmp_path)
    if not hasattr(config.nodes[0], "raft_listen"):
        pytest.skip("node/config.py has no listen addresses yet")
    nodes = (dataclasses.replace(config.nodes[0], raft_listen=Address("0.0.0.0", 7101)), *config.nodes[1:])
    wide = dataclasses.replace(config, nodes=nodes)
    assert not local_demo_applies(wide)[0]
    with pytest.raises(CustodyError, match=r"raft_listen 0\.0\.0\.0:7101"):
        check_key_custody(wide, "boc")


@pytest.mark.parametrize(("host_text", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LOCALHOST.", True), ("node.localhost", True),
    ("10.0.0.1", False), ("0.0.0.0", False), ("::", False), ("example.com", False), ("localhost.example", False),
    ("192.168.1.10", False),
])
def test_loopback_hosts(host_text: str, loopback: bool) -> None:
    assert is_loopback_host(host_text) is loopback


def test_init_refuses_a_ceremony_cluster_file(tmp_path: Path) -> None:
    """A cluster file that lists public keys whose private keys are elsewhere comes from the ceremony: `ecert
    init` would only make keys the chain does not know."""
    text = CLUSTER.format(boc="127.0.0.1", geely="127.0.0.1").replace(
        'role = "core"', 'role = "core"\nsign_pk = "' + "ab" * 32 + '"')
    (tmp_path / "cluster.toml").write_text(text)
    config = load_config(tmp_path / "cluster.toml")
    with pytest.raises(GenesisFileError, match=r"orgs geely sign_pk.*ecert keygen"):
        init_cluster_files(config)
    assert not config.keys_dir.exists() and not config.genesis_path.exists()


def test_ecert_init_says_it_made_every_key_for_the_local_demo(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cluster.toml").write_text(CLUSTER.format(boc="127.0.0.1", geely="127.0.0.1"))
    assert cli.main(["--config", str(tmp_path / "cluster.toml"), "init"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "every organisation's private key" in text and "ecert keygen" in text and "docs/DEPLOY.md" in text
    assert (tmp_path / "keys" / LOCAL_DEMO_MARKER).is_file()
    assert cli.main(["--config", str(tmp_path / "cluster.toml"), "--json", "init"]) == 0
    assert json.loads(capsys.readouterr().out)["local_demo"] == str(tmp_path / "keys" / LOCAL_DEMO_MARKER)


def test_local_clusters_are_marked_as_demos(tmp_path: Path) -> None:
    path = write_cluster_file(tmp_path, "custody-local", consortium_orgs(3), local_nodes([("boc", "boc")]))
    config = init_cluster(path)
    assert (config.keys_dir / LOCAL_DEMO_MARKER).is_file() and local_demo_applies(config)[0]


# -- the org key against the chain ------------------------------------------------------------------------------


def test_the_org_key_must_be_the_chains_current_one(tmp_path: Path) -> None:
    config = host(tmp_path)
    keys = config.keys_dir
    mine = load_key(org_key_path(keys, "boc"))
    assert check_org_key(keys, "boc", mine.sign_pk_hex, 5) is None
    assert check_org_key(keys, "boc", None, 5) is None  # not in state: nothing to compare
    assert check_org_key(keys, "geely", "ab" * 32, 5) is None  # no keys/geely.key here: nothing to compare
    other = load_or_create_key(tmp_path / "other.key")[0]
    with pytest.raises(CustodyError) as exc:
        check_org_key(keys, "boc", other.sign_pk_hex, 5)
    message = str(exc.value)
    assert fingerprint(mine.sign_pk_hex) in message and fingerprint(other.sign_pk_hex) in message
    assert str(org_key_path(keys, "boc")) in message and "height 5" in message


def test_a_state_behind_a_finished_rotation_is_a_warning(tmp_path: Path) -> None:
    """rotate.py kept the rotated-out key as boc.key.old-<H>: a state below H still holds it and catches up."""
    config = host(tmp_path)
    keys = config.keys_dir
    old = load_or_create_key(old_key_path(keys, "boc", 40))[0]
    assert org_old_key_paths(keys, "boc") == [(40, old_key_path(keys, "boc", 40))]
    warning = check_org_key(keys, "boc", old.sign_pk_hex, 39)
    assert warning is not None and "rotation at height 40" in warning
    with pytest.raises(CustodyError):  # at or above H the state must hold the new key already
        check_org_key(keys, "boc", old.sign_pk_hex, 40)


def test_a_half_done_rotation_is_a_warning(tmp_path: Path) -> None:
    config = host(tmp_path)
    keys = config.keys_dir
    pending = load_or_create_key(next_key_path(keys, "boc"))[0]
    warning = check_org_key(keys, "boc", pending.sign_pk_hex, 9)
    assert warning is not None and "ecert org rotate-key boc" in warning


def test_key_file_names_agree_with_rotate(tmp_path: Path) -> None:
    assert org_next_key_path(tmp_path, "boc") == next_key_path(tmp_path, "boc")
    old_key_path(tmp_path, "boc", 3).write_text("x")
    assert org_old_key_paths(tmp_path, "boc") == [(3, old_key_path(tmp_path, "boc", 3))]


# -- wired into Node.start() ------------------------------------------------------------------------------------


async def start_refused(config: ClusterConfig, node_id: str) -> str:
    node = Node(config, node_id)
    try:
        with pytest.raises(StartupError) as exc:
            await node.start()
    finally:
        await node.stop()
    assert node.transport is None and node.runner is None  # refused before any socket
    return str(exc.value)


async def test_a_node_with_another_orgs_key_does_not_start(tmp_path: Path) -> None:
    config = host(tmp_path)
    other_seed(org_key_path(config.keys_dir, "geely"))
    message = await start_refused(config, "boc")
    assert "geely.key (org geely's key)" in message


async def test_a_node_whose_org_key_is_not_the_genesis_key_does_not_start(tmp_path: Path) -> None:
    config = demo(tmp_path)  # genesis made from keys/boc.key
    org_key_path(config.keys_dir, "boc").write_text("cd" * 32 + "\n")  # then the file is swapped
    message = await start_refused(config, "boc")
    assert f"holds sign_pk {fingerprint(KeyPair(bytes.fromhex('cd' * 32)).sign_pk_hex)}" in message


async def test_clear_text_peer_links_to_a_member_off_loopback_do_not_start(tmp_path: Path) -> None:
    """The cluster file is checked when it loads (tests/node/test_addresses.py); the state's members, which a
    node's own file may not list, are checked at start: peer_tls = false with one of them off loopback is refused."""
    config = demo(tmp_path, geely="10.0.0.7")
    for path in (org_key_path(config.keys_dir, "geely"), node_key_path(config.keys_dir, "geely"),
                 config.keys_dir / LOCAL_DEMO_MARKER):
        path.unlink()  # boc's host: its own keys only
    clear = dataclasses.replace(config, peer_tls=False)  # as if its file listed only itself, on loopback
    message = await start_refused(clear, "boc")
    assert "member geely, 10.0.0.7:7102" in message and "peer_tls_off_beyond_loopback" in message
    # Named, it starts (and warns): the transport is made.
    node = Node(dataclasses.replace(clear, peer_tls_off_beyond_loopback=True), "boc")
    try:
        await node.start()
        assert node.transport is not None and node.transport.tls is None
    finally:
        await node.stop()
