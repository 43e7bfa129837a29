"""The fault layer inside real node processes: a partition posted to /admin/faults really isolates the leader,
healing lets it rejoin and catch up, and a node started without --fault-injection has no admin route."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from ecert.tx import envelope_to_json, make_tx
from node.chaos.cluster import ChaosCluster
from tests.polling import wait_for


def http(method: str, url: str, doc: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, TimeoutError):
        return 0, None


def statuses(c: ChaosCluster) -> dict[str, dict | None]:
    out = {}
    for n in c.ids:
        code, body = http("GET", c.url(n) + "/v1/status", timeout=1.0)
        out[n] = body if code == 200 else None
    return out


def leader_among(c: ChaosCluster, ids: list[str]) -> str | None:
    sts = statuses(c)
    leaders = [n for n in ids if sts[n] and sts[n]["role"] == "leader"]
    if len(leaders) == 1 and all(sts[n] and sts[n]["leader_id"] == leaders[0] for n in ids):
        return leaders[0]
    return None


def anchor(c: ChaosCluster, node: str, n: int) -> tuple[int, Any]:
    raw = make_tx(c.org_seed("tier1"), c.chain_id, "trade.anchor", "tier1", f"faults-{n}-{time.time_ns()}",
                  {"doc_id": f"doc-{n}", "kind": "delivery", "doc_hash": "ab" * 32, "counterparty": "geely",
                   "amount": 100})
    return http("POST", c.url(node) + "/v1/tx?wait=commit&timeout_ms=2000", envelope_to_json(raw), timeout=4.0)


@pytest.mark.slow
def test_partition_isolates_the_leader_and_heal_rejoins_it(tmp_path) -> None:
    c = ChaosCluster(tmp_path / "cluster", 3)
    try:
        c.write_files()
        plain = "tier1"  # started without --fault-injection: no admin route, but its links can still be cut
        for n in c.ids:
            c.start(n, fault_injection=n != plain)
        old = wait_for(lambda: leader_among(c, c.ids), 40, "a first leader")
        assert anchor(c, old, 1)[1]["status"] == "committed"

        assert http("POST", c.url(plain) + "/admin/faults", {"heal": True})[0] in (404, 405)
        rest = [n for n in c.ids if n != old]
        rule = {"partition": [[old], rest]}
        for n in c.ids:
            if n != plain:
                code, body = http("POST", c.url(n) + "/admin/faults", rule)
                assert code == 200 and body["partition"] == [[old], sorted(rest)]

        new = wait_for(lambda: leader_among(c, rest), 15, "a new leader on the majority side")
        assert new != old
        code, body = anchor(c, rest[0], 2)
        assert code == 200 and body["status"] == "committed"
        # The isolated old leader cannot commit anything.
        code, body = anchor(c, old, 3)
        assert code != 200 or body.get("status") != "committed"

        for n in c.ids:
            if n != plain:
                assert http("POST", c.url(n) + "/admin/faults", {"heal": True})[0] == 200

        def caught_up() -> bool:
            sts = statuses(c)
            return all(sts.values()) and len({(s["height"], s["block_hash"]) for s in sts.values()}) == 1

        wait_for(caught_up, 20, "the old leader to rejoin and catch up")
    finally:
        c.close()
