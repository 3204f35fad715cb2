"""GMV rankings kept in step by the order writer (`commerce.rankings`): after a mixed burst of paid orders over
two days, a replay, a Redis failure, a writer that died between its commit and counting, and a worker process
killed mid-batch, every leaderboard and room dashboard equals a recomputation from SQL; a rebuild from SQL equals
what was counted incrementally."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.clock import to_ms
from livecommerce.commerce import rankings as r
from livecommerce.commerce.orders import GROUP, OrderWriter, apply_holds, pool_drained
from livecommerce.commerce.pools import POOL_REGISTRY, Hold, Inventory, PoolConfig, PoolId, Reserved, ReserveRequest
from livecommerce.commerce.terms import SaleTerms
from livecommerce.database import session_factory
from livecommerce.live import codec
from livecommerce.live.store import RoomStore
from livecommerce.models import Brand, Order, OrderStatus, Product, Role, Room, RoomVisibility, User, utcnow
from tests.support.databases import Database
from tests.support.processes import Launcher, start_worker
from tests.support.shop import Shop, seed_shop
from tests.support.waits import until

DAY_B = date(2026, 3, 10)
DAY_A = DAY_B - timedelta(days=1)
PERIODS = list(r.Period)


@dataclass(frozen=True)
class World:
    brand_ids: list[int]
    product_ids: list[int]  # product i belongs to brand i
    host_ids: list[int]
    room_ids: list[int]  # room i is hosted by host i
    buyer_ids: list[int]


async def seed(engine: AsyncEngine) -> World:
    async with session_factory(engine).begin() as session:
        brands = [Brand(name=f"Brand {i}", name_key=f"brand {i}") for i in range(3)]
        hosts = [User(email=f"h{i}@rank.test", display_name=f"Host {i}", role=Role.HOST) for i in range(3)]
        buyers = [User(email=f"b{i}@rank.test", display_name=f"Buyer {i}", role=Role.VIEWER) for i in range(8)]
        session.add_all([*brands, *hosts, *buyers])
        await session.flush()
        products = [
            Product(brand_id=b.id, sku=f"R-{i}", title=f"P{i}", price_minor=0, currency="USD", stock=10**6)
            for i, b in enumerate(brands)
        ]
        rooms = [Room(title=f"Show {i}", host_id=h.id, visibility=RoomVisibility.PUBLIC, scheduled_start=utcnow())
                 for i, h in enumerate(hosts)]  # fmt: skip
        session.add_all([*products, *rooms])
        await session.flush()
        return World([b.id for b in brands], [p.id for p in products], [h.id for h in hosts],
                     [x.id for x in rooms], [u.id for u in buyers])  # fmt: skip


def _record(world: World, n: int, rng: random.Random) -> tuple[PoolId, dict[str, Any]]:
    """A hold's outbox record (as pools.lua writes it): random product, room (or none), buyer, qty, price, state,
    paid on day A or B."""
    i = rng.randrange(3)
    pool = PoolId.product(world.product_ids[i])
    room = rng.choice([0, 0, *range(1, 4)])
    creator = world.host_ids[room - 1] if room else 0
    day = rng.choice([DAY_A, DAY_B])
    paid = to_ms(datetime.combine(day, datetime.min.time(), UTC)) + rng.randrange(86_400_000)
    state = rng.choice(["paid", "paid", "paid", "cancelled", "held"])
    terms = SaleTerms.default()
    token = SaleTerms(creator, None, 0, None, terms.fee_bps, terms.fee_base).encode()
    record = {
        "id": f"{pool.name}.{n}", "pool": pool.name, "product": world.product_ids[i], "brand": world.brand_ids[i],
        "sale": 0, "buyer": rng.choice(world.buyer_ids), "qty": rng.randint(1, 3), "price": rng.randint(1, 5000),
        "currency": "USD", "state": state, "exp": paid + 60_000, "created": paid - 1000,
        "room": world.room_ids[room - 1] if room else 0, "code": "", "key": f"k{n}", "terms": token,
    }  # fmt: skip
    if state == "paid":
        record |= {"ref": f"ref-{n}", "paid": paid}
    elif state == "cancelled":
        record["ended"] = paid
    return pool, record


async def publish(redis: Redis, world: World, count: int, seed_: int = 1) -> list[tuple[PoolId, dict[str, Any]]]:
    """`count` holds into their pools' outboxes (a paid one is preceded by its reserved record)."""
    rng = random.Random(seed_)
    records = [_record(world, n, rng) for n in range(1, count + 1)]
    await redis.sadd(POOL_REGISTRY, *{pool.name for pool, _ in records})
    await append(redis, records)
    return records


