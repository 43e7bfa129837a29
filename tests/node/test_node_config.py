"""cluster.toml parsing/validation and key files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from consensus.invariant import InvariantViolation
from ecert.genesis import genesis_from_json
from ecert.membership import LEARNER, REMOVED, NodeMember
from ecert.tx import TX_JSON_BYTES_MAX
from ledger.block import BLOCK_TXS_BYTES_MAX, BLOCK_TXS_MAX
from node.config import (
    BODY_BYTES_MAX,
    CLUSTER_INT_KEYS,
    ROLES,
    ClusterConfigError,
    IntKey,
    check_cluster_int_keys,
    load_config,
)
from node.genesis_file import GenesisFileError, check_own_membership, genesis_doc, write_genesis
from node.keys import (
    KeyFileError,
    ensure_cluster_keys,
    load_key,
    load_or_create_key,
    node_public_key,
    org_public_keys,
    verify,
)

GOOD = """
[cluster]
chain_id = "ecert-local"
block_max_txs = 100

[[nodes]]
id = "boc"
org = "boc"
http = "127.0.0.1:7001"
raft = "127.0.0.1:7101"
data_dir = "data/boc"

[[nodes]]
id = "geely"
org = "geely"
http = "127.0.0.1:7002"
raft = "127.0.0.1:7102"
data_dir = "data/geely"
voter = false

[[orgs]]
id = "boc"
name = "Bank of China"
role = "bank"

[[orgs]]
id = "geely"
name = "Geely"
role = "core"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.toml"
    p.write_text(text)
    return p


def test_good_file_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.chain_id == "ecert-local"
    assert cfg.block_max_txs == 100 and cfg.block_timeout_ms == 5 and cfg.snapshot_entries == 2000
    assert cfg.max_body_bytes == 1 << 20 and cfg.queue_max == 10_000 and cfg.tick_ms == 50
    assert cfg.node_ids == ("boc", "geely") and cfg.voter_ids == ("boc",)
    boc = cfg.node("boc")
    assert boc.http.port == 7001 and boc.raft.host == "127.0.0.1"
    assert boc.data_dir == (tmp_path / "data" / "boc").resolve()
    assert boc.http_url == "http://127.0.0.1:7001"
    assert cfg.keys_dir == tmp_path.resolve() / "keys"
    assert cfg.genesis_path == tmp_path.resolve() / "genesis.json"
    assert cfg.org("geely").role == "core"


@pytest.mark.parametrize(("old", "new", "key"), [
    ('chain_id = "ecert-local"', "", "cluster.chain_id"),
    ("block_max_txs = 100", "block_max_txs = 0", "cluster.block_max_txs"),
    ("block_max_txs = 100", 'block_max_txs = "many"', "cluster.block_max_txs"),
    ("block_max_txs = 100", "block_max_txs = 1.5", "cluster.block_max_txs"),
    ("block_max_txs = 100", "election_ticks = 2\nheartbeat_ticks = 2", "cluster.heartbeat_ticks"),
    ('http = "127.0.0.1:7001"', 'http = "localhost"', "nodes[0].http"),
    ('http = "127.0.0.1:7001"', 'http = "127.0.0.1:99999"', "nodes[0].http"),
    ('raft = "127.0.0.1:7102"', 'raft = "127.0.0.1:7001"', "nodes[1].raft"),
    ('id = "geely"\norg = "geely"', 'id = "boc"\norg = "geely"', "nodes[1].id"),
    ('data_dir = "data/geely"', 'data_dir = "data/boc"', "nodes[1].data_dir"),
    ('role = "bank"', 'role = "king"', "orgs[0].role"),
    ('org = "boc"', 'org = "nobody"', "nodes[0].org"),
    ("voter = false", 'voter = "no"', "nodes[1].voter"),
    ('id = "boc"\norg = "boc"', 'id = "B O C"\norg = "boc"', "nodes[0].id"),
])
def test_errors_name_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    with pytest.raises(ClusterConfigError) as exc:
        load_config(write(tmp_path, GOOD.replace(old, new, 1)))
    assert exc.value.key == key
    assert key in str(exc.value)


