"""Voucher claims through one hub, side by side with buy taps, and the Redis ceiling of `voucher_claim`.

One invocation measures, on the same users, room and attempt list (`--attempts` taps from `--users` signed-in
buyers, 2% of them tapping 4 times early, each tap with its own idempotency key; `run_buy_bench.attempt_plan`):

a. **buys**: the flash-sale burst's hub part (`run_buy_bench.run_hub`): a real `livecommerce serve` pinned to
   one CPU with its own `redis-server`, a flash sale of `--units` units (cap `--cap`) pinned with `pin`, buy taps
   from every buyer over Socket.IO, audited from Redis.
b. **claims** / **claims-out**: the same hub, a fresh Redis; the host pins a product (the claim's ack quotes the
   price after vouchers for it) and then a platform voucher (created through the domain layer with its campaign,
   loaded into Redis by the real `pin {room_id, voucher_id}`); every buyer sends
   `claim_voucher {room_id, voucher_id, idempotency_key}`, timed write -> ack. `claims`: quota and budget cover
   every attempt (every claim within the per-buyer limit `--cap` writes); `claims-out`: the budget covers
   `--units` claims, the rest are refused `voucher_budget_spent` (the sold-out case). Audited from Redis
   afterwards (claimed <= quota, per buyer <= limit, reserved + spent + free = funded), and the budget's sum is
   also read 20 times a second during the burst.
c. **claim-ceiling**: `voucher_claim` driven directly (`claim_parts.run_claim_ceiling`: hiredis, pipelined, 1,
   16 and 64 claims per call) against a fresh Redis pinned alone on the server's CPU, for both voucher plans;
   **buy-ceiling**: `pool_reserve` the same way (`buy_peers.run_ceiling`), the peer of the buys.

    .venv/bin/python loadtests/run_claim_bench.py --users 2000 --attempts 5000 --no-write
    .venv/bin/python loadtests/run_claim_bench.py            # everything, appends to docs/benchmarks.md

Every process started is stopped in `finally` blocks; servers also get SIGTERM when this process dies
(`PR_SET_PDEATHSIG`), the whole invocation stops at `--max-seconds`, each phase at its own timeout. Only
127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import math
import os
import resource
import shlex
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from buy_peers import CeilingResult, run_ceiling
from buy_seed import Database, RedisServer, World, free_port, new_sale, seed
from buyer_fleet import BuyerFleet, FleetConfig, emit_once
from claim_parts import BudgetWatch, VoucherAudit, VoucherPlan, audit_voucher, new_voucher, run_claim_ceiling
from run_buy_bench import (
    PYTHON,
    HubResult,
    _cpu_of,
    _Database,
    _env,
    _fcalls,
    _machine_busy_s,
    _ms,
    _pg_transactions,
    _py_spy,
    _redis_version,
    _reset_stats,
    _terminate,
    _wait_http,
    attempt_plan,
    run_hub,
    summarise_profile,
)
from run_buy_bench import (
    _parser as buy_parser,
)
from run_hub_bench import Budget, BudgetExceeded, _machine, server_process, wait_for_quiet

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "benchmarks.md"
PARTS = ("buys", "buys-open", "claims", "claims-out", "claims-bare", "claim-ceiling", "buy-ceiling")
SECTION = "## Voucher claims: through one hub, against buy taps and the Redis ceiling"


@dataclass
class ClaimHubResult(HubResult):
    voucher_id: int = 0
    plan: VoucherPlan | None = None
    voucher_audit: VoucherAudit | None = None
    commands: dict[str, int] = field(default_factory=dict)


def commandstats(url: str) -> dict[str, int]:
    """Calls per Redis command since the last CONFIG RESETSTAT (the burst, and the audit's few reads)."""
    from redis import Redis

    client = Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v.get("calls", 0)) for k, v in stats.items() if isinstance(v, dict)}


def _commands_line(r: HubResult, stats: dict[str, int]) -> str:
    n = max(1, r.burst.answered if r.burst else 1)
    top = sorted(((c, k) for k, c in stats.items() if k not in ("config|resetstat", "info")), reverse=True)
    shown = ", ".join(f"{k.upper()} {c / n:.2f}" for c, k in top[:14] if c / n >= 0.01)
    return f"{sum(c for c, _ in top) / n:.2f} ({shown})"


