"""The strict codec: envelope and payload shape, types, limits, signatures, tx ids, JSON form."""

from __future__ import annotations

import base64
import hashlib

import msgpack
import pytest

from ecert import codes
from ecert.errors import TxRejected
from ecert.keys import org_keys_from_seed
from ecert.tx import (
    AMOUNT_MAX,
    TIME_MS_MAX,
    TX_BYTES_MAX,
    EcertIssue,
    decode_envelope,
    decode_tx,
    encode_envelope,
    encode_payload,
    envelope_from_json,
    envelope_to_json,
    make_tx,
    raw_tx_id,
    sign_payload,
    tx_id_of,
    verify_signature,
)

CHAIN = "c1"
KEYS = org_keys_from_seed(b"\x01" * 32)
ISSUE = {"to": "tier1", "amount": 100, "maturity": 2_000_000_000_000, "bank": "boc", "invoice_ids": ["INV-1"]}


def payload(body: object = None, **over: object) -> dict[str, object]:
    p: dict[str, object] = {"chain_id": CHAIN, "type": "ecert.issue", "signer": "geely", "nonce": 7,
                            "body": dict(ISSUE) if body is None else body}
    p.update(over)
    return p


def code_of(raw: bytes, chain_id: str | None = CHAIN) -> str:
    with pytest.raises(TxRejected) as info:
        decode_tx(raw, chain_id)
    return info.value.code


def signed(p: dict[str, object]) -> bytes:
    return sign_payload(KEYS.seed, p)


def body_code(**changes: object) -> str:
    body: dict[str, object] = dict(ISSUE)
    body.update(changes)
    return code_of(signed(payload(body)))


def test_roundtrip_and_tx_id() -> None:
    raw = make_tx(KEYS.seed, CHAIN, "ecert.issue", "geely", 7, ISSUE)
    tx = decode_tx(raw, CHAIN)
    assert tx.body == EcertIssue("tier1", 100, 2_000_000_000_000, "boc", ("INV-1",))
    assert tx.tx_id == hashlib.sha256(tx.payload).hexdigest() == tx_id_of(tx.payload) == raw_tx_id(raw)
    assert (tx.type, tx.signer, tx.nonce, tx.chain_id) == ("ecert.issue", "geely", 7, CHAIN)
    verify_signature(tx, KEYS.sign_pk)


def test_signature_is_over_payload_bytes_as_sent() -> None:
    raw = signed(payload())
    env = decode_envelope(raw)
    other = org_keys_from_seed(b"\x02" * 32)
    with pytest.raises(TxRejected) as info:
        verify_signature(decode_tx(raw, CHAIN), other.sign_pk)
    assert info.value.code == codes.BAD_SIGNATURE
    # Same map, different bytes (keys reordered): a different tx id, and the old signature does not verify.
    reordered = msgpack.packb(dict(reversed(list(msgpack.unpackb(env.payload).items()))), use_bin_type=True)
    tampered = decode_tx(encode_envelope(reordered, "geely", env.sig), CHAIN)
    assert tampered.tx_id != tx_id_of(env.payload)
    with pytest.raises(TxRejected):
        verify_signature(tampered, KEYS.sign_pk)


def test_raw_tx_id_of_garbage_is_sha256_of_raw() -> None:
    assert raw_tx_id(b"\xc1junk") == hashlib.sha256(b"\xc1junk").hexdigest()


def test_json_form_roundtrip() -> None:
    raw = signed(payload())
    js = envelope_to_json(raw)
    assert set(js) == {"payload", "signer", "sig"}
    assert envelope_from_json(js) == raw


@pytest.mark.parametrize("obj,code", [
    ([], codes.MALFORMED_ENVELOPE),
    ({"payload": "!!", "signer": "geely", "sig": "AA=="}, codes.BAD_FIELD),
    ({"payload": "AA==", "signer": "geely"}, codes.MISSING_FIELD),
    ({"payload": "AA==", "signer": "geely", "sig": "AA==", "x": 1}, codes.UNKNOWN_FIELD),
    ({"payload": 5, "signer": "geely", "sig": "AA=="}, codes.BAD_FIELD),
    ({"payload": "AA==", "signer": "geely", "sig": base64.b64encode(b"x" * 63).decode()}, codes.BAD_FIELD),
])
def test_json_form_rejects(obj: object, code: str) -> None:
    with pytest.raises(TxRejected) as info:
        envelope_from_json(obj)
    assert info.value.code == code


