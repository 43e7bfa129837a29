"""A small, correct chaos-run record built by hand: a history and three nodes' answers that agree.

The checker must find nothing wrong with it; tests then doctor a copy to plant one fault each.
"""

from __future__ import annotations

import copy
import hashlib
import math

from node.chaos.history import (
    COMMITTED,
    REJECTED,
    UNKNOWN,
    FaultEvent,
    History,
    NodeDump,
    ReadRecord,
    StatusSample,
    SubmitRecord,
)

NODES = ["boc", "geely", "tier1"]


def h(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def build() -> tuple[History, list[NodeDump]]:
    hist = History(seed=7, nodes=list(NODES), duration=20.0)
    t_issue, t_accept, t_xfer, t_freq, t_fapp, t_split, t_lost_unknown, t_rej = (
        h(x) for x in ("issue", "accept", "xfer", "freq", "fapp", "split", "unk-absent", "rej"))
    c1, c2, c3, c4, c5 = "c1", "c2", "c3", "c4", "c5"
    txs = [
        SubmitRecord(t_issue, "ecert.issue", "geely-0", "geely",
                 {"to": "tier1", "amount": 1000, "maturity": 10**13, "bank": "boc", "invoice_ids": ["inv1"]},
                 invoke=1.0, complete=1.2, outcome=COMMITTED, height=1, result={"certs": [c1]}),
        SubmitRecord(t_accept, "ecert.accept", "tier1-0", "tier1", {"cert_id": c1},
                 invoke=2.0, complete=2.1, outcome=COMMITTED, height=2, result={}),
        SubmitRecord(t_xfer, "ecert.transfer", "tier1-0", "tier1",
                 {"cert_id": c1, "to": [{"org": "geely", "amount": 600}]},
                 invoke=3.0, complete=3.3, outcome=COMMITTED, height=3, result={"certs": [c2, c3]}),
        SubmitRecord(t_freq, "finance.request", "geely-0", "geely", {"cert_id": c2, "bank": "boc"},
                 invoke=4.0, complete=4.2, outcome=COMMITTED, height=4, result={}),
        SubmitRecord(t_fapp, "finance.approve", "boc-0", "boc", {"cert_id": c2, "discount_bps": 100},
                 invoke=5.0, complete=5.2, outcome=COMMITTED, height=5, result={"disbursed": 594}),
        # Unknown to the client (timed out) but committed: allowed.
        SubmitRecord(t_split, "ecert.split", "tier1-0", "tier1", {"cert_id": c3, "amounts": [100, 300]},
                 invoke=6.0, outcome=UNKNOWN, error="timeout", result=None),
        # Unknown and absent everywhere: allowed.
        SubmitRecord(t_lost_unknown, "ecert.accept", "tier1-0", "tier1", {"cert_id": "nope"},
                 invoke=7.0, outcome=UNKNOWN, error="unavailable"),
        SubmitRecord(t_rej, "ecert.transfer", "tier1-0", "tier1",
                 {"cert_id": c1, "to": [{"org": "geely", "amount": 1}]},
                 invoke=8.0, complete=8.1, outcome=REJECTED, height=7, error_code="cert_not_active"),
    ]
    hist.txs = txs
    hist.reads = [
        ReadRecord(c1, "geely", "r", 1.3, 1.4, True, ("tier1", "issued")),
        ReadRecord(c1, "boc", "r", 2.05, 2.08, True, ("tier1", "issued")),  # concurrent with the accept
        ReadRecord(c1, "tier1", "r", 2.5, 2.6, True, ("tier1", "active")),
        ReadRecord(c2, "boc", "r", 3.5, 3.6, True, ("geely", "active")),
        ReadRecord(c2, "boc", "r", 4.5, 4.6, True, ("geely", "financing")),
        ReadRecord(c3, "boc", "r", 6.5, 6.6, True, ("tier1", "active")),  # the split may not have happened yet
        ReadRecord(c3, "boc", "r", 9.0, 9.1, True, ("tier1", "split")),
        ReadRecord(c3, "geely", "r", 9.2, 12.0, False, error="timeout"),
    ]
    hist.faults = [FaultEvent("kill_leader", 2.0, 4.0, ["geely"]), FaultEvent("partition_halves", 6.0, 8.0,
                                                                              ["boc"])]
    hist.samples = [
        StatusSample(float(t), {n: {"role": "leader" if n == "geely" else "follower", "leader_id": "geely"}
                                for n in NODES})
        for t in range(0, 21)
    ]
    for t in (2, 3):  # no leader for two seconds
        hist.samples[t] = StatusSample(float(t), {n: {"role": "follower", "leader_id": None} for n in NODES})

    blocks = {}
    outcomes = {
        t_issue: (1, {"certs": [c1]}), t_accept: (2, {}), t_xfer: (3, {"certs": [c2, c3]}), t_freq: (4, {}),
        t_fapp: (5, {"disbursed": 594}), t_split: (6, {"certs": [c4, c5]}),
    }
    for tx_id, (height, _) in outcomes.items():
        blocks[height] = {"height": height, "hash": h(f"block{height}"), "prev_hash": h(f"block{height - 1}"),
                          "time": 1_000 + height, "tx_ids": [tx_id]}
    blocks[7] = {"height": 7, "hash": h("block7"), "prev_hash": h("block6"), "time": 1_007, "tx_ids": [t_rej]}
    tx_answers: dict[str, dict | None] = {
        tx: {"tx_id": tx, "status": COMMITTED, "height": height, "result": result}
        for tx, (height, result) in outcomes.items()
    }
    tx_answers[t_rej] = {"tx_id": t_rej, "status": REJECTED, "height": 7,
                         "error": {"code": "cert_not_active", "message": "..."}}
    tx_answers[t_lost_unknown] = None

    def cert(cid, parent, holder, amount, status):
        return {"id": cid, "root_id": c1, "parent_id": parent, "debtor": "geely", "holder": holder,
                "amount": amount, "maturity": 10**13, "status": status}

    certs = {
        c1: cert(c1, None, "tier1", 1000, "split"),
        c2: cert(c2, c1, "boc", 600, "financed"),
        c3: cert(c3, c1, "tier1", 400, "split"),
        c4: cert(c4, c3, "tier1", 100, "active"),
        c5: cert(c5, c3, "tier1", 300, "active"),
    }
    dump = NodeDump(
        node_id="",
        status={"height": 7, "block_hash": h("block7"), "state_root": h("root7"), "role": "follower"},
        blocks=blocks,
        txs=tx_answers,
        certs=certs,
        lineages={c1: {"root_id": c1, "certs": list(certs.values())}},
        credit={"boc/geely": {"bank": "boc", "core": "geely", "limit": 10**9, "used": 1000}},
    )
    dumps = []
    for n in NODES:
        d = copy.deepcopy(dump)
        d.node_id = n
        dumps.append(d)
    return hist, dumps


__all__ = ["NODES", "build", "math"]
