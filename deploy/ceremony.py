"""The genesis ceremony of the shipped consortium, rehearsed on one machine: one host directory per organisation.

    sudo .venv/bin/python deploy/ceremony.py                 # for compose.yaml: deploy/compose/hosts/<org>/
    sudo .venv/bin/python deploy/ceremony.py --target k8s    # for deploy/k8s/: deploy/k8s/hosts/<org>/

What each party does (docs/DEPLOY.md has it step by step, for separate machines):
  1. each organisation, on its own host: `ecert keygen --org ORG --node NODE --dir HOST ...` writes HOST/keys/ORG.key
     and HOST/keys/node-NODE.key (0600) and HOST/ORG.public.json (public keys and proofs of possession only);
     it sends the public file to the coordinator;
  2. the coordinator: `ecert genesis add-org FILE... --ceremony DIR`, then `ecert genesis build` writes genesis.json
     and cluster.toml from public material only, and sends both to every organisation;
  3. each organisation adds its own listen addresses to its copy of cluster.toml (host-local: the advertised
     addresses, which genesis records, do not change) and checks `ecert genesis hash` against the others.

Here the script plays every party, then checks that every host directory holds exactly one org key and one node
key, and that every host computes the same genesis hash. Run as root, it gives the keys to the image's user
(uid 10001) so the container can read them; otherwise it prints the chown to run. It never overwrites a key:
to start again, delete the hosts/ and ceremony/ directories first. Ends with one line of JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RAFT_PORT = 9700
HTTP_PORT = 8700
LISTEN_HOST = "0.0.0.0"
TLS_DIR = "tls"
"""Beside keys/: the node's HTTPS certificate and key, and the certificates its clients pin (with --https)."""
IMAGE_UID = 10001
"""The image's user and group (Dockerfile ECERT_UID)."""
TARGETS = ("compose", "k8s")


class CeremonyError(Exception):
    """A step failed or a check did not hold; the message says which."""


@dataclass(frozen=True, slots=True)
class Party:
    """One organisation and the one node it runs."""

    org: str
    name: str
    role: str
    node: str
    voter: bool


def parties(cluster_file: Path) -> list[Party]:
    """The consortium of a cluster file: each [[nodes]] entry with its org's name and role."""
    raw = tomllib.loads(cluster_file.read_text(encoding="utf-8"))
    orgs = {o["id"]: o for o in raw.get("orgs", [])}
    out: list[Party] = []
    for n in raw.get("nodes", []):
        org = orgs.get(n["org"])
        if org is None:
            raise CeremonyError(f"{cluster_file}: node {n['id']!r} names org {n['org']!r}, not in [[orgs]]")
        out.append(Party(org["id"], org["name"], org["role"], n["id"], bool(n.get("voter", True))))
    if len({p.org for p in out}) != len(out):
        raise CeremonyError(f"{cluster_file}: this rehearsal gives each organisation one host and one node")
    return out


def advertised(party: Party, target: str, namespace: str, domain: str) -> tuple[str, str]:
    """(raft, http) as peers and clients dial them: the compose service name, or the pod's stable DNS name."""
    host = party.node if target == "compose" else f"{party.node}-0.{party.node}.{namespace}.svc.{domain}"
    return f"{host}:{RAFT_PORT}", f"{host}:{HTTP_PORT}"


def with_node_keys(cluster_text: str, node_id: str, keys: dict[str, str]) -> str:
    """The cluster file with `keys` (string values) in node_id's [[nodes]] table, placed right after its header,
    where TOML allows any key of the table; a key the table has already is left as it is."""
    lines = cluster_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "[[nodes]]"]
    for k, start in enumerate(starts):
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        if k + 1 < len(starts):
            end = min(end, starts[k + 1])
        table = tomllib.loads("\n".join(lines[start + 1:end]))
        if table.get("id") != node_id:
            continue
        extra = [f"{key} = {json.dumps(value)}" for key, value in keys.items() if key not in table]
        out = "\n".join(lines[:start + 1] + extra + lines[start + 1:]) + "\n"
        check = next(n for n in tomllib.loads(out)["nodes"] if n["id"] == node_id)
        if any(check.get(key) is None for key in keys):
            raise CeremonyError(f"{', '.join(keys)} of {node_id} not written")
        return out
    raise CeremonyError(f"the built cluster file has no [[nodes]] entry with id {node_id!r}")


def with_listen_addresses(cluster_text: str, node_id: str, raft_listen: str, http_listen: str) -> str:
    """raft_listen / http_listen in node_id's entry only: what a process binds is its own host's business (the
    advertised addresses, which genesis records, stay as they are)."""
    return with_node_keys(cluster_text, node_id, {"raft_listen": raft_listen, "http_listen": http_listen})


