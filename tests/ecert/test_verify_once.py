"""A node verifies each signature once (admission, then apply reuses it) without trusting anything else:
a remembered verification only counts for the same payload, the same signature bytes and the signer's key now."""

from __future__ import annotations

import msgpack
import pytest

import ecert.executor as executor_module
from ecert.admission import precheck
from ecert.tx import decode_tx
from ledger.state_view import OverlayView

from .world import CHAIN, World


def _with_sig(raw: bytes, sig: bytes) -> bytes:
    env = msgpack.unpackb(raw, raw=False)
    env["sig"] = sig
    return msgpack.packb(env, use_bin_type=True)  # type: ignore[no-any-return]


def _count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = executor_module.verify_signature

    def counting(tx, pk):  # type: ignore[no-untyped-def]
        calls.append(tx.tx_id)
        real(tx, pk)

    monkeypatch.setattr(executor_module, "verify_signature", counting)
    return calls


@pytest.mark.pure_only
def test_apply_after_admission_verifies_once(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    calls = _count_verifies(monkeypatch)
    raw = w.raw("geely", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                          "counterparty": "tier1", "amount": 1000})
    tx_id = precheck(w.view, raw, CHAIN)
    assert w.apply(raw).status == "committed"
    assert calls == [tx_id]


@pytest.mark.pure_only
def test_other_signature_over_same_payload_is_verified_again(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    calls = _count_verifies(monkeypatch)
    raw = w.raw("geely", "trade.anchor", {"doc_id": "INV-2", "kind": "invoice", "doc_hash": "ab" * 32,
                                          "counterparty": "tier1", "amount": 1000})
    tx_id = precheck(w.view, raw, CHAIN)
    forged = _with_sig(raw, bytes(64))  # same payload (same tx id), garbage signature
    outcome = w.apply(forged)
    assert outcome.status == "rejected" and outcome.error_code == "bad_signature"
    assert calls == [tx_id, tx_id]
    # ... and the genuine one still applies, on the verification remembered at its admission.
    assert w.apply(raw).status == "committed"
    assert calls == [tx_id, tx_id]


@pytest.mark.pure_only
def test_apply_does_not_remember(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    calls = _count_verifies(monkeypatch)
    raw = w.raw("geely", "trade.anchor", {"doc_id": "INV-4", "kind": "invoice", "doc_hash": "ab" * 32,
                                          "counterparty": "tier1", "amount": 1000})
    tx_id = precheck(w.view, raw, CHAIN)
    precheck(w.view, raw, CHAIN)  # a resubmission before the block: still one verification
    assert w.apply(raw).status == "committed"
    assert tx_id not in executor_module._verified  # spent by the apply
    assert calls == [tx_id]



def test_rekeyed_signer_is_verified_under_the_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    raw = w.raw("geely", "trade.anchor", {"doc_id": "INV-3", "kind": "invoice", "doc_hash": "ab" * 32,
                                          "counterparty": "tier1", "amount": 1000})
    tx = decode_tx(raw, CHAIN)
    precheck(w.view, raw, CHAIN)
    # The signature was remembered under geely's key at admission; under any other key it must verify afresh.
    with pytest.raises(Exception) as exc:
        executor_module._verify_once(tx, w.key("tier3").sign_pk, False)
    assert getattr(exc.value, "code", None) == "bad_signature"


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "VERIFIED_CACHE_MAX", 3)
    monkeypatch.setattr(executor_module, "_verified", {})
    w = World()
    for i in range(10):
        raw = w.raw("geely", "trade.anchor", {"doc_id": f"INV-B{i}", "kind": "invoice", "doc_hash": "ab" * 32,
                                              "counterparty": "tier1", "amount": 1000})
        precheck(OverlayView(w.view), raw, CHAIN)
    assert len(executor_module._verified) == 3
