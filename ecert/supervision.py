"""The regulator's supervision views (issue 13 item 4): pure aggregates over committed state.

    supervision(view) -> {"outstanding_by_core", "certs_by_depth", "financed_by_bank", "live_certs", "complete"}

- outstanding per core enterprise: what each core still owes, line by line. A credit line's `used` is the
  outstanding amount of certificates issued under it (the credit invariant of CONTRACT §3), so this reads the
  credit lines (`k/`) only, never a certificate;
- certificates per tier depth: the live certificates (issued, active, financing, financed) by `Cert.depth` (0 for a
  root, one more per transfer or split below it), with their count and amount;
- financed totals per bank: the live certificates a bank holds because it financed them (status `financed`), with
  their principal and what the bank paid out for them (`disbursed`).

Live certificates are read through the holdings index (`h/<org>/<cert>`: exactly the live ones), at most
`SUPERVISION_CERTS_MAX` of them per call: past that the depth and bank totals cover only the certificates read and
`complete` is False, so a huge chain costs one bounded read, never a stall. The credit totals are always complete.

Issue 14 (item 6) adds, from the same bounded read of the live certificates (and the `complete` flag covers them):
- `overdue` and `defaulted`: count and unpaid principal of the live certificates past maturity and not
  defaulted, and of the defaulted ones (with their penalty due at `now`); `now` is the last block time (without
  it, `overdue` is None: only the caller knows the chain's time);
- `roots`: each root with live certificates: its debtor, the deepest tier its live certificates reached, how
  many are live and their unpaid principal, and the size of its lineage (`lc/<root>`), by root id, at most
  `SUPERVISION_ROOTS_MAX`;
- `exposure_by_bank`: each bank's financing exposure per org (ecert/financing.py `fl/<bank>/<org>`: what it
  financed that the org still stands behind, and the limit it set), at most `SUPERVISION_EXPOSURES_MAX` records.
  A financed certificate counts against its seller and its debtor, so a bank's rows do not add up to what it
  financed (that is `financed_by_bank`).

Who may call it is the caller's business (the node serves it to the regulator only: ecert/access.py's role
`regulator` reads everything). No clock, no I/O beyond the view.
"""

from __future__ import annotations

from typing import Any

from consensus.invariant import require
from ecert import financing, settlement
from ecert import state as s
from ledger.state_view import StateView

SUPERVISION_CERTS_MAX = 20_000
"""Live certificates read per supervision call (each is one point read and one decode): the node computes
the views on its event loop, in one go, so that they are of one state; this bounds that pause."""
HOLDINGS_INDEX_PREFIX = b"h/"
"""ecert/state.py's holdings index, all orgs: `h/<org_id>/<cert_id>` -> b"" for every live certificate."""

SUPERVISION_ROOTS_MAX = 1_000
"""Roots listed in `roots` (the first by id); the totals above cover every certificate read."""
SUPERVISION_EXPOSURES_MAX = 10_000
"""Exposure records read for `exposure_by_bank`."""

require(SUPERVISION_CERTS_MAX > 0, "supervision reads at least one certificate")


def exposure_by_bank(view: StateView, records_max: int = SUPERVISION_EXPOSURES_MAX
                     ) -> tuple[list[dict[str, Any]], bool]:
    """Per bank (sorted): its total exposure and each org's record; and whether every record was read."""
    banks: dict[str, list[financing.Exposure]] = {}
    complete = True
    for n, (_, value) in enumerate(view.scan(financing.EXPOSURE_PREFIX)):
        if n >= records_max:
            complete = False
            break
        line = s.decode_record(financing.Exposure, value)
        banks.setdefault(line.bank, []).append(line)
    return [{"bank": bank,
             "orgs": [{"org": x.org, "used": x.used, "limit": x.limit}
                      for x in sorted(banks[bank], key=lambda x: x.org)]}
            for bank in sorted(banks)], complete


