"""Carrying out one `Ready`: consensus/ready.py's contract, in its order, in one place for every driver.

The node (node/driver.py: LevelDB, the peer transport, the StateStore) and the simulator (consensus/sim/) both
call `handle_ready`; they differ only in what their `ReadyIO` does. So the order the simulator checks under
crashes, partitions and message loss is the order the node runs, early send included.

No I/O of its own: every effect goes through `ReadyIO`. If a step raises (a disk error, a broken invariant, a
simulated crash), the Ready is abandoned where it stands and `advance` is not called.
"""

from __future__ import annotations

from typing import Protocol

from consensus.messages import Entry, Message, Snapshot
from consensus.ready import HardState, ReadState, Ready, Role


class ReadyIO(Protocol):
    """What a driver does for each step of a Ready. Each method is called at most once per Ready."""

    def persist(self, rd: Ready) -> None:
        """Write `rd.hard_state`, `rd.entries` and `rd.snapshot` in one write, fsynced when `rd.must_sync`;
        return only once it is durable. Called only when the Ready has something to write."""
        ...

    def send(self, messages: tuple[Message, ...]) -> None:
        """Hand `messages` to the network, in order. Called only when there are some."""
        ...

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Restore the application state from a snapshot received from the leader (already persisted)."""
        ...

    def apply(self, entries: tuple[Entry, ...]) -> None:
        """Apply committed, persisted entries in order. Called only when there are some."""
        ...

    def hand_read_states(self, read_states: tuple[ReadState, ...]) -> None:
        """Give read states to their waiting readers. Called for every Ready (perhaps with none): a reader
        waiting for the applied index may be served by what this Ready applied."""
        ...

    def advance(self, rd: Ready) -> None:
        """Tell the core the Ready is done (`core.advance(rd)`)."""
        ...


def may_send_early(role: Role, rd: Ready, persisted: HardState) -> bool:
    """Whether this Ready's messages may leave before its write is durable (thesis §10.2.1: the leader's disk
    and the followers' then work in parallel). `persisted` is the hard state of the last write that finished.

    Only a leader, and only when
    - its term and vote are unchanged: a message carries the term, and a vote or a term told to a peer must
      survive a crash (else two leaders in one term);
    - its commit index does not cover an entry of this very write: the core counts a leader's own entries
      towards the quorum as soon as it appends them, so a leader that is alone in the quorum (one voter,
      perhaps with learners) commits an entry before it is on its own disk. Sending that commit index early
      would let a learner apply an entry the leader can lose in a crash.

    Followers never send early: their acknowledgements promise that the entries are on disk.

    Why the leader's own count is safe otherwise: `persist` returns before the driver steps any
    acknowledgement (both drivers step messages only between Readies), so nothing this leader decides counts a
    copy that a crash could still take back; and a leader that crashes before its write finished decides
    nothing more, while its followers' copies are ordinary uncommitted entries of its term.
    """
    if role is not Role.LEADER:
        return False
    hs = rd.hard_state
    if hs is not None and (hs.term != persisted.term or hs.vote != persisted.vote):
        return False
    commit = hs.commit if hs is not None else persisted.commit
    return not rd.entries or commit < rd.entries[0].index


def needs_write(rd: Ready) -> bool:
    return rd.hard_state is not None or bool(rd.entries) or rd.snapshot is not None


def handle_ready(rd: Ready, io: ReadyIO, *, role: Role, persisted: HardState) -> HardState:
    """Carry out `rd` in the contract's order: (early send), persist, send, install the snapshot, apply the
    committed entries, hand out read states, advance. `role` is the core's role when it made `rd`; `persisted`
    the hard state of the last finished write. Returns the hard state persisted once this Ready is done."""
    early = may_send_early(role, rd, persisted)
    if early and rd.messages:
        io.send(rd.messages)
    if needs_write(rd):
        io.persist(rd)
    if not early and rd.messages:
        io.send(rd.messages)
    if rd.snapshot is not None:
        io.install_snapshot(rd.snapshot)
    if rd.committed_entries:
        io.apply(rd.committed_entries)
    io.hand_read_states(rd.read_states)
    io.advance(rd)
    return rd.hard_state if rd.hard_state is not None else persisted
