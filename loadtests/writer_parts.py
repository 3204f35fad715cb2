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
    return {"steps": steps, "busy_steps": busy, "entries": entries, "cpu_s": _cpu() - cpu0}


async def run_producer(args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    from livecommerce.commerce.pools import PoolId

    pool = PoolId.parse(args.pool)
    keys = list(pool.keys)
    redis = Redis.from_url(args.redis_url)
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
