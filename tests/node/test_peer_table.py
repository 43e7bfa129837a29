"""The transport's peer table follows the membership in state (CONTRACT §6 "Peer links"): `member_peers` turns
membership records into pinned (id, address, key) entries, and `set_peers` swaps the table of a running
transport, so a node admitted later gets in and a removed one is cut off."""

from __future__ import annotations

import asyncio
import os
import socket

from consensus.messages import Message, MessageType
from ecert.membership import LEARNER, REMOVED, VOTER, NodeMember
from node.config import Address
from node.keys import KeyPair
from node.transport import PeerInfo, PeerTransport, member_peers

CHAIN = "ecert-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(node_id: str, port: int, key: KeyPair, status: str = VOTER) -> NodeMember:
    return NodeMember(node_id, node_id, f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}", key.sign_pk.hex(), status, 0)


def test_member_peers_pins_every_member_but_us_and_keeps_a_removed_one_while_raft_has_it() -> None:
    keys = {i: KeyPair(os.urandom(32)) for i in "abcd"}
    members = [record("a", 9001, keys["a"]), record("b", 9003, keys["b"], LEARNER),
               record("c", 9005, keys["c"], REMOVED),
               NodeMember("d", "d", "[::1]:9007", "[::1]:9008", keys["d"].sign_pk.hex(), VOTER, 0)]
    peers, removed = member_peers(members, "a", in_raft={"a", "b"})
    assert peers == [PeerInfo("b", Address("127.0.0.1", 9003), keys["b"].sign_pk),
                     PeerInfo("d", Address("::1", 9007), keys["d"].sign_pk)]
    assert removed == {"c"}
    # Until its own Raft configuration lets go of c, the change removing it must still reach it.
    peers, removed = member_peers(members, "a", in_raft={"a", "b", "c"})
    assert [p.id for p in peers] == ["b", "c", "d"] and removed == set()


async def until(cond, within_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + within_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_node_admitted_later_gets_in_and_a_removed_one_is_cut_off() -> None:
    keys = {i: KeyPair(os.urandom(32)) for i in "abn"}
    ports = {i: free_port() for i in "abn"}
    got: dict[str, list[Message]] = {i: [] for i in "abn"}

    def info(i: str) -> PeerInfo:
        return PeerInfo(i, Address("127.0.0.1", ports[i]), keys[i].sign_pk)

    # a and b know each other (genesis); n, the new node, knows them both but they do not know n yet.
    tables = {"a": [info("b")], "b": [info("a")], "n": [info("a"), info("b")]}
    t = {i: PeerTransport(node_id=i, chain_id=CHAIN, key=keys[i], listen=Address("127.0.0.1", ports[i]),
                          peers=tables[i], on_message=got[i].append) for i in "abn"}
    for tr in t.values():
        await tr.start()
    try:
        t["n"].send(Message(MessageType.HEARTBEAT, "n", "a", 1))
        await until(lambda: t["a"].rejected_handshakes > 0)
        assert got["a"] == []
        # The proposal admitting n is applied on a: its address and key come from the record.
        t["a"].set_peers([info("b"), info("n")], removed=())
        t["a"].send(Message(MessageType.HEARTBEAT, "a", "n", 1))
        t["n"].send(Message(MessageType.HEARTBEAT, "n", "a", 2))
        await until(lambda: len(got["n"]) == 1 and any(m.term == 2 for m in got["a"]))
        assert t["a"].stats["n"].connected
        # n is removed (and Raft has let go of it): its connections close, its handshakes are refused.
        t["a"].set_peers([info("b")], removed={"n"})
        assert not t["a"].is_member("n")
        refused = t["a"].rejected_handshakes
        t["n"].send(Message(MessageType.HEARTBEAT, "n", "a", 3))
        await asyncio.sleep(0.3)
        t["n"].send(Message(MessageType.HEARTBEAT, "n", "a", 4))
        await until(lambda: t["a"].rejected_handshakes > refused)
        assert not any(m.term >= 3 for m in got["a"])
        t["a"].send(Message(MessageType.HEARTBEAT, "a", "n", 5))  # nothing is sent to it either
        t["a"].send(Message(MessageType.HEARTBEAT, "a", "b", 5))
        await until(lambda: any(m.term == 5 for m in got["b"]))
        assert [m.term for m in got["n"]] == [1]
    finally:
        for tr in t.values():
            await tr.close()
