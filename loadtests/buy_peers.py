"""What the hub's buying path is compared with: the naive SQL peer, and Redis's own ceiling for `pool_reserve`.

* `run_sql_peer`: asyncpg straight to PostgreSQL, one hot product row, `concurrency` attempts in flight over
  `connections` connections, durable commits (`synchronous_commit` as the server has it):

  - ``for_update``: ``BEGIN; SELECT stock … FOR UPDATE; SELECT sum(qty) … WHERE buyer; UPDATE stock - 1;
    INSERT order; COMMIT`` — the row lock is held across the client's round trips and the commit's flush.
  - ``conditional``: one statement: the buyer's count, ``UPDATE … SET stock = stock - 1 WHERE id = $1 AND
    stock > 0`` (only if under the cap), and ``INSERT`` of the order from its ``RETURNING``.

* `run_ceiling`: `pool_reserve` FCALLs written straight on sockets with a hiredis reply parser (no redis-py),
  several connections, each keeping `depth` calls in flight, each call carrying `batch` taps (as the batcher
  groups them). Measures what Redis completes per second on its core for this workload (mostly sold out).
* `run_batcher_path`: `Inventory` + `ReservationBatcher` in this process (redis-py, as the hub uses them),
  `window` concurrent taps, with the batcher's local sold-out flag (as shipped) and without it (every tap
  goes to Redis) — the batcher's cost without sockets, Socket.IO or the hub.

Each Redis run uses a fresh pool with the sale's terms (units, cap, open, live), so it starts full.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import hiredis
import psutil
from redis.asyncio import Redis

from livecommerce.commerce.batcher import ReservationBatcher
from livecommerce.commerce.pools import Inventory, PoolConfig, PoolId, Refused, ReserveRequest

__all__ = ["CeilingResult", "SqlResult", "run_batcher_path", "run_ceiling", "run_sql_peer"]


def _pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += float(t.user + t.system)
    return total


def _postgres_pids() -> list[int]:
    pids = []
    for process in psutil.process_iter(["name"]):
        if (process.info.get("name") or "").startswith("postgres"):
            pids.append(process.pid)
    return pids


# --------------------------------------------------------------------------------------------------------------
# The naive SQL peer


@dataclass
class SqlResult:
    approach: str
    attempts: int = 0
    concurrency: int = 0
    connections: int = 0
    wall_s: float = 0.0
    sold: int = 0
    max_per_buyer: int = 0
    over_cap: int = 0
    final_stock: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    pg_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.attempts / self.wall_s if self.wall_s else 0.0

    def row(self) -> str:
        name = {
            "for_update": "`SELECT … FOR UPDATE`, count, `UPDATE`, `INSERT` (one transaction)",
            "conditional": "conditional `UPDATE … WHERE stock > 0` + count + `INSERT` (one statement)",
        }[self.approach]
        oversold = "" if self.sold <= self.final_stock + self.sold else " OVERSOLD"
        errors = f" ({sum(self.errors.values())} errors: {dict(self.errors)})" if self.errors else ""
        return (
            f"| {name} | {self.concurrency} ({self.connections}) | **{self.rate:,.0f}/s**{errors}"
            f" | {self.p50_ms:.1f} / {self.p99_ms:.1f} ms | {self.sold:,}{oversold}, stock left {self.final_stock}"
            f" | {self.max_per_buyer}{f' ({self.over_cap} over the cap)' if self.over_cap else ''}"
            f" | {self.pg_cpu_s:.1f} s ({self.pg_cpu_s / max(self.wall_s, 1e-9):.2f} cores)"
            f" | {self.client_cpu_s / max(self.wall_s, 1e-9):.0%} of a core |"
        )


_SCHEMA = """
DROP TABLE IF EXISTS peer_orders;
DROP TABLE IF EXISTS peer_stock;
CREATE TABLE peer_stock (id integer PRIMARY KEY, stock integer NOT NULL CHECK (stock >= 0));
CREATE TABLE peer_orders (
    id bigserial PRIMARY KEY, product_id integer NOT NULL, buyer_id integer NOT NULL, qty integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX peer_orders_buyer ON peer_orders (product_id, buyer_id);
"""

_CONDITIONAL = """
WITH have AS (
    SELECT coalesce(sum(qty), 0) AS n FROM peer_orders WHERE product_id = $1 AND buyer_id = $2
), took AS (
    UPDATE peer_stock SET stock = stock - 1
    WHERE id = $1 AND stock > 0 AND (SELECT n FROM have) + 1 <= $3
    RETURNING stock
)
INSERT INTO peer_orders (product_id, buyer_id, qty) SELECT $1, $2, 1 FROM took RETURNING id
"""


async def run_sql_peer(
    dsn: str, approach: str, plan: Sequence[int], units: int, cap: int, concurrency: int, connections: int,
    first_user: int | None = None,
) -> SqlResult:  # fmt: skip
    """Run the attempt list (buyer indices) against one product row with `units` in stock."""
    base = first_user or 1
    setup = await asyncpg.connect(dsn)
    try:
        await setup.execute(_SCHEMA)
        await setup.execute("INSERT INTO peer_stock VALUES (1, $1)", units)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    result = SqlResult(approach, attempts=len(plan), concurrency=concurrency, connections=connections)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    cursor = iter(range(len(plan)))

    async def for_update(con: asyncpg.Connection, buyer: int) -> None:
        async with con.transaction():
            stock = await con.fetchval("SELECT stock FROM peer_stock WHERE id = 1 FOR UPDATE")
            have = await con.fetchval(
                "SELECT coalesce(sum(qty), 0) FROM peer_orders WHERE product_id = 1 AND buyer_id = $1", buyer
            )
            if stock > 0 and have + 1 <= cap:
                await con.execute("UPDATE peer_stock SET stock = stock - 1 WHERE id = 1")
                await con.execute("INSERT INTO peer_orders (product_id, buyer_id, qty) VALUES (1, $1, 1)", buyer)

    async def conditional(con: asyncpg.Connection, buyer: int) -> None:
        await con.fetchval(_CONDITIONAL, 1, buyer, cap)

    attempt = for_update if approach == "for_update" else conditional

    # One tap in flight per buyer, as the hub's generator does (a person waits for the answer).
    buyer_locks: dict[int, asyncio.Lock] = {}

    async def worker() -> None:
        for n in cursor:
            buyer = base + plan[n]
            lock = buyer_locks.setdefault(buyer, asyncio.Lock())
            started = time.perf_counter()
            async with lock:
                try:
                    async with pool.acquire() as con:
                        await attempt(con, buyer)
                except asyncpg.PostgresError as exc:
                    errors[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    pg = _postgres_pids()
    pg_before, me_before = _cpu(pg), time.process_time()
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
        result.client_cpu_s = time.process_time() - me_before
        result.pg_cpu_s = _cpu(pg) - pg_before
        async with pool.acquire() as con:
            result.final_stock = await con.fetchval("SELECT stock FROM peer_stock WHERE id = 1")
            rows = await con.fetch("SELECT buyer_id, sum(qty) AS n FROM peer_orders GROUP BY buyer_id")
    finally:
        await pool.close()
    per_buyer = [int(r["n"]) for r in rows]
    result.sold = sum(per_buyer)
    result.max_per_buyer = max(per_buyer, default=0)
    result.over_cap = sum(1 for n in per_buyer if n > cap)
    latencies.sort()
    result.p50_ms, result.p99_ms = _pct(latencies, 0.5) * 1000, _pct(latencies, 0.99) * 1000
    result.errors = dict(errors)
    if result.sold + result.final_stock != units:
        result.errors["conservation"] = 1
    return result


# --------------------------------------------------------------------------------------------------------------
# Redis


@dataclass
class CeilingResult:
    kind: str  # "ceiling" (raw FCALLs) or "batcher"
    label: str
    attempts: int = 0
    wall_s: float = 0.0
    redis_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    holds: int = 0
    calls: int = 0
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.attempts / self.wall_s if self.wall_s else 0.0

    def row(self) -> str:
        redis_us = self.redis_cpu_s * 1e6 / max(1, self.attempts)
        client_us = self.client_cpu_s * 1e6 / max(1, self.attempts)
        return (
            f"| {self.label} | {self.attempts:,} in {self.wall_s:.2f} s | **{self.rate:,.0f}/s**"
            f" | {self.redis_cpu_s / max(self.wall_s, 1e-9):.0%} | {redis_us:.1f} µs | {client_us:.1f} µs"
            f" | {self.holds:,} |"
        )


def _pool_config(units: int, cap: int, n: int) -> PoolConfig:
    now_ms = int(time.time() * 1000)
    return PoolConfig(
        version=1, product_id=1, brand_id=1, sale_id=900_000 + n, price_minor=4900, currency="USD",
        quantity=units, per_buyer_limit=cap, starts_at_ms=now_ms - 60_000, ends_at_ms=now_ms + 3_600_000,
        hold_ms=600_000, audience="open",
    )  # fmt: skip


async def _fresh_pool(url: str, units: int, cap: int, n: int) -> PoolId:
    redis = Redis.from_url(url)
    try:
        inventory = Inventory(redis)
        await inventory.load_library()
        pool = PoolId.sale(900_000 + n)
        status, _, created = await inventory.load(pool, _pool_config(units, cap, n))
        assert status == "loaded", status
        assert created, "the pool existed already"
        return pool
    finally:
        await redis.aclose()


def _resp(args: Sequence[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class _RawRedis(asyncio.Protocol):
    """A pipelining Redis connection: write commands, get replies in order through futures (hiredis parser)."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiting: list[asyncio.Future[Any]] = []
        self.head = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                break
            future = self.waiting[self.head]
            self.head += 1
            if not future.done():
                future.set_result(reply)
        if self.head > 4096:
            del self.waiting[: self.head]
            self.head = 0

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.waiting[self.head :]:
            if not future.done():
                future.set_exception(ConnectionError(f"redis connection lost: {exc!r}"))

    def call(self, payload: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        self.transport.write(payload)
        return future


async def _drive_raw(
    url: str, pool: PoolId, plan: Sequence[int], rounds: int, batch: int, depth: int, connections: int
) -> tuple[int, int, Counter[str]]:
    """Send every (round, tap) as `pool_reserve` calls of `batch` taps; returns (attempts, holds, refusals)."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(_RawRedis, host, int(port)))[1] for _ in range(connections)]
    head = [b"FCALL", b"pool_reserve", b"9", *(k.encode() for k in pool.keys)]
    taps = [(r, n) for r in range(rounds) for n in range(len(plan))]
    chunks = [taps[i : i + batch] for i in range(0, len(taps), batch)]
    cursor = iter(chunks)
    counts: Counter[str] = Counter()

    async def lane(conn: _RawRedis) -> None:
        async def one(chunk: list[tuple[int, int]]) -> None:
            args = [*head, str(len(chunk)).encode()]
            for r, n in chunk:
                args += [str(plan[n] + 1).encode(), b"c%d-%d" % (r, n), b"1", b"", b"1", b""]
            reply = await conn.call(_resp(args))
            if isinstance(reply, Exception):
                raise reply
            for item in reply[:-1]:
                counts[item[0].decode()] += 1

        async def stream() -> None:
            for chunk in cursor:
                await one(chunk)

        await asyncio.gather(*(stream() for _ in range(depth)))

    try:
        await asyncio.gather(*(lane(c) for c in conns))
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    holds = counts.pop("ok", 0)
    return len(taps), holds, counts


async def run_ceiling(url: str, redis_pid: int, args: Any, client_cpus: Sequence[int]) -> list[CeilingResult]:
    """`pool_reserve` straight from a minimal client, in a few shapes; each on a fresh, full pool."""
    from run_buy_bench import attempt_plan

    plan = attempt_plan(args.buyers, args.attempts)
    rounds = 3  # 150k taps by default: long enough to measure, ~1k of them take units
    shapes = [(1, 32, 4), (16, 4, 4), (64, 2, 4)]  # (taps per call, calls in flight per connection, connections)
    results = []
    for n, (batch, depth, connections) in enumerate(shapes):
        pool = await _fresh_pool(url, args.units, args.cap, n)
        redis_before, me_before = _cpu([redis_pid]), time.process_time()
        started = time.perf_counter()
        attempts, holds, refusals = await _drive_raw(url, pool, plan, rounds, batch, depth, connections)
        wall = time.perf_counter() - started
        results.append(CeilingResult(
            "ceiling", f"raw FCALL, {batch} tap{'s' if batch > 1 else ''} per call, {depth} calls in flight x "
            f"{connections} connections", attempts=attempts, wall_s=wall, redis_cpu_s=_cpu([redis_pid]) - redis_before,
            client_cpu_s=time.process_time() - me_before, holds=holds, refusals=dict(refusals),
            calls=math.ceil(attempts / batch),
        ))  # fmt: skip
    return results


async def run_batcher_path(url: str, redis_pid: int, args: Any) -> list[CeilingResult]:
    """`Inventory` + `ReservationBatcher` in-process, `args.window` concurrent taps, with and without the flag."""
    from run_buy_bench import attempt_plan

    plan = attempt_plan(args.buyers, args.attempts)
    results = []
    variants = (
        (1.0, "keyless taps: its sold-out flag refuses them locally"),
        (0.0, "taps with the buyer's own key (as the bench's buyers send): every one to Redis, batched"),
    )
    for n, (flag, label) in enumerate(variants):
        pool = await _fresh_pool(url, args.units, args.cap, 10 + n)
        redis = Redis.from_url(url, max_connections=64)
        batcher = ReservationBatcher(Inventory(redis), sold_out_for=flag)
        counts: Counter[str] = Counter()
        cursor = iter(range(len(plan)))

        async def tapper(
            cursor: Any = cursor, batcher: ReservationBatcher = batcher, pool: PoolId = pool, n: int = n,
            counts: Counter[str] = counts, keyless: bool = flag > 0,
        ) -> None:  # fmt: skip
            for i in cursor:
                result = await batcher.reserve(pool, ReserveRequest(plan[i] + 1, f"q{n}-{i}"), new_key=keyless)
                counts["refused" if isinstance(result, Refused) else "ok"] += 1

        try:
            await redis.ping()
            redis_before, me_before = _cpu([redis_pid]), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(tapper() for _ in range(min(args.window, len(plan)))))
            wall = time.perf_counter() - started
            results.append(CeilingResult(
                "batcher", f"`ReservationBatcher` in-process (redis-py), {args.window} taps in flight, {label}",
                attempts=len(plan), wall_s=wall, redis_cpu_s=_cpu([redis_pid]) - redis_before,
                client_cpu_s=time.process_time() - me_before, holds=counts["ok"], calls=batcher.calls,
                refusals={"refused": counts["refused"], "refused locally": batcher.refused_locally},
            ))  # fmt: skip
        finally:
            await batcher.close()
            await redis.aclose()
    return results
