"""The checker of a chaos run: run after healing and convergence, on the recorded history and on what every node
answers. Pure: it reads a `History` and a list of `NodeDump`s and returns `Violation`s and figures, so tests can
feed it doctored histories and doctored node answers.

What it checks (CONTRACT §3 invariants, issue 5):
- every acknowledged committed tx is committed on every node at the same height with the same result ("lost"
  otherwise); an acknowledged rejection is never committed anywhere;
- an unknown tx has the same fate on every node: committed once or absent;
- no tx applied twice: a tx's outcome height is its first inclusion in the chain;
- the final state: per lineage, the live leaves sum to the root and every split's children sum to the parent;
  a bank's used credit to a core equals the outstanding amount issued under it, less what the core paid on it
  (the committed `ecert.pay` outcomes; a certificate's `paid`, where the node shows it, agrees with them);
- recourse: every claim a committed `ecert.default` filed is repaid and written off by committed txs within its
  amount, and closed exactly when nothing is left;
- each node's own state, read from its data directory after the processes stopped (node/chaos/state_check.py):
  the ledger's invariants (ecert/invariants.py: paid + outstanding = amount for every root, each bank's exposure
  = financed - recovered - written off, the indexes) and its state root recomputed from scratch, at the height it
  answered;
- identical block hashes (and state roots, where blocks carry them) at every height on every node, and the same
  head on every node;
- linearizable reads: a register per certificate holding (holder, status), written by committed txs, read with
  ``?consistency=linearizable``; checked with the Porcupine-style checker;
- availability: share of time with a leader, leaderless gaps, success rate during faults.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from node.chaos.history import (
    COMMITTED,
    REJECTED,
    UNKNOWN,
    FaultEvent,
    History,
    NodeDump,
    StatusSample,
    SubmitRecord,
    Violation,
)
from node.chaos.linearizability import CheckResult, Operation, check_history

SPENT = frozenset({"split"})  # a spent certificate's value lives on in its children
NOT_OUTSTANDING = frozenset({"split", "settled", "cancelled"})  # `defaulted` is still owed
VIOLATION_TXS_MAX = 20


@dataclass(slots=True)
class CheckReport:
    violations: list[Violation] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    linearizability: CheckResult | None = None

    def add(self, kind: str, message: str, *, txs: Iterable[str] = (), nodes: Iterable[str] = (),
            certs: Iterable[str] = ()) -> None:
        self.violations.append(Violation(kind, message, list(txs)[:VIOLATION_TXS_MAX], sorted(set(nodes)),
                                         list(certs)[:VIOLATION_TXS_MAX]))


# -- normalising what nodes answer ---------------------------------------------------------------------------


def tx_answer(ans: dict[str, Any] | None) -> tuple[str, int | None, Any]:
    """(status, height, result-or-error-code) of a /v1/tx answer; status "absent" for unknown/pending/missing."""
    if not ans or ans.get("status") not in (COMMITTED, REJECTED):
        return "absent", None, None
    if ans["status"] == COMMITTED:
        return COMMITTED, ans.get("height"), ans.get("result")
    err = ans.get("error")
    code = err.get("code") if isinstance(err, dict) else err
    return REJECTED, ans.get("height"), code


def _header(block: dict[str, Any]) -> dict[str, Any]:
    header = block.get("header")
    return header if isinstance(header, dict) else block


def block_hash(block: dict[str, Any]) -> Any:
    return _header(block).get("hash", block.get("hash"))


def block_state_root(block: dict[str, Any]) -> Any:
    return _header(block).get("state_root", block.get("state_root"))


def block_tx_ids(block: dict[str, Any]) -> list[str]:
    for key in ("tx_ids", "txs"):
        items = block.get(key)
        if isinstance(items, list):
            return [x if isinstance(x, str) else str(x.get("tx_id") or x.get("id")) for x in items]
    return []


# -- the checks ----------------------------------------------------------------------------------------------


def check_run(history: History, dumps: list[NodeDump]) -> CheckReport:
    report = CheckReport()
    live = [d for d in dumps if d.status is not None]
    for d in dumps:
        if d.status is None:
            report.add("node_unreachable", f"node {d.node_id} did not answer after healing", nodes=[d.node_id])
    for d in dumps:
        if d.errors:
            report.add("unverified", f"{d.node_id} never answered {len(d.errors)} of the checker's requests, so "
                       f"part of its state could not be checked: {'; '.join(d.errors[:3])}", nodes=[d.node_id])
    for crash in history.crashes:
        report.add("node_crashed", f"node {crash['node']} (pid {crash['pid']}) exited on its own with code "
                   f"{crash['exit_code']} at {crash['t']}s; last output: {crash['output_tail'][-400:]!r}",
                   nodes=[crash["node"]])
    check_heads(report, live)
    check_blocks(report, live)
    check_txs(report, history, live)
    check_final_state(report, history, live)
    check_recourse(report, history, live)
    check_states(report, dumps)
    check_reads(report, history, live)
    report.stats.update(history_stats(history))
    report.stats["availability"] = availability(history.samples, history.faults, history.txs, len(history.nodes))
    report.stats["lost"] = len(report.lost)
    return report


def check_heads(report: CheckReport, dumps: list[NodeDump]) -> None:
    heads = {d.node_id: (d.status or {}).get("height") for d in dumps}
    if len(set(heads.values())) > 1:
        report.add("not_converged", f"nodes stopped at different heights after healing: {heads}", nodes=heads)
        return
    for field_name in ("block_hash", "state_root"):
        values = {d.node_id: (d.status or {}).get(field_name) for d in dumps}
        if len(set(values.values())) > 1:
            groups: dict[Any, list[str]] = {}
            for n, v in values.items():
                groups.setdefault(v, []).append(n)
            minority = min(groups.values(), key=len)
            report.add(f"{field_name}_mismatch",
                       f"same height {next(iter(heads.values()))}, different {field_name}: "
                       + "; ".join(f"{sorted(ns)}: {str(v)[:16]}" for v, ns in groups.items()),
                       nodes=minority)


def check_blocks(report: CheckReport, dumps: list[NodeDump]) -> None:
    heights = sorted({h for d in dumps for h in d.blocks})
    mismatched = 0
    for h in heights:
        have = {d.node_id: d.blocks[h] for d in dumps if h in d.blocks}
        for what, fn in (("hash", block_hash), ("state root", block_state_root)):
            values = {n: fn(b) for n, b in have.items()}
            if what == "state root" and all(v is None for v in values.values()):
                continue
            if len(set(map(str, values.values()))) > 1:
                mismatched += 1
                groups: dict[str, list[str]] = {}
                for n, v in values.items():
                    groups.setdefault(str(v), []).append(n)
                minority = min(groups.values(), key=len)
                report.add("block_mismatch", f"height {h}: block {what} differs: "
                           + "; ".join(f"{sorted(ns)}: {v[:16]}" for v, ns in groups.items()), nodes=minority)
    for d in dumps:
        check_chain(report, d)
    # Blocks below a snapshot's base are not kept by a node that caught up from the snapshot: not a fault.
    report.stats["blocks_unavailable"] = {
        d.node_id: sum(1 for h in range(1, ((d.status or {}).get("height") or 0) + 1) if h not in d.blocks)
        for d in dumps}
    report.stats["blocks_compared"] = len(heights)
    report.stats["block_mismatches"] = mismatched


def check_chain(report: CheckReport, dump: NodeDump) -> None:
    """Each block links to the one before it, and block time never goes back (CONTRACT §3)."""
    for h in sorted(dump.blocks):
        prev, cur = dump.blocks.get(h - 1), dump.blocks[h]
        if prev is None:
            continue
        if cur.get("prev_hash") != block_hash(prev):
            report.add("chain_broken", f"{dump.node_id}: block {h} does not link to block {h - 1}",
                       nodes=[dump.node_id], txs=block_tx_ids(cur))
        if isinstance(cur.get("time"), int) and isinstance(prev.get("time"), int) and cur["time"] < prev["time"]:
            report.add("time_went_back", f"{dump.node_id}: block {h} time {cur['time']} is before block {h - 1} "
                       f"time {prev['time']} (proposer {cur.get('proposer')})", nodes=[dump.node_id])


def _inclusions(dump: NodeDump) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for h in sorted(dump.blocks):
        for tx_id in block_tx_ids(dump.blocks[h]):
            out.setdefault(tx_id, []).append(h)
    return out


def check_txs(report: CheckReport, history: History, dumps: list[NodeDump]) -> None:
    inclusions = {d.node_id: _inclusions(d) for d in dumps}
    blocks_by_node = {d.node_id: d.blocks for d in dumps}
    duplicates = 0
    unknown_committed = unknown_absent = 0
    for rec in history.txs:
        # A node that never answered about this tx is left out (reported once per node as unverified).
        answers = {d.node_id: tx_answer(d.txs.get(rec.tx_id)) for d in dumps if rec.tx_id in d.txs}
        if rec.outcome == COMMITTED:
            missing = [n for n, a in answers.items() if a[0] != COMMITTED]
            if missing:
                report.lost.add(rec.tx_id)
                report.add("lost", f"acknowledged {rec.kind} (height {rec.height}) is not committed on "
                           f"{sorted(missing)}: {', '.join(f'{n}={answers[n][0]}' for n in sorted(missing))}",
                           txs=[rec.tx_id], nodes=missing)
            wrong = [n for n, a in answers.items()
                     if a[0] == COMMITTED and (a[1] != rec.height or a[2] != rec.result)]
            if wrong:
                report.add("outcome_mismatch", f"acknowledged {rec.kind} was committed at height {rec.height} "
                           f"with {rec.result}; nodes answer differently", txs=[rec.tx_id], nodes=wrong)
        elif rec.outcome == REJECTED:
            wrong = [n for n, a in answers.items()
                     if a[0] == COMMITTED or (a[0] == REJECTED and a[2] != rec.error_code)]
            if wrong:
                report.add("outcome_mismatch", f"{rec.kind} was acknowledged as rejected ({rec.error_code}) "
                           "but nodes record another outcome", txs=[rec.tx_id], nodes=wrong)
        else:
            fates = {repr(a) if a[0] != "absent" else "absent" for a in answers.values()}
            if len(fates) > 1:
                report.add("unknown_divergent", f"{rec.kind} with unknown outcome has different fates on "
                           f"different nodes: {answers}", txs=[rec.tx_id], nodes=answers)
            elif fates == {"absent"}:
                unknown_absent += 1
            else:
                unknown_committed += 1
        for node, (status, height, _) in answers.items():
            seen = inclusions[node].get(rec.tx_id, [])
            if len(seen) > 1:
                duplicates += 1
            block = blocks_by_node[node].get(height) if height is not None else None
            if status == "absent" or block is None:
                continue  # no outcome, or its block is below this node's snapshot base
            if rec.tx_id not in block_tx_ids(block):
                report.add("phantom_outcome", f"{node} records an outcome of {rec.kind} at height {height} "
                           "but that block does not hold it", txs=[rec.tx_id], nodes=[node])
            elif seen[0] != height:
                report.add("applied_twice", f"{node} records {rec.kind} at height {height} but it was first "
                           f"included at height {seen[0]} (included at {seen})", txs=[rec.tx_id], nodes=[node])
    report.stats["unknown_committed"] = unknown_committed
    report.stats["unknown_absent"] = unknown_absent
    report.stats["duplicate_inclusions"] = duplicates


def chain_outcome(dumps: list[NodeDump], tx_id: str) -> tuple[str, int | None, Any]:
    """The tx's outcome as most nodes record it (disagreements are reported by check_txs)."""
    votes: dict[str, tuple[int, tuple[str, int | None, Any]]] = {}
    for d in dumps:
        a = tx_answer(d.txs.get(tx_id))
        key = repr(a)
        votes[key] = (votes.get(key, (0, a))[0] + 1, a)
    if not votes:
        return "absent", None, None
    return max(votes.values(), key=lambda v: v[0])[1]


