"""ecert/history.py: a certificate's audit trail from real signed txs — what the executor indexes (nothing for a
transfer), the order (height, then position in the block, also with several txs of one block on a real store),
paging, and what each reader sees (CONTRACT §6: a certificate's readers; disputes and claims their parties')."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from consensus.invariant import InvariantViolation
from ecert import history
from ecert import state as s
from ecert.access import Reader
from ecert.executor import EcertExecutor
from ecert.genesis import genesis_hash, genesis_writes
from ecert.invariants import check_invariants
from ecert.rules import cert_id_for
from ecert.state import CERT_INDEX
from ecert.tx import decode_envelope, tx_id_of
from ledger.block import make_block
from ledger.executor import TxOutcome, TxRecord
from ledger.state_view import OverlayView
from ledger.store import StateStore
from tests.ecert.world import CHAIN, DAY, T0, World

GRACE = 10 * DAY
EVIDENCE = "ee" * 32
REGULATOR = Reader("pbc", s.REGULATOR)


class HWorld(World):
    """A World that remembers each committed tx as the node's tx index would (one tx per block: position 0)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(regulator=True, **kw)
        self.infos: dict[str, history.TxInfo] = {}

    def apply(self, raw: bytes) -> TxOutcome:
        outcome = super().apply(raw)
        if outcome.status == "committed":
            self.infos[outcome.tx_id] = history.tx_info(TxRecord(self.height, 0, outcome), raw)
        return outcome

    def lookup(self, tx_id: str) -> history.TxInfo | None:
        return self.infos.get(tx_id)

    def trail(self, cert_id: str, reader: Reader = REGULATOR, limit: int = history.HISTORY_PAGE_MAX
              ) -> list[dict[str, Any]]:
        page = history.cert_history(self.view, reader, cert_id, self.lookup, limit=limit)
        assert page is not None
        assert page["next_cursor"] is None
        entries: list[dict[str, Any]] = page["entries"]
        return entries


def reader(org: str) -> Reader:
    role = {"boc": "bank", "icbc": "bank", "geely": "core", "byd": "core"}.get(org, "supplier")
    return Reader(org, role)


def financed(w: HWorld, amount: int = 1000, recourse: bool = True) -> str:
    cid = w.funded(amount, maturity=w.now + DAY)
    w.ok("tier1", "finance.request", {"cert_id": cid, "bank": "boc"})
    w.ok("boc", "finance.approve", {"cert_id": cid, "discount_bps": 300, "recourse": recourse})
    return cid


def test_a_financed_certificate_that_defaults_tells_its_whole_story_in_order() -> None:
    w = HWorld()
    cid = financed(w)
    w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 400})
    w.now += DAY + GRACE
    w.ok("boc", "ecert.default", {"cert_id": cid})
    w.ok("tier1", "recourse.repay", {"cert_id": cid, "amount": 100})
    trail = w.trail(cid)
    assert [(e["type"], e["signer"]) for e in trail] == [
        ("ecert.issue", "geely"), ("ecert.accept", "tier1"), ("finance.request", "tier1"),
        ("finance.approve", "boc"), ("ecert.pay", "geely"), ("ecert.default", "boc"), ("recourse.repay", "tier1")]
    heights = [e["height"] for e in trail]
    assert heights == sorted(heights) and len(set(heights)) == len(heights)
    assert all(e["index"] == 0 and not e["redacted"] for e in trail)
    assert trail[0]["tx_id"] == s.get_cert(w.view, cid).created_by  # type: ignore[union-attr]
    assert trail[4]["result"]["principal"] == 400 and trail[4]["result"]["paid_to"] == "boc"
    assert trail[5]["result"]["claim"] == {"bank": "boc", "seller": "tier1", "amount": 600}
    # The claim is its bank's and seller's: the debtor reads the certificate, not the repayment's details.
    as_debtor = w.trail(cid, reader("geely"))
    assert [e["type"] for e in as_debtor] == [e["type"] for e in trail]
    assert as_debtor[-1]["redacted"] is True and as_debtor[-1]["result"] is None and as_debtor[-1]["signer"] is None
    assert w.trail(cid, reader("tier1"))[-1]["result"]["repaid"] == 100


