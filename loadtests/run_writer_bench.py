"""The order-writer benchmark: paid orders per second into PostgreSQL, and the lag, side by side in one run.

For each target (`current`: this tree, whose writer posts ledger lines; `previous`: another checkout, e.g. the
commit before the ledger) and each `--rates` value, on a fresh private `redis-server` and a fresh PostgreSQL
database (the same schema, this tree's migrations):

1. `buy_seed.seed` inserts the buyers, a brand, a host, a live room and a live flash sale, loaded into Redis;
   for `current` an approved collaboration of the host is added, so every hold carries commission terms and
   each paid order posts four ledger lines (buyer paid, platform fee, creator commission, brand net).
2. `writer_parts.py writer` (the target's `OrderWriter`, one consumer) starts, then `writer_parts.py producer`
   makes `rate` paid orders a second for `--seconds` through the real pool functions.
3. Every 100 ms the harness reads the age of the oldest entry still in the pool's outbox (the writer deletes
   what it has committed and acknowledged, so that age *is* the writer's lag), and the writer's and Redis's
   CPU. After the producer stops it waits for the outbox to drain (at most `--drain-timeout`).
4. It checks SQL: every paid hold is one paid order; for `current`, the ledger sums to 0 and has its lines.

    .venv/bin/python loadtests/run_writer_bench.py --previous DIR        # DIR: git worktree add --detach DIR REV
    .venv/bin/python loadtests/run_writer_bench.py --targets current --rates 500 --seconds 5 --no-write
    .venv/bin/python loadtests/run_writer_bench.py ... --timings DIR   # ms per SQL statement and writer phase

Run it with this tree on PYTHONPATH (`PYTHONPATH=.`) when the virtualenv's `livecommerce` is another checkout's:
the harness migrates each database with the `livecommerce` it imports.

Only 127.0.0.1 is used; every process started is stopped in `finally` blocks, and the invocation stops at
`--max-seconds`. Results are appended to docs/benchmarks.md unless `--no-write`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from buy_seed import Database, RedisServer, create_database, drop_database, seed
from redis.asyncio import Redis
from run_hub_bench import _machine
from sqlalchemy import func, select

from livecommerce.commerce.terms import SaleTerms
from livecommerce.database import create_engine, session_factory
from livecommerce.models import (
    Collaboration,
    CollaborationStatus,
    CommissionPlan,
    FeeBase,
    LedgerLine,
    Order,
    OrderStatus,
    PlanKind,
    PlanRate,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
PARTS = HERE / "writer_parts.py"
CAP = 10  # units per buyer (the sale's per-buyer cap): buyers = orders / CAP
COMMISSION_BPS = 1500


@dataclass
class Result:
    target: str
    rate: int
    paid: int = 0
    orders: int = 0
    lines: int = 0
    ledger_sum: int | None = None
    produce_s: float = 0.0
    drain_s: float | None = None  # after the producer stopped, until the outbox was empty
    lag_p50_s: float = 0.0
    lag_p99_s: float = 0.0
    lag_max_s: float = 0.0
    batches: float = 0.0  # mean entries per non-empty step
    writer_cpu_s: float = 0.0
    redis_cpu_s: float = 0.0
    producer_late_s: float = 0.0
    error: str = ""

    @property
    def written_per_s(self) -> float:
        total = self.produce_s + (self.drain_s or 0.0)
        return self.orders / total if total else 0.0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _add_collaboration(database_url: str, host_id: int, brand_id: int, product_id: int) -> str:
    """An approved open-plan collaboration of the host for the product; returns the terms token holds carry."""
    engine = create_engine(database_url)
    now = datetime.datetime.now(datetime.UTC)
    try:
        async with session_factory(engine).begin() as session:
            plan = CommissionPlan(
                brand_id=brand_id, kind=PlanKind.OPEN, name="Bench open plan", open_brand_id=brand_id,
                created_by=host_id, created_at=now,
            )  # fmt: skip
            session.add(plan)
            await session.flush()
            rate = PlanRate(
                plan_id=plan.id, product_id=product_id, rate_bps=COMMISSION_BPS, set_at=now, effective_at=now,
                set_by=host_id,
            )  # fmt: skip
            session.add(rate)
            collaboration = Collaboration(
                plan_id=plan.id, brand_id=brand_id, creator_id=host_id, status=CollaborationStatus.APPROVED,
                created_at=now, decided_at=now, approved_at=now,
            )  # fmt: skip
            session.add(collaboration)
            await session.flush()
            terms = SaleTerms(host_id, collaboration.id, COMMISSION_BPS, None, 200, FeeBase.BUYER_PAID)
    finally:
        await engine.dispose()
    return terms.encode()


async def _sql_check(database_url: str, ledger: bool) -> tuple[int, int, int | None]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            orders = await session.scalar(select(func.count()).where(Order.status == OrderStatus.PAID))
            if not ledger:
                return int(orders or 0), 0, None
            lines = await session.scalar(select(func.count()).select_from(LedgerLine))
            total = await session.scalar(select(func.coalesce(func.sum(LedgerLine.amount_minor), 0)))
            return int(orders or 0), int(lines or 0), int(total or 0)
    finally:
        await engine.dispose()


def _spawn(tree: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE}"}
    return subprocess.Popen(
        [sys.executable, str(PARTS), *args], env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )


def _last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


async def run_one(target: str, tree: Path, rate: int, args: argparse.Namespace, work: Path) -> Result:
    result = Result(target, rate)
    orders = int(rate * args.seconds)
    users = orders // CAP + 10
    db: Database = await create_database(work)
    writer: subprocess.Popen[str] | None = None
    producer: subprocess.Popen[str] | None = None
    try:
        with RedisServer(work / f"redis-{target}-{rate}", cpu=None) as redis_server:
            world = await seed(db.url, redis_server.url, users=users, units=orders + 10, cap=CAP)
            terms = ""
            if target == "current":
                terms = await _add_collaboration(db.url, world.host_id, world.brand_id, world.product_id)
            limit = str(args.seconds + args.drain_timeout + 60)
            timings = ("--timings", str(args.timings / f"writer-{target}-{rate}.json")) if args.timings else ()
            writer = _spawn(tree, "writer", "--redis-url", redis_server.url, "--database-url", db.url,
                            "--batch", str(args.batch), "--max-seconds", limit, *timings)  # fmt: skip
            assert writer.stdout is not None
            await asyncio.to_thread(writer.stdout.readline)  # {"ready": true}
            spy = None
            if args.profile:
                spy = subprocess.Popen(  # noqa: ASYNC220 - started once, not waited on here
                    ["py-spy", "record", "--idle", "--pid", str(writer.pid), "--duration", str(int(args.seconds)),
                     "--format", "raw", "--output", str(args.profile / f"writer-{target}-{rate}.txt")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            redis = Redis.from_url(redis_server.url)
            outbox = world.pool.outbox
            writer_ps, redis_ps = psutil.Process(writer.pid), psutil.Process(redis_server.pid)
            w0, r0 = writer_ps.cpu_times(), redis_ps.cpu_times()
            producer = _spawn(tree, "producer", "--redis-url", redis_server.url, "--pool", world.pool.name,
                              "--room", str(world.room_id), "--first-user", str(world.first_user), "--users",
                              str(users), "--cap", str(CAP), "--rate", str(rate), "--seconds", str(args.seconds),
                              "--terms", terms)  # fmt: skip
            lags: list[float] = []
            started = time.monotonic()
            stopped: float | None = None
            try:
                while True:
                    oldest = await redis.xrange(outbox, count=1)
                    now_ms = time.time() * 1000
                    lag = (now_ms - int(oldest[0][0].split(b"-")[0])) / 1000 if oldest else 0.0
                    lags.append(max(lag, 0.0))
                    if stopped is None and producer.poll() is not None:
                        stopped = time.monotonic()
                    if stopped is not None and not oldest:
                        result.drain_s = time.monotonic() - stopped
                        break
                    if stopped is not None and time.monotonic() - stopped > args.drain_timeout:
                        result.error = f"outbox not drained {args.drain_timeout:.0f} s after the producer stopped"
                        break
                    await asyncio.sleep(0.1)
            finally:
                await redis.aclose()
            w1, r1 = writer_ps.cpu_times(), redis_ps.cpu_times()
            if spy is not None:
                spy.wait(30)
            result.writer_cpu_s = (w1.user + w1.system) - (w0.user + w0.system)
            result.redis_cpu_s = (r1.user + r1.system) - (r0.user + r0.system)
            result.produce_s = (stopped or time.monotonic()) - started
            out, _ = producer.communicate(timeout=30)
            made = _last_json(out)
            result.paid = int(made.get("paid", 0))
            result.producer_late_s = float(made.get("worst_late_s", 0.0))
            writer.terminate()
            wout, _ = writer.communicate(timeout=30)
            stats = _last_json(wout)
            result.batches = stats.get("entries", 0) / max(1, stats.get("busy_steps", 0))
            result.lag_p50_s, result.lag_p99_s = _percentile(lags, 0.5), _percentile(lags, 0.99)
            result.lag_max_s = max(lags, default=0.0)
            result.orders, result.lines, result.ledger_sum = await _sql_check(db.url, target == "current")
    except Exception as exc:  # noqa: BLE001 - one failed run is reported, the others still run
        result.error = result.error or f"{type(exc).__name__}: {exc}"
    finally:
        for process in (producer, writer):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
        await drop_database(db)
    return result


def _describe(tree: Path | None) -> str:
    if tree is None:
        return "previous"
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"previous ({head.stdout.strip() or tree})"


def report(results: list[Result], args: argparse.Namespace, command: str, labels: dict[str, str]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        f"### {when} — order writer: {', '.join(labels[t] for t in args.targets)}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {_machine()}.",
        "",
        f"Run: {args.seconds:.0f} s of paid orders per rate, writer batch {args.batch}, one writer process; fresh "
        "private Redis and PostgreSQL database per run; nothing pinned (PostgreSQL is the machine's).",
        "",
        "| target | rate (orders/s) | paid | orders in SQL | ledger lines (sum) | written/s | lag p50 / p99 / max "
        "| drain after stop | mean batch | writer CPU / 1k orders | Redis CPU | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ledger = f"{r.lines:,} ({r.ledger_sum})" if r.ledger_sum is not None else "—"
        drain = f"{r.drain_s:.2f} s" if r.drain_s is not None else "not drained"
        per_k = r.writer_cpu_s / max(1, r.orders) * 1000
        note = r.error or (f"producer late by up to {r.producer_late_s:.2f} s" if r.producer_late_s > 0.1 else "")
        out.append(
            f"| {labels[r.target]} | {r.rate:,} | {r.paid:,} | {r.orders:,} | {ledger} | {r.written_per_s:,.0f} "
            f"| {r.lag_p50_s:.2f} / {r.lag_p99_s:.2f} / {r.lag_max_s:.2f} s | {drain} | {r.batches:.0f} "
            f"| {per_k:.2f} s | {r.redis_cpu_s:.1f} s | {note} |"
        )
    return "\n".join(out) + "\n"


async def amain(args: argparse.Namespace) -> list[Result]:
    deadline = time.monotonic() + args.max_seconds
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="writer-bench-") as tmp:
        for rate in args.rates:
            for target in args.targets:
                if time.monotonic() > deadline - (args.seconds + args.drain_timeout + 30):
                    results.append(Result(target, rate, error="skipped: --max-seconds reached"))
                    continue
                tree = REPO if target == "current" else args.previous
                results.append(await run_one(target, tree, rate, args, Path(tmp)))
                print(json.dumps(results[-1].__dict__), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="current,previous", type=lambda s: s.split(","))
    parser.add_argument("--previous", type=Path, default=None, help="a checkout the `previous` writer runs from")
    parser.add_argument("--timings", type=Path, default=None, help="a directory for each writer's time per statement")
    parser.add_argument("--rates", default="2000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--profile", type=Path, default=None, help="a directory for py-spy profiles of the writer")
    args = parser.parse_args(argv)
    if "previous" in args.targets and args.previous is None:
        parser.error("--targets previous needs --previous DIR (git worktree add --detach DIR REV)")
    command = "loadtests/run_writer_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    labels = {"current": "current (with ledger)", "previous": _describe(args.previous)}
    results = asyncio.run(amain(args))
    text = report(results, args, command, labels)
    print(text)
    if not args.no_write:
        with args.out.open("a") as handle:
            handle.write("\n" + text)
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
