"""Real-network mode (root only): each node in its own network namespace, partitions made by the kernel.

Layout of run R (R in 1..250, the third octet of the run's private subnet 10.77.R.0/24, never routed anywhere):

    host namespace: bridge ``ecert-R-br`` 10.77.R.254/24 (the chaos runner and its clients talk to the nodes here)
    node i:         namespace ``ecert-R-<node id>``, veth ``ecert-R-i`` (host side, on the bridge) <-> ``eth0``
                    10.77.R.(i+1)/24 inside; the node runs there under ``ip netns exec`` and listens on its address

Nodes have no route but the subnet, so nothing they send leaves it. IPv6 is left unconfigured (addrgenmode none).

Network faults are egress rules on each node's ``eth0``: an htb root whose default class passes everything, one
class whose leaf is ``pfifo limit 0`` (every packet dropped: the kernel's blackhole) and, when the kernel has
``sch_netem``, one class with ``netem delay D J loss L%``; u32 filters on the destination address pick the class,
so only node-to-node traffic is cut or degraded and the runner still reaches every node. A partition drops, on both
ends, what each side sends the other; a one-way fault only the leader's egress. Kernels without netem (some VMs)
get delay and loss from the in-process fault layer instead, said so in the fault's detail.

``POST /admin/faults`` answers loopback clients only, so the rules that stay in-process (slow disk, clock skew,
the netem fallback) are posted from inside the node's namespace, from 127.0.0.1.

Two modes build on this one machinery: ``./scripts/chaos --netns`` (node/chaos/cluster.py: one namespace per
node of a chaos cluster) and ``./scripts/multihost`` (node/chaos/multihost.py: one namespace per organisation, a
"host" with its own directory and keys). The multi-host run also captures the bridge: `Capture` runs ``tcpdump
-i <bridge>`` in the host namespace (the bridge is promiscuous while it captures, so frames it forwards from one
namespace's veth to another's are seen too, not only those addressed to the bridge itself).

Everything is torn down by `NetnsNetwork.down()` (processes, captures, namespaces, veths, bridge), also on
failure; `cleanup_stale()` removes what crashed runs left: ``ecert-*`` namespaces and links whose owner file under
/run/ecert-chaos names a dead process (or is missing), the processes still inside those namespaces, and the
helper processes (tcpdump) the run started in the host namespace, listed in /run/ecert-chaos/R.helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
TCPDUMP_PATHS = ("/usr/bin/tcpdump", "/usr/sbin/tcpdump")
PREFIX = "ecert-"
STATE_DIR = Path("/run/ecert-chaos")
SUBNET = "10.77.{run}.0/24"
BRIDGE_HOST = 254
RUN_IDS = range(1, 251)
HTTP_PORT = 8700
RAFT_PORT = 9700
DEV = "eth0"
BLACKHOLE = "1:2"
DEGRADED = "1:3"
CMD_TIMEOUT_S = 10.0
NETWORK_KINDS = ("partition_halves", "partition_leader", "partition_bridge", "partition_oneway", "delay", "loss")

# Posted from inside a node's namespace: the admin route accepts loopback clients only.
_POST_SCRIPT = """
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2, source_address=("127.0.0.1", 0))
c.request("POST", "/admin/faults", body=sys.argv[3], headers={"Content-Type": "application/json"})
sys.exit(0 if c.getresponse().status == 200 else 1)
"""


class NetnsError(RuntimeError):
    """Real-network mode cannot run here (not root, no `ip netns`, a kernel refusal): the message says why."""


def run_cmd(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def require_netns(who: str = "--netns") -> None:
    """Refuse clearly when this process cannot build namespaces (`who`: the mode asking, for the message)."""
    if os.geteuid() != 0:
        raise NetnsError(f"{who} needs root (network namespaces, veth, bridge and tc need CAP_NET_ADMIN)")
    if not Path(IP).exists() or not Path(TC).exists():
        raise NetnsError(f"{who} needs iproute2: {IP} and {TC}")
    proc = run_cmd([IP, "netns", "list"], check=False)
    if proc.returncode != 0:
        raise NetnsError(f"`ip netns` is unavailable: {proc.stderr.strip()}")


def tcpdump_path() -> str | None:
    return shutil.which("tcpdump") or next((p for p in TCPDUMP_PATHS if Path(p).exists()), None)


def _pid_alive(pid: int) -> bool:
    """Running (a zombie, killed and waiting for its parent to reap it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _owner_alive(run: int) -> bool:
    try:
        pid = int((STATE_DIR / f"{run}.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    return _pid_alive(pid)


def _run_of(name: str) -> int | None:
    part = name[len(PREFIX):].split("-", 1)[0]
    return int(part) if part.isdigit() else None


def list_namespaces() -> list[str]:
    out = run_cmd([IP, "netns", "list"], check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(PREFIX)]


def list_links() -> list[str]:
    out = run_cmd([IP, "-o", "link", "show"], check=False).stdout
    names = [ln.split(":", 2)[1].strip().split("@", 1)[0] for ln in out.splitlines() if ":" in ln]
    return [n for n in names if n.startswith(PREFIX)]


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process still inside one of our namespaces, then delete it (its veth goes with it)."""
    pids = run_cmd([IP, "netns", "pids", ns], check=False).stdout.split()
    for p in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(p), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline and any(_pid_alive(int(p)) for p in pids if p.isdigit()):
        time.sleep(0.05)
    run_cmd([IP, "netns", "delete", ns], check=False)


def _helpers_file(run: int) -> Path:
    return STATE_DIR / f"{run}.helpers"


def _register_helper(run: int, pid: int) -> None:
    """Remember a process the run started in the host namespace (no namespace holds it): teardown kills it."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with _helpers_file(run).open("a") as f:
        f.write(f"{pid}\n")


def _kill_helpers(run: int) -> None:
    """SIGKILL the run's helpers still alive, and only if they are still ours: a pid is reused once reaped, so
    the process must still name the run's bridge on its command line."""
    try:
        pids = [int(p) for p in _helpers_file(run).read_text().split() if p.isdigit()]
    except OSError:
        return
    tag = f"{PREFIX}{run}-br".encode()
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if tag in cmdline.split(b"\0") and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        _helpers_file(run).unlink()


def remove_run(run: int) -> None:
    _kill_helpers(run)
    tag = f"{PREFIX}{run}-"
    for ns in list_namespaces():
        if ns.startswith(tag):
            _kill_namespace(ns)
    for link in list_links():
        if link.startswith(tag):
            run_cmd([IP, "link", "delete", link], check=False)
    with contextlib.suppress(OSError):
        (STATE_DIR / f"{run}.pid").unlink()


def cleanup_stale() -> list[int]:
    """Remove what crashed runs left behind (runs whose owner process is gone); returns their run ids."""
    runs = {r for r in (_run_of(n) for n in list_namespaces() + list_links()) if r is not None}
    with contextlib.suppress(OSError):
        runs |= {int(p.stem) for p in STATE_DIR.glob("*.pid") if p.stem.isdigit()}
        runs |= {int(p.stem) for p in STATE_DIR.glob("*.helpers") if p.stem.isdigit()}
    stale = sorted(r for r in runs if not _owner_alive(r))
    for r in stale:
        remove_run(r)
    return stale


def netem_supported(ns: str) -> bool:
    """Some kernels (VMs) ship without sch_netem: probe once on a namespace's eth0."""
    ok = run_cmd([TC, "-n", ns, "qdisc", "add", "dev", DEV, "root", "handle", "9:", "netem", "delay", "1ms"],
                 check=False).returncode == 0
    run_cmd([TC, "-n", ns, "qdisc", "del", "dev", DEV, "root"], check=False)
    return ok


class NetnsNetwork:
    """The namespaces, veths and bridge of one run, and the kernel-level network faults on them. `ids` name the
    namespaces: the nodes of a chaos cluster, or the organisations' hosts of a multi-host run (there each host
    runs the node of the same id). `who` names the mode in refusals ("--netns", "./scripts/multihost")."""

    def __init__(self, ids: list[str], who: str = "--netns") -> None:
        self.ids = list(ids)
        self.who = who
        self.run: int | None = None
        self.netem = False
        self._rules_on: set[str] = set()  # nodes whose eth0 carries a fault qdisc

    # -- naming ------------------------------------------------------------------------------------------------

    def _need_run(self) -> int:
        if self.run is None:
            raise NetnsError("network not set up")
        return self.run

    def namespace(self, node_id: str) -> str:
        return f"{PREFIX}{self._need_run()}-{node_id}"

    def address(self, node_id: str) -> str:
        return f"10.77.{self._need_run()}.{self.ids.index(node_id) + 1}"

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self._need_run()}-br"

    def host_address(self) -> str:
        return f"10.77.{self._need_run()}.{BRIDGE_HOST}"

    def command(self, node_id: str, argv: list[str]) -> list[str]:
        return [IP, "netns", "exec", self.namespace(node_id), *argv]

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def up(self) -> None:
        require_netns(self.who)
        cleanup_stale()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        # The bridge name is the lock: `ip link add` fails if another live run took this id first.
        for run in RUN_IDS:
            if any(_run_of(n) == run for n in list_namespaces() + list_links()):
                continue
            if run_cmd([IP, "-o", "route", "show", SUBNET.format(run=run)], check=False).stdout.strip():
                continue  # the host already routes this subnet: not ours to shadow
            if run_cmd([IP, "link", "add", f"{PREFIX}{run}-br", "type", "bridge"], check=False).returncode == 0:
                self.run = run
                break
        if self.run is None:
            raise NetnsError("no free run id for 10.77.R.0/24 (1..250 all in use)")
        (STATE_DIR / f"{self.run}.pid").write_text(str(os.getpid()))
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        self.netem = netem_supported(self.namespace(self.ids[0]))

    def _build(self) -> None:
        run, br = self._need_run(), self.bridge
        run_cmd([IP, "link", "set", br, "addrgenmode", "none"], check=False)
        run_cmd([IP, "addr", "add", f"{self.host_address()}/24", "dev", br])
        run_cmd([IP, "link", "set", br, "up"])
        for i, node_id in enumerate(self.ids):
            ns, host_if = self.namespace(node_id), f"{PREFIX}{run}-{i}"
            run_cmd([IP, "netns", "add", ns])
            run_cmd([IP, "link", "add", host_if, "type", "veth", "peer", "name", DEV, "netns", ns])
            run_cmd([IP, "link", "set", host_if, "addrgenmode", "none"], check=False)
            run_cmd([IP, "link", "set", host_if, "master", br])
            run_cmd([IP, "link", "set", host_if, "up"])
            run_cmd([IP, "-n", ns, "link", "set", DEV, "addrgenmode", "none"], check=False)
            run_cmd([IP, "-n", ns, "addr", "add", f"{self.address(node_id)}/24", "dev", DEV])
            run_cmd([IP, "-n", ns, "link", "set", DEV, "up"])
            run_cmd([IP, "-n", ns, "link", "set", "lo", "up"])

    def down(self) -> None:
        """Kill the run's helpers (captures) and whatever runs in our namespaces, delete them, their veths and the
        bridge. Idempotent."""
        if self.run is not None:
            remove_run(self.run)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this run that still exist (empty after `down()`)."""
        if self.run is None:
            return []
        tag = f"{PREFIX}{self.run}-"
        return [n for n in list_namespaces() + list_links() if n.startswith(tag)]

    # -- nodes -------------------------------------------------------------------------------------------------

    def start_node(self, argv: list[str], node_id: str, out_path: Path, cwd: Path,
                   preexec_fn: Any) -> subprocess.Popen[bytes]:
        """Start `argv` inside the node's (host's) namespace (`ip netns exec` execs it: the pid is the node's)."""
        full = self.command(node_id, argv)
        with out_path.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {' '.join(full)}\n".encode())
            out.flush()
            return subprocess.Popen(full, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
                                    preexec_fn=preexec_fn)

    def run_in(self, name: str, argv: list[str], cwd: Path | None = None,
               timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a short command inside one namespace and wait for it (a host's own tool, e.g. `ecert keygen`)."""
        return subprocess.run(self.command(name, argv), cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)

    def capture(self, path: Path, bpf_filter: str, preexec_fn: Any = None) -> Capture:
        """Start a packet capture of the bridge into `path` (pcap); `Capture.stop()` ends it, `down()` too."""
        return Capture.start(self, path, bpf_filter, preexec_fn)

    def post_admin(self, node_id: str, rule: dict[str, Any]) -> bool:
        """POST /admin/faults to one node from 127.0.0.1 inside its namespace."""
        argv = self.command(node_id, [sys.executable, "-c", _POST_SCRIPT, self.address(node_id), str(HTTP_PORT),
                                      json.dumps(rule)])
        try:
            return subprocess.run(argv, capture_output=True, timeout=CMD_TIMEOUT_S).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    # -- kernel faults -----------------------------------------------------------------------------------------

    def _tc(self, node_id: str, *args: str, check: bool = True) -> None:
        run_cmd([TC, "-n", self.namespace(node_id), *args], check=check)

    def _install(self, node_id: str, blocked: list[str], degraded: list[str], netem: list[str]) -> None:
        """eth0's egress: to `blocked` peers dropped, to `degraded` peers through netem, the rest untouched."""
        self._tc(node_id, "qdisc", "del", "dev", DEV, "root", check=False)
        self._tc(node_id, "qdisc", "add", "dev", DEV, "root", "handle", "1:", "htb", "default", "1", "r2q", "100000")
        for cls in ("1:1", BLACKHOLE, DEGRADED):
            self._tc(node_id, "class", "add", "dev", DEV, "parent", "1:", "classid", cls, "htb", "rate", "10gbit")
        self._tc(node_id, "qdisc", "add", "dev", DEV, "parent", BLACKHOLE, "handle", "20:", "pfifo", "limit", "0")
        if netem:
            self._tc(node_id, "qdisc", "add", "dev", DEV, "parent", DEGRADED, "handle", "30:", "netem", *netem)
        for peers, flow in ((blocked, BLACKHOLE), (degraded, DEGRADED)):
            for peer in peers:
                self._tc(node_id, "filter", "add", "dev", DEV, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                         "match", "ip", "dst", f"{self.address(peer)}/32", "flowid", flow)
        self._rules_on.add(node_id)

    def apply(self, rule: dict[str, Any]) -> str:
        """Make a nemesis rule document (node/faults.py's) with the kernel; returns how, for the fault's detail.
        Delay and loss without netem go to every node's fault layer instead."""
        ids = self.ids
        if "partition" in rule:
            groups: list[list[str]] = rule["partition"]
            for a in ids:
                cut = [b for b in ids if b != a and not any(a in g and b in g for g in groups)]
                if cut:
                    self._install(a, cut, [], [])
            return "kernel: egress to the other side dropped (htb + u32 + pfifo limit 0)"
        if "block" in rule:
            by_src: dict[str, list[str]] = {}
            for src, dst in rule["block"]:
                by_src.setdefault(src, []).append(dst)
            for src, dsts in by_src.items():
                self._install(src, dsts, [], [])
            return "kernel: one side's egress dropped"
        if "delay_ms" in rule or "loss" in rule:
            if not self.netem:
                ok = all(self.post_admin(n, rule) for n in ids)
                return "netem unavailable in this kernel: fault layer" + ("" if ok else " (some posts failed)")
            args: list[str] = []
            if "delay_ms" in rule:
                args += ["delay", f"{int(rule['delay_ms'])}ms", f"{int(rule.get('jitter_ms', 0))}ms"]
            if "loss" in rule:
                args += ["loss", f"{float(rule['loss']) * 100:.1f}%"]
            for a in ids:
                self._install(a, [], [b for b in ids if b != a], args)
            return f"kernel: tc netem {' '.join(args)}"
        raise NetnsError(f"not a network rule: {rule}")

    def heal(self) -> None:
        """Remove every fault qdisc. (Rules that went to the fault layer are healed by posting {"heal": true},
        as the nemesis does for every node after this.)"""
        for n in sorted(self._rules_on):
            self._tc(n, "qdisc", "del", "dev", DEV, "root", check=False)
        self._rules_on.clear()

    def describe(self) -> dict[str, Any]:
        return {"run": self.run, "subnet": SUBNET.format(run=self.run), "bridge": self.bridge,
                "namespaces": {n: self.namespace(n) for n in self.ids}, "netem": self.netem}



class Capture:
    """``tcpdump -i <bridge> -w FILE FILTER`` in the host namespace, registered as a helper of the run (so
    `down()` and a later `cleanup_stale()` kill it if `stop()` never ran). -U writes each packet as it comes,
    so what was captured is on disk even if tcpdump is killed; -s 0 keeps whole packets."""

    def __init__(self, proc: subprocess.Popen[bytes], path: Path, log_path: Path) -> None:
        self.proc = proc
        self.path = path
        self.log_path = log_path
        self.stats: dict[str, int] = {}

    @classmethod
    def start(cls, net: NetnsNetwork, path: Path, bpf_filter: str, preexec_fn: Any = None) -> Capture:
        tcpdump = tcpdump_path()
        if tcpdump is None:
            raise NetnsError("no tcpdump (Debian: apt-get install tcpdump)")
        run = net._need_run()
        log_path = path.with_suffix(".log")
        argv = [tcpdump, "-i", net.bridge, "-n", "-U", "-s", "0", "-w", str(path), bpf_filter]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=preexec_fn)
        _register_helper(run, proc.pid)
        cap = cls(proc, path, log_path)
        # tcpdump says "listening on" once the socket is bound: packets before that would be missed.
        deadline = time.monotonic() + CMD_TIMEOUT_S
        while b"listening on" not in cap._log():
            if proc.poll() is not None or time.monotonic() > deadline:
                cap.stop()
                raise NetnsError(f"tcpdump did not start: {cap._log().decode(errors='replace').strip()}")
            time.sleep(0.05)
        return cap

    def _log(self) -> bytes:
        try:
            return self.log_path.read_bytes()
        except OSError:
            return b""

    def stop(self) -> dict[str, int]:
        """SIGTERM (tcpdump flushes and prints its counts), SIGKILL at the deadline. Idempotent. Returns the
        counts tcpdump printed: captured, received by filter, dropped by kernel."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(CMD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(CMD_TIMEOUT_S)
        for line in self._log().decode(errors="replace").splitlines():
            words = line.split()
            if len(words) >= 3 and words[0].isdigit() and words[1] == "packets":
                self.stats[" ".join(words[2:])] = int(words[0])
        return self.stats
