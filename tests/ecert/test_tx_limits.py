"""The relations between ecert's limits and the ledger's, and one rule per tx kind: asserted when ecert/tx.py and
ecert/rules.py are imported; here the checking functions are called with tables and values that break them."""

from __future__ import annotations

import json

import pytest
from nacl.signing import SigningKey

from consensus.invariant import InvariantViolation
from ecert import lifecycle, rules
from ecert.tx import (
    CIPHERTEXT_BYTES_MAX,
    CIPHERTEXTS_MAX,
    PAYLOAD_BYTES_MAX,
    TX_BYTES_MAX,
    TX_JSON_BYTES_MAX,
    TX_TYPES,
    TradeAnchor,
    _largest_anchor_payload,
    check_tx_limits,
    decode_tx,
    encode_envelope,
    envelope_from_json,
    envelope_to_json,
)
from ledger import block

TRANSITIONS = (lifecycle.CERT_TRANSITIONS, lifecycle.ORG_TRANSITIONS, lifecycle.DOC_TRANSITIONS)
LIMITS = (TX_BYTES_MAX, PAYLOAD_BYTES_MAX, TX_JSON_BYTES_MAX, CIPHERTEXTS_MAX, CIPHERTEXT_BYTES_MAX)


def test_one_tx_size_limit_from_admission_to_the_block() -> None:
    assert TX_BYTES_MAX is block.TX_BYTES_MAX  # the same name, defined once, in the ledger
    check_tx_limits(*LIMITS)


def test_the_largest_tx_the_schema_admits_fits_every_limit() -> None:
    payload = _largest_anchor_payload(CIPHERTEXTS_MAX, CIPHERTEXT_BYTES_MAX)
    signer = "a" * 64
    raw = encode_envelope(payload, signer, SigningKey(b"\x02" * 32).sign(payload).signature)
    tx = decode_tx(raw, None)  # admitted by the strict codec, so it really is a legal tx
    assert isinstance(tx.body, TradeAnchor) and tx.body.ciphertext is not None
    assert len(tx.body.ciphertext) == CIPHERTEXTS_MAX
    assert len(payload) <= PAYLOAD_BYTES_MAX and len(raw) <= TX_BYTES_MAX
    body = json.dumps(envelope_to_json(raw)).encode()
    assert len(body) <= TX_JSON_BYTES_MAX and envelope_from_json(json.loads(body)) == raw


@pytest.mark.parametrize(("index", "value", "match"), [
    (0, PAYLOAD_BYTES_MAX + 100, "envelope around"),                # envelope limit too small for the payload
    (1, TX_BYTES_MAX, "envelope around"),                           # payload limit leaves no room for the rest
    (1, 150_000, "largest trade.anchor"),                           # payload limit below the sealed copies
    (4, PAYLOAD_BYTES_MAX // CIPHERTEXTS_MAX, "largest trade.anchor"),
    (2, TX_BYTES_MAX, "JSON form"),                                 # JSON body floor below base64 of a tx
])
def test_tx_limits_that_disagree_fail(index: int, value: int, match: str) -> None:
    bad = list(LIMITS)
    bad[index] = value
    with pytest.raises(InvariantViolation, match=match):
        check_tx_limits(*bad)


def test_every_kind_has_exactly_one_rule() -> None:
    assert set(TX_TYPES) == set(rules.RULES)
    rules.check_rule_table(TX_TYPES, rules.RULES, TRANSITIONS)


@pytest.mark.parametrize(("kinds", "table", "transitions", "match"), [
    ((*TX_TYPES, "ecert.burn"), rules.RULES, TRANSITIONS, "without a rule"),
    (TX_TYPES, {**rules.RULES, "ecert.burn": rules.apply_ecert_settle}, TRANSITIONS, "unknown tx kinds"),
    (tuple(k for k in TX_TYPES if k != "ecert.split"), rules.RULES, TRANSITIONS, "unknown tx kinds"),
    ((*TX_TYPES, TX_TYPES[0]), rules.RULES, TRANSITIONS, "listed twice"),
    (TX_TYPES, rules.RULES, (*TRANSITIONS, {("active", "ecert.burn"): "burnt"}), "status transitions"),
])
def test_a_broken_rule_table_fails(kinds: tuple[str, ...], table: dict[str, object],
                                   transitions: tuple[dict[tuple[str, str], str], ...], match: str) -> None:
    with pytest.raises(InvariantViolation, match=match):
        rules.check_rule_table(kinds, table, transitions)
