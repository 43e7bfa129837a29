"""When a node believes the peers that say it was removed from the cluster.

A node that was down while the members removed it restarts with a log that ends before its removal, and the
other nodes no longer send it anything: the change that removed it never reaches it. Its peers refuse its
handshakes with a signed removal notice instead (node/transport.py). One peer's word is not enough, since a
single member could otherwise switch any node off by saying so: the node takes it as removed once a quorum of
the voters it knows (its own Raft configuration, itself left out) has told it, the same quorum that could have
committed the removal. Notices are kept per peer: a peer that says it once counts until the process restarts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass(slots=True)
class RemovalNotices:
    node_id: str
    told_by: set[str] = field(default_factory=set)

    def note(self, peer_id: str, voters: Collection[str]) -> bool:
        """Record that `peer_id` says this node was removed; True once a quorum of `voters` has said it."""
        self.told_by.add(peer_id)
        return self.confirmed(voters)

    def confirmed(self, voters: Collection[str]) -> bool:
        known = set(voters)
        others = known - {self.node_id}
        if not others:
            return False  # a configuration of only this node: nobody else could have removed it
        return len(self.told_by & others) >= len(known) // 2 + 1