def paid_by_cert(history: History, dumps: list[NodeDump]) -> dict[str, int]:
    """Principal the debtor paid on each certificate by committed `ecert.pay` txs (a settled one is paid in
    full and no longer outstanding, so settlements need not be counted)."""
    paid: dict[str, int] = {}
    for rec in history.txs:
        if rec.kind != "ecert.pay":
            continue
        status, _, result = chain_outcome(dumps, rec.tx_id)
        if status == COMMITTED and isinstance(result, dict):
            paid[rec.body["cert_id"]] = paid.get(rec.body["cert_id"], 0) + int(result.get("principal") or 0)
    return paid


def check_final_state(report: CheckReport, history: History, dumps: list[NodeDump]) -> None:
    paid = paid_by_cert(history, dumps)
    issues = [r for r in history.txs if r.kind == "ecert.issue"]
    roots: dict[str, SubmitRecord] = {}
    for rec in issues:
        status, _, result = chain_outcome(dumps, rec.tx_id)
        if status == COMMITTED and isinstance(result, dict) and result.get("certs"):
            roots[result["certs"][0]] = rec
    checked = credit_checked = 0
    for d in dumps:
        outstanding: dict[str, int] = {}
        complete = True  # credit is compared with the sum over every lineage, so only when all answered
        for root_id, rec in roots.items():
            if root_id not in d.lineages:
                complete = False  # never answered: unverified, reported per node
                continue
            lineage = d.lineages[root_id]
            if lineage is None:
                report.add("lineage_missing", f"{d.node_id} has no lineage for committed root {root_id}",
                           txs=[rec.tx_id], nodes=[d.node_id], certs=[root_id])
                continue
            checked += 1
            live = check_lineage(report, d.node_id, root_id, lineage, rec, paid)
            key = f"{rec.body.get('bank')}/{rec.signer}"
            outstanding[key] = outstanding.get(key, 0) + live
        for key, line in d.credit.items():
            if not complete or not isinstance(line, dict) or "used" not in line:
                continue
            want = outstanding.get(key, 0)
            credit_checked += 1
            if line["used"] != want:
                report.add("credit", f"{d.node_id}: credit used {key} is {line['used']}, outstanding issued "
                           f"under it is {want}", nodes=[d.node_id])
    report.stats["lineages_checked"] = checked
    report.stats["credit_lines_checked"] = credit_checked


