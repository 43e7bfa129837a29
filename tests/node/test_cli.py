"""The `ecert` CLI and the demo, without the node process.

- `ecert init`: key files (64 hex + newline, 0600), genesis.json, never overwritten.
- Transactions built by the CLI follow CONTRACT §3, checked with plain msgpack + nacl (not our codec), and every
  kind's body passes the ecert decoder.
- The one client module (node/client/api.py): its sync and async transports send the same requests and read the
  same answers; a counter nonce source makes a signer's nonces predictable.
- The demo and the CLI queries run over real HTTP against `FakeNode`: a one-thread stand-in for the node that
  applies each tx as its own block with the real EcertExecutor and answers with ecert.queries. It stands in for
  consensus only; signatures, rules and the HTTP client are the real ones. It checks every Authorization header
  with the real RequestVerifier (keys from its state: a rotated key counts at once) and records who read what,
  but does not apply the read rules (the node's tests do): here the question is who the clients sign for.
- Signed requests: who a CLI command speaks for (`--as`, the one key in keys/, the org of the node addressed),
  `ecert sign-request` (its header verifies), `ecert session`, `ecert org rotate-key` (the key files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from nacl.signing import SigningKey

from ecert import invariants, queries, settlement
from ecert import state as ecert_state
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_from_json, genesis_writes
from ecert.privacy import open_document_with_seed
from ecert.tx import decode_tx, envelope_from_json, verify_key_proof
from ledger.executor import BlockContext
from ledger.state_view import MemoryStateView, OverlayView
from node.client import api, cli, demo
from node.config import load_config
from node.keys import KeyPair
from node.request_auth import AuthError, RequestVerifier, parse_authorization

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    shutil.copy(REPO / "cluster.toml", tmp_path / "cluster.toml")
    return tmp_path


def ecert(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().out


# --- init ----------------------------------------------------------------------------------------------------------


def test_init_creates_keys_and_genesis_once(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    code, out = ecert(capsys, "--config", cfg, "--json", "init")
    assert code == 0
    first = json.loads(out)
    assert first["genesis_created"] is True
    assert len(first["keys_created"]) == 12  # 6 org keys + 6 node keys
    assert "local demo" in (cluster_dir / "keys" / "LOCAL-DEMO").read_text()  # every key here: node/custody.py
    keys = {p.name: p.read_text() for p in (cluster_dir / "keys").iterdir() if p.name != "LOCAL-DEMO"}
    assert set(keys) == {f"{o}.key" for o in ("boc", "geely", "tier1", "tier2", "tier3", "pbc")} | {
        f"node-{o}.key" for o in ("boc", "geely", "tier1", "tier2", "tier3", "pbc")}
    for name, text in keys.items():
        assert re.fullmatch(r"[0-9a-f]{64}\n", text), name
        assert stat.S_IMODE((cluster_dir / "keys" / name).stat().st_mode) == 0o600
    genesis_text = (cluster_dir / "genesis.json").read_text()
    genesis = genesis_from_json(json.loads(genesis_text))
    assert genesis.chain_id == "ecert-local"
    roles = {o.id: o.role for o in genesis.orgs}
    assert roles == {"boc": "bank", "geely": "core", "tier1": "supplier", "tier2": "supplier", "tier3": "supplier",
                     "pbc": "regulator"}
    for org in genesis.orgs:
        seed = bytes.fromhex(keys[f"{org.id}.key"].strip())
        assert org.sign_pk == SigningKey(seed).verify_key.encode().hex()

    # Second run: nothing created, nothing rewritten.
    code, out = ecert(capsys, "--config", cfg, "--json", "init")
    assert code == 0
    second = json.loads(out)
    assert second["keys_created"] == [] and second["genesis_created"] is False
    assert {p.name: p.read_text() for p in (cluster_dir / "keys").iterdir() if p.name != "LOCAL-DEMO"} == keys
    assert (cluster_dir / "genesis.json").read_text() == genesis_text


def test_init_keeps_an_existing_key_and_refuses_a_malformed_one(cluster_dir: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    keys = cluster_dir / "keys"
    keys.mkdir()
    mine = "ab" * 32 + "\n"
    (keys / "geely.key").write_text(mine)
    assert ecert(capsys, "--config", str(cluster_dir / "cluster.toml"), "init")[0] == 0
    assert (keys / "geely.key").read_text() == mine
    genesis = json.loads((cluster_dir / "genesis.json").read_text())
    geely = next(o for o in genesis["orgs"] if o["id"] == "geely")
    assert geely["sign_pk"] == SigningKey(bytes.fromhex("ab" * 32)).verify_key.encode().hex()

    (keys / "tier9.key").write_text("not hex\n")
    code = cli.main(["--config", str(cluster_dir / "cluster.toml"), "cert", "accept", "EC00", "--as", "tier9",
                     "--dry-run"])
    assert code == cli.EXIT_USAGE
    assert (keys / "tier9.key").read_text() == "not hex\n"


def test_init_refuses_a_genesis_of_another_chain(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cluster_dir / "genesis.json").write_text(json.dumps({"chain_id": "other", "genesis_time": 1, "orgs": []}))
    assert ecert(capsys, "--config", str(cluster_dir / "cluster.toml"), "init")[0] == cli.EXIT_USAGE


def test_missing_cluster_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ecert(capsys, "--config", str(tmp_path / "nope.toml"), "init")[0] == cli.EXIT_USAGE


# --- transactions follow CONTRACT §3 -------------------------------------------------------------------------------


def dry_run(capsys: pytest.CaptureFixture[str], cfg: str, *argv: str) -> dict[str, Any]:
    code, out = ecert(capsys, "--config", cfg, *argv, "--dry-run")
    assert code == 0, out
    return json.loads(out)


def test_signed_envelope_matches_the_contract(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    ecert(capsys, "--config", cfg, "init")
    env = dry_run(capsys, cfg, "cert", "issue", "--as", "geely", "--to", "tier1", "--amount", "3000000yuan",
                  "--maturity", "1893456000000", "--bank", "boc", "--invoice", "INV-1", "--invoice", "INV-2")
    assert set(env) == {"payload", "signer", "sig"} and env["signer"] == "geely"
    payload_bytes = base64.b64decode(env["payload"])
    sig = base64.b64decode(env["sig"])
    # Independent of ecert/: plain msgpack and nacl, as any client of the contract would do.
    payload = msgpack.unpackb(payload_bytes, raw=False)
    assert set(payload) == {"chain_id", "type", "signer", "nonce", "body"}
    assert payload["chain_id"] == "ecert-local" and payload["type"] == "ecert.issue" and payload["signer"] == "geely"
    assert payload["body"] == {"to": "tier1", "amount": 300_000_000, "maturity": 1893456000000, "bank": "boc",
                               "invoice_ids": ["INV-1", "INV-2"]}
    seed = bytes.fromhex((cluster_dir / "keys" / "geely.key").read_text().strip())
    SigningKey(seed).verify_key.verify(payload_bytes, sig)  # raises if the signature is wrong
    tx = decode_tx(envelope_from_json(env), "ecert-local")
    assert tx.tx_id == hashlib.sha256(payload_bytes).hexdigest()


def test_every_tx_kind_builds_a_body_the_decoder_accepts(cluster_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    ecert(capsys, "--config", cfg, "init")
    doc = cluster_dir / "invoice.txt"
    doc.write_text("invoice 42")
    cases: dict[str, list[str]] = {
        "org.register": ["org", "register", "--as", "tier4", "--name", "Tier-4 Supplier", "--role", "supplier"],
        "org.approve": ["org", "approve", "tier4", "--as", "boc", "--kyc", str(doc)],
        "org.freeze": ["org", "freeze", "tier4", "--as", "boc", "--reason", "audit"],
        "org.unfreeze": ["org", "unfreeze", "tier4", "--as", "boc"],
        "credit.grant": ["credit", "grant", "--as", "boc", "--core", "geely", "--limit", "¥50m",
                         "--expires-at", "+365d"],
        "trade.anchor": ["trade", "anchor", "--as", "tier1", "--doc-id", "INV-1", "--kind", "invoice",
                         "--counterparty", "geely", "--amount", "500000000", "--file", str(doc), "--contract", "PO-1"],
        "trade.confirm": ["trade", "confirm", "INV-1", "--as", "geely"],
        "ecert.issue": ["cert", "issue", "--as", "geely", "--to", "tier1", "--amount", "1000", "--maturity",
                        "2030-01-01", "--bank", "boc", "--invoice", "INV-1"],
        "ecert.accept": ["cert", "accept", "EC01", "--as", "tier1"],
        "ecert.reject": ["cert", "reject", "EC01", "--as", "tier1"],
        "ecert.transfer": ["cert", "transfer", "EC01", "--as", "tier1", "--to", "tier2:100", "--to", "tier3:1.50yuan",
                           "--trade-doc", "PO-12", "--trade-doc", "PO-13"],
        "ecert.split": ["cert", "split", "EC01", "--as", "tier1", "--amounts", "600", "400"],
        "ecert.settle": ["cert", "settle", "EC01", "--as", "geely", "--payment", "PAY-1"],
        "ecert.pay": ["cert", "pay", "EC01", "--as", "geely", "--amount", "2.50yuan"],
        "ecert.settle_root": ["cert", "settle-root", "EC01", "--as", "geely"],
        "ecert.default": ["cert", "default", "EC01", "--as", "boc"],
        "ecert.revoke": ["cert", "revoke", "EC01", "--as", "geely"],
        "finance.request": ["finance", "request", "EC01", "--as", "tier3", "--bank", "boc"],
        "finance.approve": ["finance", "approve", "EC01", "--as", "boc", "--discount-bps", "450", "--recourse"],
        "finance.decline": ["finance", "decline", "EC01", "--as", "boc", "--reason", "no"],
        "finance.limit": ["finance", "limit", "--as", "boc", "--org", "tier1", "--limit", "¥2m"],
        "recourse.repay": ["recourse", "repay", "EC01", "--as", "tier3", "--amount", "100"],
        "recourse.write_off": ["recourse", "write-off", "EC01", "--as", "boc", "--reason", "insolvent"],
        "dispute.open": ["dispute", "open", "--cert", "EC01", "--as", "geely", "--against", "tier1", "--reason",
                         "short delivery", "--evidence", str(doc)],
        "dispute.respond": ["dispute", "respond", "DS01", "--as", "tier1", "--statement", "delivered in full",
                            "--evidence-hash", "AB" * 32],
        "dispute.resolve": ["dispute", "resolve", "DS01", "--as", "boc", "--outcome", "dismissed"],
        "complaint.file": ["complaint", "file", "--as", "tier3", "--against", "geely", "--subject", "paid late",
                           "--evidence", str(doc)],
        "complaint.respond": ["complaint", "respond", "CP01", "--as", "geely", "--statement", "paid since",
                              "--evidence", str(doc)],
        "complaint.escalate": ["complaint", "escalate", "CP01", "--as", "tier3"],
        "complaint.close": ["complaint", "close", "CP01", "--as", "pbc", "--reason", "settled"],
        "org.rotate_key": ["org", "rotate-key", "tier2"],
        "member.propose": ["member", "propose", "add-learner", "tier9", "--as", "boc", "--org", "tier1", "--raft",
                           "127.0.0.1:9799", "--http", "127.0.0.1:8799", "--node-pk", "ab" * 32],
        "member.approve": ["member", "approve", "MP" + "0" * 32, "--as", "geely"],
    }
    from ecert.tx import TX_TYPES

    assert set(cases) == set(TX_TYPES)
    nonces = set()
    for kind, argv in cases.items():
        tx = decode_tx(envelope_from_json(dry_run(capsys, cfg, *argv)), "ecert-local")
        assert tx.type == kind
        nonces.add(tx.nonce)
    assert len(nonces) == len(cases)  # fresh nonce every time
    transfer = decode_tx(envelope_from_json(dry_run(capsys, cfg, *cases["ecert.transfer"])), None)
    assert transfer.body.to == (("tier2", 100), ("tier3", 150))
    anchor = decode_tx(envelope_from_json(dry_run(capsys, cfg, *cases["trade.anchor"])), None)
    assert anchor.body.doc_hash == hashlib.sha256(b"invoice 42").hexdigest() and anchor.body.contract_id == "PO-1"
    assert transfer.body.trade_docs == ("PO-12", "PO-13")
    bodies = {kind: decode_tx(envelope_from_json(dry_run(capsys, cfg, *cases[kind])), None).body
              for kind in ("org.approve", "ecert.pay", "finance.approve", "dispute.open", "dispute.respond")}
    assert bodies["org.approve"].kyc_hash == hashlib.sha256(b"invoice 42").hexdigest()
    assert bodies["ecert.pay"].amount == 250 and bodies["finance.approve"].recourse is True
    assert bodies["dispute.open"].cert_id == "EC01" and bodies["dispute.open"].doc_id is None
    assert bodies["dispute.open"].evidence_hash == hashlib.sha256(b"invoice 42").hexdigest()
    assert bodies["dispute.respond"].evidence_hash == "ab" * 32
    # Omitted, finance.approve says nothing about recourse (without, as before the field existed).
    plain = decode_tx(envelope_from_json(dry_run(capsys, cfg, "finance", "approve", "EC01", "--as", "boc",
                                                 "--discount-bps", "450")), None)
    assert plain.body.recourse is None
    assert (cluster_dir / "keys" / "tier4.key").exists()  # org register creates the new org's key


def test_new_tx_commands_name_their_signer_and_check_evidence(cluster_dir: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Each command of issue 14's kinds says in --help who may sign it; evidence is a file or a sha256, never
    both, never missing where the kind requires it."""
    commands = [["cert", "pay"], ["cert", "settle-root"], ["cert", "default"], ["cert", "revoke"],
                ["finance", "limit"], ["recourse", "repay"], ["recourse", "write-off"], ["dispute", "open"],
                ["dispute", "respond"], ["dispute", "resolve"], ["complaint", "file"], ["complaint", "respond"],
                ["complaint", "escalate"], ["complaint", "close"]]
    for argv in commands:
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(signer:" in text, argv
    cfg = str(cluster_dir / "cluster.toml")
    ecert(capsys, "--config", cfg, "init")
    base = ["--config", cfg, "complaint", "file", "--as", "tier3", "--against", "geely", "--subject", "late",
            "--dry-run"]
    assert ecert(capsys, *base)[0] == cli.EXIT_USAGE  # no evidence
    assert ecert(capsys, *base, "--evidence-hash", "xyz")[0] == cli.EXIT_USAGE
    assert ecert(capsys, *base, "--evidence", str(cluster_dir / "missing.pdf"))[0] == cli.EXIT_USAGE
    assert ecert(capsys, *base, "--evidence", cfg, "--evidence-hash", "ab" * 32)[0] == cli.EXIT_USAGE
    with pytest.raises(SystemExit):  # a dispute is on a certificate or a document, not both
        cli.main(["--config", cfg, "dispute", "open", "--cert", "EC1", "--doc", "D1", "--against", "tier1",
                  "--reason", "r", "--evidence-hash", "ab" * 32, "--as", "geely", "--dry-run"])
    capsys.readouterr()


def test_signer_without_a_key_file_is_refused(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = ecert(capsys, "--config", str(cluster_dir / "cluster.toml"), "cert", "accept", "EC01", "--as",
                    "tier1", "--dry-run")
    assert code == cli.EXIT_USAGE
    assert not (cluster_dir / "keys" / "tier1.key").exists()


def test_amounts_and_times() -> None:
    assert cli.parse_amount("150000000") == 150_000_000
    assert cli.parse_amount("1_500") == 1500
    assert cli.parse_amount("1500.5yuan") == 150_050
    assert cli.parse_amount("¥1.5m") == 150_000_000
    assert cli.parse_amount("2kyuan") == 200_000
    for bad in ("1.005yuan", "-5", "1.5", "abc", "1e3"):
        with pytest.raises(Exception, match="not"):
            cli.parse_amount(bad)
    assert cli.parse_time_ms("+30s", now_ms=1000) == 31_000
    assert cli.parse_time_ms("+2d", now_ms=0) == 172_800_000
    assert cli.parse_time_ms("2030-01-01") == 1_893_456_000_000
    assert cli.parse_time_ms("1893456000000") == 1_893_456_000_000
    assert cli.fmt_amount(150_050) == "¥1,500.50"


# --- a stand-in node over real HTTP --------------------------------------------------------------------------------


class FakeNode:
    """One block per tx, applied at once with the real executor; the HTTP shapes of CONTRACT §4."""

    def __init__(self, cluster_dir: Path) -> None:
        genesis = genesis_from_json(json.loads((cluster_dir / "genesis.json").read_text()))
        self.chain_id = genesis.chain_id
        self.state = MemoryStateView(genesis_writes(genesis))
        self.executor = EcertExecutor(genesis.chain_id)
        self.height = 0
        self.time = genesis.genesis_time
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.blocks: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.verifier = RequestVerifier(genesis.chain_id, "fake", 0, self.org_key)
        self.requests: list[tuple[str, str, str | None]] = []
        """(method, path, the org it was signed for or None), in arrival order."""

    def org_key(self, org_id: str) -> tuple[str, str] | None:
        org = ecert_state.get_org(self.state, org_id)
        return None if org is None else (org.status, org.sign_pk)

    def authenticate(self, method: str, path: str, body: bytes, header: str | None) -> tuple[int, Any] | None:
        """Check the Authorization header (if any) and record the request; a refusal as (status, doc)."""
        org = None
        if header is not None:
            try:
                with self.lock:
                    org = self.verifier.verify(method, path, body, header, time.time_ns() // 1_000_000).org_id
            except AuthError as e:
                return e.status, {"error": {"code": e.code, "message": e.message, **e.extra}}
        self.requests.append((method, path, org))
        return None

    def readers_of(self, prefix: str) -> set[str | None]:
        return {org for method, path, org in self.requests if method == "GET" and path.startswith(prefix)}

    def submit(self, body: bytes) -> tuple[int, dict[str, Any]]:
        raw = envelope_from_json(json.loads(body))
        with self.lock:
            tx_id = self.executor.tx_id(raw)
            if tx_id in self.outcomes:
                return 200, self.outcomes[tx_id]
            self.height += 1
            self.time = max(self.time, time.time_ns() // 1_000_000)
            overlay = OverlayView(self.state)
            outcome = self.executor.execute(overlay, raw, BlockContext(self.height, self.time, "fake", self.chain_id))
            if outcome.status == "committed":
                for key, value in overlay.changes().items():
                    if value is None:
                        self.state.delete(key)
                    else:
                        self.state.put(key, value)
            doc = {**outcome.to_json(), "height": self.height}
            self.outcomes[tx_id] = doc
            self.blocks[self.height] = {"height": self.height, "time": self.time, "proposer": "fake",
                                        "hash": hashlib.sha256(str(self.height).encode()).hexdigest(),
                                        "tx_ids": [tx_id]}
            return 200, doc

    def get(self, path: str) -> tuple[int, Any]:
        parts = path.split("?")[0].strip("/").split("/")
        with self.lock:
            doc: Any = None
            match parts:
                case ["v1", "status"]:
                    doc = {"node_id": "fake", "org": "boc", "role": "leader", "term": 1, "leader_id": "fake",
                           "commit_index": self.height, "applied_index": self.height, "height": self.height,
                           "block_hash": "", "state_root": ""}
                case ["v1", "tx", tx_id]:
                    doc = self.outcomes.get(tx_id, {"tx_id": tx_id, "status": "unknown"})
                case ["v1", "blocks", h]:
                    doc = self.blocks.get(int(h))
                case ["v1", "certs", cert_id]:
                    doc = queries.get_cert(self.state, cert_id)
                case ["v1", "certs", cert_id, "lineage"]:
                    doc = queries.get_lineage(self.state, cert_id)
                case ["v1", "orgs", org_id]:
                    doc = queries.get_org(self.state, org_id)
                case ["v1", "orgs", org_id, "certs"]:
                    doc = queries.get_holdings(self.state, org_id)
                case ["v1", "orgs", org_id, "owed"]:
                    doc = settlement.owed_to(self.state, org_id, self.time)
                case ["v1", "docs", doc_id]:
                    doc = queries.get_trade_doc(self.state, doc_id)
        if doc is None:
            return 404, {"error": {"code": "not_found", "message": path}}
        return 200, doc


@pytest.fixture
def fake_node(cluster_dir: Path) -> Iterator[tuple[FakeNode, str]]:
    assert cli.main(["--config", str(cluster_dir / "cluster.toml"), "init"]) == 0
    node = FakeNode(cluster_dir)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            refused = node.authenticate("GET", self.path, b"", self.headers.get("Authorization"))
            self._answer(*(refused or node.get(self.path)))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            refused = node.authenticate("POST", self.path, body, self.headers.get("Authorization"))
            if refused:
                self._answer(*refused)
            elif self.path.startswith("/v1/session"):
                org = node.requests[-1][2]
                if org is None:
                    self._answer(401, {"error": {"code": "unauthenticated", "message": "sign it"}})
                else:
                    self._answer(200, {"token": f"ecs1~fake~{org}~1~{'x' * 43}", "expires_at": 1, "org": org})
            else:
                assert self.headers["Content-Type"] == "application/json"
                self._answer(*node.submit(body))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield node, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_demo_tells_the_story_and_runs_again(cluster_dir: Path, fake_node: tuple[FakeNode, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    node, url = fake_node
    cfg = str(cluster_dir / "cluster.toml")
    assert demo.main(["--config", cfg, "--node", url, "--maturity-seconds", "1.5"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["demo"] == "ok" and summary["leaves_sum_equals_root"] is True
    assert summary["certs"] == 6  # root; tier2's part + tier1's rest; tier2's two pieces; tier3's piece
    assert summary["committed"] == summary["txs"] == 30
    before = summary["holdings_before_maturity"]
    assert len(before["tier1"]) == len(before["tier2"]) == len(before["boc"]) == 1
    assert before["tier3"] == [] and before["geely"] == []  # tier3 sold its piece to the bank
    assert sorted(summary["settled"]) == sorted(before["tier1"] + before["tier2"])
    assert summary["defaulted"] == before["boc"] == [summary["part_paid"]]
    assert summary["dispute"]["outcome"] == "dismissed" and summary["dispute"]["status"] == "resolved"
    assert summary["complaint"].startswith("CP")
    unpaid = demo.TIER2_PIECES[0] - demo.PARTIAL_PAYMENT
    recourse = summary["recourse"]
    assert recourse["claim"] == unpaid and recourse["repaid"] + recourse["written_off"] == unpaid
    assert recourse["holder"] == "tier3" and 0 < recourse["repaid"] < unpaid
    # What every party is owed, each read by the org itself: tier3 holds the defaulted piece; the bank's claim
    # is closed, so nobody owes the bank and the bank is owed nothing.
    owed = summary["owed"]
    assert owed["tier3"] == {"principal": unpaid, "penalty": 0, "recourse": 0, "owes_banks": 0}
    assert owed["boc"] == {"principal": 0, "penalty": 0, "recourse": 0, "owes_banks": 0}
    for org in ("boc", "geely", "tier1", "tier2", "tier3"):
        assert node.readers_of(f"/v1/orgs/{org}/owed") == {org}

    # Every read was signed for the org whose business it is; the tx submissions carry no header at all.
    for org in ("boc", "geely", "tier1", "tier2", "tier3"):
        assert node.readers_of(f"/v1/orgs/{org}/certs") == {org}
    assert node.readers_of(f"/v1/certs/{summary['root_cert']}/lineage") == {"geely"}
    assert {org for method, _, org in node.requests if method == "POST"} == {None}

    lineage = node.get(f"/v1/certs/{summary['root_cert']}/lineage")[1]
    by_id = {c["id"]: c for c in lineage["certs"]}
    financed = by_id[before["boc"][0]]
    assert financed["status"] == "defaulted" and financed["holder"] == "tier3"  # back with its seller
    assert financed["finance"]["seller"] == "tier3" and financed["finance"]["discount"] > 0
    # Every hop after the first drew on a confirmed contract between holder and recipient.
    hops = [c for c in lineage["certs"] if c["trade_docs"]]
    assert {c["holder"] for c in hops} == {"tier2", "tier3"}
    assert all(d["doc_id"].startswith("CT-") for c in hops for d in c["trade_docs"])
    invariants.check_invariants(node.state)  # the whole story keeps every ledger invariant
    assert by_id[before["tier1"][0]]["amount"] == demo.CERT_AMOUNT - demo.TO_TIER2

    # The invoice is on chain only sealed; tier1 can open its copy, and the hash binds it.
    inv = node.get(f"/v1/docs/INV-{summary['run_id']}")[1]
    assert set(inv["ciphertext"]) == {"tier1", "geely", "boc", "pbc"}  # and the regulator (CONTRACT §6)
    seed = bytes.fromhex((cluster_dir / "keys" / "tier1.key").read_text().strip())
    assert b"brake assemblies" in open_document_with_seed(base64.b64decode(inv["ciphertext"]["tier1"]), seed,
                                                          inv["doc_hash"])

    # The bank reads its sealed copy with the CLI; geely's is there too, tier2 has none.
    out_file = cluster_dir / "invoice.out"
    base = ["--config", cfg, "--node", url, "trade", "open", f"INV-{summary['run_id']}"]
    assert cli.main([*base, "--as", "boc", "-o", str(out_file)]) == 0
    assert b"brake assemblies" in out_file.read_bytes()
    assert cli.main([*base, "--as", "tier2", "-o", str(out_file)]) == cli.EXIT_USAGE

    # A second run uses fresh doc ids and nonces and tells the story again.
    assert demo.main(["--config", cfg, "--node", url, "--maturity-seconds", "1.5"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["demo"] == "ok" and again["root_cert"] != summary["root_cert"]


def test_cli_submits_and_queries_over_http(cluster_dir: Path, fake_node: tuple[FakeNode, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, url = fake_node
    base = ["--config", str(cluster_dir / "cluster.toml"), "--node", url]
    code, out = ecert(capsys, *base, "credit", "grant", "--as", "boc", "--core", "geely", "--limit", "1000000",
                      "--expires-at", "+1d")
    assert code == 0 and "committed" in out
    # A rejected tx exits 1 and names the rule.
    code, out = ecert(capsys, *base, "--json", "credit", "grant", "--as", "tier1", "--core", "geely", "--limit",
                      "1", "--expires-at", "+1d")
    assert code == cli.EXIT_REJECTED
    assert json.loads(out)["error"]["code"] == "role_not_allowed"

    code, out = ecert(capsys, *base, "--json", "org", "show", "geely")
    assert code == 0 and json.loads(out)["role"] == "core"
    code, out = ecert(capsys, *base, "holdings", "tier1")
    assert code == 0 and "holdings of tier1" in out
    code, out = ecert(capsys, *base, "cert", "show", "EC-nope")
    assert code == cli.EXIT_REJECTED
    code, out = ecert(capsys, *base, "--json", "watch", "--from", "1", "--count", "2")
    assert code == 0 and [json.loads(line)["height"] for line in out.splitlines()] == [1, 2]


def test_cli_reads_are_signed_and_a_refusal_shows_what_the_node_checked(
        cluster_dir: Path, fake_node: tuple[FakeNode, str], capsys: pytest.CaptureFixture[str]) -> None:
    node, url = fake_node
    base = ["--config", str(cluster_dir / "cluster.toml"), "--node", url]
    code, out = ecert(capsys, *base, "--as", "tier1", "--json", "holdings", "tier1")
    assert code == 0 and json.loads(out)["org_id"] == "tier1"
    assert node.requests[-1] == ("GET", "/v1/orgs/tier1/certs", "tier1")
    # The fake node is no [[nodes]] entry: the id its signature binds came from its public /v1/status.
    assert [r for r in node.requests if r[1] == "/v1/status"] == [("GET", "/v1/status", None)]
    # Several keys in keys/ and a node the cluster file does not list: nothing says who, so anonymous.
    assert ecert(capsys, *base, "--json", "org", "show", "geely")[0] == 0
    assert node.requests[-1] == ("GET", "/v1/orgs/geely", None)
    # A tx command reads as its signer (the outcome poll, the recipients' keys for sealing).
    doc = cluster_dir / "po.txt"
    doc.write_text("purchase order")
    code, _ = ecert(capsys, *base, "trade", "anchor", "--as", "tier2", "--doc-id", "PO-1", "--kind", "contract",
                    "--counterparty", "geely", "--amount", "100", "--file", str(doc), "--seal", "boc")
    assert code == 0 and node.readers_of("/v1/orgs/") >= {"tier2"}
    assert {org for m, p, org in node.requests if m == "GET" and p in ("/v1/orgs/boc", "/v1/orgs/tier2")} == {"tier2"}

    code, out = ecert(capsys, *base, "--as", "tier2", "session")
    assert code == 0 and out.strip().startswith("ecs1~fake~tier2~")
    assert node.requests[-1] == ("POST", "/v1/session", "tier2")

    # tier3's key file no longer holds the key the chain knows: 401, and what the node verified against.
    (cluster_dir / "keys" / "tier3.key").write_text("cd" * 32 + "\n")
    assert cli.main([*base, "--as", "tier3", "org", "show", "tier3"]) == cli.EXIT_REJECTED
    short = capsys.readouterr().err
    assert "401" in short and "unauthenticated" in short and "signed as tier3" in short
    assert "ecert-request/1" not in short and "--verbose" in short
    assert cli.main([*base, "--as", "tier3", "--verbose", "org", "show", "tier3"]) == cli.EXIT_REJECTED
    assert "ecert-request/1\necert-local\nfake\ntier3\nGET\n/v1/orgs/tier3\n" in capsys.readouterr().err
    code, out = ecert(capsys, *base, "--as", "tier3", "--json", "org", "show", "tier3")
    assert code == cli.EXIT_REJECTED
    assert json.loads(out)["error"]["string_to_sign"].startswith("ecert-request/1\necert-local\nfake\ntier3\n")


def test_who_a_command_speaks_for(cluster_dir: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cluster_dir / "cluster.toml"
    assert cli.main(["--config", str(cfg), "init"]) == 0
    cluster = load_config(cfg)
    assert cli.org_keys_in(cluster) == ["boc", "geely", "pbc", "tier1", "tier2", "tier3"]  # not node-*.key

    def speaks(node: str | None = None, as_org: str | None = None, tx: bool = False) -> str | None:
        return cli.who_speaks(cluster, as_org, node, tx).org

    # Several org keys (the local demo holds them all): a read speaks for the org running the node addressed.
    assert speaks() == "boc"  # no --node: the first [[nodes]] entry, the node the CLI tries first
    assert speaks("127.0.0.1:8702") == speaks("http://127.0.0.1:8702/") == "geely"
    assert speaks("http://127.0.0.1:8706") == "pbc"
    assert speaks("http://10.9.9.9:8701") is None  # not a node of the cluster file: anonymous
    assert speaks("127.0.0.1:8702", as_org="tier3") == speaks(as_org="tier3", tx=True) == "tier3"
    with pytest.raises(cli.CliError, match="--as ORG"):
        speaks("127.0.0.1:8702", tx=True)  # a transaction never guesses its signer among several keys
    assert cli.main(["--config", str(cfg), "cert", "accept", "EC01", "--dry-run"]) == cli.EXIT_USAGE
    capsys.readouterr()

    # $ECERT_ORG is --as.
    monkeypatch.setenv("ECERT_ORG", "tier1")
    assert cli.main(["--config", str(cfg), "--node", "127.0.0.1:8701", "sign-request", "GET", "/v1/orgs/x"]) == 0
    assert parse_authorization(capsys.readouterr().out.strip().removeprefix("Authorization: ")).org_id == "tier1"
    monkeypatch.delenv("ECERT_ORG")

    # A member's own machine holds its own key only: that org, for reads and transactions alike.
    for key in (cluster_dir / "keys").glob("*.key"):
        if key.name != "tier2.key" and not key.name.startswith("node-"):
            key.unlink()
    assert speaks() == speaks("127.0.0.1:8701") == speaks(tx=True) == "tier2"
    env = dry_run(capsys, str(cfg), "cert", "accept", "EC01")
    assert env["signer"] == "tier2"
    (cluster_dir / "keys" / "tier2.key").unlink()
    assert speaks() is None  # no key at all: reads go anonymous
    with pytest.raises(cli.CliError, match="no org key"):
        speaks(tx=True)


def test_sign_request_prints_a_header_the_node_accepts(cluster_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    assert cli.main(["--config", cfg, "init"]) == 0
    capsys.readouterr()
    seed = bytes.fromhex((cluster_dir / "keys" / "tier1.key").read_text().strip())
    tier1_pk = SigningKey(seed).verify_key.encode().hex()

    def verifier(node_id: str) -> RequestVerifier:
        return RequestVerifier("ecert-local", node_id, 0, lambda org: ("active", tier1_pk) if org == "tier1" else None)

    path = "/v1/certs/EC1?consistency=linearizable"
    assert cli.main(["--config", cfg, "--node", "127.0.0.1:8702", "--as", "tier1", "sign-request", "get", path]) == 0
    printed = capsys.readouterr()
    name, _, value = printed.out.strip().partition(": ")
    assert name == "Authorization"
    now = time.time_ns() // 1_000_000
    geely = verifier("geely")  # the node at 127.0.0.1:8702 in the cluster file: no network needed
    assert geely.verify("GET", path, b"", value, now).org_id == "tier1"
    with pytest.raises(AuthError, match="nonce already used"):
        geely.verify("GET", path, b"", value, now)  # single use
    with pytest.raises(AuthError, match="does not verify") as other_node:
        verifier("boc").verify("GET", path, b"", value, now)
    assert other_node.value.extra["string_to_sign"].split("\n")[2] == "boc"
    with pytest.raises(AuthError, match="does not verify"):
        verifier("geely").verify("GET", "/v1/certs/EC2?consistency=linearizable", b"", value, now)
    curl = shlex.split(printed.err.strip().splitlines()[-1])
    assert curl == ["curl", "-s", "-H", f"Authorization: {value}", f"http://127.0.0.1:8702{path}"]

    body = cluster_dir / "body.json"
    body.write_bytes(b'{"x": 1}')
    code, out = ecert(capsys, "--config", cfg, "--node", "http://127.0.0.1:8702", "--as", "tier1", "--json",
                      "sign-request", "POST", "/v1/session", str(body))
    assert code == 0
    doc = json.loads(out)
    assert doc["org"] == "tier1" and doc["node_id"] == "geely" and doc["url"] == "http://127.0.0.1:8702/v1/session"
    assert verifier("geely").verify("POST", "/v1/session", b'{"x": 1}', doc["authorization"], now).org_id == "tier1"
    with pytest.raises(AuthError):
        verifier("geely").verify("POST", "/v1/session", b'{"x": 2}', doc["authorization"], now)
    assert shlex.split(doc["curl"])[-7:] == ["-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                                              f"@{body}", "http://127.0.0.1:8702/v1/session"]
    assert cli.main(["--config", cfg, "--as", "tier1", "sign-request", "GET", "v1/status"]) == cli.EXIT_USAGE


def test_rotate_key_replaces_the_key_file_once_the_chain_holds_the_new_key(
        cluster_dir: Path, fake_node: tuple[FakeNode, str], capsys: pytest.CaptureFixture[str]) -> None:
    node, url = fake_node
    keys = cluster_dir / "keys"
    base = ["--config", str(cluster_dir / "cluster.toml"), "--node", url]
    old = (keys / "tier1.key").read_text()
    code, out = ecert(capsys, *base, "--json", "org", "rotate-key", "tier1")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["status"] == "committed" and doc["rotation"] == "committed"
    new = (keys / "tier1.key").read_text()
    assert new != old and re.fullmatch(r"[0-9a-f]{64}\n", new)
    assert stat.S_IMODE((keys / "tier1.key").stat().st_mode) == 0o600
    kept = keys / f"tier1.key.old-{doc['height']}"
    assert doc["old_key"] == str(kept) and kept.read_text() == old and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not (keys / "tier1.key.next").exists()
    new_pk = SigningKey(bytes.fromhex(new.strip())).verify_key.encode().hex()
    org = ecert_state.get_org(node.state, "tier1")
    assert org is not None and org.sign_pk == doc["sign_pk"] == new_pk

    # The new key reads; the old one is refused, for requests and for txs.
    assert ecert(capsys, *base, "--as", "tier1", "--json", "org", "show", "tier1")[0] == 0
    assert node.requests[-1] == ("GET", "/v1/orgs/tier1", "tier1")
    old_signer = api.Signer("tier1", KeyPair(bytes.fromhex(old.strip())), "ecert-local")
    with pytest.raises(api.ApiError) as refused:
        api.Client([url], signer=old_signer).get("/v1/orgs/tier1")
    assert refused.value.status == 401 and refused.value.code == "unauthenticated"
    assert api.Client([url]).submit(old_signer.sign("trade.confirm", {"doc_id": "X"}))["status"] == "rejected"

    # A rotation whose outcome the CLI never saw (here: signed with --dry-run, sent by hand) is finished by
    # running the command again: the chain already holds the key waiting in keys/tier2.key.next.
    before = (keys / "tier2.key").read_text()
    code, out = ecert(capsys, *base, "org", "rotate-key", "tier2", "--dry-run")
    assert code == 0 and (keys / "tier2.key").read_text() == before
    waiting = (keys / "tier2.key.next").read_text()
    assert stat.S_IMODE((keys / "tier2.key.next").stat().st_mode) == 0o600
    tx = decode_tx(envelope_from_json(json.loads(out)), "ecert-local")
    assert tx.type == "org.rotate_key" and verify_key_proof(tx.body.sign_pk, tx.nonce, tx.body.proof)
    assert api.Client([url]).submit(envelope_from_json(json.loads(out)))["status"] == "committed"
    code, out = ecert(capsys, *base, "--json", "org", "rotate-key", "tier2")
    assert code == 0 and json.loads(out)["rotation"] == "finished"
    assert (keys / "tier2.key").read_text() == waiting and not (keys / "tier2.key.next").exists()
    assert (keys / f"tier2.key.old-{node.height}").read_text() == before
    assert cli.main([*base, "org", "rotate-key", "tier2", "--as", "boc"]) == cli.EXIT_USAGE  # its own key only


def test_unreachable_node_is_a_usage_error(cluster_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = ecert(capsys, "--config", str(cluster_dir / "cluster.toml"), "--node", "http://127.0.0.1:9",
                    "--timeout", "1", "org", "show", "boc")
    assert code == cli.EXIT_USAGE


async def test_sync_and_async_clients_send_alike_and_read_alike(cluster_dir: Path,
                                                               fake_node: tuple[FakeNode, str]) -> None:
    _, url = fake_node
    signer = api.load_signer(load_config(cluster_dir / "cluster.toml"), "boc", nonces=api.CounterNonces("run7"))
    tx_id, envelope = signer.signed("credit.grant", {"core": "geely", "limit": 1_000,
                                                     "expires_at": time.time_ns() // 1_000_000 + 86_400_000})
    assert decode_tx(envelope, None).nonce == "run7-1"
    assert decode_tx(signer.sign("trade.confirm", {"doc_id": "D1"}), None).nonce == "run7-2"

    http = api.AsyncClient()
    async with aiohttp.ClientSession() as session:
        status, first = await http.post_tx(session, url, api.tx_json(envelope), api.JSON)
        missing = await http.request(session, url, "GET", "/v1/certs/EC-nope")
    assert status == 200 and first["tx_id"] == tx_id and first["status"] == "committed"

    client = api.Client([url])
    assert client.submit(envelope) == first  # a resubmission answers with the first outcome
    with pytest.raises(api.ApiError) as refused:
        client.get("/v1/certs/EC-nope")
    assert missing[0] == refused.value.status == 404
    assert api.error_code(missing[1]) == refused.value.code == "not_found"


async def test_both_clients_sign_for_the_node_addressed(cluster_dir: Path, fake_node: tuple[FakeNode, str]) -> None:
    node, url = fake_node
    signer = api.load_signer(load_config(cluster_dir / "cluster.toml"), "tier1")
    http = api.AsyncClient(signer)
    async with aiohttp.ClientSession() as session:
        status, _ = await http.request(session, url, "GET", "/v1/orgs/tier1/certs")
        posted, _ = await http.post_tx(session, url, api.tx_json(signer.sign("trade.confirm", {"doc_id": "D"})),
                                       api.JSON)
    assert status == 200 and posted == 200 and http.node_ids == {url: "fake"}  # learned from /v1/status
    assert node.requests[-3:] == [("GET", "/v1/status", None), ("GET", "/v1/orgs/tier1/certs", "tier1"),
                                  ("POST", "/v1/tx?wait=commit", None)]  # an envelope is its own signature

    sync = api.Client([url], signer=signer)
    assert sync.get("/v1/orgs/tier1/certs")["org_id"] == "tier1"
    assert node.requests[-1] == ("GET", "/v1/orgs/tier1/certs", "tier1")
    assert sync.speaking_for(None).get("/v1/orgs/tier1")["id"] == "tier1"
    assert node.requests[-1] == ("GET", "/v1/orgs/tier1", None)
    # The signature binds the node: signed for another node id, this node refuses it and says what it checked.
    with pytest.raises(api.ApiError) as refused:
        api.Client([url], signer=signer, node_ids={url: "boc"}).get("/v1/orgs/tier1")
    assert refused.value.status == 401
    assert refused.value.doc["error"]["string_to_sign"].split("\n")[2] == "fake"
