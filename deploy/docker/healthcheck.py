"""The container's health: `GET /v1/status` of this node answers 200 with its own node id, and the node has not
halted on a failed apply. Exit 0 healthy, 1 not (Docker's HEALTHCHECK; Kubernetes uses httpGet probes instead).

Stdlib only apart from node.config (installed in the image): slim images have no curl. The address is this
node's listen address from the cluster file (0.0.0.0 / [::] become loopback); ECERT_HEALTH_URL overrides it.
Over HTTPS the certificate is not verified: the check asks whether the process on this container's loopback
answers, not whom to trust (the clients verify against https_ca).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0
"""Below the HEALTHCHECK --timeout (5 s), so a hung node is reported by this script rather than killed by Docker."""
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def status_url(config_path: str, node_id: str) -> str:
    from node.config import load_config

    spec = load_config(config_path).node(node_id)
    bind = spec.http_bind  # http_listen, else the advertised address
    host = WILDCARDS.get(bind.host, bind.host)
    scheme = "https" if spec.https_cert is not None else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{bind.port}/v1/status"


def check(url: str, node_id: str) -> str | None:
    """None if healthy, else why not."""
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if not isinstance(doc, dict) or doc.get("node_id") != node_id:
        return f"{url}: answered for node {doc.get('node_id') if isinstance(doc, dict) else doc!r}, not {node_id}"
    if doc.get("apply_error"):
        return f"{url}: node halted: {doc['apply_error']}"
    return None


def main() -> int:
    node_id = os.environ.get("ECERT_NODE_ID", "")
    if not node_id:
        print("unhealthy: ECERT_NODE_ID is not set", file=sys.stderr)
        return 1
    try:
        url = os.environ.get("ECERT_HEALTH_URL") or status_url(os.environ.get("ECERT_CONFIG",
                                                                              "/ecert/cluster.toml"), node_id)
    except ValueError as exc:  # ClusterConfigError
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    problem = check(url, node_id)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
