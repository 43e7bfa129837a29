"""Rejection cases for the regulator, key rotation and lineage depth codes (`ACCESS_CASES`, joins test_codes.CASES).

Each `c_<code>(w)` returns the outcome of a real signed tx that must be rejected with exactly that code. The
regulator cases need a chain whose genesis has one, so they build their own `World(regulator=True)`.
"""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

from ecert import state
from ecert.keys import org_keys_from_seed
from ecert.tx import key_proof
from ledger.executor import TxOutcome
from tests.ecert.world import DAY, World


def c_regulator_genesis_only(w: World) -> TxOutcome:
    k = w.key("newreg")
    return w.run("newreg", "org.register", {"org_id": "newreg", "name": "Regulator 2", "role": "regulator",
                                            "sign_pk": k.sign_pk, "box_pk": k.box_pk})


def c_regulator_status_fixed(w: World) -> TxOutcome:
    w = World(regulator=True)
    return w.run("boc", "org.freeze", {"org_id": "pbc", "reason": "no"})


def c_regulator_not_party(w: World) -> TxOutcome:
    w = World(regulator=True)
    cert = w.funded()
    return w.run("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "pbc", "amount": 1}]})


def c_bad_key_proof(w: World) -> TxOutcome:
    new = org_keys_from_seed(b"\x42" * 32)
    wrong = key_proof(org_keys_from_seed(b"\x43" * 32).seed, 5)
    return w.run("tier1", "org.rotate_key", {"sign_pk": new.sign_pk, "box_pk": new.box_pk, "proof": wrong},
                 nonce=5)


def c_lineage_too_deep(w: World) -> TxOutcome:
    with mock.patch.object(state, "LINEAGE_DEPTH_MAX", 2):  # 2^20 transfers would take a while
        cert = w.funded(1000, maturity=w.now + 30 * DAY)
        for _ in range(2):
            cert = w.ok("tier1", "ecert.transfer", {"cert_id": cert, "to": [{"org": "tier2", "amount": 1}]})["certs"][1]
        assert state.get_cert(w.view, cert).depth == 2  # type: ignore[union-attr]
        return w.run("tier1", "ecert.split", {"cert_id": cert, "amounts": [1, 997]})


ACCESS_CASES: dict[str, Callable[[World], TxOutcome]] = {
    name[2:]: fn for name, fn in dict(globals()).items() if name.startswith("c_") and callable(fn)
}
