"""Chain parameters in the genesis a new chain gets (node/genesis_file.py), and the old documents that name none.

- A genesis document written before `params` existed keeps its hash: the two golden hashes below were computed
  with ecert/genesis.py as committed before issue 14 (`git show 1c856b8:ecert/genesis.py`), for a v1 document
  (no nodes) and a v2 one (with nodes). It also writes no parameter record: its chain runs with every default,
  the trade-background and KYC rules off.
- `ecert init` (and so every local cluster) names every parameter, those three rules on, the local demo's 5 s
  grace period; the ceremony's `genesis_doc` the same with the 10-day grace. A second `init` keeps an existing
  genesis.json whatever it names.
- On such a chain the rules hold for real signed txs: an invoice without its contract, an approval without KYC
  evidence, a transfer without trade documents are refused with their codes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ecert import state as ecert_state
from ecert.executor import EcertExecutor
from ecert.genesis import chain_params_of, genesis_from_json, genesis_hash, genesis_to_json, genesis_writes
from ledger.executor import BlockContext
from ledger.state_view import MemoryStateView, OverlayView
from node import genesis_file
from node.client import cli
from node.client.api import CounterNonces, Signer
from node.config import load_config
from node.keys import KeyPair, load_org_key

REPO = Path(__file__).resolve().parents[2]

ORGS = [{"id": "boc", "name": "Bank of China", "role": "bank", "sign_pk": "11" * 32, "box_pk": "12" * 32},
        {"id": "geely", "name": "Geely", "role": "core", "sign_pk": "21" * 32, "box_pk": "22" * 32},
        {"id": "tier1", "name": "Tier-1", "role": "supplier", "sign_pk": "31" * 32, "box_pk": "32" * 32}]
NODES = [{"id": "n1", "org": "boc", "raft": "127.0.0.1:9701", "http": "127.0.0.1:8701", "node_pk": "41" * 32,
          "voter": True},
         {"id": "n2", "org": "geely", "raft": "127.0.0.1:9702", "http": "127.0.0.1:8702", "node_pk": "42" * 32,
          "voter": True}]
V1 = {"chain_id": "ecert-old", "genesis_time": 1_700_000_000_000, "orgs": ORGS}
V2 = {**V1, "nodes": NODES}
GOLDEN = {"v1": "8f678de035e5875712473468a14ea4b1993b3e13506ba2174fc4de7c6e9ee504",
          "v2": "a7a908b92ea9bb4e26771b9a38cf00af5ec44145f8ddf639917ed75744eac2d3"}


@pytest.mark.parametrize("name, doc", [("v1", V1), ("v2", V2)])
def test_a_genesis_without_params_keeps_its_hash_and_every_default(name: str, doc: dict[str, object]) -> None:
    parsed = genesis_from_json(json.loads(json.dumps(doc)))
    assert genesis_hash(parsed).hex() == GOLDEN[name]
    assert genesis_to_json(parsed) == doc  # written back without a "params" key
    writes = dict(genesis_writes(parsed))
    assert ecert_state.CHAIN_PARAMS_KEY not in writes
    params = ecert_state.chain_params(MemoryStateView(list(writes.items())))
    assert params == ecert_state.DEFAULT_CHAIN_PARAMS
    assert not (params.transfer_requires_trade_docs or params.invoice_requires_contract
                or params.approve_requires_kyc)
    # and the settlement terms of issue 14 off: no term cap, acceptance window, grace period or penalty
    assert (params.max_term_days, params.acceptance_window_ms, params.grace_period_ms,
            params.penalty_bps_per_day) == (0, 0, 0, 0)
    # The same document naming the rules is another chain: another hash.
    named = genesis_from_json({**doc, "params": {"approve_requires_kyc": True}})
    assert genesis_hash(named).hex() != GOLDEN[name]


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Path:
    shutil.copy(REPO / "cluster.toml", tmp_path / "cluster.toml")
    return tmp_path


def test_new_chains_name_every_param_with_the_rules_on(cluster_dir: Path) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    assert cli.main(["--config", cfg, "init"]) == 0
    written = json.loads((cluster_dir / "genesis.json").read_text())
    assert set(written["params"]) == set(ecert_state.DEFAULT_CHAIN_PARAMS._fields)  # every one named
    params = chain_params_of(genesis_from_json(written))
    assert params.transfer_requires_trade_docs and params.invoice_requires_contract and params.approve_requires_kyc
    assert params.grace_period_ms == genesis_file.LOCAL_DEMO_GRACE_PERIOD_MS
    assert params.max_term_days == 365 and params.dispute_resolution_ms == 30 * 86_400_000

    # The ceremony's document (a real consortium): the same rules, the 10-day grace period.
    cluster = load_config(cfg)
    ceremony = chain_params_of(genesis_from_json(genesis_file.genesis_doc(cluster, 1_700_000_000_000)))
    assert ceremony == params._replace(grace_period_ms=ecert_state.NEW_CHAIN_PARAMS.grace_period_ms)
    # params={} writes a document as before params existed.
    assert "params" not in genesis_file.genesis_doc(cluster, 1_700_000_000_000, {})


def test_init_keeps_an_existing_genesis_without_params(cluster_dir: Path) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    assert cli.main(["--config", cfg, "init"]) == 0
    doc = json.loads((cluster_dir / "genesis.json").read_text())
    del doc["params"]
    old_text = json.dumps(doc, indent=2) + "\n"
    (cluster_dir / "genesis.json").write_text(old_text)
    old_hash = genesis_hash(genesis_from_json(doc))
    assert cli.main(["--config", cfg, "init"]) == 0
    assert (cluster_dir / "genesis.json").read_text() == old_text
    assert genesis_hash(genesis_from_json(json.loads(old_text))) == old_hash


def test_the_rules_hold_on_a_new_chain(cluster_dir: Path) -> None:
    cfg = str(cluster_dir / "cluster.toml")
    assert cli.main(["--config", cfg, "init"]) == 0
    genesis = genesis_from_json(json.loads((cluster_dir / "genesis.json").read_text()))
    view = MemoryStateView(genesis_writes(genesis))
    executor = EcertExecutor(genesis.chain_id)
    signers = {org: Signer(org, load_org_key(cluster_dir / "keys", org), genesis.chain_id, CounterNonces("t"))
               for org in ("boc", "geely", "tier1")}
    height = 0

    def run(org: str, kind: str, body: dict[str, object]) -> tuple[str, str | None]:
        nonlocal height
        height += 1
        overlay = OverlayView(view)
        _, raw = signers[org].signed(kind, body)
        outcome = executor.execute(overlay, raw, BlockContext(height, genesis.genesis_time + height, "t",
                                                              genesis.chain_id))
        if outcome.status == "committed":
            for key, value in overlay.changes().items():
                if value is None:
                    view.delete(key)
                else:
                    view.put(key, value)
        return outcome.status, outcome.error_code

    anchor = {"kind": "invoice", "doc_hash": "ab" * 32, "counterparty": "geely", "amount": 1000}
    assert run("tier1", "trade.anchor", {**anchor, "doc_id": "INV-1"}) == ("rejected", "contract_required")
    assert run("tier1", "trade.anchor", {**anchor, "doc_id": "PO-1", "kind": "contract", "amount": 5000}
               )[0] == "committed"
    assert run("geely", "trade.confirm", {"doc_id": "PO-1"})[0] == "committed"
    assert run("tier1", "trade.anchor", {**anchor, "doc_id": "INV-1", "contract_id": "PO-1"})[0] == "committed"
    assert run("geely", "trade.confirm", {"doc_id": "INV-1"})[0] == "committed"
    assert run("boc", "credit.grant", {"core": "geely", "limit": 10_000, "expires_at": genesis.genesis_time
                                       + 86_400_000})[0] == "committed"
    assert run("geely", "ecert.issue", {"to": "tier1", "amount": 1000, "maturity": genesis.genesis_time
                                        + 86_400_000, "bank": "boc", "invoice_ids": ["INV-1"]})[0] == "committed"
    cert_id = next(iter(ecert_state.holding_ids(view, "tier1")))
    assert run("tier1", "ecert.accept", {"cert_id": cert_id})[0] == "committed"
    move = {"cert_id": cert_id, "to": [{"org": "geely", "amount": 10}]}
    assert run("tier1", "ecert.transfer", move) == ("rejected", "trade_docs_required")
    assert run("tier1", "ecert.transfer", {**move, "trade_docs": ["PO-1"]})[0] == "committed"
    newcomer = KeyPair(bytes(range(32)))
    signers["tier9"] = Signer("tier9", newcomer, genesis.chain_id, CounterNonces("t"))
    assert run("tier9", "org.register", {"org_id": "tier9", "name": "Tier-9", "role": "supplier",
                                         "sign_pk": newcomer.sign_pk_hex, "box_pk": newcomer.box_pk_hex}
               )[0] == "committed"
    assert run("boc", "org.approve", {"org_id": "tier9"}) == ("rejected", "kyc_required")
    assert run("boc", "org.approve", {"org_id": "tier9", "kyc_hash": "cd" * 32})[0] == "committed"
