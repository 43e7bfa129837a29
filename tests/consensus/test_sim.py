"""The deterministic simulator: determinism, fault coverage, and checkers that catch planted bugs."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import ready_loop
from consensus.config import Config
from consensus.messages import Entry, EntryType, Message, MessageType
from consensus.raft import Raft
from consensus.ready import HardState, ReadState, Ready, Role
from consensus.sim import __main__ as sim_main
from consensus.sim.checkers import Checker, SafetyViolation
from consensus.sim.network import PARTITION_KINDS, cut_links
from consensus.sim.simulation import FAULT_KINDS, Failure, RunStats, SimConfig, Simulation, run_seed
from consensus.sim.storage import SimStorage

ROOT = Path(__file__).resolve().parents[2]
ALL = frozenset(FAULT_KINDS)


def run_ok(cfg: SimConfig) -> RunStats:
    stats, failure = run_seed(cfg)
    assert failure is None, f"{failure.prop}: {failure.detail}\nreplay: {failure.replay}\n" + "\n".join(
        failure.recent[-30:])
    return stats


# -- determinism -----------------------------------------------------------------------------------------------

def test_same_seed_replays_bit_for_bit() -> None:
    cfg = SimConfig(seed=7, nodes=5, steps=4000)
    a, b = run_ok(cfg), run_ok(cfg)
    assert a.trace_hash == b.trace_hash and a == b
    assert run_ok(dataclasses.replace(cfg, seed=8)).trace_hash != a.trace_hash


def test_replay_command_reproduces_the_run_in_other_processes() -> None:
    """The printed replay command (tuning overrides included) reruns the same trace, whatever the process's
    PYTHONHASHSEED (set iteration order changes with it: the simulator must not depend on it)."""
    cfg = SimConfig(seed=3, nodes=5, steps=3000, crash_permille=60, restart_ms_max=200)
    expected = run_ok(cfg).trace_hash
    argv = cfg.replay_command().split()[1:]
    assert "--set" in argv
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-m", "consensus.sim", *argv], cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
                             timeout=120, check=True)
        assert out.stderr.split("trace ")[1].split()[0] == expected
        assert json.loads(out.stdout.strip().splitlines()[-1])["violations"] == 0


# -- many seeds, every fault ----------------------------------------------------------------------------------

@pytest.mark.parametrize("nodes", [3, 5])
def test_thirty_seeds_with_all_faults(nodes: int) -> None:
    total: dict[str, int] = {}
    for seed in range(1, 31):
        stats = run_ok(SimConfig(seed=seed, nodes=nodes, steps=5000))
        for k, v in dataclasses.asdict(stats).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    # Every fault and every workload actually happened: a silent no-op simulator would fail here.
    for k in ("elections", "committed", "crashes", "lost_writes", "partitions", "dropped", "duplicated",
              "reads", "conf_changes", "transfers", "compactions", "snapshots_installed"):
        assert total[k] > 0, k
    # The node's early send runs here too, and crashes strike between it and the leader's write.
    for k in ("early_sends", "crashes_in_write", "crashes_after_early_send"):
        assert total[k] > 0, k


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(1, 2**32), nodes=st.integers(1, 5), faults=st.sets(st.sampled_from(FAULT_KINDS)),
       steps=st.integers(200, 2500), crash=st.integers(0, 200), partition=st.integers(0, 100),
       conf=st.integers(0, 100))
def test_random_fault_schedules_keep_raft_safe(seed: int, nodes: int, faults: set[str], steps: int,
                                               crash: int, partition: int, conf: int) -> None:
    run_ok(SimConfig(seed=seed, nodes=nodes, faults=frozenset(faults), steps=steps, crash_permille=crash,
                     partition_permille=partition, conf_change_permille=conf))


def test_persistence_across_crashes() -> None:
    """Crash-heavy runs lose unsynced writes; restarts must never forget a term, a vote or a committed entry."""
    lost = crashes = 0
    for seed in range(1, 11):
        stats = run_ok(SimConfig(seed=seed, nodes=3, faults=frozenset({"crash"}), steps=4000, crash_permille=120,
                                 crash_leader_permille=300, compact_permille=80))
        lost += stats.lost_writes
        crashes += stats.crashes
    assert crashes > 100 and lost > 0


def test_figure_8_unreliable() -> None:
    """The MIT 6.824 "Figure 8 (unreliable)" scenario: leaders crash often on a lossy, reordering network, so
    entries of old terms are replicated but not committed and later overwritten (Raft paper, Figure 8)."""
    elections = committed = 0
    for seed in range(1, 11):
        stats = run_ok(SimConfig(seed=seed, nodes=5, steps=5000, crash_permille=60, crash_leader_permille=900,
                                 propose_permille=700, partition_permille=5, latency_ms_max=30))
        elections += stats.elections
        committed += stats.committed
    assert elections > 50 and committed > 100


def test_membership_churn() -> None:
    changes = 0
    for seed in range(1, 11):
        stats = run_ok(SimConfig(seed=seed, nodes=3, steps=5000, conf_change_permille=150, extra_nodes_max=6,
                                 crash_permille=10, compact_permille=100))
        changes += stats.conf_changes
    assert changes > 50


@pytest.mark.soak
def test_soak_thousands_of_seeds() -> None:
    for nodes in (3, 5, 7):
        for seed in range(1, 1001):
            run_ok(SimConfig(seed=seed * 7919 + nodes, nodes=nodes))


# -- the checkers catch planted bugs --------------------------------------------------------------------------

class PlantedCore:
    """A real Raft whose Ready is tampered with by `mutate` before the driver sees it."""

    def __init__(self, config: Config, storage: SimStorage, rng: random.Random, mutate: Any) -> None:
        self._core = Raft(config, storage, rng)
        self._mutate = mutate
        self._real: dict[int, Ready] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def ready(self) -> Ready:
        real = self._core.ready()
        fake = self._mutate(self._core, real)
        self._real[id(fake)] = real
        return fake

    def advance(self, rd: Ready) -> None:
        self._core.advance(self._real.pop(id(rd)))


def planted(mutate: Any) -> Any:
    return lambda config, storage, rng: PlantedCore(config, storage, rng, mutate)


def first_failure(cfg: SimConfig, factory: Any, seeds: range) -> Failure:
    for seed in seeds:
        _, failure = run_seed(dataclasses.replace(cfg, seed=seed), core_factory=factory)
        if failure is not None:
            return failure
    raise AssertionError("the planted bug went unnoticed")


def test_planted_log_matching_bug_is_caught() -> None:
    """Follower n2 writes a different payload than the leader sent: same (index, term), different entry."""
    def corrupt(core: Raft, rd: Ready) -> Ready:
        if core.id != "n2" or not rd.entries:
            return rd
        return dataclasses.replace(rd, entries=tuple(
            dataclasses.replace(e, data=e.data + b"!") if e.data.startswith(b"w") else e for e in rd.entries))

    failure = first_failure(SimConfig(seed=0, nodes=3, faults=frozenset(), steps=2000), planted(corrupt),
                            range(1, 4))
    assert failure.prop == "log_matching"
    assert failure.replay.startswith("./scripts/simulate --seed ")


def test_planted_unsynced_persistence_bug_is_caught() -> None:
    """A core that never asks for fsync: crashes lose votes and acknowledged entries."""
    def never_sync(core: Raft, rd: Ready) -> Ready:
        return dataclasses.replace(rd, must_sync=False)

    cfg = SimConfig(seed=0, nodes=3, faults=frozenset({"crash"}), steps=4000, crash_permille=150)
    failure = first_failure(cfg, planted(never_sync), range(1, 30))
    assert failure.prop in ("durability", "election_safety", "state_machine_safety", "leader_completeness",
                            "log_matching")


def first_failure_with_rule(monkeypatch: pytest.MonkeyPatch, rule: Any, cfg: SimConfig, seeds: range) -> Failure:
    """Run seeds with `rule` in place of the early-send rule both drivers use."""
    monkeypatch.setattr(ready_loop, "may_send_early", rule)
    return first_failure(cfg, None, seeds)


CRASH_IN_WRITE = SimConfig(seed=0, nodes=3, faults=frozenset({"crash"}), steps=4000, crash_permille=150,
                           crash_in_write_permille=1000)


@pytest.mark.pure_only
def test_planted_early_send_by_anyone_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node sends before its write (votes, term changes and follower acks included): a crash in the
    write then forgets a term or a vote the peers were told, or an entry a follower acknowledged."""
    failure = first_failure_with_rule(monkeypatch, lambda role, rd, persisted: True, CRASH_IN_WRITE,
                                      range(1, 10))
    assert failure.prop in ("durability", "election_safety", "state_machine_safety", "leader_completeness")


