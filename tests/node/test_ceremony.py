"""The genesis ceremony (node/client/ceremony.py) through the `ecert` CLI, in-process: `keygen` on each "host"
directory, `genesis add-org` checking public files, `genesis build` making genesis.json and cluster.toml from
them alone, `genesis hash` comparing hosts. The real multi-process run is tests/integration/test_ceremony_cluster.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ecert.genesis import genesis_from_json, genesis_hash
from node.client import ceremony, cli
from node.config import load_config
from node.genesis_file import genesis_doc
from node.keys import KeyPair, load_key, load_or_create_key

GENESIS_TIME = 1_750_000_000_000
PARTIES = [  # org, role, node, voter
    ("boc", "bank", "boc", True), ("geely", "core", "geely", True), ("tier1", "supplier", "tier1", True),
    ("pbc", "regulator", "pbc", False)]


def ecert(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def keygen(capsys: pytest.CaptureFixture[str], root: Path, org: str, role: str, node: str, port: int,
           *extra: str) -> Path:
    code, _, err = ecert(capsys, "keygen", "--org", org, "--node", node, "--dir", str(root / org), "--role", role,
                         "--name", f"{org.upper()} Ltd", "--raft", f"127.0.0.1:{9700 + port}",
                         "--http", f"127.0.0.1:{8700 + port}", *extra)
    assert code == 0, err
    return root / org / f"{org}.public.json"


@pytest.fixture
def publics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    return [keygen(capsys, tmp_path / "hosts", org, role, node, i) for i, (org, role, node, _) in enumerate(PARTIES)]


def build(capsys: pytest.CaptureFixture[str], tmp_path: Path, files: list[Path], out: str = "out") -> Path:
    assert ecert(capsys, "genesis", "add-org", *map(str, files), "--ceremony", str(tmp_path / "c"))[0] == 0
    code, _, err = ecert(capsys, "genesis", "build", "--ceremony", str(tmp_path / "c"), "--chain-id", "ecert-cer",
                         "--genesis-time", str(GENESIS_TIME), "--out", str(tmp_path / out))
    assert code == 0, err
    return tmp_path / out


def tampered(path: Path, change: Any) -> Path:
    doc = json.loads(path.read_text())
    change(doc)
    out = path.with_name(f"tampered-{path.name}")
    out.write_text(json.dumps(doc))
    return out


def resigned(record: ceremony.PublicRecord, org_key: KeyPair, node_key: KeyPair, **fields: Any) -> dict[str, Any]:
    """A record with changed fields, signed by these keys: a well-formed file that breaks a rule."""
    changed = dataclasses.replace(record, **fields)
    body = changed.body()
    return {**body, "org_sig": org_key.sign(ceremony.public_message(body, "org")).hex(),
            "node_sig": node_key.sign(ceremony.public_message(body, "node")).hex()}


# -- keygen ---------------------------------------------------------------------------------------------------


def test_keygen_writes_two_private_keys_and_a_public_file_with_nothing_private(
        publics: list[Path], tmp_path: Path) -> None:
    for (org, role, node, voter), public in zip(PARTIES, publics, strict=True):
        keys = tmp_path / "hosts" / org / "keys"
        assert sorted(p.name for p in keys.iterdir()) == sorted([f"{org}.key", f"node-{node}.key"])
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        org_key, node_key = load_key(keys / f"{org}.key"), load_key(keys / f"node-{node}.key")
        for name in (f"{org}.key", f"node-{node}.key"):
            assert stat.S_IMODE(os.stat(keys / name).st_mode) == 0o600
        assert stat.S_IMODE(public.stat().st_mode) == 0o644
        text = public.read_text()
        doc = json.loads(text)
        assert set(doc) == {"format", "id", "name", "role", "sign_pk", "box_pk", "node", "org_sig", "node_sig"}
        assert set(doc["node"]) == {"id", "raft", "http", "node_pk", "voter"}
        assert (doc["id"], doc["role"], doc["sign_pk"], doc["box_pk"]) == (org, role, org_key.sign_pk_hex,
                                                                             org_key.box_pk_hex)
        assert (doc["node"]["id"], doc["node"]["node_pk"], doc["node"]["voter"]) == (node, node_key.sign_pk_hex, voter)
        # No private material in any form: seeds, the 64-byte secret keys, the box secret key.
        for key in (org_key, node_key):
            secrets = [key.seed.hex(), bytes(key.signing_key._signing_key).hex(), key.box_sk.hex()]
            assert not any(s in text.lower() for s in secrets), org
        assert ceremony.read_record(public).id == org  # both proofs verify


def test_keygen_again_keeps_the_keys_and_a_host_directory_holds_one_org(
        publics: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    boc = tmp_path / "hosts" / "boc"
    before = {p.name: p.read_bytes() for p in (boc / "keys").iterdir()}
    public_before = publics[0].read_text()
    code, out, _ = ecert(capsys, "keygen", "--org", "boc", "--node", "boc", "--dir", str(boc), "--role", "bank",
                         "--name", "BOC Ltd", "--raft", "127.0.0.1:9700", "--http", "127.0.0.1:8700")
    assert code == 0 and "kept" in out and "unchanged" in out and publics[0].read_text() == public_before
    code, out, _ = ecert(capsys, "--json", "keygen", "--org", "boc", "--node", "boc", "--dir", str(boc), "--role",
                         "bank", "--raft", "boc.bank.example:9700", "--http", "boc.bank.example:8700")
    assert code == 0 and json.loads(out)["keys_created"] == []
    assert json.loads(publics[0].read_text())["node"]["raft"] == "boc.bank.example:9700"
    assert {p.name: p.read_bytes() for p in (boc / "keys").iterdir()} == before
    # Another org into the same directory: refused before any key is made.
    code, _, err = ecert(capsys, "keygen", "--org", "geely", "--node", "geely", "--dir", str(boc), "--role", "core")
    assert code == cli.EXIT_USAGE and "boc.key (org boc's key)" in err and "own --dir" in err
    assert {p.name for p in (boc / "keys").iterdir()} == set(before)


@pytest.mark.parametrize(("args", "message"), [
    (["--org", "BOC"], "lowercase"),
    (["--raft", "127.0.0.1"], "--raft 127.0.0.1"),
    (["--http", "[::1:8700"], "--http"),
    (["--raft", "127.0.0.1:8700", "--http", "127.0.0.1:8700"], "same address"),
    (["--raft", "0.0.0.0:9700"], "raft_listen"),  # a wildcard binds; nobody can dial it
])
def test_keygen_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                  message: str) -> None:
    base = {"--org": "boc", "--node": "boc", "--dir": str(tmp_path / "h"), "--raft": "127.0.0.1:9700",
            "--http": "127.0.0.1:8700"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    code, _, err = ecert(capsys, "keygen", *[x for kv in base.items() for x in kv])
    assert code == cli.EXIT_USAGE and message in err, err
    assert not (tmp_path / "h" / "keys").exists()  # refused before any key is made


def test_the_regulators_node_is_always_a_learner(tmp_path: Path) -> None:
    result = ceremony.keygen(tmp_path, "pbc", "pbc", role="regulator", raft="127.0.0.1:1", http="127.0.0.1:2")
    assert result.record.node.voter is False


# -- add-org --------------------------------------------------------------------------------------------------


def test_add_org_refuses_a_tampered_public_file(publics: list[Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = load_or_create_key(tmp_path / "mallory.key")[0]
    cases = {
        "another org key": (lambda d: d.update(sign_pk=other.sign_pk_hex, box_pk=other.box_pk_hex),
                            "org key's proof of possession does not verify"),
        "another node key": (lambda d: d["node"].update(node_pk=other.sign_pk_hex), "does not verify"),
        "another address": (lambda d: d["node"].update(raft="10.9.9.9:9700"), "does not verify"),
        "a voter made learner": (lambda d: d["node"].update(voter=False), "does not verify"),
        "a bad signature": (lambda d: d.update(org_sig="00" * 64), "org key's proof"),
        "a short signature": (lambda d: d.update(node_sig="abcd"), "128 lowercase hex"),
        "a private field": (lambda d: d.update(seed="00" * 32), "unknown: seed"),
        "a missing field": (lambda d: d.pop("box_pk"), "missing: box_pk"),
        "another format": (lambda d: d.update(format="ecert-public/9"), "format must be"),
        "a bad address": (lambda d: d["node"].update(http="no port"), "node.http"),
    }
    for name, (change, message) in cases.items():
        code, _, err = ecert(capsys, "genesis", "add-org", str(tampered(publics[0], change)), "--ceremony",
                             str(tmp_path / "c"))
        assert code == cli.EXIT_USAGE and message in err, (name, err)
    assert not (tmp_path / "c" / "ceremony.json").exists()
    code, _, err = ecert(capsys, "genesis", "add-org", str(tmp_path / "nope.json"), "--ceremony", str(tmp_path / "c"))
    assert code == cli.EXIT_USAGE and "no such file" in err


def test_add_org_refuses_well_signed_records_that_break_a_rule(publics: list[Path], tmp_path: Path) -> None:
    boc = ceremony.read_record(publics[0])
    keys = tmp_path / "hosts" / "boc" / "keys"
    org, node = load_key(keys / "boc.key"), load_key(keys / "node-boc.key")
    stranger = load_or_create_key(tmp_path / "x.key")[0]
    cases = {
        "box key not derived": (dict(box_pk=stranger.box_pk_hex), "not the key derived from sign_pk"),
        "regulator voter": (dict(role="regulator"), "its node is a learner"),
        "one key for both": (dict(node=dataclasses.replace(boc.node, node_pk=org.sign_pk_hex)), "same key"),
        # The org signs a record naming a node key it does not hold: the node's proof is what catches it.
        "someone else's node key": (dict(node=dataclasses.replace(boc.node, node_pk=stranger.sign_pk_hex)),
                                    "node key's proof of possession does not verify"),
    }
    for name, (fields, message) in cases.items():
        doc = resigned(boc, org, org if name == "one key for both" else node, **fields)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ceremony.CeremonyError, match=message):
            ceremony.read_record(path)


def test_orgs_are_added_one_by_one_in_any_order(publics: list[Path], tmp_path: Path) -> None:
    for path in reversed(publics):  # the regulator's learner first: nothing is required of a partial ceremony
        assert ceremony.add_orgs(tmp_path / "c", [path]).added[0].id == json.loads(path.read_text())["id"]
    assert [r.id for r in ceremony.load_ceremony(tmp_path / "c")] == [p[0] for p in reversed(PARTIES)]


def test_add_org_refuses_duplicates_and_clashes(publics: list[Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cdir = tmp_path / "c"
    result = ceremony.add_orgs(cdir, publics[:2])
    assert [r.id for r in result.added] == ["boc", "geely"]
    again = ceremony.add_orgs(cdir, [publics[0]])  # the same file again changes nothing
    assert again.added == () and [r.id for r in again.unchanged] == ["boc"] and again.total == 2
    before = (cdir / "ceremony.json").read_bytes()
    # boc again, with its keys made anew elsewhere: another record for the same org.
    code, _, err = ecert(capsys, "keygen", "--org", "boc", "--node", "boc2", "--dir", str(tmp_path / "again"),
                         "--role", "bank", "--raft", "127.0.0.1:9800", "--http", "127.0.0.1:8800")
    assert code == 0
    with pytest.raises(ceremony.CeremonyError, match="org boc is already in the ceremony with another record"):
        ceremony.add_orgs(cdir, [tmp_path / "again" / "boc.public.json"])
    # A new org whose node id, or address, is another's.
    for args, message in ((["--node", "geely", "--raft", "127.0.0.1:9801", "--http", "127.0.0.1:8801"],
                           "node id geely is already geely's"),
                          (["--node", "tier7", "--raft", "127.0.0.1:9700", "--http", "127.0.0.1:8802"],
                           "address 127.0.0.1:9700 is already boc's")):
        d = tmp_path / f"dup-{args[1]}"
        assert ecert(capsys, "keygen", "--org", "tier7", "--dir", str(d), *args)[0] == 0
        code, _, err = ecert(capsys, "genesis", "add-org", str(d / "tier7.public.json"), "--ceremony", str(cdir))
        assert code == cli.EXIT_USAGE and message in err, err
    # All or nothing: a good file beside a bad one adds neither.
    bad = tampered(publics[3], lambda d: d.update(name="PBC"))
    code, _, _ = ecert(capsys, "genesis", "add-org", str(publics[2]), str(bad), "--ceremony", str(cdir))
    assert code == cli.EXIT_USAGE and (cdir / "ceremony.json").read_bytes() == before


def test_a_hand_edited_ceremony_file_is_checked_again(publics: list[Path], tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    ceremony.add_orgs(cdir, publics)
    doc = json.loads((cdir / "ceremony.json").read_text())
    doc["orgs"][1]["name"] = "Someone Else"
    (cdir / "ceremony.json").write_text(json.dumps(doc))
    with pytest.raises(ceremony.CeremonyError, match=r"orgs\[1\].*does not verify"):
        ceremony.build(cdir, "ecert-cer", tmp_path / "out", GENESIS_TIME)
    assert not (tmp_path / "out").exists()


# -- build and hash -------------------------------------------------------------------------------------------


def test_build_makes_genesis_and_cluster_from_public_files_only(
        publics: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = build(capsys, tmp_path, publics)
    config = load_config(out / "cluster.toml")
    assert config.chain_id == "ecert-cer" and config.read_access == "signed" and config.peer_tls is True
    assert [o.id for o in config.orgs] == sorted(p[0] for p in PARTIES)  # sorted: any builder gets these bytes
    for org, role, node_id, voter in PARTIES:
        keys = tmp_path / "hosts" / org / "keys"
        spec, o = config.node(node_id), config.org(org)
        assert (o.role, o.sign_pk, o.box_pk) == (role, load_key(keys / f"{org}.key").sign_pk_hex,
                                                 load_key(keys / f"{org}.key").box_pk_hex)
        assert (spec.org, spec.voter, spec.node_pk) == (org, voter, load_key(keys / f"node-{node_id}.key").sign_pk_hex)
        assert spec.data_dir == (out / "data" / node_id).resolve()
    doc = json.loads((out / "genesis.json").read_text())
    assert doc == genesis_doc(config, GENESIS_TIME)  # genesis_doc of the cluster file: no key file needed
    assert doc["genesis_time"] == GENESIS_TIME and not (out / "keys").exists()
    # Nothing private reached the coordinator's directory.
    seeds = [load_key(p).seed.hex() for p in (tmp_path / "hosts").rglob("*.key")]
    for path in [*(tmp_path / "c").rglob("*"), *out.rglob("*")]:
        if path.is_file():
            assert not any(s in path.read_text() for s in seeds), path


def test_two_builds_of_the_same_inputs_are_byte_identical(publics: list[Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = build(capsys, tmp_path, publics, "out1")
    code, out, _ = ecert(capsys, "genesis", "build", "--ceremony", str(tmp_path / "c"), "--chain-id", "ecert-cer",
                         "--genesis-time", str(GENESIS_TIME), "--out", str(tmp_path / "out2"))
    assert code == 0
    for name in ("cluster.toml", "genesis.json"):
        assert (first / name).read_bytes() == (tmp_path / "out2" / name).read_bytes()
    # Another coordinator adding the files in another order builds the same bytes too.
    ceremony.add_orgs(tmp_path / "c2", list(reversed(publics)))
    ceremony.build(tmp_path / "c2", "ecert-cer", tmp_path / "out3", GENESIS_TIME)
    assert (first / "genesis.json").read_bytes() == (tmp_path / "out3" / "genesis.json").read_bytes()
    doc = genesis_from_json(json.loads((first / "genesis.json").read_text()))
    assert f"genesis_hash  {genesis_hash(doc).hex()}" in out
    # Never over an existing genesis.
    code, _, err = ecert(capsys, "genesis", "build", "--ceremony", str(tmp_path / "c"), "--chain-id", "ecert-cer",
                         "--out", str(first))
    assert code == cli.EXIT_USAGE and "never overwritten" in err


def test_build_refuses_what_the_chain_would_refuse(publics: list[Path], tmp_path: Path) -> None:
    ceremony.add_orgs(tmp_path / "c", publics[1:])  # no bank
    with pytest.raises(ceremony.CeremonyError, match="bank"):
        ceremony.build(tmp_path / "c", "ecert-cer", tmp_path / "out", GENESIS_TIME)
    with pytest.raises(ceremony.CeremonyError, match="no org yet"):
        ceremony.build(tmp_path / "empty", "ecert-cer", tmp_path / "out", GENESIS_TIME)
    assert not (tmp_path / "out" / "genesis.json").exists()


def test_every_host_prints_the_same_hashes_with_its_own_listen_addresses(
        publics: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = build(capsys, tmp_path, publics)
    code, built, _ = ecert(capsys, "genesis", "hash", "--config", str(out / "cluster.toml"))
    assert code == 0
    printed = []
    for org, _, node_id, _ in PARTIES:
        host = tmp_path / "hosts" / org
        text = (out / "cluster.toml").read_text().replace(
            f'id = "{node_id}"\norg = "{org}"', f'id = "{node_id}"\norg = "{org}"\nraft_listen = "0.0.0.0:9999"')
        (host / "cluster.toml").write_text(text)
        (host / "genesis.json").write_bytes((out / "genesis.json").read_bytes())
        code, printed_here, err = ecert(capsys, "genesis", "hash", "--config", str(host / "cluster.toml"))
        assert code == 0, err
        printed.append(printed_here)
    assert set(printed) == {built} and built.count("\n") == 3 and str(tmp_path) not in built
    # A consortium-wide setting changed on one host changes its cluster hash (not its genesis hash).
    host = tmp_path / "hosts" / "boc"
    (host / "cluster.toml").write_text((host / "cluster.toml").read_text().replace(
        'peer_tls = true', 'peer_tls = true\ntick_ms = 70'))
    code, changed, _ = ecert(capsys, "genesis", "hash", "--config", str(host / "cluster.toml"))
    assert code == 0 and changed.splitlines()[1] == built.splitlines()[1] and changed != built
    # A cluster file that says otherwise than genesis.json about a member is refused.
    (host / "cluster.toml").write_text((out / "cluster.toml").read_text().replace(
        'raft = "127.0.0.1:9701"', 'raft = "127.0.0.1:9991"'))
    code, _, err = ecert(capsys, "genesis", "hash", "--config", str(host / "cluster.toml"))
    assert code == cli.EXIT_USAGE and "node geely raft: genesis.json '127.0.0.1:9701'" in err
    (host / "genesis.json").unlink()
    assert ecert(capsys, "genesis", "hash", "--config", str(host / "cluster.toml"))[0] == cli.EXIT_USAGE


def test_keygen_can_write_the_https_certificate_outside_keys(tmp_path: Path) -> None:
    result = ceremony.keygen(tmp_path, "boc", "boc", role="bank", raft="boc.example:9700", http="boc.example:8700",
                             https_hosts=["boc.example", "10.0.0.5"])
    cert, key = result.https
    assert cert.parent == key.parent == tmp_path / "tls" and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in cert.read_text()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["boc.key", "node-boc.key"]