@pytest.mark.parametrize("raw,code", [
    (b"", codes.MALFORMED_ENVELOPE),
    (b"\xc1", codes.MALFORMED_ENVELOPE),
    (msgpack.packb([1, 2, 3]), codes.MALFORMED_ENVELOPE),
    (msgpack.packb({"payload": b"x", "signer": "a", "sig": b"s" * 64}) + b"\x00", codes.MALFORMED_ENVELOPE),
    (msgpack.packb({"payload": b"x", "signer": "a"}), codes.MISSING_FIELD),
    (msgpack.packb({"payload": b"x", "signer": "a", "sig": b"s" * 64, "v": 1}), codes.UNKNOWN_FIELD),
    (msgpack.packb({"payload": "x", "signer": "a", "sig": b"s" * 64}, use_bin_type=True), codes.BAD_FIELD),
    (msgpack.packb({"payload": b"x", "signer": "a", "sig": b"s" * 63}, use_bin_type=True), codes.BAD_FIELD),
    (msgpack.packb({"payload": b"x", "signer": "a/b", "sig": b"s" * 64}, use_bin_type=True), codes.BAD_FIELD),
    (msgpack.packb({1: b"x"}, use_bin_type=True), codes.MALFORMED_ENVELOPE),
    (b"\x00" * (TX_BYTES_MAX + 1), codes.TX_TOO_LARGE),
])
def test_envelope_rejects(raw: bytes, code: str) -> None:
    assert code_of(raw) == code


def test_duplicate_keys_are_malformed() -> None:
    pairs = [("chain_id", CHAIN), ("type", "ecert.issue"), ("signer", "geely"), ("nonce", 1), ("nonce", 2),
             ("body", ISSUE)]
    raw_payload = b"\x86" + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in pairs)
    assert code_of(encode_envelope(raw_payload, "geely", b"s" * 64)) == codes.MALFORMED_PAYLOAD


def test_deep_nesting_is_malformed() -> None:
    assert code_of(encode_envelope(b"\x91" * 3000 + b"\x00", "geely", b"s" * 64)) == codes.MALFORMED_PAYLOAD


def test_ext_and_timestamp_types_are_rejected() -> None:
    p = payload()
    p["nonce"] = msgpack.ExtType(5, b"abc")
    assert code_of(signed(p)) == codes.MALFORMED_PAYLOAD
    p["nonce"] = msgpack.Timestamp(1, 0)
    assert code_of(signed(p)) == codes.MALFORMED_PAYLOAD


@pytest.mark.parametrize("over,code", [
    ({"chain_id": "other"}, codes.WRONG_CHAIN_ID),
    ({"type": "ecert.mint"}, codes.UNKNOWN_TX_TYPE),
    ({"type": 5}, codes.UNKNOWN_TX_TYPE),
    ({"nonce": True}, codes.BAD_FIELD),
    ({"nonce": 1.0}, codes.BAD_FIELD),
    ({"nonce": -1}, codes.BAD_FIELD),
    ({"nonce": ""}, codes.BAD_FIELD),
    ({"nonce": "x" * 65}, codes.BAD_FIELD),
    ({"nonce": None}, codes.BAD_FIELD),
    ({"chain_id": 5}, codes.BAD_FIELD),
    ({"body": []}, codes.BAD_FIELD),
    ({"extra": 1}, codes.UNKNOWN_FIELD),
])
def test_payload_rejects(over: dict[str, object], code: str) -> None:
    assert code_of(signed(payload(**over))) == code


def test_payload_missing_field() -> None:
    p = payload()
    del p["nonce"]
    assert code_of(signed(p)) == codes.MISSING_FIELD


def test_signer_mismatch() -> None:
    assert code_of(sign_payload(KEYS.seed, payload(), signer="boc")) == codes.SIGNER_MISMATCH


def test_chain_check_can_be_skipped_by_tools() -> None:
    assert decode_tx(signed(payload(chain_id="other")), None).chain_id == "other"


