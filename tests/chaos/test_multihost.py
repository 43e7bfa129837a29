"""The multi-host run (node/chaos/multihost.py, ./scripts/multihost): a short real run as root — one namespace
and directory per organisation, the ceremony, peer TLS and HTTPS for every API, a kernel partition of the leader
and a restart, nothing readable on the wire (peer links, the clients' requests and the dashboards' probes alike)
— and the same run with `--no-tls`, whose capture must show the workload's ids in clear on both ports (the
search is proven to find what it looks for). Also, without root: the capture's TCP reassembly and search on
a pcap built here, the cluster-file edits, and the skip. Root runs are skipped with the reason otherwise."""

from __future__ import annotations

import ctypes
import json
import signal
import struct
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from node.chaos import multihost, netns

ROOT = Path(__file__).resolve().parents[2]
RUN_S = 12
NO_TLS_RUN_S = 10


def die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


REASON = multihost.skip_reason()
needs_root = pytest.mark.skipif(REASON is not None, reason=f"multihost unavailable: {REASON}")


def run(args: list[str], timeout: float = 150) -> tuple[int, dict, str]:
    proc = subprocess.run([sys.executable, "-m", "node.chaos.multihost", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=die_with_parent)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else {}), proc.stderr


def no_leftovers() -> list[str]:
    """Namespaces and links of runs whose owner is gone, and captures still running."""
    left = [n for n in netns.list_namespaces() + netns.list_links()
            if not netns._owner_alive(netns._run_of(n) or 0)]
    dumps = subprocess.run(["pgrep", "-x", "tcpdump"], capture_output=True, text=True).stdout.split()
    return left + [f"tcpdump {p}" for p in dumps]


# -- a pcap made here --------------------------------------------------------------------------------------------