@pytest.mark.parametrize(("line", "key", "cap", "why"), [
    (f"block_max_txs = {BLOCK_TXS_MAX + 1}", "cluster.block_max_txs", BLOCK_TXS_MAX, "BLOCK_TXS_MAX"),
    ("block_max_txs = 100000", "cluster.block_max_txs", BLOCK_TXS_MAX, "BLOCK_TXS_MAX"),
    (f"block_max_bytes = {BLOCK_TXS_BYTES_MAX + 1}", "cluster.block_max_bytes", BLOCK_TXS_BYTES_MAX,
     "BLOCK_TXS_BYTES_MAX"),
    (f"block_max_bytes = {64 << 20}", "cluster.block_max_bytes", BLOCK_TXS_BYTES_MAX, "BLOCK_TXS_BYTES_MAX"),
    (f"max_body_bytes = {256 << 20}", "cluster.max_body_bytes", BODY_BYTES_MAX, "BODY_BYTES_MAX"),
    (f"max_body_bytes = {BODY_BYTES_MAX + 1}", "cluster.max_body_bytes", BODY_BYTES_MAX, "BODY_BYTES_MAX"),
    ("max_body_bytes = 1024", "cluster.max_body_bytes", TX_JSON_BYTES_MAX, "TX_JSON_BYTES_MAX"),
    (f"max_body_bytes = {TX_JSON_BYTES_MAX - 1}", "cluster.max_body_bytes", TX_JSON_BYTES_MAX, "TX_JSON_BYTES_MAX"),
])
def test_values_beyond_another_layers_cap_name_the_key_and_the_cap(tmp_path: Path, line: str, key: str, cap: int,
                                                                   why: str) -> None:
    with pytest.raises(ClusterConfigError) as exc:
        load_config(write(tmp_path, GOOD.replace("block_max_txs = 100", line, 1)))
    assert exc.value.key == key
    assert key in str(exc.value) and str(cap) in str(exc.value) and why in str(exc.value)


def test_values_at_the_caps_are_accepted(tmp_path: Path) -> None:
    lines = (f"block_max_txs = {BLOCK_TXS_MAX}\nblock_max_bytes = {BLOCK_TXS_BYTES_MAX}\n"
             f"max_body_bytes = {BODY_BYTES_MAX}")
    cfg = load_config(write(tmp_path, GOOD.replace("block_max_txs = 100", lines, 1)))
    assert (cfg.block_max_txs, cfg.block_max_bytes, cfg.max_body_bytes) == (BLOCK_TXS_MAX, BLOCK_TXS_BYTES_MAX,
                                                                            BODY_BYTES_MAX)
    low = load_config(write(tmp_path, GOOD.replace("block_max_txs = 100", f"max_body_bytes = {TX_JSON_BYTES_MAX}")))
    assert low.max_body_bytes == TX_JSON_BYTES_MAX