def test_a_transfer_writes_no_history_and_both_sides_still_see_it() -> None:
    w = HWorld()
    cid = w.funded(1000)
    raw = w.raw("tier1", "ecert.transfer", {"cert_id": cid, "to": [{"org": "tier2", "amount": 300}]})
    before = {k for k, _ in w.view.scan(history.HISTORY_PREFIX)}
    overlay = OverlayView(w.view)
    assert w.executor.execute(overlay, raw, w_ctx(w)).status == "committed"
    assert not [k for k in overlay.changes() if k.startswith(history.HISTORY_PREFIX)]  # the hot path writes none
    children = w.ok("tier1", "ecert.transfer", {"cert_id": cid, "to": [{"org": "tier2", "amount": 300}]})["certs"]
    assert {k for k, _ in w.view.scan(history.HISTORY_PREFIX)} == before
    parent = w.trail(cid)
    assert parent[-1]["type"] == "ecert.transfer" and parent[-1]["signer"] == "tier1"
    assert parent[-1]["result"] == {"certs": children} and parent[-1]["cursor"] == "s"
    to_tier2 = w.trail(children[0], reader("tier2"))
    assert [(e["type"], e["tx_id"]) for e in to_tier2] == [("ecert.transfer", parent[-1]["tx_id"])]
    # The recipient reads the parent too (the path to its own); a stranger reads neither, like an unknown id.
    assert [e["type"] for e in w.trail(cid, reader("tier2"))] == ["ecert.issue", "ecert.accept", "ecert.transfer"]
    for cert_id in (cid, children[0], "EC" + "0" * 32):
        assert history.cert_history(w.view, reader("tier3"), cert_id, w.lookup) is None
        assert history.cert_history(w.view, reader("icbc"), cert_id, w.lookup) is None


def w_ctx(w: World) -> Any:
    from ledger.executor import BlockContext

    return BlockContext(height=w.height + 1, time=w.now, proposer="n1", chain_id=CHAIN)


