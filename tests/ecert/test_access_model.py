"""Property: ecert/access.py's certificate visibility equals an independent model, on random lineages.

Random transfers, splits and financing (approved, declined or left pending) grow two lineages through real signed
txs. The model keeps its own record of who was ever party to each certificate (from the txs it sent, not from
the party index) and decides visibility by brute force over the full lineage (ecert/queries.py): X sees C iff
X is the debtor, the bank named at issue or the regulator, or X is party to some P with C on the path from the
root to P or below P.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecert import access, queries
from tests.ecert.world import DAY, World

READERS = ("boc", "icbc", "geely", "byd", "tier1", "tier2", "tier3", "pbc")
RECEIVERS = ("tier1", "tier2", "tier3", "geely", "byd", "boc", "icbc")  # active, not the regulator
BANKS = ("boc", "icbc")

op = st.tuples(st.sampled_from(["transfer", "split", "finance"]), st.integers(0, 10**6), st.integers(0, 10**6),
               st.integers(1, 3), st.sampled_from(["approve", "decline", "leave"]))


class Model:
    def __init__(self) -> None:
        self.w = World(regulator=True)
        self.certs: dict[str, dict[str, Any]] = {}
        self.parties: dict[str, set[str]] = {}
        self.roots: list[str] = []
        self.w.grant(bank="boc", core="geely")
        self.w.grant(bank="icbc", core="byd")
        for core, bank, to, amount in (("geely", "boc", "tier1", 10_000), ("byd", "icbc", "tier3", 5_000)):
            root = self.w.issue(amount, to=to, core=core, bank=bank)
            self.roots.append(root)
            self.certs[root] = {"holder": to, "status": "active", "amount": amount, "debtor": core, "bank": bank}
            self.parties[root] = {to}

    def ok(self, signer: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.w.ok(signer, kind, body)

    def children(self, parent: str, parts: list[tuple[str, int]], ids: list[str]) -> None:
        assert len(ids) == len(parts)
        self.certs[parent]["status"] = "split"
        for cert_id, (holder, amount) in zip(ids, parts, strict=True):
            self.certs[cert_id] = {**self.certs[parent], "holder": holder, "status": "active", "amount": amount}
            self.parties[cert_id] = {holder}

    def step(self, kind: str, a: int, b: int, k: int, answer: str) -> None:
        active = sorted(c for c, v in self.certs.items() if v["status"] == "active")
        if not active:
            return
        cert_id = active[a % len(active)]
        cert = self.certs[cert_id]
        holder, amount = cert["holder"], cert["amount"]
        if kind == "transfer" and amount > k:
            others = [o for o in RECEIVERS if o != holder]
            start = b % len(others)
            to = (others[start:] + others[:start])[:k]
            each = amount // (k + 1)
            result = self.ok(holder, "ecert.transfer",
                             {"cert_id": cert_id, "to": [{"org": o, "amount": each} for o in to]})
            self.children(cert_id, [*((o, each) for o in to), (holder, amount - each * k)], result["certs"])
        elif kind == "split" and amount > k:
            amounts = [amount // (k + 1)] * k + [amount - amount // (k + 1) * k]
            result = self.ok(holder, "ecert.split", {"cert_id": cert_id, "amounts": amounts})
            self.children(cert_id, [(holder, x) for x in amounts], result["certs"])
        elif kind == "finance" and BANKS[b % 2] != holder:
            bank = BANKS[b % 2]
            self.ok(holder, "finance.request", {"cert_id": cert_id, "bank": bank})
            self.parties[cert_id].add(bank)
            cert["status"] = "financing"
            if answer == "approve":
                self.ok(bank, "finance.approve", {"cert_id": cert_id, "discount_bps": 100})
                cert.update(holder=bank, status="financed")
            elif answer == "decline":
                self.ok(bank, "finance.decline", {"cert_id": cert_id})
                cert["status"] = "active"

    def expected(self, reader: str, lineage: list[dict[str, Any]]) -> set[str]:
        """Brute force over the full lineage: the model's own parties, ancestors from the JSON parent links."""
        parent = {c["id"]: c["parent_id"] for c in lineage}

        def up(cert_id: str) -> set[str]:
            out: set[str] = set()
            node: str | None = cert_id
            while node is not None:
                out.add(node)
                node = parent[node]
            return out

        ids = [c["id"] for c in lineage]
        root = self.certs[ids[0]]
        if reader in (root["debtor"], root["bank"], "pbc"):
            return set(ids)
        mine = [p for p in ids if reader in self.parties[p]]
        return {c for c in ids if any(c in up(p) or p in up(c) for p in mine)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=20))
def test_visibility_matches_the_model(ops: list[tuple[str, int, int, int, str]]) -> None:
    m = Model()
    for kind, a, b, k, answer in ops:
        m.step(kind, a, b, k, answer)
    view = m.w.view
    for root in m.roots:
        full = queries.get_lineage(view, root)
        assert full is not None
        lineage = full["certs"]
        for org in READERS:
            reader = access.reader_of(view, org)
            assert reader is not None
            visible = m.expected(org, lineage)
            for c in lineage:
                assert access.can_read_cert(view, reader, c["id"]) is (c["id"] in visible), (org, c["id"])
                got = access.visible_lineage(view, reader, c["id"])
                if c["id"] in visible:
                    assert got is not None
                    assert [x["id"] for x in got["certs"]] == [x["id"] for x in lineage if x["id"] in visible]
                else:
                    assert got is None
            assert access.can_read_cert(view, reader, "EC" + "f" * 32) is False
    m.w.now += DAY  # (keeps World's clock moving like a chain would; nothing reads it after)