async def append(redis: Redis, records: list[tuple[PoolId, dict[str, Any]]]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for pool, record in records:
            if record["state"] != "held":
                reserved = {k: v for k, v in record.items() if k not in ("ref", "paid", "ended")}
                pipe.xadd(pool.outbox, {"type": "reserved", "data": orjson.dumps(reserved | {"state": "held"})})
            pipe.xadd(pool.outbox, {"type": record["state"], "data": orjson.dumps(record)})
        await pipe.execute()


def writer(redis: Redis, engine: AsyncEngine, consumer: str = "t", claim_after_ms: int = 30_000) -> OrderWriter:
    sessions = session_factory(engine)
    return OrderWriter(redis, sessions, Inventory(redis), consumer=consumer, block_ms=10, claim_after_ms=claim_after_ms)


async def drain(w: OrderWriter, redis: Redis) -> None:
    async def drained() -> bool:
        await w.step()
        pools = await Inventory(redis).registered()
        return all([await pool_drained(redis, pool) for pool in pools])

    await until(drained, within=20, what="the outboxes drained")


# --- the recomputation from SQL -------------------------------------------------------------------------------


async def paid_orders(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        query = select(
            Order.hold_id,
            Order.paid_at,
            Order.creator_id,
            Order.brand_id,
            Order.room_id,
            Order.total_minor,
            Order.quantity,
            Order.buyer_id,
        ).where(Order.status == OrderStatus.PAID)
        return list((await connection.execute(query)).all())  # fmt: skip


def sql_board(orders: list[Any], board: r.Board, period: r.Period, by: r.By, end: date) -> dict[int, tuple[int, int]]:
    """id -> (gmv, previous gmv) of everyone with GMV in this or the previous period (growth) or this one (gmv)."""
    days = [end - timedelta(days=i) for i in range(2 * period.days)]
    current, previous = set(days[: period.days]), set(days[period.days :])
    now: Counter[int] = Counter()
    before: Counter[int] = Counter()
    for o in orders:
        who = o.creator_id if board is r.Board.CREATORS else o.brand_id
        if not who:
            continue
        day = o.paid_at.date()
        if day in current:
            now[who] += o.total_minor
        elif day in previous:
            before[who] += o.total_minor
    members = set(now) | (set(before) if by is r.By.GROWTH else set())
    return {m: (now[m], before[m]) for m in members}


def sql_room(orders: list[Any], room_id: int) -> tuple[int, int, int, int]:
    mine = [o for o in orders if o.room_id == room_id]
    return sum(o.total_minor for o in mine), len(mine), sum(o.quantity for o in mine), len({o.buyer_id for o in mine})


async def assert_equal_to_sql(engine: AsyncEngine, redis: Redis, world: World) -> None:
    orders = await paid_orders(engine)
    assert orders
    rankings = r.Rankings(redis)
    async with session_factory(engine)() as session:
        for board in r.Board:
            for period in PERIODS:
                for by in r.By:
                    for end in (DAY_A, DAY_B, DAY_B + timedelta(days=1)):
                        entries = await r.leaderboard(session, rankings, board, period, by, 100, end)
                        got = {e.id: (e.gmv_minor, e.previous_minor) for e in entries}
                        assert got == sql_board(orders, board, period, by, end), (board, period, by, end)
                        if board is r.Board.CREATORS:
                            month = sql_board(orders, board, r.Period.MONTH, r.By.GMV, end)
                            assert {e.id: e.level for e in entries} == {
                                e.id: r.level_of(month.get(e.id, (0, 0))[0]) for e in entries
                            }
                        scores = [e.gmv_minor if by is r.By.GMV else e.growth_minor for e in entries]
                        assert scores == sorted(scores, reverse=True)
    for room_id in world.room_ids:
        dash = await rankings.room(room_id)
        assert (dash.gmv_minor, dash.orders, dash.units, dash.buyers) == sql_room(orders, room_id)
        assert dash.voucher_orders == 0  # no voucher columns or hold fields yet: none used one


async def rank_state(redis: Redis) -> dict[str, Any]:
    """Every ranking key's content (room hashes without the viewer peak, HLLs by their count)."""
    state: dict[str, Any] = {}
    async for raw in redis.scan_iter(match="livecommerce:{rank}:*"):
        key = codec.text(raw)
        kind = codec.text(await redis.type(key))
        if kind == "zset":
            pairs: Any = await redis.zrange(key, 0, -1, withscores=True)
            state[key] = dict(pairs)
        elif kind == "set":
            state[key] = await redis.smembers(key)
        elif key.endswith(":buyers"):
            state[key] = await redis.pfcount(key)
        else:
            state[key] = {k: v for k, v in (await redis.hgetall(key)).items() if k != b"viewers_peak"}
    return state


# --- tests ----------------------------------------------------------------------------------------------------


async def test_leaderboards_equal_sql_after_a_mixed_burst_and_its_replay(engine: AsyncEngine, redis: Redis) -> None:
    world = await seed(engine)
    records = await publish(redis, world, 600)
    await drain(writer(redis, engine), redis)
    await assert_equal_to_sql(engine, redis, world)
    counted = await rank_state(redis)
    # Replayed stream entries (a crash before acknowledging, a replayed stream) count nothing twice.
    await append(redis, records)
    await drain(writer(redis, engine, consumer="t2"), redis)
    assert await rank_state(redis) == counted
    paid = [Hold.from_json(orjson.dumps(rec)) for _, rec in records if rec["state"] == "paid"]
    assert await r.Rankings(redis).add(o for h in paid if (o := r.RankedOrder.from_hold(h))) == 0
    await assert_equal_to_sql(engine, redis, world)


async def test_rebuild_from_sql_equals_what_was_counted(engine: AsyncEngine, redis: Redis) -> None:
    world = await seed(engine)
    await publish(redis, world, 400, seed_=2)
    await drain(writer(redis, engine), redis)
    counted = await rank_state(redis)
    sessions = session_factory(engine)
    assert await r.rebuild(sessions, redis, DAY_A, DAY_B) == len(await paid_orders(engine))
    assert await rank_state(redis) == counted
    async for key in redis.scan_iter(match="livecommerce:{rank}:*"):
        await redis.delete(key)
    await r.rebuild(sessions, redis, DAY_A, DAY_B)
    assert await rank_state(redis) == counted
    await assert_equal_to_sql(engine, redis, world)


async def test_a_failing_rankings_store_never_stops_the_writer_and_repair_catches_up(
    engine: AsyncEngine, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    world = await seed(engine)
    # A wrong-typed key makes every rank_add of day B fail (before it writes anything).
    blocker = f"livecommerce:{{rank}}:day:{DAY_B:%Y%m%d}:creators"
    await redis.set(blocker, "not a sorted set")
    records = await publish(redis, world, 300, seed_=3)
    await drain(writer(redis, engine), redis)
    assert len(await paid_orders(engine)) == sum(rec["state"] == "paid" for _, rec in records)
    assert "rankings failed" in caplog.text
    await redis.delete(blocker)
    missing = await r.repair(session_factory(engine), r.Rankings(redis), DAY_A, DAY_B)
    assert missing > 0
    await assert_equal_to_sql(engine, redis, world)
    assert await r.repair(session_factory(engine), r.Rankings(redis), DAY_A, DAY_B) == 0


async def test_a_writer_that_died_after_its_commit_is_covered_by_the_one_taking_over(
    engine: AsyncEngine, redis: Redis
) -> None:
    world = await seed(engine)
    await publish(redis, world, 300, seed_=4)
    # A worker reads a batch, commits it to SQL and dies before counting or acknowledging it.
    pools = await Inventory(redis).registered()
    for pool in pools:
        await redis.xgroup_create(pool.outbox, GROUP, id="0", mkstream=True)
    reply: Any = await redis.xreadgroup(GROUP, "dead", {p.outbox: ">" for p in pools}, count=10_000)
    holds = [Hold.from_json(f[b"data"]) for _, entries in reply for _, f in entries]
    async with session_factory(engine).begin() as session:
        await apply_holds(session, holds)
    assert await paid_orders(engine)
    assert not [k async for k in redis.scan_iter(match="livecommerce:{rank}:*")]
    await drain(writer(redis, engine, consumer="heir", claim_after_ms=0), redis)
    await assert_equal_to_sql(engine, redis, world)


def test_levels_follow_the_threshold_table() -> None:
    assert [r.level_of(v) for v in (0, 99_999, 100_000, 999_999, 1_000_000, 10_000_000)] == [
        "newcomer", "newcomer", "rising", "rising", "star", "legend",
    ]  # fmt: skip


async def test_a_room_dashboard_counts_the_hubs_viewers_and_keeps_their_peak(engine: AsyncEngine, redis: Redis) -> None:
    world = await seed(engine)
    await publish(redis, world, 200, seed_=5)
    await drain(writer(redis, engine), redis)
    room = world.room_ids[0]
    hub = RoomStore(redis, "hub-1")
    rankings = r.Rankings(redis)
    assert (await rankings.room(room)).conversion is None  # no viewer seen yet
    await hub.counters(room, 0, 40)
    first = await rankings.room(room)
    assert (first.viewers, first.viewers_peak) == (40, 40)
    assert first.buyers > 0
    assert first.conversion == round(first.buyers / 40, 4)
    await hub.counters(room, 0, 10)
    later = await rankings.room(room)
    assert (later.viewers, later.viewers_peak, later.conversion) == (10, 40, first.conversion)


# --- a real worker process, killed mid-batch ------------------------------------------------------------------

STOCK = 10_000


async def create_paid(inventory: Inventory, pool: PoolId, shop: Shop, numbers: range) -> None:
    """Reserve one unit per number (500 per call, in the shop's room) and pay for each hold."""
    for start in range(numbers.start, numbers.stop, 500):
        chunk = range(start, min(start + 500, numbers.stop))
        requests = [ReserveRequest(shop.buyer_ids[i % len(shop.buyer_ids)], f"k{i}", 1, room_id=shop.room_id)
                    for i in chunk]  # fmt: skip
        results, _ = await inventory.reserve(pool, requests)
        holds = [x.hold for x in results if isinstance(x, Reserved)]
        assert len(holds) == len(requests)

        async def pay(hold_id: str, buyer_id: int) -> None:
            assert (await inventory.begin_payment(pool, hold_id, buyer_id, 60_000)).status == "ok"
            assert (await inventory.complete_payment(pool, hold_id, f"ref-{hold_id}")).status == "ok"

        for first in range(0, len(holds), 50):
            await asyncio.gather(*(pay(h.id, h.buyer_id) for h in holds[first : first + 50]))


async def pending(redis: Redis, pool: PoolId) -> int:
    try:
        return int((await redis.xpending(pool.outbox, GROUP))["pending"])
    except ResponseError:  # no group yet
        return 0


async def orders_in_sql(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Order)) or 0)


def per_day(orders: list[Any]) -> dict[date, int]:
    gmv: dict[date, int] = defaultdict(int)
    for o in orders:
        gmv[o.paid_at.date()] += o.total_minor
    return gmv


async def brand_per_day(redis: Redis, shop: Shop, days: list[date]) -> dict[date, int]:
    rankings = r.Rankings(redis)
    return {day: (await rankings.standing(r.Board.BRANDS, shop.brand_id, r.Period.DAY, day)).gmv_minor for day in days}


@pytest.mark.slow
async def test_rankings_equal_sql_after_the_worker_is_killed_mid_batch_and_restarted(
    launcher: Launcher, tmp_path: Path, redis_url: str, redis: Redis, database: Database, engine: AsyncEngine
) -> None:
    shop = await seed_shop(engine, stock=STOCK, buyers=20)
    inventory = Inventory(redis)
    await inventory.load_library()
    pool = PoolId.product(shop.product_id)
    await inventory.load(
        pool, PoolConfig(1, shop.product_id, shop.brand_id, None, 1999, "USD", STOCK, STOCK, 0, 10**15 - 1, 600_000)
    )
    created = 1500
    await create_paid(inventory, pool, shop, range(created))
    first = start_worker(launcher, tmp_path / "w1", redis_url, database.url, "worker-1")
    deadline = time.monotonic() + 30
    while not (await orders_in_sql(engine) and await pending(redis, pool)):
        first.check_running("it wrote orders")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker was never caught with a batch in hand within 30 s:\n{first.stderr}")
        if await pool_drained(redis, pool):
            await create_paid(inventory, pool, shop, range(created, created + 500))
            created += 500
        await asyncio.sleep(0.001)
    first.popen.kill()
    first.popen.wait(10)
    await create_paid(inventory, pool, shop, range(created, created + 500))
    created += 500
    second = start_worker(launcher, tmp_path / "w2", redis_url, database.url, "worker-2")

    async def all_counted() -> bool:
        second.check_running("every order was counted")
        rows = await paid_orders(engine)
        if len(rows) != created or not await pool_drained(redis, pool):
            return False
        expected = per_day(rows)
        return await brand_per_day(redis, shop, sorted(expected)) == expected

    await until(all_counted, within=40, what=f"all {created} paid orders in SQL and in the rankings")
    orders = await paid_orders(engine)
    dash = await r.Rankings(redis).room(shop.room_id)
    assert (dash.gmv_minor, dash.orders, dash.units, dash.buyers) == sql_room(orders, shop.room_id)
    assert dash.orders == created
    assert second.stop() == 0
    assert "Traceback" not in first.stderr + second.stderr, first.stderr + second.stderr