@pytest.mark.parametrize("table", [
    CLUSTER_INT_KEYS | {"block_max_txs": IntKey(500, 1, 100)},             # default above the range
    CLUSTER_INT_KEYS | {"queue_max": IntKey(5, 1, 10_000_000)},            # not ClusterConfig's default
    CLUSTER_INT_KEYS | {"no_such_key": IntKey(1, 1, 2)},                   # not a ClusterConfig field
])
def test_the_key_table_is_checked_against_its_defaults(table: dict[str, IntKey]) -> None:
    check_cluster_int_keys(CLUSTER_INT_KEYS)
    with pytest.raises(InvariantViolation):
        check_cluster_int_keys(table)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ClusterConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[cluster\n"))
    with pytest.raises(ClusterConfigError) as exc:
        load_config(write(tmp_path, '[cluster]\nchain_id = "x"\n'))
    assert exc.value.key == "nodes"


def test_unknown_node_lookup(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    with pytest.raises(ClusterConfigError, match="tier9"):
        cfg.node("tier9")
    assert cfg.find_node("tier9") is None and cfg.find_node(None) is None


def test_keys_are_created_once_and_never_overwritten(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    created = ensure_cluster_keys(cfg)
    assert sorted(p.name for p in created) == ["boc.key", "geely.key", "node-boc.key", "node-geely.key"]
    path = cfg.keys_dir / "boc.key"
    text = path.read_text()
    assert len(text.strip()) == 64 and int(text, 16) >= 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_cluster_keys(cfg) == []
    assert path.read_text() == text
    kp, was_created = load_or_create_key(path)
    assert not was_created and kp.seed.hex() == text.strip()
    # Derived public keys: Ed25519 for signing, X25519 for sealed boxes; a signature verifies.
    sign_pk, box_pk = org_public_keys(cfg, "boc")
    assert sign_pk == kp.sign_pk_hex and box_pk == kp.box_pk_hex and sign_pk != box_pk
    assert verify(kp.sign_pk, b"msg", kp.sign(b"msg"))
    assert not verify(kp.sign_pk, b"other", kp.sign(b"msg"))
    assert node_public_key(cfg, "geely") == load_key(cfg.keys_dir / "node-geely.key").sign_pk


def test_malformed_key_file_is_an_error_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "x.key"
    path.parent.mkdir()
    path.write_text("zz" * 32)
    with pytest.raises(KeyFileError):
        load_or_create_key(path)
    assert path.read_text() == "zz" * 32


def test_box_key_matches_libsodium_conversion(tmp_path: Path) -> None:
    from nacl.public import Box, PrivateKey, PublicKey

    a, _ = load_or_create_key(tmp_path / "a.key")
    b, _ = load_or_create_key(tmp_path / "b.key")
    # Keys derived from the Ed25519 seeds agree on a shared secret (the conversion is consistent).
    ab = Box(PrivateKey(a.box_sk), PublicKey(b.box_pk)).shared_key()
    ba = Box(PrivateKey(b.box_sk), PublicKey(a.box_pk)).shared_key()
    assert ab == ba


# -- the regulator and the genesis membership ------------------------------------------------------------------------

REGULATOR = GOOD + """
[[orgs]]
id = "pbc"
name = "People's Bank of China"
role = "regulator"

[[nodes]]
id = "pbc"
org = "pbc"
http = "[::1]:7003"
raft = "127.0.0.1:7103"
data_dir = "data/pbc"
voter = false
"""


def test_the_regulators_node_is_a_learner(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REGULATOR))
    assert cfg.org("pbc").role == "regulator" and "regulator" in ROLES
    assert cfg.node("pbc").voter is False and cfg.voter_ids == ("boc",)
    with pytest.raises(ClusterConfigError) as exc:
        load_config(write(tmp_path, REGULATOR.replace('data_dir = "data/pbc"\nvoter = false', 'data_dir = "data/pbc"')))
    assert exc.value.key == "nodes[2].voter" and "regulator" in str(exc.value)


def test_genesis_lists_every_node_with_its_key_and_the_chain_accepts_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REGULATOR))
    ensure_cluster_keys(cfg)
    doc = genesis_doc(cfg, 1_700_000_000_000)
    assert doc["nodes"] == [
        {"id": "boc", "org": "boc", "raft": "127.0.0.1:7101", "http": "127.0.0.1:7001",
         "node_pk": node_public_key(cfg, "boc").hex(), "voter": True},
        {"id": "geely", "org": "geely", "raft": "127.0.0.1:7102", "http": "127.0.0.1:7002",
         "node_pk": node_public_key(cfg, "geely").hex(), "voter": False},
        {"id": "pbc", "org": "pbc", "raft": "127.0.0.1:7103", "http": "[::1]:7003",  # IPv6 in brackets
         "node_pk": node_public_key(cfg, "pbc").hex(), "voter": False},
    ]
    assert [n.id for n in genesis_from_json(doc).nodes] == ["boc", "geely", "pbc"]
    assert write_genesis(cfg, cfg.genesis_path) and json.loads(cfg.genesis_path.read_text())["nodes"][2]["id"] == "pbc"


def test_a_genesis_the_chain_would_refuse_is_not_written(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD.replace('role = "bank"', 'role = "core"')))  # no bank at all
    ensure_cluster_keys(cfg)
    with pytest.raises(GenesisFileError, match="bank"):
        write_genesis(cfg, cfg.genesis_path)
    assert not cfg.genesis_path.exists()


def test_a_node_checks_its_own_record_in_the_membership(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, REGULATOR))
    ensure_cluster_keys(cfg)
    pk = node_public_key(cfg, "pbc")
    spec = cfg.node("pbc")
    record = NodeMember("pbc", "pbc", "127.0.0.1:7103", "[::1]:7003", pk.hex(), LEARNER, 0)
    assert check_own_membership(spec, pk, record) is None
    assert "not in the chain's membership" in (check_own_membership(spec, pk, None) or "")
    assert "removed" in (check_own_membership(spec, pk, record._replace(status=REMOVED, proposal_id="MP1")) or "")
    assert "peers dial those" in (check_own_membership(spec, pk, record._replace(raft="10.0.0.9:7103")) or "")
    with pytest.raises(GenesisFileError, match=r"run by org 'pbc', genesis\.json says 'boc'"):
        check_own_membership(spec, pk, record._replace(org="boc"))
    with pytest.raises(GenesisFileError, match="transport key"):
        check_own_membership(spec, node_public_key(cfg, "boc"), record)
