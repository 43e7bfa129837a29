"""Crashes and recovery with real processes: leader SIGKILL, restart, snapshot catch-up, graceful stop,
forged peer connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack
import pytest

from tests.integration.conftest import CHAIN_ID, Cluster, http_json

pytestmark = pytest.mark.slow


def _committed_everywhere(c: Cluster, ids: list[str], tx_ids: list[str]) -> None:
    for node_id in ids:
        for tx_id in tx_ids:
            status, got = http_json("GET", c.url(node_id, f"/v1/tx/{tx_id}"))
            assert status == 200 and got["status"] == "committed", (node_id, tx_id, got)


def test_leader_sigkill_new_leader_no_acked_tx_lost_and_restart_converges(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.wait_leader()
    acked: list[str] = []
    # Concurrent load through every node while the leader dies.
    stop_at = time.monotonic() + 1.5

    def client(node_id: str) -> list[str]:
        mine = []
        while time.monotonic() < stop_at + 1.0:
            try:
                status, body = c.submit(node_id, c.anchor_tx("tier1"), timeout_ms=3000)
            except OSError:
                continue
            if status == 200 and body.get("status") == "committed":
                mine.append(body["tx_id"])
            elif status == 200:
                raise AssertionError(body)
            else:
                assert status in (502, 503, 504, 429) or status is None, body
                if status == 504:
                    assert body["status"] == "unknown"
        return mine

    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(client, i) for i in c.nodes if i != leader] + [pool.submit(client, leader)]
        time.sleep(0.5)
        c.kill(leader)
        for f in futs:
            acked.extend(f.result())
    survivors = [i for i in c.nodes if i != leader]
    new_leader = c.wait_leader(among=survivors)
    assert new_leader != leader
    status, body = c.submit(survivors[0], c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body
    acked.append(body["tx_id"])
    assert len(acked) >= 5
    top = c.wait_converged(survivors)
    _committed_everywhere(c, survivors, acked)
    # The old leader restarts with its data, rejoins as a follower and converges.
    c.start(leader)
    c.wait_up(leader)
    c.wait_converged(list(c.nodes), min_height=top["height"])
    _committed_everywhere(c, [leader], acked)
    assert c.status(leader)["role"] == "follower"


def test_wiped_follower_catches_up_through_a_snapshot(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, snapshot_entries=8)
    leader = c.wait_leader()
    victim = next(i for i in c.nodes if i != leader)
    raws = [c.anchor_tx("tier1") for _ in range(30)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda r: c.submit(leader, r), raws))
    assert all(s == 200 and b["status"] == "committed" for s, b in answers), answers
    top = c.wait_converged()
    # Graceful stop: exit code 0 and the pid file is gone.
    assert c.stop(victim) == 0
    assert not (c.nodes[victim].data_dir / "node.pid").exists()
    c.wipe(victim)
    st = c.status(leader)
    assert st["snapshot_index"] > 0  # the leader compacted its log: the follower cannot replay from 1
    c.start(victim)
    c.wait_up(victim)
    c.wait_converged(list(c.nodes), min_height=top["height"])
    log_lines = (c.nodes[victim].data_dir / "node.log").read_text().splitlines()
    assert any(json.loads(line)["event"] == "snapshot_installed" for line in log_lines)
    _committed_everywhere(c, [victim], [b["tx_id"] for _, b in answers[-3:]])
    # It keeps following: a new tx commits on it too.
    status, body = c.submit(victim, c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body
    # What it installed is on disk as files (the received Raft snapshot; the state store swapped in whole), and
    # it reopens from them.
    data_dir = c.nodes[victim].data_dir
    assert list((data_dir / "raft.snapshots").glob("*.snap"))
    assert not (data_dir / "state.import").exists() and not (data_dir / "state.retired").exists()
    assert c.stop(victim) == 0
    c.start(victim)
    c.wait_up(victim)
    # Straight after the restart, before any heartbeat: a linearizable read and a submission both wait for the
    # leader to be learnt (bounded) rather than answer `no_leader`.
    status, org = c.signed("tier1", "GET", victim, "/v1/orgs/tier1?consistency=linearizable")
    assert status == 200 and org["id"] == "tier1", org
    c.wait_converged(list(c.nodes))
    status, body = c.submit(victim, c.anchor_tx("geely", counterparty="tier1"))
    assert status == 200 and body["status"] == "committed", body


async def _forge(host: str, port: int, claimed: str, to: str, key: Any, chain_id: str = CHAIN_ID,
                 replay: list[bytes] | None = None) -> tuple[list[bytes], bool]:
    """Run the initiator side of the handshake inside TLS 1.3, bound to the certificate the node presented;
    returns (frames we sent, whether the peer accepted)."""
    import hashlib
    import ssl

    from node.transport import HANDSHAKE_FRAME_BYTES_MAX, PROTOCOL, encode_frame, read_frame, transcript

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    binding = hashlib.sha256(writer.get_extra_info("ssl_object").getpeercert(binary_form=True)).digest()
    sent: list[bytes] = []
    try:
        if replay is None:
            nonce = os.urandom(32)
            hello = encode_frame(msgpack.packb({"t": "hello", "v": PROTOCOL, "chain_id": chain_id, "from": claimed,
                                                "to": to, "nonce": nonce}))
        else:
            hello = replay[0]
        writer.write(hello)
        sent.append(hello)
        answer = msgpack.unpackb(await read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX))
        if answer.get("t") != "hello":
            return sent, False
        if replay is None:
            sig = key.sign(transcript("initiator", chain_id, claimed, to, nonce, answer["nonce"], binding))
            auth = encode_frame(msgpack.packb({"t": "auth", "sig": sig}))
        else:
            auth = replay[1]
        writer.write(auth)
        sent.append(auth)
        try:
            answer = msgpack.unpackb(await asyncio.wait_for(read_frame(reader, HANDSHAKE_FRAME_BYTES_MAX), 3))
        except (asyncio.IncompleteReadError, ConnectionError):
            return sent, False
        return sent, answer.get("t") == "auth"
    finally:
        writer.close()


def test_forged_peer_connections_are_refused(cluster_factory: Any) -> None:
    from node.keys import KeyPair, load_node_key

    c: Cluster = cluster_factory(3)
    leader = c.wait_leader()
    target = next(i for i in c.nodes if i != leader)
    other = next(i for i in c.nodes if i not in (leader, target))
    raft = c.config.node(target).raft
    before = c.status(target)
    stranger = KeyPair(os.urandom(32))

    async def scenario() -> None:
        # Unknown id.
        _, ok = await _forge(raft.host, raft.port, "mallory", target, stranger)
        assert not ok
        # Known id, wrong key (bad signature).
        _, ok = await _forge(raft.host, raft.port, other, target, stranger)
        assert not ok
        # Wrong chain id.
        real = load_node_key(c.config.keys_dir, other)
        _, ok = await _forge(raft.host, raft.port, other, target, real, chain_id="other-chain")
        assert not ok
        # A genuine handshake (we hold the real key here) succeeds ... and replaying its frames fails.
        frames, ok = await _forge(raft.host, raft.port, other, target, real)
        assert ok
        _, ok = await _forge(raft.host, raft.port, other, target, None, replay=frames)
        assert not ok

    asyncio.run(scenario())
    # Raw garbage on the port changes nothing either.
    with socket.create_connection((raft.host, raft.port), timeout=2) as s:
        s.sendall(b"\xff\xff\xff\xff" + b"garbage")
        s.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionError):
            s.recv(100)
    after = c.status(target)
    assert after["term"] == before["term"] and after["leader_id"] == before["leader_id"] == leader
    status, body = c.submit(target, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed"
    refused = [json.loads(line) for line in (c.nodes[target].data_dir / "node.log").read_text().splitlines()]
    assert sum(1 for e in refused if e["event"] == "handshake_refused") >= 4


def test_sigterm_is_graceful(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(1)
    node_id = next(iter(c.nodes))
    status, body = c.submit(node_id, c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed"
    pid_file = c.nodes[node_id].data_dir / "node.pid"
    assert int(pid_file.read_text()) == c.nodes[node_id].proc.pid  # type: ignore[union-attr]
    c.signal(node_id, signal.SIGTERM)
    assert c.nodes[node_id].proc.wait(15) == 0  # type: ignore[union-attr]
    assert not pid_file.exists()
    events = [json.loads(line)["event"] for line in (c.nodes[node_id].data_dir / "node.log").read_text().splitlines()]
    assert "node_stopped" in events
    c.start(node_id)
    c.wait_leader()
    status, got = http_json("GET", c.url(node_id, f"/v1/tx/{body['tx_id']}"))
    assert got["status"] == "committed"


def test_no_quorum_answers_503_never_a_false_success(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.wait_leader()
    survivor = next(i for i in c.nodes if i != leader)
    for i in c.nodes:
        if i != survivor:
            c.kill(i)
    deadline = time.monotonic() + 10
    seen = set()
    while time.monotonic() < deadline:
        status, body = c.submit(survivor, c.anchor_tx("tier1"), timeout_ms=500)
        assert status in (503, 504), body  # never 200: nothing can commit without a majority
        seen.add(body.get("error", {}).get("code") if status == 503 else body["status"])
        if status == 503 and body["error"]["code"] == "no_leader":
            assert "leader_id" in body
            break
    else:
        raise AssertionError(f"never answered no_leader: {seen}")
    st = c.status(survivor)
    assert st["leader_id"] is None and st["role"] in ("candidate", "follower")
    # A linearizable read waits the election out too, then says why it cannot be served.
    status, body = c.signed("tier1", "GET", survivor, "/v1/orgs/tier1?consistency=linearizable")
    assert status == 503 and body["error"]["code"] == "no_leader", body


def test_sigterm_on_the_leader_hands_leadership_over(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3)
    leader = c.wait_leader()
    status, body = c.submit(leader, c.anchor_tx("tier1"))
    assert status == 200
    t0 = time.monotonic()
    assert c.stop(leader) == 0
    survivors = [i for i in c.nodes if i != leader]
    new_leader = c.wait_leader(among=survivors, timeout=10)
    assert new_leader != leader
    events = [json.loads(line) for line in (c.nodes[leader].data_dir / "node.log").read_text().splitlines()]
    handed = [e for e in events if e["event"] == "leadership_handed_over"]
    assert handed and handed[0]["done"] and handed[0]["to"] == new_leader
    assert time.monotonic() - t0 < 5
    status, body = c.submit(survivors[0], c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed"


def test_fault_injection_partition_moves_leadership_and_heals(cluster_factory: Any) -> None:
    c: Cluster = cluster_factory(3, fault_injection=True)
    leader = c.wait_leader()
    others = [i for i in c.nodes if i != leader]
    rule = json.dumps({"partition": [[leader], others]}).encode()
    for i in c.nodes:
        status, _ = http_json("POST", c.url(i, "/admin/faults"), rule)
        assert status == 200
    new_leader = c.wait_leader(among=others, timeout=10)
    assert new_leader != leader
    status, body = c.submit(others[0], c.anchor_tx("tier1"))
    assert status == 200 and body["status"] == "committed"
    # The isolated old leader cannot commit anything: no false success.
    status, got = c.submit(leader, c.anchor_tx("tier1"), timeout_ms=1000)
    assert status in (503, 504), got
    for i in c.nodes:
        status, _ = http_json("POST", c.url(i, "/admin/faults"), b'{"heal": true}')
        assert status == 200
    c.wait_converged(min_height=body["height"])
    _committed_everywhere(c, list(c.nodes), [body["tx_id"]])
