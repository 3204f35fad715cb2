"""The order writer against a real Redis and real databases: SQL follows Redis exactly once, whatever is
replayed, whoever dies."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.orders import DEAD_LETTERS, GROUP, OrderWriter, apply_holds, pool_drained
from livecommerce.commerce.pools import Hold, HoldState, Inventory, PoolConfig, PoolId, Reserved, ReserveRequest
from livecommerce.database import session_factory
from livecommerce.models import AccountStatus, Order, OrderStatus, SaleAudience, SaleCode, User, utcnow
from tests.support.audit import audit_pool
from tests.support.shop import Shop, add_sale, outbox_entries, product_row, redis_ms, sql_snapshot
from tests.support.waits import until


def writer(redis: Redis, engine: AsyncEngine, inventory: Inventory, **kwargs: int | str) -> OrderWriter:
    options: dict[str, int | str] = {"consumer": "test", "block_ms": 10, **kwargs}
    return OrderWriter(redis, session_factory(engine), inventory, **options)  # type: ignore[arg-type]


async def drain(writer: OrderWriter, redis: Redis, pools: list[PoolId], within: float = 10.0) -> None:
    async def drained() -> bool:
        await writer.step()
        return all([await pool_drained(redis, pool) for pool in pools])

    await until(drained, within=within, what="the outboxes drained")


async def product_config(redis: Redis, shop: Shop, **changes: int) -> PoolConfig:
    now = await redis_ms(redis)
    values = {
        "version": 1, "product_id": shop.product_id, "brand_id": shop.brand_id, "sale_id": None,
        "price_minor": 1999, "currency": "USD", "quantity": 100, "per_buyer_limit": 10,
        "starts_at_ms": 0, "ends_at_ms": now + 3_600_000, "hold_ms": 300_000, **changes,
    }  # fmt: skip
    return PoolConfig(**values)  # type: ignore[arg-type]


async def reserve(inventory: Inventory, pool: PoolId, *requests: ReserveRequest) -> list[Hold]:
    results, _ = await inventory.reserve(pool, list(requests))
    holds = []
    for result in results:
        assert isinstance(result, Reserved), result
        holds.append(result.hold)
    return holds


async def pay(inventory: Inventory, hold: Hold, ref: str) -> None:
    assert (await inventory.begin_payment(hold.pool, hold.id, hold.buyer_id, 60_000)).status == "ok"
    assert (await inventory.complete_payment(hold.pool, hold.id, ref)).status == "ok"


async def busy_shop(redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop) -> list[PoolId]:
    """A product pool and a code-only sale pool, with holds paid, cancelled, expired and still held."""
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop, hold_ms=400))
    now = utcnow()
    sale_id = await add_sale(engine, shop, quantity=10, starts_at=now - timedelta(minutes=1),
                             ends_at=now + timedelta(hours=1), audience=SaleAudience.INVITE_CODES,
                             codes=["GOLD1", "GOLD2", "GOLD3"])  # fmt: skip
    sale = PoolId.sale(sale_id)
    ms = await redis_ms(redis)
    await inventory.load(
        sale,
        PoolConfig(2, shop.product_id, shop.brand_id, sale_id, 999, "USD", 10, 2, ms - 60_000, ms + 3_600_000,
                   300_000, "codes"),
        codes=["GOLD1", "GOLD2", "GOLD3"],
    )  # fmt: skip
    b = shop.buyer_ids
    p1, p2, p3, p4, _p5 = await reserve(
        inventory, product, ReserveRequest(b[0], "a", 2, room_id=shop.room_id), ReserveRequest(b[1], "a", 1),
        ReserveRequest(b[2], "a", 3), ReserveRequest(b[3], "a", 1), ReserveRequest(b[4], "a", 1),
    )  # fmt: skip
    s1, s2, s3 = await reserve(
        inventory, sale, ReserveRequest(b[0], "s", 2, "GOLD1"), ReserveRequest(b[1], "s", 1, "GOLD2"),
        ReserveRequest(b[2], "s", 1, "GOLD3"),
    )  # fmt: skip
    await pay(inventory, p1, "ref-p1")
    await pay(inventory, p2, "ref-p2")
    await pay(inventory, s1, "ref-s1")
    await inventory.cancel(product, p3.id, p3.buyer_id)
    await inventory.cancel(sale, s2.id, s2.buyer_id)
    await pay(inventory, s3, "ref-s3")
    await until(lambda: past(redis, p4.expires_at_ms), what="the product holds' expiry")
    await inventory.sweep(product)  # p4 and p5 expire
    late = await reserve(inventory, product, ReserveRequest(b[3], "b", 1))  # still held at the end
    assert late[0].state is HoldState.HELD
    return [product, sale]


async def past(redis: Redis, ms: int) -> bool:
    return await redis_ms(redis) >= ms


async def test_sql_follows_redis_and_a_replay_changes_nothing(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    pools = await busy_shop(redis, inventory, engine, shop)
    captured = {pool: await outbox_entries(redis, pool) for pool in pools}
    assert sum(len(e) for e in captured.values()) == 17  # 9 reserved, 4 paid, 2 cancelled, 2 expired
    await drain(writer(redis, engine, inventory, batch=3), redis, pools)  # small batches: many transactions

    # SQL matches Redis, hold by hold.
    async with engine.connect() as connection:
        orders = {row.hold_id: row for row in (await connection.execute(select(Order.__table__))).all()}
    holds = [h for pool in pools for h in (await audit_pool(redis, pool)).holds]
    assert sorted(orders) == sorted(h.id for h in holds)
    for hold in holds:
        order = orders[hold.id]
        expected = OrderStatus.HELD if hold.state is HoldState.PAYING else OrderStatus(hold.state.value)
        assert (order.status, order.quantity, order.total_minor, order.buyer_id) == (
            expected,
            hold.quantity,
            hold.total_minor,
            hold.buyer_id,
        ), hold
        assert (order.sale_id, order.room_id, order.pool, order.payment_ref) == (
            hold.sale_id,
            hold.room_id,
            hold.pool.name,
            hold.payment_ref,
        ), hold
        assert (order.paid_at is not None) == (hold.state is HoldState.PAID)
    # Stock moved once: 3 product-pool units paid came out of products.stock (100 - 10 allocated to the sale);
    # every paid unit counts as sold.
    assert await product_row(engine, shop.product_id) == (90 - 3, 3 + 3)
    async with engine.connect() as connection:
        rows = (await connection.execute(select(SaleCode.code, SaleCode.redeemed_hold))).all()
    codes = {code: hold_id for code, hold_id in rows}
    paid_codes = {h.code: h.id for h in holds if h.code and h.state is HoldState.PAID}
    assert codes == {"GOLD1": paid_codes["GOLD1"], "GOLD2": None, "GOLD3": paid_codes["GOLD3"]}
    before = await sql_snapshot(engine)

    # Replay: the whole stream again, twice, in one batch; then every suffix and prefix.
    replaying = writer(redis, engine, inventory)
    for _ in range(2):
        for pool, entries in captured.items():
            for fields in entries:
                await redis.xadd(pool.outbox, fields)  # type: ignore[arg-type]
        await drain(replaying, redis, pools)
        assert await sql_snapshot(engine) == before
    for pool, entries in captured.items():
        for cut in range(1, len(entries)):
            for part in (entries[cut:], entries[:cut]):
                for fields in part:
                    await redis.xadd(pool.outbox, fields)  # type: ignore[arg-type]
    await drain(replaying, redis, pools)
    assert await sql_snapshot(engine) == before


async def test_the_last_state_wins_whatever_the_batch(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    """Reserved, paid and a stale replay of reserved in one batch: the order is paid, once."""
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    (hold,) = await reserve(inventory, product, ReserveRequest(shop.buyer_ids[0], "a", 2))
    await pay(inventory, hold, "ref-1")
    reserved, _paid = await outbox_entries(redis, product)
    await redis.xadd(product.outbox, reserved)  # type: ignore[arg-type]
    await drain(writer(redis, engine, inventory), redis, [product])
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Order.status, Order.payment_ref))).all()
    assert [tuple(r) for r in rows] == [(OrderStatus.PAID, "ref-1")]
    assert await product_row(engine, shop.product_id) == (98, 2)


async def test_writers_applying_the_same_holds_at_once_count_them_once(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    """What happens when a slow writer's entries are taken over while it still commits them."""
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    holds = await reserve(inventory, product, *(ReserveRequest(b, "a", 1) for b in shop.buyer_ids))
    for hold in holds:
        await pay(inventory, hold, f"ref-{hold.id}")
    records = [Hold.from_json(f[b"data"]) for f in await outbox_entries(redis, product)]
    sessions = session_factory(engine)

    async def apply() -> int:
        async with sessions.begin() as session:
            return len(await apply_holds(session, records))

    moved = await asyncio.gather(*(apply() for _ in range(4)))
    assert sorted(moved) == [0, 0, 0, len(holds)]
    assert await product_row(engine, shop.product_id) == (100 - len(holds), len(holds))


