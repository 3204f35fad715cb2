"""One side-by-side fan-out benchmark run: targets x viewer counts, results appended to docs/benchmarks.md.

For each target and each N: start the target server pinned to one CPU (``taskset``), connect N viewers from
the other CPU(s) (``socketio_viewers.py``), warm up with a few events, have the server emit ``--rate`` timed
events per second into the viewers' room for ``--seconds``, wait for the viewers to receive them (at most
``--drain-timeout`` after the last emit), and record:

* deliveries per server CPU-second (the server process's user + system CPU over the measured window, which
  runs from the first emit until the last viewer has the last event or the drain timeout);
* p50 / p99 over events of the time until the LAST viewer got the event (``inf`` when some viewer never did);
* server memory per idle viewer: RSS after connecting (and a settle pause) minus RSS before, over N;
* events lost (emitted x viewers - received) and viewers dropped;
* connect time, and server CPU per connect;
* the generator's own CPU use: when it is close to 100% of its CPUs, the figures describe the generator.

Every process started here is stopped in ``finally`` blocks (the server in its own process group, killed with
it; viewer processes asked to close, then terminated). Servers also exit by themselves after the run budget
and, through ``PR_SET_PDEATHSIG``, when this process dies. The whole invocation stops at ``--max-seconds``.

    .venv/bin/python loadtests/run_hub_bench.py                      # baseline, 1000 / 5000 / 10000 viewers
    .venv/bin/python loadtests/run_hub_bench.py --viewers 1000,5000 --seconds 20
    .venv/bin/python loadtests/run_hub_bench.py --target baseline,reference --viewers 1000
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil
from bench_protocol import BenchClient
from socketio_viewers import ConnectReport, DeliveryReport, ViewerConfig, ViewerFleet

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
PYTHON = sys.executable
ROOM = "bench"
_PR_SET_PDEATHSIG = 1


class BudgetExceeded(Exception):
    """The invocation's --max-seconds ran out."""


# --------------------------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """How to start one server under test. The server must implement the ``/bench/*`` routes."""

    name: str
    description: str
    room: str | int = ROOM  # what viewers join
    event: str = "pin"  # the event that carries the timed payload

    def command(self, port: int, max_seconds: float) -> list[str]:
        raise NotImplementedError

    def env(self, port: int) -> dict[str, str]:
        return {}


@dataclass(frozen=True)
class _ScriptTarget(Target):
    script: str = ""

    def command(self, port: int, max_seconds: float) -> list[str]:
        return [PYTHON, str(HERE / self.script), "--port", str(port), "--max-seconds", f"{max_seconds:.0f}"]


@dataclass(frozen=True)
class _HubTarget(_ScriptTarget):
    """Our hub: the real app with the harness's control routes mounted by ``hub_server.py`` (not the product).

    Viewers join the demo room (id 1 in the fresh database) anonymously and time ``pinned`` events, which the
    server publishes through the hub's real pin path. The embedded redis-server is the server's child, on the
    same CPU; its CPU time is counted with the server's.
    """


@dataclass(frozen=True)
class _PreviousHubTarget(_HubTarget):
    """The hub of another checkout (``--previous DIR``, e.g. a worktree of the previous commit), side by side."""

    tree: Path = REPO

    def command(self, port: int, max_seconds: float) -> list[str]:
        script = self.tree / "loadtests" / self.script
        return [PYTHON, str(script), "--port", str(port), "--max-seconds", f"{max_seconds:.0f}"]

    def env(self, port: int) -> dict[str, str]:
        return {"PYTHONPATH": str(self.tree)}


TARGETS: dict[str, Target] = {
    "baseline": _ScriptTarget(
        "baseline", "python-socketio 5 AsyncServer room emit (aiohttp, uvloop)", script="baseline_server.py"
    ),
    "reference": _ScriptTarget(
        "reference",
        "minimal asyncio broadcaster (frame built once, one write per viewer)",
        script="reference_server.py",
    ),
    "hub": _HubTarget(
        "hub",
        "livecommerce hub (python-socketio + encode-once fan-out + Redis)",
        room=1,
        event="pinned",
        script="hub_server.py",
    ),
}


