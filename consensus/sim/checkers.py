"""Safety checks run by the simulator after every step: Raft's Figure 3 and a few of our own.

The checks are incremental - each looks only at what just changed (an append, a commit, an apply, a new
leader) - so that they can run after every single step. By induction that covers the whole history:

- Election Safety: at most one leader per term.
- Leader Append-Only: a leader appends after its last entry and never overwrites or deletes its own log.
- Log Matching: every (index, term) names one entry with one predecessor term, in every log, ever; together
  with "an append connects to its predecessor" this is the paper's property.
- Leader Completeness: a new leader holds every entry committed so far.
- State Machine Safety: one entry (and one resulting state) per applied index, on every node.
- Durability: a restarted node's hard state is not older than a term or vote it already told someone about,
  and no committed entry is ever lost (a committed index never changes entry, and the final converged state
  holds all of them).
- Linearizable reads: a ReadIndex read covers every write acknowledged before the read started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import Entry, EntryType, NodeId
from consensus.ready import HardState


class SafetyViolation(AssertionError):
    """A Raft safety property was broken; `prop` names it."""

    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Slot:
    """What one (index, term) of the log is, wherever it appears."""

    type: EntryType
    data: bytes
    prev_term: int


@dataclass(slots=True)
class _Committed:
    term: int
    type: EntryType
    data: bytes
    state: bytes | None = None
    """Application state digest after applying this index (filled by the first node to apply it)."""


@dataclass(slots=True)
class Checker:
    leaders: dict[int, NodeId] = field(default_factory=dict)
    """term -> the node that was leader in it."""
    slots: dict[tuple[int, int], _Slot] = field(default_factory=dict)
    committed: dict[int, _Committed] = field(default_factory=dict)
    max_committed: int = 0
    sent_term: dict[NodeId, int] = field(default_factory=dict)
    """Highest term a node put on a message (so it must have been durable)."""
    granted: dict[NodeId, tuple[int, NodeId]] = field(default_factory=dict)
    """Latest (term, candidate) a node granted its vote to."""
    acked_write_index: dict[bytes, int] = field(default_factory=dict)
    max_acked_index: int = 0
    """Highest log index of an acknowledged client write."""

    # -- Election Safety -------------------------------------------------------------------------------------

    def on_leader(self, node: NodeId, term: int) -> bool:
        """`node` is leader in `term`. Returns True the first time (a new election won)."""
        holder = self.leaders.get(term)
        if holder is None:
            self.leaders[term] = node
            return True
        if holder != node:
            raise SafetyViolation("election_safety", f"term {term} has two leaders: {holder} and {node}")
        return False

    # -- Log Matching / Leader Append-Only -------------------------------------------------------------------

    def on_append(self, node: NodeId, prev_term: int, entries: tuple[Entry, ...], *, leader_last: int | None,
                  ) -> None:
        """`node` wrote `entries` after an entry of term `prev_term`. `leader_last` is the node's last index
        before the write if it was leader (in the same term) before this step, else None."""
        if leader_last is not None and entries[0].index != leader_last + 1:
            raise SafetyViolation("leader_append_only", f"leader {node} wrote entry {entries[0].index} over "
                                  f"its log ending at {leader_last}")
        for e in entries:
            if e.term < prev_term:
                raise SafetyViolation("log_matching", f"{node}: entry {e.index} has term {e.term} after a "
                                      f"term-{prev_term} entry")
            slot = _Slot(e.type, e.data, prev_term)
            seen = self.slots.setdefault((e.index, e.term), slot)
            if seen != slot:
                raise SafetyViolation("log_matching", f"{node}: entry (index {e.index}, term {e.term}) differs "
                                      f"from one already in another log: {seen} vs {slot}")
            prev_term = e.term

    # -- commits ---------------------------------------------------------------------------------------------

    def on_commit(self, node: NodeId, entry: Entry) -> None:
        """`node` holds `entry` in its log and its commit index covers it."""
        c = self.committed.get(entry.index)
        if c is None:
            self.committed[entry.index] = _Committed(entry.term, entry.type, entry.data)
            self.max_committed = max(self.max_committed, entry.index)
        elif (c.term, c.type, c.data) != (entry.term, entry.type, entry.data):
            raise SafetyViolation("state_machine_safety", f"{node} committed (index {entry.index}, term "
                                  f"{entry.term}) but term-{c.term} entry was committed there before")

    def check_leader_completeness(self, node: NodeId, term: int, snap_index: int, snap_state: bytes,
                                  term_at: dict[int, int]) -> None:
        """A new leader's log (`term_at`: index -> term after its snapshot) holds every committed entry."""
        for index in sorted(self.committed):
            c = self.committed[index]
            if index < snap_index:
                continue
            if index == snap_index:
                if c.state is not None and c.state != snap_state:
                    raise SafetyViolation("leader_completeness", f"leader {node} (term {term}) has a snapshot "
                                          f"at {index} of a different state")
                continue
            if term_at.get(index) != c.term:
                raise SafetyViolation("leader_completeness", f"leader {node} (term {term}) lacks committed "
                                      f"entry {index} (term {c.term}); has term {term_at.get(index)}")

    # -- State Machine Safety --------------------------------------------------------------------------------

    def on_apply(self, node: NodeId, entry: Entry, state: bytes) -> None:
        """`node` applied `entry`, reaching application state digest `state`."""
        self.on_commit(node, entry)
        c = self.committed[entry.index]
        if c.state is None:
            c.state = state
        elif c.state != state:
            raise SafetyViolation("state_machine_safety", f"{node} reached a different state at index "
                                  f"{entry.index}")

    def on_restore(self, node: NodeId, index: int, state: bytes) -> None:
        """`node` installed a snapshot of state `state` at `index`."""
        c = self.committed.get(index)
        if c is not None and c.state is not None and c.state != state:
            raise SafetyViolation("state_machine_safety", f"{node} installed a snapshot at {index} whose state "
                                  f"differs from the applied one")

    def on_write_acked(self, data: bytes, index: int) -> None:
        if data not in self.acked_write_index:
            self.acked_write_index[data] = index
            self.max_acked_index = max(self.max_acked_index, index)

    # -- durability ------------------------------------------------------------------------------------------

    def on_send(self, node: NodeId, term: int, vote_for: NodeId | None) -> None:
        """`node` sent a message of `term`; `vote_for` is set if it granted a vote (not a pre-vote)."""
        if term > self.sent_term.get(node, 0):
            self.sent_term[node] = term
        if vote_for is not None:
            self.granted[node] = (term, vote_for)

    def on_hard_state(self, node: NodeId, prev: HardState, new: HardState) -> None:
        """Within one incarnation a node's term and commit never go back, nor does its vote change in a term."""
        if new.term < prev.term or new.commit < prev.commit:
            raise SafetyViolation("hard_state", f"{node} hard state went back from {prev} to {new}")
        if new.term == prev.term and prev.vote is not None and new.vote != prev.vote:
            raise SafetyViolation("election_safety", f"{node} changed its vote in term {new.term} from "
                                  f"{prev.vote} to {new.vote}")

    def check_restart(self, node: NodeId, term: int, vote: NodeId | None, commit: int, last_index: int) -> None:
        """A restarted node's durable hard state covers everything it said before the crash."""
        if term < self.sent_term.get(node, 0):
            raise SafetyViolation("durability", f"{node} restarted at term {term} but had sent term "
                                  f"{self.sent_term[node]}")
        granted = self.granted.get(node)
        if granted is not None and granted[0] == term and vote != granted[1]:
            raise SafetyViolation("durability", f"{node} restarted in term {term} voting for {vote} but had "
                                  f"granted its vote to {granted[1]}")
        if commit > last_index:
            raise SafetyViolation("durability", f"{node} restarted with commit {commit} beyond its log "
                                  f"(last index {last_index})")

    # -- reads -----------------------------------------------------------------------------------------------

    def check_read(self, node: NodeId, read_index: int, served_index: int, acked_before: int) -> None:
        """A read that started when writes up to index `acked_before` were acknowledged got read index
        `read_index` and was served at applied index `served_index`."""
        if read_index < acked_before:
            raise SafetyViolation("linearizable_read", f"{node} read index {read_index} misses a write "
                                  f"acknowledged at index {acked_before} before the read started")
        if served_index < read_index:
            raise SafetyViolation("linearizable_read", f"{node} served read index {read_index} at applied "
                                  f"index {served_index}")

    # -- end of run ------------------------------------------------------------------------------------------

    def check_final(self, node: NodeId, applied: int, state: bytes) -> None:
        """After healing, a converged node's state includes every entry ever committed."""
        if applied < self.max_committed:
            raise SafetyViolation("durability", f"{node} converged at {applied} but entry {self.max_committed} "
                                  f"was committed")
        c = self.committed.get(applied)
        if c is not None and c.state is not None and c.state != state:
            raise SafetyViolation("durability", f"{node} final state at {applied} differs from the committed one")
