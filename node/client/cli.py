"""`ecert`: the command line of an ecert-chain consortium member.

    ecert init                                   the local demo: every key in keys/ and genesis.json, if missing
    ecert keygen --org ORG --node ID --dir DIR   a real host: this org's keys only, and its public file
    ecert genesis add-org|build|hash             the genesis ceremony, from public files (node/client/ceremony.py)
    ecert keys show [ORG]                        the public keys of the orgs
    ecert org register|approve|freeze|unfreeze   \
    ecert credit grant                            |
    ecert trade anchor|confirm                    |  one subcommand per transaction kind (CONTRACT §3, §6),
    ecert cert issue|accept|transfer|pay|default  |  signed with keys/<org>.key and POSTed to a node
    ecert finance request|approve|decline|limit   |  (?wait=commit); each --help names who may sign
    ecert recourse repay|write-off                |
    ecert dispute open|respond|resolve            |
    ecert complaint file|respond|escalate|close   |
    ecert member propose|approve                 /
    ecert org rotate-key ORG                     a new org key: org.rotate_key, then keys/ORG.key replaced
    ecert cert show|lineage|history|list, org show|holdings|owed, risk cert|org,
          trade show, credit show, member list|show, supervision, tx, block, status,
          watch                                  queries
    ecert sign-request METHOD PATH [BODY_FILE]   the Authorization header of one request, for curl
    ecert session                                a read-only session token (POST /v1/session)

Every command reads the cluster file (--config, default cluster.toml, or $ECERT_CONFIG) for the chain id, the
keys and the node list, and talks to --node URL (or $ECERT_NODE), else the first node of the cluster file that
answers. Output is rich tables; --json prints the node's JSON answer instead (one document per line).

Who a command speaks for (CONTRACT §6: every request is signed by an org; a tx by its signer): `--as ORG` (or
$ECERT_ORG). Without it: if keys/ holds exactly one org key (a member's own machine), that org; if it holds
several (the local demo holds them all), a read speaks for the org that runs the node addressed (--node matched
to the cluster file's [[nodes]], else the first [[nodes]] entry) and a transaction asks for --as; with no key to
use, reads go anonymous (only the public routes answer). Tx submissions themselves are never signed as requests:
the envelope is its own signature.

Exit codes: 0 done (tx committed or accepted), 1 tx rejected or the node refused the request, 2 bad usage or no
node reachable, 3 outcome unknown (the tx id is printed: poll it with `ecert tx ID`).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ecert.privacy import DocumentError, open_document_with_seed, seal_document
from ecert.tx import envelope_to_json
from node.client import ceremony
from node.client.api import (
    CACERT_ENV,
    JSON,
    ApiError,
    Client,
    HttpsTrust,
    HttpsTrustError,
    Signer,
    Unreachable,
    api_error,
    load_signer,
    node_ids_of,
    request_timeout_s_default,
)
from node.client.rotate import RotationError, rotate_key
from node.config import ClusterConfig, ClusterConfigError, NodeSpec, load_config, parse_address
from node.genesis_file import LOCAL_DEMO_GRACE_PERIOD_MS, GenesisFileError, init_cluster_files
from node.keys import KeyFileError, node_key_path, node_public_key, org_key_path, org_public_keys
from node.request_auth import CLOCK_SKEW_MS_MAX, AuthError

EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3

watch_poll_s = 0.5

# Off a terminal rich would wrap tables at 80 columns; give them room instead.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


class CliError(Exception):
    """A usage or environment problem; printed as `error: ...`, exit code 2."""


def cli_signer(cluster: ClusterConfig, org_id: str, create: bool = False) -> Signer:
    try:
        return load_signer(cluster, org_id, create=create)
    except KeyFileError as e:
        raise CliError(str(e)) from None


# --- who speaks ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Speaker:
    """The org a command's requests are signed for (None: anonymous), and why, in words for a hint."""

    org: str | None
    why: str


def org_keys_in(cluster: ClusterConfig) -> list[str]:
    """The orgs with a key file in keys/: every `<id>.key` but the nodes' `node-<id>.key`."""
    node_files = {node_key_path(cluster.keys_dir, n.id).name for n in cluster.nodes}
    return sorted(p.stem for p in cluster.keys_dir.glob("*.key") if p.name not in node_files)


def node_url(text: str, cluster: ClusterConfig | None = None) -> str:
    """--node as a base URL. A bare HOST:PORT takes the scheme of the [[nodes]] entry advertising that address
    (https:// when the entry has https_cert), else http://."""
    if "://" in text:
        return text.rstrip("/")
    try:
        address = parse_address(text.rstrip("/"), "--node")
    except ClusterConfigError:
        return f"http://{text}".rstrip("/")  # not HOST:PORT: the request's error says what is wrong
    spec = next((n for n in cluster.nodes if (n.http.canonical_host, n.http.port)
                 == (address.canonical_host, address.port)), None) if cluster is not None else None
    return spec.http_url if spec is not None else f"http://{address}"


def addressed_node(cluster: ClusterConfig, node: str | None) -> NodeSpec | None:
    """The [[nodes]] entry of --node (by its URL), else the first entry (the node the client tries first)."""
    if node is None:
        return cluster.nodes[0] if cluster.nodes else None
    url = node_url(node, cluster)
    return next((n for n in cluster.nodes if n.http_url == url), None)


def who_speaks(cluster: ClusterConfig | None, as_org: str | None, node: str | None, for_tx: bool) -> Speaker:
    """The rule of the module docstring: --as / $ECERT_ORG; else the only org key in keys/; else, for a read, the
    org of the node addressed; else anonymous (a read) or a usage error (a transaction)."""
    if as_org:
        return Speaker(as_org, "--as / $ECERT_ORG")
    keys = org_keys_in(cluster) if cluster is not None else []
    if len(keys) == 1:
        return Speaker(keys[0], f"the only org key in {cluster.keys_dir if cluster else 'keys/'}")
    if for_tx:
        held = f"keys/ holds {len(keys)} org keys ({', '.join(keys)})" if keys else "keys/ holds no org key"
        raise CliError(f"which org signs this transaction? give --as ORG (or $ECERT_ORG): {held}")
    if cluster is None or not keys:
        return Speaker(None, "no org key in keys/")
    spec = addressed_node(cluster, node)
    if spec is None:
        return Speaker(None, f"--node {node} is no [[nodes]] entry of {cluster.path.name} and keys/ holds "
                             f"{len(keys)} org keys")
    if spec.org not in keys:
        return Speaker(None, f"no key in keys/ for {spec.org}, the org of node {spec.id} (the node addressed)")
    return Speaker(spec.org, f"the org of node {spec.id}, the node addressed")


# --- parsing helpers -----------------------------------------------------------------------------------------------