def ecert_cmd() -> list[str]:
    """The `ecert` CLI of this checkout (ECERT_BIN overrides, e.g. `docker run --rm IMAGE ecert`)."""
    override = os.environ.get("ECERT_BIN")
    return override.split() if override else [sys.executable, "-m", "node.client.cli"]


def run(args: list[str], what: str, cwd: Path | None = None) -> str:
    argv = ecert_cmd() + args
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CeremonyError(f"{what}: `{' '.join(argv)}` exited {proc.returncode}:\n{proc.stderr.strip()}"
                            f"\n{proc.stdout.strip()}".rstrip())
    return proc.stdout


def key_files(keys_dir: Path) -> list[str]:
    return sorted(p.name for p in keys_dir.iterdir()) if keys_dir.is_dir() else []


def with_https(cluster_text: str, node_ids: list[str]) -> str:
    """Every [[nodes]] entry with HTTPS: this host's own certificate and key under tls/ (read by the node only
    for its own entry; for the others they only say the node speaks HTTPS), and each node's certificate as its
    `https_ca`, which the clients pin."""
    for node_id in node_ids:
        cluster_text = with_node_keys(cluster_text, node_id, {
            "https_cert": f"{TLS_DIR}/https-cert.pem", "https_key": f"{TLS_DIR}/https-key.pem",
            "https_ca": f"{TLS_DIR}/{node_id}-ca.pem"})
    return cluster_text


def make_https_certs(members: list[Party], hosts: Path, target: str, namespace: str, domain: str) -> None:
    """A self-signed certificate per host for its advertised name, localhost and 127.0.0.1 (node/tls.py); each
    host also gets every node's certificate, public, as tls/<node>-ca.pem for its clients."""
    from node.tls import write_self_signed_https_cert

    for p in members:
        host_name = advertised(p, target, namespace, domain)[1].rpartition(":")[0]
        cert, _ = write_self_signed_https_cert(hosts / p.org / TLS_DIR, [host_name, "localhost", "127.0.0.1"])
        for q in members:
            shutil.copyfile(cert, hosts / q.org / TLS_DIR / f"{p.node}-ca.pem")


def ceremony(cluster_file: Path, target: str, out: Path, chain_id: str, genesis_time_ms: int | None,
             namespace: str, domain: str, owner: tuple[int, int] | None, https: bool = False) -> dict[str, object]:
    members = parties(cluster_file)
    hosts, coordinator = out / "hosts", out / "ceremony"
    for p in members:
        if (hosts / p.org / "keys").exists():
            raise CeremonyError(f"{hosts / p.org / 'keys'} exists: keys are never overwritten; to start a new "
                                f"ceremony, remove {hosts} and {coordinator} first")
    if coordinator.exists():
        raise CeremonyError(f"{coordinator} exists: remove it (and {hosts}) to start a new ceremony")

    # 1. Each organisation on its own host: its keys, and the public file it sends to the coordinator.
    inbox = coordinator / "inbox"
    inbox.mkdir(parents=True)
    for p in members:
        host = hosts / p.org
        host.mkdir(parents=True, exist_ok=True)
        raft, http = advertised(p, target, namespace, domain)
        args = ["keygen", "--org", p.org, "--node", p.node, "--dir", str(host), "--name", p.name, "--role", p.role,
                "--raft", raft, "--http", http]
        run(args + ([] if p.voter else ["--learner"]), f"keygen for {p.org}")
        public = host / f"{p.org}.public.json"
        if not public.is_file():
            raise CeremonyError(f"keygen for {p.org} wrote no {public}")
        shutil.copy2(public, inbox / public.name)

    # 2. The coordinator: genesis.json and cluster.toml from the public files only.
    run(["genesis", "add-org", *(str(inbox / f"{p.org}.public.json") for p in members),
         "--ceremony", str(coordinator)], "genesis add-org")
    built = coordinator / "out"
    build = ["genesis", "build", "--ceremony", str(coordinator), "--chain-id", chain_id, "--out", str(built)]
    if genesis_time_ms is not None:
        build += ["--genesis-time", str(genesis_time_ms)]
    run(build, "genesis build")
    cluster_text = (built / "cluster.toml").read_text(encoding="utf-8")
    for p in members:
        (hosts / p.org / TLS_DIR).mkdir(exist_ok=True)  # compose mounts it, empty without HTTPS
    if https:
        make_https_certs(members, hosts, target, namespace, domain)
        cluster_text = with_https(cluster_text, [p.node for p in members])

    # 3. Each organisation: the two files, its own listen addresses, and the hash it compares with the others.
    hashes: dict[str, str] = {}
    for p in members:
        host = hosts / p.org
        shutil.copy2(built / "genesis.json", host / "genesis.json")
        (host / "cluster.toml").write_text(
            with_listen_addresses(cluster_text, p.node, f"{LISTEN_HOST}:{RAFT_PORT}", f"{LISTEN_HOST}:{HTTP_PORT}"),
            encoding="utf-8")
        hashes[p.org] = run(["genesis", "hash", "--json", "--config", str(host / "cluster.toml")],
                            f"genesis hash at {p.org}").strip()
        keys = key_files(host / "keys")
        if keys != sorted([f"{p.org}.key", f"node-{p.node}.key"]):
            raise CeremonyError(f"{host / 'keys'} holds {keys}: expected only {p.org}.key and node-{p.node}.key")
    if len(set(hashes.values())) != 1:
        raise CeremonyError("the hosts disagree on the genesis hash: " + json.dumps(hashes))

    chowned = False
    if owner is not None and os.geteuid() == 0:
        for p in members:
            for sub in ("keys", TLS_DIR):
                for path in (hosts / p.org / sub, *(hosts / p.org / sub).iterdir()):
                    os.chown(path, *owner)
        chowned = True
    agreed = json.loads(next(iter(hashes.values())))
    return {"ceremony": "ok", "target": target, "chain_id": chain_id, "genesis_hash": agreed["genesis_hash"],
            "cluster_hash": agreed["cluster_hash"],
            "hosts": {p.org: str(hosts / p.org) for p in members}, "coordinator": str(coordinator), "https": https,
            "keys_owner": f"{owner[0]}:{owner[1]}" if chowned and owner else None}


