"""Large-state benchmark (not a test): grow a real LevelDB state to N organisations and M certificates through
the real executor and store, block by block, and report how applying behaves as the state grows.

    .venv/bin/python -m node.bench.scale_bench [--orgs 20000] [--certs 1000000] [--block-txs 1000] [--dir PATH]

Workload, all signed txs applied through `StateStore.apply_block` with `EcertExecutor` (nothing written around
the rules; genesis holds only the banks and core enterprises):
- genesis: `--banks` banks and `--cores` core enterprises; each bank grants each core a 10^15 credit line (txs).
- organisations: the other N - banks - cores orgs are suppliers, each joining by `org.register` (signed by its
  own key) then `org.approve` by a bank: 2 txs per org.
- certificates: rounds of 13 txs that create 7 certificate records, a three-deep lineage, under a new chain's
  rules (genesis params node/genesis_file.py NEW_CHAIN_PARAMS; KYC evidence in each approval): supplier s1
  anchors a contract with core c and an invoice under it, c confirms both, c issues a certificate to s1 under
  bank b, s1 accepts; s2 anchors a contract with s1 and s3 one with s2, each confirmed by the other; s1
  transfers 30% to s2 drawing on theirs (child + remainder), s2 passes a third of that on to s3 drawing on
  theirs (child + remainder), s1 splits its remainder in two. M counts certificate records (roots and
  descendants): M/7 roots, 4M/7 live leaves.
- steady state: `--steady-txs` transfers of randomly chosen live certificates spread over the full state, each
  to the other party of a contract its holder signed in its round, drawing on that contract.

Txs are signed by a process pool (`--sign-workers`) a bounded number of chunks ahead of the applier, so signing
runs beside applying instead of inside the timing; its CPU time is reported on its own. Apply rates are per second
of this process's CPU time (includes LevelDB's compaction thread), shown next to wall-clock rates. The per-block
split: executor (decode + verify + rules), state-root staging (state writes + leaf index + root tree; measured
around the store's staging step when it has one) and the rest of the store (tx records, block record, batch write).

Prints a window row every tenth of the population, the steady-state rate, the LevelDB directory size by key tag,
max RSS, and ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ecert.executor import EcertExecutor
from ecert.genesis import GenesisDoc, GenesisOrg, genesis_hash, genesis_writes
from ecert.keys import OrgKeys, org_keys_from_seed
from ecert.rules import cert_id_for
from ecert.state import CERT_INDEX
from ecert.tx import AMOUNT_MAX, encode_payload, make_tx, tx_id_of
from ledger.block import make_block
from ledger.executor import BlockContext, TxOutcome
from ledger.state_view import StateView
from ledger.store import StateStore
from node.bench.resources import dir_bytes
from node.genesis_file import NEW_CHAIN_PARAMS

CHAIN = "scale-bench"
T0 = 1_700_000_000_000
DAY = 86_400_000
BLOCK_MS = 1000
CREDIT_LIMIT = 10**15
MATURITY = T0 + 365 * DAY  # the longest term ecert.issue admits (max_term_days), from the first block on
TXS_PER_ROUND = 13
CERTS_PER_ROUND = 7
DOCS_PER_ROUND = 4  # the invoice, its contract and the two contracts the round's transfers draw on
HOP_CONTRACT_AMOUNT = AMOUNT_MAX  # headroom for the round's transfer and any steady transfers over it
SIGN_CHUNK_UNITS = 200
CHUNKS_AHEAD = 6
"""Signed chunks the pool may run ahead of the applier: enough to never stall it, bounded so queued txs do not
inflate the RSS being measured."""
WINDOWS = 10

# Nonces are globally unique (so unique per signer, all the executor asks): one range per phase.
NONCE_GRANT = 1
NONCE_ORGS = 1_000
NONCE_ROUNDS = 1_000_000_000
NONCE_STEADY = 9_000_000_000


# --- the deterministic workload -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    banks: int
    cores: int
    suppliers: int
    rounds: int
    steady: int
    seed: int

    def bank(self, i: int) -> str:
        return f"bank-{i % self.banks}"

    def core(self, i: int) -> str:
        return f"core-{i % self.cores}"

    def supplier(self, i: int) -> str:
        return f"sup-{i % self.suppliers:06d}"

    def genesis(self) -> GenesisDoc:
        orgs = [(self.bank(i), "bank") for i in range(self.banks)] + [(self.core(i), "core") for i in range(self.cores)]
        return GenesisDoc(CHAIN, T0, tuple(GenesisOrg(o, o, role, keys_of(o).sign_pk, keys_of(o).box_pk)
                                           for o, role in orgs), params=tuple(sorted(NEW_CHAIN_PARAMS.items())))

    def round_parties(self, r: int) -> tuple[str, str, str, str, str]:
        """(core, bank, s1, s2, s3) of round r; s2 != s1 and s3 != s2, spread over all suppliers."""
        n = self.suppliers
        s1 = r % n
        s2 = (s1 + 1 + (r * 7919) % (n - 1)) % n
        s3 = (s2 + 1 + (r * 104_729) % (n - 1)) % n
        return (self.core(r), self.bank(r // self.cores), self.supplier(s1), self.supplier(s2), self.supplier(s3))


_KEYS: dict[str, OrgKeys] = {}


def keys_of(org: str) -> OrgKeys:
    keys = _KEYS.get(org)
    if keys is None:
        keys = org_keys_from_seed(hashlib.sha256(b"scale-bench/" + org.encode()).digest())
        if len(_KEYS) < 100_000:
            _KEYS[org] = keys
    return keys


Tx = tuple[str, str, int, dict[str, Any]]
"""(kind, signer, nonce, body): a tx before signing."""


def _tx_id(tx: Tx) -> str:
    """The id `make_tx` gives this tx (sha256 of the payload; the signature is not part of it)."""
    kind, signer, nonce, body = tx
    return tx_id_of(encode_payload({"chain_id": CHAIN, "type": kind, "signer": signer, "nonce": nonce, "body": body}))


def _sign(tx: Tx) -> bytes:
    kind, signer, nonce, body = tx
    return make_tx(keys_of(signer).seed, CHAIN, kind, signer, nonce, body)


def grant_txs(plan: Plan) -> list[Tx]:
    return [("credit.grant", plan.bank(b), NONCE_GRANT + b * plan.cores + c,
             {"core": plan.core(c), "limit": CREDIT_LIMIT, "expires_at": MATURITY + 365 * DAY})
            for b in range(plan.banks) for c in range(plan.cores)]


def org_txs(plan: Plan, k: int) -> list[Tx]:
    org = plan.supplier(k)
    keys = keys_of(org)
    return [("org.register", org, NONCE_ORGS + 2 * k,
             {"org_id": org, "name": f"Supplier {k}", "role": "supplier", "sign_pk": keys.sign_pk,
              "box_pk": keys.box_pk}),
            ("org.approve", plan.bank(k), NONCE_ORGS + 2 * k + 1,
             {"org_id": org, "kyc_hash": hashlib.sha256(f"kyc {org}".encode()).hexdigest()})]


@dataclass(frozen=True, slots=True)
class Round:
    txs: list[Tx]
    leaves: tuple[tuple[str, str, int, str, str], ...]
    """The round's live certificates at the end: (cert id, holder, amount, a trade partner of the holder, their
    contract)."""


def _doc(kind: str, signer: str, nonce: int, doc_id: str, counterparty: str, amount: int,
         contract_id: str | None = None) -> list[Tx]:
    """Anchor a trade document and have its counterparty confirm it."""
    body: dict[str, Any] = {"doc_id": doc_id, "kind": kind, "counterparty": counterparty, "amount": amount,
                            "doc_hash": hashlib.sha256(doc_id.encode()).hexdigest()}
    if contract_id is not None:
        body["contract_id"] = contract_id
    return [("trade.anchor", signer, nonce, body), ("trade.confirm", counterparty, nonce + 1, {"doc_id": doc_id})]


def round_txs(plan: Plan, r: int) -> Round:
    core, bank, s1, s2, s3 = plan.round_parties(r)
    amount = 100_000 + (r % 97) * 1_000
    t1 = amount * 3 // 10
    rem1 = amount - t1
    t2 = t1 // 3
    half = rem1 // 2
    nonce = NONCE_ROUNDS + TXS_PER_ROUND * r
    inv, contract, hop1, hop2 = f"INV-{r}", f"CT-{r}", f"CTA-{r}", f"CTB-{r}"
    txs: list[Tx] = [*_doc("contract", s1, nonce, contract, core, amount),
                     *_doc("invoice", s1, nonce + 2, inv, core, amount, contract)]
    issue: Tx = ("ecert.issue", core, nonce + 4, {"to": s1, "amount": amount, "maturity": MATURITY, "bank": bank,
                                                   "invoice_ids": [inv]})
    root = cert_id_for(_tx_id(issue), 0)
    txs += [issue, ("ecert.accept", s1, nonce + 5, {"cert_id": root}),
            *_doc("contract", s2, nonce + 6, hop1, s1, HOP_CONTRACT_AMOUNT),
            *_doc("contract", s3, nonce + 8, hop2, s2, HOP_CONTRACT_AMOUNT)]
    move1: Tx = ("ecert.transfer", s1, nonce + 10, {"cert_id": root, "to": [{"org": s2, "amount": t1}],
                                                    "trade_docs": [hop1]})
    c1, r1 = cert_id_for(_tx_id(move1), 0), cert_id_for(_tx_id(move1), 1)
    move2: Tx = ("ecert.transfer", s2, nonce + 11, {"cert_id": c1, "to": [{"org": s3, "amount": t2}],
                                                    "trade_docs": [hop2]})
    c2, r2 = cert_id_for(_tx_id(move2), 0), cert_id_for(_tx_id(move2), 1)
    split: Tx = ("ecert.split", s1, nonce + 12, {"cert_id": r1, "amounts": [half, rem1 - half]})
    a, b = cert_id_for(_tx_id(split), 0), cert_id_for(_tx_id(split), 1)
    txs += [move1, move2, split]
    return Round(txs, ((c2, s3, t2, s2, hop2), (r2, s2, t1 - t2, s3, hop2), (a, s1, half, s2, hop1),
                       (b, s1, rem1 - half, s2, hop1)))


def steady_txs(plan: Plan, picks: list[int], first: int) -> list[Tx]:
    """Transfers of live leaves (pick k = leaf k % 4 of round k // 4): half to a trade partner of the holder,
    drawing on their contract, rest kept."""
    txs = []
    for i, k in enumerate(picks):
        cert_id, holder, amount, to, contract = round_txs(plan, k // 4).leaves[k % 4]
        txs.append(("ecert.transfer", holder, NONCE_STEADY + first + i,
                    {"cert_id": cert_id, "to": [{"org": to, "amount": amount // 2}], "trade_docs": [contract]}))
    return txs


def sign_chunk(plan: Plan, phase: str, start: int, count: int, picks: list[int] | None = None) -> tuple[list[bytes], float]:
    """Worker: build and sign one chunk of the workload. Returns (raw txs in order, CPU seconds spent)."""
    t0 = time.process_time()
    txs: list[Tx] = []
    if phase == "orgs":
        for k in range(start, start + count):
            txs += org_txs(plan, k)
    elif phase == "certs":
        for r in range(start, start + count):
            txs += round_txs(plan, r).txs
    else:
        assert picks is not None
        txs = steady_txs(plan, picks, start)
    raws = [_sign(tx) for tx in txs]
    return raws, time.process_time() - t0


# --- instrumentation ---------------------------------------------------------------------------------------------
class TimedExecutor:
    """The ledger's TxExecutor seam, timing the wrapped executor (decode + verify + rules)."""

    def __init__(self, inner: EcertExecutor) -> None:
        self.inner = inner
        self.chain_id = CHAIN
        self.seconds = 0.0

    def tx_id(self, raw: bytes) -> str:
        t0 = time.perf_counter()
        try:
            return self.inner.tx_id(raw)
        finally:
            self.seconds += time.perf_counter() - t0

    def execute(self, view: StateView, raw: bytes, ctx: BlockContext) -> TxOutcome:
        t0 = time.perf_counter()
        try:
            return self.inner.execute(view, raw, ctx)
        finally:
            self.seconds += time.perf_counter() - t0


def time_state_staging(store: StateStore) -> Callable[[], float] | None:
    """Time the store's state staging step (state writes + leaf index + root tree), if it has the step this
    version of ledger/store.py has. Read-only wrapping of one instance; None if the step is not there."""
    stage = getattr(store, "_stage_state", None)
    if stage is None:
        return None
    spent = [0.0]

    def timed(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return stage(*args, **kw)
        finally:
            spent[0] += time.perf_counter() - t0

    try:
        store._stage_state = timed  # type: ignore[method-assign]
    except AttributeError:  # a compiled StateStore (setup.py): its methods cannot be replaced
        return None
    return lambda: spent[0]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the run -----------------------------------------------------------------------------------------------------
@dataclass
class Window:
    name: str
    txs: int = 0
    committed: int = 0
    blocks: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    executor: float = 0.0
    staging: float = 0.0
    certs_end: int = 0
    rss_mb: float = 0.0
    disk_mb: float = 0.0

    def row(self) -> dict[str, Any]:
        per_block = 1000 / max(self.blocks, 1)
        return {"window": self.name, "txs": self.txs, "committed": self.committed, "certs_total": self.certs_end,
                "tps_cpu": round(self.txs / max(self.cpu, 1e-9)), "tps_wall": round(self.txs / max(self.wall, 1e-9)),
                "block_ms": round(self.wall * per_block, 1), "executor_ms": round(self.executor * per_block, 1),
                "root_ms": round(self.staging * per_block, 1),
                "store_other_ms": round((self.wall - self.executor - self.staging) * per_block, 1),
                "rss_mb": round(self.rss_mb), "disk_mb": round(self.disk_mb, 1)}


@dataclass
class Run:
    store: StateStore
    executor: TimedExecutor
    staging: Callable[[], float] | None
    path: Path
    block_txs: int
    certs: int = 0
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)

    def apply_full_blocks(self, pending: list[bytes], block_txs: int, window: Window) -> None:
        """Apply blocks of `block_txs` from the front of `pending` while it holds that many; the rest stays."""
        while len(pending) >= block_txs:
            self.apply(pending[:block_txs], window)
            del pending[:block_txs]

    def apply(self, txs: list[bytes], window: Window) -> None:
        store = self.store
        block = make_block(store.height + 1, store.block_hash, T0 + (store.height + 1) * BLOCK_MS, "bench",
                           tuple(txs))
        ex0, st0 = self.executor.seconds, self.staging() if self.staging else 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        outcomes = store.apply_block(block, self.executor)
        window.wall += time.perf_counter() - w0
        window.cpu += time.process_time() - c0
        window.executor += self.executor.seconds - ex0
        window.staging += (self.staging() if self.staging else 0.0) - st0
        window.blocks += 1
        window.txs += len(txs)
        for o in outcomes:
            if o.status == "committed":
                window.committed += 1
                self.certs += len((o.result or {}).get("certs", ()))
            else:
                self.rejected[o.error_code or "?"] += 1

    def close_window(self, window: Window) -> None:
        window.certs_end = self.certs
        window.rss_mb = rss_mb()
        window.disk_mb = dir_bytes(self.path) / 1e6


def chunks(pool: Any, plan: Plan, phase: str, total: int, picks: list[int] | None = None,
           size: int = SIGN_CHUNK_UNITS) -> Iterator[tuple[list[bytes], float, int]]:
    """Signed chunks of `size` units of a phase, in order, at most CHUNKS_AHEAD in flight. Yields (txs, sign CPU
    seconds, units)."""
    starts = collections.deque(range(0, total, size))
    flight: collections.deque[tuple[Any, int]] = collections.deque()

    def submit() -> None:
        s = starts.popleft()
        n = min(size, total - s)
        args = (plan, phase, s, n, picks[s:s + n] if picks is not None else None)
        flight.append((pool.apply_async(sign_chunk, args) if pool is not None else _Done(sign_chunk(*args)), n))

    while starts or flight:
        while starts and len(flight) < CHUNKS_AHEAD:
            submit()
        result, n = flight.popleft()
        raws, cpu = result.get()
        yield raws, cpu, n


class _Done:
    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self) -> Any:
        return self.value