# --------------------------------------------------------------------------------------------------------------
# Processes


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the orchestrator dies, whatever kills it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def server_process(command: list[str], env: dict[str, str], cpu: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start the target pinned to ``cpu`` in its own process group; kill the whole group on the way out."""
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            ["taskset", "-c", str(cpu), *command],
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # this process is single-threaded
        )
    try:
        yield process
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure nothing else of the group is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _cpu(process: psutil.Process) -> float:
    """User + system CPU of the process and its children (the hub's embedded Redis)."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = each.cpu_times()
            total += float(times.user + times.system)
    return total


def _machine_busy_s() -> float:
    """CPU-seconds this machine's processes have used so far, over all CPUs.

    user + nice + system + irq + softirq: guest time is already inside user, steal is other virtual
    machines'. With tick-based accounting (this kernel) a softirq tick is also charged to the process it
    interrupted, so subtracting our processes' times from this leaves what others used.
    """
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


def wait_for_quiet(budget: Budget, patience: float, threshold: float = 0.15) -> float:
    """Wait (at most ``patience`` seconds) until the machine's CPUs are less than ``threshold`` busy.

    Other tenants' work skews every figure on a shared machine. Returns the busy fraction last seen.
    """
    give_up = time.monotonic() + patience
    busy = float(psutil.cpu_percent(interval=1.0)) / 100
    while busy >= threshold and time.monotonic() < give_up and budget.remaining() > 60:
        busy = float(psutil.cpu_percent(interval=2.0)) / 100
    return busy


# --------------------------------------------------------------------------------------------------------------
# One run


@dataclass
class RunResult:
    target: str
    viewers: int
    connect: ConnectReport | None = None
    rss_before_mib: float = 0.0
    memory_per_viewer_kib: float = 0.0
    connect_cpu_ms_per_viewer: float = 0.0
    server_viewers: int = 0
    warmup: DeliveryReport | None = None
    delivery: DeliveryReport | None = None
    server_status: dict[str, Any] = field(default_factory=dict)
    window_s: float = 0.0
    server_cpu_s: float = 0.0
    generator_cpu_s: float = 0.0
    generator_cpus: int = 1
    other_cpu_s: float = 0.0  # CPU other processes of the machine used during the window
    busy_before: float = 0.0  # machine busy fraction just before the server started
    error: str | None = None

    @property
    def deliveries_per_cpu_s(self) -> float:
        if self.delivery is None or self.server_cpu_s <= 0:
            return 0.0
        return self.delivery.received / self.server_cpu_s

    @property
    def server_busy(self) -> float:
        return self.server_cpu_s / self.window_s if self.window_s else 0.0

    @property
    def generator_busy(self) -> float:
        return self.generator_cpu_s / self.window_s / self.generator_cpus if self.window_s else 0.0

    @property
    def other_load(self) -> float:
        """Other processes' CPU during the window, in cores."""
        return self.other_cpu_s / self.window_s if self.window_s else 0.0

    @property
    def throughput(self) -> float:
        return self.delivery.received / self.window_s if self.delivery and self.window_s else 0.0


@dataclass(frozen=True)
class Plan:
    rate: float
    seconds: float
    warmup_events: int
    drain_timeout: float
    pad: int
    burst: int
    client: Literal["raw", "aiohttp"]
    server_cpu: int
    viewer_cpus: list[int]
    processes: int
    concurrency: int
    settle_seconds: float
    quiet_wait: float
    logs: Path


class Budget:
    """The invocation's deadline, on ``time.monotonic()``."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def bound(self, seconds: float) -> float:
        left = self.remaining()
        if left <= 1:
            raise BudgetExceeded("--max-seconds reached")
        return min(seconds, left)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.bound(seconds))


def _connect_timeout(viewers: int) -> float:
    # python-socketio spends ~1.4 ms of CPU per connect; the hub's acknowledged join (room lookup, status sync,
    # snapshot) ~8-10 ms: 10k take ~100 s on one core. Leave room for noise.
    return 60.0 + viewers * 0.025


def estimate_seconds(plan: Plan, viewers: int) -> float:
    """A generous upper bound of one run's duration, to skip runs the budget cannot hold."""
    warmup = plan.warmup_events / plan.rate + plan.drain_timeout if plan.warmup_events else 0.0
    return 15 + viewers * 0.004 + plan.settle_seconds + warmup + plan.seconds + plan.drain_timeout


def measure(target: Target, viewers: int, plan: Plan, budget: Budget) -> RunResult:
    """One target at one viewer count; every process it starts has ended when it returns."""
    result = RunResult(target=target.name, viewers=viewers, generator_cpus=len(plan.viewer_cpus))
    result.busy_before = wait_for_quiet(budget, plan.quiet_wait)
    if budget.remaining() < estimate_seconds(plan, viewers):
        raise BudgetExceeded("not enough of --max-seconds left after waiting for a quiet machine")
    port = _free_port()
    server_budget = budget.remaining() + 30
    command = target.command(port, server_budget)
    log = plan.logs / f"{target.name}-{viewers}.log"
    print(f"[{target.name} x {viewers}] starting: {shlex.join(command)} (log: {log})", flush=True)
    with server_process(command, target.env(port), plan.server_cpu, log) as process:
        control = BenchClient(port)
        control.wait_healthy(time.monotonic() + budget.bound(30), alive=lambda: process.poll() is None)
        server = psutil.Process(process.pid)
        budget.sleep(0.5)
        result.rss_before_mib = server.memory_info().rss / 2**20
        cpu_before_connect = _cpu(server)
        config = ViewerConfig(
            port=port,
            room=target.room,
            event=target.event,
            concurrency=max(1, plan.concurrency // plan.processes),
            client=plan.client,
        )
        with ViewerFleet(config, viewers, processes=plan.processes, cpus=plan.viewer_cpus) as fleet:
            connect = fleet.connect(timeout=budget.bound(_connect_timeout(viewers)))
            result.connect = connect
            connected = max(1, connect.connected)
            result.connect_cpu_ms_per_viewer = (_cpu(server) - cpu_before_connect) * 1000 / connected
            print(
                f"[{target.name} x {viewers}] connected {connect.connected}/{viewers} in {connect.wall_s:.1f} s"
                f" (failed {connect.failed}) {connect.errors[:1]}",
                flush=True,
            )
            budget.sleep(plan.settle_seconds)
            result.memory_per_viewer_kib = (server.memory_info().rss / 2**20 - result.rss_before_mib) * 1024 / connected
            result.server_viewers = int(control.health().get("viewers", 0))
            if plan.warmup_events:
                result.warmup = _one_run(control, fleet, plan, budget, plan.warmup_events / plan.rate, burst=1)[0]
            me = psutil.Process()
            generator_before, server_before, me_before = fleet.cpu_seconds(), _cpu(server), _cpu(me)
            machine_before = _machine_busy_s()
            started = time.monotonic()
            result.delivery, result.server_status = _one_run(control, fleet, plan, budget, plan.seconds, plan.burst)
            result.window_s = time.monotonic() - started
            result.server_cpu_s = _cpu(server) - server_before
            result.generator_cpu_s = fleet.cpu_seconds() - generator_before
            ours = result.server_cpu_s + result.generator_cpu_s + _cpu(me) - me_before
            result.other_cpu_s = max(0.0, _machine_busy_s() - machine_before - ours)
    return result


def _one_run(
    control: BenchClient, fleet: ViewerFleet, plan: Plan, budget: Budget, seconds: float, burst: int
) -> tuple[DeliveryReport, dict[str, Any]]:
    """Start a run, wait for its emitting time, then at most ``drain_timeout`` for the server and viewers."""
    started = control.start(ROOM, plan.rate, seconds, plan.pad, burst)
    budget.sleep(seconds)
    deadline = time.monotonic() + budget.bound(plan.drain_timeout)
    try:
        status = control.wait_done(started["run"], deadline)
    except TimeoutError:
        # a saturated server may not answer at all: count what its timer planned, and say so
        status = {"run": started["run"], "emitted": started["planned"], "done": False, "unanswered": True}
    delivery = fleet.drain(started["run"], int(status["emitted"]), max(1.0, deadline - time.monotonic()))
    return delivery, status


# --------------------------------------------------------------------------------------------------------------
# Report


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in ("python-socketio", "python-engineio", "aiohttp", "uvloop"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package} {importlib.metadata.version(package)}")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    return (
        f"nproc {os.cpu_count()}, {model}; Linux {platform.release()}; Python {platform.python_version()}; "
        f"{', '.join(versions)}; load average at start {load}"
    )


def _seconds(value: float) -> str:
    if math.isinf(value):
        return "never"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"


def _lag(result: RunResult) -> str:
    if result.server_status.get("unanswered"):
        return "no answer"
    return _seconds(float(result.server_status.get("lag_max_ms", 0.0)) / 1000)


def _row(result: RunResult) -> str:
    c, d = result.connect, result.delivery
    if d is None or c is None:
        return f"| {result.target} | {result.viewers:,} | failed: {result.error} |" + " |" * 12
    lost = f"{d.lost:,} of {d.expected:,} ({d.lost / d.expected:.1%})" if d.expected else "-"
    return (
        f"| {result.target} | {result.viewers:,} | {c.connected:,} in {c.wall_s:.1f} s"
        f"{f' ({c.failed} failed)' if c.failed else ''} | {result.connect_cpu_ms_per_viewer:.2f} ms"
        f" | {result.memory_per_viewer_kib:.1f} KiB | **{result.deliveries_per_cpu_s:,.0f}**"
        f" ({1e6 / result.deliveries_per_cpu_s if result.deliveries_per_cpu_s else 0:.0f} µs)"
        f" | {result.server_busy:.0%} | **{_seconds(d.last_p50_s)} / {_seconds(d.last_p99_s)}**"
        f" | {_seconds(d.delivery_p50_s)} / {_seconds(d.delivery_p99_s)} | {lost}"
        f" | {d.disconnected} | {_lag(result)} | {result.throughput:,.0f}/s | {result.generator_busy:.0%}"
        f" ({result.generator_cpu_s * 1e6 / max(1, d.received):.0f} µs) | {result.other_load:.2f} |"
    )


_HEADER = (
    "| target | viewers | connected in | server CPU per connect | server memory per idle viewer"
    " | deliveries per server CPU-s (CPU per delivery) | server CPU busy | p50 / p99 to last viewer"
    " | p50 / p99 per delivery | events lost | viewers dropped | emit timer late by (max) | deliveries/s"
    " | generator busy (CPU per delivery) | other tenants' CPU (cores) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _notes(results: Sequence[RunResult], plan: Plan) -> list[str]:
    notes = []
    for result in results:
        d, tag = result.delivery, f"{result.target} x {result.viewers:,}"
        if d is None:
            continue
        if result.generator_busy >= 0.85:
            notes.append(f"{tag}: generator {result.generator_busy:.0%} busy — latency may be the generator's.")
        if not d.drained:
            notes.append(
                f"{tag}: not drained {plan.drain_timeout:g} s after the planned last emit; {d.complete_events} of"
                f" {d.emitted} events reached every viewer, {d.viewers_short:,} viewers missed some (counted as lost)."
            )
        lag = result.server_status.get("lag_max_ms", 0)
        if lag > 100:
            notes.append(
                f"{tag}: the server's emit timer ran up to {_seconds(lag / 1000)} late (its event loop was"
                " saturated); latencies count from the actual emit, so add this to know what a host would see."
            )
        if result.server_status.get("unanswered"):
            notes.append(
                f"{tag}: the server did not answer /bench/status within the run's time; all"
                f" {d.emitted} planned events were assumed emitted."
            )
        if d.complete_events and d.complete_events < d.emitted:
            notes.append(
                f"{tag}: over the {d.complete_events} events that reached every viewer, time to the last viewer"
                f" was p50 {_seconds(d.complete_p50_s)} / p99 {_seconds(d.complete_p99_s)}."
            )
        if result.other_load >= 0.2 or result.busy_before >= 0.15:
            notes.append(
                f"{tag}: other processes used {result.other_load:.2f} cores during the window (machine"
                f" {result.busy_before:.0%} busy before the start): figures are disturbed."
            )
        if result.warmup is not None and not result.warmup.drained:
            notes.append(f"{tag}: warm-up did not drain; its backlog spilled into the measured window.")
    return notes


def _ratios(results: Sequence[RunResult]) -> str:
    baseline = {r.viewers: r for r in results if r.target == "baseline" and r.delivery is not None}
    others = [r for r in results if r.target != "baseline" and r.delivery is not None and r.viewers in baseline]
    if not others:
        return ""
    lines = [
        "\nRatio to the baseline in this invocation (higher is better for the first; lower for the others):\n",
        "| target | viewers | deliveries per CPU-s | p99 to last viewer | memory per viewer |",
        "|---|---|---|---|---|",
    ]
    for r in others:
        b = baseline[r.viewers]
        assert r.delivery is not None
        assert b.delivery is not None
        mine, theirs = r.delivery.last_p99_s, b.delivery.last_p99_s
        if math.isinf(theirs):
            p99 = "baseline never got every event to every viewer" if not math.isinf(mine) else "both never"
        elif math.isinf(mine):
            p99 = "never (baseline did)"
        else:
            p99 = f"{mine / theirs:.3f}x" if theirs else "-"
        memory = r.memory_per_viewer_kib / b.memory_per_viewer_kib if b.memory_per_viewer_kib else math.nan
        per_cpu = r.deliveries_per_cpu_s / b.deliveries_per_cpu_s if b.deliveries_per_cpu_s else math.nan
        lines.append(f"| {r.target} | {r.viewers:,} | {per_cpu:.1f}x | {p99} | {memory:.2f}x |")
    return "\n".join(lines) + "\n"


_FILE_HEADER = """# Benchmarks

## Fan-out: one room, N viewers, 10 timed broadcasts a second

Made by `loadtests/run_hub_bench.py` (see `loadtests/README.md`). The server under test is pinned to CPU 0;
N Socket.IO viewers (`loadtests/socketio_viewers.py`: Engine.IO v4 / Socket.IO v5 spoken directly over a
bare asyncio websocket client, or aiohttp's with `--client aiohttp`; no compression) run on the other CPU.
After a few warm-up events the server emits `pin` events from a timer inside its own process; each carries
`t0 = time.time_ns()` at emit and a sequence number, and viewers record receive time - `t0` (same clock).

- **deliveries per server CPU-s**: events received by viewers over the server process's user + system CPU
  time, from the first emit until the last viewer has the last event (or the drain timeout). On loopback the
  receiving side's TCP work often lands on the sender's CPU too, so this counts it.
- **p50 / p99 to last viewer**: over events, the time until the last viewer got the event; `never` when some
  viewer never got it within the drain timeout (the event counts as incomplete).
- **server memory per idle viewer**: server RSS after connecting all viewers (and a short settle) minus RSS
  before, over N.
- **events lost**: emitted x viewers - received by the drain deadline (`--drain-timeout` after the planned
  last emit), including what dropped viewers missed; a backlog still queued then counts. **viewers dropped**:
  connections the server closed during the run (python-socketio closes a socket whose pong is more than
  `ping_timeout`, 20 s, late — which a backlog longer than that causes).
- **emit timer late by**: how far behind schedule the server's own emit timer fired at worst. Latencies count
  from the actual emit (`t0`), so a saturated server's figures exclude this wait; add it to know what a host
  would see.
- **generator busy**: CPU of the viewer processes over the window, per viewer CPU. Near 100% the numbers
  describe the generator, not the server.
- **other tenants' CPU**: CPU that processes other than the server, the viewers and the harness used during
  the window, in cores (the machine is shared). Each run first waits (`--quiet-wait`) for an idle machine.

The machine is shared and noisy: compare ratios within one invocation, not absolute figures across entries.
Results are appended, newest last.
"""


def write_report(
    path: Path,
    command: str,
    plan: Plan,
    results: Sequence[RunResult],
    machine: str,
    started: datetime.datetime,
    note: str | None = None,
) -> str:
    targets = ", ".join(dict.fromkeys(r.target for r in results))
    took = datetime.datetime.now(datetime.UTC) - started
    section = [
        f"\n### {started:%Y-%m-%d %H:%M} UTC — {targets}\n",
        *([f"{note}\n"] if note else []),
        f"Command: `{command}` (took {took.total_seconds() / 60:.1f} min)\n",
        f"Machine: {machine}.\n",
        f"Run: server on CPU {plan.server_cpu}, {plan.processes} viewer process(es) ({plan.client} client) on CPU(s)"
        f" {','.join(map(str, plan.viewer_cpus))}; {plan.rate * plan.burst:g} events/s"
        f"{f' ({plan.burst} per tick)' if plan.burst > 1 else ''} for {plan.seconds:g} s after"
        f" {plan.warmup_events} warm-up events; drain timeout {plan.drain_timeout:g} s; payload padding"
        f" {plan.pad} bytes.\n",
        _HEADER + "\n".join(_row(r) for r in results) + "\n",
    ]
    notes = _notes(results, plan)
    if notes:
        section.append("\n".join(f"- {note}" for note in notes) + "\n")
    ratios = _ratios(results)
    if ratios:
        section.append(ratios)
    text = "\n".join(section)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else _FILE_HEADER
    path.write_text(existing.rstrip("\n") + "\n" + text)
    return text


# --------------------------------------------------------------------------------------------------------------
# Entry point


def _csv_ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="baseline", help=f"comma-separated, of: {', '.join(TARGETS)}")
    parser.add_argument("--previous", type=Path, default=None, help="a checkout for target `previous`")
    parser.add_argument("--viewers", type=_csv_ints, default=[1000, 5000, 10000], help="e.g. 1000,5000")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (default 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured emitting time per run")
    parser.add_argument("--warmup-events", type=int, default=3, help="events sent and drained before measuring")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="wait after the planned last emit, at most")
    parser.add_argument("--pad", type=int, default=0, help="bytes of filler in each payload")
    parser.add_argument(
        "--burst",
        type=int,
        default=1,
        help="events per tick (rate x burst events/s; the reference target writes"
        " a tick's events at once: use it to load the generator harder than the server)",
    )
    parser.add_argument(
        "--client", choices=["raw", "aiohttp"], default="raw", help="viewer websocket client (see loadtests/README.md)"
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--viewer-cpus", type=_csv_ints, default=None, help="default: every other CPU")
    parser.add_argument("--processes", type=int, default=None, help="viewer processes (default: one per CPU)")
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight, over all processes")
    parser.add_argument("--settle-seconds", type=float, default=2.0, help="pause after connecting, before RSS")
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="before each run, wait up to this long for an idle machine"
    )
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound on the whole invocation")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to append to")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not append it")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure as JSON here")
    parser.add_argument("--note", default=None, help="a sentence written under the entry's heading (why this run)")
    return parser


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.previous is not None:
        head = subprocess.run(["git", "-C", str(args.previous), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()  # fmt: skip
        TARGETS["previous"] = _PreviousHubTarget(
            f"previous ({head})" if head else "previous", "the hub of the commit named, same harness",
            room=1, event="pinned", script="hub_server.py", tree=args.previous.resolve(),
        )  # fmt: skip
    names = [name.strip() for name in args.target.split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown target(s) {unknown}; choose from {list(TARGETS)}")
    targets = [TARGETS[name] for name in names]
    for target in targets:  # fail before any run when a target cannot start
        target.command(0, 0)
    available = sorted(os.sched_getaffinity(0))
    viewer_cpus = args.viewer_cpus or [cpu for cpu in available if cpu != args.server_cpu]
    if args.server_cpu not in available or not viewer_cpus or args.server_cpu in viewer_cpus:
        raise SystemExit(f"need a server CPU and at least one other CPU; have {available}")
    plan = Plan(
        rate=args.rate,
        seconds=args.seconds,
        warmup_events=args.warmup_events,
        drain_timeout=args.drain_timeout,
        pad=args.pad,
        burst=args.burst,
        client=args.client,
        server_cpu=args.server_cpu,
        viewer_cpus=viewer_cpus,
        processes=args.processes or len(viewer_cpus),
        concurrency=args.concurrency,
        settle_seconds=args.settle_seconds,
        quiet_wait=args.quiet_wait,
        logs=Path(tempfile.gettempdir()) / f"hub-bench-{os.getpid()}",
    )
    plan.logs.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, viewer_cpus)  # keep this process off the server's CPU
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join([".venv/bin/python", "loadtests/run_hub_bench.py", *(argv or sys.argv[1:])])
    machine = _machine()
    started = datetime.datetime.now(datetime.UTC)
    budget = Budget(args.max_seconds)
    results: list[RunResult] = []
    interrupted = False
    try:
        for viewers in args.viewers:
            for target in targets:
                if budget.remaining() < estimate_seconds(plan, viewers):
                    print(f"[{target.name} x {viewers}] skipped: not enough of --max-seconds left", flush=True)
                    results.append(RunResult(target.name, viewers, error="skipped, --max-seconds budget"))
                    continue
                try:
                    result = measure(target, viewers, plan, budget)
                except (OSError, TimeoutError, BudgetExceeded, ValueError, KeyError) as exc:
                    result = RunResult(target.name, viewers, error=f"{type(exc).__name__}: {exc}"[:160])
                results.append(result)
                print(f"[{target.name} x {viewers}] {_row(result)}", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every process started has been stopped; writing what was measured", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2, default=str))
    measured = [r for r in results if r.delivery is not None]
    if measured and not args.no_write:
        text = write_report(args.out, command, plan, results, machine, started, args.note)
        print(f"appended to {args.out}:\n{text}")
    elif measured:
        print(_HEADER + "\n".join(_row(r) for r in results))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