def check_lineage(report: CheckReport, node: str, root_id: str, lineage: dict[str, Any], issue: SubmitRecord,
                  paid: dict[str, int] | None = None) -> int:
    """Check one lineage; return its outstanding amount: what the debtor has not paid of its live leaves
    (`paid`: principal paid per certificate by committed txs)."""
    paid = paid or {}
    certs = lineage.get("certs") or []
    by_id = {c["id"]: c for c in certs}
    if len(by_id) != len(certs):
        report.add("conservation", f"{node}: lineage {root_id} lists a certificate twice", nodes=[node],
                   certs=[root_id], txs=[issue.tx_id])
    root = by_id.get(root_id)
    if root is None:
        report.add("conservation", f"{node}: lineage {root_id} lacks its root", nodes=[node], certs=[root_id])
        return 0
    if root.get("amount") != issue.body.get("amount"):
        report.add("conservation", f"{node}: root {root_id} amount {root.get('amount')} differs from the issued "
                   f"{issue.body.get('amount')}", nodes=[node], certs=[root_id], txs=[issue.tx_id])
    children: dict[str, list[dict[str, Any]]] = {}
    for c in certs:
        if c.get("parent_id"):
            children.setdefault(c["parent_id"], []).append(c)
    for parent_id, kids in children.items():
        parent = by_id.get(parent_id)
        total = sum(k.get("amount", 0) for k in kids)
        if parent is None or parent.get("status") not in SPENT or total != parent.get("amount"):
            report.add("conservation", f"{node}: children of {parent_id} sum to {total}, parent "
                       f"{parent and parent.get('amount')} status {parent and parent.get('status')}",
                       nodes=[node], certs=[parent_id, *(k["id"] for k in kids)])
    for c in certs:
        if c.get("status") in SPENT and c["id"] not in children:
            report.add("conservation", f"{node}: {c['id']} is spent but has no children", nodes=[node],
                       certs=[c["id"]])
    leaves = [c for c in certs if c["id"] not in children]
    if root.get("status") != "cancelled":
        total = sum(c.get("amount", 0) for c in leaves)
        if total != root.get("amount"):
            report.add("conservation", f"{node}: live leaves of {root_id} sum to {total}, root amount is "
                       f"{root.get('amount')}", nodes=[node], certs=[root_id, *(c["id"] for c in leaves)])
    for c in leaves:
        by_txs = paid.get(c["id"], 0)
        outstanding = c.get("status") not in NOT_OUTSTANDING
        if outstanding and not 0 <= by_txs < c.get("amount", 0) and c.get("status") != "defaulted":
            report.add("payment", f"{node}: {c['id']} is {c.get('status')} with {by_txs} of {c.get('amount')} "
                       "paid by committed txs", nodes=[node], certs=[c["id"]])
        if outstanding and "paid" in c and c["paid"] != by_txs:
            report.add("payment", f"{node}: {c['id']} shows paid {c['paid']}, committed payments sum to {by_txs}",
                       nodes=[node], certs=[c["id"]])
    return sum(c.get("amount", 0) - paid.get(c["id"], 0) for c in leaves if c.get("status") not in NOT_OUTSTANDING)


