"""The worker's jobs, one round at a time, against a real Redis and real databases."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.clock import to_ms
from livecommerce.commerce import sales
from livecommerce.commerce.jobs import ORPHANS, ChargeAudit, Job, SaleCloser, SaleLoader, Sweeper
from livecommerce.commerce.orders import OrderWriter, pool_drained
from livecommerce.commerce.payments import REFUNDS_OWED, PaymentDeclined, TestModeProvider
from livecommerce.commerce.pools import (
    POOL_REGISTRY,
    Hold,
    HoldState,
    Inventory,
    PoolConfig,
    PoolId,
    Refusal,
    Refused,
    Reserved,
    ReserveRequest,
)
from livecommerce.database import session_factory
from livecommerce.models import FlashSale, Order, OrderStatus, SaleAudience, SaleStatus, utcnow
from tests.support.audit import audit_pool
from tests.support.shop import Shop, add_sale, product_row, redis_ms
from tests.support.waits import until

APPROVED = "4242 4242 4242 4242"


async def reached(redis: Redis, ms: int) -> bool:
    return await redis_ms(redis) >= ms


async def hold_of(inventory: Inventory, pool: PoolId, request: ReserveRequest) -> Hold:
    results, _ = await inventory.reserve(pool, [request])
    assert isinstance(results[0], Reserved), results[0]
    return results[0].hold


async def sale_row(engine: AsyncEngine, sale_id: int) -> FlashSale:
    async with session_factory(engine)() as session:
        sale = await session.get(FlashSale, sale_id)
        assert sale is not None
        return sale


async def drain(writer: OrderWriter, redis: Redis, pool: PoolId) -> None:
    async def drained() -> bool:
        await writer.step()
        return await pool_drained(redis, pool)

    await until(drained, what="the outbox drained")


async def test_a_sale_is_loaded_goes_live_closes_and_returns_its_unsold_units_once(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    sessions = session_factory(engine)
    provider = TestModeProvider(redis)
    loader, closer = SaleLoader(sessions, inventory), SaleCloser(redis, sessions, inventory)
    sweeper = Sweeper(inventory, provider)
    writer = OrderWriter(redis, sessions, inventory, consumer="test", block_ms=10)
    # The product also sells outside the sale, so its own pool is in Redis and must get the returned units too
    # (80: what SQL keeps once the two sales below take theirs).
    own = PoolId.product(shop.product_id)
    await inventory.load(
        own, PoolConfig(1, shop.product_id, shop.brand_id, None, 500, "USD", 80, 5, 0, 10**15 - 1, 60_000)
    )
    # The window leaves room for the checks before the start on a busy machine (the suite runs in parallel).
    now = utcnow()
    sale_id = await add_sale(engine, shop, quantity=10, per_buyer_limit=3, starts_at=now + timedelta(seconds=2.5),
                             ends_at=now + timedelta(seconds=5))  # fmt: skip
    later_id = await add_sale(engine, shop, quantity=10, starts_at=now + timedelta(minutes=20),
                              ends_at=now + timedelta(minutes=30))  # fmt: skip
    assert await product_row(engine, shop.product_id) == (80, 0)
    pool = PoolId.sale(sale_id)
    b = shop.buyer_ids

    # Before the start: loaded (once, at the sale's version), not yet live; a sale 20 minutes away is not loaded.
    await loader.step()
    await loader.step()
    config = await inventory.config(pool)
    assert (config["version"], config["price"], config["limit"]) == ("2", "999", "3")
    assert await inventory.config(PoolId.sale(later_id)) == {}
    assert (await sale_row(engine, sale_id)).status is SaleStatus.SCHEDULED
    results, _ = await inventory.reserve(pool, [ReserveRequest(b[0], "early")])
    assert isinstance(results[0], Refused)
    assert results[0].refusal is Refusal.NOT_STARTED

    sale = await sale_row(engine, sale_id)
    # +1: `to_ms` floors, so Redis reaching that millisecond can still be just before the start the loader compares.
    await until(lambda: reached(redis, to_ms(sale.starts_at) + 1), what="the sale's start")
    await loader.step()
    assert (await sale_row(engine, sale_id)).status is SaleStatus.LIVE

    paid_a = await hold_of(inventory, pool, ReserveRequest(b[0], "a", 2))
    paid_b = await hold_of(inventory, pool, ReserveRequest(b[1], "a", 1))
    await hold_of(inventory, pool, ReserveRequest(b[2], "a", 2))  # never paid: released at the close
    charged = await hold_of(inventory, pool, ReserveRequest(b[3], "a", 1))  # charged, never completed
    abandoned = await hold_of(inventory, pool, ReserveRequest(b[4], "a", 1))  # paying, never charged
    for hold in (paid_a, paid_b):
        await inventory.begin_payment(pool, hold.id, hold.buyer_id, 60_000)
        charge = await provider.charge(hold.id, hold.total_minor, hold.currency, APPROVED)
        await inventory.complete_payment(pool, hold.id, charge.ref)
    for hold in (charged, abandoned):
        assert (await inventory.begin_payment(pool, hold.id, hold.buyer_id, 400)).status == "ok"
    charge = await provider.charge(charged.id, charged.total_minor, charged.currency, APPROVED)

    # After the end: closed, held units released, but not finalised while holds are being paid.
    await until(lambda: reached(redis, to_ms(sale.ends_at)), what="the sale's end")
    await closer.step()
    audit = await audit_pool(redis, pool)
    assert (audit.stock.available, audit.stock.held, audit.stock.paid) == (5, 2, 3)
    assert (await inventory.config(pool))["state"] == "closed"
    assert (await sale_row(engine, sale_id)).status is SaleStatus.LIVE

    # The sweeper settles the two stale payments by what the provider recorded.
    deadline = (await inventory.hold(pool, charged.id)).deadline_ms  # type: ignore[union-attr]
    assert deadline is not None
    await until(lambda: reached(redis, deadline), what="the payment deadline")
    await sweeper.step()
    settled = {h.id: h for h in (await audit_pool(redis, pool)).holds}
    assert (settled[charged.id].state, settled[charged.id].payment_ref) == (HoldState.PAID, charge.ref)
    assert settled[abandoned.id].state is HoldState.EXPIRED

    await closer.step()  # every hold settled, but SQL has not caught up: still not finalised
    assert (await sale_row(engine, sale_id)).finalised_at is None
    await drain(writer, redis, pool)
    await closer.step()
    ended = await sale_row(engine, sale_id)
    assert (ended.status, ended.units_paid, ended.returned_units) == (SaleStatus.ENDED, 4, 6)
    assert await product_row(engine, shop.product_id) == (80 + 6, 4)
    assert (await inventory.stock([own]))[own].available == 86
    assert pool.name.encode() not in await redis.smembers(POOL_REGISTRY)
    async with engine.connect() as connection:
        statuses = sorted((await connection.execute(select(Order.status).where(Order.sale_id == sale_id))).scalars())
    assert statuses == sorted([OrderStatus.PAID] * 3 + [OrderStatus.EXPIRED] * 2)

    # Exactly once: every job again, and finalise called by hand, change nothing.
    for step in (loader.step, closer.step, sweeper.step, writer.step):
        await step()
    async with sessions.begin() as session:
        assert not await sales.finalise(session, sale_id, units_paid=0)
    assert await product_row(engine, shop.product_id) == (86, 4)
    assert (await inventory.stock([own]))[own].available == 86


async def test_stale_payments_are_settled_by_the_provider_record(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    provider = TestModeProvider(redis)
    pool = PoolId.product(shop.product_id)
    config = PoolConfig(1, shop.product_id, shop.brand_id, None, 500, "USD", 10, 5, 0, 10**15 - 1, 60_000)
    await inventory.load(pool, config)
    charged = await hold_of(inventory, pool, ReserveRequest(shop.buyer_ids[0], "a", 2))
    declined = await hold_of(inventory, pool, ReserveRequest(shop.buyer_ids[1], "a", 1))
    silent = await hold_of(inventory, pool, ReserveRequest(shop.buyer_ids[2], "a", 1))
    for hold in (charged, declined, silent):
        await inventory.begin_payment(pool, hold.id, hold.buyer_id, 100)
    charge = await provider.charge(charged.id, charged.total_minor, "USD", APPROVED)
    with pytest.raises(Exception, match="declined"):
        await provider.charge(declined.id, declined.total_minor, "USD", "4000 0000 0000 0002")
    sweeper = Sweeper(inventory, provider)
    await sweeper.step()  # before the deadline: nothing is settled
    assert {h.state for h in (await audit_pool(redis, pool)).holds} == {HoldState.PAYING}

    deadline = (await inventory.hold(pool, silent.id)).deadline_ms  # type: ignore[union-attr]
    assert deadline is not None
    await until(lambda: reached(redis, deadline), what="the payment deadline")
    await sweeper.step()
    audit = await audit_pool(redis, pool)
    states = {h.id: (h.state, h.payment_ref) for h in audit.holds}
    assert states == {
        charged.id: (HoldState.PAID, charge.ref),
        declined.id: (HoldState.EXPIRED, None),
        silent.id: (HoldState.EXPIRED, None),
    }
    assert (audit.stock.available, audit.stock.paid) == (8, 2)
    await drain(OrderWriter(redis, session_factory(engine), inventory, consumer="t", block_ms=10), redis, pool)
    assert await product_row(engine, shop.product_id) == (98, 2)


async def test_the_loader_follows_new_versions_and_never_replaces_live_stock(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    sessions = session_factory(engine)
    now = utcnow()
    b = shop.buyer_ids
    sale_id = await add_sale(engine, shop, quantity=10, starts_at=now - timedelta(minutes=1),
                             ends_at=now + timedelta(hours=1), audience=SaleAudience.INVITE_LIST,
                             invitees=[b[0], b[1]])  # fmt: skip
    pool = PoolId.sale(sale_id)
    loader = SaleLoader(sessions, inventory)
    await loader.step()
    assert (await sale_row(engine, sale_id)).status is SaleStatus.LIVE
    assert (await inventory.config(pool))["audience"] == "list"
    await hold_of(inventory, pool, ReserveRequest(b[0], "a", 2))
    results, _ = await inventory.reserve(pool, [ReserveRequest(b[2], "a", 1)])
    assert results[0] == Refused(Refusal.NOT_INVITED)

    async with sessions.begin() as session:
        await session.execute(
            update(FlashSale).where(FlashSale.id == sale_id).values(price_minor=555, version=FlashSale.version + 1)
        )
    await loader.step()
    config = await inventory.config(pool)
    assert (config["version"], config["price"]) == ("3", "555")
    audit = await audit_pool(redis, pool)
    assert (audit.stock.available, audit.stock.held, audit.stock.total) == (8, 2, 10)


async def test_a_cancelled_sale_pool_is_closed_and_retired(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    sessions = session_factory(engine)
    now = utcnow()
    sale_id = await add_sale(engine, shop, quantity=10, starts_at=now + timedelta(minutes=5),
                             ends_at=now + timedelta(hours=1))  # fmt: skip
    pool = PoolId.sale(sale_id)
    await SaleLoader(sessions, inventory).step()
    assert pool in await inventory.registered()
    async with sessions.begin() as session:
        await session.execute(
            update(FlashSale)
            .where(FlashSale.id == sale_id)
            .values(status=SaleStatus.CANCELLED, version=FlashSale.version + 1)
        )
    await SaleCloser(redis, sessions, inventory).step()
    assert pool not in await inventory.registered()
    assert (await inventory.config(pool))["state"] == "closed"
    assert (await sale_row(engine, sale_id)).status is SaleStatus.CANCELLED
    assert await product_row(engine, shop.product_id) == (90, 0)  # cancel_sale gives stock back, not the closer


class Flaky(Job):
    name = "flaky"
    interval = 0.01
    backoff_start = 0.01

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.recovered = 0
        self.done = asyncio.Event()

    async def step(self) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("boom")
        self.done.set()
        return False

    def recover(self) -> None:
        self.recovered += 1


async def test_a_job_logs_failures_backs_off_and_goes_on_and_stops_when_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = Flaky(failures=3)
    with caplog.at_level(logging.INFO, logger="livecommerce.commerce.jobs"):
        task = asyncio.create_task(job.run())
        await asyncio.wait_for(job.done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    failures = [r for r in caplog.records if "flaky failed" in r.getMessage()]
    assert [r.getMessage().split(";")[0] for r in failures] == [f"flaky failed ({n} in a row)" for n in (1, 2, 3)]
    assert all(r.exc_info for r in failures)
    assert job.recovered == 3
    assert any("works again after 3 failures" in r.getMessage() for r in caplog.records)


async def test_the_charge_audit_reports_charges_without_an_order_until_they_are_resolved(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TestModeProvider(redis)
    pool = PoolId.product(shop.product_id)
    now = await redis_ms(redis)
    await inventory.load(pool, PoolConfig(1, shop.product_id, shop.brand_id, None, 1999, "USD", 10, 5, 0,
                                          now + 3_600_000, 300_000))  # fmt: skip
    ordered = await hold_of(inventory, pool, ReserveRequest(shop.buyer_ids[0], "a", 1))
    charge = await provider.charge(ordered.id, ordered.total_minor, "USD", APPROVED)
    assert (await inventory.begin_payment(pool, ordered.id, ordered.buyer_id, 60_000)).status == "ok"
    assert (await inventory.complete_payment(pool, ordered.id, charge.ref)).status == "ok"
    await drain(OrderWriter(redis, session_factory(engine), inventory, consumer="t", block_ms=10), redis, pool)
    orphan, refunded, owed = "p9.1", "p9.2", "p9.3"
    for key in (orphan, refunded, owed):
        await provider.charge(key, 500, "USD", APPROVED)
    await provider.refund(refunded)
    await redis.sadd(REFUNDS_OWED, owed)  # a refund the sweeper still has to make
    with pytest.raises(PaymentDeclined):
        await provider.charge("p9.4", 500, "USD", "4000 0000 0000 0002")

    async def full_pass(audit: ChargeAudit) -> None:
        while await audit.step():
            pass

    await full_pass(ChargeAudit(redis, session_factory(engine), provider, grace_seconds=3600, page=2))
    assert await redis.smembers(ORPHANS) == set(), "charges within the grace period may still be in an outbox"
    audit = ChargeAudit(redis, session_factory(engine), provider, grace_seconds=0, page=2)
    with caplog.at_level(logging.ERROR, logger="livecommerce.commerce.jobs"):
        await full_pass(audit)
    assert await redis.smembers(ORPHANS) == {orphan.encode()}
    assert [r.getMessage() for r in caplog.records if orphan in r.getMessage() and r.levelno == logging.ERROR]
    await provider.refund(orphan)  # resolved: crossed off on the next pass
    await full_pass(audit)
    assert await redis.smembers(ORPHANS) == set()
