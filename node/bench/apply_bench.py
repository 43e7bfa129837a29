"""Apply benchmark (not a test): signed E-certificate txs applied per second on one core, next to raw Ed25519
verifications per second measured in the same run.

Each applied tx is verified, decoded, checked by the rules and committed through `ledger.store.StateStore`
(a real LevelDB, one WriteBatch per block). The workload cycles through the supply-chain flow: anchor an
invoice, confirm it, issue a certificate, accept it, transfer part of it, split the remainder — six txs per
round, all committed. Txs are built and signed before the clock starts.

    .venv/bin/python -m node.bench.apply_bench [--txs N] [--block-txs B] [--sync]
    .venv/bin/python -m node.bench.apply_bench --workload transfers --prefill-keys 300000 --block-txs 15

`--workload transfers` matches the cluster benchmark (`./scripts/bench`, node/bench/ecert_side.py): `--chains`
accepted certificates held by tier1, each walking a chain of transfers of 1 fen to tier2 (the remainder back to
tier1 as a child), the chains interleaved so a block holds one link of many chains; the state is first grown by
`--prefill-keys` filler entries (random 200-byte values, written at genesis) so the state tree and LevelDB have
the size of a long-running cluster's. Set-up and prefill are outside the timing; the JSON adds `us_per_tx`.

`--rules new` (the default) runs on a chain whose genesis names the parameters a new chain gets
(node/genesis_file.py NEW_CHAIN_PARAMS): every invoice belongs to a confirmed contract and every transfer draws on
a confirmed contract between holder and recipient (`trade_docs`), so each transfer pays for the trade-background
rules; `--rules off` is a genesis without params and the txs as they were before those rules (the same workload
the benchmarks measured before issue 14). Before/after issue 14 on the apply path: this command at the commit
before it (checked out beside, without `--rules`) and here with `--rules new` and `--rules off`, alternated.

Rates are per second of this process's CPU time (`time.process_time`), so a busy shared machine slows the
wall clock but not the numbers. Besides the full path, it reports the executor alone (over an in-memory
OverlayView) to separate ecert's cost from the ledger's.

Prints a table and ends with one line of JSON: {"txs", "apply_tps", "verify_per_s", "ratio", ...}.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from ecert.executor import EcertExecutor
from ecert.genesis import GenesisDoc, GenesisOrg, genesis_hash, genesis_writes
from ecert.keys import org_keys_from_seed
from ecert.rules import cert_id_for
from ecert.state import CERT_INDEX
from ecert.tx import decode_envelope, make_tx, tx_id_of
from node.build_info import python_path
from node.genesis_file import NEW_CHAIN_PARAMS

CHAIN = "bench-chain"
T0 = 1_700_000_000_000
DAY = 86_400_000
ORGS = (("boc", "bank"), ("geely", "core"), ("tier1", "supplier"), ("tier2", "supplier"), ("tier3", "supplier"))
RULES = ("new", "off")
CONTRACT_AMOUNT = 10**15  # the contracts every invoice and transfer draws on (AMOUNT_MAX)


def genesis(keys: dict[str, Any], rules: str) -> GenesisDoc:
    params = tuple(sorted(NEW_CHAIN_PARAMS.items())) if rules == "new" else ()
    return GenesisDoc(CHAIN, T0, tuple(GenesisOrg(o, o, r, keys[o].sign_pk, keys[o].box_pk) for o, r in ORGS),
                      params=params)


def contracts(tx: Any, rules: str) -> tuple[list[bytes], dict[str, object], dict[str, object]]:
    """With the new rules: (set-up txs anchoring and confirming the contracts tier1-geely and tier1-tier2, the
    extra fields of an invoice, of a transfer to tier2); without: nothing."""
    if rules != "new":
        return [], {}, {}
    setup = []
    for doc_id, seller, buyer in (("CT-core", "tier1", "geely"), ("CT-12", "tier2", "tier1")):
        setup += [tx(seller, "trade.anchor", {"doc_id": doc_id, "kind": "contract", "doc_hash": "cd" * 32,
                                              "counterparty": buyer, "amount": CONTRACT_AMOUNT}),
                  tx(buyer, "trade.confirm", {"doc_id": doc_id})]
    return setup, {"contract_id": "CT-core"}, {"trade_docs": ["CT-12"]}


def build_workload(n: int, rules: str = "new") -> tuple[GenesisDoc, list[bytes]]:
    keys = {o: org_keys_from_seed(o.encode().ljust(32, b"\x00")) for o, _ in ORGS}
    doc = genesis(keys, rules)
    nonce = iter(range(1, 10**9))

    def tx(signer: str, kind: str, body: dict[str, object]) -> bytes:
        return make_tx(keys[signer].seed, CHAIN, kind, signer, next(nonce), body)

    txs = [tx("boc", "credit.grant", {"core": "geely", "limit": 10**15, "expires_at": T0 + 3650 * DAY})]
    setup, invoice_extra, transfer_extra = contracts(tx, rules)
    txs += setup
    i = 0
    while len(txs) < n:
        i += 1
        inv = f"INV-{i}"
        txs.append(tx("tier1", "trade.anchor", {"doc_id": inv, "kind": "invoice", "doc_hash": "ab" * 32,
                                                "counterparty": "geely", "amount": 100_000, **invoice_extra}))
        txs.append(tx("geely", "trade.confirm", {"doc_id": inv}))
        issue = tx("geely", "ecert.issue", {"to": "tier1", "amount": 100_000, "maturity": T0 + 180 * DAY,
                                            "bank": "boc", "invoice_ids": [inv]})
        root = cert_id_for(tx_id_of(decode_envelope(issue).payload), 0)
        txs.append(issue)
        txs.append(tx("tier1", "ecert.accept", {"cert_id": root}))
        transfer = tx("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 30_000}],
                                                  **transfer_extra})
        rest = cert_id_for(tx_id_of(decode_envelope(transfer).payload), 1)
        txs.append(transfer)
        txs.append(tx("tier1", "ecert.split", {"cert_id": rest, "amounts": [35_000, 35_000]}))
    return doc, txs[:n]


def build_transfers(n: int, chains: int, rules: str = "new") -> tuple[GenesisDoc, list[bytes], list[bytes]]:
    """(genesis, set-up txs, `n` transfer txs): credit, one confirmed invoice (under a confirmed contract, and a
    contract tier1-tier2 for the transfers, with the new rules), `chains` issued and accepted roots held by tier1;
    then transfers of 1 fen to tier2, round-robin over the chains (each spends the remainder child of its chain's
    previous transfer)."""
    keys = {o: org_keys_from_seed(o.encode().ljust(32, b"\x00")) for o, _ in ORGS}
    doc = genesis(keys, rules)
    nonce = iter(range(1, 10**9))

    def tx(signer: str, kind: str, body: dict[str, object]) -> bytes:
        return make_tx(keys[signer].seed, CHAIN, kind, signer, next(nonce), body)

    amount = 10**12
    setup = [tx("boc", "credit.grant", {"core": "geely", "limit": 10**15, "expires_at": T0 + 3650 * DAY})]
    contract_txs, invoice_extra, transfer_extra = contracts(tx, rules)
    setup += [*contract_txs,
              tx("tier1", "trade.anchor", {"doc_id": "INV-1", "kind": "invoice", "doc_hash": "ab" * 32,
                                           "counterparty": "geely", "amount": amount * chains, **invoice_extra}),
              tx("geely", "trade.confirm", {"doc_id": "INV-1"})]
    heads = []
    for _ in range(chains):
        issue = tx("geely", "ecert.issue", {"to": "tier1", "amount": amount, "maturity": T0 + 180 * DAY,
                                            "bank": "boc", "invoice_ids": ["INV-1"]})
        root = cert_id_for(tx_id_of(decode_envelope(issue).payload), 0)
        setup += [issue, tx("tier1", "ecert.accept", {"cert_id": root})]
        heads.append(root)
    transfers = []
    for i in range(n):
        c = i % chains
        raw = tx("tier1", "ecert.transfer", {"cert_id": heads[c], "to": [{"org": "tier2", "amount": 1}],
                                             **transfer_extra})
        heads[c] = cert_id_for(tx_id_of(decode_envelope(raw).payload), 1)
        transfers.append(raw)
    return doc, setup, transfers


def prefill_writes(count: int) -> list[tuple[bytes, bytes]]:
    """Filler state entries (deterministic pseudo-random 200-byte values under their own prefix)."""
    seed = hashlib.sha256(b"prefill").digest()
    return [(b"zf/%09d" % i, hashlib.sha256(seed + i.to_bytes(8, "big")).digest() * 6 + b"prefill!")
            for i in range(count)]


def bench_transfers(args: argparse.Namespace) -> dict[str, object]:
    """The cluster-like workload through StateStore: CPU µs per applied transfer (set-up and prefill untimed)."""
    from ledger.block import make_block
    from ledger.store import StateStore

    print(f"building and signing {args.txs} transfers over {args.chains} chains (rules {args.rules}) ...",
          file=sys.stderr)
    doc, setup, transfers = build_transfers(args.txs, args.chains, args.rules)
    executor = EcertExecutor(CHAIN)
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "state", sync=args.sync, index=CERT_INDEX) as store:
        print(f"prefilling {args.prefill_keys} keys ...", file=sys.stderr)
        t = time.process_time()
        store.init_genesis(genesis_hash(doc), [*genesis_writes(doc), *prefill_writes(args.prefill_keys)],
                           chain_id=CHAIN, genesis_time=T0)
        prefill_s = time.process_time() - t
        if args.prefill_keys and getattr(args, "compact_first", False):
            # LevelDB compacts a large prefill in its background threads for a while; process_time counts them,
            # so without this the transfers are charged the prefill's compaction.
            store._db.compact_range()  # a benchmark's view into the store's LevelDB
        h = 0
        for i in range(0, len(setup), 100):
            h += 1
            outcomes = store.apply_block(make_block(h, store.block_hash, T0 + h, "bench", tuple(setup[i:i + 100])),
                                         executor)
            require_all_committed(outcomes)
        print("applying transfers ...", file=sys.stderr)
        committed = 0
        profiler = cProfile.Profile() if args.profile else None
        start = time.process_time()
        if profiler is not None:
            profiler.enable()
        for i in range(0, len(transfers), args.block_txs):
            h += 1
            block = make_block(h, store.block_hash, T0 + h, "bench", tuple(transfers[i:i + args.block_txs]))
            outcomes = store.apply_block(block, executor)
            committed += sum(o.status == "committed" for o in outcomes)
        if profiler is not None:
            profiler.disable()
        elapsed = time.process_time() - start
        if profiler is not None:
            pstats.Stats(profiler, stream=sys.stderr).sort_stats(args.profile).print_stats(40)
        state_keys = sum(1 for _ in store.scan(b""))
        if args.check:
            store.check_integrity()
    return {"workload": "transfers", "python_path": python_path(), "rules": args.rules, "txs": len(transfers), "committed": committed,
            "block_txs": args.block_txs,
            "chains": args.chains, "prefill_keys": args.prefill_keys, "state_keys": state_keys, "sync": args.sync,
            "us_per_tx": round(elapsed / len(transfers) * 1e6, 1), "apply_tps": round(len(transfers) / elapsed),
            "prefill_s": round(prefill_s, 2)}


def require_all_committed(outcomes: list[Any]) -> None:
    bad = [o for o in outcomes if o.status != "committed"]
    if bad:
        raise SystemExit(f"set-up tx rejected: {bad[0]}")


def bench_verify(txs: list[bytes], seconds: float) -> float:
    """Raw detached Ed25519 verifications per second over the same payloads (pynacl, one core)."""
    key = SigningKey(b"\x01" * 32)
    vk = key.verify_key
    samples = [(p, key.sign(p).signature) for p in (decode_envelope(raw).payload for raw in txs[:1000])]
    count, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for payload, sig in samples:
            vk.verify(payload, sig)
        count += len(samples)
    return count / (time.process_time() - start)


def bench_executor(doc: GenesisDoc, txs: list[bytes], block_txs: int) -> float:
    """Executor only: decode + verify + rules, one OverlayView per block committed into a MemoryStateView
    (no LevelDB, no state root, no tx records)."""
    from ledger.executor import BlockContext
    from ledger.state_view import MemoryStateView, OverlayView

    executor = EcertExecutor(CHAIN)
    base = MemoryStateView(genesis_writes(doc))
    start = time.process_time()
    for h, i in enumerate(range(0, len(txs), block_txs), start=1):
        view = OverlayView(base)
        ctx = BlockContext(h, T0 + h, "bench", CHAIN)
        for raw in txs[i:i + block_txs]:
            executor.tx_id(raw)
            savepoint = view.savepoint()
            if executor.execute(view, raw, ctx).status != "committed":
                view.rollback(savepoint)
        for key, value in view.changes().items():
            if value is None:
                base.delete(key)
            else:
                base.put(key, value)
    return len(txs) / (time.process_time() - start)


def bench_apply(doc: GenesisDoc, txs: list[bytes], block_txs: int, sync: bool) -> tuple[float, int]:
    from ledger.block import make_block
    from ledger.store import StateStore

    executor = EcertExecutor(CHAIN)
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "state", sync=sync, index=CERT_INDEX) as store:
        store.init_genesis(genesis_hash(doc), genesis_writes(doc), chain_id=CHAIN, genesis_time=T0)
        blocks = [txs[i:i + block_txs] for i in range(0, len(txs), block_txs)]
        committed = 0
        start = time.process_time()
        for h, chunk in enumerate(blocks, start=1):
            block = make_block(h, store.block_hash, T0 + h, "bench", tuple(chunk))
            outcomes = store.apply_block(block, executor)
            committed += sum(o.status == "committed" for o in outcomes)
        elapsed = time.process_time() - start
    return len(txs) / elapsed, committed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--txs", type=int, default=12_000, help="signed txs to apply (default 12000)")
    parser.add_argument("--block-txs", type=int, default=500, help="txs per block (default 500)")
    parser.add_argument("--sync", action="store_true", help="fsync every block's batch (default: no)")
    parser.add_argument("--verify-seconds", type=float, default=2.0)
    parser.add_argument("--workload", choices=("flow", "transfers"), default="flow",
                        help="flow: the six-tx supply-chain round; transfers: the cluster benchmark's chains")
    parser.add_argument("--prefill-keys", type=int, default=0, help="transfers: filler state entries first")
    parser.add_argument("--chains", type=int, default=64, help="transfers: concurrent chains (cluster clients)")
    parser.add_argument("--check", action="store_true", help="transfers: check_integrity() at the end")
    parser.add_argument("--compact-first", action="store_true",
                        help="transfers: compact the prefilled LevelDB before timing (its own compaction is not "
                             "charged to the transfers; without it, it is, as a node pays it)")
    parser.add_argument("--profile", metavar="SORT", help="transfers: cProfile the timed part, sorted by SORT")
    parser.add_argument("--rules", choices=RULES, default="new",
                        help="new: a new chain's genesis params, txs with their trade documents (default); off: a "
                             "genesis without params, the txs as before those rules")
    args = parser.parse_args()
    if args.workload == "transfers":
        print(json.dumps(bench_transfers(args)))
        return

    print(f"building and signing {args.txs} txs ...", file=sys.stderr)
    doc, txs = build_workload(args.txs, args.rules)
    print("measuring raw Ed25519 verify ...", file=sys.stderr)
    verify_per_s = bench_verify(txs, args.verify_seconds)
    print("applying through StateStore ...", file=sys.stderr)
    apply_tps, committed = bench_apply(doc, txs, args.block_txs, args.sync)
    print("executor alone ...", file=sys.stderr)
    executor_tps = bench_executor(doc, txs, args.block_txs)
    verify_per_s = (verify_per_s + bench_verify(txs, args.verify_seconds)) / 2  # before and after, averaged
    ratio = apply_tps / verify_per_s
    print(f"{'raw ed25519 verify/s':>28}: {verify_per_s:10.0f}")
    print(f"{'applied txs/s (StateStore)':>28}: {apply_tps:10.0f}   ({committed}/{len(txs)} committed)")
    print(f"{'executor alone txs/s':>28}: {executor_tps:10.0f}   (ratio {executor_tps / verify_per_s:.2f})")
    print(f"{'ratio (target >= 0.5)':>28}: {ratio:10.2f}")
    print(json.dumps({"python_path": python_path(), "rules": args.rules, "txs": len(txs), "committed": committed, "block_txs": args.block_txs,
                      "sync": args.sync,
                      "apply_tps": round(apply_tps), "executor_tps": round(executor_tps),
                      "verify_per_s": round(verify_per_s), "ratio": round(ratio, 3),
                      "executor_ratio": round(executor_tps / verify_per_s, 3)}))


if __name__ == "__main__":
    main()