def outstanding_by_core(view: StateView) -> list[dict[str, Any]]:
    """Per core enterprise (sorted by id): the total outstanding and each bank's line (used, limit)."""
    cores: dict[str, list[s.CreditLine]] = {}
    for _, value in view.scan(s.CREDIT_PREFIX):
        line = s.decode_record(s.CreditLine, value)
        cores.setdefault(line.core, []).append(line)
    out = []
    for core in sorted(cores):
        lines = sorted(cores[core], key=lambda line: line.bank)
        out.append({"core": core, "outstanding": sum(line.used for line in lines),
                    "lines": [{"bank": line.bank, "used": line.used, "limit": line.limit,
                               "expires_at": line.expires_at} for line in lines]})
    return out


def supervision(view: StateView, certs_max: int = SUPERVISION_CERTS_MAX,
                now: int | None = None) -> dict[str, Any]:
    """The supervision views of the committed state in `view` at block time `now` (see the module docstring)."""
    require(certs_max > 0, "supervision reads at least one certificate")
    bps = s.chain_params(view).penalty_bps_per_day
    overdue = [0, 0]  # count, unpaid principal
    defaulted = [0, 0, 0]  # count, unpaid principal, penalty due
    roots: dict[str, list[Any]] = {}  # root -> [debtor, depth max, live, unpaid]
    by_depth: dict[int, list[int]] = {}  # depth -> [count, amount]
    by_bank: dict[str, list[int]] = {}  # bank -> [count, principal, disbursed]
    live = 0
    complete = True
    for key, _ in view.scan(HOLDINGS_INDEX_PREFIX):
        if live >= certs_max:
            complete = False
            break
        holder, _, cert_id = key[len(HOLDINGS_INDEX_PREFIX):].decode().partition("/")
        cert = s.get_cert(view, cert_id)
        require(cert is not None and cert.holder == holder and cert.status in s.LIVE_STATUSES,
                f"holdings index names {cert_id!r} for {holder!r}, which is not a live cert it holds")
        assert cert is not None
        live += 1
        depth = by_depth.setdefault(cert.depth, [0, 0])
        depth[0] += 1
        depth[1] += cert.amount
        unpaid = settlement.unpaid(cert)
        if cert.status == s.DEFAULTED:
            defaulted[0] += 1
            defaulted[1] += unpaid
            defaulted[2] += settlement.penalty_due(cert, now, bps) if now is not None else 0
        elif now is not None and now >= cert.maturity:
            overdue[0] += 1
            overdue[1] += unpaid
        root = roots.setdefault(cert.root_id, [cert.debtor, 0, 0, 0])
        root[1] = max(root[1], cert.depth)
        root[2] += 1
        root[3] += unpaid
        if cert.status == s.FINANCED:
            bank = by_bank.setdefault(cert.holder, [0, 0, 0])
            bank[0] += 1
            bank[1] += cert.amount
            bank[2] += cert.disbursed or 0
    exposures, exposures_complete = exposure_by_bank(view)
    return {
        "outstanding_by_core": outstanding_by_core(view),
        "certs_by_depth": [{"depth": d, "count": by_depth[d][0], "amount": by_depth[d][1]} for d in sorted(by_depth)],
        "financed_by_bank": [{"bank": b, "count": by_bank[b][0], "principal": by_bank[b][1],
                              "disbursed": by_bank[b][2]} for b in sorted(by_bank)],
        "live_certs": live,
        "complete": complete,
        "overdue": None if now is None else {"count": overdue[0], "unpaid": overdue[1]},
        "defaulted": {"count": defaulted[0], "unpaid": defaulted[1],
                      "penalty": defaulted[2] if now is not None else None},
        "roots": [_root_row(view, root_id, roots[root_id]) for root_id in sorted(roots)[:SUPERVISION_ROOTS_MAX]],
        "roots_listed_all": len(roots) <= SUPERVISION_ROOTS_MAX,
        "exposure_by_bank": exposures,
        "exposures_complete": exposures_complete,
        "at": now,
    }


def _root_row(view: StateView, root_id: str, row: list[Any]) -> dict[str, Any]:
    count = view.get(s.lineage_count_key(root_id))
    return {"root_id": root_id, "debtor": row[0], "depth_max": row[1], "live_certs": row[2], "unpaid": row[3],
            "lineage_size": 0 if count is None else int(count)}