def next_steps(summary: dict[str, object], target: str, namespace: str, owner: tuple[int, int] | None) -> str:
    hosts = summary["hosts"]
    assert isinstance(hosts, dict)
    lines: list[str] = []
    if summary["keys_owner"] is None and owner is not None:
        lines.append(f"not root: give the keys to the image's user: sudo chown -R {owner[0]}:{owner[1]} "
                     + " ".join(f"{h}/keys {h}/{TLS_DIR}" for h in hosts.values()))
    if target == "compose":
        lines += ["next: docker build -t ecert-chain:0.1.0 . && docker compose up -d"]
    else:
        lines += ["next: kubectl apply -f deploy/k8s/namespace.yaml"]
        for org, h in hosts.items():
            lines += [f"      kubectl -n {namespace} create configmap ecert-{org}-config "
                      f"--from-file={h}/cluster.toml --from-file={h}/genesis.json",
                      f"      kubectl -n {namespace} create secret generic ecert-{org}-keys --from-file={h}/keys/"]
            if summary["https"]:
                lines += [f"      kubectl -n {namespace} create secret generic ecert-{org}-https "
                          f"--from-file={h}/{TLS_DIR}/"]
        lines += ["      kubectl apply -f deploy/k8s/" + ("   (rendered with --https)" if summary["https"] else "")]
    return "\n".join(lines)


def parse_owner(text: str) -> tuple[int, int] | None:
    if text == "none":
        return None
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid or uid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected UID:GID or none, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ceremony.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", choices=TARGETS, default="compose",
                   help="which addresses to advertise: compose service names or Kubernetes pod DNS names")
    p.add_argument("--cluster-file", type=Path, default=ROOT / "cluster.toml",
                   help="the consortium: its [[orgs]] and [[nodes]] (default: the shipped cluster.toml)")
    p.add_argument("--out", type=Path, default=None,
                   help="where hosts/ and ceremony/ go (default: deploy/compose or deploy/k8s)")
    p.add_argument("--chain-id", default=None, help="default: ecert-compose or ecert-k8s")
    p.add_argument("--genesis-time", type=int, default=None, metavar="MS", help="default: now")
    p.add_argument("--namespace", default="ecert", help="k8s: the namespace of deploy/k8s/")
    p.add_argument("--cluster-domain", default="cluster.local", help="k8s: the cluster's DNS domain")
    p.add_argument("--owner", type=parse_owner, default=(IMAGE_UID, IMAGE_UID), metavar="UID:GID",
                   help=f"as root, chown the keys to this (default {IMAGE_UID}:{IMAGE_UID}, the image's user; "
                        "'none' to leave them)")
    p.add_argument("--https", action="store_true",
                   help="HTTPS for every node's API: a self-signed certificate per host in tls/, pinned by clients")
    a = p.parse_args(argv)
    out = a.out or ROOT / "deploy" / a.target
    try:
        summary = ceremony(a.cluster_file, a.target, out, a.chain_id or f"ecert-{a.target}", a.genesis_time,
                           a.namespace, a.cluster_domain, a.owner, a.https)
    except (CeremonyError, OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        print(f"ceremony: {exc}", file=sys.stderr)
        print(json.dumps({"ceremony": "failed", "error": str(exc)}))
        return 1
    print(next_steps(summary, a.target, a.namespace, a.owner), file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
