"""Who may read what (ecert/access.py), row by row over a real multi-hop lineage built from signed txs.

The lineage (geely the debtor, boc the bank named at issue, pbc the regulator):

    R  tier1, 1000
    +- A  tier2, 600          transfer R: 600 to tier2
    |  +- E  tier3, 200       transfer A: 200 to tier3; tier3 asks icbc to finance E, icbc approves (icbc holds)
    |  +- F  tier2, 400
    |     +- G  tier2, 150    split F
    |     +- H  tier2, 250
    +- B  tier1, 400
       +- C  tier3, 100       transfer B: 100 to tier3; tier3 asks icbc to finance C, icbc declines
       +- D  tier1, 300

byd (another core) and a second root's parties are strangers to it.
"""

from __future__ import annotations

from typing import Any

import pytest

from ecert import access
from ecert import state as s
from ecert.access import Reader, TxFacts
from ecert.tx import TX_TYPES
from ledger.executor import TxOutcome
from tests.ecert.world import World

CERTS = "RABCDEFGH"
EVERY = set(CERTS)
VISIBLE: dict[str, set[str]] = {
    "geely": EVERY,  # the debtor
    "boc": EVERY,  # the bank named at issue
    "pbc": EVERY,  # the regulator
    "tier1": EVERY,  # holds the root: everything is below it
    "tier2": set("RAEFGH"),  # how A reached it (R), what it passed on (E), its own; not tier1's B, C, D
    "tier3": set("RABCE"),  # the paths to C and E; not its sellers' other business (D, F, G, H)
    "icbc": set("RABCE"),  # asked to finance C and E (E financed, C declined)
    "byd": set(),
}
ORGS = sorted(VISIBLE)


class Scenario:
    def __init__(self) -> None:
        w = World(regulator=True)
        self.w = w
        self.txs: dict[str, tuple[bytes, TxOutcome]] = {}
        self.send("grant", "boc", "credit.grant", {"core": "geely", "limit": 10_000_000,
                                                   "expires_at": w.now + 365 * 86_400_000})
        self.send("anchor", "tier1", "trade.anchor", {"doc_id": "INV-R", "kind": "invoice", "doc_hash": "ab" * 32,
                                                      "counterparty": "geely", "amount": 1000,
                                                      "ciphertext": {"icbc": b"\x01" * 60, "tier1": b"\x02" * 60}})
        self.send("confirm", "geely", "trade.confirm", {"doc_id": "INV-R"})
        root = self.certs("issue", "geely", "ecert.issue", {"to": "tier1", "amount": 1000, "bank": "boc",
                                                             "maturity": w.now + 90 * 86_400_000,
                                                             "invoice_ids": ["INV-R"]})
        self.ids = {"R": root[0]}
        self.send("accept", "tier1", "ecert.accept", {"cert_id": self.ids["R"]})
        self.ids["A"], self.ids["B"] = self.certs("transfer_R", "tier1", "ecert.transfer", {
            "cert_id": self.ids["R"], "to": [{"org": "tier2", "amount": 600}]})
        self.ids["C"], self.ids["D"] = self.certs("transfer_B", "tier1", "ecert.transfer", {
            "cert_id": self.ids["B"], "to": [{"org": "tier3", "amount": 100}]})
        self.ids["E"], self.ids["F"] = self.certs("transfer_A", "tier2", "ecert.transfer", {
            "cert_id": self.ids["A"], "to": [{"org": "tier3", "amount": 200}]})
        self.ids["G"], self.ids["H"] = self.certs("split_F", "tier2", "ecert.split", {
            "cert_id": self.ids["F"], "amounts": [150, 250]})
        self.send("request_E", "tier3", "finance.request", {"cert_id": self.ids["E"], "bank": "icbc"})
        self.send("approve_E", "icbc", "finance.approve", {"cert_id": self.ids["E"], "discount_bps": 100})
        self.send("request_C", "tier3", "finance.request", {"cert_id": self.ids["C"], "bank": "icbc"})
        self.send("decline_C", "icbc", "finance.decline", {"cert_id": self.ids["C"]})
        self.send("stolen_D", "tier2", "ecert.transfer", {"cert_id": self.ids["D"],
                                                          "to": [{"org": "tier3", "amount": 1}]}, ok=False)
        # a second lineage, none of the first one's business: byd's debt to tier2 under icbc
        self.send("grant_byd", "icbc", "credit.grant", {"core": "byd", "limit": 1000,
                                                        "expires_at": w.now + 365 * 86_400_000})
        self.ids["X"] = w.issue(500, to="tier2", core="byd", bank="icbc")
        self.label = {cert_id: name for name, cert_id in self.ids.items()}

    def send(self, name: str, signer: str, kind: str, body: dict[str, Any], ok: bool = True) -> TxOutcome:
        raw = self.w.raw(signer, kind, body)
        outcome = self.w.apply(raw)
        assert (outcome.status == "committed") == ok, (name, outcome.error_code, outcome.error_message)
        self.txs[name] = (raw, outcome)
        return outcome

    def certs(self, name: str, signer: str, kind: str, body: dict[str, Any]) -> list[str]:
        result = self.send(name, signer, kind, body).result
        assert result is not None
        return list(result["certs"])

    def reader(self, org_id: str) -> Reader:
        reader = access.reader_of(self.w.view, org_id)
        assert reader is not None
        return reader

    def facts(self, name: str) -> TxFacts:
        raw, outcome = self.txs[name]
        return access.tx_facts(outcome, raw)