def test_pages_join_up_to_the_whole_trail_and_cursors_are_checked() -> None:
    w = HWorld()
    cid = w.funded(1000)
    for _ in range(7):
        w.ok("geely", "ecert.pay", {"cert_id": cid, "amount": 10})
    whole = w.trail(cid)
    assert len(whole) == 9
    for limit in (1, 2, 3, 4, 9):
        got, cursor, pages = [], None, 0
        while True:
            page = history.cert_history(w.view, REGULATOR, cid, w.lookup, cursor=cursor, limit=limit)
            assert page is not None and len(page["entries"]) <= limit
            got += page["entries"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == whole and pages == -(-9 // limit)
    for bad in ("x", "h12.0", "h" + "g" * 16 + ".0", "h" + "0" * 16 + ".-1"):
        with pytest.raises(ValueError):
            history.cert_history(w.view, REGULATOR, cid, w.lookup, cursor=bad)
    with pytest.raises(Exception, match="limit"):
        history.cert_history(w.view, REGULATOR, cid, w.lookup, limit=history.HISTORY_PAGE_MAX + 1)


def test_scan_after_covers_exactly_the_keys_past_the_cursor() -> None:
    from ledger.state_view import MemoryStateView

    keys = [b"x/" + k.encode() for k in ("a", "a/0", "a/1", "ab", "b", "b.c", "B", "0", "z9", "_", "-")]
    view = MemoryStateView((k, b"") for k in keys)
    ordered = sorted(keys)
    for i, key in enumerate(ordered):
        assert [k for k, _ in history.scan_after(view, b"x/", key[2:])] == ordered[i + 1:]
    assert [k for k, _ in history.scan_after(view, b"x/", None)] == ordered
    assert [k for k, _ in history.scan_after(view, b"x/", b"a0")] == [k for k in ordered if k > b"x/a0"]


def test_disputes_in_the_trail_are_for_their_parties() -> None:
    w = HWorld(params={"dispute_resolution_ms": 10 * DAY, "complaint_response_ms": 10 * DAY})
    cid = w.funded(1000)
    child = w.ok("tier1", "ecert.transfer", {"cert_id": cid, "to": [{"org": "tier2", "amount": 300}]})["certs"][0]
    dispute_id = w.ok("tier2", "dispute.open", {"cert_id": child, "against": "geely", "reason": "short delivery",
                                                "evidence_hash": EVIDENCE})["dispute_id"]
    w.ok("geely", "dispute.respond", {"dispute_id": dispute_id, "statement": "delivered", "evidence_hash": EVIDENCE})
    w.ok("boc", "dispute.resolve", {"dispute_id": dispute_id, "outcome": "dismissed"})
    mine = w.trail(child, reader("tier2"))
    assert [(e["type"], e["signer"]) for e in mine] == [
        ("ecert.transfer", "tier1"), ("dispute.open", "tier2"), ("dispute.respond", "geely"),
        ("dispute.resolve", "boc")]
    assert mine[1]["result"]["dispute_id"] == dispute_id and mine[3]["result"]["outcome"] == "dismissed"
    # tier1 may read the child (it held its parent) but is no party of the dispute: type and height only.
    theirs = w.trail(child, reader("tier1"))
    assert [e["type"] for e in theirs] == [e["type"] for e in mine]
    assert [e["redacted"] for e in theirs] == [False, True, True, True]
    assert all(e["result"] is None and e["signer"] is None for e in theirs[1:])


def test_a_cancellation_at_the_acceptance_deadline_is_in_the_trail() -> None:
    w = HWorld()
    w.grant()
    cid = w.issue(100, accept=False)
    w.now += 7 * DAY
    assert w.begin_block() == [cid]
    trail = w.trail(cid)
    assert [(e["type"], e["tx_id"], e["signer"]) for e in trail][1:] == [(history.EXPIRED, None, None)]
    assert trail[1]["height"] == w.height and s.get_cert(w.view, cid).status == s.CANCELLED  # type: ignore[union-attr]


def test_the_debtor_index_names_every_root_it_issued() -> None:
    w = HWorld()
    w.grant()
    w.grant(core="byd")
    roots = sorted([w.issue(100), w.issue(200), w.issue(50, to="tier2")])
    other = w.issue(70, core="byd")
    assert list(history.debtor_root_ids(w.view, "geely")) == roots
    assert list(history.debtor_root_ids(w.view, "geely", after=roots[0])) == roots[1:]
    assert list(history.debtor_root_ids(w.view, "byd")) == [other]


def _raw_id(raw: bytes) -> str:
    return tx_id_of(decode_envelope(raw).payload)


def test_several_txs_of_one_block_keep_their_block_order_on_a_real_store(tmp_path: Path) -> None:
    w = World()
    grant = w.raw("boc", "credit.grant", {"core": "geely", "limit": 10_000, "expires_at": T0 + 365 * DAY})
    anchor = w.raw("tier1", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                             "counterparty": "geely", "amount": 5000})
    confirm = w.raw("geely", "trade.confirm", {"doc_id": "INV-1"})
    issue = w.raw("geely", "ecert.issue", {"to": "tier1", "amount": 4000, "maturity": T0 + 30 * DAY,
                                           "bank": "boc", "invoice_ids": ["INV-1"]})
    root = cert_id_for(_raw_id(issue), 0)
    accept = w.raw("tier1", "ecert.accept", {"cert_id": root})
    split = w.raw("tier1", "ecert.split", {"cert_id": root, "amounts": [1000, 3000]})
    a, b = cert_id_for(_raw_id(split), 0), cert_id_for(_raw_id(split), 1)
    pays = [w.raw("geely", "ecert.pay", {"cert_id": a, "amount": n}) for n in (100, 200, 300)]
    settle_root = w.raw("geely", "ecert.settle_root", {"root_id": root})
    blocks = [(T0 + 1000, [grant, anchor, confirm, issue, accept, split]),
              (T0 + 2000, [pays[0], grant, pays[1], pays[2]]),  # a repeated tx is not run again
              (T0 + 31 * DAY, [settle_root])]
    with StateStore.open(tmp_path / "s", paranoid=True, index=CERT_INDEX) as store:
        store.init_genesis(genesis_hash(w.genesis), genesis_writes(w.genesis), chain_id=CHAIN, genesis_time=T0)
        for height, (time, txs) in enumerate(blocks, start=1):
            store.apply_block(make_block(height, store.block_hash, time, "n1", tuple(txs)), EcertExecutor(CHAIN))

        def lookup(tx_id: str) -> history.TxInfo | None:
            record = store.tx_outcome(tx_id)
            if record is None:
                return None
            block = store.block(record.height)
            return history.tx_info(record, None if block is None else block.txs[record.position])

        page = history.cert_history(store.view(), REGULATOR, a, lookup)
        assert page is not None
        got = [(e["height"], e["index"], e["type"]) for e in page["entries"]]
        assert got == [(1, 5, "ecert.split"), (2, 0, "ecert.pay"), (2, 2, "ecert.pay"), (2, 3, "ecert.pay"),
                       (3, 0, "ecert.settle_root")]
        assert page["entries"][-1]["result"] == {"root_id": root, "settled": [
            {"cert_id": a, "paid_to": "tier1", "principal": 400, "penalty": 0}]}  # b's payment is not a's story
        # The root's own trail: issue, accept, split (its leaves were settled, not the split root).
        root_page = history.cert_history(store.view(), REGULATOR, root, lookup)
        assert root_page is not None
        assert [e["type"] for e in root_page["entries"]] == ["ecert.issue", "ecert.accept", "ecert.split"]
        # Paging inside one block: cursor after the first pay of block 2.
        first = history.cert_history(store.view(), REGULATOR, a, lookup, limit=2)
        assert first is not None and first["next_cursor"] == "h0000000000000002.0"
        rest = history.cert_history(store.view(), REGULATOR, a, lookup, cursor=first["next_cursor"], limit=10)
        assert rest is not None and first["entries"] + rest["entries"] == page["entries"]
        assert b and s.get_cert(store.view(), b) is not None


def _corrupted(world: World, key: bytes, value: bytes | None) -> World:
    if value is None:
        world.view.delete(key)
    else:
        world.view.put(key, value)
    return world


@pytest.mark.parametrize("corruption", ["debtor entry lost", "debtor entry of no root", "history of no cert",
                                        "history of an unknown kind", "history at a bad height",
                                        "a deadline entry naming a tx"])
def test_the_history_invariant_catches_each_corruption(corruption: str) -> None:
    """Invariant 10 (ecert/invariants.py) holds on a real history, and fails for each kind of damage to it."""
    world = World()
    root = world.funded(1_000)  # issue (debtor entry) and accept (a history entry)
    check_invariants(world.view)
    key = history.history_key(root, world.height)
    entry = msgpack.unpackb(world.view.get(key), raw=False)[0]
    damage: dict[str, tuple[bytes, bytes | None]] = {
        "debtor entry lost": (history.debtor_prefix("geely") + root.encode(), None),
        "debtor entry of no root": (history.debtor_prefix("geely") + b"c-none", b""),
        "history of no cert": (history.history_key("c-none", 1), msgpack.packb([entry])),
        "history of an unknown kind": (key, msgpack.packb([[entry[0], "ecert.transfer", entry[2], None]])),
        "history at a bad height": (history.history_prefix(root) + b"12", msgpack.packb([entry])),
        "a deadline entry naming a tx": (key, msgpack.packb([[entry[0], history.EXPIRED, None, None]])),
    }
    with pytest.raises(InvariantViolation):
        check_invariants(_corrupted(world, *damage[corruption]).view)
