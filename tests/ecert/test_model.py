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
from ecert import disputes, financing, queries
from ecert.tx import decode_envelope, tx_id_of
from tests.ecert.world import DAY, GENESIS_ORGS, World

ORGS = [o for o, _, _ in GENESIS_ORGS]
BANKS = [o for o, _, r in GENESIS_ORGS if r == "bank"]
CORES = [o for o, _, r in GENESIS_ORGS if r == "core"]
SUPPLIERS = [o for o, _, r in GENESIS_ORGS if r == "supplier"]
EXTRA = ["newco", "newbank"]  # not in genesis: registered (or not) during the run
LIVE = {"issued", "active", "financing", "financed", "defaulted"}
PAYABLE = {"active", "financing", "financed", "defaulted"}
GRACE, WINDOW, PENALTY_BPS = 10 * DAY, 7 * DAY, 5  # the default chain parameters (settlement)
ORG_MOVES = {"org.approve": ("pending", "active"), "org.freeze": ("active", "frozen"),
             "org.unfreeze": ("frozen", "active")}

amounts = st.integers(min_value=1, max_value=1200)
REGULATOR = "pbc"
REGULATOR_KINDS = {"org.freeze", "org.unfreeze", "org.rotate_key", "member.propose", "member.approve",
                   "dispute.resolve", "complaint.close"}
DISPUTE_WINDOW = 30 * DAY  # the default chain parameters
COMPLAINT_WINDOW = 15 * DAY


def model_cert_id(tx_id: str, index: int) -> str:
    return "EC" + hashlib.sha256(bytes.fromhex(tx_id) + index.to_bytes(4, "big")).hexdigest()[:32]


class EcertModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.w = World(regulator=True)  # the regulator resolves disputes and closes complaints (only those)
        self.orgs: dict[str, dict[str, str]] = {o: {"role": r, "status": "active"} for o, _, r in GENESIS_ORGS}
        self.orgs[REGULATOR] = {"role": "regulator", "status": "active"}
        self.lines: dict[tuple[str, str], dict[str, int]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.certs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []  # cert ids in creation order
        self.committed_raws: list[tuple[str, str, bytes]] = []
        self.doc_seq = 0
        # disputes and complaints (the rules in the block "disputes and complaints" below)
        self.disputes: dict[str, dict[str, Any]] = {}
        self.locks: dict[tuple[str, str], str] = {}  # ("cert" | "doc", id) -> the unresolved dispute on it
        self.complaints: dict[str, dict[str, Any]] = {}
        self.open_complaints: dict[str, int] = {}
        # payment, default, recourse, financing limits (the block "settlement" below)
        self.exposure: dict[tuple[str, str], dict[str, Any]] = {}  # (bank, org) -> {"limit", "used"}
        self.claims: dict[str, dict[str, Any]] = {}

    # --- plumbing ------------------------------------------------------------------------------------------------

    def submit(self, signer: str, kind: str, body: dict[str, Any], broken: set[str]) -> dict[str, Any] | None:
        """Apply the tx; check it commits iff the model found nothing broken. Returns the result if committed."""
        if signer not in self.orgs and kind != "org.register":
            broken = {C.UNKNOWN_SIGNER}  # authentication comes before every rule
        elif signer in self.orgs and self.orgs[signer]["status"] != "active" and kind != "org.register":
            broken = {C.SIGNER_NOT_ACTIVE}
        elif signer == REGULATOR and kind not in REGULATOR_KINDS:
            broken = {C.ROLE_NOT_ALLOWED}
        self.cancel_due()  # the block's begin (World.apply) cancels them before the tx, whichever rule moved time
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
        """An active business party: a recipient, a counterparty (never the regulator)."""
        if org not in self.orgs:
            broken.add(C.UNKNOWN_ORG)
        elif self.orgs[org]["status"] != "active":
            broken.add(C.ORG_NOT_ACTIVE)
        elif org == REGULATOR:
            broken.add(C.REGULATOR_NOT_PARTY)

    def new_cert(self, tx_id: str, index: int, **fields: Any) -> str:
        cid = model_cert_id(tx_id, index)
        self.certs[cid] = {"id": cid, "children": [], "finance_bank": None, "seller": None, "paid": 0, "acc": 0,
                           "acc_day": 0, "penalty_paid": 0, "recourse": False, "accept_by": None, **fields}
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
        self.expire()

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

    def do_anchor(self, signer: str, other: str, amount: int, kind: str, doc_id: str,
                  contract_id: str | None = None) -> None:
        broken: set[str] = set()
        if doc_id in self.docs:
            broken.add(C.DOC_EXISTS)
        if other == signer:
            broken.add(C.SAME_PARTY)
        self.active(other, broken)
        if contract_id is not None:
            self.contract_checks(signer, other, amount, kind, contract_id, broken)
        body: dict[str, Any] = {"doc_id": doc_id, "kind": kind, "doc_hash": "ab" * 32, "counterparty": other,
                                "amount": amount}
        if contract_id is not None:
            body["contract_id"] = contract_id
        if self.submit(signer, "trade.anchor", body, broken) is not None:
            self.docs[doc_id] = {"kind": kind, "issuer": signer, "counterparty": other, "amount": amount,
                                 "status": "anchored", "backed": 0, "drawn": 0, "invoiced": 0,
                                 "contract": contract_id}
            if contract_id is not None:
                self.docs[contract_id]["invoiced"] += amount

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
            self.unlocked("doc", doc_id, broken)
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
            elif ("doc", doc_id) in self.locks:
                broken.add(C.DOC_DISPUTED)
            else:
                take = min(amount - headroom, self.headroom(doc))
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
                                amount=amount, maturity=maturity, status="issued", bank=bank, invoices=draws,
                                trade_docs=[])
            self.certs[cid]["root_id"] = cid
            self.certs[cid]["accept_by"] = self.w.now + WINDOW
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
        self.unlocked("cert", cid, broken)
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
                             status="active", bank=parent["bank"], invoices=[], trade_docs=[])
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

    def do_transfer(self, signer: str, cid: str, to: list[tuple[str, int]],
                    trade_docs: list[str] | None = None) -> None:
        broken: set[str] = set()
        cert = self.holder_checks(cid, signer, {"active"}, broken)
        if cert is not None and self.w.now >= cert["maturity"]:
            broken.add(C.CERT_MATURED)
        self.unpaid_check(cert, broken)
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
        draws = self.trade_draws(signer, to, trade_docs, broken)
        body: dict[str, Any] = {"cert_id": cid, "to": [{"org": org, "amount": a} for org, a in to]}
        if trade_docs is not None:
            body["trade_docs"] = trade_docs
        result = self.submit(signer, "ecert.transfer", body, broken)
        if result is not None:
            assert cert is not None
            parts = list(to) + ([(signer, cert["amount"] - total)] if total < cert["amount"] else [])
            self.children(result, cert, parts)
            for child_id, drew in zip(cert["children"], draws, strict=False):
                self.certs[child_id]["trade_docs"] = drew
                for doc_id, take in drew:
                    self.docs[doc_id]["drawn"] += take

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
        self.unpaid_check(cert, broken)
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
        self.expire()
        self.do_settle(cert["debtor"], cert["id"])

    def do_finance_request(self, signer: str, cid: str, bank: str) -> None:
        cert = self.certs.get(cid)
        broken: set[str] = set()
        self.holder_checks(cid, signer, {"active"}, broken)
        self.unpaid_check(cert, broken)
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
            self.unlocked("cert", cid, broken)
            if approve and self.w.now >= cert["maturity"]:
                broken.add(C.CERT_MATURED)
            elif approve:
                days = (cert["maturity"] - self.w.now + DAY - 1) // DAY
                discount = cert["amount"] * bps * days // (10_000 * 360)
                if discount >= cert["amount"]:
                    broken.add(C.DISCOUNT_TOO_LARGE)
            if approve:
                for org in {cert["holder"], cert["debtor"]}:
                    line = self.exposure.get((signer, org))
                    if line is not None and line["limit"] is not None and line["used"] + cert["amount"] > line["limit"]:
                        broken.add(C.FINANCE_LIMIT_EXCEEDED)
        recourse = (True, False, None)[bps % 3]  # from the drawn rate: with, without, omitted
        if approve:
            body: dict[str, Any] = {"cert_id": cid, "discount_bps": bps}
            if recourse is not None:
                body["recourse"] = recourse
            result = self.submit(signer, "finance.approve", body, broken)
        else:
            result = self.submit(signer, "finance.decline", {"cert_id": cid, "reason": "r"}, broken)
        if result is None:
            return
        assert cert is not None
        if approve:
            assert (result["days"], result["discount"], result["disbursed"]) == (days, discount,
                                                                                 cert["amount"] - discount)
            assert result.get("recourse") == recourse
            cert["status"] = "financed"
            cert["seller"] = cert["holder"]
            cert["holder"] = signer
            cert["recourse"] = bool(recourse)
            for org in {cert["seller"], cert["debtor"]}:
                self.exposure.setdefault((signer, org), {"limit": None, "used": 0})["used"] += cert["amount"]
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
            if cert["status"] not in PAYABLE:
                broken.add(C.INVALID_STATUS_TRANSITION)
            if self.w.now < cert["maturity"]:
                broken.add(C.NOT_MATURED)
            self.unlocked("cert", cid, broken)
        result = self.submit(signer, "ecert.settle", {"cert_id": cid}, broken)
        if result is not None:
            assert cert is not None
            assert result["paid_to"] == cert["holder"]
            owed, penalty = cert["amount"] - cert["paid"], self.penalty_due(cert)
            if cert["paid"] or cert["status"] == "defaulted":
                assert (result["principal"], result["penalty"]) == (owed, penalty)
            self.pay_model(cert, owed, penalty)

    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        if not self.committed_raws:
            return
        signer, kind, raw = data.draw(st.sampled_from(self.committed_raws))
        self.cancel_due()  # as in submit: the block's begin runs first
        outcome = self.w.apply(raw)
        assert outcome.status == "rejected"
        active = self.orgs[signer]["status"] == "active" or kind == "org.register"
        allowed = {C.NONCE_REUSED} if active else {C.SIGNER_NOT_ACTIVE}
        assert outcome.error_code in allowed

    # --- settlement: payment, default, recourse, limits, revoke, acceptance (ecert/settlement.py, financing.py) --

    def expire(self) -> None:
        """Time moved: the next block cancels every root past its acceptance deadline (the chain: begin_block)."""
        assert self.w.begin_block() == self.cancel_due()

    def cancel_due(self) -> list[str]:
        due = sorted((m["accept_by"], cid) for cid, m in self.certs.items()
                     if m["status"] == "issued" and m["accept_by"] is not None and m["accept_by"] <= self.w.now)
        for _, cid in due:
            self.cancel_model(self.certs[cid])
        return [cid for _, cid in due]

    def cancel_model(self, cert: dict[str, Any]) -> None:
        cert["status"] = "cancelled"
        self.lines[(cert["bank"], cert["debtor"])]["used"] -= cert["amount"]
        for doc_id, take in cert["invoices"]:
            self.docs[doc_id]["backed"] -= take

    def unpaid_check(self, cert: dict[str, Any] | None, broken: set[str]) -> None:
        if cert is not None and cert["paid"]:
            broken.add(C.CERT_PARTLY_PAID)

    def accrue(self, cert: dict[str, Any]) -> None:
        """Penalty accrues per whole day after maturity on the unpaid principal of the stretch; the chain
        accrues at each payment, settlement and default, so the model does at the same moments."""
        day = max(0, (self.w.now - cert["maturity"]) // DAY)
        if day > cert["acc_day"]:
            gain = (cert["amount"] - cert["paid"]) * PENALTY_BPS * (day - cert["acc_day"]) // 10_000
            cert["acc"] = min(cert["amount"], cert["acc"] + gain)
            cert["acc_day"] = day

    def penalty_due(self, cert: dict[str, Any]) -> int:
        if cert["status"] != "defaulted":
            return 0
        day = max(0, (self.w.now - cert["maturity"]) // DAY)
        gain = (cert["amount"] - cert["paid"]) * PENALTY_BPS * max(0, day - cert["acc_day"]) // 10_000
        return min(cert["amount"], cert["acc"] + gain) - cert["penalty_paid"]

    def pay_model(self, cert: dict[str, Any], principal: int, penalty: int) -> None:
        self.accrue(cert)
        bank_holds = cert["seller"] is not None and cert["holder"] == cert["finance_bank"]
        cert["paid"] += principal
        cert["penalty_paid"] += penalty
        self.lines[(cert["bank"], cert["debtor"])]["used"] -= principal
        if bank_holds and principal:
            for org in {cert["seller"], cert["debtor"]}:
                self.exposure[(cert["holder"], org)]["used"] -= principal
        if cert["paid"] == cert["amount"] and self.penalty_due(cert) == 0:
            cert["status"] = "settled"
        elif cert["status"] == "financing":
            cert["status"] = "active"
            cert["finance_bank"] = None

    def pick_payable(self, data: st.DataObject) -> str:
        payable = [c for c in self.order if self.certs[c]["status"] in PAYABLE]
        if payable and data.draw(st.integers(0, 4)) > 0:
            return data.draw(st.sampled_from(payable))
        return self.pick_cert(data)

    @rule(data=st.data(), signer=st.sampled_from([*CORES, "tier1"]), part=st.integers(1, 4), exact=st.booleans())
    def pay(self, data: st.DataObject, signer: str, part: int, exact: bool) -> None:
        cid = self.pick_payable(data)
        cert = self.certs.get(cid)
        if cert is not None and data.draw(st.booleans()):
            signer = cert["debtor"]
        due = 0 if cert is None else cert["amount"] - cert["paid"] + self.penalty_due(cert)
        amount = due if exact and due > 0 else max(1, due // part + (1 if part == 4 else 0))  # part 4: 1 too many
        self.pay_amount(signer, cid, amount)

    def pay_amount(self, signer: str, cid: str, amount: int) -> None:
        cert = self.certs.get(cid)
        broken: set[str] = set()
        due = 0
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if cert["debtor"] != signer:
                broken.add(C.NOT_DEBTOR)
            if cert["status"] not in PAYABLE:
                broken.add(C.INVALID_STATUS_TRANSITION)
            self.unlocked("cert", cid, broken)
            due = cert["amount"] - cert["paid"] + self.penalty_due(cert)
        if amount > due:
            broken.add(C.AMOUNT_EXCEEDS_DUE)
        result = self.submit(signer, "ecert.pay", {"cert_id": cid, "amount": amount}, broken)
        if result is not None:
            assert cert is not None
            principal = min(amount, cert["amount"] - cert["paid"])
            assert (result["paid_to"], result["principal"], result["penalty"]) == (cert["holder"], principal,
                                                                                    amount - principal)
            self.pay_model(cert, principal, amount - principal)
            assert result["status"] == cert["status"]

    @rule(data=st.data(), signer=st.sampled_from([*ORGS]), late=st.booleans())
    def default(self, data: st.DataObject, signer: str, late: bool) -> None:
        cid = self.pick_payable(data)
        cert = self.certs.get(cid)
        if cert is not None and data.draw(st.booleans()):
            signer = cert["holder"]
        self.do_default(signer, cid, late)

    def do_default(self, signer: str, cid: str, late: bool) -> None:
        cert = self.certs.get(cid)
        if cert is not None and late:
            self.w.now = max(self.w.now, cert["maturity"] + GRACE)
            self.expire()
        broken: set[str] = set()
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if cert["holder"] != signer:
                broken.add(C.NOT_HOLDER)
            if cert["status"] not in {"active", "financing", "financed"}:
                broken.add(C.INVALID_STATUS_TRANSITION)
            self.unlocked("cert", cid, broken)
            if self.w.now < cert["maturity"] + GRACE:
                broken.add(C.GRACE_NOT_OVER)
        result = self.submit(signer, "ecert.default", {"cert_id": cid}, broken)
        if result is None:
            return
        assert cert is not None
        self.accrue(cert)
        owed = cert["amount"] - cert["paid"]
        if cert["status"] == "financing":
            cert["finance_bank"] = None
        elif cert["status"] == "financed" and cert["recourse"]:
            bank = cert["holder"]
            self.claims[cid] = {"bank": bank, "seller": cert["seller"], "amount": owed, "repaid": 0,
                                "written_off": 0, "status": "open"}
            cert["holder"] = cert["seller"]
            if cert["debtor"] != cert["seller"]:
                self.exposure[(bank, cert["debtor"])]["used"] -= owed
        cert["status"] = "defaulted"
        assert (result["holder"], result["unpaid"]) == (cert["holder"], owed)
        assert (result["claim"] is None) == (cid not in self.claims)

    @rule(data=st.data(), part=st.integers(1, 3), late=st.booleans())
    def pay_plausible(self, data: st.DataObject, part: int, late: bool) -> None:
        """The debtor pays a payable leaf a part (or, part 1, all) of what is due, late or on time."""
        payable = [c for c in self.order if self.certs[c]["status"] in PAYABLE]
        if not payable:
            return
        cert = self.certs[data.draw(st.sampled_from(payable))]
        if late:
            self.w.now = max(self.w.now, cert["maturity"] + data.draw(st.integers(0, 3 * GRACE)))
            self.expire()
        due = cert["amount"] - cert["paid"] + self.penalty_due(cert)
        self.pay_amount(cert["debtor"], cert["id"], max(1, due // part))

    @rule(data=st.data())
    def default_plausible(self, data: st.DataObject) -> None:
        """The holder of an unpaid leaf past its grace period declares it defaulted."""
        unpaid = [c for c in self.order if self.certs[c]["status"] in {"active", "financing", "financed"}]
        if not unpaid:
            return
        cid = data.draw(st.sampled_from(unpaid))
        self.do_default(self.certs[cid]["holder"], cid, late=True)

    @rule(pair=st.sampled_from([("geely", "boc"), ("byd", "icbc")]), to=st.sampled_from(SUPPLIERS), amount=amounts,
          finance=st.sampled_from([None, True, False]))
    def default_story(self, pair: tuple[str, str], to: str, amount: int, finance: bool | None) -> None:
        """Issued, accepted, perhaps financed (with or without recourse), unpaid past its grace: defaulted."""
        core, bank = pair
        doc_id = self.next_doc_id()
        self.do_anchor(to, core, amount, "invoice", doc_id)
        self.do_confirm(core, doc_id)
        cid = self.do_issue(core, to, amount, self.w.now + 2 * DAY, bank, [doc_id])
        if cid is None:
            return
        self.do_accept_or_reject(to, cid, reject=False)
        if finance is not None:
            self.do_finance_request(to, cid, bank)
            self.do_finance_answer(bank, cid, True, 0 if finance else 1)  # bps % 3: 0 with recourse, 1 without
        self.do_default(self.certs[cid]["holder"], cid, late=True)
        claim = self.claims.get(cid)
        if claim is not None:  # the seller repays half; then the bank writes off the rest, or the seller repays it
            self.do_recourse(claim["seller"], cid, False, 2)
            if amount % 2:
                self.do_recourse(claim["bank"], cid, True, 1)
            else:
                self.do_recourse(claim["seller"], cid, False, 1)

    @rule(data=st.data(), signer=st.sampled_from([*SUPPLIERS, *BANKS]), write_off=st.booleans(),
          part=st.integers(1, 3))
    def recourse(self, data: st.DataObject, signer: str, write_off: bool, part: int) -> None:
        cid = data.draw(st.sampled_from(sorted(self.claims))) if self.claims else "EC" + "0" * 32
        claim = self.claims.get(cid)
        if claim is not None and data.draw(st.booleans()):
            signer = claim["bank"] if write_off else claim["seller"]
        self.do_recourse(signer, cid, write_off, part)

    def do_recourse(self, signer: str, cid: str, write_off: bool, part: int) -> None:
        claim = self.claims.get(cid)
        broken: set[str] = set()
        outstanding = 0 if claim is None else claim["amount"] - claim["repaid"] - claim["written_off"]
        amount = max(1, outstanding // part) if part < 3 else outstanding + 1
        if claim is None:
            broken.add(C.UNKNOWN_CLAIM)
        else:
            if signer != (claim["bank"] if write_off else claim["seller"]):
                broken.add(C.NOT_CLAIM_BANK if write_off else C.NOT_SELLER)
            if claim["status"] != "open":
                broken.add(C.CLAIM_CLOSED)
            elif not write_off and amount > outstanding:
                broken.add(C.AMOUNT_EXCEEDS_CLAIM)
        if write_off:
            result = self.submit(signer, "recourse.write_off", {"cert_id": cid}, broken)
        else:
            result = self.submit(signer, "recourse.repay", {"cert_id": cid, "amount": amount}, broken)
        if result is None:
            return
        assert claim is not None
        gone = outstanding if write_off else amount
        claim["written_off" if write_off else "repaid"] += gone
        self.exposure[(claim["bank"], claim["seller"])]["used"] -= gone
        if claim["repaid"] + claim["written_off"] == claim["amount"]:
            claim["status"] = "closed"
        assert result["status"] == claim["status"]

    @rule(signer=st.sampled_from([*BANKS, *BANKS, "geely"]), org=st.sampled_from([*SUPPLIERS, *CORES, "icbc"]),
          limit=st.integers(0, 4000))
    def finance_limit(self, signer: str, org: str, limit: int) -> None:
        broken: set[str] = set()
        line = self.exposure.get((signer, org), {"limit": None, "used": 0})
        if self.orgs[signer]["role"] != "bank":
            broken.add(C.ROLE_NOT_ALLOWED)
        if self.orgs[org]["role"] not in ("core", "supplier"):
            broken.add(C.NOT_CORE_OR_SUPPLIER)
        if limit < line["used"]:
            broken.add(C.LIMIT_BELOW_USED)
        if self.submit(signer, "finance.limit", {"org": org, "limit": limit}, broken) is not None:
            self.exposure[(signer, org)] = {"limit": limit, "used": line["used"]}

    @rule(data=st.data(), signer=st.sampled_from([*CORES, "tier1"]))
    def settle_root(self, data: st.DataObject, signer: str) -> None:
        roots = [c for c in self.order if self.certs[c]["parent_id"] is None]
        cid = data.draw(st.sampled_from(roots)) if roots else "EC" + "0" * 32
        root = self.certs.get(cid)
        if root is not None and data.draw(st.booleans()):
            signer = root["debtor"]
            self.w.now = max(self.w.now, root["maturity"])
            self.expire()
        broken: set[str] = set()
        leaves = [m for m in self.certs.values() if root is not None and m["root_id"] == cid
                  and m["status"] in PAYABLE]
        if root is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if root["debtor"] != signer:
                broken.add(C.NOT_DEBTOR)
            if root["status"] in ("issued", "cancelled"):
                broken.add(C.INVALID_STATUS_TRANSITION)
            if self.w.now < root["maturity"]:
                broken.add(C.NOT_MATURED)
            if not leaves:
                broken.add(C.NOTHING_TO_SETTLE)
            for leaf in leaves:
                self.unlocked("cert", leaf["id"], broken)
        result = self.submit(signer, "ecert.settle_root", {"root_id": cid}, broken)
        if result is None:
            return
        leaves.sort(key=lambda leaf: self.order.index(leaf["id"]))
        expected = []
        for leaf in leaves:
            owed, penalty = leaf["amount"] - leaf["paid"], self.penalty_due(leaf)
            expected.append({"cert_id": leaf["id"], "paid_to": leaf["holder"], "principal": owed, "penalty": penalty})
            self.pay_model(leaf, owed, penalty)
            assert leaf["status"] == "settled"
        assert result["settled"] == expected

    @rule(data=st.data(), signer=st.sampled_from([*CORES, "tier1"]))
    def revoke(self, data: st.DataObject, signer: str) -> None:
        cid = self.pick_cert(data, "issued")
        cert = self.certs.get(cid)
        if cert is not None and data.draw(st.booleans()):
            signer = cert["debtor"]
        broken: set[str] = set()
        if cert is None:
            broken.add(C.UNKNOWN_CERT)
        else:
            if cert["debtor"] != signer:
                broken.add(C.NOT_DEBTOR)
            if cert["status"] != "issued":
                broken.add(C.INVALID_STATUS_TRANSITION)
            self.unlocked("cert", cid, broken)
        if self.submit(signer, "ecert.revoke", {"cert_id": cid}, broken) is not None:
            assert cert is not None
            self.cancel_model(cert)

    @invariant()
    def settlement_agrees_with_chain(self) -> None:
        from ecert import state

        for cid, m in self.certs.items():
            c = state.get_cert(self.w.view, cid)
            assert c is not None
            assert (c.paid, c.penalty_paid, c.recourse) == (m["paid"], m["penalty_paid"], m["recourse"]), cid
        for (bank, org), m in self.exposure.items():
            line = financing.get_exposure(self.w.view, bank, org)
            assert line is not None and (line.limit, line.used) == (m["limit"], m["used"]), (bank, org)
        for cid, m in self.claims.items():
            claim = financing.get_claim(self.w.view, cid)
            assert claim is not None
            assert (claim.bank, claim.seller, claim.amount, claim.repaid, claim.written_off, claim.status) == (
                m["bank"], m["seller"], m["amount"], m["repaid"], m["written_off"], m["status"])

    # --- disputes and complaints, trade background (ecert/disputes.py, ecert/trade_background.py) ---------------

    def unlocked(self, subject: str, subject_id: str, broken: set[str]) -> None:
        if (subject, subject_id) in self.locks:
            broken.add(C.CERT_DISPUTED if subject == "cert" else C.DOC_DISPUTED)

    @staticmethod
    def headroom(doc: dict[str, Any]) -> int:
        return int(doc["amount"] - doc["backed"] - doc["drawn"] - doc["invoiced"])

    def contract_checks(self, signer: str, other: str, amount: int, kind: str, contract_id: str,
                        broken: set[str]) -> None:
        contract = self.docs.get(contract_id)
        if kind != "invoice":
            broken.add(C.NOT_AN_INVOICE)
        elif contract is None:
            broken.add(C.UNKNOWN_DOC)
        elif contract["kind"] != "contract":
            broken.add(C.NOT_A_CONTRACT)
        elif contract["status"] != "confirmed":
            broken.add(C.DOC_NOT_CONFIRMED)
        elif {contract["issuer"], contract["counterparty"]} != {signer, other}:
            broken.add(C.CONTRACT_PARTIES_MISMATCH)
        elif ("doc", contract_id) in self.locks:
            broken.add(C.DOC_DISPUTED)
        elif amount > self.headroom(contract):
            broken.add(C.CONTRACT_AMOUNT_EXCEEDED)

    def trade_draws(self, holder: str, to: list[tuple[str, int]], doc_ids: list[str] | None,
                    broken: set[str]) -> list[list[tuple[str, int]]]:
        """Per recipient, the (doc, amount) it draws; adds what the listed documents break."""
        if doc_ids is None:
            return [[] for _ in to]
        owner: dict[str, str] = {}
        for doc_id in doc_ids:
            doc = self.docs.get(doc_id)
            if doc is None:
                broken.add(C.UNKNOWN_DOC)
            elif doc["kind"] not in ("contract", "invoice"):
                broken.add(C.NOT_A_TRADE_DOC)
            elif doc["status"] != "confirmed":
                broken.add(C.DOC_NOT_CONFIRMED)
            elif holder not in (doc["issuer"], doc["counterparty"]) or not (
                    {doc["issuer"], doc["counterparty"]} - {holder}) & {org for org, _ in to}:
                broken.add(C.TRADE_DOC_PARTIES_MISMATCH)
            elif ("doc", doc_id) in self.locks:
                broken.add(C.DOC_DISPUTED)
            else:
                owner[doc_id] = ({doc["issuer"], doc["counterparty"]} - {holder}).pop()
                continue
            return [[] for _ in to]  # the executor stops at the first bad document
        draws = []
        for org, amount in to:
            left, drew = amount, []
            for doc_id in doc_ids:
                if owner[doc_id] == org and left > 0:
                    take = min(left, self.headroom(self.docs[doc_id]))
                    if take > 0:
                        drew.append((doc_id, take))
                        left -= take
            if left > 0:
                broken.add(C.TRADE_HEADROOM_EXCEEDED)
            draws.append(drew)
        return draws

    @rule(data=st.data(), n=st.integers(1, 2), extra=st.booleans())
    def transfer_with_docs(self, data: st.DataObject, n: int, extra: bool) -> None:
        """The holder pays distinct orgs and lists the trade documents it has with them (sometimes one more)."""
        active = [c for c in self.order if self.certs[c]["status"] == "active"]
        if not active:
            return
        cert = self.certs[data.draw(st.sampled_from(active))]
        holder = cert["holder"]
        others = sorted(o for o, m in self.orgs.items() if m["status"] == "active" and o not in (holder, REGULATOR))
        recipients = data.draw(st.lists(st.sampled_from(others), min_size=1, max_size=n, unique=True))
        to = [(org, data.draw(st.integers(1, max(1, cert["amount"] // (2 * n))))) for org in recipients]
        mine = sorted(d for d, doc in self.docs.items()
                      if holder in (doc["issuer"], doc["counterparty"]) and doc["kind"] in ("contract", "invoice")
                      and ({doc["issuer"], doc["counterparty"]} - {holder}) & set(recipients))
        pool = sorted(self.docs) if extra and self.docs else mine
        if not pool:
            self.do_transfer(holder, cert["id"], to, ["none"] if extra else None)
            return
        docs = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4, unique=True))
        self.do_transfer(holder, cert["id"], to, docs)

    @rule(data=st.data(), amount=amounts, confirm=st.booleans())
    def trade_plausible(self, data: st.DataObject, amount: int, confirm: bool) -> None:
        """A contract between two business orgs, confirmed, and sometimes an invoice under it."""
        pair = data.draw(st.lists(st.sampled_from(ORGS), min_size=2, max_size=2, unique=True))
        contract = self.next_doc_id()
        self.do_anchor(pair[0], pair[1], amount * 2, "contract", contract)
        if confirm:
            self.do_confirm(pair[1], contract)
            invoice = self.next_doc_id()
            issuer, other = pair if data.draw(st.booleans()) else pair[::-1]
            self.do_anchor(issuer, other, amount, "invoice", invoice, contract)
            self.do_confirm(other, invoice)

    @rule(signer=st.sampled_from(ORGS), other=st.sampled_from(ORGS), amount=amounts, data=st.data())
    def anchor_under_contract(self, signer: str, other: str, amount: int, data: st.DataObject) -> None:
        contract = data.draw(st.sampled_from(sorted(self.docs))) if self.docs else "none"
        if contract in self.docs and data.draw(st.booleans()):
            signer, other = self.docs[contract]["issuer"], self.docs[contract]["counterparty"]
        kind = data.draw(st.sampled_from(["invoice", "invoice", "delivery"]))
        self.do_anchor(signer, other, amount, kind, self.next_doc_id(), contract)

    def cert_parties(self, cert: dict[str, Any]) -> list[str]:
        out = []
        for org in (cert["holder"], cert["debtor"], cert.get("seller"), cert["finance_bank"]):
            if org is not None and org not in out:
                out.append(org)
        return out

    @rule(data=st.data(), on_doc=st.booleans(), signer=st.sampled_from([*ORGS, REGULATOR]),
          against=st.sampled_from([*ORGS, REGULATOR]))
    def dispute_open(self, data: st.DataObject, on_doc: bool, signer: str, against: str) -> None:
        broken: set[str] = set()
        body: dict[str, Any] = {"against": against, "reason": "r", "evidence_hash": "e1" * 32}
        if on_doc:
            doc_id = data.draw(st.sampled_from(sorted(self.docs))) if self.docs else "none"
            doc = self.docs.get(doc_id)
            parties = [] if doc is None else [doc["issuer"], doc["counterparty"]]
            subject, subject_id, bank = "doc", doc_id, None  # the model seals nothing: no resolver bank
            body["doc_id"] = doc_id
            if doc is None:
                broken.add(C.UNKNOWN_DOC)
        else:
            cid = self.pick_cert(data)
            cert = self.certs.get(cid)
            parties = [] if cert is None else self.cert_parties(cert)
            subject, subject_id, bank = "cert", cid, None if cert is None else cert["bank"]
            body["cert_id"] = cid
            if cert is None:
                broken.add(C.UNKNOWN_CERT)
            elif cert["status"] not in LIVE:
                broken.add(C.CERT_NOT_LIVE)
        if parties and data.draw(st.booleans()):  # plausible: two parties
            signer = data.draw(st.sampled_from(parties))
            against = data.draw(st.sampled_from(parties))
            body["against"] = against
        if parties and signer not in parties:
            broken.add(C.NOT_SUBJECT_PARTY)
        self.unlocked(subject, subject_id, broken)
        if against == signer:
            broken.add(C.SAME_PARTY)
        if parties and against not in parties:
            broken.add(C.RESPONDENT_NOT_PARTY)
        result = self.submit(signer, "dispute.open", body, broken)
        if result is None:
            return
        dispute_id = "DS" + hashlib.sha256(b"dispute.open" + bytes.fromhex(result["tx_id"])).hexdigest()[:32]
        resolver = None if bank in (signer, against) else bank
        assert (result["dispute_id"], result["resolver"]) == (dispute_id, resolver)
        self.disputes[dispute_id] = {"subject": subject, "subject_id": subject_id, "opener": signer,
                                     "respondent": against, "resolver": resolver, "status": "open",
                                     "deadline": self.w.now + DISPUTE_WINDOW}
        self.locks[(subject, subject_id)] = dispute_id

    def pick_record(self, data: st.DataObject, records: dict[str, Any], unknown: str) -> str:
        if not records or data.draw(st.integers(0, 9)) == 0:
            return unknown
        return data.draw(st.sampled_from(sorted(records)))

    @rule(data=st.data(), signer=st.sampled_from([*ORGS, REGULATOR]))
    def dispute_respond(self, data: st.DataObject, signer: str) -> None:
        dispute_id = self.pick_record(data, self.disputes, "DS00")
        dispute = self.disputes.get(dispute_id)
        if dispute is not None and data.draw(st.booleans()):
            signer = dispute["respondent"]
        broken: set[str] = set()
        if dispute is None:
            broken.add(C.UNKNOWN_DISPUTE)
        else:
            if dispute["respondent"] != signer:
                broken.add(C.NOT_RESPONDENT)
            if dispute["status"] != "open":
                broken.add(C.INVALID_STATUS_TRANSITION)
        body = {"dispute_id": dispute_id, "statement": "s", "evidence_hash": "e2" * 32}
        if self.submit(signer, "dispute.respond", body, broken) is not None:
            assert dispute is not None
            dispute["status"] = "responded"

    @rule(data=st.data(), signer=st.sampled_from([*BANKS, REGULATOR, "tier1"]),
          outcome=st.sampled_from(["upheld", "dismissed"]))
    def dispute_resolve(self, data: st.DataObject, signer: str, outcome: str) -> None:
        dispute_id = self.pick_record(data, self.disputes, "DS00")
        dispute = self.disputes.get(dispute_id)
        if dispute is not None and dispute["resolver"] is not None and data.draw(st.booleans()):
            signer = dispute["resolver"]
        broken: set[str] = set()
        if dispute is None:
            broken.add(C.UNKNOWN_DISPUTE)
        else:
            if signer != REGULATOR and signer != dispute["resolver"]:
                broken.add(C.NOT_RESOLVER)
            if dispute["status"] == "resolved":
                broken.add(C.INVALID_STATUS_TRANSITION)
            if signer != REGULATOR and self.w.now >= dispute["deadline"]:
                broken.add(C.DISPUTE_ESCALATED)
        result = self.submit(signer, "dispute.resolve", {"dispute_id": dispute_id, "outcome": outcome}, broken)
        if result is not None:
            assert dispute is not None
            dispute["status"] = "resolved"
            del self.locks[(dispute["subject"], dispute["subject_id"])]

    @rule(signer=st.sampled_from([*ORGS, REGULATOR]), against=st.sampled_from([*ORGS, REGULATOR, *EXTRA]))
    def complaint_file(self, signer: str, against: str) -> None:
        broken: set[str] = set()
        if against == signer:
            broken.add(C.SAME_PARTY)
        if against not in self.orgs:
            broken.add(C.UNKNOWN_ORG)
        elif against == REGULATOR:
            broken.add(C.REGULATOR_NOT_PARTY)
        if self.open_complaints.get(signer, 0) >= 16:
            broken.add(C.TOO_MANY_COMPLAINTS)
        body = {"against": against, "subject": "s", "evidence_hash": "e1" * 32}
        result = self.submit(signer, "complaint.file", body, broken)
        if result is None:
            return
        complaint_id = "CP" + hashlib.sha256(b"complaint.file" + bytes.fromhex(result["tx_id"])).hexdigest()[:32]
        assert result["complaint_id"] == complaint_id
        self.complaints[complaint_id] = {"complainant": signer, "respondent": against, "status": "open",
                                         "deadline": self.w.now + COMPLAINT_WINDOW}
        self.open_complaints[signer] = self.open_complaints.get(signer, 0) + 1

    @rule(data=st.data(), signer=st.sampled_from([*ORGS, REGULATOR]),
          kind=st.sampled_from(["complaint.respond", "complaint.escalate", "complaint.close"]))
    def complaint_act(self, data: st.DataObject, signer: str, kind: str) -> None:
        complaint_id = self.pick_record(data, self.complaints, "CP00")
        complaint = self.complaints.get(complaint_id)
        if complaint is not None and data.draw(st.booleans()):
            signer = complaint["respondent" if kind == "complaint.respond" else "complainant"]
        self.complaint_act_on(complaint_id, signer, kind)

    def complaint_act_on(self, complaint_id: str, signer: str, kind: str) -> None:
        complaint = self.complaints.get(complaint_id)
        broken: set[str] = set()
        moves = {"complaint.respond": ({"open"}, "responded"),
                 "complaint.escalate": ({"open", "responded"}, "escalated"),
                 "complaint.close": ({"open", "responded", "escalated"}, "closed")}
        allowed, after = moves[kind]
        if complaint is None:
            broken.add(C.UNKNOWN_COMPLAINT)
        else:
            if kind == "complaint.respond" and signer != complaint["respondent"]:
                broken.add(C.NOT_RESPONDENT)
            if kind == "complaint.escalate" and signer != complaint["complainant"]:
                broken.add(C.NOT_COMPLAINANT)
            if kind == "complaint.close" and signer not in (complaint["complainant"], REGULATOR):
                broken.add(C.NOT_COMPLAINANT)
            if complaint["status"] not in allowed:
                broken.add(C.INVALID_STATUS_TRANSITION)
            due = self.w.now >= complaint["deadline"]
            if kind == "complaint.respond" and due:
                broken.add(C.RESPONSE_DEADLINE_PASSED)
            if kind == "complaint.escalate" and complaint["status"] == "open" and not due:
                broken.add(C.RESPONSE_NOT_DUE)
        body: dict[str, Any] = {"complaint_id": complaint_id}
        if kind == "complaint.respond":
            body.update(statement="s", evidence_hash="e2" * 32)
        if self.submit(signer, kind, body, broken) is not None:
            assert complaint is not None
            complaint["status"] = after
            if after == "closed":
                self.open_complaints[complaint["complainant"]] -= 1

    @rule(data=st.data(), amount=amounts, kind=st.sampled_from(["invoice", "contract"]))
    def trade_transfer_plausible(self, data: st.DataObject, amount: int, kind: str) -> None:
        """The recipient anchors a document for what the holder buys, the holder confirms, the holder pays."""
        def movable() -> list[str]:
            return [c for c in self.order if self.certs[c]["status"] == "active"
                    and self.certs[c]["maturity"] > self.w.now and ("cert", c) not in self.locks]
        if not movable():  # issue one to pay with (if the credit line still allows)
            self.issue_plausible(("geely", "boc"), "tier1", amount, 0, 30 * DAY, True)
        active = movable()
        if not active:
            return
        cert = self.certs[data.draw(st.sampled_from(active))]
        holder = cert["holder"]
        others = sorted(o for o in ORGS if o != holder and self.orgs[o]["status"] == "active")
        if not others:
            return
        drawn_on = sorted(d for d, doc in self.docs.items() if doc["kind"] in ("contract", "invoice")
                          and doc["status"] == "confirmed" and holder in (doc["issuer"], doc["counterparty"])
                          and ({doc["issuer"], doc["counterparty"]} - {holder}) & set(others))
        if drawn_on and data.draw(st.booleans()):  # draw again on a document with this holder: what is left
            doc_id = data.draw(st.sampled_from(drawn_on))
            doc = self.docs[doc_id]
            to = ({doc["issuer"], doc["counterparty"]} - {holder}).pop()
            left = self.headroom(doc)  # pay all that is left, or one more
            self.do_transfer(holder, cert["id"], [(to, max(1, min(cert["amount"], left + data.draw(
                st.integers(0, 1)))))], [doc_id])
            return
        to = data.draw(st.sampled_from(others))
        doc_id = self.next_doc_id()
        self.do_anchor(to, holder, amount, kind, doc_id)
        self.do_confirm(holder, doc_id)
        top = max(1, min(cert["amount"], amount + 5))  # around the document's amount: within it, or just over
        pay = data.draw(st.integers(max(1, min(top, amount - 5)), top))
        self.do_transfer(holder, cert["id"], [(to, pay)], [doc_id])

    @rule(data=st.data(), respond=st.booleans(), wait=st.sampled_from([0, DAY, 29 * DAY, 30 * DAY, 40 * DAY]),
          by_regulator=st.booleans(), on_doc=st.booleans())
    def dispute_plausible(self, data: st.DataObject, respond: bool, wait: int, by_regulator: bool,
                          on_doc: bool) -> None:
        """Two parties of a certificate (or document) dispute it; the respondent may answer; it is resolved."""
        if on_doc:
            pool = sorted(d for d in self.docs if ("doc", d) not in self.locks)
        else:
            pool = [c for c in self.order if self.certs[c]["status"] in LIVE and ("cert", c) not in self.locks
                    and len(self.cert_parties(self.certs[c])) > 1]
        if not pool:
            return
        subject_id = data.draw(st.sampled_from(pool))
        if on_doc:
            parties = [self.docs[subject_id]["issuer"], self.docs[subject_id]["counterparty"]]
        else:
            parties = self.cert_parties(self.certs[subject_id])
        signer, against = data.draw(st.lists(st.sampled_from(parties), min_size=2, max_size=2, unique=True))
        before = set(self.disputes)
        broken: set[str] = set()
        body = {"against": against, "reason": "r", "evidence_hash": "e1" * 32,
                ("doc_id" if on_doc else "cert_id"): subject_id}
        result = self.submit(signer, "dispute.open", body, broken)
        if result is None:  # the opener is frozen: refused as SIGNER_NOT_ACTIVE (submit checked the code)
            assert self.orgs[signer]["status"] != "active"
            return
        dispute_id = result["dispute_id"]
        bank = None if on_doc else self.certs[subject_id]["bank"]
        self.disputes[dispute_id] = {"subject": "doc" if on_doc else "cert", "subject_id": subject_id,
                                     "opener": signer, "respondent": against,
                                     "resolver": None if bank in (signer, against) else bank, "status": "open",
                                     "deadline": self.w.now + DISPUTE_WINDOW}
        self.locks[(self.disputes[dispute_id]["subject"], subject_id)] = dispute_id
        assert set(self.disputes) - before == {dispute_id}
        dispute = self.disputes[dispute_id]
        answer = {"dispute_id": dispute_id, "statement": "s", "evidence_hash": "e2" * 32}
        if respond and self.submit(against, "dispute.respond", answer, set()) is not None:
            dispute["status"] = "responded"  # else the respondent is frozen (SIGNER_NOT_ACTIVE)
        self.w.now += wait
        self.expire()  # as every rule that moves time: the next block's begin cancels what fell due
        resolver = REGULATOR if by_regulator or dispute["resolver"] is None else dispute["resolver"]
        broken = {C.DISPUTE_ESCALATED} if resolver != REGULATOR and self.w.now >= dispute["deadline"] else set()
        if self.submit(resolver, "dispute.resolve", {"dispute_id": dispute_id, "outcome": "upheld"},
                       broken) is not None:
            dispute["status"] = "resolved"
            del self.locks[(dispute["subject"], subject_id)]

    @rule(pair=st.lists(st.sampled_from(ORGS), min_size=2, max_size=2, unique=True), respond=st.booleans(),
          wait=st.sampled_from([0, 14 * DAY, 15 * DAY, 20 * DAY]), end=st.sampled_from(["escalate", "close", ""]))
    def complaint_plausible(self, pair: list[str], respond: bool, wait: int, end: str) -> None:
        complainant, respondent = pair
        if self.orgs[complainant]["status"] != "active" or self.open_complaints.get(complainant, 0) >= 16:
            return
        self.complaint_file(complainant, respondent)
        complaint_id = next(reversed(self.complaints))
        self.w.now += wait
        self.expire()  # as every rule that moves time: the next block's begin cancels what fell due
        if respond and self.orgs[respondent]["status"] == "active":
            self.complaint_act_on(complaint_id, respondent, "complaint.respond")
        if end:
            self.complaint_act_on(complaint_id, complainant, "complaint." + end)

    @invariant()
    def disputes_agree_with_chain(self) -> None:
        view, now = self.w.view, self.w.now
        for dispute_id, m in self.disputes.items():
            got = disputes.dispute_json(view, dispute_id, now)
            assert got is not None
            assert {k: got[k] for k in ("subject", "subject_id", "opener", "respondent", "resolver", "status",
                                        "deadline")} == m
            assert got["escalated"] == (m["status"] != "resolved" and now >= m["deadline"])
        assert sorted(disputes.unresolved_dispute_ids(view, limit=10_000)) == sorted(self.locks.values())
        for complaint_id, m in self.complaints.items():
            got = disputes.complaint_json(view, complaint_id, now)
            assert got is not None
            assert {k: got[k] for k in ("complainant", "respondent", "status", "deadline")} == m
            assert got["escalated"] == (m["status"] == "escalated" or (m["status"] == "open"
                                                                       and now >= m["deadline"]))

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
            assert (doc["drawn"], doc["invoiced"], doc["contract_id"]) == (m["drawn"], m["invoiced"], m["contract"])
        for cid, m in self.certs.items():
            c = queries.get_cert(view, cid, now=now)
            assert c is not None
            got = {k: c[k] for k in ("root_id", "parent_id", "debtor", "holder", "amount", "maturity", "status")}
            assert got == {k: m[k] for k in got}, cid
            assert c["children"] == m["children"]
            assert [(x["doc_id"], x["amount"]) for x in c["trade_docs"]] == m["trade_docs"], cid
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