@pytest.fixture(scope="module")
def sc() -> Scenario:
    return Scenario()


# --- certificates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("org", ORGS)
@pytest.mark.parametrize("name", list(CERTS))
def test_can_read_cert(sc: Scenario, org: str, name: str) -> None:
    assert access.can_read_cert(sc.w.view, sc.reader(org), sc.ids[name]) is (name in VISIBLE[org])


@pytest.mark.parametrize("org", ORGS)
@pytest.mark.parametrize("name", list(CERTS))
def test_visible_lineage(sc: Scenario, org: str, name: str) -> None:
    lineage = access.visible_lineage(sc.w.view, sc.reader(org), sc.ids[name])
    if name not in VISIBLE[org]:
        assert lineage is None
        return
    assert lineage is not None and lineage["root_id"] == sc.ids["R"]
    got = [sc.label[c["id"]] for c in lineage["certs"]]
    in_creation_order = [n for n in "RABCDEFGH" if n in VISIBLE[org]]
    assert got == in_creation_order


def test_unknown_and_invisible_ids_look_the_same(sc: Scenario) -> None:
    tier2 = sc.reader("tier2")
    unknown = "EC" + "0" * 32
    assert access.can_read_cert(sc.w.view, tier2, unknown) is access.can_read_cert(sc.w.view, tier2, sc.ids["D"])
    assert access.visible_lineage(sc.w.view, tier2, unknown) is None
    assert access.visible_lineage(sc.w.view, tier2, sc.ids["D"]) is None
    assert access.can_read_cert(sc.w.view, sc.reader("pbc"), unknown) is False


def test_second_lineage_is_its_own_parties_business(sc: Scenario) -> None:
    x = sc.ids["X"]
    expected = {"byd": True, "icbc": True, "tier2": True, "pbc": True, "geely": False, "boc": False,
                "tier1": False, "tier3": False}
    assert {org: access.can_read_cert(sc.w.view, sc.reader(org), x) for org in ORGS} == expected


def test_the_party_index_lists_holders_and_asked_banks(sc: Scenario) -> None:
    def parties(org: str) -> set[str]:
        return {sc.label[c] for c in s.party_cert_ids(sc.w.view, org, sc.ids["R"])}

    assert parties("tier1") == set("RBD")
    assert parties("tier2") == set("AFGH")
    assert parties("tier3") == set("CE")
    assert parties("icbc") == set("CE")  # E: asked and now holder; C: asked, declined
    assert parties("boc") == set() and parties("geely") == set()  # they see it all by role, not as parties
    assert s.get_cert(sc.w.view, sc.ids["G"]).depth == 3  # type: ignore[union-attr]


# --- tx outcomes -------------------------------------------------------------------------------------------------
TX_ROWS: list[tuple[str, set[str]]] = [
    ("transfer_R", set(ORGS) - {"byd"}),  # acted on R: every org in the lineage sees R
    ("transfer_B", {o for o in ORGS if "B" in VISIBLE[o]}),
    ("transfer_A", {o for o in ORGS if "A" in VISIBLE[o]}),
    ("split_F", {o for o in ORGS if "F" in VISIBLE[o]}),
    ("issue", {o for o in ORGS if "R" in VISIBLE[o]}),
    ("request_C", {o for o in ORGS if "C" in VISIBLE[o]}),
    ("approve_E", {o for o in ORGS if "E" in VISIBLE[o]}),
    ("stolen_D", {"tier2", "pbc"}),  # rejected: its signer and the regulator only, not D's holder
    ("grant", {"boc", "geely", "pbc"}),  # a credit line: its bank and core
    ("grant_byd", {"icbc", "byd", "pbc"}),
    ("anchor", {"tier1", "geely", "icbc", "pbc"}),  # a document: its parties, the bank it is sealed for
    ("confirm", {"tier1", "geely", "icbc", "pbc"}),
]


def test_tx_rows_match_the_cert_rows() -> None:
    assert {o for o in ORGS if "B" in VISIBLE[o]} == {"geely", "boc", "pbc", "tier1", "tier3", "icbc"}


@pytest.mark.parametrize(("name", "readers"), TX_ROWS)
def test_can_read_tx_outcome(sc: Scenario, name: str, readers: set[str]) -> None:
    facts = sc.facts(name)
    assert {org for org in ORGS if access.can_read_tx_outcome(sc.w.view, sc.reader(org), facts)} == readers