def _frame(src: str, dst: str, sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + tcp
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def _pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", multihost.PCAP_MAGIC_US, 2, 4, 0, 0, 262144, multihost.LINKTYPE_ETHERNET)
    for f in frames:
        out += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    return out


def test_search_reassembles_segments_and_never_bridges_a_hole(tmp_path: Path) -> None:
    a, b = ("10.77.9.1", 40000), ("10.77.9.2", 9700)
    isn = 2**32 - 3  # the sequence numbers wrap inside the stream
    seg = [b"....inv-7-ti", b"er1-42....", b"geely"]
    frames = [_frame(*a[:1], *b[:1], a[1], b[1], isn, 0x02, b""),
              # out of order, one retransmitted, the needle split across the first two segments
              _frame(a[0], b[0], a[1], b[1], (isn + 1 + len(seg[0])) % 2**32, 0x18, seg[1]),
              _frame(a[0], b[0], a[1], b[1], (isn + 1) % 2**32, 0x18, seg[0]),
              _frame(a[0], b[0], a[1], b[1], (isn + 1) % 2**32, 0x18, seg[0]),
              # after a hole of 5 bytes (a segment the capture missed): "geely" must not join "....gee"
              _frame(a[0], b[0], a[1], b[1], (isn + 1 + len(seg[0]) + len(seg[1]) + 5) % 2**32, 0x18, seg[2]),
              _frame(b[0], a[0], b[1], a[1], 77, 0x12, b""),
              _frame(b[0], a[0], b[1], a[1], 78, 0x18, b"\x16\x03\x03 hello"),
              # the client API: one connection in TLS, one in clear whose request names an org
              _frame("10.77.9.254", b[0], 41000, 8700, 5, 0x02, b""),
              _frame("10.77.9.254", b[0], 41000, 8700, 6, 0x18, b"\x16\x03\x01 client hello geely?"),
              _frame("10.77.9.254", b[0], 41001, 8700, 9, 0x02, b""),
              _frame("10.77.9.254", b[0], 41001, 8700, 10, 0x18, b"GET /v1/holdings/geely HTTP/1.1\r\n")]
    path = tmp_path / "x.pcap"
    path.write_bytes(_pcap(frames))
    found = multihost.search_capture(path, ["inv-7-tier1-42", "geely", "inv-7-tier1-43"])
    assert found["hits"] == {"inv-7-tier1-42": 1, "geely": 3, "inv-7-tier1-43": 0}
    assert found["hits_by_port"] == {"9700": 2, "8700": 2}
    assert found["tcp_streams"] == 4 and found["peer_streams"] == 2 and found["peer_streams_tls"] == 1
    assert (found["api_streams"], found["api_streams_tls"], found["api_streams_http"]) == (2, 1, 1)
    streams = multihost.tcp_streams(path.read_bytes())
    assert streams[0].data() == seg[0] + seg[1] + multihost.GAP + seg[2]
    with pytest.raises(ValueError, match="not a pcap"):
        multihost.search_capture(_write(tmp_path / "bad.pcap", b"\x00" * 40), ["x"])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_cluster_file_edits_touch_only_what_they_name() -> None:
    text = ('[cluster]\nchain_id = "c"\ntick_ms = 100\n\n[[orgs]]\nid = "boc"\n\n[[nodes]]\nid = "boc"\n'
            'raft = "10.0.0.1:9700"\n\n[[nodes]]\nid = "x"\nraft_listen = "[::]:1"\n')
    out = multihost.set_cluster_keys(text, {"tick_ms": 50, "peer_tls": True})
    out = multihost.set_node_keys(out, {"raft_listen": "0.0.0.0:9700"})
    doc = tomllib.loads(out)
    assert doc["cluster"] == {"chain_id": "c", "tick_ms": 50, "peer_tls": True}
    assert [n.get("raft_listen") for n in doc["nodes"]] == ["0.0.0.0:9700", "[::]:1"]
    assert doc["orgs"] == [{"id": "boc"}]
    # By node id: each entry gets its own https_ca; an entry that has a key keeps it.
    out = multihost.set_node_keys(out, multihost.https_node_keys)
    nodes = tomllib.loads(out)["nodes"]
    assert [n["https_ca"] for n in nodes] == ["tls/boc-ca.pem", "tls/x-ca.pem"]
    assert {n["https_cert"] for n in nodes} == {"tls/https-cert.pem"}
    with pytest.raises(multihost.MultihostError, match="has no id"):
        multihost.set_node_keys("[[nodes]]\nraft = \"a:1\"\n", multihost.https_node_keys)
    with pytest.raises(multihost.MultihostError, match="no \\[cluster\\]"):
        multihost.set_cluster_keys("[[orgs]]\n", {"a": 1})


def test_without_root_it_skips_with_a_reason(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(multihost.os, "geteuid", lambda: 1000)
    assert multihost.main(["--hosts", "3", "--duration", "10"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {
        "skipped": "./scripts/multihost needs root (network namespaces, veth, bridge, tc and tcpdump need "
                   "CAP_NET_ADMIN)"}


# -- root ------------------------------------------------------------------------------------------------------

@needs_root
def test_a_crashed_runs_capture_is_killed_by_the_stale_cleanup(tmp_path: Path) -> None:
    net = netns.NetnsNetwork(["a"], who="test")
    net.up()
    try:
        cap = net.capture(tmp_path / "c.pcap", "tcp")
        (netns.STATE_DIR / f"{net.run}.pid").write_text("999999999")  # the owner is gone
        assert net.run in netns.cleanup_stale()
        assert cap.proc.wait(5) is not None
        assert net.leftovers() == []
    finally:
        net.down()


@needs_root
@pytest.mark.slow
def test_multihost_run_with_tls_shows_nothing_on_the_wire() -> None:
    code, s, err = run(["--hosts", "3", "--duration", str(RUN_S), "--seed", "7"])
    assert code == 0, (s, err[-3000:])
    assert s["hosts"] == 4 and s["voters"] == 3 and s["tls"] is True and s["https"] is True
    assert s["lost"] == 0 and s["violations"] == 0 and s["acked"] > 20 and s["converged"]
    assert s["plaintext_hits"] == 0 and set(s["needles"]) >= {"geely", "tier1"}
    assert any(n.startswith("inv-7-") for n in s["needles"])
    assert s["private_keys_per_host"] == {"boc": 1, "geely": 1, "tier1": 1, "pbc": 1}
    assert s["key_files"]["geely"] == ["geely.key", "node-geely.key"]
    cap = s["capture"]
    # Every peer connection opens with a TLS record (a stream whose first segment the capture dropped may not).
    assert cap["peer_payload_bytes"] > 10_000 and cap["peer_streams_tls"] >= 0.9 * cap["peer_streams"] > 0
    # The clients' and the dashboards' API traffic is in the capture too, and none of it is clear HTTP.
    assert cap["api_payload_bytes"] > 10_000 and cap["api_streams_http"] == 0
    assert cap["api_streams_tls"] >= 0.9 * cap["api_streams"] > 0
    assert "bridge address" in cap["filter"]
    assert s["partition"]["survived"] and s["partition"]["events"][0]["new_leader_during"]
    assert s["restart"]["survived"] and s["restart"]["events"][0]["target_back_s"] is not None
    assert s["failures"] == [] and "workdir" not in s
    assert no_leftovers() == []


@needs_root
@pytest.mark.slow
def test_without_tls_the_same_search_finds_the_ids() -> None:
    code, s, err = run(["--hosts", "3", "--duration", str(NO_TLS_RUN_S), "--seed", "3", "--no-tls"])
    assert code == 0, (s, err[-3000:])
    assert s["tls"] is False and s["https"] is False and s["plaintext_hits"] > 0
    docs = {n: v for n, v in s["needles"].items() if n.startswith("inv-3-")}
    assert docs and all(v > 0 for v in docs.values())
    cap = s["capture"]
    assert cap["peer_streams_tls"] == 0 and s["lost"] == 0 and s["violations"] == 0
    # Both services carry the ids in clear: the search covers the API's port as well as the peer links'.
    assert cap["api_streams_tls"] == 0 and cap["api_streams_http"] > 0
    assert cap["hits_by_port"].get("8700", 0) > 0 and cap["hits_by_port"].get("9700", 0) > 0
    assert no_leftovers() == []


@needs_root
@pytest.mark.slow
def test_sigint_mid_run_leaves_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "node.chaos.multihost", "--hosts", "3", "--duration", "30"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=die_with_parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            netns.run_cmd([netns.IP, "netns", "pids", ns], check=False).stdout.strip()
            for ns in netns.list_namespaces()):
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert json.loads(out.strip().splitlines()[-1]) == {"interrupted": True}
    assert no_leftovers() == []