def check_recourse(report: CheckReport, history: History, dumps: list[NodeDump]) -> None:
    """Each claim filed by a committed default: committed repayments and write-off stay within it, and the
    last committed one says `closed` exactly when they add up to it."""
    claims: dict[str, int] = {}
    moves: dict[str, list[tuple[int, SubmitRecord, dict[str, Any]]]] = {}
    for rec in history.txs:
        if rec.kind not in ("ecert.default", "recourse.repay", "recourse.write_off"):
            continue
        status, height, result = chain_outcome(dumps, rec.tx_id)
        if status != COMMITTED or not isinstance(result, dict):
            continue
        cert_id = rec.body["cert_id"]
        if rec.kind == "ecert.default":
            if isinstance(result.get("claim"), dict):
                claims[cert_id] = int(result["claim"]["amount"])
        else:
            moves.setdefault(cert_id, []).append((height or 0, rec, result))
    for cert_id, recs in moves.items():
        amount = claims.get(cert_id)
        txs = [r.tx_id for _, r, _ in recs]
        if amount is None:
            report.add("recourse", f"recourse txs on {cert_id} committed without a claim a committed default filed",
                       txs=txs, certs=[cert_id])
            continue
        settled = 0
        for _, rec, result in sorted(recs, key=lambda m: m[0]):
            settled += int(result.get("amount") or result.get("written_off") or 0)
            closed = result.get("status") == "closed"
            if settled > amount or closed != (settled == amount):
                report.add("recourse", f"claim on {cert_id} of {amount}: after {rec.kind} {settled} repaid and "
                           f"written off, status {result.get('status')}", txs=txs, certs=[cert_id])
                break
    report.stats["recourse_claims"] = len(claims)


