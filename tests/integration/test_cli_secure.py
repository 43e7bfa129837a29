"""`ecert` against a real multi-process cluster with signed requests (CONTRACT §6).

- `ecert sign-request` gives a header a real node accepts once (a replay is a 401); `ecert session` a token that
  reads (GET) and does nothing else; an anonymous read of a signed route is a 401.
- `ecert org rotate-key`: the tx commits, keys/<org>.key is replaced and the old key kept as .old-<height>
  (0600); from then on a tx signed with the old key is refused, one signed with the new key commits, and a request
  signed with the old key is a 401 on every node.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ecert.tx import make_tx
from node.client.api import ApiError, Client, Signer, node_ids_of
from node.keys import KeyPair

REPO = Path(__file__).resolve().parents[2]
ECERT = str(REPO / ".venv" / "bin" / "ecert")

pytestmark = pytest.mark.slow


def ecert(cluster: Any, *argv: str) -> tuple[int, Any, str]:
    """Run the CLI with --json: (exit code, its last stdout line as JSON, stderr)."""
    proc = subprocess.run([ECERT, "--config", str(cluster.config_path), "--json", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else None, proc.stderr


def get(url: str, headers: dict[str, str], method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def anchor(chain_id: str, seed: bytes, signer: str = "tier1") -> bytes:
    doc = f"inv-{signer}-{time.time_ns()}"
    return make_tx(seed, chain_id, "trade.anchor", signer, time.time_ns(),
                   {"doc_id": doc, "kind": "delivery", "doc_hash": hashlib.sha256(doc.encode()).hexdigest(),
                    "counterparty": "geely", "amount": 1000})


def test_sign_request_and_session_against_a_node(cluster_factory: Any) -> None:
    c = cluster_factory(3)
    url = c.nodes["geely"].http_url
    path = "/v1/orgs/tier1/certs"
    assert get(url + path, {})[0] == 401  # anonymous

    code, doc, err = ecert(c, "--node", url, "--as", "tier1", "sign-request", "GET", path)
    assert code == 0, err
    status, holdings = get(doc["url"], {"Authorization": doc["authorization"]})
    assert status == 200 and holdings["org_id"] == "tier1"
    status, replay = get(doc["url"], {"Authorization": doc["authorization"]})
    assert status == 401 and "nonce" in replay["error"]["message"]

    code, session, err = ecert(c, "--node", url, "--as", "tier1", "session")
    assert code == 0 and session["org"] == "tier1", err
    bearer = {"Authorization": f"Bearer {session['token']}"}
    assert get(url + path, bearer)[0] == 200
    assert get(url + path, bearer)[0] == 200  # a session reads as often as it likes
    assert get(c.nodes["boc"].http_url + path, bearer)[0] == 401  # bound to the node that issued it
    assert get(url + "/v1/session", bearer, method="POST")[0] == 401  # and it only reads


def test_rotate_key_on_a_running_cluster(cluster_factory: Any) -> None:
    c = cluster_factory(3)
    keys = c.config.keys_dir
    old_seed = c.org_seed("tier1")
    follower = next(n for n in ("boc", "geely", "tier1") if n != c.wait_leader())

    code, doc, err = ecert(c, "--node", c.nodes[follower].http_url, "org", "rotate-key", "tier1")
    assert code == 0, err
    assert doc["status"] == "committed" and doc["rotation"] == "committed"
    new_seed = c.org_seed("tier1")
    assert new_seed != old_seed
    kept = keys / f"tier1.key.old-{doc['height']}"
    assert bytes.fromhex(kept.read_text().strip()) == old_seed and stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((keys / "tier1.key").stat().st_mode) == 0o600 and not (keys / "tier1.key.next").exists()
    c.wait_converged(min_height=doc["height"])

    # Txs: the old key's is refused, the new key's commits.
    status, refused = c.submit("boc", anchor(c.config.chain_id, old_seed))
    assert refused.get("status") == "rejected" or status == 400, (status, refused)
    status, committed = c.submit("boc", anchor(c.config.chain_id, new_seed))
    assert status == 200 and committed["status"] == "committed", committed

    # Requests: the old key's is a 401 on every node, the new key reads (and the chain shows the new key).
    old = Signer("tier1", KeyPair(old_seed), c.config.chain_id)
    new = Signer("tier1", KeyPair(new_seed), c.config.chain_id)
    for node_id in ("boc", "geely", "tier1"):
        base = c.nodes[node_id].http_url
        with pytest.raises(ApiError) as refused_read:
            Client([base], signer=old, node_ids=node_ids_of(c.config)).get("/v1/orgs/tier1")
        assert refused_read.value.status == 401 and refused_read.value.code == "unauthenticated"
        profile = Client([base], signer=new, node_ids=node_ids_of(c.config)).get("/v1/orgs/tier1")
        assert profile["sign_pk"] == doc["sign_pk"] == new.key.sign_pk_hex
    code, shown, err = ecert(c, "--as", "tier1", "org", "show", "tier1")
    assert code == 0 and shown["sign_pk"] == new.key.sign_pk_hex, err


def test_supervision_is_for_the_regulator(cluster_factory: Any) -> None:
    c = cluster_factory(3, regulator=True)
    url = c.nodes["boc"].http_url
    code, doc, err = ecert(c, "--node", url, "--as", "pbc", "supervision")
    assert code == 0, err
    assert {"outstanding_by_core", "certs_by_depth", "financed_by_bank", "live_certs"} <= set(doc)
    code, doc, err = ecert(c, "--node", url, "--as", "tier1", "supervision")
    assert code == 1 and doc["error"]["code"] == "forbidden", (doc, err)
    assert get(url + "/v1/supervision", {})[0] == 401
