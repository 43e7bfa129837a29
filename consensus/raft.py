"""The pure Raft state machine (Ongaro & Ousterhout 2014; Ongaro's thesis), shaped like etcd-io/raft.

Inputs: `tick()`, `step(msg)`, `propose*`, `read_index`, `transfer_leadership`, `campaign`.
Outputs: `ready()` — what to persist, send and apply (see consensus/ready.py for the driver contract) — then
`advance(ready)`. No I/O, no clock, no global randomness: time is `tick()`, randomness is the injected `Rng`.

Each role is a pair of swapped functions: `become_follower` sets `_step = _step_follower` and
`_tick = _tick_election`, and so on. `step` first applies the term rules common to all roles (§5.1), then calls
the role's step function.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import attrgetter, le
from typing import Protocol

from consensus.config import Config
from consensus.errors import InvalidRequestError, NotLeaderError, ProposalDroppedError
from consensus.invariant import require
from consensus.log import RaftLog
from consensus.membership import ConfChange, ConfChangeType, encode_conf_change
from consensus.messages import (
    Entry,
    EntryType,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotChunk,
    SnapshotMeta,
    entries_from_columns,
    entry_columns,
)
from consensus.progress import PeerProgress, Progress, ProgressState
from consensus.ready import HardState, ReadState, Ready, Role, SoftState
from consensus.storage import Storage

_DATA = attrgetter("data")

TRANSFER_CONTEXT = b"transfer"
"""Context of a VOTE sent because of TIMEOUT_NOW: it overrides the leader lease (thesis §4.2.3, §3.10)."""


class _VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


class Rng(Protocol):
    def randrange(self, start: int, stop: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Status:
    id: NodeId
    term: int
    vote: NodeId | None
    commit: int
    applied: int
    last_index: int
    role: Role
    leader_id: NodeId | None
    voters: frozenset[NodeId]
    learners: frozenset[NodeId]
    lead_transferee: NodeId | None = None
    progress: dict[NodeId, PeerProgress] = field(default_factory=dict)
    """Per peer (self included) on a leader; empty otherwise."""


@dataclass(slots=True)
class _ReadRequest:
    from_id: NodeId
    context: bytes
    index: int
    acks: set[NodeId]


class _ReadOnly:
    """ReadIndex rounds in flight on the leader (§8 / thesis §6.4), keyed by the requester's context."""

    __slots__ = ("pending", "queue")

    def __init__(self) -> None:
        self.pending: dict[bytes, _ReadRequest] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, from_id: NodeId, context: bytes) -> None:
        if context in self.pending:
            return
        self.pending[context] = _ReadRequest(from_id, context, index, set())
        self.queue.append(context)

    def recv_ack(self, from_id: NodeId, context: bytes) -> set[NodeId] | None:
        req = self.pending.get(context)
        if req is None:
            return None
        req.acks.add(from_id)
        return req.acks

    def advance(self, context: bytes) -> list[_ReadRequest]:
        """Requests through `context`, in arrival order: a later round's quorum also confirms earlier ones."""
        if context not in self.pending:
            return []
        at = self.queue.index(context)
        done = [self.pending.pop(c) for c in self.queue[:at + 1]]
        self.queue = self.queue[at + 1:]
        return done

    def last_pending_context(self) -> bytes:
        return self.queue[-1] if self.queue else b""


