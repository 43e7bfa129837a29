"""Apply benchmark (not a test): signed E-certificate txs applied per second on one core, next to raw Ed25519
verifications per second measured in the same run.

Each applied tx is verified, decoded, checked by the rules and committed through `ledger.store.StateStore`
(a real LevelDB, one WriteBatch per block). The workload cycles through the supply-chain flow: anchor an
invoice, confirm it, issue a certificate, accept it, transfer part of it, split the remainder — six txs per
round, all committed. Txs are built and signed before the clock starts.

    .venv/bin/python benchmarks/apply_bench.py [--txs N] [--block-txs B] [--sync]

Rates are per second of this process's CPU time (`time.process_time`), so a busy shared machine slows the
wall clock but not the numbers. Besides the full path, it reports the executor alone (over an in-memory
OverlayView) to separate ecert's cost from the ledger's.

Prints a table and ends with one line of JSON: {"txs", "apply_tps", "verify_per_s", "ratio", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ecert.executor import EcertExecutor
from ecert.genesis import GenesisDoc, GenesisOrg, genesis_hash, genesis_writes
from ecert.keys import org_keys_from_seed
from ecert.rules import cert_id_for
from ecert.tx import decode_envelope, make_tx, tx_id_of

CHAIN = "bench-chain"
T0 = 1_700_000_000_000
DAY = 86_400_000
ORGS = (("boc", "bank"), ("geely", "core"), ("tier1", "supplier"), ("tier2", "supplier"), ("tier3", "supplier"))


def build_workload(n: int) -> tuple[GenesisDoc, list[bytes]]:
    keys = {o: org_keys_from_seed(o.encode().ljust(32, b"\x00")) for o, _ in ORGS}
    doc = GenesisDoc(CHAIN, T0, tuple(GenesisOrg(o, o, r, keys[o].sign_pk, keys[o].box_pk) for o, r in ORGS))
    nonce = iter(range(1, 10**9))

    def tx(signer: str, kind: str, body: dict[str, object]) -> bytes:
        return make_tx(keys[signer].seed, CHAIN, kind, signer, next(nonce), body)

    txs = [tx("boc", "credit.grant", {"core": "geely", "limit": 10**15, "expires_at": T0 + 3650 * DAY})]
    i = 0
    while len(txs) < n:
        i += 1
        inv = f"INV-{i}"
        txs.append(tx("tier1", "trade.anchor", {"doc_id": inv, "kind": "invoice", "doc_hash": "ab" * 32,
                                                "counterparty": "geely", "amount": 100_000}))
        txs.append(tx("geely", "trade.confirm", {"doc_id": inv}))
        issue = tx("geely", "ecert.issue", {"to": "tier1", "amount": 100_000, "maturity": T0 + 180 * DAY,
                                            "bank": "boc", "invoice_ids": [inv]})
        root = cert_id_for(tx_id_of(decode_envelope(issue).payload), 0)
        txs.append(issue)
        txs.append(tx("tier1", "ecert.accept", {"cert_id": root}))
        transfer = tx("tier1", "ecert.transfer", {"cert_id": root, "to": [{"org": "tier2", "amount": 30_000}]})
        rest = cert_id_for(tx_id_of(decode_envelope(transfer).payload), 1)
        txs.append(transfer)
        txs.append(tx("tier1", "ecert.split", {"cert_id": rest, "amounts": [35_000, 35_000]}))
    return doc, txs[:n]


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
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "state", sync=sync) as store:
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
    args = parser.parse_args()

    print(f"building and signing {args.txs} txs ...", file=sys.stderr)
    doc, txs = build_workload(args.txs)
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
    print(json.dumps({"txs": len(txs), "committed": committed, "block_txs": args.block_txs, "sync": args.sync,
                      "apply_tps": round(apply_tps), "executor_tps": round(executor_tps),
                      "verify_per_s": round(verify_per_s), "ratio": round(ratio, 3),
                      "executor_ratio": round(executor_tps / verify_per_s, 3)}))


if __name__ == "__main__":
    main()
