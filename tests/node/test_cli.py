"""The `ecert` CLI and the demo, without the node process.

- `ecert init`: key files (64 hex + newline, 0600), genesis.json, never overwritten.
- Transactions built by the CLI follow CONTRACT §3, checked with plain msgpack + nacl (not our codec), and every
  kind's body passes the ecert decoder.
- The one client module (node/client/api.py): its sync and async transports send the same requests and read the
  same answers; a counter nonce source makes a signer's nonces predictable.
- The demo and the CLI queries run over real HTTP against `FakeNode`: a one-thread stand-in for the node that
  applies each tx as its own block with the real EcertExecutor and answers with ecert.queries. It stands in for
  consensus only; signatures, rules and the HTTP client are the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
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

from ecert import queries
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_from_json, genesis_writes
from ecert.privacy import open_document_with_seed
from ecert.tx import decode_tx, envelope_from_json
from ledger.executor import BlockContext
from ledger.state_view import MemoryStateView, OverlayView
from node.client import api, cli, demo
from node.config import load_config

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
    assert len(first["keys_created"]) == 10  # 5 org keys + 5 node keys
    keys = {p.name: p.read_text() for p in (cluster_dir / "keys").iterdir()}
    assert set(keys) == {f"{o}.key" for o in ("boc", "geely", "tier1", "tier2", "tier3")} | {
        f"node-{o}.key" for o in ("boc", "geely", "tier1", "tier2", "tier3")}
    for name, text in keys.items():
        assert re.fullmatch(r"[0-9a-f]{64}\n", text), name
        assert stat.S_IMODE((cluster_dir / "keys" / name).stat().st_mode) == 0o600
    genesis_text = (cluster_dir / "genesis.json").read_text()
    genesis = genesis_from_json(json.loads(genesis_text))
    assert genesis.chain_id == "ecert-local"
    roles = {o.id: o.role for o in genesis.orgs}
    assert roles == {"boc": "bank", "geely": "core", "tier1": "supplier", "tier2": "supplier", "tier3": "supplier"}
    for org in genesis.orgs:
        seed = bytes.fromhex(keys[f"{org.id}.key"].strip())
        assert org.sign_pk == SigningKey(seed).verify_key.encode().hex()

    # Second run: nothing created, nothing rewritten.
    code, out = ecert(capsys, "--config", cfg, "--json", "init")
    assert code == 0
    second = json.loads(out)
    assert second["keys_created"] == [] and second["genesis_created"] is False
    assert {p.name: p.read_text() for p in (cluster_dir / "keys").iterdir()} == keys
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
        "org.approve": ["org", "approve", "tier4", "--as", "boc"],
        "org.freeze": ["org", "freeze", "tier4", "--as", "boc", "--reason", "audit"],
        "org.unfreeze": ["org", "unfreeze", "tier4", "--as", "boc"],
        "credit.grant": ["credit", "grant", "--as", "boc", "--core", "geely", "--limit", "¥50m",
                         "--expires-at", "+365d"],
        "trade.anchor": ["trade", "anchor", "--as", "tier1", "--doc-id", "INV-1", "--kind", "invoice",
                         "--counterparty", "geely", "--amount", "500000000", "--file", str(doc)],
        "trade.confirm": ["trade", "confirm", "INV-1", "--as", "geely"],
        "ecert.issue": ["cert", "issue", "--as", "geely", "--to", "tier1", "--amount", "1000", "--maturity",
                        "2030-01-01", "--bank", "boc", "--invoice", "INV-1"],
        "ecert.accept": ["cert", "accept", "EC01", "--as", "tier1"],
        "ecert.reject": ["cert", "reject", "EC01", "--as", "tier1"],
        "ecert.transfer": ["cert", "transfer", "EC01", "--as", "tier1", "--to", "tier2:100", "--to", "tier3:1.50yuan"],
        "ecert.split": ["cert", "split", "EC01", "--as", "tier1", "--amounts", "600", "400"],
        "ecert.settle": ["cert", "settle", "EC01", "--as", "geely"],
        "finance.request": ["finance", "request", "EC01", "--as", "tier3", "--bank", "boc"],
        "finance.approve": ["finance", "approve", "EC01", "--as", "boc", "--discount-bps", "450"],
        "finance.decline": ["finance", "decline", "EC01", "--as", "boc", "--reason", "no"],
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
    assert anchor.body.doc_hash == hashlib.sha256(b"invoice 42").hexdigest()
    assert (cluster_dir / "keys" / "tier4.key").exists()  # org register creates the new org's key


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
            self._answer(*node.get(self.path))

        def do_POST(self) -> None:
            assert self.headers["Content-Type"] == "application/json"
            self._answer(*node.submit(self.rfile.read(int(self.headers["Content-Length"]))))

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
    assert summary["committed"] == summary["txs"] == 17
    before = summary["holdings_before_maturity"]
    assert len(before["tier1"]) == len(before["tier2"]) == len(before["boc"]) == 1
    assert before["tier3"] == [] and before["geely"] == []  # tier3 sold its piece to the bank
    assert len(summary["settled"]) == 3

    lineage = node.get(f"/v1/certs/{summary['root_cert']}/lineage")[1]
    by_id = {c["id"]: c for c in lineage["certs"]}
    financed = by_id[before["boc"][0]]
    assert financed["status"] == "settled" and financed["paid_to"] == "boc"
    assert financed["finance"]["seller"] == "tier3" and financed["finance"]["discount"] > 0
    assert by_id[before["tier1"][0]]["amount"] == demo.CERT_AMOUNT - demo.TO_TIER2

    # The invoice is on chain only sealed; tier1 can open its copy, and the hash binds it.
    inv = node.get(f"/v1/docs/INV-{summary['run_id']}")[1]
    assert set(inv["ciphertext"]) == {"tier1", "geely", "boc"}
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