class Raft:
    def __init__(self, config: Config, storage: Storage, rng: Rng) -> None:
        self._cfg = config
        self._id = config.id
        self._storage = storage
        self._rng = rng
        hard_state, snap_meta = storage.initial_state()
        self._log = RaftLog(storage)
        require(hard_state.commit <= self._log.last_index(),
                f"stored commit {hard_state.commit} is beyond the stored log ({self._log.last_index()})")
        # A snapshot is committed state even if the hard state was written before it.
        self._log.committed = max(hard_state.commit, self._log.first_index() - 1)
        self._log.applied = max(snap_meta.index, self._log.first_index() - 1)
        self._voters: set[NodeId] = set(snap_meta.voters)
        self._learners: set[NodeId] = set(snap_meta.learners)
        self._term = hard_state.term
        self._vote: NodeId | None = hard_state.vote
        self._lead: NodeId | None = None
        self._role = Role.FOLLOWER
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_election_timeout = config.election_ticks
        self._votes: dict[NodeId, bool] = {}
        self._prs: dict[NodeId, Progress] = {}
        self._lead_transferee: NodeId | None = None
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._read_only = _ReadOnly()
        self._pending_read_index: list[Message] = []
        self._msgs: list[Message] = []
        self._bcast_pending = False
        """Proposals were appended since the last ready(): broadcast them then."""
        self._read_states: list[ReadState] = []
        # Snapshot being received: ((leader, term, meta), bytes received so far).
        self._incoming_snapshot: tuple[tuple[NodeId, int, SnapshotMeta], bytearray] | None = None
        self._become_follower(self._term, None)
        self._prev_hard_state = self._hard_state()
        self._prev_soft_state = self._soft_state()

    # ------------------------------------------------------------------ observers

    @property
    def id(self) -> NodeId:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> NodeId | None:
        return self._lead

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def voters(self) -> frozenset[NodeId]:
        return frozenset(self._voters)

    @property
    def learners(self) -> frozenset[NodeId]:
        return frozenset(self._learners)

    @property
    def config(self) -> Config:
        return self._cfg

    def status(self) -> Status:
        progress = {nid: pr.view() for nid, pr in self._prs.items()} if self._role is Role.LEADER else {}
        return Status(id=self._id, term=self._term, vote=self._vote, commit=self._log.committed,
                      applied=self._log.applied, last_index=self._log.last_index(), role=self._role,
                      leader_id=self._lead, voters=self.voters, learners=self.learners,
                      lead_transferee=self._lead_transferee, progress=progress)

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self._tick()

    def campaign(self) -> None:
        """Start an election now (tests/tools); honours pre-vote like a timeout would."""
        self._hup(transfer=False)

    def propose(self, data: bytes) -> int:
        """Append `data` as a NORMAL entry; returns its index. Raises NotLeaderError / ProposalDroppedError."""
        return self._propose(EntryType.NORMAL, [data])

    def propose_many(self, datas: Sequence[bytes]) -> int:
        """Append several NORMAL entries at once (all or none); returns the index of the last one."""
        require(len(datas) > 0, "propose_many needs at least one entry")
        return self._propose(EntryType.NORMAL, datas)

    def propose_conf_change(self, cc: ConfChange) -> int:
        self._require_leader()
        if self._pending_conf_index > self._log.applied:
            raise ProposalDroppedError("a configuration change is still pending")
        if cc.type is ConfChangeType.REMOVE_NODE and self._voters == {cc.node_id}:
            raise ProposalDroppedError("cannot remove the last voter")
        index = self._propose(EntryType.CONF_CHANGE, [encode_conf_change(cc)])
        self._pending_conf_index = index
        return index

    def apply_conf_change(self, cc: ConfChange) -> None:
        """The driver applies a committed CONF_CHANGE entry: the new configuration takes effect now (§6)."""
        nid = cc.node_id
        if cc.type is ConfChangeType.ADD_VOTER:
            self._learners.discard(nid)
            self._voters.add(nid)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            if nid not in self._voters:
                self._learners.add(nid)
        else:
            self._voters.discard(nid)
            self._learners.discard(nid)
        require(not (self._voters & self._learners), "a node cannot be both voter and learner")
        self._on_config_changed()

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read; the answer comes as a `ReadState` in a later `Ready`.
        `context` must be non-empty and unique among reads in flight (it is the key heartbeats echo)."""
        if not context:
            raise InvalidRequestError("read_index needs a non-empty context")
        if self._role is Role.LEADER:
            if self._pending_reads() >= self._cfg.max_pending_reads:
                raise ProposalDroppedError("too many pending reads")
            self._handle_read_index(Message(MessageType.READ_INDEX, self._id, self._id, self._term,
                                            context=context))
            return
        if self._lead is None:
            raise NotLeaderError(None)
        self._send(Message(MessageType.READ_INDEX, self._id, self._lead, self._term, context=context))

    def transfer_leadership(self, to: NodeId) -> None:
        """Thesis §3.10: bring `to` up to date, then tell it to campaign at once (TIMEOUT_NOW)."""
        self._require_leader()
        if to not in self._voters:
            return  # learners and strangers cannot lead
        if self._lead_transferee is not None:
            if self._lead_transferee == to:
                return
            self._abort_leader_transfer()
        if to == self._id:
            return
        # The transfer must finish within one election timeout (checked in _tick_heartbeat).
        self._election_elapsed = 0
        self._lead_transferee = to
        pr = self._prs[to]
        if pr.match == self._log.last_index():
            self._send_timeout_now(to)
        else:
            self._send_append(to)

    def reset_progress(self, peer: NodeId) -> None:
        """Leader only: forget what we know of `peer`'s log and probe it again, as a new leader would (§5.3:
        nextIndex = last + 1, matchIndex = 0). For a peer that restarted without its data: its rejections at or
        below the old match would otherwise be taken as stale forever. Lowering match never advances commit."""
        self._require_leader()
        pr = self._prs.get(peer)
        if pr is None or peer == self._id:
            return
        pr.match = 0
        pr.become_probe()
        pr.next = self._log.last_index() + 1

    def step(self, msg: Message) -> None:
        if msg.to != self._id:
            return
        if msg.term > self._term:
            if msg.type in (MessageType.VOTE, MessageType.PRE_VOTE):
                force = msg.context == TRANSFER_CONTEXT
                in_lease = (self._cfg.check_quorum and self._lead is not None
                            and self._election_elapsed < self._cfg.election_ticks)
                if in_lease and not force:
                    # Leader lease: we heard from a live leader within the minimum election timeout, so this
                    # candidate is probably partitioned from it; do not let it disrupt the cluster (thesis §4.2.3).
                    return
            if msg.type is MessageType.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif msg.type is MessageType.PRE_VOTE_RESP and not msg.reject:
                pass  # granted pre-votes carry the future term; we bump it ourselves when we win
            elif msg.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT):
                self._become_follower(msg.term, msg.from_id)
            else:
                self._become_follower(msg.term, None)
        elif msg.term < self._term:
            if (self._cfg.check_quorum or self._cfg.pre_vote) and msg.type in (MessageType.HEARTBEAT,
                                                                                MessageType.APPEND):
                # A stale leader (e.g. after a partition) never hears a higher term from us otherwise when we
                # ignore its vote requests (lease / pre-vote): answer so it steps down.
                self._send(Message(MessageType.APPEND_RESP, self._id, msg.from_id, self._term))
            elif msg.type is MessageType.PRE_VOTE:
                self._send(Message(MessageType.PRE_VOTE_RESP, self._id, msg.from_id, self._term, reject=True))
            return

        if msg.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            self._handle_vote_request(msg)
            return
        self._step(msg)

    # ------------------------------------------------------------------ outputs

    def has_ready(self) -> bool:
        # Asked after every step and tick: compare the fields in place rather than build a SoftState and a
        # HardState each time (the same test as `ready()`'s soft != prev and hard != prev).
        soft, hard = self._prev_soft_state, self._prev_hard_state
        return bool(
            self._bcast_pending
            or self._msgs
            or self._log.unstable.entries
            or self._log.unstable.snapshot is not None
            or self._read_states
            or self._lead != soft.leader_id
            or self._role is not soft.role
            or self._term != hard.term
            or self._vote != hard.vote
            or self._log.committed != hard.commit
            or self._log.has_next_committed_entries()
        )

    def ready(self) -> Ready:
        if self._bcast_pending:
            self._bcast_pending = False
            if self._role is Role.LEADER:
                self._bcast_append()
        soft = self._soft_state()
        hard = self._hard_state()
        entries = tuple(self._log.unstable_entries())
        snapshot = self._log.unstable.snapshot
        hard_changed = hard != self._prev_hard_state
        must_sync = bool(entries) or snapshot is not None or (
            hard.term != self._prev_hard_state.term or hard.vote != self._prev_hard_state.vote)
        rd = Ready(
            soft_state=soft if soft != self._prev_soft_state else None,
            hard_state=hard if hard_changed else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=tuple(self._log.next_committed_entries(self._cfg.max_msg_bytes)),
            messages=tuple(self._msgs),
            read_states=tuple(self._read_states),
            must_sync=must_sync,
        )
        self._msgs = []
        self._read_states = []
        self._prev_soft_state = soft
        self._prev_hard_state = hard
        return rd

    def advance(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._log.stable_snap_to(rd.snapshot.meta.index)
            if rd.snapshot.meta.index > self._log.applied:
                self._log.applied = rd.snapshot.meta.index
        if rd.committed_entries:
            self._log.applied_to(rd.committed_entries[-1].index)
            if self._role is Role.LEADER:
                size = sum(map(len, map(_DATA, rd.committed_entries)))
                self._uncommitted_bytes = max(0, self._uncommitted_bytes - size)
        if rd.entries:
            last = rd.entries[-1]
            self._log.stable_to(last.index, last.term)

    # ------------------------------------------------------------------ roles

    def _reset(self, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._lead = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self._lead_transferee = None
        self._votes = {}
        last = self._log.last_index()
        self._prs = {}
        for nid in self._voters | self._learners:
            pr = Progress(0, last + 1, self._cfg.max_inflight_msgs, nid in self._learners)
            if nid == self._id:
                pr.match = last
            self._prs[nid] = pr
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._bcast_pending = False
        self._read_only = _ReadOnly()
        self._pending_read_index = []

    def _become_follower(self, term: int, lead: NodeId | None) -> None:
        self._step = self._step_follower
        self._tick = self._tick_election
        self._reset(term)
        self._lead = lead
        self._role = Role.LEARNER if self._id in self._learners else Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        require(self._role is not Role.LEADER, "leader cannot become pre-candidate")
        # Like etcd: no term change and no vote; only the vote tally and leader are reset.
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._votes = {}
        self._lead = None
        self._role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        require(self._role is not Role.LEADER, "leader cannot become candidate")
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._reset(self._term + 1)
        self._vote = self._id
        self._role = Role.CANDIDATE

    def _become_leader(self) -> None:
        require(self._role is not Role.FOLLOWER and self._role is not Role.LEARNER, "follower cannot lead")
        require(self._promotable(), "only a voter can lead")
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self._reset(self._term)
        self._lead = self._id
        self._role = Role.LEADER
        me = self._prs[self._id]
        me.become_replicate()
        me.recent_active = True
        # §5.4.2 / Figure 8: a no-op of our term lets us commit the entries of earlier terms.
        self._append_entries([Entry(self._term, self._log.last_index() + 1)])
        # No conf change until our no-op is applied: it implies all earlier changes are too, and fixes the
        # single-server membership bug (Ongaro, raft-dev 2015: commit an entry of your term first).
        self._pending_conf_index = self._log.last_index()

    # ------------------------------------------------------------------ time

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_election_timeout:
            self._election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self._cfg.election_ticks:
            self._election_elapsed = 0
            if self._cfg.check_quorum:
                if not self._quorum_active():
                    # Check-quorum: we cannot hear a majority, so a new leader may exist; stop serving.
                    self._become_follower(self._term, None)
                    return
                for nid, pr in self._prs.items():
                    if nid != self._id:
                        pr.recent_active = False
            if self._lead_transferee is not None:
                self._abort_leader_transfer()
        if self._role is not Role.LEADER:
            return
        if self._heartbeat_elapsed >= self._cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat(self._read_only.last_pending_context())

    def _reset_randomized_election_timeout(self) -> None:
        n = self._cfg.election_ticks
        self._randomized_election_timeout = n + self._rng.randrange(0, n)

    # ------------------------------------------------------------------ elections

    def _promotable(self) -> bool:
        return self._id in self._voters

    def _hup(self, transfer: bool) -> None:
        if self._role is Role.LEADER or not self._promotable():
            return
        if self._has_unapplied_conf_change():
            # Our configuration is about to change: campaigning under the old one could split the cluster.
            return
        if self._cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _has_unapplied_conf_change(self) -> bool:
        lo = max(self._log.applied + 1, self._log.first_index())
        hi = self._log.committed + 1
        if lo >= hi or self._log.unstable.snapshot is not None:
            return False
        return any(e.type is EntryType.CONF_CHANGE for e in self._log.slice(lo, hi, 1 << 62))

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            kind = MessageType.PRE_VOTE
            term = self._term + 1
        else:
            self._become_candidate()
            kind = MessageType.VOTE
            term = self._term
        if self._poll(self._id, True) is _VoteResult.WON:
            # Single voter: no one to ask.
            if pre:
                self._campaign(pre=False, transfer=transfer)
            else:
                self._become_leader()
            return
        context = TRANSFER_CONTEXT if transfer else b""
        last_index = self._log.last_index()
        last_term = self._log.last_term()
        for nid in sorted(self._voters):
            if nid != self._id:
                self._send(Message(kind, self._id, nid, term, log_term=last_term, index=last_index,
                                   context=context))

    def _poll(self, nid: NodeId, granted: bool) -> _VoteResult:
        self._votes.setdefault(nid, granted)
        yes = sum(1 for v, g in self._votes.items() if g and v in self._voters)
        no = sum(1 for v, g in self._votes.items() if not g and v in self._voters)
        q = self._quorum()
        if yes >= q:
            return _VoteResult.WON
        if len(self._voters) - no < q:
            return _VoteResult.LOST
        return _VoteResult.PENDING

    def _handle_vote_request(self, m: Message) -> None:
        resp_type = MessageType.VOTE_RESP if m.type is MessageType.VOTE else MessageType.PRE_VOTE_RESP
        can_vote = (
            self._vote == m.from_id
            or (self._vote is None and self._lead is None)
            or (m.type is MessageType.PRE_VOTE and m.term > self._term)
        )
        # A learner answers too: the candidate may already have applied its promotion (etcd does the same);
        # the candidate only counts votes of its own voters.
        if can_vote and self._log.is_up_to_date(m.index, m.log_term):
            # The response carries the request's term so a pre-candidate recognises it.
            self._send(Message(resp_type, self._id, m.from_id, m.term))
            if m.type is MessageType.VOTE:
                self._election_elapsed = 0
                self._vote = m.from_id
        else:
            self._send(Message(resp_type, self._id, m.from_id, self._term, reject=True))

    # ------------------------------------------------------------------ step functions

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is MessageType.APPEND:
            self._election_elapsed = 0
            self._lead = m.from_id
            self._handle_append(m)
        elif t is MessageType.HEARTBEAT:
            self._election_elapsed = 0
            self._lead = m.from_id
            self._handle_heartbeat(m)
        elif t is MessageType.SNAPSHOT:
            self._election_elapsed = 0
            self._lead = m.from_id
            self._handle_snapshot(m)
        elif t is MessageType.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif t is MessageType.READ_INDEX:
            if self._lead is not None:
                self._send(Message(MessageType.READ_INDEX, m.from_id, self._lead, self._term, context=m.context))
        elif t is MessageType.READ_INDEX_RESP:
            self._read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MessageType.PRE_VOTE_RESP if self._role is Role.PRE_CANDIDATE else MessageType.VOTE_RESP
        if t is MessageType.APPEND:
            self._become_follower(m.term, m.from_id)
            self._handle_append(m)
        elif t is MessageType.HEARTBEAT:
            self._become_follower(m.term, m.from_id)
            self._handle_heartbeat(m)
        elif t is MessageType.SNAPSHOT:
            self._become_follower(m.term, m.from_id)
            self._handle_snapshot(m)
        elif t is my_resp:
            result = self._poll(m.from_id, not m.reject)
            if result is _VoteResult.WON:
                if self._role is Role.PRE_CANDIDATE:
                    self._campaign(pre=False, transfer=False)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif result is _VoteResult.LOST:
                self._become_follower(self._term, None)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is MessageType.READ_INDEX:
            if m.context and self._pending_reads() < self._cfg.max_pending_reads:
                self._handle_read_index(m)
            return
        pr = self._prs.get(m.from_id)
        if pr is None:
            return
        if t is MessageType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif t is MessageType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                # The whole window may have been lost (sim finding 1): let one append through; it either fills
                # the gap or is rejected, which sends the follower back to PROBE.
                pr.inflights.free_first_one()
            if pr.state is ProgressState.SNAPSHOT:
                if not pr.snapshot_progressed:
                    self._send_snapshot_chunk(m.from_id, pr)  # no ack for a heartbeat round: the chunk was lost
                pr.snapshot_progressed = False
            elif pr.match < self._log.last_index():
                self._send_append(m.from_id)
            if m.context:
                self._handle_read_ack(m)
        elif t is MessageType.SNAPSHOT_RESP:
            pr.recent_active = True
            if pr.state is ProgressState.SNAPSHOT and m.index == pr.pending_snapshot and pr.snapshot is not None:
                # reject_hint = bytes the follower holds. A rejection means it lost its partial copy (or never
                # got the start): resend from there. Acks only move forward; older duplicates are ignored.
                offset = min(m.reject_hint, len(pr.snapshot.data))
                if m.reject or pr.snapshot_offset < offset < len(pr.snapshot.data):
                    pr.snapshot_offset = offset
                    pr.snapshot_progressed = True
                    self._send_snapshot_chunk(m.from_id, pr)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.hint_term > 0:
                # Skip whole terms the follower does not have (§5.3, the optimization at its end).
                next_probe, _ = self._log.find_conflict_by_term(m.reject_hint, m.hint_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_id)
            return
        if m.index > self._log.last_index():
            return  # acknowledges entries we never sent: a confused peer
        was_paused = pr.is_paused()
        updated = pr.maybe_update(m.index)
        # An ack that does not move `match` still answers a probe or reports an installed snapshot.
        if not updated and not (pr.match == m.index and pr.state is not ProgressState.REPLICATE):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match >= pr.pending_snapshot or pr.match + 1 >= self._log.first_index():
                # Installed (or no longer needed). If we compacted past it meanwhile, the probe's next append
                # finds its entries gone and starts a newer snapshot.
                pr.become_probe()
                if pr.match + 1 >= self._log.first_index():
                    pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if not updated:
            self._send_append(m.from_id)
        elif self._maybe_commit():
            self._release_pending_read_index()
            self._bcast_append()
        elif was_paused:
            self._send_append(m.from_id)
        # Fill the window freed by this acknowledgement.
        while self._maybe_send_append(m.from_id, send_if_empty=False):
            pass
        if m.from_id == self._lead_transferee and pr.match == self._log.last_index():
            self._send_timeout_now(m.from_id)

    # ------------------------------------------------------------------ follower handlers

    def _handle_append(self, m: Message) -> None:
        if not _well_formed_append(m):
            return  # a buggy or corrupt peer: never let it break the log's invariants
        if m.index < self._log.committed:
            self._send(Message(MessageType.APPEND_RESP, self._id, m.from_id, self._term,
                               index=self._log.committed))
            return
        last_new = self._log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(MessageType.APPEND_RESP, self._id, m.from_id, self._term, index=last_new))
            return
        # §5.3 consistency check failed: hint the last index whose term is <= the leader's prev term.
        hint_index, hint_term = self._log.find_conflict_by_term(min(m.index, self._log.last_index()), m.log_term)
        self._send(Message(MessageType.APPEND_RESP, self._id, m.from_id, self._term, index=m.index,
                           reject=True, reject_hint=hint_index, hint_term=hint_term))

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader sends min(match, commit), so a commit beyond our log means its view of us is stale (we
        # restarted with a wiped data dir): take only what we hold, never a commit past our log. The leader
        # re-probes us (reset_progress on reconnection) and sends the rest.
        self._log.commit_to(min(m.commit, self._log.last_index()))
        self._send(Message(MessageType.HEARTBEAT_RESP, self._id, m.from_id, self._term, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        meta, chunk = m.snapshot, m.chunk
        if meta is None or chunk is None:
            return
        if meta.index <= self._log.committed:
            # Already have it (or newer): tell the leader where we are.
            self._incoming_snapshot = None
            self._send(Message(MessageType.APPEND_RESP, self._id, m.from_id, self._term,
                               index=self._log.committed))
            return
        # Chunks are only stitched together within one transfer: same leader, same term, same snapshot.
        key = (m.from_id, m.term, meta)
        current = self._incoming_snapshot
        if chunk.offset == 0 and (current is None or current[0] != key):
            current = (key, bytearray())
        if current is None or current[0] != key or chunk.offset > len(current[1]):
            # A chunk of a transfer we are not assembling, or a gap: ask for the start of what we lack.
            have = len(current[1]) if current is not None and current[0] == key else 0
            self._send(Message(MessageType.SNAPSHOT_RESP, self._id, m.from_id, self._term, index=meta.index,
                               reject=True, reject_hint=have))
            return
        buf = current[1]
        if chunk.offset == len(buf):
            buf.extend(chunk.data)
        self._incoming_snapshot = current
        if not (chunk.done and len(buf) == chunk.total_size):
            self._send(Message(MessageType.SNAPSHOT_RESP, self._id, m.from_id, self._term, index=meta.index,
                               reject_hint=len(buf)))
            return
        self._incoming_snapshot = None
        data = bytes(buf)
        buf.clear()  # the assembly buffer goes now, not when this returns: one copy of the state, not two
        # After a restore our log ends at the snapshot; otherwise only the committed prefix is known to match
        # the leader (entries after it may be from another term).
        index = self._log.last_index() if self._restore(Snapshot(meta, data)) else self._log.committed
        self._send(Message(MessageType.APPEND_RESP, self._id, m.from_id, self._term, index=index))

    def _restore(self, snapshot: Snapshot) -> bool:
        """§7: install a snapshot from the leader, unless our log already contains its last entry.
        Says whether it installed it."""
        meta = snapshot.meta
        if self._log.match_term(meta.index, meta.term):
            # Our log has the entry: keep the entries after it, just commit through it.
            self._log.commit_to(meta.index)
            return False
        self._log.restore(snapshot)
        self._voters = set(meta.voters)
        self._learners = set(meta.learners)
        self._role = Role.LEARNER if self._id in self._learners else Role.FOLLOWER
        require(self._log.last_index() == meta.index, "restored log must end at the snapshot")
        return True

    # ------------------------------------------------------------------ leader: sending

    def _send(self, m: Message) -> None:
        self._msgs.append(m)

    def _bcast_append(self) -> None:
        for nid in sorted(self._prs):
            if nid != self._id:
                self._send_append(nid)

    def _send_append(self, to: NodeId) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: NodeId, send_if_empty: bool) -> bool:
        """Send `to` the entries from its next index (or a snapshot if they are compacted). Says if it sent."""
        pr = self._prs[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self._log.term(prev_index)
        ents = self._log.entries_from(pr.next, self._cfg.max_msg_bytes) if prev_term is not None else None
        if prev_term is None or ents is None:
            return self._start_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(Message(MessageType.APPEND, self._id, to, self._term, log_term=prev_term, index=prev_index,
                           entries=tuple(ents), commit=self._log.committed))
        pr.sent_entries(len(ents), ents[-1].index if ents else prev_index)
        return True

    def _start_snapshot(self, to: NodeId, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not ship a large snapshot to a node that may be down
        snapshot = self._storage.snapshot()
        require(snapshot.meta.index >= self._log.first_index() - 1, "storage snapshot is older than its log")
        pr.become_snapshot(snapshot)
        self._send_snapshot_chunk(to, pr)
        return True

    def _send_snapshot_chunk(self, to: NodeId, pr: Progress) -> None:
        snapshot = pr.snapshot
        require(snapshot is not None, "snapshot state without a snapshot")
        assert snapshot is not None
        total = len(snapshot.data)
        offset = pr.snapshot_offset
        data = snapshot.data[offset:offset + self._cfg.max_snapshot_chunk_bytes]
        chunk = SnapshotChunk(offset=offset, data=data, done=offset + len(data) >= total, total_size=total)
        self._send(Message(MessageType.SNAPSHOT, self._id, to, self._term, log_term=snapshot.meta.term,
                           index=snapshot.meta.index, snapshot=snapshot.meta, chunk=chunk))

    def _bcast_heartbeat(self, context: bytes) -> None:
        for nid in sorted(self._prs):
            if nid == self._id:
                continue
            pr = self._prs[nid]
            # Never tell a follower to commit past what it is known to hold.
            commit = min(pr.match, self._log.committed)
            self._send(Message(MessageType.HEARTBEAT, self._id, nid, self._term, commit=commit, context=context))

    def _send_timeout_now(self, to: NodeId) -> None:
        self._send(Message(MessageType.TIMEOUT_NOW, self._id, to, self._term))

    def _abort_leader_transfer(self) -> None:
        self._lead_transferee = None

    # ------------------------------------------------------------------ leader: log and commit

    def _require_leader(self) -> None:
        if self._role is not Role.LEADER:
            raise NotLeaderError(self._lead)

    def _propose(self, kind: EntryType, datas: Sequence[bytes]) -> int:
        self._require_leader()
        if self._lead_transferee is not None:
            raise ProposalDroppedError(f"leadership transfer to {self._lead_transferee} in progress")
        if self._id not in self._prs:
            raise ProposalDroppedError("this leader was removed from the configuration")
        size = sum(map(len, datas))
        if self._uncommitted_bytes > 0 and self._uncommitted_bytes + size > self._cfg.max_uncommitted_bytes:
            raise ProposalDroppedError("too many uncommitted bytes")
        self._uncommitted_bytes += size
        first = self._log.last_index() + 1
        n = len(datas)
        # Built in C (no bytecode per entry): a leader proposes thousands of entries per batch.
        self._append_entries(entries_from_columns(repeat(self._term, n), range(first, first + n), repeat(kind, n),
                                                  datas))
        index = first + len(datas) - 1
        # Batching: proposals made before the next ready() leave in one append per follower.
        self._bcast_pending = True
        return index

    def _append_entries(self, ents: list[Entry]) -> None:
        last = self._log.append(ents)
        me = self._prs.get(self._id)
        if me is not None:
            me.maybe_update(last)
        self._maybe_commit()

    def _quorum(self) -> int:
        return len(self._voters) // 2 + 1

    def _maybe_commit(self) -> bool:
        """Advance commit to the highest index a majority of voters hold, if it is of our term (Figure 8)."""
        matches = sorted((self._prs[v].match for v in self._voters if v in self._prs), reverse=True)
        if len(matches) < self._quorum():
            return False
        return self._log.maybe_commit(matches[self._quorum() - 1], self._term)

    def _quorum_active(self) -> bool:
        active = sum(1 for v in self._voters
                     if v == self._id or (v in self._prs and self._prs[v].recent_active))
        return active >= self._quorum()

    def _on_config_changed(self) -> None:
        if self._role is not Role.LEADER:
            if self._role in (Role.FOLLOWER, Role.LEARNER):
                self._role = Role.LEARNER if self._id in self._learners else Role.FOLLOWER
            elif not self._promotable():
                # Removed or demoted mid-campaign: it must not win (and could not lead).
                self._become_follower(self._term, None)
            return
        last = self._log.last_index()
        for nid in self._voters | self._learners:
            if nid not in self._prs:
                self._prs[nid] = Progress(0, last + 1, self._cfg.max_inflight_msgs, nid in self._learners)
            self._prs[nid].is_learner = nid in self._learners
        for nid in list(self._prs):
            if nid not in self._voters and nid not in self._learners:
                del self._prs[nid]
        if self._lead_transferee is not None and self._lead_transferee not in self._voters:
            self._abort_leader_transfer()
        if self._id not in self._voters:
            # Removed (or never a voter): the rest elect a new leader among themselves.
            self._become_follower(self._term, None)
            return
        if self._maybe_commit():
            self._release_pending_read_index()
        self._bcast_append()

    # ------------------------------------------------------------------ ReadIndex

    def _pending_reads(self) -> int:
        return len(self._pending_read_index) + len(self._read_only.queue)

    def _committed_entry_in_current_term(self) -> bool:
        return self._log.term(self._log.committed) == self._term

    def _handle_read_index(self, m: Message) -> None:
        if self._voters == {self._id}:
            self._respond_read_index(m.from_id, m.context, self._log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Our commit index may lag the true one until our no-op commits (thesis §6.4 step 1).
            self._pending_read_index.append(m)
            return
        self._read_only.add_request(self._log.committed, m.from_id, m.context)
        self._read_only.recv_ack(self._id, m.context)
        self._bcast_heartbeat(m.context)

    def _release_pending_read_index(self) -> None:
        if not self._committed_entry_in_current_term():
            return
        pending, self._pending_read_index = self._pending_read_index, []
        for m in pending:
            self._handle_read_index(m)

    def _handle_read_ack(self, m: Message) -> None:
        acks = self._read_only.recv_ack(m.from_id, m.context)
        if acks is None or len(acks & self._voters) < self._quorum():
            return
        for req in self._read_only.advance(m.context):
            self._respond_read_index(req.from_id, req.context, req.index)

    def _respond_read_index(self, to: NodeId, context: bytes, index: int) -> None:
        if to == self._id:
            self._read_states.append(ReadState(index, context))
        else:
            self._send(Message(MessageType.READ_INDEX_RESP, self._id, to, self._term, index=index,
                               context=context))

    # ------------------------------------------------------------------ state snapshots

    def _hard_state(self) -> HardState:
        return HardState(term=self._term, vote=self._vote, commit=self._log.committed)

    def _soft_state(self) -> SoftState:
        return SoftState(leader_id=self._lead, role=self._role)


def _well_formed_append(m: Message) -> bool:
    """Entries follow prevLogIndex contiguously, with terms that never decrease and never exceed the leader's.
    (C-level passes over the batch: a follower checks thousands of entries per message.)"""
    if m.log_term > m.term:
        return False
    if not m.entries:
        return True
    terms, indexes, _, _ = entry_columns(m.entries)
    return (m.log_term <= terms[0] and terms[-1] <= m.term and all(map(le, terms, islice(terms, 1, None)))
            and indexes == tuple(range(m.index + 1, m.index + 1 + len(indexes))))