def check_states(report: CheckReport, dumps: list[NodeDump]) -> None:
    """What node/chaos/state_check.py found in each node's data directory."""
    checked = 0
    for d in dumps:
        found = d.state_check
        if found is None:
            continue
        if found.get("error"):
            report.add("unverified", f"{d.node_id}: its state could not be checked: {found['error']}",
                       nodes=[d.node_id])
            continue
        checked += 1
        if found.get("invariants") != "ok":
            report.add("invariant", f"{d.node_id}: state at height {found.get('height')} breaks an invariant: "
                       f"{found.get('invariants')}", nodes=[d.node_id])
        answered = (d.status or {}).get("height")
        if answered is not None and (found.get("height") or 0) < answered:
            report.add("state_behind", f"{d.node_id} answered height {answered} but its data directory holds "
                       f"height {found.get('height')}: it lost applied blocks", nodes=[d.node_id])
    report.stats["states_checked"] = checked


# -- linearizability of certificate reads -----------------------------------------------------------------------


def tx_effects(rec: SubmitRecord, result: Any) -> list[tuple[str, tuple[str, str]]]:
    """What a committed tx writes to each certificate register: [(cert id, (holder, status))]."""
    body, signer = rec.body, rec.signer
    certs = list(result.get("certs") or []) if isinstance(result, dict) else []
    kind = rec.kind
    if kind == "ecert.issue" and certs:
        return [(certs[0], (body["to"], "issued"))]
    if kind == "ecert.accept":
        return [(body["cert_id"], (signer, "active"))]
    if kind == "ecert.reject":
        return [(body["cert_id"], (signer, "cancelled"))]
    if kind == "ecert.transfer":
        holders = [t["org"] for t in body["to"]] + [signer] * (len(certs) - len(body["to"]))
        return [(body["cert_id"], (signer, "split"))] + [(c, (h, "active")) for c, h in zip(certs, holders,
                                                                                           strict=False)]
    if kind == "ecert.split":
        return [(body["cert_id"], (signer, "split"))] + [(c, (signer, "active")) for c in certs]
    if kind == "finance.request":
        return [(body["cert_id"], (signer, "financing"))]
    if kind == "finance.approve":
        return [(body["cert_id"], (signer, "financed"))]
    if not isinstance(result, dict):
        return []
    if kind in ("ecert.pay", "ecert.settle"):
        return [(body["cert_id"], (str(result.get("paid_to")), str(result.get("status"))))]
    if kind == "ecert.settle_root":
        return [(str(s["cert_id"]), (str(s["paid_to"]), "settled")) for s in result.get("settled") or []]
    if kind == "ecert.default":
        return [(body["cert_id"], (str(result.get("holder")), str(result.get("status"))))]
    return []  # disputes and recourse claims move neither holder nor status