_REL_TIME = re.compile(r"^\+(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_time_ms(text: str, now_ms: int | None = None) -> int:
    """Milliseconds since the epoch from `1767225600000`, `+30s`/`+10m`/`+2h`/`+90d` or an ISO date/time (UTC)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = _REL_TIME.match(text)
    if m:
        base = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        return base + int(m.group(1)) * _UNIT_MS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ms since epoch, +30s, +2d, or 2026-12-31)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


_AMOUNT = re.compile(r"^(?:¥)?(\d+(?:\.\d+)?)([kmb]?)(yuan|cny|¥)?$", re.IGNORECASE)
_MULT = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


def parse_amount(text: str) -> int:
    """An amount in fen: `150000000` (an integer is fen), or yuan: `1500000.50yuan`, `¥1.5m`, `2kyuan`."""
    t = text.strip().replace(",", "").replace("_", "")
    if t.isdigit():
        return int(t)
    m = _AMOUNT.match(t)
    if m is None or (m.group(3) is None and not t.startswith("¥")):
        raise argparse.ArgumentTypeError(
            f"not an amount: {text!r} (fen as an integer, or yuan: 1500.50yuan, ¥1.5m)")
    fen = Decimal(m.group(1)) * _MULT[m.group(2).lower()] * 100
    if fen != fen.to_integral_value():
        raise argparse.ArgumentTypeError(f"not a whole number of fen: {text!r}")
    return int(fen)


def parse_recipient(text: str) -> dict[str, object]:
    org, sep, amount = text.partition(":")
    if not sep or not org:
        raise argparse.ArgumentTypeError(f"expected ORG:AMOUNT, got {text!r}")
    return {"org": org, "amount": parse_amount(amount)}


def fmt_amount(fen: Any) -> str:
    if not isinstance(fen, int):
        return "" if fen is None else str(fen)
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def fmt_time(ms: Any) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "" if ms is None else str(ms)
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def short(h: Any, n: int = 12) -> str:
    return f"{h[:n]}…" if isinstance(h, str) and len(h) > n + 1 else ("" if h is None else str(h))


# --- context -------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Ctx:
    args: argparse.Namespace
    _cluster: ClusterConfig | None = None
    _client: Client | None = None
    _speaker: Speaker | None = None
    _signer: Signer | None = None
    _trust: HttpsTrust | None = None

    @property
    def trust(self) -> HttpsTrust:
        """How https:// nodes are verified: their https_ca in the cluster file, plus --cacert / $ECERT_CACERT."""
        if self._trust is None:
            try:
                self._trust = HttpsTrust.of_cluster(self.cluster_if_any(), getattr(self.args, "cacert", None))
            except HttpsTrustError as e:
                raise CliError(str(e)) from None
        return self._trust

    @property
    def cluster(self) -> ClusterConfig:
        if self._cluster is None:
            try:
                self._cluster = load_config(self.args.config)
            except ClusterConfigError as e:
                raise CliError(str(e)) from None
        return self._cluster

    def cluster_if_any(self) -> ClusterConfig | None:
        try:
            return self.cluster
        except CliError:
            return None

    @property
    def urls(self) -> list[str]:
        if self.args.node:
            return [node_url(self.args.node, self.cluster_if_any())]
        return [n.http_url for n in self.cluster.nodes]

    @property
    def speaker(self) -> Speaker:
        """Who this command speaks for: a tx command for its signer, any other for the reader (who_speaks)."""
        if self._speaker is None:
            for_tx = bool(getattr(self.args, "signs_tx", False))
            as_org = self.args.as_org
            self._speaker = who_speaks(self.cluster if (for_tx or as_org) else self.cluster_if_any(), as_org,
                                       self.args.node, for_tx)
        return self._speaker

    def signer(self, create: bool = False) -> Signer:
        """The signer of this command's org (a tx's signer; the reader); a usage error if it has none."""
        if self._signer is None:
            org = self.speaker.org
            if org is None:
                raise CliError(f"which org? give --as ORG (or $ECERT_ORG): {self.speaker.why}")
            self._signer = cli_signer(self.cluster, org, create=create)
        return self._signer

    def use_signer(self, signer: Signer) -> None:
        """Speak for this signer from now on (org rotate-key: the org named, by its current key)."""
        self._signer, self._speaker = signer, Speaker(signer.org_id, "the org whose key rotates")
        if self._client is not None:
            self._client = self._client.speaking_for(signer)

    @property
    def client(self) -> Client:
        if self._client is None:
            cluster = self.cluster_if_any() if self.args.node else self.cluster
            signer = self.signer() if self.speaker.org is not None else None
            self._client = Client(self.urls, self.args.timeout, signer,
                                  node_ids_of(cluster) if cluster is not None else None, self.trust)
        return self._client

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def speaker_note(self) -> str:
        """For a refusal: whom the requests were signed for, and how to choose."""
        speaker = self._speaker
        if speaker is None:
            return ""
        if speaker.org is None:
            return f"sent anonymous ({speaker.why}); speak for an org with --as ORG"
        return f"signed as {speaker.org} ({speaker.why}); another org: --as ORG"

    def read(self, path: str) -> Any:
        if getattr(self.args, "linearizable", False):
            path += ("&" if "?" in path else "?") + "consistency=linearizable"
        return self.client.get(path)


def emit_json(doc: Any) -> None:
    print(json.dumps(doc, sort_keys=False), flush=True)


# --- init and keys -------------------------------------------------------------------------------------------------


def cmd_init(ctx: Ctx) -> int:
    cluster = ctx.cluster
    try:
        result = init_cluster_files(cluster)
    except GenesisFileError as e:
        raise CliError(str(e)) from None
    created = [str(p) for p in result.keys_created]
    genesis_path = cluster.genesis_path
    summary = {"command": "init", "config": str(cluster.path), "keys_created": created,
               "keys_dir": str(cluster.keys_dir), "genesis": str(genesis_path),
               "genesis_created": result.genesis_created,
               "local_demo": str(result.local_demo) if result.local_demo else None}
    if ctx.json:
        emit_json(summary)
        return EXIT_OK
    out.print(f"keys in {cluster.keys_dir}: {len(created)} created, "
              f"{len(cluster.orgs) + len(cluster.nodes) - len(created)} kept")
    for p in created:
        out.print(f"  + {p}")
    out.print(f"genesis {genesis_path}: {'created' if result.genesis_created else 'kept (never overwritten)'}")
    if result.genesis_created:
        out.print("  chain params: transfers draw on confirmed trade documents, invoices belong to a confirmed "
                  "contract, approvals carry KYC evidence; grace period "
                  f"{LOCAL_DEMO_GRACE_PERIOD_MS // 1000} s (the local demo's, so that it can show a default)",
                  soft_wrap=True)
    out.print(f"[yellow]local demo[/yellow]: this made every organisation's private key, all in "
              f"{cluster.keys_dir} (marked {result.local_demo}); nodes accept that only on loopback addresses. A "
              "real consortium never does this: each organisation runs `ecert keygen` on its own host and genesis "
              "comes from `ecert genesis build` (docs/DEPLOY.md).", soft_wrap=True)
    return EXIT_OK


def cmd_keys_show(ctx: Ctx) -> int:
    cluster = ctx.cluster
    rows = []
    for org in cluster.orgs:
        if ctx.args.org and org.id != ctx.args.org:
            continue
        sign_pk: str | None
        box_pk: str | None
        try:
            sign_pk, box_pk = org_public_keys(cluster, org.id)
        except FileNotFoundError:
            sign_pk = box_pk = None
        path = org_key_path(cluster.keys_dir, org.id)
        rows.append({"org": org.id, "role": org.role, "name": org.name, "sign_pk": sign_pk, "box_pk": box_pk,
                     "key_file": str(path) if path.exists() else None})
    if ctx.args.org and not rows:
        raise CliError(f"no org {ctx.args.org!r} in {cluster.path}")
    if ctx.json:
        emit_json({"orgs": rows})
        return EXIT_OK
    table = Table(title=f"org keys — {cluster.keys_dir}", title_justify="left")
    for col in ("org", "role", "name", "sign_pk (Ed25519)", "box_pk (X25519)", "key file"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["org"], r["role"], r["name"], short(r["sign_pk"], 16) or "[red]missing[/red]", short(r["box_pk"], 16),
                      Path(r["key_file"]).name if r["key_file"] else "[yellow]none (run ecert init)[/yellow]")
    out.print(table)
    return EXIT_OK


# --- transactions --------------------------------------------------------------------------------------------------


def submit(ctx: Ctx, kind: str, body: Mapping[str, object], create_key: bool = False) -> int:
    signer = ctx.signer(create=create_key)
    envelope = signer.sign(kind, body, ctx.args.nonce)
    if ctx.args.dry_run:
        emit_json(envelope_to_json(envelope))
        return EXIT_OK
    try:
        doc = ctx.client.submit(envelope, wait=not ctx.args.no_wait)
    except ApiError as e:
        return show_api_error(ctx, e)
    if ctx.json:
        emit_json(doc)
    else:
        show_outcome(kind, signer.org_id, doc)
    return {"committed": EXIT_OK, "accepted": EXIT_OK, "rejected": EXIT_REJECTED}.get(str(doc.get("status")),
                                                                                      EXIT_UNKNOWN)


def show_outcome(kind: str, signer: str, doc: Mapping[str, Any]) -> None:
    status = str(doc.get("status"))
    color = {"committed": "green", "accepted": "cyan", "rejected": "red"}.get(status, "yellow")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("tx", f"{kind} signed by {signer}")
    table.add_row("tx id", str(doc.get("tx_id")))
    table.add_row("status", f"[{color}]{status}[/]")
    if doc.get("height") is not None:
        table.add_row("height", str(doc["height"]))
    error = doc.get("error")
    if isinstance(error, dict):
        table.add_row("error", f"[red]{error.get('code')}[/red]: {error.get('message', '')}")
    result = doc.get("result")
    if isinstance(result, dict):
        for key, value in result.items():
            table.add_row(f"result.{key}", ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if status == "unknown":
        table.add_row("", f"[yellow]outcome not known yet: poll it with `ecert tx {doc.get('tx_id')}`[/yellow]")
    out.print(table)


def show_api_error(ctx: Ctx, e: ApiError) -> int:
    """The node's refusal. A 401's message may carry, after its first line, the string the node verified the
    signature against (CONTRACT §6): shown whole with --verbose and in --json."""
    if ctx.json:
        emit_json(e.doc or {"error": {"code": e.code, "message": e.message}})
        return EXIT_REJECTED
    first, _, rest = e.message.partition("\n")
    err.print(f"[red]error {e.status}[/red] {escape(e.code)}: {escape(first)}")
    if rest and ctx.args.verbose:
        err.print(escape(rest))
    elif rest:
        err.print("[dim](--verbose shows the rest: the string the node verified against)[/dim]")
    if e.status in (401, 403, 404) and ctx.speaker_note():
        err.print(f"[dim]{escape(ctx.speaker_note())}[/dim]")
    return EXIT_REJECTED


def tx_org_register(ctx: Ctx) -> int:
    signer = ctx.signer(create=True)
    body = {"org_id": signer.org_id, "name": ctx.args.name, "role": ctx.args.role,
            "sign_pk": signer.key.sign_pk_hex, "box_pk": signer.key.box_pk_hex}
    return submit(ctx, "org.register", body, create_key=True)


def tx_from_args(kind: str, *fields: str, optional: Sequence[str] = (),
                 hashes: Sequence[tuple[str, str, bool]] = ()) -> Callable[[Ctx], int]:
    """A tx whose body is these command-line arguments as parsed (each of `optional` only when given). Each of
    `hashes` is (body field, option stem, required): the field is the sha256 of --STEM FILE, or --STEM-hash HEX
    as given (evidence and KYC documents stay off chain; only their hash is recorded)."""

    def run(ctx: Ctx) -> int:
        args = vars(ctx.args)
        body: dict[str, object] = {name: args[name] for name in fields}
        body.update({name: args[name] for name in optional if args[name] is not None})
        for name, stem, required in hashes:
            digest = document_hash(args.get(f"{stem}_file"), args.get(f"{stem}_hash"), stem, required)
            if digest is not None:
                body[name] = digest
        return submit(ctx, kind, body)

    return run


def document_hash(path: str | None, hex_digest: str | None, stem: str, required: bool) -> str | None:
    """sha256 (lowercase hex) of the file at `path`, or `hex_digest` checked; None if neither and not required."""
    option = stem.replace("_", "-")
    if path is not None and hex_digest is not None:
        raise CliError(f"give one of --{option} FILE or --{option}-hash HEX, not both")
    if path is not None:
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as e:
            raise CliError(f"--{option}: cannot read {path}: {e.strerror}") from None
    if hex_digest is not None:
        if re.fullmatch(r"[0-9a-fA-F]{64}", hex_digest) is None:
            raise CliError(f"--{option}-hash must be 64 hex digits (a sha256), got {hex_digest!r}")
        return hex_digest.lower()
    if required:
        raise CliError(f"give --{option} FILE (its sha256 is recorded) or --{option}-hash HEX")
    return None


def tx_trade_anchor(ctx: Ctx) -> int:
    a = ctx.args
    if (a.file is None) == (a.doc_hash is None):
        raise CliError("give exactly one of --file PATH (hashed, and sealed with --seal) or --doc-hash HEX")
    body: dict[str, object] = {"doc_id": a.doc_id, "kind": a.kind, "counterparty": a.counterparty,
                               "amount": a.amount}
    if a.file is not None:
        content = Path(a.file).read_bytes()
        body["doc_hash"] = hashlib.sha256(content).hexdigest()
        if a.seal:
            body["ciphertext"] = seal_for(ctx, content, [ctx.signer().org_id, a.counterparty, *a.seal])
    else:
        body["doc_hash"] = a.doc_hash.lower()
    if a.contract_id is not None:
        body["contract_id"] = a.contract_id
    return submit(ctx, "trade.anchor", body)


def seal_for(ctx: Ctx, content: bytes, org_ids: Sequence[str]) -> dict[str, bytes]:
    """One sealed box per party, to the X25519 key each org registered on chain; only they can open it."""
    recipients: dict[str, str] = {}
    for org_id in dict.fromkeys(org_ids):
        org = ctx.read(f"/v1/orgs/{_q(org_id)}")
        box_pk = org.get("box_pk") if isinstance(org, dict) else None
        if not isinstance(box_pk, str):
            raise CliError(f"org {org_id!r} has no box_pk on chain")
        recipients[org_id] = box_pk
    return dict(seal_document(content, recipients).ciphertexts)


def cmd_trade_open(ctx: Ctx) -> int:
    """Decrypt the reader's sealed copy of a trade document and check it against the anchored hash."""
    signer = ctx.signer()
    try:
        doc = ctx.read(f"/v1/docs/{_q(ctx.args.doc_id)}")
    except ApiError as e:
        return show_api_error(ctx, e)
    sealed = (doc.get("ciphertext") or {}).get(signer.org_id)
    if sealed is None:
        raise CliError(f"{ctx.args.doc_id} holds no copy sealed for {signer.org_id}")
    try:
        plaintext = open_document_with_seed(base64.b64decode(sealed), signer.key.seed, doc["doc_hash"])
    except DocumentError as e:
        raise CliError(f"{ctx.args.doc_id}: {e}") from None
    if ctx.args.output:
        Path(ctx.args.output).write_bytes(plaintext)
        err.print(f"{len(plaintext)} bytes, sha256 matches the anchored doc_hash; written to {ctx.args.output}")
    else:
        sys.stdout.buffer.write(plaintext)
        sys.stdout.flush()
    return EXIT_OK


# --- queries -------------------------------------------------------------------------------------------------------

STATUS_COLORS = {"issued": "cyan", "active": "green", "split": "dim", "financing": "yellow", "financed": "magenta",
                 "settled": "blue", "cancelled": "red", "defaulted": "bold red"}


def cert_label(cert: Mapping[str, Any]) -> str:
    status = str(cert.get("status"))
    color = STATUS_COLORS.get(status, "white")
    extra = ""
    finance = cert.get("finance")
    if isinstance(finance, dict) and finance.get("disbursed") is not None:
        extra += (f"  financed by {finance.get('bank') or cert.get('holder')}: "
                  f"{fmt_amount(finance.get('disbursed'))} paid to {finance.get('seller')}")
    if cert.get("status") == "settled" and cert.get("paid_to"):
        extra += f"  paid to {cert.get('paid_to')}"
    if cert.get("overdue"):
        extra += "  [bold red]overdue[/bold red]"
    return (f"[bold]{cert.get('id')}[/bold]  {fmt_amount(cert.get('amount'))}  holder [bold]{cert.get('holder')}"
            f"[/bold]  [{color}]{status}[/]{extra}")


def lineage_tree(lineage: Mapping[str, Any]) -> Tree:
    """The certificate lineage as a rich Tree: the root, then each parent's children in creation order."""
    certs = list(lineage.get("certs") or [])
    by_parent: dict[Any, list[Mapping[str, Any]]] = {}
    for c in certs:
        by_parent.setdefault(c.get("parent_id"), []).append(c)
    root_id = lineage.get("root_id")
    root = next((c for c in certs if c.get("id") == root_id), None)
    leaves = [c for c in certs if c.get("id") not in by_parent and c.get("status") != "cancelled"]
    title = f"lineage of {root_id}"
    if root is not None:
        title += (f" — debtor {root.get('debtor')}, maturity {fmt_time(root.get('maturity'))}, "
                  f"leaves {fmt_amount(sum(int(c.get('amount') or 0) for c in leaves))} of "
                  f"{fmt_amount(root.get('amount'))}")
    tree = Tree(title)
    if root is None:
        return tree

    def add(branch: Tree, cert: Mapping[str, Any]) -> None:
        node = branch.add(cert_label(cert))
        for child in by_parent.get(cert.get("id"), []):
            add(node, child)

    add(tree, root)
    return tree


def certs_table(title: str, certs: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("cert", "left"), ("root", "left"), ("amount", "right"), ("debtor", "left"),
                         ("holder", "left"), ("maturity", "left"), ("status", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in certs:
        status = str(c.get("status"))
        table.add_row(str(c.get("id")), short(c.get("root_id")), fmt_amount(c.get("amount")), str(c.get("debtor")),
                      str(c.get("holder")), fmt_time(c.get("maturity")),
                      f"[{STATUS_COLORS.get(status, 'white')}]{status}[/]")
    return table


def kv_table(doc: Mapping[str, Any], title: str | None = None) -> Table:
    table = Table(show_header=False, title=title, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in doc.items():
        if key in ("amount", "limit", "used", "principal", "discount", "disbursed") and isinstance(value, int):
            text = f"{fmt_amount(value)}  ({value} fen)"
        elif key in ("maturity", "expires_at", "time", "created_at", "genesis_time") and isinstance(value, int):
            text = f"{fmt_time(value)}  ({value})"
        elif isinstance(value, dict | list):
            text = json.dumps(value)
        else:
            text = str(value)
        table.add_row(key, text)
    return table


def query(path_of: Callable[[argparse.Namespace], str], render: Callable[[Any], Any]) -> Callable[[Ctx], int]:
    def run(ctx: Ctx) -> int:
        try:
            doc = ctx.read(path_of(ctx.args))
        except ApiError as e:
            return show_api_error(ctx, e)
        if ctx.json:
            emit_json(doc)
        else:
            out.print(render(doc))
        return EXIT_OK

    return run


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def render_org(doc: Mapping[str, Any]) -> Table:
    return kv_table(doc, f"org {doc.get('id', doc.get('org_id', ''))}")


def render_holdings(doc: Mapping[str, Any]) -> Table:
    certs = doc.get("certs") or []
    total = sum(int(c.get("amount") or 0) for c in certs if c.get("status") not in ("split", "settled", "cancelled"))
    return certs_table(f"holdings of {doc.get('org_id')} — {len(certs)} certificates, live {fmt_amount(total)}", certs)


def render_supervision(doc: Mapping[str, Any]) -> Any:
    """The regulator's three views (GET /v1/supervision, ecert/supervision.py) as tables."""
    height = doc.get("height")
    cores = Table(title=f"outstanding per core enterprise (height {height})", title_justify="left")
    for col in ("core", "outstanding", "bank", "used", "limit"):
        cores.add_column(col, justify="right" if col in ("outstanding", "used", "limit") else "left")
    for row in doc.get("outstanding_by_core") or []:
        lines = row.get("lines") or [{}]
        for i, line in enumerate(lines):
            cores.add_row(row.get("core", "") if i == 0 else "", fmt_amount(row.get("outstanding")) if i == 0 else "",
                          str(line.get("bank", "")), fmt_amount(line.get("used")), fmt_amount(line.get("limit")))
    depths = Table(title="live certificates per tier depth (0 = issued by the core)", title_justify="left")
    for col in ("depth", "count", "amount"):
        depths.add_column(col, justify="right")
    for row in doc.get("certs_by_depth") or []:
        depths.add_row(str(row.get("depth")), str(row.get("count")), fmt_amount(row.get("amount")))
    banks = Table(title="financed per bank", title_justify="left")
    for col in ("bank", "count", "principal", "disbursed"):
        banks.add_column(col, justify="left" if col == "bank" else "right")
    for row in doc.get("financed_by_bank") or []:
        banks.add_row(str(row.get("bank")), str(row.get("count")), fmt_amount(row.get("principal")),
                      fmt_amount(row.get("disbursed")))
    note = "" if doc.get("complete", True) else f"\n(partial: the first {doc.get('live_certs')} live certificates)"
    return Group(cores, depths, banks, note) if note else Group(cores, depths, banks)


# --- business queries (issue 14): history, lists, what is owed, risk summaries -----------------------------------


def _paged(path: str, args: argparse.Namespace, *names: str) -> str:
    """`path` with the query parameters of these argument names that were given."""
    params = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def render_history(doc: Mapping[str, Any]) -> Any:
    """GET /v1/certs/{id}/history: one row per tx that touched the certificate, oldest first."""
    table = Table(title=f"history of {doc.get('cert_id')}", title_justify="left")
    for col in ("height", "index", "type", "signer", "tx", "result"):
        table.add_column(col, overflow="fold")
    for e in doc.get("entries") or []:
        result = "(for the parties only)" if e.get("redacted") else json.dumps(e.get("result"))
        table.add_row(str(e.get("height", "")), str(e.get("index", "")), str(e.get("type", "")),
                      str(e.get("signer") or ""), short(e.get("tx_id")), result)
    more = doc.get("next_cursor")
    return Group(table, f"more: --cursor {more}") if more else table


def render_cert_list(doc: Mapping[str, Any]) -> Any:
    certs = doc.get("certs") or []
    table = certs_table(f"{len(certs)} certificates (index {doc.get('index')}, {doc.get('scanned')} read)", certs)
    more = doc.get("next_cursor")
    return Group(table, f"more: --cursor {more}") if more else table


def render_owed(doc: Mapping[str, Any]) -> Any:
    """GET /v1/orgs/{id}/owed: by debtors (certificates held), by sellers (recourse claims), owed to banks."""
    debtors, sellers, banks = (doc.get(k) or {} for k in ("from_debtors", "from_sellers", "owes_banks"))
    table = Table(title=f"what {doc.get('org_id')} is owed and owes at {fmt_time(doc.get('at'))}",
                  title_justify="left")
    for col in ("from / to", "cert", "outstanding", "penalty", "status"):
        table.add_column(col, justify="right" if col in ("outstanding", "penalty") else "left")
    for c in debtors.get("certs") or []:
        table.add_row(f"debtor {c.get('debtor')}", short(c.get("cert_id")), fmt_amount(c.get("outstanding")),
                      fmt_amount(c.get("penalty")), str(c.get("status")))
    for c in sellers.get("claims") or []:
        table.add_row(f"seller {c.get('seller')}", short(c.get("cert_id")), fmt_amount(c.get("outstanding")), "",
                      "recourse claim")
    for c in banks.get("claims") or []:
        table.add_row(f"owed to bank {c.get('bank')}", short(c.get("cert_id")), fmt_amount(c.get("outstanding")),
                      "", "recourse claim")
    return Group(table, f"owed by debtors {fmt_amount(debtors.get('principal'))} + penalty "
                        f"{fmt_amount(debtors.get('penalty'))}; by sellers {fmt_amount(sellers.get('total'))}; "
                        f"owes banks {fmt_amount(banks.get('total'))}")


def render_risk(doc: Mapping[str, Any]) -> Any:
    """GET /v1/risk/orgs/{id} or /v1/risk/certs/{id}: each figure with how it was computed and its inputs."""
    subject = doc.get("cert_id") or doc.get("org_id")
    table = Table(title=f"risk summary of {subject} (advisory) at {fmt_time(doc.get('at'))}"
                        + ("" if doc.get("complete", True) else " — partial: a read bound was reached"),
                  title_justify="left")
    for col in ("figure", "value", "how", "inputs"):
        table.add_column(col, overflow="fold")
    for f in doc.get("figures") or []:
        table.add_row(str(f.get("name")), str(f.get("value")), str(f.get("how")),
                      json.dumps(f.get("inputs"), separators=(",", ":")))
    return table


def with_risk(run_tx: Callable[[Ctx], int]) -> Callable[[Ctx], int]:
    """`finance approve`: the certificate's risk summary first (one read, signed as the bank), then the tx.
    Advisory: a summary the node does not give (403/404, unreachable) is a note, never a reason to stop."""

    def run(ctx: Ctx) -> int:
        if not getattr(ctx.args, "dry_run", False) and not getattr(ctx.args, "no_risk", False):
            try:
                doc = ctx.read(f"/v1/risk/certs/{_q(ctx.args.cert_id)}")
            except ApiError as e:
                out.print(f"[dim]no risk summary: {escape(str(e))}[/]")
            else:
                if ctx.json:
                    emit_json({"risk": doc})
                else:
                    out.print(render_risk(doc))
        return run_tx(ctx)

    return run


def render_block(doc: Mapping[str, Any]) -> Any:
    header = doc.get("header", doc)
    fields = {k: header.get(k) for k in ("height", "hash", "prev_hash", "tx_root", "time", "proposer") if k in header}
    table = kv_table(fields, f"block {fields.get('height', '')}")
    txs = doc.get("tx_ids") or doc.get("txs") or []
    table.add_row("txs", "\n".join(t if isinstance(t, str) else json.dumps(t) for t in txs) or "(none)")
    return table


def cmd_status(ctx: Ctx) -> int:
    targets = [("", ctx.client.urls[0])] if ctx.args.node else [(n.id, n.http_url) for n in ctx.cluster.nodes]
    rows = []
    for node_id, url in targets:
        try:
            doc = Client([url], timeout_s=2.0, trust=ctx.trust).get("/v1/status")
        except (Unreachable, ApiError) as e:
            doc = {"node_id": node_id, "error": str(e)}
        doc.setdefault("http", url)
        rows.append(doc)
    if ctx.json:
        emit_json({"nodes": rows})
        return EXIT_OK
    table = Table(title="node status", title_justify="left")
    for col in ("node", "role", "term", "leader", "commit", "applied", "height", "block hash", "state root", "http"):
        table.add_column(col, justify="right" if col in ("term", "commit", "applied", "height") else "left",
                         no_wrap=True)
    for r in rows:
        if "error" in r:
            table.add_row(r.get("node_id") or "?", "[red]unreachable[/red]", "", "", "", "", "", "", "",
                          r["http"].removeprefix("http://"))
            continue
        role = str(r.get("role"))
        table.add_row(str(r.get("node_id")), f"[bold cyan]{role}[/]" if role == "leader" else role,
                      str(r.get("term")), str(r.get("leader_id") or ""), str(r.get("commit_index")),
                      str(r.get("applied_index")), str(r.get("height")), short(r.get("block_hash")),
                      short(r.get("state_root")), r["http"].removeprefix("http://"))
    out.print(table)
    return EXIT_OK


def cmd_watch(ctx: Ctx) -> int:
    """Follow new blocks: one line per block as it is applied on the node; Ctrl-C to stop."""
    client = ctx.client
    try:
        height = int(client.get("/v1/status").get("height") or 0)
    except ApiError as e:
        return show_api_error(ctx, e)
    next_h = ctx.args.from_height if ctx.args.from_height is not None else height + 1
    seen = 0
    if not ctx.json:
        err.print(f"watching blocks from height {next_h} on {client.urls[0]} (Ctrl-C to stop)")
    try:
        while ctx.args.count is None or seen < ctx.args.count:
            try:
                block = client.get(f"/v1/blocks/{next_h}")
            except ApiError as e:
                if e.status != 404:
                    return show_api_error(ctx, e)
                if int(client.get("/v1/status").get("height") or 0) >= next_h:
                    # Applied but not stored here: this node caught up from a snapshot past that height.
                    if not ctx.json:
                        err.print(f"[dim]#{next_h} is below this node's snapshot; skipped[/dim]")
                    next_h += 1
                    continue
                time.sleep(watch_poll_s)
                continue
            if ctx.json:
                emit_json(block)
            else:
                header = block.get("header", block)
                txs = block.get("tx_ids") or block.get("txs") or []
                out.print(f"[bold]#{header.get('height')}[/bold]  {fmt_time(header.get('time'))}  "
                          f"proposer {header.get('proposer')}  {len(txs):>4} txs  hash {short(header.get('hash'), 16)}")
            next_h += 1
            seen += 1
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_member_list(ctx: Ctx) -> int:
    """The membership the chain holds (GET /v1/members) and the proposals, newest first (GET /v1/proposals)."""
    try:
        members = ctx.read("/v1/members")
        proposals = ctx.read("/v1/proposals")
    except ApiError as e:
        return show_api_error(ctx, e)
    if ctx.json:
        emit_json({"membership": members, "proposals": proposals})
        return EXIT_OK
    table = Table(title=f"members — voters {', '.join(members.get('voters', []))}; voting orgs "
                        f"{', '.join(members.get('voter_orgs', []))}; at least {members.get('min_voters')} voters",
                  title_justify="left")
    for col in ("node", "org", "status", "since", "by proposal", "http", "raft"):
        table.add_column(col)
    for m in members.get("members", []):
        table.add_row(str(m.get("id")), str(m.get("org")), str(m.get("status")), fmt_time(m.get("since")),
                      short(m.get("proposal_id")), str(m.get("http", "")), str(m.get("raft", "")))
    out.print(table)
    out.print(proposals_table(proposals.get("proposals", [])))
    return EXIT_OK


def proposals_table(proposals: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=f"proposals ({len(proposals)}, newest first)", title_justify="left")
    for col in ("proposal", "action", "node", "proposer", "approvals", "status", "expires"):
        table.add_column(col, overflow="fold")
    for p in proposals:
        status = str(p.get("status"))
        color = {"open": "cyan", "effective": "green", "expired": "dim", "superseded": "dim"}.get(status, "white")
        table.add_row(str(p.get("id")), str(p.get("action")), str(p.get("node_id")), str(p.get("proposer")),
                      f"{p.get('approvals')}/{p.get('needed')}  {', '.join(p.get('approved_by') or [])}",
                      f"[{color}]{status}[/]", fmt_time(p.get("expires_at")))
    return table


_PROPOSAL_ID = re.compile(r"MP[0-9a-f]{32}")


def cmd_member_show(ctx: Ctx) -> int:
    """A proposal (by its id, MP + 32 hex) or a member node (by its node id)."""
    ident = ctx.args.id
    try:
        if _PROPOSAL_ID.fullmatch(ident):
            doc = ctx.read(f"/v1/proposals/{_q(ident)}")
        else:
            members = ctx.read("/v1/members")
            doc = next((m for m in members.get("members", []) if m.get("id") == ident), None)
            if doc is None:
                return show_api_error(ctx, ApiError(404, "node_not_found", f"no member node {ident!r}"))
    except ApiError as e:
        return show_api_error(ctx, e)
    if ctx.json:
        emit_json(doc)
    else:
        out.print(kv_table(doc, f"{'proposal' if _PROPOSAL_ID.fullmatch(ident) else 'member'} {ident}"))
    return EXIT_OK


def cmd_member_raft(ctx: Ctx) -> int:
    """The Raft view of the node addressed (GET /v1/cluster): who is reachable, how far behind."""
    try:
        doc = ctx.client.get("/v1/cluster")
    except ApiError as e:
        return show_api_error(ctx, e)
    if ctx.json:
        emit_json(doc)
        return EXIT_OK
    table = Table(title=f"raft view of {doc.get('chain_id')} — leader {doc.get('leader_id')}, term {doc.get('term')}",
                  title_justify="left")
    for col in ("node", "org", "role", "voter", "reachable", "match index", "lag", "http"):
        table.add_column(col)
    for n in doc.get("nodes", []):
        table.add_row(str(n.get("id")), str(n.get("org", "")), str(n.get("role", "")),
                      "yes" if n.get("voter", not n.get("learner")) else "no",
                      "yes" if n.get("reachable") else "[red]no[/red]", _blank(n.get("match_index")),
                      _blank(n.get("lag")), str(n.get("http", "")))
    out.print(table)
    return EXIT_OK


def _blank(value: Any) -> str:
    return "" if value is None else str(value)


MEMBER_ACTIONS = {"add-learner": "add_learner", "promote": "promote", "remove": "remove"}


def tx_member_propose(ctx: Ctx) -> int:
    """member.propose. For add-learner the node's org, addresses and transport key default to its [[nodes]]
    entry in the cluster file and keys/node-<id>.key, when there."""
    a = ctx.args
    action = MEMBER_ACTIONS[a.action]
    body: dict[str, object] = {"action": action, "node_id": a.node_id}
    given = {"org": a.org, "raft": a.raft, "http": a.http, "node_pk": a.node_pk}
    if action != "add_learner":
        extra = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
        if extra:
            raise CliError(f"{', '.join(extra)}: only for add-learner")
        return submit(ctx, "member.propose", body)
    spec = ctx.cluster.find_node(a.node_id)
    if spec is not None:
        given["org"] = given["org"] or spec.org
        given["raft"] = given["raft"] or str(spec.raft)
        given["http"] = given["http"] or str(spec.http)
        if given["node_pk"] is None:
            with_key = spec.node_pk is not None or node_key_path(ctx.cluster.keys_dir, spec.id).exists()
            given["node_pk"] = node_public_key(ctx.cluster, spec.id).hex() if with_key else None
    missing = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is None]
    if missing:
        raise CliError(f"add-learner {a.node_id}: give {', '.join(missing)} (or list the node in [[nodes]] of "
                       f"{ctx.cluster.path.name} and run `ecert init` for its key)")
    body.update(given)
    return submit(ctx, "member.propose", body)


# --- signed requests and sessions ----------------------------------------------------------------------------------


def cmd_sign_request(ctx: Ctx) -> int:
    """The Authorization header of one request (CONTRACT §6), for curl: single use, to this node, within 30 s."""
    a = ctx.args
    method, path = a.method.upper(), a.path
    if not path.startswith("/"):
        raise CliError(f"PATH must start with /: {path!r} (the path and query exactly as curl will send them)")
    body = b""
    if a.body_file is not None:
        body = sys.stdin.buffer.read() if a.body_file == "-" else Path(a.body_file).read_bytes()
    signer = ctx.signer()
    base = ctx.urls[0]
    try:
        node_id = ctx.client.node_id_at(base)
    except OSError as e:
        raise Unreachable(f"{base}: {getattr(e, 'reason', e)} (sign-request asks the node its id when "
                          f"the cluster file does not list it)") from None
    except ValueError as e:
        raise CliError(f"{base}: {e}") from None
    try:
        value = signer.request_header(node_id, method, path, body)
    except AuthError as e:
        raise CliError(e.message) from None
    curl = ["curl", "-s", "-H", f"Authorization: {value}"]
    if method != "GET":
        curl += ["-X", method]
    if a.body_file is not None:
        curl += ["-H", f"Content-Type: {a.content_type}", "--data-binary", f"@{a.body_file}"]
    curl.append(base + path)
    line = shlex.join(curl)
    if ctx.json:
        emit_json({"authorization": value, "org": signer.org_id, "node_id": node_id, "url": base + path,
                   "method": method, "curl": line})
        return EXIT_OK
    print(f"Authorization: {value}", flush=True)
    err.print(f"[dim]signed as {escape(signer.org_id)} ({escape(ctx.speaker.why)}) for node {escape(node_id)}; "
              f"good for one request within {CLOCK_SKEW_MS_MAX // 1000} s:[/dim]", soft_wrap=True)
    err.print(escape(line), soft_wrap=True, highlight=False)
    return EXIT_OK


def cmd_session(ctx: Ctx) -> int:
    """POST /v1/session, signed: a read-only token for this org at this node (GET requests only, 15 minutes)."""
    signer = ctx.signer()
    client = ctx.client
    status, doc = client.request("POST", "/v1/session")
    if status >= 400:
        return show_api_error(ctx, api_error(status, doc))
    token = doc.get("token") if isinstance(doc, dict) else None
    if not isinstance(token, str):
        return show_api_error(ctx, ApiError(status, "bad_response", f"no token in the answer: {doc!r:.200}"))
    base = client.urls[0]  # the node that answered: the token is good there only
    if ctx.json:
        emit_json({**doc, "url": base})
        return EXIT_OK
    print(token, flush=True)
    expires = doc.get("expires_at_ms", doc.get("expires_at"))
    err.print(f"[dim]read-only session for {escape(signer.org_id)} at {escape(base)}"
              f"{', expires ' + fmt_time(expires) if expires is not None else ''}; GET requests only:[/dim]",
              soft_wrap=True)
    err.print(escape(shlex.join(["curl", "-s", "-H", f"Authorization: Bearer {token}", f"{base}/v1/status"])),
              soft_wrap=True, highlight=False)
    return EXIT_OK


def cmd_org_rotate_key(ctx: Ctx) -> int:
    """org.rotate_key for ORG, signed by its current key; keys/ORG.key is replaced once the tx is committed."""
    a = ctx.args
    if a.as_org and a.as_org != a.org_id:
        raise CliError(f"org rotate-key {a.org_id}: the org signs its own rotation; drop --as {a.as_org}")
    cluster = ctx.cluster
    signer = cli_signer(cluster, a.org_id)
    ctx.use_signer(signer)
    try:
        rotation = rotate_key(ctx.client, signer, cluster.keys_dir, nonce=a.nonce, dry_run=a.dry_run)
    except RotationError as e:
        raise CliError(str(e)) from None
    except ApiError as e:
        return show_api_error(ctx, e)
    if rotation.status == "dry_run":
        emit_json(envelope_to_json(rotation.envelope))
        err.print(f"[yellow]the new key is in {rotation.next_key}[/yellow]: once this tx is committed, run "
                  f"`ecert org rotate-key {a.org_id}` to put it in place (it sees the chain holds it)",
                  soft_wrap=True)
        return EXIT_OK
    if ctx.json:
        emit_json({**rotation.tx, "rotation": rotation.status, "sign_pk": rotation.sign_pk,
                   "old_key": str(rotation.old_key) if rotation.old_key else None,
                   "next_key": str(rotation.next_key) if rotation.next_key else None})
    else:
        if rotation.tx:
            show_outcome("org.rotate_key", a.org_id, rotation.tx)
        if rotation.old_key is not None:
            out.print(f"[green]{a.org_id}'s key rotated[/green]: {org_key_path(cluster.keys_dir, a.org_id)} now "
                      f"holds sign_pk {rotation.sign_pk}; the old key is kept in {rotation.old_key}"
                      + (" (an earlier run's rotation had committed)" if rotation.status == "finished" else ""))
        elif rotation.next_key is not None:
            err.print(f"[yellow]not rotated yet[/yellow]: the new key stays in {rotation.next_key}; run "
                      f"`ecert org rotate-key {a.org_id}` again: it finishes the rotation if the tx committed, "
                      f"else retries with the same new key", soft_wrap=True)
    return {"committed": EXIT_OK, "finished": EXIT_OK, "rejected": EXIT_REJECTED}.get(rotation.status,
                                                                                        EXIT_UNKNOWN)


# --- argument parser -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    def add_common(p: argparse.ArgumentParser, top: bool) -> argparse.ArgumentParser:
        # Options may come before or after the subcommand; only the top level sets defaults, so a subcommand's
        # default never overwrites what was given before it (`ecert --json status`).
        def default(value: Any) -> Any:
            return value if top else argparse.SUPPRESS

        p.add_argument("--config", default=default(os.environ.get("ECERT_CONFIG", "cluster.toml")),
                       help="cluster file (default: $ECERT_CONFIG or cluster.toml)")
        p.add_argument("--node", default=default(os.environ.get("ECERT_NODE")),
                       help="node URL, e.g. http://127.0.0.1:8702 (default: $ECERT_NODE, else the cluster's nodes)")
        p.add_argument("--cacert", metavar="FILE", default=default(os.environ.get(CACERT_ENV) or None),
                       help="PEM file of CA certificates to verify https:// nodes with, besides each node's "
                            "https_ca in the cluster file (default: $ECERT_CACERT; neither: the system store)")
        p.add_argument("--as", dest="as_org", metavar="ORG", default=default(os.environ.get("ECERT_ORG")),
                       help="the org this command speaks for: signs its transactions and its reads with "
                            "keys/ORG.key (default: $ECERT_ORG; else the only org key in keys/; else, for a "
                            "read, the org running the node addressed)")
        p.add_argument("--json", action="store_true", default=default(False),
                       help="print the JSON answer instead of tables")
        p.add_argument("--verbose", "-v", action="store_true", default=default(False),
                       help="show a refusal whole (for a 401: the string the node verified the signature against)")
        p.add_argument("--timeout", type=float, default=default(request_timeout_s_default),
                       help="seconds to wait for a node's answer (default 30)")
        return p

    common = add_common(argparse.ArgumentParser(add_help=False), top=False)

    txopts = argparse.ArgumentParser(add_help=False)
    txopts.set_defaults(signs_tx=True)  # --as names the signer; with several org keys in keys/ it must be given
    txopts.add_argument("--nonce", default=None, help="nonce (default: fresh, never reused)")
    txopts.add_argument("--no-wait", action="store_true", help="return once the node accepted it (wait=none)")
    txopts.add_argument("--dry-run", action="store_true",
                        help="print the signed JSON envelope (for curl) instead of sending it")

    readopts = argparse.ArgumentParser(add_help=False)
    readopts.add_argument("--linearizable", action="store_true", help="linearizable read (ReadIndex)")

    parser = argparse.ArgumentParser(
        prog="ecert", description=__doc__.split("\n\n")[0],
        epilog="Who speaks: --as ORG (or $ECERT_ORG) signs the requests and the transactions. Without it: the "
               "only org key in keys/ if there is one; with several (the local demo holds them all), a read "
               "speaks for the org running the node addressed (--node, else the first [[nodes]] entry) and a "
               "transaction asks for --as; with no key to use, reads go anonymous. "
               "Amounts are fen (an integer) or yuan (1500.50yuan, ¥1.5m). Times are ms since the epoch, "
               "+30s / +2d, or ISO dates (UTC). Exit codes: 0 ok, 1 rejected, 2 usage/unreachable, 3 unknown.")
    add_common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(parent: Any, name: str, func: Callable[[Ctx], int], help_text: str,
            parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common, *parents], help=help_text,
                                                       description=help_text)
        p.set_defaults(func=func)
        return p

    def group(name: str, help_text: str) -> Any:
        p = sub.add_parser(name, help=help_text, description=help_text)
        return p.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

    cmd(sub, "init", cmd_init, "the local demo: create every missing key (keys/, marked keys/LOCAL-DEMO) and "
        "genesis.json beside the cluster file (a real consortium: keygen on each host, then genesis build)")
    # Not the common options: its --node names the node to make a key for (no node runs yet to talk to).
    keygen_help = ("on an organisation's own host: its org key and its node key in DIR/keys/ (0600, never "
                   "overwritten) and DIR/ORG.public.json (public keys and proofs of possession only) for the genesis "
                   "ceremony")
    p = sub.add_parser("keygen", help=keygen_help, description=keygen_help)
    p.set_defaults(func=ceremony.cmd_keygen)
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    p.add_argument("--org", required=True, help="the organisation's id")
    p.add_argument("--node", dest="node_id", required=True, metavar="NODE_ID", help="the id of its node")
    p.add_argument("--dir", required=True, help="the host directory (the cluster file goes there later)")
    p.add_argument("--name", default=None, help="the organisation's name (default: its id)")
    p.add_argument("--role", default=ceremony.ROLE_DEFAULT, choices=list(ceremony.ROLE_CHOICES),
                   help=f"default {ceremony.ROLE_DEFAULT}; the regulator's node is always a learner")
    p.add_argument("--raft", default=None, metavar="HOST:PORT",
                   help=f"the Raft address peers dial (default: this host's name, port {ceremony.RAFT_PORT_DEFAULT})")
    p.add_argument("--http", default=None, metavar="HOST:PORT",
                   help=f"the API address clients dial (default: this host's name, port {ceremony.HTTP_PORT_DEFAULT})")
    p.add_argument("--learner", action="store_true", help="the node starts as a learner (genesis voter = false)")
    p.add_argument("--https-host", action="append", default=[], metavar="HOST",
                   help="also write a self-signed HTTPS certificate and key for the client API in DIR/tls/, for "
                        "this host name or address (repeat for several)")
    gen = group("genesis", "the genesis ceremony: public files in, genesis.json and cluster.toml out")
    p = cmd(gen, "add-org", ceremony.cmd_genesis_add_org,
            "check public files from `ecert keygen` (schema, addresses, proofs of possession, no clash) and add "
            "them to DIR/ceremony.json")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--ceremony", required=True, metavar="DIR", help="the ceremony's directory")
    p = cmd(gen, "build", ceremony.cmd_genesis_build,
            "write OUT/genesis.json and OUT/cluster.toml from the ceremony's public files (never over existing "
            "files) and print the genesis hash and the cluster hash")
    p.add_argument("--ceremony", required=True, metavar="DIR")
    p.add_argument("--chain-id", required=True, metavar="ID")
    p.add_argument("--genesis-time", type=parse_time_ms, default=None, metavar="TIME",
                   help="ms since the epoch (or an ISO date); default now. Give it to rebuild the same bytes")
    p.add_argument("--out", required=True, metavar="DIR")
    cmd(gen, "hash", ceremony.cmd_genesis_hash,
        "print the genesis hash and the cluster hash of --config and the genesis.json beside it, for each "
        "organisation to compare (fails if the two files disagree)")
    keys = group("keys", "org keys")
    cmd(keys, "show", cmd_keys_show, "show the orgs' public keys").add_argument("org", nargs="?", metavar="ORG")

    org = group("org", "organisations: org.register / approve / freeze / unfreeze / rotate_key, and queries")
    p = cmd(org, "register", tx_org_register, "org.register: register the org given by --as (key created if missing)",
            [txopts])
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=["bank", "core", "supplier"])
    for action in ("approve", "freeze", "unfreeze"):
        kyc = (("kyc_hash", "kyc", False),) if action == "approve" else ()
        p = cmd(org, action, tx_from_args(f"org.{action}", "org_id", optional=["reason"], hashes=kyc),
                f"org.{action} (signer: a bank; freeze/unfreeze also the regulator)"
                + ("; with --kyc FILE the sha256 of the KYC evidence checked, which chains with "
                   "approve_requires_kyc require" if kyc else ""), [txopts])
        p.add_argument("org_id", metavar="ORG")
        p.add_argument("--reason", default=None)
        if kyc:
            p.add_argument("--kyc", dest="kyc_file", default=None, metavar="FILE",
                           help="the KYC evidence (kept off chain): its sha256 becomes kyc_hash")
            p.add_argument("--kyc-hash", default=None, metavar="HEX", help="sha256 of the KYC evidence, if not --kyc")
    p = cmd(org, "rotate-key", cmd_org_rotate_key,
            "org.rotate_key: a new key for ORG, signed by its current key; keys/ORG.key is replaced only once "
            "the tx is committed (the old one kept as keys/ORG.key.old-HEIGHT)")
    p.add_argument("org_id", metavar="ORG")
    p.add_argument("--nonce", default=None, help="nonce (default: fresh, never reused)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the signed envelope instead of sending it (the new key waits in keys/ORG.key.next)")
    cmd(org, "show", query(lambda a: f"/v1/orgs/{_q(a.org_id)}", render_org), "an organisation",
        [readopts]).add_argument("org_id", metavar="ORG")
    cmd(org, "holdings", query(lambda a: f"/v1/orgs/{_q(a.org_id)}/certs", render_holdings),
        "the certificates an org holds", [readopts]).add_argument("org_id", metavar="ORG")
    cmd(org, "owed", query(lambda a: f"/v1/orgs/{_q(a.org_id)}/owed", render_owed),
        "what an org is owed by debtors and sellers, and owes banks (the org itself or the regulator)",
        [readopts]).add_argument("org_id", metavar="ORG")

    cmd(sub, "supervision", query(lambda a: "/v1/supervision", render_supervision),
        "the regulator's views: outstanding per core, certificates per tier depth, financed per bank "
        "(regulator only: --as pbc)", [readopts])

    credit = group("credit", "credit lines: credit.grant and queries")
    p = cmd(credit, "grant", tx_from_args("credit.grant", "core", "limit", "expires_at"),
            "credit.grant: a bank sets its credit line to a core enterprise", [txopts])
    p.add_argument("--core", required=True)
    p.add_argument("--limit", required=True, type=parse_amount)
    p.add_argument("--expires-at", required=True, type=parse_time_ms, metavar="TIME")
    p = cmd(credit, "show", query(lambda a: f"/v1/credit/{_q(a.bank)}/{_q(a.core)}", kv_table),
            "a bank's credit line to a core enterprise", [readopts])
    p.add_argument("bank")
    p.add_argument("core")

    trade = group("trade", "trade documents (the four streams): trade.anchor / trade.confirm and queries")
    p = cmd(trade, "anchor", tx_trade_anchor, "trade.anchor: record a contract, invoice, delivery or payment",
            [txopts])
    p.add_argument("--doc-id", required=True)
    p.add_argument("--kind", required=True, choices=["contract", "invoice", "delivery", "payment"])
    p.add_argument("--counterparty", required=True, metavar="ORG")
    p.add_argument("--amount", required=True, type=parse_amount)
    p.add_argument("--file", default=None, help="the document; its sha256 becomes doc_hash")
    p.add_argument("--doc-hash", default=None, metavar="HEX", help="sha256 of the document, if not --file")
    p.add_argument("--seal", action="append", default=[], metavar="ORG",
                   help="with --file: also store the document sealed to both parties and this org (e.g. a bank)")
    p.add_argument("--contract", dest="contract_id", default=None, metavar="DOC_ID",
                   help="invoices: the confirmed contract between the same two parties it belongs to (required on "
                        "chains with invoice_requires_contract)")
    p = cmd(trade, "confirm", tx_from_args("trade.confirm", "doc_id"),
            "trade.confirm: the counterparty confirms a document", [txopts])
    p.add_argument("doc_id", metavar="DOC_ID")
    cmd(trade, "show", query(lambda a: f"/v1/docs/{_q(a.doc_id)}", kv_table), "a trade document",
        [readopts]).add_argument("doc_id", metavar="DOC_ID")
    p = cmd(trade, "open", cmd_trade_open, "decrypt your sealed copy of a trade document (checks doc_hash); "
            "--as names the reading org")
    p.add_argument("doc_id", metavar="DOC_ID")
    p.add_argument("--output", "-o", default=None, help="write the document here (default: stdout)")

    cert = group("cert", "E-certificates: ecert.issue / accept / reject / transfer / split / settle, and queries")
    p = cmd(cert, "issue", tx_from_args("ecert.issue", "to", "amount", "maturity", "bank", "invoice_ids"),
            "ecert.issue: a core enterprise issues a certificate to a supplier", [txopts])
    p.add_argument("--to", required=True, metavar="ORG")
    p.add_argument("--amount", required=True, type=parse_amount)
    p.add_argument("--maturity", required=True, type=parse_time_ms, metavar="TIME")
    p.add_argument("--bank", required=True, metavar="BANK", help="the bank whose credit line backs it")
    p.add_argument("--invoice", dest="invoice_ids", required=True, action="append", metavar="DOC_ID",
                   help="a confirmed invoice backing it (repeat for several)")
    for action, text in (("accept", "the holder accepts an issued certificate (signer: the holder)"),
                         ("reject", "the holder rejects an issued certificate (signer: the holder)"),
                         ("default", "the holder declares an unpaid certificate defaulted once maturity + the "
                                     "chain's grace period has passed; financed with recourse, the bank's claim "
                                     "against the seller is filed (signer: the holder)"),
                         ("revoke", "the issuer cancels a certificate its holder has not accepted yet (signer: the "
                                    "debtor)")):
        cmd(cert, action, tx_from_args(f"ecert.{action}", "cert_id"), f"ecert.{action}: {text}",
            [txopts]).add_argument("cert_id", metavar="CERT")
    p = cmd(cert, "settle", tx_from_args("ecert.settle", "cert_id", optional=["payment"]),
            "ecert.settle: the debtor pays the rest of a certificate, penalty included, at or after maturity "
            "(signer: the debtor)", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--payment", default=None, metavar="DOC_ID",
                   help="a `payment` trade document between the debtor and the holder that evidences it")
    p = cmd(cert, "pay", tx_from_args("ecert.pay", "cert_id", "amount", optional=["payment"]),
            "ecert.pay: the debtor pays part or all of a certificate, early or late; principal first, then "
            "penalty (signer: the debtor)", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--amount", required=True, type=parse_amount)
    p.add_argument("--payment", default=None, metavar="DOC_ID",
                   help="a `payment` trade document between the debtor and the holder that evidences it")
    cmd(cert, "settle-root", tx_from_args("ecert.settle_root", "root_id"),
        "ecert.settle_root: the debtor settles every live matured certificate of a root in one tx (signer: the "
        "debtor)", [txopts]).add_argument("root_id", metavar="ROOT")
    p = cmd(cert, "transfer", tx_from_args("ecert.transfer", "cert_id", "to", optional=["trade_docs"]),
            "ecert.transfer: pass parts of a certificate on (rest stays) (signer: the holder)", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--to", required=True, action="append", type=parse_recipient, metavar="ORG:AMOUNT",
                   help="a recipient and its amount (repeat for several)")
    p.add_argument("--trade-doc", dest="trade_docs", action="append", default=None, metavar="DOC_ID",
                   help="a confirmed contract or invoice between the holder and a recipient that the amount is "
                        "drawn on (repeat for several; required on chains with transfer_requires_trade_docs)")
    p = cmd(cert, "split", tx_from_args("ecert.split", "cert_id", "amounts"),
            "ecert.split: split a certificate into parts kept by the holder", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--amounts", required=True, nargs="+", type=parse_amount, metavar="AMOUNT")
    cmd(cert, "show", query(lambda a: f"/v1/certs/{_q(a.cert_id)}", kv_table), "a certificate",
        [readopts]).add_argument("cert_id", metavar="CERT")
    cmd(cert, "lineage", query(lambda a: f"/v1/certs/{_q(a.cert_id)}/lineage", lineage_tree),
        "a certificate's lineage, drawn as a tree", [readopts]).add_argument("cert_id", metavar="CERT")
    p = cmd(cert, "history", query(lambda a: _paged(f"/v1/certs/{_q(a.cert_id)}/history", a, "cursor", "limit"),
                                   render_history),
            "every tx that touched a certificate, oldest first (whoever may read it)", [readopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--cursor", default=None, help="the `more:` cursor of the previous page")
    p.add_argument("--limit", type=int, default=None, help="entries per page (at most 100)")
    p = cmd(cert, "list", query(lambda a: _paged("/v1/certs", a, "debtor", "holder", "status", "maturity_from",
                                                 "maturity_to", "cursor", "limit"), render_cert_list),
            "certificates by debtor, holder, status and maturity window (each one you may read)", [readopts])
    p.add_argument("--debtor", default=None, metavar="ORG")
    p.add_argument("--holder", default=None, metavar="ORG")
    p.add_argument("--status", default=None, choices=["issued", "active", "financing", "financed", "defaulted",
                                                      "split", "settled", "cancelled"])
    p.add_argument("--maturity-from", type=parse_time_ms, default=None, metavar="TIME")
    p.add_argument("--maturity-to", type=parse_time_ms, default=None, metavar="TIME")
    p.add_argument("--cursor", default=None, help="the `more:` cursor of the previous page (same filters)")
    p.add_argument("--limit", type=int, default=None, help="certificates per page (at most 100)")

    risk = group("risk", "advisory risk summaries for financing decisions (banks and the regulator)")
    cmd(risk, "cert", query(lambda a: f"/v1/risk/certs/{_q(a.cert_id)}", render_risk),
        "a certificate: its debtor's on-time settlement rate, depth, disputes (a bank that may read it)",
        [readopts]).add_argument("cert_id", metavar="CERT")
    cmd(risk, "org", query(lambda a: f"/v1/risk/orgs/{_q(a.org_id)}", render_risk),
        "an org: trade confirmed, certificates held and financed, disputes, concentration by debtor (the org, "
        "a bank it deals with, the regulator)", [readopts]).add_argument("org_id", metavar="ORG")

    fin = group("finance", "financing: finance.request / approve / decline")
    p = cmd(fin, "request", tx_from_args("finance.request", "cert_id", "bank"),
            "finance.request: the holder asks a bank to finance", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--bank", required=True)
    p = cmd(fin, "approve", with_risk(tx_from_args("finance.approve", "cert_id", "discount_bps",
                                                   optional=["recourse"])),
            "finance.approve: the bank buys it at a discount (signer: the bank asked)", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--discount-bps", required=True, type=int, help="annual discount rate in basis points")
    p.add_argument("--recourse", action=argparse.BooleanOptionalAction, default=None,
                   help="with recourse: on default the bank claims the unpaid principal from the seller "
                        "(default: without recourse, the loss stays with the bank)")
    p.add_argument("--no-risk", action="store_true", help="do not print the certificate's risk summary first")
    p = cmd(fin, "limit", tx_from_args("finance.limit", "org", "limit"),
            "finance.limit: the signer bank's financing limit for one supplier or core enterprise, checked by "
            "finance.approve (signer: a bank)", [txopts])
    p.add_argument("--org", required=True, metavar="ORG", help="a supplier or core enterprise")
    p.add_argument("--limit", required=True, type=parse_amount)
    p = cmd(fin, "decline", tx_from_args("finance.decline", "cert_id", optional=["reason"]),
            "finance.decline: the bank says no", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--reason", default=None)

    rec = group("recourse", "recourse claims of a bank against the seller of a defaulted certificate it financed "
                            "with recourse: recourse.repay / recourse.write_off")
    p = cmd(rec, "repay", tx_from_args("recourse.repay", "cert_id", "amount"),
            "recourse.repay: the seller repays part or all of the bank's claim on CERT (signer: the seller the "
            "claim is against)", [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--amount", required=True, type=parse_amount)
    p = cmd(rec, "write-off", tx_from_args("recourse.write_off", "cert_id", optional=["reason"]),
            "recourse.write_off: the bank writes off what is left of its claim on CERT (signer: the claim's bank)",
            [txopts])
    p.add_argument("cert_id", metavar="CERT")
    p.add_argument("--reason", default=None)

    disp = group("dispute", "disputes on a certificate or trade document: dispute.open / respond / resolve")
    p = cmd(disp, "open", tx_from_args("dispute.open", "against", "reason", optional=["cert_id", "doc_id"],
                                       hashes=(("evidence_hash", "evidence", True),)),
            "dispute.open: dispute a certificate or trade document, which is locked until resolved (signer: a "
            "party of it: a certificate's holder, debtor, seller or the bank asked to finance it; a document's "
            "issuer or counterparty)", [txopts])
    subject = p.add_mutually_exclusive_group(required=True)
    subject.add_argument("--cert", dest="cert_id", default=None, metavar="CERT")
    subject.add_argument("--doc", dest="doc_id", default=None, metavar="DOC_ID")
    p.add_argument("--against", required=True, metavar="ORG", help="the counterparty: another party of it")
    p.add_argument("--reason", required=True)
    p.add_argument("--evidence", dest="evidence_file", default=None, metavar="FILE",
                   help="the evidence (kept off chain): its sha256 becomes evidence_hash")
    p.add_argument("--evidence-hash", default=None, metavar="HEX", help="sha256 of the evidence, if not --evidence")
    p = cmd(disp, "respond", tx_from_args("dispute.respond", "dispute_id", "statement",
                                          hashes=(("evidence_hash", "evidence", True),)),
            "dispute.respond: the counterparty answers a dispute (signer: the org the dispute is against)", [txopts])
    p.add_argument("dispute_id", metavar="DISPUTE_ID")
    p.add_argument("--statement", required=True)
    p.add_argument("--evidence", dest="evidence_file", default=None, metavar="FILE")
    p.add_argument("--evidence-hash", default=None, metavar="HEX")
    p = cmd(disp, "resolve", tx_from_args("dispute.resolve", "dispute_id", "outcome", optional=["reason"]),
            "dispute.resolve: decide a dispute and release the lock (signer: the bank named at issue, or for a "
            "document a bank it is sealed for, before the deadline; the regulator at any time)", [txopts])
    p.add_argument("dispute_id", metavar="DISPUTE_ID")
    p.add_argument("--outcome", required=True, choices=["upheld", "dismissed"])
    p.add_argument("--reason", default=None)

    compl = group("complaint", "complaints of one org against another: complaint.file / respond / escalate / close")
    p = cmd(compl, "file", tx_from_args("complaint.file", "against", "subject",
                                        hashes=(("evidence_hash", "evidence", True),)),
            "complaint.file: complain about another org, which must answer before the chain's deadline (signer: "
            "any active org but the regulator)", [txopts])
    p.add_argument("--against", required=True, metavar="ORG")
    p.add_argument("--subject", required=True)
    p.add_argument("--evidence", dest="evidence_file", default=None, metavar="FILE")
    p.add_argument("--evidence-hash", default=None, metavar="HEX")
    p = cmd(compl, "respond", tx_from_args("complaint.respond", "complaint_id", "statement",
                                           hashes=(("evidence_hash", "evidence", True),)),
            "complaint.respond: answer a complaint before its deadline (signer: the org complained about)", [txopts])
    p.add_argument("complaint_id", metavar="COMPLAINT_ID")
    p.add_argument("--statement", required=True)
    p.add_argument("--evidence", dest="evidence_file", default=None, metavar="FILE")
    p.add_argument("--evidence-hash", default=None, metavar="HEX")
    for action, text in (("escalate", "hand a complaint to the regulator, once the deadline passed unanswered or "
                                      "after an answer (signer: the complainant)"),
                         ("close", "close a complaint (signer: the complainant or the regulator)")):
        p = cmd(compl, action, tx_from_args(f"complaint.{action}", "complaint_id", optional=["reason"]),
                f"complaint.{action}: {text}", [txopts])
        p.add_argument("complaint_id", metavar="COMPLAINT_ID")
        p.add_argument("--reason", default=None)

    member = group("member", "cluster membership is governance (CONTRACT §6): member.propose / member.approve "
                             "transactions, and queries")
    proposals: list[tuple[str, str | None, str]] = [
        ("propose", None, "member.propose: propose adding a learner, promoting it or removing a node (signed by "
                          "an org that runs a voting node)"),
        *((alias, alias, f"= member propose {alias} NODE_ID") for alias in MEMBER_ACTIONS)]
    for name, preset, what in proposals:
        p = cmd(member, name, tx_member_propose, what, [txopts])
        if preset is None:
            p.add_argument("action", choices=list(MEMBER_ACTIONS))
        else:
            p.set_defaults(action=preset)
        p.add_argument("node_id", metavar="NODE_ID")
        p.add_argument("--org", default=None, help="add-learner: the org that runs the node ([[nodes]] org)")
        p.add_argument("--raft", default=None, metavar="HOST:PORT", help="add-learner: its Raft address")
        p.add_argument("--http", default=None, metavar="HOST:PORT", help="add-learner: its HTTP address")
        p.add_argument("--node-pk", default=None, metavar="HEX",
                       help="add-learner: its transport public key (default: from keys/node-NODE_ID.key)")
    cmd(member, "approve", tx_from_args("member.approve", "proposal_id"),
        "member.approve: approve another org's open proposal", [txopts]).add_argument("proposal_id",
                                                                                       metavar="PROPOSAL_ID")
    cmd(member, "list", cmd_member_list, "the chain's member nodes and the proposals (GET /v1/members, "
        "/v1/proposals)", [readopts])
    cmd(member, "show", cmd_member_show, "a proposal (MP…) or a member node", [readopts]).add_argument(
        "id", metavar="PROPOSAL_ID|NODE_ID")
    cmd(member, "raft", cmd_member_raft, "the Raft view of the node addressed: reachability and lag "
        "(GET /v1/cluster)")

    p = cmd(sub, "sign-request", cmd_sign_request,
            "print the Authorization header of one request (CONTRACT §6), for curl: signed for --as ORG and the "
            "node addressed, single use, within 30 s; a ready curl line goes to stderr")
    p.add_argument("method", metavar="METHOD")
    p.add_argument("path", metavar="PATH", help="path and query exactly as sent, e.g. '/v1/certs/EC1?consistency="
                                                 "linearizable'")
    p.add_argument("body_file", nargs="?", default=None, metavar="BODY_FILE", help="the body ('-': stdin)")
    p.add_argument("--content-type", default=JSON, help=f"of the body, in the curl line (default {JSON})")
    cmd(sub, "session", cmd_session, "a read-only session token for --as ORG at the node addressed "
        "(POST /v1/session, signed): GET requests only, 15 minutes; the token on stdout")

    # Short forms of the common queries.
    cmd(sub, "lineage", query(lambda a: f"/v1/certs/{_q(a.cert_id)}/lineage", lineage_tree),
        "a certificate's lineage tree (= cert lineage)", [readopts]).add_argument("cert_id", metavar="CERT")
    cmd(sub, "holdings", query(lambda a: f"/v1/orgs/{_q(a.org_id)}/certs", render_holdings),
        "an org's certificates (= org holdings)", [readopts]).add_argument("org_id", metavar="ORG")
    cmd(sub, "tx", query(lambda a: f"/v1/tx/{_q(a.tx_id)}", kv_table), "status and outcome of a tx").add_argument(
        "tx_id", metavar="TX_ID")
    cmd(sub, "block", query(lambda a: f"/v1/blocks/{a.height}", render_block), "a block header and its tx ids"
        ).add_argument("height", type=int)
    cmd(sub, "status", cmd_status, "the status of every node of the cluster file (or of --node)")
    p = cmd(sub, "watch", cmd_watch, "follow new blocks as they are applied (Ctrl-C to stop)")
    p.add_argument("--from", dest="from_height", type=int, default=None, metavar="HEIGHT",
                   help="start at this height (default: the next block)")
    p.add_argument("--count", type=int, default=None, help="stop after this many blocks")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(Ctx(args)))
    except (CliError, Unreachable) as e:
        err.print(f"[red]error:[/red] {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
