"""Fuzzing decode and execute: whatever the bytes, the answer is a TxRejected or a typed TxOutcome.

The executor runs over a fixed world that already holds live certificates, so mutated transactions reach deep
into the rules, not just the decoder. A rejected outcome must leave the state untouched (World.apply checks).
"""

from __future__ import annotations

import contextlib

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecert.errors import TxRejected
from ecert.keys import org_keys_from_seed
from ecert.tx import BODY_SCHEMAS, decode_tx, encode_envelope, key_proof, sign_payload
from ledger.executor import TxOutcome
from tests.ecert.world import CHAIN, DAY, World, genesis_node

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.floats()
          | st.text(max_size=70) | st.binary(max_size=70))
values = st.recursive(leaves, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids,
                                                                                          max_size=4), max_leaves=12)


def _world() -> tuple[World, dict[str, str]]:
    w = World(nodes=[*(genesis_node(f"n-{o}", o) for o in ("boc", "icbc", "geely")),
                     genesis_node("n-tier1", "tier1", voter=False)])
    root = w.funded(1000)
    kids = w.ok("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 300}]})["certs"]
    w.ok("tier2", "finance.request", {"cert_id": kids[0], "bank": "boc"})
    proposal = w.ok("boc", "member.propose", {"action": "promote", "node_id": "n-tier1"})["proposal_id"]
    # A dispute and a complaint between tier3 and byd, apart from the certificates the other kinds mutate.
    disputed = w.invoice(50, seller="tier3", buyer="byd")
    dispute = w.ok("tier3", "dispute.open", {"doc_id": disputed, "against": "byd", "reason": "r",
                                             "evidence_hash": "e1" * 32})["dispute_id"]
    complaint = w.ok("tier3", "complaint.file", {"against": "byd", "subject": "s",
                                                 "evidence_hash": "e1" * 32})["complaint_id"]
    return w, {"root": root, "financing": kids[0], "active": kids[1], "invoice": "INV-1", "proposal": proposal,
               "dispute": dispute, "complaint": complaint}


WORLD, IDS = _world()
NEW_KEY = org_keys_from_seed(b"\x42" * 32)


def valid_bodies(ids: dict[str, str], now: int) -> dict[str, tuple[str, dict[str, object]]]:
    """A plausible (signer, body) for every kind, to mutate."""
    return {
        "org.register": ("newco", {"org_id": "newco", "name": "N", "role": "supplier", "sign_pk": "ab" * 32,
                                   "box_pk": "cd" * 32}),
        "org.approve": ("boc", {"org_id": "tier1"}),
        "org.freeze": ("boc", {"org_id": "tier1", "reason": "x"}),
        "org.unfreeze": ("boc", {"org_id": "tier1"}),
        "credit.grant": ("boc", {"core": "geely", "limit": 5000, "expires_at": now + DAY}),
        "trade.anchor": ("tier1", {"doc_id": "Z1", "kind": "invoice", "doc_hash": "ab" * 32, "counterparty": "geely",
                                   "amount": 10}),
        "trade.confirm": ("geely", {"doc_id": ids["invoice"]}),
        "ecert.issue": ("geely", {"to": "tier1", "amount": 5, "maturity": now + DAY, "bank": "boc",
                                  "invoice_ids": [ids["invoice"]]}),
        "ecert.accept": ("tier1", {"cert_id": ids["active"]}),
        "ecert.reject": ("tier1", {"cert_id": ids["active"]}),
        "ecert.transfer": ("tier1", {"cert_id": ids["active"], "to": [{"org": "tier3", "amount": 5}]}),
        "ecert.split": ("tier1", {"cert_id": ids["active"], "amounts": [100, 600]}),
        "finance.request": ("tier1", {"cert_id": ids["active"], "bank": "icbc"}),
        "finance.approve": ("boc", {"cert_id": ids["financing"], "discount_bps": 300}),
        "finance.decline": ("boc", {"cert_id": ids["financing"], "reason": "no"}),
        "ecert.settle": ("geely", {"cert_id": ids["root"]}),
        "org.rotate_key": ("tier1", {"sign_pk": NEW_KEY.sign_pk, "box_pk": NEW_KEY.box_pk,
                                     "proof": key_proof(NEW_KEY.seed, 99)}),  # valid for test_flipped_bytes' nonce
        "member.propose": ("boc", {"action": "add_learner", "node_id": "n-new", "org": "tier2",
                                   "raft": "n-new.test:9701", "http": "[::1]:8701", "node_pk": "ef" * 32}),
        "member.approve": ("icbc", {"proposal_id": ids["proposal"]}),
        "dispute.open": ("tier1", {"cert_id": ids["active"], "against": "geely", "reason": "r",
                                   "evidence_hash": "e1" * 32}),
        "dispute.respond": ("byd", {"dispute_id": ids["dispute"], "statement": "s", "evidence_hash": "e2" * 32}),
        "dispute.resolve": ("boc", {"dispute_id": ids["dispute"], "outcome": "upheld", "reason": "x"}),
        "complaint.file": ("tier2", {"against": "geely", "subject": "s", "evidence_hash": "e1" * 32}),
        "complaint.respond": ("byd", {"complaint_id": ids["complaint"], "statement": "s",
                                      "evidence_hash": "e2" * 32}),
        "complaint.escalate": ("tier3", {"complaint_id": ids["complaint"]}),
        "complaint.close": ("tier3", {"complaint_id": ids["complaint"], "reason": "done"}),
        "ecert.pay": ("geely", {"cert_id": ids["active"], "amount": 5, "payment": ids["invoice"]}),
        "ecert.settle_root": ("geely", {"root_id": ids["root"]}),
        "ecert.default": ("tier1", {"cert_id": ids["active"]}),
        "ecert.revoke": ("geely", {"cert_id": ids["root"]}),
        "recourse.repay": ("tier2", {"cert_id": ids["financing"], "amount": 5}),
        "recourse.write_off": ("boc", {"cert_id": ids["financing"], "reason": "gone"}),
        "finance.limit": ("boc", {"org": "tier2", "limit": 500}),
    }


def execute(raw: bytes) -> TxOutcome:
    """Run on a throwaway copy of the world; World.apply asserts a rejection writes nothing."""
    w = World.__new__(World)
    w.__dict__.update(WORLD.__dict__)
    w.view = type(WORLD.view)(WORLD.view.items().items())
    outcome = w.apply(raw)
    assert isinstance(outcome, TxOutcome) and outcome.status in ("committed", "rejected")
    assert len(outcome.tx_id) == 64
    if outcome.status == "rejected":
        assert outcome.error_code and outcome.error_message is not None
    return outcome


def test_every_kind_has_a_fuzz_body() -> None:
    assert set(valid_bodies(IDS, 0)) == set(BODY_SCHEMAS)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(raw: bytes) -> None:
    with contextlib.suppress(TxRejected):
        decode_tx(raw, CHAIN)
    assert execute(raw).status == "rejected"


@FUZZ
@given(values)
def test_arbitrary_msgpack_payload(obj: object) -> None:
    try:
        payload = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return
    raw = encode_envelope(payload, "boc", b"\x00" * 64)
    assert execute(raw).status == "rejected"


@FUZZ
@given(kind=st.sampled_from(sorted(BODY_SCHEMAS)), data=st.data())
def test_mutated_bodies(kind: str, data: st.DataObject) -> None:
    signer, body = valid_bodies(IDS, WORLD.now)[kind]
    body = dict(body)
    action = data.draw(st.sampled_from(["replace", "drop", "add", "keep"]))
    if action == "replace":
        body[data.draw(st.sampled_from(sorted(body)))] = data.draw(values)
    elif action == "drop":
        body.pop(data.draw(st.sampled_from(sorted(body))))
    elif action == "add":
        body[data.draw(st.text(max_size=8))] = data.draw(values)
    payload = {"chain_id": CHAIN, "type": kind, "signer": signer, "nonce": data.draw(st.integers(0, 2**64 - 1)),
               "body": body}
    try:
        raw = sign_payload(WORLD.key(signer).seed, payload)
    except (OverflowError, ValueError, TypeError):
        return
    execute(raw)


@FUZZ
@given(kind=st.sampled_from(sorted(BODY_SCHEMAS)), flips=st.lists(st.tuples(st.integers(0, 10_000),
                                                                                st.integers(0, 255)), max_size=4))
def test_flipped_bytes(kind: str, flips: list[tuple[int, int]]) -> None:
    signer, body = valid_bodies(IDS, WORLD.now)[kind]
    raw = bytearray(sign_payload(WORLD.key(signer).seed, {"chain_id": CHAIN, "type": kind, "signer": signer,
                                                           "nonce": 99, "body": body}))
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    execute(bytes(raw))