def cert_value(cert: dict[str, Any] | None) -> tuple[str, str] | None:
    return None if cert is None else (cert.get("holder"), cert.get("status"))  # type: ignore[return-value]


def build_register_history(history: History, dumps: list[NodeDump]) -> list[Operation]:
    ops: list[Operation] = []
    written: set[str] = set()
    for rec in history.txs:
        status, _, result = chain_outcome(dumps, rec.tx_id)
        if status != COMMITTED:
            continue
        # Committed but never acknowledged: it took effect at some instant after its invocation.
        complete = rec.complete if rec.outcome == COMMITTED else math.inf
        for cert_id, value in tx_effects(rec, result):
            written.add(cert_id)
            ops.append(Operation(cert_id, ("write", value), None, rec.invoke, complete, rec.client,
                                 f"{rec.kind} {rec.tx_id[:12]}"))
    for read in history.reads:
        if read.ok and read.cert_id in written:
            ops.append(Operation(read.cert_id, ("read", None), read.value, read.invoke, read.complete,
                                 read.client, f"read@{read.node}"))
    # The final state, read from every node after everything stopped, must be the last write.
    end = history.duration + 1.0
    for d in dumps:
        for cert_id, cert in d.certs.items():
            if cert_id in written:
                ops.append(Operation(cert_id, ("read", None), cert_value(cert), end, end + 1.0, "final",
                                     f"final@{d.node_id}"))
    return ops