async def test_entries_of_a_dead_consumer_are_taken_over_after_the_idle_time(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    holds = await reserve(inventory, product, *(ReserveRequest(b, "a", 1) for b in shop.buyer_ids))
    for hold in holds:
        await pay(inventory, hold, f"ref-{hold.id}")
    await redis.xgroup_create(product.outbox, GROUP, id="0", mkstream=True)
    read: Any = await redis.xreadgroup(GROUP, "dead-worker", {product.outbox: ">"}, count=1000)
    assert len(read[0][1]) == 2 * len(holds)  # the dead worker had read everything and acknowledged nothing

    started = time.monotonic()
    alive = writer(redis, engine, inventory, consumer="alive", claim_after_ms=300)
    assert await alive.step() == 0  # not idle long enough: left alone
    assert not await pool_drained(redis, product)
    await drain(alive, redis, [product])
    assert time.monotonic() - started >= 0.3
    assert await product_row(engine, shop.product_id) == (100 - len(holds), len(holds))
    pending = await redis.xpending(product.outbox, GROUP)
    assert pending["pending"] == 0


async def test_a_restarted_consumer_reads_its_own_pending_entries_first(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    (hold,) = await reserve(inventory, product, ReserveRequest(shop.buyer_ids[0], "a", 1))
    await pay(inventory, hold, "ref-1")
    await redis.xgroup_create(product.outbox, GROUP, id="0", mkstream=True)
    await redis.xreadgroup(GROUP, "w1", {product.outbox: ">"}, count=1000)  # then it crashed
    again = writer(redis, engine, inventory, consumer="w1", claim_after_ms=3_600_000)
    assert await again.step() == 2
    assert await pool_drained(redis, product)
    assert await product_row(engine, shop.product_id) == (99, 1)


async def test_an_entry_sql_refuses_is_set_aside_and_the_rest_is_written(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    (good,) = await reserve(inventory, product, ReserveRequest(shop.buyer_ids[0], "a", 1))
    await pay(inventory, good, "ref-good")
    # A record SQL refuses for good: its room does not exist (a foreign key).
    record = orjson.loads((await outbox_entries(redis, product))[0][b"data"])
    bad_id = f"{product.name}.999999"
    await redis.xadd(
        product.outbox, {"type": "reserved", "data": orjson.dumps({**record, "id": bad_id, "room": 999_999})}
    )
    await redis.xadd(product.outbox, {"type": "paid", "data": b"{not json"})
    await drain(writer(redis, engine, inventory), redis, [product])
    async with engine.connect() as connection:
        written = (await connection.execute(select(Order.hold_id, Order.status))).all()
        count = await connection.scalar(select(func.count()).select_from(Order))
    assert [tuple(r) for r in written] == [(good.id, OrderStatus.PAID)]
    assert count == 1
    dead: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(DEAD_LETTERS)  # type: ignore[assignment]
    assert len(dead) == 2
    assert all(f[b"stream"] == product.outbox.encode() and f[b"error"] for _, f in dead)
    assert {Hold.from_json(f[b"data"]).id for _, f in dead if f[b"data"].startswith(b'{"')} == {bad_id}
    assert await product_row(engine, shop.product_id) == (99, 1)


async def test_a_paid_hold_whose_buyer_row_is_gone_becomes_an_order_of_a_tombstone_account(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    """An operator removed the buyer's row by hand after they paid: the order still lands, never a dead letter."""
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    gone = shop.buyer_ids[4]
    paid, held = await reserve(inventory, product, ReserveRequest(gone, "a", 2), ReserveRequest(gone, "b", 1))
    await pay(inventory, paid, "ref-gone")
    async with engine.begin() as connection:
        await connection.execute(delete(User).where(User.id == gone))
    await drain(writer(redis, engine, inventory), redis, [product])
    async with engine.connect() as connection:
        orders = (
            await connection.execute(select(Order.hold_id, Order.buyer_id, Order.status).order_by(Order.hold_id))
        ).all()
        tombstone = (await connection.execute(select(User).where(User.id == gone))).one()
    assert [tuple(r) for r in orders] == [(paid.id, gone, OrderStatus.PAID), (held.id, gone, OrderStatus.HELD)]
    assert (tombstone.email, tombstone.display_name, tombstone.status) == (
        f"deleted-{gone}@invalid", "Deleted user", AccountStatus.DELETED,
    )  # fmt: skip
    assert tombstone.deleted_at is not None
    assert await redis.xlen(DEAD_LETTERS) == 0
    assert await product_row(engine, shop.product_id) == (98, 2)


# PostgreSQL only: SQLite waits for a lock inside its driver thread, which a cancellation cannot interrupt.
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_batch_interrupted_before_its_commit_stays_pending(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    """The worker stopped (or killed) while its transaction waits: nothing acknowledged, nothing lost."""
    assert engine.dialect.name == "postgresql"
    product = PoolId.product(shop.product_id)
    await inventory.load(product, await product_config(redis, shop))
    holds = await reserve(inventory, product, *(ReserveRequest(b, "a", 1) for b in shop.buyer_ids))
    for hold in holds:
        await pay(inventory, hold, f"ref-{hold.id}")
    interrupted = writer(redis, engine, inventory)
    async with engine.connect() as blocker:
        await blocker.execute(text("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(interrupted.step(), 0.5)
        await blocker.rollback()
    assert (await redis.xpending(product.outbox, "order-writer"))["pending"] == 2 * len(holds)
    assert await redis.xlen(product.outbox) == 2 * len(holds)
    assert await product_row(engine, shop.product_id) == (100, 0)
    interrupted.restart()
    await drain(interrupted, redis, [product])
    assert await product_row(engine, shop.product_id) == (100 - len(holds), len(holds))