def voucher_plans(args: argparse.Namespace) -> dict[str, VoucherPlan]:
    """`claims`: quota and budget far above any run's claims; `claims-out`: a budget for `--units` claims."""
    big = 10_000_000
    return {
        "claims": VoucherPlan("quota and budget for every claim", quota=big, limit=args.cap, budget_claims=big),
        "claims-out": VoucherPlan(
            f"budget for {args.units:,} claims", quota=big, limit=args.cap, budget_claims=args.units
        ),
        "claims-bare": VoucherPlan(
            "quota and budget for every claim, no product pinned", quota=big, limit=args.cap, budget_claims=big
        ),
    }


def run_claims(
    label: str, world: World, db: Database, redis: RedisServer, plan: list[int], vplan: VoucherPlan,
    args: argparse.Namespace, logs: Path, budget: Budget,
) -> ClaimHubResult:  # fmt: skip
    """One hub process, the host pins the product then the voucher, every buyer claims it (like `run_hub`).
    `claims-bare`: only the voucher is pinned, so the claim's ack quotes nothing (what the quote costs)."""
    result = ClaimHubResult(label=label, hubs=1, plan=vplan)
    available = sorted(os.sched_getaffinity(0))
    generator_cpus = [c for c in available if c != args.server_cpu] or available
    result.generator_cpus = len(generator_cpus)
    port = free_port()
    data_dir = logs / f"{label}-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _env(db, redis.url, data_dir)
    result.voucher_id = voucher_id = asyncio.run(new_voucher(db.url, world, vplan))
    watch: BudgetWatch | None = None
    with contextlib.ExitStack() as stack:
        command = [PYTHON, "-m", "livecommerce.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        log = logs / f"{label}-hub.log"
        print(f"[{label}] hub: taskset -c {args.server_cpu} {shlex.join(command)} (log {log})", flush=True)
        process = stack.enter_context(server_process(command, env, args.server_cpu, log))
        _wait_http(port, time.monotonic() + budget.bound(60), lambda: process.poll() is None)
        server_pids = [process.pid]
        pins = [("voucher", {"room_id": world.room_id, "voucher_id": voucher_id})]
        if label != "claims-bare":
            pins.insert(0, ("product", {"room_id": world.room_id, "product_id": world.product_id}))
        for what, payload in pins:
            pinned = asyncio.run(emit_once(port, world.host_token, world.room_id, "pin", payload))
            if not pinned.get("ok"):
                raise RuntimeError(f"the host could not pin the {what}: {pinned}")
        card = (pinned.get("data") or {}).get("voucher") or {}
        print(f"[{label}] pinned {', then '.join(what for what, _ in pins)}: voucher {voucher_id} "
              f"({card.get('left')} left)", flush=True)  # fmt: skip
        tokens = world.tokens()[: args.buyers]
        buyer_ids = [world.first_user + i for i in range(args.buyers)]
        config = FleetConfig(
            (port,), world.room_id, world.product_id, connect_concurrency=args.connect_concurrency,
            event="claim_voucher", voucher_id=voucher_id, retry_every=args.retry_every,
        )  # fmt: skip
        processes_n = args.generators or max(len(generator_cpus), math.ceil(args.buyers / 12_000))
        with BuyerFleet(config, tokens, buyer_ids, processes=processes_n, cpus=generator_cpus) as fleet:
            cpu_before = _cpu_of(server_pids)
            result.connect = fleet.connect(timeout=budget.bound(args.connect_timeout))
            result.connect_cpu_ms = (_cpu_of(server_pids) - cpu_before) * 1000 / max(1, result.connect.connected)
            c = result.connect
            print(f"[{label}] connected {c.connected:,}/{c.requested:,} in {c.wall_s:.1f} s"
                  f" ({result.connect_cpu_ms:.2f} ms server CPU each) {c.errors[:1]}", flush=True)  # fmt: skip
            time.sleep(min(2.0, budget.bound(2.0)))
            _reset_stats(redis.url)
            xacts_before = _pg_transactions(db)
            server_before, redis_before = _cpu_of(server_pids), _cpu_of([redis.pid])
            generator_before = fleet.cpu_seconds()
            machine_before, me_before = _machine_busy_s(), _cpu_of([os.getpid()])
            profile_path = logs / f"{label}-py-spy.txt"
            with BudgetWatch(redis.url, voucher_id) as watch, _py_spy(
                args.py_spy, server_pids[0], args.profile_seconds, profile_path
            ):  # fmt: skip
                result.burst = fleet.burst(plan, args.window, timeout=budget.bound(args.burst_timeout))
            result.server_cpu_s = _cpu_of(server_pids) - server_before
            result.redis_cpu_s = _cpu_of([redis.pid]) - redis_before
            result.generator_cpu_s = fleet.cpu_seconds() - generator_before
            ours = result.server_cpu_s + result.redis_cpu_s + result.generator_cpu_s
            ours += _cpu_of([os.getpid()]) - me_before
            result.other_cpu_s = max(0.0, _machine_busy_s() - machine_before - ours)
            result.fcalls = _fcalls(redis.url)
            result.commands = commandstats(redis.url)
            result.sql_transactions = max(0, _pg_transactions(db) - xacts_before)
            result.profile = summarise_profile(profile_path)
    b = result.burst
    if b is not None:
        unavailable = b.refusals.get("unavailable", 0)
        result.voucher_audit = asyncio.run(
            audit_voucher(redis.url, voucher_id, b.units_by_buyer, b.hold_ids, unavailable, watch)
        )
    return result


# --------------------------------------------------------------------------------------------------------------
# Report


def _per_k(cpu_s: float, n: int) -> str:
    return f"{cpu_s * 1e6 / max(1, n):.0f} µs" if n else "-"


def _row(r: HubResult, what: str) -> str:
    if r.burst is None or r.connect is None:
        return f"| {r.label} | failed: {r.error} |" + " |" * 9
    b = r.burst
    refusals = ", ".join(f"{code} {n:,}" for code, n in b.refusals.items()) or "none"
    both = r.server_cpu_s + r.redis_cpu_s
    return (
        f"| {r.label} | {r.connect.connected:,} | {b.answered:,} of {b.attempts:,} in {b.wall_s:.2f} s"
        f" | **{r.rate:,.0f}/s** | {_ms(r.percentile_ms(0.5))} / {_ms(r.percentile_ms(0.99))}"
        f" | {b.successes:,} {what}{f' (+{b.replayed:,} replayed)' if b.replayed else ''} | {refusals}"
        f" | {_per_k(r.server_cpu_s, b.answered)} + {_per_k(r.redis_cpu_s, b.answered)} = "
        f"**{_per_k(both, b.answered)}** ({both / max(b.wall_s, 1e-9):.0%} of a core)"
        f" | {r.fcalls:,} | {r.sql_transactions:,}"
        f" | {r.generator_cpu_s / max(b.wall_s, 1e-9) / r.generator_cpus:.0%}"
        f" | {r.other_cpu_s / max(b.wall_s, 1e-9):.2f} |"
    )


_HEADER = (
    "| run | buyers connected | answered | **per second** | p50 / p99 write→ack | taken | refusals"
    " | CPU per op: hub + its Redis | FCALLs | SQL transactions | generator busy | other tenants (cores) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
)


def _verdict(hubs: Sequence[HubResult], claim_ceilings: Sequence[CeilingResult],
             buy_ceilings: Sequence[CeilingResult], plans: dict[str, VoucherPlan]) -> str:  # fmt: skip
    buys = next((r for r in hubs if r.label == "buys" and r.burst), None)
    out = ["Against the issue's target (this run):\n"]
    for r in hubs:
        if not isinstance(r, ClaimHubResult) or r.burst is None:
            continue
        peers = [b for b in hubs if b.label in ("buys", "buys-open") and b.burst and b.rate]
        for peer in peers:
            ratio = r.rate / peer.rate
            by_cpu = 1 / _cpu_ratio(r, peer)
            out.append(f"- `{r.label}` against `{peer.label}`: {r.rate:,.0f} claims/s against {peer.rate:,.0f} buy "
                       f"taps/s through one hub = **{ratio:.0%}** as measured; by CPU (hub + its Redis per operation: "
                       f"{_per_op_us(r):.0f} µs a claim, {_per_op_us(peer):.0f} µs a buy tap), what one core would "
                       f"do: **{by_cpu:.0%} — target ≥ 70%: {'met' if by_cpu >= 0.7 else 'missed'}**.")  # fmt: skip
        base = "claims-out" if r.label == "claims-out" else "claims"
        same = [c for c in claim_ceilings if plans[base].label + ":" in c.label]
        if same:
            best = max(same, key=lambda c: c.rate)
            bound = max(_redis_bound(c) for c in same)
            out.append(f"- `{r.label}`: {r.rate / best.rate:.0%} of what the minimal client got through "
                       f"`voucher_claim` for this voucher ({best.rate:,.0f}/s, {best.label.split(': ', 1)[1]}), "
                       f"{r.rate / bound:.0%} of Redis's own bound (1 s / its CPU per claim at the best batching: "
                       f"{bound:,.0f}/s).")  # fmt: skip
        if r.voucher_audit is not None:
            out.append(f"- Audit after `{r.label}`: {r.voucher_audit.line()}.")
    if buys is not None and buy_ceilings:
        best = max(buy_ceilings, key=lambda c: c.rate)
        bound = max(_redis_bound(c) for c in buy_ceilings)
        out.append(f"- `buys`: {buys.rate / best.rate:.0%} of what the minimal client got through `pool_reserve` "
                   f"({best.rate:,.0f}/s), {buys.rate / bound:.0%} of Redis's own bound ({bound:,.0f}/s).")  # fmt: skip
    return "\n".join(out) + "\n"


def _per_op_us(r: HubResult) -> float:
    return (r.server_cpu_s + r.redis_cpu_s) * 1e6 / max(1, r.burst.answered if r.burst else 1)


def _redis_bound(c: CeilingResult) -> float:
    """What Redis alone could complete per second: 1 s over its CPU per attempt (the client may be the limit)."""
    return c.attempts / c.redis_cpu_s if c.redis_cpu_s > 0 else math.nan


def _cpu_ratio(r: HubResult, peer: HubResult) -> float:
    assert r.burst is not None
    assert peer.burst is not None
    mine = (r.server_cpu_s + r.redis_cpu_s) / max(1, r.burst.answered)
    theirs = (peer.server_cpu_s + peer.redis_cpu_s) / max(1, peer.burst.answered)
    return mine / theirs if theirs else math.nan


def report(
    command: str, args: argparse.Namespace, started: datetime.datetime, machine: str, db: Database,
    world: World | None, hubs: Sequence[HubResult], ceilings: Sequence[CeilingResult],
    stats: dict[str, dict[str, int]], note: str | None,
) -> str:  # fmt: skip
    took = datetime.datetime.now(datetime.UTC) - started
    claim_ceilings = [c for c in ceilings if c.kind == "claim-ceiling"]
    buy_ceilings = [c for c in ceilings if c.kind == "ceiling"]
    retries = (
        f"Every {args.retry_every}th tap (buy or claim) resends the buyer's previous key (a retry: the same hold or "
        "claim must come back, replayed). "
        if args.retry_every
        else ""
    )
    lines = [
        f"\n### {started:%Y-%m-%d %H:%M} UTC — voucher claims and buy taps through one hub, Redis ceilings\n",
        *([f"{note}\n"] if note else []),
        f"Command: `{command}` (took {took.total_seconds() / 60:.1f} min)\n",
        f"Machine: {machine}; Redis {_redis_version()}; {db.note or 'PostgreSQL'}.\n",
        f"Workload: {args.attempts:,} taps from {args.buyers:,} signed-in buyers (of {args.users:,} seeded; a "
        f"process may hold at most {resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,} sockets here), 2% of them "
        f"tapping 4 times early, the rest 2 to 3 times, each tap with its own idempotency key; at most "
        f"{args.window:,} in flight, one per buyer at a time; the hub on CPU {args.server_cpu} with its Redis "
        f"(`taskset`), the generator on the other CPU. `buys`: `buy` of a flash sale of {args.units:,} units, cap "
        f"{args.cap} per buyer; `buys-open`: a sale of {args.attempts:,} units (every tap within the cap takes "
        f"one). `claims*`: the host pins the product, then a platform voucher ({500} off, any brand, per-buyer "
        f"limit {args.cap}); `claim_voucher` acks carry the claim and the quote for the pinned "
        f"product; `claims-bare` pins only the voucher (the ack quotes nothing). "
        f"{retries}"
        f"Each run on a fresh Redis.\n",
    ]
    if world is not None:
        lines.append(f"Seeding ({args.users:,} users, room, sales, vouchers) took {world.seed_seconds:.1f} s.\n")
    if hubs:
        rows = [_row(r, "claims" if isinstance(r, ClaimHubResult) else "holds") for r in hubs]
        lines.append(_HEADER + "\n".join(rows) + "\n")
        for r in hubs:
            if r.audit is not None:
                lines.append(f"- Audit after `{r.label}`: {r.audit.line()}.")
            if r.burst is not None and r.burst.unanswered:
                lines.append(f"- `{r.label}`: {r.burst.unanswered:,} taps unanswered by the timeout.")
        lines.append("")
        lines.append(
            "Redis commands per operation during each burst (INFO commandstats: the hub's calls, and the commands "
            "the functions run inside Redis; HELLO and PING are redis-py opening connections):\n"
        )
        lines += [f"- `{r.label}`: {_commands_line(r, stats[r.label])}" for r in hubs if stats.get(r.label)]
        lines.append("")
    if ceilings:
        lines.append(
            f"Redis-side ceilings (Redis alone on CPU {args.server_cpu}; hiredis clients on the other CPU):\n\n"
            "| path | attempts | attempts/s | Redis CPU busy | Redis µs per attempt | client CPU per attempt "
            "| claims or holds |\n|---|---|---|---|---|---|---|"
        )
        lines += [c.row() for c in ceilings]
        lines.append("")
    lines.append(_verdict(hubs, claim_ceilings, buy_ceilings, voucher_plans(args)))
    for r in [r for r in hubs if r.profile]:
        lines.append(f"\npy-spy on the hub process during the first {args.profile_seconds:g} s of `{r.label}` "
                     "(share of samples):\n\n```\n" + "\n".join(r.profile) + "\n```\n")  # fmt: skip
    return "\n".join(lines) + "\n"


def append_report(path: Path, text: str) -> None:
    """Under `SECTION` (created at the end of the file the first time), after the entries already there."""
    existing = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION not in existing:
        existing = existing.rstrip("\n") + f"\n\n{SECTION}\n\nWritten by `loadtests/run_claim_bench.py`.\n"
    head, _, tail = existing.partition(SECTION)
    cut = tail.find("\n## ")
    body, rest = (tail, "") if cut < 0 else (tail[:cut], tail[cut:])
    path.write_text(head + SECTION + body.rstrip("\n") + "\n" + text + rest)


# --------------------------------------------------------------------------------------------------------------
# Entry point


def _parser() -> argparse.ArgumentParser:
    parser = buy_parser()
    parser.description = __doc__.split("\n\n")[0]
    parser.set_defaults(parts=",".join(PARTS), users=5_000, attempts=20_000, out=DEFAULT_OUT)
    parser.add_argument(
        "--retry-every",
        type=int,
        default=10,
        help="every Nth tap (buy or claim) resends the buyer's previous key (0: none)",
    )
    parser.add_argument("--ceiling-attempts", type=int, default=100_000, help="claims per ceiling shape (at least)")
    for action in parser._actions:
        if action.dest == "parts":
            action.help = f"comma-separated, of: {', '.join(PARTS)}"
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; choose from {PARTS}")
    available = sorted(os.sched_getaffinity(0))
    if args.server_cpu not in available or len(available) < 2:
        raise SystemExit(f"need a server CPU and at least one other CPU; have {available}")
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join([".venv/bin/python", "loadtests/run_claim_bench.py", *(argv or sys.argv[1:])])
    started = datetime.datetime.now(datetime.UTC)
    machine = _machine()
    budget = Budget(args.max_seconds)
    fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    args.buyers = min(args.users, fd_hard - 150)
    plan = attempt_plan(args.buyers, args.attempts)
    plans = voucher_plans(args)
    hubs: list[HubResult] = []
    ceilings: list[CeilingResult] = []
    stats: dict[str, dict[str, int]] = {}  # Redis commands of each hub part's burst
    world: World | None = None
    interrupted = False
    logs = Path(tempfile.mkdtemp(prefix=f"claim-bench-{os.getpid()}-"))
    print(f"logs and data: {logs}", flush=True)
    others = [c for c in available if c != args.server_cpu]
    database = _Database(logs)
    try:
        db = database.open()
        if db.note:
            print(db.note, flush=True)
        busy = wait_for_quiet(budget, args.quiet_wait)
        print(f"machine {busy:.0%} busy before the start", flush=True)
        for part in [p for p in parts if p in ("buys", "buys-open", "claims", "claims-out", "claims-bare")]:
            with RedisServer(logs / f"redis-{part}", args.server_cpu) as redis:
                units = args.attempts if part == "buys-open" else args.units  # buys-open: a unit for every tap
                if world is None:
                    world = asyncio.run(seed(db.url, redis.url, users=args.users, units=units, cap=args.cap))
                else:
                    world = asyncio.run(new_sale(db.url, redis.url, dataclasses.replace(world, units=units)))
                result: HubResult
                try:
                    if part in ("buys", "buys-open"):
                        result = run_hub(part, world, db, redis, plan, args, logs, budget, 1)
                        stats[part] = commandstats(redis.url)
                    else:
                        result = run_claims(part, world, db, redis, plan, plans[part], args, logs, budget)
                except (OSError, TimeoutError, RuntimeError, BudgetExceeded) as exc:
                    result = HubResult(label=part, hubs=1, error=f"{type(exc).__name__}: {exc}"[:300])
            hubs.append(result)
            if isinstance(result, ClaimHubResult):
                stats[part] = result.commands
            print(f"[{part}] {_row(result, 'ok')}", flush=True)
            audit = getattr(result, "voucher_audit", None) or result.audit
            if audit is not None:
                print(f"[{part}] audit: {audit.line()}", flush=True)
            if result.profile:
                print("\n".join(result.profile), flush=True)
        os.sched_setaffinity(0, others)  # the clients below stay off the server's CPU
        if "claim-ceiling" in parts or "buy-ceiling" in parts:
            with RedisServer(logs / "redis-ceiling", args.server_cpu) as redis:
                if "claim-ceiling" in parts:
                    budget.bound(120)
                    rounds = max(3, math.ceil(args.ceiling_attempts / len(plan)))
                    ceiling_plans = [plans["claims"], plans["claims-out"]]
                    found = asyncio.run(run_claim_ceiling(redis.url, redis.pid, plan, ceiling_plans, rounds))
                    for c in found:
                        ceilings.append(c)
                        print(c.row(), c.refusals, flush=True)
                if "buy-ceiling" in parts:
                    budget.bound(120)
                    for c in asyncio.run(run_ceiling(redis.url, redis.pid, args, others)):
                        ceilings.append(c)
                        print(c.row(), c.refusals, flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: every process started has been stopped; writing what was measured", flush=True)
    finally:
        os.sched_setaffinity(0, available)
        database.close()
    db = database.db or Database("?", None, None, "no database")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "hubs": [{**asdict(r), "burst": {**asdict(r.burst), "latencies_ns": None} if r.burst else None}
                     for r in hubs],
            "ceilings": [asdict(c) for c in ceilings],
        }, indent=2, default=str))  # fmt: skip
    text = report(command, args, started, machine, db, world, hubs, ceilings, stats, args.note)
    if (any(r.burst for r in hubs) or ceilings) and not args.no_write:
        append_report(args.out, text)
        print(f"appended to {args.out}:\n{text}")
    else:
        print(text)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
