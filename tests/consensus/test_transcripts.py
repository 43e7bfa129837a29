"""Scripted interaction transcripts (etcd-io/raft's datadriven tests): each file in transcripts/ holds commands
(lines starting with "> ") followed by the output they must produce — every message delivered and any status
asked for. Regenerate after an intended behaviour change with `UPDATE_TRANSCRIPTS=1 pytest <this file>` and
review the diff.

Commands: `nodes a b c [key=value ...]`, `campaign X`, `propose X DATA`, `transfer X Y`, `read X CTX`,
`tick X N` / `tick all N`, `deliver`, `isolate X`, `cut X Y`, `recover`, `status X`, `log X`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consensus.messages import Message, MessageType
from tests.consensus.harness import Network

DIR = Path(__file__).parent / "transcripts"


def fmt(m: Message) -> str:
    parts = [f"{m.from_id}->{m.to} {m.type.name} t{m.term}"]
    if m.type in (MessageType.APPEND, MessageType.VOTE, MessageType.PRE_VOTE):
        parts.append(f"prev={m.index}/{m.log_term}" if m.type is MessageType.APPEND else f"last={m.index}/{m.log_term}")
    if m.entries:
        parts.append("[" + " ".join(f"{e.index}/{e.term}:{e.data.decode() or '-'}" for e in m.entries) + "]")
    if m.type in (MessageType.APPEND, MessageType.HEARTBEAT):
        parts.append(f"commit={m.commit}")
    if m.type in (MessageType.APPEND_RESP, MessageType.READ_INDEX_RESP) and not m.reject:
        parts.append(f"index={m.index}")
    if m.reject:
        parts.append(f"REJECT hint={m.reject_hint}/{m.hint_term}")
    if m.context:
        parts.append(f"ctx={m.context.decode()}")
    return " ".join(parts)


class Runner:
    def __init__(self) -> None:
        self.net: Network | None = None

    def run(self, cmd: str) -> list[str]:
        words = cmd.split()
        op, args = words[0], words[1:]
        if op == "nodes":
            ids = [a for a in args if "=" not in a]
            kw = {k: (v == "true" if v in ("true", "false") else int(v))
                  for k, v in (a.split("=") for a in args if "=" in a)}
            self.net = Network(ids, **kw)
            return []
        net = self.net
        assert net is not None, "first command must be `nodes`"
        if op == "campaign":
            net.core(args[0]).campaign()
        elif op == "propose":
            net.core(args[0]).propose(args[1].encode())
        elif op == "transfer":
            net.core(args[0]).transfer_leadership(args[1])
        elif op == "read":
            net.core(args[0]).read_index(args[1].encode())
        elif op == "tick":
            targets = list(net.nodes) if args[0] == "all" else [args[0]]
            for _ in range(int(args[1])):
                for t in targets:
                    net.core(t).tick()
        elif op == "deliver":
            return self.deliver()
        elif op == "isolate":
            net.isolate(args[0])
        elif op == "cut":
            net.cut(args[0], args[1])
        elif op == "recover":
            net.recover()
        elif op == "status":
            s = net.core(args[0]).status()
            return [f"{s.id}: {s.role.value} term={s.term} vote={s.vote} lead={s.leader_id} commit={s.commit} "
                    f"applied={s.applied} last={s.last_index}"
                    + "".join(f" | {nid}:{p.state.value} m={p.match_index} n={p.next_index}"
                              for nid, p in sorted(s.progress.items()))]
        elif op == "log":
            core = net.core(args[0])
            terms = [core._log.term(i) for i in range(1, core.last_index + 1)]
            rs = net.nodes[args[0]].read_states
            return [f"{args[0]}: terms={terms} applied={net.applied_data(args[0])}"
                    + (f" reads={[(r.index, r.context.decode()) for r in rs]}" if rs else "")]
        else:
            raise ValueError(f"unknown command {op!r}")
        return []

    def deliver(self) -> list[str]:
        net = self.net
        assert net is not None
        out: list[str] = []
        for _ in range(10_000):
            net.flush()
            if not net.queue:
                return out
            batch, net.queue = net.queue, []
            for m in batch:
                if net._lost(m):
                    out.append(f"  (dropped) {fmt(m)}")
                    continue
                out.append(f"  {fmt(m)}")
                net.core(m.to).step(m)
        raise AssertionError("did not go quiet")


def render(path: Path) -> tuple[str, str]:
    runner = Runner()
    out: list[str] = []
    for line in path.read_text().splitlines():
        # Comments and commands are the script; every other line is output and gets regenerated.
        if line.startswith("#"):
            out.append(line)
        elif line.startswith("> "):
            out.append(line)
            out.extend(runner.run(line[2:]))
    return path.read_text(), "\n".join(out) + "\n"


@pytest.mark.parametrize("path", sorted(DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    expected, got = render(path)
    if os.environ.get("UPDATE_TRANSCRIPTS"):
        path.write_text(got)
        return
    assert got == expected, f"{path.name} differs; rerun with UPDATE_TRANSCRIPTS=1 and review the diff"