def check_reads(report: CheckReport, history: History, dumps: list[NodeDump]) -> None:
    ops = build_register_history(history, dumps)
    result = check_history(ops)
    report.linearizability = result
    for key in result.violations:
        stuck = key.stuck
        report.add("linearizability",
                   f"certificate {key.key}: {stuck.label if stuck else 'an op'} saw "
                   f"{stuck.output if stuck else '?'} after "
                   + ", ".join(f"{op.label}{'=' + str(op.input[1]) if op.input[0] == 'write' else ''}"
                               for op in key.linearized[-4:]),
                   certs=[str(key.key)],
                   txs=[op.label.split()[-1] for op in key.linearized if op.input[0] == "write"])
    report.stats["linearizability"] = {
        "certs": len(result.keys),
        "ops": len(ops),
        "reads": sum(1 for r in history.reads if r.ok),
        "undecided": len(result.undecided),
        "violations": len(result.violations),
    }


# -- figures ---------------------------------------------------------------------------------------------------


def history_stats(history: History) -> dict[str, Any]:
    by_outcome = {COMMITTED: 0, REJECTED: 0, UNKNOWN: 0}
    kinds: dict[str, int] = {}
    for rec in history.txs:
        by_outcome[rec.outcome] += 1
        if rec.outcome == COMMITTED:
            kinds[rec.kind] = kinds.get(rec.kind, 0) + 1
    lat = sorted(rec.latency for rec in history.txs if rec.outcome == COMMITTED and rec.latency is not None)
    return {
        "txs": len(history.txs),
        "acked": by_outcome[COMMITTED],
        "rejected": by_outcome[REJECTED],
        "unknown": by_outcome[UNKNOWN],
        "committed_by_kind": kinds,
        "reads_ok": sum(1 for r in history.reads if r.ok),
        "reads_failed": sum(1 for r in history.reads if not r.ok),
        "latency_ms": {
            "p50": round(1000 * _quantile(lat, 0.5), 1) if lat else None,
            "p99": round(1000 * _quantile(lat, 0.99), 1) if lat else None,
            "max": round(1000 * lat[-1], 1) if lat else None,
        },
    }


def _quantile(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def leader_of(sample: StatusSample, cluster_size: int) -> str | None:
    """The leader a majority of the cluster follows in this sample, if it also says it leads."""
    votes: dict[str, int] = {}
    for s in sample.statuses.values():
        if s and s.get("leader_id"):
            votes[s["leader_id"]] = votes.get(s["leader_id"], 0) + 1
    for leader, n in votes.items():
        st = sample.statuses.get(leader)
        if n >= cluster_size // 2 + 1 and st and st.get("role") == "leader":
            return leader
    return None


def in_fault(t: float, faults: list[FaultEvent]) -> bool:
    return any(f.start <= t <= (f.end if f.end is not None else math.inf) for f in faults)


def availability(samples: list[StatusSample], faults: list[FaultEvent], txs: list[SubmitRecord],
                 cluster_size: int) -> dict[str, Any]:
    with_leader = 0.0
    total = 0.0
    gaps: list[float] = []
    gap_start: float | None = None
    changes = 0
    last_leader: str | None = None
    for a, b in itertools.pairwise(samples):
        dt = b.t - a.t
        total += dt
        leader = leader_of(a, cluster_size)
        if leader is not None:
            with_leader += dt
            if gap_start is not None:
                gaps.append(a.t - gap_start)
                gap_start = None
            if last_leader is not None and leader != last_leader:
                changes += 1
            last_leader = leader
        elif gap_start is None:
            gap_start = a.t
    if gap_start is not None and samples:
        gaps.append(samples[-1].t - gap_start)

    def rate(recs: list[SubmitRecord]) -> float | None:
        return round(sum(1 for r in recs if r.outcome != UNKNOWN) / len(recs), 3) if recs else None

    during = [r for r in txs if in_fault(r.invoke, faults)]
    calm = [r for r in txs if not in_fault(r.invoke, faults)]
    return {
        "leader_share": round(with_leader / total, 3) if total else None,
        "leader_changes": changes,
        "leaderless_gaps": len(gaps),
        "election_ms_max": round(1000 * max(gaps), 0) if gaps else 0,
        "election_ms_mean": round(1000 * sum(gaps) / len(gaps), 0) if gaps else 0,
        "success_rate_during_faults": rate(during),
        "success_rate_without_faults": rate(calm),
    }
