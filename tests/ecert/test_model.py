"""Model-based test: random sequences of valid and invalid transactions against a small independent model.

The model is plain dicts and a direct reading of CONTRACT §3. For each step it lists *every* rule the tx breaks
(a set of codes, order-free); the executor must commit exactly when that set is empty, and otherwise reject with
one of those codes. After every step the whole model is compared with the chain state (through ecert/queries.py)
and `check_invariants` runs (inside World.apply).
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ecert import codes as C
from ecert import queries
from ecert.tx import decode_envelope, tx_id_of
from tests.ecert.world import DAY, GENESIS_ORGS, World

ORGS = [o for o, _, _ in GENESIS_ORGS]
BANKS = [o for o, _, r in GENESIS_ORGS if r == "bank"]
CORES = [o for o, _, r in GENESIS_ORGS if r == "core"]
SUPPLIERS = [o for o, _, r in GENESIS_ORGS if r == "supplier"]
EXTRA = ["newco", "newbank"]  # not in genesis: registered (or not) during the run
LIVE = {"issued", "active", "financing", "financed"}
ORG_MOVES = {"org.approve": ("pending", "active"), "org.freeze": ("active", "frozen"),
             "org.unfreeze": ("frozen", "active")}

amounts = st.integers(min_value=1, max_value=1200)


def model_cert_id(tx_id: str, index: int) -> str:
    return "EC" + hashlib.sha256(bytes.fromhex(tx_id) + index.to_bytes(4, "big")).hexdigest()[:32]


class EcertModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World()
        self.orgs: dict[str, dict[str, str]] = {o: {"role": r, "status": "active"} for o, _, r in GENESIS_ORGS}
        self.lines: dict[tuple[str, str], dict[str, int]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.certs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # cert ids in creation order
        self.committed_raws: list[tuple[str, str, bytes]] = []
        self.doc_seq = 0

    # --- plumbing ------------------------------------------------------------------------------------------------

    def submit(self, signer: str, kind: str, body: dict[str, Any], broken: set[str]) -> dict[str, Any] | None:
        """Apply the tx; check it commits iff the model found nothing broken. Returns the result if committed."""
        if signer not in self.orgs and kind != "org.register":
            broken = {C.UNKNOWN_SIGNER}  # authentication comes before every rule
        elif signer in self.orgs and self.orgs[signer]["status"] != "active" and kind != "org.register":
            broken = {C.SIGNER_NOT_ACTIVE}
        raw = self.w.raw(signer, kind, body)
        outcome = self.w.apply(raw)
        if broken:
            assert outcome.status == "rejected", f"{kind} committed but the model says {broken}"
            assert outcome.error_code in broken, (outcome.error_code, outcome.error_message, broken)
            return None
        assert outcome.status == "committed", (kind, outcome.error_code, outcome.error_message)
        self.committed_raws.append((signer, kind, raw))
        return {"tx_id": tx_id_of(decode_envelope(raw).payload), **(outcome.result or {})}

    def active(self, org: str, broken: set[str]) -> None:
        if org not in self.orgs:
            broken.add(C.UNKNOWN_ORG)
        elif self.orgs[org]["status"] != "active":
            broken.add(C.ORG_NOT_ACTIVE)

    def new_cert(self, tx_id: str, index: int, **fields: Any) -> str:
        cid = model_cert_id(tx_id, index)
        self.certs[cid] = {"id": cid, "children": [], "finance_bank": None, **fields}
        self.order.append(cid)
        return cid

    def pick_cert(self, data: st.DataObject, status: str | None = None) -> str:
        if not self.order or data.draw(st.integers(0, 15)) == 0:
            return "EC" + "0" * 32
        preferred = [c for c in self.order if self.certs[c]["status"] == (status or self.certs[c]["status"])
                     and self.certs[c]["status"] in LIVE]
        if preferred and data.draw(st.integers(0, 3)) > 0:
            return data.draw(st.sampled_from(preferred))
        return data.draw(st.sampled_from(self.order))

    # --- time ----------------------------------------------------------------------------------------------------

    @initialize()
    def credit_lines(self) -> None:
        self.do_grant("boc", "geely", 5000, 300 * DAY)
        self.do_grant("icbc", "byd", 5000, 300 * DAY)

    @rule(days=st.sampled_from([0, 0, 1, 2, 5, 20]), ms=st.integers(0, DAY))
    def advance_time(self, days: int, ms: int) -> None:
        self.w.now += days * DAY + ms

    # --- organisations -------------------------------------------------------------------------------------------

    @rule(org=st.sampled_from(EXTRA), role=st.sampled_from(["bank", "core", "supplier"]))
    def register(self, org: str, role: str) -> None:
        k = self.w.key(org)
        broken = {C.ORG_EXISTS} if org in self.orgs else set()
        body = {"org_id": org, "name": org.upper(), "role": role, "sign_pk": k.sign_pk, "box_pk": k.box_pk}
        if self.submit(org, "org.register", body, broken) is not None:
            self.orgs[org] = {"role": role, "status": "pending"}

    @rule(signer=st.sampled_from([*BANKS, *BANKS, *ORGS, *EXTRA]), org=st.sampled_from([*SUPPLIERS, "byd", "icbc", *EXTRA]),
          kind=st.sampled_from(sorted(ORG_MOVES)))
    def org_status(self, signer: str, org: str, kind: str) -> None:
        broken: set[str] = set()
        if signer in self.orgs and self.orgs[signer]["role"] != "bank":
            broken.add(C.ROLE_NOT_ALLOWED)
        if org == signer:
            broken.add(C.SAME_PARTY)
        before, after = ORG_MOVES[kind]
        if org not in self.orgs:
            broken.add(C.UNKNOWN_ORG)
        elif self.orgs[org]["status"] != before:
            broken.add(C.INVALID_STATUS_TRANSITION)
        if self.submit(signer, kind, {"org_id": org}, broken) is not None:
            self.orgs[org]["status"] = after

    @rule(bank=st.sampled_from(BANKS), data=st.data())
    def approve_plausible(self, bank: str, data: st.DataObject) -> None:
        pending = sorted(o for o, m in self.orgs.items() if m["status"] == "pending")
        if pending:
            self.org_status(bank, data.draw(st.sampled_from(pending)), "org.approve")

    # --- credit --------------------------------------------------------------------------------------------------

    @rule(signer=st.sampled_from([*BANKS, *BANKS, "geely"]), core=st.sampled_from([*CORES, *CORES, "tier1"]),
          limit=st.integers(0, 6000), expires_in=st.integers(-DAY, 200 * DAY))
    def grant(self, signer: str, core: str, limit: int, expires_in: int) -> None:
        self.do_grant(signer, core, limit, expires_in)

    def do_grant(self, signer: str, core: str, limit: int, expires_in: int) -> None:
        broken: set[str] = set()
        expires_at = max(1, self.w.now + expires_in)
        if self.orgs[signer]["role"] != "bank":
            broken.add(C.ROLE_NOT_ALLOWED)
        if self.orgs[core]["role"] != "core":
            broken.add(C.NOT_A_CORE)
        elif self.orgs[core]["status"] != "active":
            broken.add(C.ORG_NOT_ACTIVE)
        if expires_at <= self.w.now:
            broken.add(C.EXPIRY_NOT_IN_FUTURE)
        used = self.lines.get((signer, core), {}).get("used", 0)
        if limit < used:
            broken.add(C.LIMIT_BELOW_USED)
        if self.submit(signer, "credit.grant", {"core": core, "limit": limit, "expires_at": expires_at},
                       broken) is not None:
            self.lines[(signer, core)] = {"limit": limit, "used": used, "expires_at": expires_at}

    # --- trade documents -----------------------------------------------------------------------------------------

    @rule(signer=st.sampled_from([*ORGS, *EXTRA]), other=st.sampled_from([*ORGS, *EXTRA]), amount=amounts,
          kind=st.sampled_from(["invoice", "invoice", "invoice", "contract"]), data=st.data())
    def anchor(self, signer: str, other: str, amount: int, kind: str, data: st.DataObject) -> None:
        if self.docs and data.draw(st.integers(0, 10)) == 0:
            doc_id = data.draw(st.sampled_from(sorted(self.docs)))
        else:
            doc_id = self.next_doc_id()
        self.do_anchor(signer, other, amount, kind, doc_id)

    def next_doc_id(self) -> str:
        self.doc_seq += 1
        return f"D{self.doc_seq}"

    def do_anchor(self, signer: str, other: str, amount: int, kind: str, doc_id: str) -> None:
        broken: set[str] = set()
        if doc_id in self.docs:
            broken.add(C.DOC_EXISTS)
        if other == signer:
            broken.add(C.SAME_PARTY)
        self.active(other, broken)
        body = {"doc_id": doc_id, "kind": kind, "doc_hash": "ab" * 32, "counterparty": other, "amount": amount}
        if self.submit(signer, "trade.anchor", body, broken) is not None:
            self.docs[doc_id] = {"kind": kind, "issuer": signer, "counterparty": other, "amount": amount,
                                 "status": "anchored", "backed": 0}

    @rule(signer=st.sampled_from(ORGS), data=st.data())
    def confirm(self, signer: str, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(sorted(self.docs))) if self.docs else "none"
        if doc_id in self.docs and data.draw(st.booleans()):
            signer = self.docs[doc_id]["counterparty"]
        self.do_confirm(signer, doc_id)

    def do_confirm(self, signer: str, doc_id: str) -> None:
        broken: set[str] = set()
        doc = self.docs.get(doc_id)
        if doc is None:
            broken.add(C.UNKNOWN_DOC)
        else:
            if doc["counterparty"] != signer:
                broken.add(C.NOT_COUNTERPARTY)
            if doc["status"] != "anchored":
                broken.add(C.INVALID_STATUS_TRANSITION)
        if self.submit(signer, "trade.confirm", {"doc_id": doc_id}, broken) is not None:
            assert doc is not None
            doc["status"] = "confirmed"

    # --- certificates --------------------------------------------------------------------------------------------

    @rule(signer=st.sampled_from([*CORES, *CORES, "tier1"]), to=st.sampled_from(ORGS), amount=amounts,
          maturity_in=st.integers(-DAY, 60 * DAY), bank=st.sampled_from([*BANKS, *BANKS, "tier2"]), data=st.data())
    def issue(self, signer: str, to: str, amount: int, maturity_in: int, bank: str, data: st.DataObject) -> None:
        # Mostly pick invoices between the two parties, so that issuance often succeeds.
        fitting = sorted(d for d, doc in self.docs.items() if {doc["issuer"], doc["counterparty"]} == {signer, to})
        pool = fitting if fitting and data.draw(st.booleans()) else sorted(self.docs) or ["none"]
        invoice_ids = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
        self.do_issue(signer, to, amount, max(1, self.w.now + maturity_in), bank, invoice_ids)

    @rule(pair=st.sampled_from([("geely", "boc"), ("byd", "icbc")]), to=st.sampled_from(SUPPLIERS),
          amount=amounts, extra=st.integers(0, 300), maturity_in=st.integers(DAY, 60 * DAY), accept=st.booleans())
    def issue_plausible(self, pair: tuple[str, str], to: str, amount: int, extra: int, maturity_in: int,
                        accept: bool) -> None:
        """Invoice, confirmation, issue (and accept) done right: most certificates are born here."""
        core, bank = pair
        doc_id = self.next_doc_id()
        self.do_anchor(to, core, amount + extra, "invoice", doc_id)
        self.do_confirm(core, doc_id)
        cid = self.do_issue(core, to, amount, self.w.now + maturity_in, bank, [doc_id])
        if cid is not None and accept:
            self.do_accept_or_reject(to, cid, reject=False)

    def do_issue(self, signer: str, to: str, amount: int, maturity: int, bank: str,
                 invoice_ids: list[str]) -> str | None:
        broken: set[str] = set()
        if self.orgs[signer]["role"] != "core":
            broken.add(C.ROLE_NOT_ALLOWED)
        if to == signer:
            broken.add(C.SAME_PARTY)
        self.active(to, broken)
        if maturity <= self.w.now:
            broken.add(C.MATURITY_NOT_IN_FUTURE)
        if self.orgs[bank]["role"] != "bank":
            broken.add(C.NOT_A_BANK)
        elif self.orgs[bank]["status"] != "active":
            broken.add(C.ORG_NOT_ACTIVE)
        line = self.lines.get((bank, signer))
        if line is None:
            broken.add(C.NO_CREDIT_LINE)
        else:
            if self.w.now >= line["expires_at"]:
                broken.add(C.CREDIT_LINE_EXPIRED)
            if line["used"] + amount > line["limit"]:
                broken.add(C.CREDIT_LIMIT_EXCEEDED)
        headroom, draws, invoices_ok = 0, [], True
        for doc_id in invoice_ids:
            doc = self.docs.get(doc_id)
            if doc is None:
                broken.add(C.UNKNOWN_DOC)
            elif doc["kind"] != "invoice":
                broken.add(C.NOT_AN_INVOICE)
            elif doc["status"] != "confirmed":
                broken.add(C.DOC_NOT_CONFIRMED)
            elif {doc["issuer"], doc["counterparty"]} != {signer, to}:
                broken.add(C.INVOICE_PARTIES_MISMATCH)
            else:
                take = min(amount - headroom, doc["amount"] - doc["backed"])
                headroom += take
                if take:
                    draws.append((doc_id, take))
                continue
            invoices_ok = False
        if invoices_ok and headroom < amount:
            broken.add(C.INVOICE_HEADROOM_EXCEEDED)
        body = {"to": to, "amount": amount, "maturity": maturity, "bank": bank, "invoice_ids": invoice_ids}
        result = self.submit(signer, "ecert.issue", body, broken)
        if result is not None:
            cid = self.new_cert(result["tx_id"], 0, root_id=None, parent_id=None, debtor=signer, holder=to,
                                amount=amount, maturity=maturity, status="issued", bank=bank, invoices=draws)
            self.certs[cid]["root_id"] = cid
            assert result["certs"] == [cid]
            assert line is not None
            line["used"] += amount
            for doc_id, take in draws:
                self.docs[doc_id]["backed"] += take
            return cid
        return None

    def holder_checks(self, cid: str, signer: str, kind_from: set[str], broken: set[str]) -> dict[str, Any] | None:
        cert = self.certs.get(cid)
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
            return None
        if cert["holder"] != signer:
            broken.add(C.NOT_HOLDER)
        if cert["status"] not in kind_from:
            broken.add(C.INVALID_STATUS_TRANSITION)
        return cert

    @rule(signer=st.sampled_from(SUPPLIERS + CORES), reject=st.booleans(), data=st.data())
    def accept_or_reject(self, signer: str, reject: bool, data: st.DataObject) -> None:
        cid = self.pick_cert(data, "issued")
        if cid in self.certs and data.draw(st.booleans()):
            signer = self.certs[cid]["holder"]
        self.do_accept_or_reject(signer, cid, reject)

    def do_accept_or_reject(self, signer: str, cid: str, reject: bool) -> None:
        broken: set[str] = set()
        cert = self.holder_checks(cid, signer, {"issued"}, broken)
        kind = "ecert.reject" if reject else "ecert.accept"
        if self.submit(signer, kind, {"cert_id": cid}, broken) is None:
            return
        assert cert is not None
        if not reject:
            cert["status"] = "active"
            return
        cert["status"] = "cancelled"
        self.lines[(cert["bank"], cert["debtor"])]["used"] -= cert["amount"]
        for doc_id, take in cert["invoices"]:
            self.docs[doc_id]["backed"] -= take

    def children(self, result: dict[str, Any], parent: dict[str, Any], parts: list[tuple[str, int]]) -> None:
        ids = [self.new_cert(result["tx_id"], i, root_id=parent["root_id"], parent_id=parent["id"],
                             debtor=parent["debtor"], holder=holder, amount=amount, maturity=parent["maturity"],
                             status="active", bank=parent["bank"], invoices=[])
               for i, (holder, amount) in enumerate(parts)]
        assert result["certs"] == ids
        parent["status"] = "split"
        parent["children"] = ids

    @rule(signer=st.sampled_from(ORGS), data=st.data(),
          to=st.lists(st.tuples(st.sampled_from([*ORGS, *EXTRA]), amounts), min_size=1, max_size=3))
    def transfer(self, signer: str, data: st.DataObject, to: list[tuple[str, int]]) -> None:
        cid = self.pick_cert(data, "active")
        if cid in self.certs and data.draw(st.booleans()):  # make it plausible: the holder, modest amounts
            signer = self.certs[cid]["holder"]
            to = [(org, max(1, amount * self.certs[cid]["amount"] // 4000)) for org, amount in to]
            plausible = {org: amount for org, amount in to if org != signer}
            to = list(plausible.items()) or to
        self.do_transfer(signer, cid, to)

    def do_transfer(self, signer: str, cid: str, to: list[tuple[str, int]]) -> None:
        broken: set[str] = set()
        cert = self.holder_checks(cid, signer, {"active"}, broken)
        if cert is not None and self.w.now >= cert["maturity"]:
            broken.add(C.CERT_MATURED)
        seen: set[str] = set()
        for org, _ in to:
            if org == signer:
                broken.add(C.SAME_PARTY)
            if org in seen:
                broken.add(C.DUPLICATE_RECIPIENT)
            seen.add(org)
            self.active(org, broken)
        total = sum(a for _, a in to)
        if cert is not None and total > cert["amount"]:
            broken.add(C.AMOUNTS_EXCEED_CERT)
        body = {"cert_id": cid, "to": [{"org": org, "amount": a} for org, a in to]}
        result = self.submit(signer, "ecert.transfer", body, broken)
        if result is not None:
            assert cert is not None
            parts = list(to) + ([(signer, cert["amount"] - total)] if total < cert["amount"] else [])
            self.children(result, cert, parts)

    @rule(data=st.data(), n=st.integers(1, 3))
    def transfer_plausible(self, data: st.DataObject, n: int) -> None:
        """The holder passes parts of an active certificate on to distinct active orgs."""
        active = [c for c in self.order if self.certs[c]["status"] == "active"]
        if not active:
            return
        cert = self.certs[data.draw(st.sampled_from(active))]
        others = sorted(o for o, m in self.orgs.items() if m["status"] == "active" and o != cert["holder"])
        recipients = data.draw(st.lists(st.sampled_from(others), min_size=1, max_size=n, unique=True))
        budget = cert["amount"]
        to = [(org, data.draw(st.integers(1, max(1, budget // (2 * n))))) for org in recipients]
        self.do_transfer(cert["holder"], cert["id"], to)

    @rule(data=st.data(), parts=st.integers(2, 4), exact=st.booleans())
    def split(self, data: st.DataObject, parts: int, exact: bool) -> None:
        cid = self.pick_cert(data, "active")
        cert = self.certs.get(cid)
        signer = cert["holder"] if cert is not None else "tier1"
        total = cert["amount"] if cert is not None else 100
        cuts = data.draw(st.lists(st.integers(1, max(1, total - 1)), min_size=parts - 1, max_size=parts - 1))
        bounds = sorted({0, *cuts, total})
        pieces = [b - a for a, b in itertools.pairwise(bounds)]
        if not exact or len(pieces) < 2:
            pieces = [max(1, total // 2), max(1, total // 2) + 1]
        broken: set[str] = set()
        self.holder_checks(cid, signer, {"active"}, broken)
        if cert is not None and sum(pieces) != cert["amount"]:
            broken.add(C.SPLIT_SUM_MISMATCH)
        result = self.submit(signer, "ecert.split", {"cert_id": cid, "amounts": pieces}, broken)
        if result is not None:
            assert cert is not None
            self.children(result, cert, [(signer, p) for p in pieces])

    @rule(data=st.data(), bank=st.sampled_from([*BANKS, "geely", "tier3"]))
    def finance_request(self, data: st.DataObject, bank: str) -> None:
        cid = self.pick_cert(data, "active")
        cert = self.certs.get(cid)
        self.do_finance_request(cert["holder"] if cert is not None else "tier1", cid, bank)

    @rule(data=st.data(), bank=st.sampled_from(BANKS), approve=st.booleans(), bps=st.integers(0, 2000))
    def finance_plausible(self, data: st.DataObject, bank: str, approve: bool, bps: int) -> None:
        active = [c for c in self.order if self.certs[c]["status"] == "active"]
        if not active:
            return
        cid = data.draw(st.sampled_from(active))
        self.do_finance_request(self.certs[cid]["holder"], cid, bank)
        self.do_finance_answer(bank, cid, approve, bps)

    @rule(data=st.data())
    def settle_plausible(self, data: st.DataObject) -> None:
        live = [c for c in self.order if self.certs[c]["status"] in LIVE]
        if not live:
            return
        cert = self.certs[data.draw(st.sampled_from(live))]
        self.w.now = max(self.w.now, cert["maturity"])
        self.do_settle(cert["debtor"], cert["id"])

    def do_finance_request(self, signer: str, cid: str, bank: str) -> None:
        cert = self.certs.get(cid)
        broken: set[str] = set()
        self.holder_checks(cid, signer, {"active"}, broken)
        if cert is not None and self.w.now >= cert["maturity"]:
            broken.add(C.CERT_MATURED)
        if bank == signer:
            broken.add(C.SAME_PARTY)
        if self.orgs[bank]["role"] != "bank":
            broken.add(C.NOT_A_BANK)
        elif self.orgs[bank]["status"] != "active":
            broken.add(C.ORG_NOT_ACTIVE)
        if self.submit(signer, "finance.request", {"cert_id": cid, "bank": bank}, broken) is not None:
            assert cert is not None
            cert["status"] = "financing"
            cert["finance_bank"] = bank

    @rule(data=st.data(), signer=st.sampled_from([*BANKS, "tier1"]), approve=st.booleans(),
          bps=st.integers(0, 10_000))
    def finance_answer(self, data: st.DataObject, signer: str, approve: bool, bps: int) -> None:
        cid = self.pick_cert(data, "financing")
        cert = self.certs.get(cid)
        if cert is not None and cert["finance_bank"] and data.draw(st.booleans()):
            signer = cert["finance_bank"]
        self.do_finance_answer(signer, cid, approve, bps)

    def do_finance_answer(self, signer: str, cid: str, approve: bool, bps: int) -> None:
        cert = self.certs.get(cid)
        broken: set[str] = set()
        days = discount = 0
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if cert["status"] != "financing":
                broken.add(C.INVALID_STATUS_TRANSITION)
            elif cert["finance_bank"] != signer:
                broken.add(C.NOT_FINANCE_BANK)
            if approve and self.w.now >= cert["maturity"]:
                broken.add(C.CERT_MATURED)
            elif approve:
                days = (cert["maturity"] - self.w.now + DAY - 1) // DAY
                discount = cert["amount"] * bps * days // (10_000 * 360)
                if discount >= cert["amount"]:
                    broken.add(C.DISCOUNT_TOO_LARGE)
        if approve:
            result = self.submit(signer, "finance.approve", {"cert_id": cid, "discount_bps": bps}, broken)
        else:
            result = self.submit(signer, "finance.decline", {"cert_id": cid, "reason": "r"}, broken)
        if result is None:
            return
        assert cert is not None
        if approve:
            assert (result["days"], result["discount"], result["disbursed"]) == (days, discount,
                                                                                 cert["amount"] - discount)
            cert["status"] = "financed"
            cert["holder"] = signer
        else:
            cert["status"] = "active"
            cert["finance_bank"] = None

    @rule(data=st.data(), signer=st.sampled_from([*CORES, "tier1"]))
    def settle(self, data: st.DataObject, signer: str) -> None:
        cid = self.pick_cert(data)
        cert = self.certs.get(cid)
        if cert is not None and data.draw(st.booleans()):
            signer = cert["debtor"]
        self.do_settle(signer, cid)

    def do_settle(self, signer: str, cid: str) -> None:
        cert = self.certs.get(cid)
        broken: set[str] = set()
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if cert["debtor"] != signer:
                broken.add(C.NOT_DEBTOR)
            if cert["status"] not in {"active", "financing", "financed"}:
                broken.add(C.INVALID_STATUS_TRANSITION)
            if self.w.now < cert["maturity"]:
                broken.add(C.NOT_MATURED)
        result = self.submit(signer, "ecert.settle", {"cert_id": cid}, broken)
        if result is not None:
            assert cert is not None
            assert result["paid_to"] == cert["holder"]
            cert["status"] = "settled"
            self.lines[(cert["bank"], cert["debtor"])]["used"] -= cert["amount"]

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if not self.committed_raws:
            return
        signer, kind, raw = data.draw(st.sampled_from(self.committed_raws))
        outcome = self.w.apply(raw)
        assert outcome.status == "rejected"
        active = self.orgs[signer]["status"] == "active" or kind == "org.register"
        allowed = {C.NONCE_REUSED} if active else {C.SIGNER_NOT_ACTIVE}
        assert outcome.error_code in allowed

    # --- agreement -----------------------------------------------------------------------------------------------

    @invariant()
    def model_agrees_with_chain(self) -> None:
        view, now = self.w.view, self.w.now
        for org in [*ORGS, *EXTRA]:
            got = queries.get_org(view, org)
            if org not in self.orgs:
                assert got is None
            else:
                assert got is not None and (got["status"], got["role"]) == (self.orgs[org]["status"],
                                                                            self.orgs[org]["role"])
        for (bank, core), m in self.lines.items():
            line = queries.get_credit_line(view, bank, core)
            assert line is not None and (line["limit"], line["used"]) == (m["limit"], m["used"])
        for doc_id, m in self.docs.items():
            doc = queries.get_trade_doc(view, doc_id)
            assert doc is not None and (doc["status"], doc["backed"]) == (m["status"], m["backed"])
        for cid, m in self.certs.items():
            c = queries.get_cert(view, cid, now=now)
            assert c is not None
            got = {k: c[k] for k in ("root_id", "parent_id", "debtor", "holder", "amount", "maturity", "status")}
            assert got == {k: m[k] for k in got}, cid
            assert c["children"] == m["children"]
            assert c["overdue"] == (m["status"] in LIVE and now >= m["maturity"])
        for org in ORGS:
            held = sorted(c["id"] for c in queries.get_holdings(view, org)["certs"])  # type: ignore[index]
            assert held == sorted(cid for cid, m in self.certs.items() if m["holder"] == org and m["status"] in LIVE)


EcertModel.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None,
                                        suppress_health_check=[HealthCheck.too_slow])
test_ecert_model = EcertModel.TestCase


@pytest.mark.soak
def test_ecert_model_soak() -> None:
    """Opt-in (-m soak): the same machine, far longer."""
    run_state_machine_as_test(EcertModel, settings=settings(max_examples=3000, stateful_step_count=120,
                                                            deadline=None,
                                                            suppress_health_check=[HealthCheck.too_slow]))