def run_bench(orgs: int, certs: int, block_txs: int, path: Path, *, banks: int = 4, cores: int = 8,
              steady: int = 10_000, sign_workers: int = 1, seed: int = 1, console: Console | None = None,
              scan_state: bool = True) -> dict[str, Any]:
    """Build the state in `path` (must not hold a store yet) and measure. Returns the summary dict."""
    console = console or Console(stderr=True)
    suppliers = orgs - banks - cores
    if suppliers < 3:
        raise SystemExit(f"--orgs must exceed banks + cores + 2 ({banks + cores + 2})")
    rounds = -(-certs // CERTS_PER_ROUND)
    steady = min(steady, 4 * rounds)
    plan = Plan(banks, cores, suppliers, rounds, steady, seed)
    picks = random.Random(seed).sample(range(4 * rounds), steady)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise SystemExit(f"{path} is not empty: give a fresh --dir")

    pool = multiprocessing.get_context("fork").Pool(sign_workers) if sign_workers > 0 else None
    store = StateStore.open(path, sync=False, index=CERT_INDEX)
    t_start = time.perf_counter()
    try:
        doc = plan.genesis()
        store.init_genesis(genesis_hash(doc), genesis_writes(doc), chain_id=CHAIN, genesis_time=T0)
        run = Run(store, TimedExecutor(EcertExecutor(CHAIN)), time_state_staging(store), path, block_txs)
        if run.staging is None:
            console.print("[yellow]StateStore has no _stage_state step to time (or it is compiled): root ms reads 0, and the state-root "
                          "cost is inside 'store other'[/]")
        sign_cpu = 0.0
        stall = 0.0
        windows: list[Window] = []
        table = Table(title=f"population: {orgs} orgs, {certs} certificates, blocks of {block_txs} txs")
        for col in ("window", "txs", "certs total", "tx/s cpu", "tx/s wall", "block ms", "executor ms",
                    "root ms", "store other ms", "RSS MB", "disk MB"):
            table.add_column(col, justify="right")

        def show(w: Window) -> None:
            r = w.row()
            progress.console.print(
                f"  {r['window']:>14} {r['txs']:>8} txs  certs {r['certs_total']:>8}  {r['tps_cpu']:>6} tx/s cpu "
                f"{r['tps_wall']:>6} tx/s wall  block {r['block_ms']:>7} ms (executor {r['executor_ms']}, "
                f"root {r['root_ms']}, store other {r['store_other_ms']})  RSS {r['rss_mb']} MB  "
                f"disk {r['disk_mb']} MB")
            table.add_row(*(str(r[k]) for k in ("window", "txs", "certs_total", "tps_cpu", "tps_wall", "block_ms",
                                                  "executor_ms", "root_ms", "store_other_ms", "rss_mb", "disk_mb")))

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[info]}"), console=console, transient=False) as progress:
            # organisations (with the credit lines, signed here: a few dozen txs)
            w = Window("orgs")
            task = progress.add_task("organisations", total=suppliers, info="")
            pending = [_sign(tx) for tx in grant_txs(plan)]
            wait0 = time.perf_counter()
            for raws, cpu, n in chunks(pool, plan, "orgs", suppliers):
                stall += time.perf_counter() - wait0
                sign_cpu += cpu
                pending += raws
                run.apply_full_blocks(pending, block_txs, w)
                progress.update(task, advance=n, info=f"{w.txs / max(w.cpu, 1e-9):,.0f} tx/s")
                wait0 = time.perf_counter()
            if pending:
                run.apply(pending, w)
            run.close_window(w)
            windows.append(w)
            show(w)

            # certificates, reported in windows of a tenth of the rounds each
            task = progress.add_task("certificates", total=rounds * CERTS_PER_ROUND, info="")
            per_window = -(-rounds // WINDOWS)
            pending = []
            done_rounds = 0
            w = Window(f"certs {1}/{WINDOWS}")
            wait0 = time.perf_counter()
            for raws, cpu, n in chunks(pool, plan, "certs", rounds, size=min(SIGN_CHUNK_UNITS, per_window)):
                stall += time.perf_counter() - wait0
                sign_cpu += cpu
                pending += raws
                done_rounds += n
                run.apply_full_blocks(pending, block_txs, w)
                progress.update(task, completed=run.certs, info=f"{w.txs / max(w.cpu, 1e-9):,.0f} tx/s")
                if done_rounds == rounds and pending:
                    run.apply(pending, w)
                    pending = []
                # A window ends at the first block boundary past its tenth of the rounds (never empty).
                if w.txs and (done_rounds >= per_window * len(windows) or done_rounds == rounds):
                    run.close_window(w)
                    windows.append(w)
                    show(w)
                    w = Window(f"certs {len(windows)}/{WINDOWS}")
                wait0 = time.perf_counter()
            population = windows[:]
            population_certs = run.certs

            # steady state: transfers of random live certificates over the full state
            task = progress.add_task("steady transfers", total=steady, info="")
            w = Window("steady")
            pending = []
            for raws, cpu, n in chunks(pool, plan, "steady", steady, picks):
                sign_cpu += cpu
                pending += raws
                run.apply_full_blocks(pending, block_txs, w)
                progress.update(task, advance=n, info=f"{w.txs / max(w.cpu, 1e-9):,.0f} tx/s")
            if pending:
                run.apply(pending, w)
            run.close_window(w)
            show(w)
        console.print(table)
        height, root = store.height, store.state_root.hex()
    finally:
        store.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    total_wall = time.perf_counter() - t_start

    disk = dir_bytes(path)
    tags = disk_by_tag(path, scan_state)
    pop_txs = sum(x.txs for x in population)
    pop_cpu = sum(x.cpu for x in population)
    cert_windows = [x for x in population if x.name != "orgs"]
    summary = {
        "orgs": orgs, "certs_target": certs, "population_certs": population_certs, "certs": run.certs, "rounds": rounds, "block_txs": block_txs,
        "height": height, "state_root": root, "population_txs": pop_txs,
        "rejected": dict(run.rejected),
        "population_tps_cpu": round(pop_txs / max(pop_cpu, 1e-9)),
        "population_tps_wall": round(pop_txs / max(sum(x.wall for x in population), 1e-9)),
        "first_cert_window_tps_cpu": cert_windows[0].row()["tps_cpu"] if cert_windows else None,
        "last_cert_window_tps_cpu": cert_windows[-1].row()["tps_cpu"] if cert_windows else None,
        "steady_txs": w.txs, "steady_committed": w.committed,
        "steady_tps_cpu": w.row()["tps_cpu"], "steady_tps_wall": w.row()["tps_wall"],
        "steady_block_ms": w.row()["block_ms"], "steady_root_ms_per_block": w.row()["root_ms"],
        "steady_executor_ms_per_block": w.row()["executor_ms"],
        "root_ms_per_block_last_window": cert_windows[-1].row()["root_ms"] if cert_windows else None,
        "sign_cpu_s": round(sign_cpu, 1), "sign_per_s_per_worker": round((pop_txs + w.txs) / max(sign_cpu, 1e-9)),
        "applier_waited_for_signing_s": round(stall, 1),
        "disk_bytes": disk, "disk_bytes_per_cert": round(disk / max(run.certs, 1)),
        "disk_by_tag": tags, "max_rss_mb": round(max_rss_mb()), "wall_s": round(total_wall, 1),
        "windows": [x.row() for x in population] + [w.row()],
    }
    report_disk(console, summary)
    return summary


TAGS = {"S": "state", "H": "root leaf index", "N": "root tree nodes", "T": "tx records", "B": "block records",
        "M": "meta"}


def disk_by_tag(path: Path, scan_state: bool) -> dict[str, Any]:
    """LevelDB's estimate of on-disk bytes per key tag (ledger/schema.py), and, if `scan_state`, the count
    and raw bytes of state entries per ecert key kind (o/ orgs, c/ certs, h/ holdings, l/ lineage, n/ nonces...)."""
    import plyvel

    db = plyvel.DB(os.fspath(path))
    try:
        db.compact_range()  # so the estimates see tables, not the log
        out: dict[str, Any] = {}
        for tag, name in TAGS.items():
            start = tag.encode()
            out[name] = db.approximate_size(start, bytes([start[0] + 1]))
        if scan_state:
            kinds: dict[str, list[int]] = {}
            for key, value in db.iterator(prefix=b"S"):
                kind = key[1:key.index(b"/", 1)].decode() if b"/" in key[1:] else "?"
                k = kinds.setdefault(kind, [0, 0])
                k[0] += 1
                k[1] += len(key) + len(value)
            out["state_entries"] = {k: {"count": c, "raw_bytes": b} for k, (c, b) in sorted(kinds.items())}
        out["after_compaction_dir_bytes"] = dir_bytes(path)
        return out
    finally:
        db.close()


def report_disk(console: Console, s: dict[str, Any]) -> None:
    tags = s["disk_by_tag"]
    console.print(f"LevelDB directory: {s['disk_bytes'] / 1e6:,.1f} MB = {s['disk_bytes_per_cert']:,} bytes per "
                  f"certificate ({s['certs']:,} certificates; after compaction "
                  f"{tags['after_compaction_dir_bytes'] / 1e6:,.1f} MB)")
    for name in TAGS.values():
        console.print(f"  {name:>16}: ~{tags[name] / 1e6:,.1f} MB on disk")
    for kind, e in tags.get("state_entries", {}).items():
        console.print(f"  state {kind + '/':>4} {e['count']:>10,} entries {e['raw_bytes'] / 1e6:>9,.1f} MB raw")
    console.print(f"population {s['population_txs']:,} txs: {s['population_tps_cpu']:,} tx/s cpu, "
                  f"{s['population_tps_wall']:,} tx/s wall; steady {s['steady_txs']:,} transfers: "
                  f"{s['steady_tps_cpu']:,} tx/s cpu, root {s['steady_root_ms_per_block']} ms/block; "
                  f"signing {s['sign_cpu_s']} s cpu ({s['sign_per_s_per_worker']:,}/s per worker), applier waited "
                  f"{s['applier_waited_for_signing_s']} s; max RSS {s['max_rss_mb']} MB; rejected {s['rejected']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orgs", type=int, default=20_000, help="organisations in the end state (default 20000)")
    parser.add_argument("--certs", type=int, default=1_000_000, help="certificate records (default 1000000)")
    parser.add_argument("--block-txs", type=int, default=1000, help="txs per block (default 1000)")
    parser.add_argument("--dir", type=Path, default=None, help="LevelDB directory, kept (default: a temp dir, removed)")
    parser.add_argument("--steady-txs", type=int, default=10_000, help="steady-state transfers (default 10000)")
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--cores", type=int, default=8)
    parser.add_argument("--sign-workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--no-scan", action="store_true", help="skip counting state entries per kind at the end")
    args = parser.parse_args()

    tmp = None
    path = args.dir
    if path is None:
        tmp = tempfile.mkdtemp(prefix="scale-bench-")
        path = Path(tmp) / "state"
    try:
        summary = run_bench(args.orgs, args.certs, args.block_txs, path, banks=args.banks, cores=args.cores,
                            steady=args.steady_txs, sign_workers=args.sign_workers, scan_state=not args.no_scan)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
