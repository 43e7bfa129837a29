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

Who may call it is the caller's business (the node serves it to the regulator only: ecert/access.py's role
`regulator` reads everything). No clock, no I/O beyond the view.
"""

from __future__ import annotations

from typing import Any

from consensus.invariant import require
from ecert import state as s
from ledger.state_view import StateView

SUPERVISION_CERTS_MAX = 20_000
"""Live certificates read per supervision call (each is one point read and one decode): the node computes
the views on its event loop, in one go, so that they are of one state; this bounds that pause."""
HOLDINGS_INDEX_PREFIX = b"h/"
"""ecert/state.py's holdings index, all orgs: `h/<org_id>/<cert_id>` -> b"" for every live certificate."""

require(SUPERVISION_CERTS_MAX > 0, "supervision reads at least one certificate")


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


def supervision(view: StateView, certs_max: int = SUPERVISION_CERTS_MAX) -> dict[str, Any]:
    """The three supervision views of the committed state in `view` (see the module docstring)."""
    require(certs_max > 0, "supervision reads at least one certificate")
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
        if cert.status == s.FINANCED:
            bank = by_bank.setdefault(cert.holder, [0, 0, 0])
            bank[0] += 1
            bank[1] += cert.amount
            bank[2] += cert.disbursed or 0
    return {
        "outstanding_by_core": outstanding_by_core(view),
        "certs_by_depth": [{"depth": d, "count": by_depth[d][0], "amount": by_depth[d][1]} for d in sorted(by_depth)],
        "financed_by_bank": [{"bank": b, "count": by_bank[b][0], "principal": by_bank[b][1],
                              "disbursed": by_bank[b][2]} for b in sorted(by_bank)],
        "live_certs": live,
        "complete": complete,
    }