@pytest.mark.parametrize("changes,code", [
    ({"amount": 0}, codes.BAD_AMOUNT),
    ({"amount": -5}, codes.BAD_AMOUNT),
    ({"amount": AMOUNT_MAX + 1}, codes.BAD_AMOUNT),
    ({"amount": True}, codes.BAD_FIELD),
    ({"amount": 100.0}, codes.BAD_FIELD),
    ({"amount": "100"}, codes.BAD_FIELD),
    ({"maturity": TIME_MS_MAX + 1}, codes.BAD_FIELD),
    ({"maturity": 0}, codes.BAD_FIELD),
    ({"to": ""}, codes.BAD_FIELD),
    ({"to": "x" * 65}, codes.BAD_FIELD),
    ({"to": "a b"}, codes.BAD_FIELD),
    ({"to": b"tier1"}, codes.BAD_FIELD),
    ({"to": ["tier1"]}, codes.BAD_FIELD),
    ({"invoice_ids": []}, codes.BAD_FIELD),
    ({"invoice_ids": ["A"] * 2}, codes.BAD_FIELD),
    ({"invoice_ids": [f"I{i}" for i in range(17)]}, codes.BAD_FIELD),
    ({"invoice_ids": [f"I{i}" for i in range(65)]}, codes.MALFORMED_PAYLOAD),
    ({"invoice_ids": [[["deep"]]]}, codes.BAD_FIELD),
    ({"invoice_ids": "INV-1"}, codes.BAD_FIELD),
    ({"colour": "red"}, codes.UNKNOWN_FIELD),
])
def test_body_rejects(changes: dict[str, object], code: str) -> None:
    assert body_code(**changes) == code


def test_body_missing_field() -> None:
    body = dict(ISSUE)
    del body["bank"]
    assert code_of(signed(payload(body))) == codes.MISSING_FIELD


def test_max_amount_is_accepted() -> None:
    body = dict(ISSUE, amount=AMOUNT_MAX)
    assert decode_tx(signed(payload(body)), CHAIN).body.amount == AMOUNT_MAX


def test_transfer_recipients_are_strict_maps() -> None:
    def transfer(to: object) -> str:
        return code_of(signed(payload({"cert_id": "EC1", "to": to}, type="ecert.transfer")))

    assert transfer([{"org": "a", "amount": 1, "memo": "x"}]) == codes.UNKNOWN_FIELD
    assert transfer([{"org": "a"}]) == codes.MISSING_FIELD
    assert transfer([{"org": "a", "amount": 0}]) == codes.BAD_AMOUNT
    assert transfer([]) == codes.BAD_FIELD
    assert transfer([["a", 1]]) == codes.BAD_FIELD
    ok = decode_tx(signed(payload({"cert_id": "EC1", "to": [{"org": "a", "amount": 1}, {"org": "b", "amount": 2}]},
                                  type="ecert.transfer")), CHAIN)
    assert ok.body.to == (("a", 1), ("b", 2))


def test_split_needs_two_parts() -> None:
    p = payload({"cert_id": "EC1", "amounts": [5]}, type="ecert.split")
    assert code_of(signed(p)) == codes.BAD_FIELD


def test_ciphertext_map() -> None:
    base = {"doc_id": "D", "kind": "invoice", "doc_hash": "ab" * 32, "counterparty": "x", "amount": 1}

    def anchor(ct: object) -> str:
        return code_of(signed(payload(dict(base, ciphertext=ct), type="trade.anchor")))

    assert anchor({}) == codes.BAD_FIELD
    assert anchor({"a": b"x" * 48}) == codes.BAD_FIELD  # shorter than any sealed box
    assert anchor({"a": "text" * 20}) == codes.BAD_FIELD
    assert anchor({o: b"x" * 60 for o in "abcde"}) == codes.BAD_FIELD  # more than CIPHERTEXTS_MAX (4)
    assert code_of(signed(payload(dict(base, doc_hash="AB" * 32), type="trade.anchor"))) == codes.BAD_FIELD
    assert code_of(signed(payload(dict(base, kind="receipt"), type="trade.anchor"))) == codes.BAD_FIELD
    tx = decode_tx(signed(payload(dict(base, ciphertext={"b": b"y" * 60, "a": b"x" * 60}), type="trade.anchor")),
                   CHAIN)
    assert [org for org, _ in tx.body.ciphertext] == ["a", "b"]


def test_encode_payload_is_plain_msgpack() -> None:
    p = payload()
    assert msgpack.unpackb(encode_payload(p), raw=False) == p
