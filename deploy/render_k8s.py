"""Render the Kubernetes manifests of a consortium: one file per organisation under deploy/k8s/, from the
consortium's cluster file (the shipped cluster.toml by default), plus the namespace.

    python deploy/render_k8s.py                # writes deploy/k8s/namespace.yaml and deploy/k8s/<org>.yaml
    python deploy/render_k8s.py --check        # exit 1 if the committed files differ from what it renders

Each org file holds that org's StatefulSet (one replica: an org runs one node), the headless Service its peers
dial (<node>-0.<node>.<namespace>.svc.<domain>:9700, what the ceremony advertises), a ClusterIP Service for its
HTTP API, a PodDisruptionBudget and a NetworkPolicy. Key material is never rendered: the StatefulSet names the
org's Secret (ecert-<org>-keys, created with kubectl from the org's own keys/) and the org's ConfigMap
(ecert-<org>-config: its copy of cluster.toml, with its own listen addresses, and genesis.json from the
ceremony). docs/DEPLOY.md walks through it.
Stdlib only, so an ops host without the project's virtualenv can run it.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
RAFT_PORT = 9700
HTTP_PORT = 8700
UID = 10001
"""The image's user and group (Dockerfile ECERT_UID)."""


@dataclass(frozen=True, slots=True)
class Params:
    namespace: str = "ecert"
    image: str = "ecert-chain:0.1.0"
    cluster_domain: str = "cluster.local"
    storage: str = "20Gi"
    storage_class: str | None = None
    https: bool = False
    """Probes over HTTPS and the org's certificate Secret (ecert-<org>-https: the ceremony's tls/, with
    https-cert.pem and https-key.pem as its cluster file names them) mounted at /ecert/tls."""


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    org: str
    role: str
    voter: bool


def consortium(cluster_file: Path) -> list[Member]:
    """The [[nodes]] of a cluster file with their org's role (the manifests need nothing else from it)."""
    raw = tomllib.loads(cluster_file.read_text(encoding="utf-8"))
    roles = {o["id"]: o["role"] for o in raw.get("orgs", [])}
    members = [Member(n["id"], n["org"], roles.get(n["org"], ""), bool(n.get("voter", True)))
               for n in raw.get("nodes", [])]
    if not members:
        raise ValueError(f"{cluster_file}: no [[nodes]]")
    return members


def peer_address(node_id: str, params: Params) -> str:
    """What a node advertises in the cluster file: the stable DNS name of its StatefulSet's one pod."""
    return f"{node_id}-0.{node_id}.{params.namespace}.svc.{params.cluster_domain}:{RAFT_PORT}"


def http_address(node_id: str, params: Params) -> str:
    return f"{node_id}-0.{node_id}.{params.namespace}.svc.{params.cluster_domain}:{HTTP_PORT}"


NAMESPACE = Template("""\
# Rendered by deploy/render_k8s.py; edit the script, not this file.
# The consortium's namespace. Pod Security "restricted" is enforced: every pod here runs non-root, with no
# capabilities, no privilege escalation and the runtime's seccomp profile.
apiVersion: v1
kind: Namespace
metadata:
  name: $namespace
  labels:
    app.kubernetes.io/part-of: ecert-chain
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/enforce-version: latest
""")