def test_tx_facts_name_the_subject(sc: Scenario) -> None:
    assert sc.facts("transfer_A").subject == ("cert", sc.ids["A"])  # the parent, from the body
    assert sc.facts("issue").subject == ("cert", sc.ids["R"])  # the new root, from the result
    assert sc.facts("grant").subject == ("credit", "boc", "geely")
    assert sc.facts("anchor").subject == ("doc", "INV-R")
    stolen = sc.facts("stolen_D")
    assert (stolen.signer, stolen.subject) == ("tier2", None)


def test_org_txs_are_every_members_business() -> None:
    w = World(regulator=True)
    k = w.key("newco")
    raw = w.raw("newco", "org.register", {"org_id": "newco", "name": "N", "role": "supplier",
                                          "sign_pk": k.sign_pk, "box_pk": k.box_pk})
    facts = access.tx_facts(w.apply(raw), raw)
    assert facts.subject == ("org", "newco")
    readers = [access.reader_of(w.view, org) for org in ("byd", "tier3", "pbc", "newco")]
    assert all(r is not None and access.can_read_tx_outcome(w.view, r, facts) for r in readers)


def test_undecodable_tx_is_the_regulators_only(sc: Scenario) -> None:
    raw = b"\xc1"
    outcome = sc.w.apply(raw)
    facts = access.tx_facts(outcome, raw)
    assert (facts.signer, facts.subject) == (None, None)
    assert [org for org in ORGS if access.can_read_tx_outcome(sc.w.view, sc.reader(org), facts)] == ["pbc"]


def test_every_kind_has_a_subject() -> None:
    assert set(access.SUBJECTS) == set(TX_TYPES)


def test_visible_outcomes_for_a_subscriber(sc: Scenario) -> None:
    block = [sc.facts(name) for name in ("transfer_R", "transfer_B", "split_F", "stolen_D", "grant")]
    seen = access.visible_outcomes(sc.w.view, sc.reader("tier2"), block)
    assert [o.tx_id for o in seen] == [block[0].outcome.tx_id, block[2].outcome.tx_id, block[3].outcome.tx_id]
    assert len(access.visible_outcomes(sc.w.view, sc.reader("pbc"), block)) == len(block)
    assert access.visible_outcomes(sc.w.view, sc.reader("byd"), block) == []


# --- documents, holdings, credit lines, profiles ---------------------------------------------------------------
@pytest.mark.parametrize(("org", "expected"), [
    ("tier1", True), ("geely", True),  # the two parties
    ("icbc", True),  # a bank it is sealed for
    ("boc", False),  # a bank it is not sealed for
    ("pbc", True),  # the regulator
    ("tier2", False), ("byd", False),
])
def test_can_read_doc(sc: Scenario, org: str, expected: bool) -> None:
    assert access.can_read_doc(sc.w.view, sc.reader(org), "INV-R") is expected
    assert access.can_read_doc(sc.w.view, sc.reader(org), "INV-nope") is False


def test_a_ciphertext_for_a_non_bank_is_not_a_grant() -> None:
    doc = s.TradeDoc(id="D", kind="invoice", doc_hash="ab" * 32, issuer="tier1", counterparty="geely", amount=1,
                     status="anchored", anchored_at=1, ciphertext=(("tier2", b"x" * 60),))
    assert access.RELATIONS["doc_sealed_bank"](None, Reader("tier2", "supplier"), doc) is False
    assert access.RELATIONS["doc_sealed_bank"](None, Reader("tier2", "bank"), doc) is True


@pytest.mark.parametrize(("reader", "org_id", "expected"), [
    (Reader("tier1", "supplier"), "tier1", True),
    (Reader("tier1", "supplier"), "tier2", False),
    (Reader("boc", "bank"), "tier1", False),  # not even the bank named at issue
    (Reader("pbc", "regulator"), "tier1", True),
])
def test_can_read_holdings(reader: Reader, org_id: str, expected: bool) -> None:
    assert access.can_read_holdings(reader, org_id) is expected


@pytest.mark.parametrize(("reader", "expected"), [
    (Reader("boc", "bank"), True),
    (Reader("geely", "core"), True),
    (Reader("icbc", "bank"), False),
    (Reader("byd", "core"), False),
    (Reader("tier1", "supplier"), False),
    (Reader("pbc", "regulator"), True),
])
def test_can_read_credit(reader: Reader, expected: bool) -> None:
    assert access.can_read_credit(reader, "boc", "geely") is expected


def test_org_public_profile(sc: Scenario) -> None:
    profile = access.org_public_profile(sc.w.view, "tier1")
    k = sc.w.key("tier1")
    assert profile == {"id": "tier1", "name": "Tier 1", "role": "supplier", "status": "active",
                       "sign_pk": k.sign_pk, "box_pk": k.box_pk}
    assert access.org_public_profile(sc.w.view, "ghost") is None
    assert access.reader_of(sc.w.view, "ghost") is None
    assert access.reader_of(sc.w.view, "pbc") == Reader("pbc", "regulator")


def test_every_grant_names_known_relations() -> None:
    assert {r for row in access.GRANTS.values() for r in row} == set(access.RELATIONS)
    assert all("regulator" in row for kind, row in access.GRANTS.items() if kind != "org_profile")