@pytest.mark.pure_only
def test_planted_early_send_of_an_own_commit_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule without its commit condition: a lone voter commits an entry at append time and tells its
    learners before the entry is on its own disk; a crash in the write loses a committed entry."""
    def term_and_vote_only(role: Role, rd: Ready, persisted: HardState) -> bool:
        hs = rd.hard_state
        return role is Role.LEADER and (hs is None or (hs.term, hs.vote) == (persisted.term, persisted.vote))

    cfg = dataclasses.replace(CRASH_IN_WRITE, nodes=1, conf_change_permille=150)
    failure = first_failure_with_rule(monkeypatch, term_and_vote_only, cfg, range(1, 60))
    assert failure.prop in ("leader_completeness", "state_machine_safety", "durability", "exception")


def test_the_real_early_send_rule_survives_crashes_in_write() -> None:
    """The same crash-in-write schedules as the planted rules above, with the rule both drivers use."""
    early = after_early = 0
    for seed in range(1, 8):
        for cfg in (CRASH_IN_WRITE, dataclasses.replace(CRASH_IN_WRITE, nodes=1, conf_change_permille=150)):
            stats = run_ok(dataclasses.replace(cfg, seed=seed))
            early += stats.early_sends
            after_early += stats.crashes_after_early_send
    assert early > 0 and after_early > 0


def test_planted_stale_read_is_caught() -> None:
    """ReadIndex answered with a stale index (as if the leader skipped the heartbeat round)."""
    def stale(core: Raft, rd: Ready) -> Ready:
        if not rd.read_states:
            return rd
        return dataclasses.replace(rd, read_states=tuple(ReadState(0, rs.context) for rs in rd.read_states))

    failure = first_failure(SimConfig(seed=0, nodes=3, faults=frozenset(), steps=3000), planted(stale),
                            range(1, 6))
    assert failure.prop == "linearizable_read"


@pytest.mark.pure_only
def test_planted_missing_election_restriction_is_caught_by_random_runs() -> None:
    """Voters that ignore §5.4.1 ("at least as up-to-date") elect leaders that lack committed entries; plain
    random seeds find it. (Reaches into the core's private `_log`: if it is renamed, update this planted bug.)"""
    def no_restriction(config: Config, storage: SimStorage, rng: random.Random) -> Raft:
        core = Raft(config, storage, rng)

        class AnyLogWins(type(core._log)):  # type: ignore[misc]
            __slots__ = ()

            def is_up_to_date(self, last_index: int, term: int) -> bool:
                return True

        core._log.__class__ = AnyLogWins
        return core

    failure = first_failure(SimConfig(seed=0, nodes=5, steps=5000), no_restriction, range(1, 16))
    assert failure.prop == "leader_completeness"


def test_planted_second_leader_is_caught() -> None:
    ck = Checker()
    assert ck.on_leader("n1", 3) and not ck.on_leader("n1", 3)
    with pytest.raises(SafetyViolation, match="election_safety"):
        ck.on_leader("n2", 3)


def test_log_matching_checker_on_divergent_logs() -> None:
    ck = Checker()
    ck.on_append("n1", 0, (Entry(1, 1), Entry(1, 2, data=b"a"), Entry(2, 3, data=b"b")), leader_last=None)
    ck.on_append("n2", 0, (Entry(1, 1), Entry(1, 2, data=b"a")), leader_last=None)
    with pytest.raises(SafetyViolation, match="log_matching"):  # same (3, 2), different predecessor term
        ck.on_append("n3", 3, (Entry(2, 3, data=b"b"),), leader_last=None)
    with pytest.raises(SafetyViolation, match="log_matching"):  # same (2, 1), different data
        ck.on_append("n3", 1, (Entry(1, 2, EntryType.CONF_CHANGE, b"a"),), leader_last=None)
    with pytest.raises(SafetyViolation, match="leader_append_only"):
        ck.on_append("n1", 1, (Entry(2, 3, data=b"b"),), leader_last=3)


def test_committed_entry_changing_is_caught() -> None:
    ck = Checker()
    ck.on_apply("n1", Entry(1, 1, data=b"w1"), b"s1")
    with pytest.raises(SafetyViolation, match="state_machine_safety"):
        ck.on_commit("n2", Entry(2, 1, data=b"w9"))
    with pytest.raises(SafetyViolation, match="leader_completeness"):
        ck.check_leader_completeness("n3", 2, 0, b"", {1: 2})


def test_restart_forgetting_a_vote_is_caught() -> None:
    ck = Checker()
    ck.on_send("n1", 4, "n2")
    ck.check_restart("n1", 5, None, 0, 0)
    with pytest.raises(SafetyViolation, match="durability"):
        ck.check_restart("n1", 4, "n3", 0, 0)
    with pytest.raises(SafetyViolation, match="durability"):
        ck.check_restart("n1", 3, None, 0, 0)


# -- pieces ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", PARTITION_KINDS)
def test_partition_kinds_cut_links_as_named(kind: str) -> None:
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    cut = cut_links(kind, nodes, "n3", random.Random(1))
    assert cut and all(a != b and a in nodes and b in nodes for a, b in cut)
    symmetric = all((b, a) in cut for a, b in cut)
    assert symmetric == (kind != "one_way")
    if kind == "isolate_leader":
        assert cut == {(a, b) for a in nodes for b in nodes if a != b and "n3" in (a, b)}
    if kind == "ring":
        assert len(cut) == 5 * 4 - 10


def test_sim_storage_crash_keeps_synced_and_may_lose_unsynced() -> None:
    from consensus.ready import HardState

    outcomes = set()
    for seed in range(20):
        s = SimStorage(("n1",))
        s.save(HardState(term=1, vote="n1"), (Entry(1, 1), Entry(1, 2)), None, sync=True)
        s.save(HardState(term=1, vote="n1", commit=2), (), None, sync=False)
        s.save(None, (Entry(1, 3),), None, sync=False)
        s.crash(random.Random(seed))
        assert s.last_index() >= 2 and s.initial_state()[0].term == 1
        outcomes.add((s.last_index(), s.initial_state()[0].commit))
    assert outcomes == {(2, 0), (2, 2), (3, 2)}  # a prefix of the unsynced writes survives, never a gap


def test_cli_reports_violation_with_replay_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def fake_run_seed(cfg: SimConfig, echo: bool = False) -> tuple[RunStats, Failure | None]:
        if cfg.seed == 2:
            return RunStats(seed=2), Failure(2, "log_matching", "planted", cfg.replay_command(), ["x"])
        return RunStats(seed=cfg.seed, elections=1), None

    monkeypatch.setattr(sim_main, "run_seed", fake_run_seed)
    assert sim_main.main(["--seeds", "3", "--nodes", "3", "--faults", "crash,drop", "--quiet"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {"seeds": 3, "violations": 1, "elections": 2, "committed": 0, "crashes": 0,
                       "partitions": 0, "dropped": 0}
    assert "./scripts/simulate --seed 2 --nodes 3 --faults drop,crash" in err


@pytest.mark.slow
def test_scripts_simulate_runs_seeds_and_prints_summary() -> None:
    out = subprocess.run([str(ROOT / "scripts" / "simulate"), "--seeds", "3", "--nodes", "3", "--steps", "2000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["seeds"] == 3 and summary["violations"] == 0 and summary["elections"] > 0


def test_simulation_steps_and_messages_flow() -> None:
    sim = Simulation(SimConfig(seed=5, nodes=3, faults=frozenset(), steps=500))
    for _ in range(500):
        sim.step()
    assert sim.leader() is not None
    assert any(line.split()[1] == "send" for line in sim.trace.recent)
    assert isinstance(Message(MessageType.APPEND, "a", "b", 1), Message)


def test_vote_changed_within_a_term_is_caught() -> None:
    from consensus.ready import HardState

    ck = Checker()
    ck.on_hard_state("n1", HardState(2, None, 0), HardState(2, "n2", 0))
    ck.on_hard_state("n1", HardState(2, "n2", 0), HardState(3, "n3", 1))
    with pytest.raises(SafetyViolation, match="election_safety"):
        ck.on_hard_state("n1", HardState(3, "n3", 1), HardState(3, "n1", 1))
    with pytest.raises(SafetyViolation, match="hard_state"):
        ck.on_hard_state("n1", HardState(3, "n3", 4), HardState(3, "n3", 2))


# -- Figure 8, scripted ---------------------------------------------------------------------------------------

class Figure8BugCore(Raft):
    """The classic mistake of Figure 8: commit an entry of an earlier term by counting its replicas.
    (Overrides a private method of the core: if it is renamed, update this planted bug.)"""

    def _maybe_commit(self) -> bool:
        matches = sorted((self._prs[v].match for v in self._voters if v in self._prs), reverse=True)
        index = matches[self._quorum() - 1]
        if index > self._log.committed:
            self._log.commit_to(index)
            return True
        return False


def figure_8(core_cls: type[Raft]) -> Simulation:
    """Raft paper, Figure 8, step by step (elections only by `campaign`, no pre-vote or lease to get in the way):
    (a) n1 (term a) replicates X at index x to n2 only and crashes; (b) n5 is elected by n3, n4 and appends
    its own entry at x, then crashes before sending it; (c) n1 returns, is elected by n2, n3 and ships X to n3:
    X is now on a majority, but of an old term; n1 crashes; (d) n5 returns and is elected by n3, n4 - it may
    overwrite X, so X must not have been committed in (c)."""
    def factory(config: Config, storage: SimStorage, rng: random.Random) -> Raft:
        return core_cls(dataclasses.replace(config, pre_vote=False, check_quorum=False), storage, rng)

    quiet = {k: 0 for k in ("propose_permille", "read_permille", "conf_change_permille", "transfer_permille",
                            "compact_permille", "crash_permille", "partition_permille")}
    sim = Simulation(SimConfig(seed=1, nodes=5, faults=frozenset(), steps=0, election_ticks=1000,
                               fixed_latency_ms=2, max_msg_bytes=1, **quiet), core_factory=factory)
    n = sim.nodes

    def leads(nid: str) -> bool:
        core = n[nid].core
        return core is not None and core.role.value == "leader"

    def elect(nid: str) -> None:
        for _ in range(5):
            sim.campaign(nid)
            if sim.run_until(lambda: leads(nid), 100):
                return
        raise AssertionError(f"{nid} was not elected")

    elect("n1")
    assert sim.run_until(lambda: all(x.app.applied == 1 for x in n.values()), 1000)
    # (a)
    sim.isolate("n1", keep=("n2",))
    x = sim.propose("n1", b"wX")
    assert sim.run_until(lambda: n["n2"].storage.last_index() == x, 1000)
    sim.crash("n1", restart_after_ms=None)
    # (b)
    sim.reconnect()
    sim.isolate("n2")
    elect("n5")
    sim.isolate("n5")  # the appends of its new entry die on the wire
    assert n["n5"].storage.last_index() == x and n["n5"].storage.term(x) != n["n2"].storage.term(x)
    sim.crash("n5", restart_after_ms=None)
    # (c)
    sim.reconnect()
    sim.restart("n1")
    sim.isolate("n1", keep=("n2", "n3"))
    elect("n1")
    # Stop right after n1 learns that n3 holds X, before n3 gets anything of n1's own term.
    assert sim.run_until(lambda: n["n1"].core is not None
                         and n["n1"].core.status().progress["n3"].match_index >= x, 200)
    sim.isolate("n1")
    assert n["n3"].storage.last_index() == x
    sim.crash("n1", restart_after_ms=None)
    # (d)
    sim.reconnect()
    sim.isolate("n1")
    sim.isolate("n2")
    sim.restart("n5")
    elect("n5")  # only a leader that committed X in (c) makes this unsafe
    sim.reconnect()
    sim.converge()
    return sim


def test_figure_8_scripted_is_safe() -> None:
    sim = figure_8(Raft)
    # n5 overwrote X everywhere: legal, because n1 never committed it.
    assert sim.checker.committed[2].data == b""
    assert all(node.storage.term(2) == 2 for node in sim.nodes.values() if node.storage.first_index() <= 2)


@pytest.mark.pure_only
def test_figure_8_bug_is_caught() -> None:
    with pytest.raises(SafetyViolation, match=r"leader_completeness|state_machine_safety"):
        figure_8(Figure8BugCore)