MEMBER = Template("""\
# Rendered by deploy/render_k8s.py; edit the script, not this file.
# Organisation $org ($role): its node $node ($voter_text). Needs, in namespace $namespace:
#   Secret    ecert-$org-keys   keys/$org.key and keys/node-$node.key from $org's own host (docs/DEPLOY.md)
#   ConfigMap ecert-$org-config cluster.toml (with $org's listen addresses) and genesis.json, from the ceremony
$https_note
# The peer address, $peer: a headless Service (one DNS record per pod, published
# before the pod is ready, since a node must reach its peers to become ready at all).
apiVersion: v1
kind: Service
metadata:
  name: $node
  namespace: $namespace
  labels:
$labels
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
$selector
  ports:
    - name: raft
      port: $raft_port
      targetPort: raft
    - name: http
      port: $http_port
      targetPort: http
---
# The client API of $org's node (only while it is ready).
apiVersion: v1
kind: Service
metadata:
  name: $node-http
  namespace: $namespace
  labels:
$labels
spec:
  type: ClusterIP
  selector:
$selector
  ports:
    - name: http
      port: $http_port
      targetPort: http
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: $node
  namespace: $namespace
  labels:
$labels
spec:
  serviceName: $node
  # One node per organisation: the consortium's replicas are the other organisations' nodes, not more pods.
  replicas: 1
  podManagementPolicy: OrderedReady
  updateStrategy:
    type: RollingUpdate
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Retain
  selector:
    matchLabels:
$match
  template:
    metadata:
      labels:
$pod_labels
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      # SIGTERM drains (HTTP in-flight requests up to 5 s, the driver's current Ready, LevelDB closed).
      terminationGracePeriodSeconds: 30
      securityContext:
        runAsNonRoot: true
        runAsUser: $uid
        runAsGroup: $uid
        fsGroup: $uid
        fsGroupChangePolicy: OnRootMismatch
        seccompProfile:
          type: RuntimeDefault
      topologySpreadConstraints:
        # When several organisations share one Kubernetes cluster (a rehearsal), keep their nodes apart.
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: ecert-chain
      containers:
        - name: node
          image: $image
          imagePullPolicy: IfNotPresent
          env:
            - name: ECERT_NODE_ID
              value: $node
            - name: ECERT_CONFIG
              value: /ecert/cluster.toml
          ports:
            - name: raft
              containerPort: $raft_port
            - name: http
              containerPort: $http_port
          # GET /v1/status is anonymous and answers on a follower too. Startup: opening LevelDB and catching
          # up from a snapshot may take minutes; after it, an unready node leaves the HTTP Service and a node
          # that stops answering for a minute is restarted (a broken invariant exits with 70 on its own).
          startupProbe:
            httpGet:
              path: /v1/status
              port: http
              scheme: $scheme
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 120
          readinessProbe:
            httpGet:
              path: /v1/status
              port: http
              scheme: $scheme
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          livenessProbe:
            httpGet:
              path: /v1/status
              port: http
              scheme: $scheme
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 6
          resources:
            requests:
              cpu: 500m
              memory: 512Mi
            limits:
              cpu: "2"
              memory: 2Gi
          securityContext:
$container_security
          volumeMounts:
            - name: data
              mountPath: /ecert/data
            - name: keys
              mountPath: /ecert/keys
              readOnly: true
            - name: consortium
              mountPath: /ecert/cluster.toml
              subPath: cluster.toml
              readOnly: true
            - name: consortium
              mountPath: /ecert/genesis.json
              subPath: genesis.json
              readOnly: true
$https_mount            - name: tmp
              mountPath: /tmp
      volumes:
        # The node refuses a keys/ holding any private key but its org's and its node's (node/custody.py);
        # whatever else the Secret may hold, only these two files are projected (the ..data directory that
        # Kubernetes keeps beside them holds the same two).
        - name: keys
          secret:
            secretName: ecert-$org-keys
            defaultMode: 288  # 0440: owner and group (fsGroup) read
            items:
              - key: $org.key
                path: $org.key
              - key: node-$node.key
                path: node-$node.key
        - name: consortium
          configMap:
            name: ecert-$org-config
            items:
              - key: cluster.toml
                path: cluster.toml
              - key: genesis.json
                path: genesis.json
$https_volume        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
$claim_labels
      spec:
        accessModes: ["ReadWriteOnce"]
$storage_class        resources:
          requests:
            storage: $storage
---
# One pod per organisation, so this budget never blocks a drain by itself: it states that $org's node may be
# down for a voluntary disruption. The budget that matters is the consortium's (a majority of the voting
# organisations up, docs/DEPLOY.md "Disruptions"), which no single organisation's cluster can enforce.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: $node
  namespace: $namespace
  labels:
$labels
spec:
  maxUnavailable: 1
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
$match
---
# Raft only from the consortium's pods in this namespace (across clusters: replace with the other
# organisations' egress addresses); the HTTP API from anywhere (it authenticates every non-public request).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: $node
  namespace: $namespace
  labels:
$labels
spec:
  podSelector:
    matchLabels:
$match
  policyTypes: ["Ingress"]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              app.kubernetes.io/name: ecert-chain
      ports:
        - protocol: TCP
          port: $raft_port
    - ports:
        - protocol: TCP
          port: $http_port
""")

