"""The order-writer benchmark's two processes, run with the `livecommerce` of the tree under test on PYTHONPATH.

    writer_parts.py writer   --redis-url URL --database-url URL --batch N
    writer_parts.py producer --redis-url URL --pool s7 --first-user ID --users N --cap C --rate R --seconds T
                             [--terms TOKEN]

* `writer`: one `OrderWriter` (consumer group `order-writer`) stepping until SIGTERM, then one JSON line on
  stdout: steps, entries, busy steps, CPU seconds. It only imports what every tree since 2026-11-21 has.
* `producer`: `--rate` paid orders a second for `--seconds`, through the real pool functions: every 20 ms one
  `pool_reserve` call (batched, as the hub's batcher makes it) and one pipeline of `pool_begin_payment` +
  `pool_complete_payment` per hold, so the outbox gets a `reserved` and a `paid` entry per order exactly as in
  production. `--terms` is sent with each reservation (the tree must take a sixth reservation argument).
  Prints one JSON line: orders paid, seconds, how late the pacing fell.

Both stop by themselves (the producer after `--seconds`, the writer on SIGTERM or after `--max-seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_writer(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    from livecommerce.commerce.orders import OrderWriter
    from livecommerce.commerce.pools import Inventory
    from livecommerce.database import create_engine, session_factory

    redis = Redis.from_url(args.redis_url)
    engine = create_engine(args.database_url)
    writer = OrderWriter(
        redis, session_factory(engine), Inventory(redis), consumer="bench-writer", batch=args.batch, block_ms=100
    )
    timings = _time_statements(engine, writer) if args.timings else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    deadline = time.monotonic() + args.max_seconds
    steps = entries = busy = 0
    cpu0 = _cpu()
    print(json.dumps({"ready": True}), flush=True)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            handled = await writer.step()
            steps += 1
            entries += handled
            busy += bool(handled)
    finally:
        await redis.aclose()
        await engine.dispose()
    result: dict[str, Any] = {"steps": steps, "busy_steps": busy, "entries": entries, "cpu_s": _cpu() - cpu0}
    if timings is not None:
        ordered = {name: round(ms) for name, ms in sorted(timings.items(), key=lambda kv: -kv[1])}
        Path(args.timings).write_text(json.dumps(ordered, indent=1))  # noqa: ASYNC240 - once, at the end
    return result


def _time_statements(engine: Any, writer: Any) -> dict[str, float]:
    """Wall milliseconds spent per SQL statement kind and per writer phase (`--timings FILE`): where a batch's
    time goes. Statements are named by their first words; phases by the writer's method."""
    from sqlalchemy import event

    spent: dict[str, float] = {}
    started: list[float] = []

    def before(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        started.append(time.perf_counter())

    def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        name = "sql " + " ".join(statement.split()[:4])[:60]
        spent[name] = spent.get(name, 0.0) + (time.perf_counter() - started.pop()) * 1000

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    event.listen(engine.sync_engine, "after_cursor_execute", after)
    for phase in ("_apply", "_read", "_ack", "_claim", "_streams"):
        original = getattr(writer, phase)

        async def timed(*a: Any, _original: Any = original, _phase: str = phase, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await _original(*a, **k)
            finally:
                spent["phase " + _phase] = spent.get("phase " + _phase, 0.0) + (time.perf_counter() - t0) * 1000

        setattr(writer, phase, timed)
    return spent


async def run_producer(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    from livecommerce.commerce.pools import PoolId
    from livecommerce.scripts import lua_source

    pool = PoolId.parse(args.pool)
    keys = list(pool.keys)
    redis = Redis.from_url(args.redis_url)
    # The pool functions of the tree under test (the seed loaded this tree's: their arguments may differ).
    await redis.function_load(lua_source("pools.lua"), replace=True)
    tick = 0.02
    per_tick = max(1, round(args.rate * tick))
    buyer = 0
    bought: dict[int, int] = {}
    paid = 0
    worst_late = 0.0
    start = time.monotonic()
    ticks = round(args.seconds / tick)
    try:
        for n in range(ticks):
            due = start + n * tick
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                worst_late = max(worst_late, -wait)
            reserve: list[Any] = [per_tick]
            for _ in range(per_tick):
                while bought.get(buyer, 0) >= args.cap:
                    buyer = (buyer + 1) % args.users
                bought[buyer] = bought.get(buyer, 0) + 1
                group: list[Any] = [args.first_user + buyer, uuid.uuid4().hex, 1, "", args.room]
                if args.terms:
                    group.append(args.terms)
                reserve += group
                buyer = (buyer + 1) % args.users
            reply = await redis.fcall("pool_reserve", len(keys), *keys, *reserve)
            holds = [json.loads(r[1]) for r in reply[:-1] if r[0] == b"ok"]
            async with redis.pipeline(transaction=False) as pipe:
                for hold in holds:
                    pipe.fcall("pool_begin_payment", len(keys), *keys, hold["id"], hold["buyer"], 60_000)
                    pipe.fcall("pool_complete_payment", len(keys), *keys, hold["id"], f"ch_{hold['id']}")
                results = await pipe.execute()
            paid += sum(1 for r in results[1::2] if r[0] == b"ok")
    finally:
        await redis.aclose()
    return {"paid": paid, "seconds": time.monotonic() - start, "worst_late_s": worst_late}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("writer", "producer"))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--pool")
    parser.add_argument("--room", type=int, default=0)
    parser.add_argument("--first-user", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--cap", type=int)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--terms", default="")
    parser.add_argument("--timings", default="", help="writer: write milliseconds per SQL statement and phase here")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run_writer(args) if args.role == "writer" else run_producer(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
