"""Driver and printer for the interaction transcripts (tests/consensus/transcripts/*.txt).

A transcript is a script — `# comment` lines, `> command` lines and blank lines — interleaved with the output
each command produced. `render(script)` runs the commands against a `TranscriptNetwork` (the harness'
in-memory network of `Raft` cores over `MemoryStorage`, seeded rngs, every message round-tripped through the
codec) and returns the script with freshly produced output, so that the stored file is the expected result.

Every Ready a node hands out is printed whole, in the driver-contract order of consensus/ready.py:

    a: Ready must_sync=true
      soft: role=leader lead=a                   (only when role or leader changed)
      hard: term=1 vote=a commit=0               (only when it changed)
      entries:                                   (to persist; index/term type data)
        1/1 NORMAL ""
      snapshot: 5/1 voters=a,b,c learners=- data="..."
      committed:                                 (to apply)
        1/1 NORMAL ""
      messages:
        a->b APPEND term=1 index=0 logterm=0 commit=0 entries=[1/1 NORMAL ""]
      read states:
        index=2 ctx="r1"
      applied conf change add_learner d: voters=a,b,c learners=d    (what the driver did with it)

A delivery round prints one (wrapped) line, `deliver: a->b APPEND, a->c APPEND (dropped)`; the messages were
printed in full in the Ready that sent them, in that order.

Commands:
  nodes a b c [learners=d,e] [seed=N] [key=value ...]   a cluster; other keys are Config fields
  add-node d                  a new node with an empty log, booted with the cluster's initial configuration
  campaign X                  X starts an election now (pre-vote first when enabled)
  propose X DATA              a NORMAL entry (prints its index)
  propose-conf X add-voter|add-learner|remove Y
  transfer X Y                X hands leadership to Y
  read X CTX                  a ReadIndex request
  tick X N | tick all N       N ticks, no Ready handled in between
  compact X INDEX             X's application snapshots its state at INDEX (must be applied) and drops the log
  process-ready X [Y ...]     handle one Ready of each (or say there is none)
  deliver-msgs [X ...]        deliver the queued messages addressed to X... (all if none), handling no Ready
  stabilize                   handle Readies and deliver messages until no node has either
  isolate X | cut X Y | recover
  status X | log X
A command the core refuses (a RaftError) prints `error: <code>: <message>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from consensus.codec import decode_message, encode_message
from consensus.errors import RaftError
from consensus.membership import ConfChange, ConfChangeType, decode_conf_change
from consensus.messages import Entry, EntryType, Message, MessageType, NodeId, Snapshot, SnapshotMeta
from consensus.ready import Ready
from consensus.storage import MemoryStorage
from tests.consensus.harness import Network

STABILIZE_ROUNDS_MAX = 1_000
"""Delivery rounds `stabilize` runs before declaring the cluster unable to go quiet."""
DATA_SHOWN_BYTES_MAX = 24
"""Entry and snapshot data longer than this is cut in the output (its length is always shown)."""
LINE_CHARS_MAX = 116
"""A delivery line wraps after this many characters."""

_CONF_CHANGE_BY_WORD = {"add-voter": ConfChangeType.ADD_VOTER, "add-learner": ConfChangeType.ADD_LEARNER,
                        "remove": ConfChangeType.REMOVE_NODE}
_PREV_TYPES = (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE)
"""Types whose index/log_term name a log position (prevLog, or the candidate's lastLog)."""
_INDEX_TYPES = (MessageType.APPEND_RESP, MessageType.SNAPSHOT_RESP, MessageType.READ_INDEX_RESP)
_COMMIT_TYPES = (MessageType.APPEND, MessageType.HEARTBEAT)


# ---------------------------------------------------------------------------------------------- printing


def format_data(data: bytes) -> str:
    """Printable ASCII in quotes (cut after DATA_SHOWN_BYTES_MAX), anything else as length and hex prefix."""
    shown = data[:DATA_SHOWN_BYTES_MAX]
    more = f"...({len(data)} bytes)" if len(data) > len(shown) else ""
    if all(32 <= b < 127 and b not in b'"\\' for b in shown):
        return f'"{shown.decode()}"{more}'
    return f"<{len(data)} bytes 0x{shown.hex()}{'...' if more else ''}>"


def _snapshot_bytes(snapshot: Snapshot) -> bytes:
    return snapshot.data[0:len(snapshot.data)]  # bytes, or a storage's lighter SnapshotBytes


def format_entry(e: Entry) -> str:
    if e.type is EntryType.CONF_CHANGE:
        cc = decode_conf_change(e.data)
        return f"{e.index}/{e.term} CONF {cc.type.name.lower()} {cc.node_id}"
    return f"{e.index}/{e.term} {e.type.name} {format_data(e.data)}"


def _members(ids: Iterable[NodeId]) -> str:
    return ",".join(sorted(ids)) or "-"


def format_snapshot_meta(meta: SnapshotMeta) -> str:
    return f"{meta.index}/{meta.term} voters={_members(meta.voters)} learners={_members(meta.learners)}"


def format_message(m: Message) -> str:
    """from->to TYPE term=..., then the fields that matter for the type, then any other field that is set
    (so nothing a message carries goes unseen)."""
    parts = [f"{m.from_id}->{m.to} {m.type.name} term={m.term}"]
    # A SNAPSHOT's index/log_term repeat its snapshot meta, printed below.
    shown = {"index", "log_term"} if m.type is MessageType.SNAPSHOT else set()
    if m.type in _PREV_TYPES:
        parts.append(f"index={m.index} logterm={m.log_term}")
        shown |= {"index", "log_term"}
    elif m.type in _INDEX_TYPES:
        parts.append(f"index={m.index}")
        shown.add("index")
    if m.type in _COMMIT_TYPES:
        parts.append(f"commit={m.commit}")
        shown.add("commit")
    if m.entries:
        parts.append("entries=[" + ", ".join(map(format_entry, m.entries)) + "]")
    if m.type is MessageType.SNAPSHOT_RESP:
        parts.append(f"have={m.reject_hint}")  # bytes of the snapshot the follower holds
        shown.add("reject_hint")
    if m.reject:
        parts.append("REJECT")
        if m.type is MessageType.APPEND_RESP:
            parts.append(f"hint={m.reject_hint}/{m.hint_term}")
            shown |= {"reject_hint", "hint_term"}
    for name in ("index", "log_term", "commit", "reject_hint", "hint_term"):
        if name not in shown and getattr(m, name):
            parts.append(f"{name}={getattr(m, name)}")
    if m.context:
        parts.append(f"ctx={format_data(m.context)}")
    if m.snapshot is not None:
        parts.append(f"snapshot={format_snapshot_meta(m.snapshot)}")
    if m.chunk is not None:
        c = m.chunk
        parts.append(f"chunk=[{c.offset},{c.offset + len(c.data)})/{c.total_size}{' done' if c.done else ''}")
    if m.extra:
        parts.append(f"extra={sorted(m.extra.items())}")
    return " ".join(parts)


def format_ready(nid: NodeId, rd: Ready) -> list[str]:
    out = [f"{nid}: Ready must_sync={str(rd.must_sync).lower()}"]
    if rd.soft_state is not None:
        out.append(f"  soft: role={rd.soft_state.role.value} lead={rd.soft_state.leader_id or '-'}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        out.append(f"  hard: term={hs.term} vote={hs.vote or '-'} commit={hs.commit}")
    if rd.entries:
        out.append("  entries:")
        out.extend(f"    {format_entry(e)}" for e in rd.entries)
    if rd.snapshot is not None:
        snap = rd.snapshot
        out.append(f"  snapshot: {format_snapshot_meta(snap.meta)} data={format_data(_snapshot_bytes(snap))}")
    if rd.committed_entries:
        out.append("  committed:")
        out.extend(f"    {format_entry(e)}" for e in rd.committed_entries)
    if rd.messages:
        out.append("  messages:")
        out.extend(f"    {format_message(m)}" for m in rd.messages)
    if rd.read_states:
        out.append("  read states:")
        out.extend(f"    index={r.index} ctx={format_data(r.context)}" for r in rd.read_states)
    return out


def wrap(head: str, items: list[str]) -> list[str]:
    """`head item, item, ...` over as many lines as needed, continuation lines indented."""
    lines: list[str] = []
    line = head
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > LINE_CHARS_MAX and line.strip():
            lines.append(line)
            line = "  "
        line = f"{line} {piece}" if line.strip() else f"{line}{piece}"
    lines.append(line)
    return lines


# ---------------------------------------------------------------------------------------------- driving


class TranscriptNetwork(Network):
    """The harness network, printing every Ready it handles and every delivery round into `out`."""

    def __init__(self, ids: Iterable[NodeId], **kw: int | bool | tuple[NodeId, ...]) -> None:
        self.out: list[str] = []
        super().__init__(ids, **kw)  # type: ignore[arg-type]

    def process_ready(self, nid: NodeId) -> bool:
        """One Ready, handled in the order of consensus/ready.py's driver contract."""
        node = self.nodes[nid]
        core = node.core
        if not core.has_ready():
            return False
        rd = core.ready()
        self.out.extend(format_ready(nid, rd))
        node.storage.save(rd.hard_state, rd.entries, rd.snapshot, rd.must_sync)
        for m in rd.messages:
            self.sent.append(m)
            self.queue.append(m)
        if rd.snapshot is not None:
            node.snapshots_installed += 1
            node.applied = [e for e in node.applied if e.index <= rd.snapshot.meta.index]
            self.out.append(f"  installed snapshot {rd.snapshot.meta.index}/{rd.snapshot.meta.term}")
        for e in rd.committed_entries:
            node.applied.append(e)
            if e.type is EntryType.CONF_CHANGE:
                cc = decode_conf_change(e.data)
                core.apply_conf_change(cc)
                self.out.append(f"  applied conf change {cc.type.name.lower()} {cc.node_id}: "
                                f"voters={_members(core.voters)} learners={_members(core.learners)}")
        node.read_states.extend(rd.read_states)
        core.advance(rd)
        return True

    def deliver_round(self, to: set[NodeId] | None = None) -> None:
        """Deliver the queued messages (those addressed to `to`, if given) in the order they were sent."""
        batch = [m for m in self.queue if to is None or m.to in to]
        self.queue = [m for m in self.queue if not (to is None or m.to in to)]
        if not batch:
            return
        items: list[str] = []
        for m in batch:
            label = f"{m.from_id}->{m.to} {m.type.name}"
            if self._lost(m):
                items.append(f"{label} (dropped)")
                continue
            items.append(label)
            if self.wire:
                m = decode_message(encode_message(m))
            self.nodes[m.to].core.step(m)
        self.out.extend(wrap("deliver:", items))

    def stabilize(self) -> None:
        for _ in range(STABILIZE_ROUNDS_MAX):
            self.flush()
            if not self.queue:
                return
            self.deliver_round()
        raise AssertionError("the cluster did not go quiet")


def _parse_nodes(args: list[str]) -> TranscriptNetwork:
    ids = [a for a in args if "=" not in a]
    kw: dict[str, int | bool | tuple[NodeId, ...]] = {}
    for key, value in (a.split("=", 1) for a in args if "=" in a):
        if key == "learners":
            kw[key] = tuple(value.split(","))
        elif value in ("true", "false"):
            kw[key] = value == "true"
        else:
            kw[key] = int(value)
    return TranscriptNetwork(ids, **kw)


class Runner:
    """Runs transcript commands one at a time; each returns the lines it printed."""

    def __init__(self) -> None:
        self._net: TranscriptNetwork | None = None
        self._commands: dict[str, Callable[[TranscriptNetwork, list[str]], None]] = {
            "add-node": self._add_node, "campaign": lambda n, a: n.core(a[0]).campaign(),
            "propose": lambda n, a: self._print_index(n.core(a[0]).propose(a[1].encode())),
            "propose-conf": self._propose_conf,
            "transfer": lambda n, a: n.core(a[0]).transfer_leadership(a[1]),
            "read": lambda n, a: n.core(a[0]).read_index(a[1].encode()), "tick": self._tick,
            "compact": self._compact, "process-ready": self._process_ready,
            "deliver-msgs": lambda n, a: n.deliver_round(set(a) if a else None),
            "stabilize": lambda n, a: n.stabilize(), "isolate": lambda n, a: n.isolate(a[0]),
            "cut": lambda n, a: n.cut(a[0], a[1]), "recover": lambda n, a: n.recover(),
            "status": self._status, "log": self._log,
        }

    def run(self, cmd: str) -> list[str]:
        op, *args = cmd.split()
        if op == "nodes":
            self._net = _parse_nodes(args)
            return []
        net = self._net
        assert net is not None, "the first command must be `nodes`"
        if op not in self._commands:
            raise ValueError(f"unknown command {op!r}")
        net.out = []
        try:
            self._commands[op](net, args)
        except RaftError as e:
            net.out.append(f"error: {e.code}: {e}")
        return net.out

    def _print_index(self, index: int) -> None:
        assert self._net is not None
        self._net.out.append(f"index={index}")

    def _add_node(self, net: TranscriptNetwork, args: list[str]) -> None:
        net.add_node(args[0], MemoryStorage(tuple(net.ids), tuple(net.learners)))

    def _propose_conf(self, net: TranscriptNetwork, args: list[str]) -> None:
        cc = ConfChange(_CONF_CHANGE_BY_WORD[args[1]], args[2])
        self._print_index(net.core(args[0]).propose_conf_change(cc))

    def _tick(self, net: TranscriptNetwork, args: list[str]) -> None:
        targets = list(net.nodes) if args[0] == "all" else [args[0]]
        for _ in range(int(args[1])):
            for t in targets:
                net.core(t).tick()

    def _compact(self, net: TranscriptNetwork, args: list[str]) -> None:
        nid, index = args[0], int(args[1])
        node = net.nodes[nid]
        core = node.core
        assert index <= core.applied_index, f"compact {nid} to {index}: only {core.applied_index} applied"
        # The application's state at `index`: the data of the entries it applied, in order.
        data = b",".join(e.data for e in node.applied
                         if e.index <= index and e.type is EntryType.NORMAL and e.data)
        meta = SnapshotMeta(index=index, term=node.storage.term(index), voters=tuple(sorted(core.voters)),
                            learners=tuple(sorted(core.learners)))
        node.storage.compact(Snapshot(meta, data))
        net.out.append(f"{nid}: snapshot {format_snapshot_meta(meta)} data={format_data(data)}; "
                       f"log first_index={node.storage.first_index()} last_index={node.storage.last_index()}")

    def _process_ready(self, net: TranscriptNetwork, args: list[str]) -> None:
        for nid in args:
            if not net.process_ready(nid):
                net.out.append(f"{nid}: no Ready")

    def _status(self, net: TranscriptNetwork, args: list[str]) -> None:
        s = net.core(args[0]).status()
        net.out.append(
            f"{s.id}: {s.role.value} term={s.term} vote={s.vote} lead={s.leader_id} commit={s.commit} "
            f"applied={s.applied} last={s.last_index}"
            + "".join(f" | {nid}:{p.state.value} m={p.match_index} n={p.next_index}"
                      + (" learner" if p.is_learner else "")
                      for nid, p in sorted(s.progress.items())))

    def _log(self, net: TranscriptNetwork, args: list[str]) -> None:
        nid = args[0]
        node = net.nodes[nid]
        storage = node.storage
        first = storage.first_index()
        snap = storage.snapshot()
        terms = [storage.term(i) for i in range(first, storage.last_index() + 1)]
        reads = node.read_states
        compacted = f"snapshot={snap.meta.index}/{snap.meta.term} data={format_data(_snapshot_bytes(snap))} "
        net.out.append(
            f"{nid}: " + (compacted if first > 1 else "")
            + f"terms={terms} applied={net.applied_data(nid)}"
            + (f" reads={[(r.index, r.context.decode()) for r in reads]}" if reads else ""))


def render(script: str) -> str:
    """The script with each command's output regenerated (comments, commands and blank lines are kept)."""
    runner = Runner()
    out: list[str] = []
    for line in script.splitlines():
        if line.startswith("> "):
            out.append(line)
            out.extend(runner.run(line[2:]))
        elif line.startswith("#") or not line.strip():
            out.append(line)
    return "\n".join(out) + "\n"