CONTAINER_SECURITY = """\
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]"""

HTTPS_NOTE = "#   Secret    ecert-$org-https  tls/ from the ceremony (--https): its HTTPS certificate and key\n"
HTTPS_MOUNT = """\
            - name: https
              mountPath: /ecert/tls
              readOnly: true
"""
HTTPS_VOLUME = """\
        - name: https
          secret:
            secretName: ecert-$org-https
            defaultMode: 288  # 0440: owner and group (fsGroup) read
"""


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _labels(member: Member, *, selector_only: bool = False) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "ecert-chain", "app.kubernetes.io/instance": member.node_id}
    if not selector_only:
        labels |= {"app.kubernetes.io/component": "node", "app.kubernetes.io/part-of": "ecert-chain",
                   "ecert.io/org": member.org, "ecert.io/voter": "true" if member.voter else "false"}
    return labels


def _yaml_map(labels: dict[str, str], spaces: int) -> str:
    return _indent("\n".join(f'{k}: "{v}"' for k, v in labels.items()), spaces)


def render_member(member: Member, params: Params) -> str:
    sub = {"org": member.org}  # the optional HTTPS parts name the org too
    return MEMBER.substitute(
        org=member.org, node=member.node_id, role=member.role or "member",
        voter_text="a voter" if member.voter else "a learner, never promoted" if member.role == "regulator"
        else "a learner",
        namespace=params.namespace, image=params.image, uid=UID, raft_port=RAFT_PORT, http_port=HTTP_PORT,
        peer=peer_address(member.node_id, params), storage=params.storage,
        scheme="HTTPS" if params.https else "HTTP",
        labels=_yaml_map(_labels(member), 4), selector=_yaml_map(_labels(member, selector_only=True), 4),
        match=_yaml_map(_labels(member, selector_only=True), 6),
        pod_labels=_yaml_map(_labels(member), 8), claim_labels=_yaml_map(_labels(member), 10),
        container_security=_indent(CONTAINER_SECURITY, 12),
        storage_class=f"        storageClassName: {params.storage_class}\n" if params.storage_class else "",
        https_note=Template(HTTPS_NOTE).substitute(sub) if params.https else "",
        https_mount=HTTPS_MOUNT if params.https else "",
        https_volume=Template(HTTPS_VOLUME).substitute(sub) if params.https else "",
    )


def render(members: list[Member], params: Params) -> dict[str, str]:
    """File name -> text."""
    files = {"namespace.yaml": NAMESPACE.substitute(namespace=params.namespace)}
    for m in members:
        files[f"{m.node_id}.yaml"] = render_member(m, params)
    return files


DEFAULTS = Params()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="render_k8s.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cluster-file", type=Path, default=ROOT / "cluster.toml",
                   help="the consortium's nodes and orgs (default: the shipped cluster.toml)")
    p.add_argument("--out", type=Path, default=ROOT / "deploy" / "k8s")
    p.add_argument("--namespace", default=DEFAULTS.namespace)
    p.add_argument("--image", default=DEFAULTS.image)
    p.add_argument("--cluster-domain", default=DEFAULTS.cluster_domain)
    p.add_argument("--storage", default=DEFAULTS.storage, help="each node's PersistentVolumeClaim size")
    p.add_argument("--storage-class", default=None)
    p.add_argument("--https", action="store_true", help="HTTPS API: probes over HTTPS, ecert-<org>-https mounted")
    p.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    a = p.parse_args(argv)
    params = Params(a.namespace, a.image, a.cluster_domain, a.storage, a.storage_class, a.https)
    try:
        files = render(consortium(a.cluster_file), params)
    except (OSError, ValueError, KeyError) as exc:
        print(f"render_k8s: {a.cluster_file}: {exc}", file=sys.stderr)
        return 2
    if a.check:
        stale = [name for name, text in files.items()
                 if not (a.out / name).is_file() or (a.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"render_k8s: {a.out / name} differs from what deploy/render_k8s.py renders", file=sys.stderr)
        return 1 if stale else 0
    a.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (a.out / name).write_text(text, encoding="utf-8")
        print(a.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
