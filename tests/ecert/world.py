"""A small chain for the ecert tests: genesis orgs with real keys, an executor, a movable block time.

`World.run` applies one signed tx through `EcertExecutor.execute` exactly as the ledger would (an OverlayView per
tx, rolled back if rejected) and also checks the rules' own promise: a rejected tx writes nothing at all.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from ecert import state
from ecert.executor import EcertExecutor
from ecert.genesis import GenesisDoc, GenesisNode, GenesisOrg, genesis_writes
from ecert.invariants import check_invariants
from ecert.keys import OrgKeys, org_keys_from_seed
from ecert.tx import make_tx
from ledger.executor import BlockContext, TxOutcome
from ledger.state_view import MemoryStateView, OverlayView

CHAIN = "test-chain"
T0 = 1_700_000_000_000
DAY = 86_400_000
GENESIS_ORGS = (("boc", "Bank of China", "bank"), ("icbc", "ICBC", "bank"), ("geely", "Geely", "core"),
                ("byd", "BYD", "core"), ("tier1", "Tier 1", "supplier"), ("tier2", "Tier 2", "supplier"),
                ("tier3", "Tier 3", "supplier"))
REGULATOR = ("pbc", "People's Bank of China", "regulator")
"""Added to genesis by `World(regulator=True)` (CONTRACT §6: the regulator exists only from genesis)."""


def seed_for(org_id: str) -> bytes:
    return org_id.encode().ljust(32, b"\x00")[:32]


def node_pk_for(node_id: str) -> str:
    """A stand-in transport key: the rules only check its syntax and that no two nodes share one."""
    return hashlib.sha256(b"node-key:" + node_id.encode()).hexdigest()


def genesis_node(node_id: str, org: str, voter: bool = True) -> GenesisNode:
    """A genesis node at `<node_id>.nodes.test` (unique per node id), with a stand-in key."""
    host = f"{node_id.lower()}.nodes.test"
    return GenesisNode(node_id, org, f"{host}:9701", f"{host}:8701", node_pk_for(node_id), voter)


class World:
    def __init__(self, check: bool = True, nodes: Sequence[GenesisNode] = (), regulator: bool = False,
                 params: Mapping[str, bool | int] | None = None, legacy: bool = False) -> None:
        """`params`: chain parameters genesis names (ecert.state.ChainParams) beside the settlement terms of a new
        chain (ecert.state.SETTLEMENT_PARAMS); `legacy`: a genesis that names none, as before parameters existed
        (`params` must then be None)."""
        assert not (legacy and params), "a legacy genesis names no parameter"
        params = {} if legacy else {**state.SETTLEMENT_PARAMS, **(params or {})}
        orgs = (*GENESIS_ORGS, REGULATOR) if regulator else GENESIS_ORGS
        self.keys: dict[str, OrgKeys] = {o: org_keys_from_seed(seed_for(o)) for o, _, _ in orgs}
        self.genesis = GenesisDoc(CHAIN, T0, tuple(
            GenesisOrg(o, name, role, self.keys[o].sign_pk, self.keys[o].box_pk) for o, name, role in orgs),
            tuple(nodes), tuple(sorted(params.items())))
        self.view = MemoryStateView(genesis_writes(self.genesis))
        self.executor = EcertExecutor(CHAIN)
        self.now = T0 + 1000
        self.height = 0
        self.check = check
        self._nonces = itertools.count(1)
        self._docs = itertools.count(1)

    def key(self, org: str) -> OrgKeys:
        if org not in self.keys:
            self.keys[org] = org_keys_from_seed(seed_for(org))
        return self.keys[org]

    def raw(self, signer: str, kind: str, body: dict[str, Any], nonce: int | str | None = None,
            seed: bytes | None = None, chain_id: str = CHAIN) -> bytes:
        return make_tx(seed if seed is not None else self.key(signer).seed, chain_id, kind, signer,
                       next(self._nonces) if nonce is None else nonce, body)

    def _commit(self, overlay: OverlayView) -> None:
        for key, value in overlay.changes().items():
            if value is None:
                self.view.delete(key)
            else:
                self.view.put(key, value)

    def begin_block(self) -> list[str]:
        """A block of its own with no tx: what falls due at block time (ecert/settlement.py). Returns the roots
        it cancelled."""
        self.height += 1
        return self._begin(BlockContext(height=self.height, time=self.now, proposer="n1", chain_id=CHAIN))

    def _begin(self, ctx: BlockContext) -> list[str]:
        from ecert import settlement

        overlay = OverlayView(self.view)
        due = [key for key, _ in overlay.scan(settlement.ACCEPT_PREFIX)]
        self.executor.begin_block(overlay, ctx)  # as ledger/apply.py does, before the block's first tx
        self._commit(overlay)
        cancelled = [key.decode().rsplit("/", 1)[1] for key in due if overlay.get(key) is None]
        if self.check and cancelled:
            check_invariants(self.view)
        return cancelled

    def apply(self, raw: bytes) -> TxOutcome:
        """One block holding one tx: the block-begin hook, then the tx."""
        self.height += 1
        ctx = BlockContext(height=self.height, time=self.now, proposer="n1", chain_id=CHAIN)
        self._begin(ctx)
        before = self.view.items() if self.check else None
        overlay = OverlayView(self.view)
        outcome = self.executor.execute(overlay, raw, ctx)
        if outcome.status == "committed":
            self._commit(overlay)
        else:
            assert len(overlay) == 0, f"rejected tx {outcome.error_code} wrote {len(overlay)} keys"
        if self.check:
            assert before is not None
            if outcome.status != "committed":
                assert self.view.items() == before
            check_invariants(self.view)
        return outcome

    def run(self, signer: str, kind: str, body: dict[str, Any], **kw: Any) -> TxOutcome:
        return self.apply(self.raw(signer, kind, body, **kw))

    def ok(self, signer: str, kind: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        outcome = self.run(signer, kind, body, **kw)
        assert outcome.status == "committed", (outcome.error_code, outcome.error_message)
        assert outcome.result is not None
        return dict(outcome.result)

    def fail(self, code: str, signer: str, kind: str, body: dict[str, Any], **kw: Any) -> TxOutcome:
        outcome = self.run(signer, kind, body, **kw)
        assert outcome.status == "rejected", f"expected {code}, got committed {outcome.result}"
        assert outcome.error_code == code, (outcome.error_code, outcome.error_message)
        return outcome

    def set_role(self, org_id: str, role: str) -> None:
        """Rewrite a genesis org's role in state, for roles genesis does not admit yet (the regulator)."""
        org = state.get_org(self.view, org_id)
        assert org is not None
        state.put_org(self.view, org._replace(role=role))

    # --- common scenarios ------------------------------------------------------------------------------------

    def grant(self, limit: int = 10_000_000, bank: str = "boc", core: str = "geely",
              expires_at: int | None = None) -> None:
        self.ok(bank, "credit.grant", {"core": core, "limit": limit,
                                       "expires_at": expires_at if expires_at is not None else self.now + 365 * DAY})

    def invoice(self, amount: int, seller: str = "tier1", buyer: str = "geely", confirm: bool = True,
                kind: str = "invoice") -> str:
        doc_id = f"INV-{next(self._docs)}"
        self.ok(seller, "trade.anchor", {"doc_id": doc_id, "kind": kind, "doc_hash": "ab" * 32,
                                         "counterparty": buyer, "amount": amount})
        if confirm:
            self.ok(buyer, "trade.confirm", {"doc_id": doc_id})
        return doc_id

    def issue(self, amount: int, to: str = "tier1", core: str = "geely", bank: str = "boc",
              maturity: int | None = None, invoice_ids: list[str] | None = None, accept: bool = True) -> str:
        if invoice_ids is None:
            invoice_ids = [self.invoice(amount, seller=to, buyer=core)]
        result = self.ok(core, "ecert.issue", {"to": to, "amount": amount, "bank": bank,
                                               "maturity": maturity if maturity is not None else self.now + 90 * DAY,
                                               "invoice_ids": invoice_ids})
        cert_id: str = result["certs"][0]
        if accept:
            self.ok(to, "ecert.accept", {"cert_id": cert_id})
        return cert_id

    def funded(self, amount: int = 1_000_000, **kw: Any) -> str:
        """A credit line plus an accepted certificate held by tier1."""
        self.grant()
        return self.issue(amount, **kw)
