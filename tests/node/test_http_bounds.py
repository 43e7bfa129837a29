"""The HTTP layer's bounds, without a node: the JSON depth pre-scan, the audit log's rotation, `read_access`.

(The same bounds on a running node: tests/node/test_api_auth.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.config import ClusterConfigError, parse_config
from node.http.audit_log import AUDIT_LOG_NAME, AuditLog
from node.http.body import JSON_DEPTH_MAX, json_depth


def test_json_depth_prescan() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth(b'"\\"[[[["') == 0
    assert json_depth(b"[" * (JSON_DEPTH_MAX + 5)) == JSON_DEPTH_MAX + 5
    assert json_depth(b"[]" * 1000) == 1


def test_audit_log_rotates_and_keeps_one_old_file(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / AUDIT_LOG_NAME, bytes_max=300)
    for i in range(40):
        audit.write({"ts": i, "org": "tier1", "route": "/v1/certs/{id}", "resource": "x" * 20, "status": 200})
    audit.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [AUDIT_LOG_NAME, AUDIT_LOG_NAME + ".1"]
    assert all(p.stat().st_size <= 300 for p in tmp_path.iterdir())
    last = json.loads((tmp_path / AUDIT_LOG_NAME).read_text().splitlines()[-1])
    assert last["ts"] == 39


def test_read_access_config(tmp_path: Path) -> None:
    base = {"cluster": {"chain_id": "c"}, "nodes": [{"id": "n1", "org": "boc", "http": "127.0.0.1:1",
                                                      "raft": "127.0.0.1:2", "data_dir": "d"}]}
    assert parse_config(base, tmp_path / "c.toml").read_access == "signed"
    opened = parse_config({**base, "cluster": {"chain_id": "c", "read_access": "open"}}, tmp_path / "c.toml")
    assert opened.read_access == "open"
    with pytest.raises(ClusterConfigError) as err:
        parse_config({**base, "cluster": {"chain_id": "c", "read_access": "everyone"}}, tmp_path / "c.toml")
    assert err.value.key == "cluster.read_access"

