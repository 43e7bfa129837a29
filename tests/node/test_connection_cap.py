"""What a node holds open for strangers: the HTTP connection cap (node/http/connection_cap.py) on a live node's
real sockets, and node.log's rotation (node.server.setup_logging). The peer port's cap on handshakes in
progress is tested with the peer links (tests/node/test_tls.py)."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest
import requests

from node.config import ClusterConfigError, parse_config
from node.http.connection_cap import TOO_MANY_CONNECTIONS
from node.server import setup_logging
from tests.node.live_node import LiveNode

CAP = 3


def _connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _get_status(sock: socket.socket) -> tuple[int, bytes]:
    """One keep-alive GET /v1/status on `sock`: (status code, body)."""
    sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: node\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
    length = int(headers.get(b"Content-Length", b"0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_connections_over_the_cap_get_503_and_close_and_the_open_ones_keep_serving(tmp_path: Path) -> None:
    live = LiveNode(tmp_path, "ecert-conn-cap", {"http_connections_max": CAP})
    live.start()
    held: list[socket.socket] = []
    try:
        for _ in range(CAP):
            sock = _connect(live.base)
            held.append(sock)
            assert _get_status(sock)[0] == 200  # open and served: counted
        extra = _connect(live.base)
        status, body = _get_status(extra)
        assert status == 503 and json.loads(body)["error"]["code"] == TOO_MANY_CONNECTIONS
        assert _closed(extra)
        extra.close()
        assert _get_status(held[0])[0] == 200  # the connections already open are not touched
        assert live.node.connections()["http_refused"] == 1 and live.node.connections()["http_open"] == CAP
        held.pop().close()
        for _ in range(50):  # the node notices the close on its next loop turn
            again = _connect(live.base)
            status, _ = _get_status(again)
            again.close()
            if status == 200:
                break
        assert status == 200
        for sock in held:  # from here on nothing is refused, so the count /metrics must reach stays put
            sock.close()
        held.clear()
        time.sleep(0.2)
        refused = live.node.connections()["http_refused"]  # 1, or more if a retry above came too early
        wanted = f'ecert_connections_refused_total{{kind="http"}} {float(refused)}'
        metrics = ""
        for _ in range(50):  # the dashboard's sampler copies the counts into /metrics once a second
            metrics = requests.get(live.base + "/metrics", timeout=5).text
            if wanted in metrics:
                break
            time.sleep(0.1)
        assert wanted in metrics, " | ".join(line for line in metrics.splitlines() if line.startswith("ecert_connections"))
    finally:
        for sock in held:
            sock.close()
        live.stop()


def test_the_connection_cap_is_a_cluster_key_with_a_floor(tmp_path: Path) -> None:
    base = {"nodes": [{"id": "n1", "org": "boc", "http": "127.0.0.1:1", "raft": "127.0.0.1:2", "data_dir": "d"}]}
    assert parse_config({"cluster": {"chain_id": "c"}, **base}, tmp_path / "c.toml").http_connections_max == 1024
    with pytest.raises(ClusterConfigError, match="http_connections_max"):
        parse_config({"cluster": {"chain_id": "c", "http_connections_max": 0}, **base}, tmp_path / "c.toml")
    with pytest.raises(ClusterConfigError, match="log_files_kept"):
        parse_config({"cluster": {"chain_id": "c", "log_files_kept": 0}, **base}, tmp_path / "c.toml")


def test_node_log_rotates_and_keeps_the_newest_files(tmp_path: Path) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    path = tmp_path / "node.log"
    try:
        setup_logging(path, "boc", max_bytes=2000, files_kept=2)
        for i in range(200):
            logging.getLogger("node.test").info("line", extra={"i": i})
        for handler in root.handlers:
            handler.close()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.log", "node.log.1", "node.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    newest = [json.loads(line) for line in path.read_text().splitlines()]
    assert newest[-1]["i"] == 199 and newest[-1]["node"] == "boc"
    older = [json.loads(line)["i"] for line in (tmp_path / "node.log.1").read_text().splitlines()]
    assert older[-1] == newest[0]["i"] - 1  # nothing lost between the current file and the newest old one
