"""`livecommerce worker` as a real process, killed with SIGKILL in the middle of writing orders and started
again: every paid hold ends up in SQL exactly once, with its ledger lines, none missing or doubled."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.orders import DEAD_LETTERS, GROUP, pool_drained
from livecommerce.commerce.pools import HoldState, Inventory, PoolConfig, PoolId, Reserved, ReserveRequest
from livecommerce.commerce.split import split_sale
from livecommerce.commerce.terms import SaleTerms
from livecommerce.models import LedgerAccount, LedgerLine, Order, OrderStatus
from tests.support.audit import audit_pool
from tests.support.databases import Database
from tests.support.processes import Launcher, start_worker
from tests.support.shop import Shop, product_row, seed_shop
from tests.support.waits import until

pytestmark = pytest.mark.slow

STOCK = 20_000
BEFORE_KILL = 1800  # paid holds waiting when the first worker starts
AFTER_KILL = 1200  # paid holds created while no worker runs


async def create_paid(inventory: Inventory, pool: PoolId, shop: Shop, numbers: range) -> None:
    """Reserve one unit per number (500 per call) and pay for each hold."""
    for start in range(numbers.start, numbers.stop, 500):
        chunk = range(start, min(start + 500, numbers.stop))
        requests = [ReserveRequest(shop.buyer_ids[i % len(shop.buyer_ids)], f"k{i}", 1) for i in chunk]
        results, _ = await inventory.reserve(pool, requests)
        holds = [r.hold for r in results if isinstance(r, Reserved)]
        assert len(holds) == len(requests)

        async def pay(hold_id: str, buyer_id: int) -> None:
            assert (await inventory.begin_payment(pool, hold_id, buyer_id, 60_000)).status == "ok"
            assert (await inventory.complete_payment(pool, hold_id, f"ref-{hold_id}")).status == "ok"

        for first in range(0, len(holds), 50):  # redis-py pools 100 connections by default
            await asyncio.gather(*(pay(h.id, h.buyer_id) for h in holds[first : first + 50]))


async def pending(redis: Redis, pool: PoolId) -> int:
    try:
        return int((await redis.xpending(pool.outbox, GROUP))["pending"])
    except ResponseError:  # no group yet
        return 0


async def orders_in_sql(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Order)) or 0)


async def test_a_worker_killed_mid_batch_loses_and_doubles_no_order(
    launcher: Launcher, tmp_path: Path, redis_url: str, redis: Redis, database: Database, engine: AsyncEngine
) -> None:
    shop = await seed_shop(engine, stock=STOCK, buyers=20)
    inventory = Inventory(redis)
    await inventory.load_library()
    pool = PoolId.product(shop.product_id)
    await inventory.load(
        pool, PoolConfig(1, shop.product_id, shop.brand_id, None, 1999, "USD", STOCK, STOCK, 0, 10**15 - 1, 600_000)
    )
    created = 0

    async def more(count: int) -> None:
        nonlocal created
        await create_paid(inventory, pool, shop, range(created, created + count))
        created += count

    await more(BEFORE_KILL)  # a backlog: the worker reads full batches
    first = start_worker(launcher, tmp_path / "w1", redis_url, database.url, "worker-1")

    # Kill it while it holds a batch it has read but not acknowledged, after it has committed some.
    deadline = time.monotonic() + 30
    while not (await orders_in_sql(engine) and await pending(redis, pool)):
        first.check_running("it wrote orders")
        if time.monotonic() > deadline:
            pytest.fail(f"the worker was never caught with a batch in hand within 30 s:\n{first.stderr}")
        if await pool_drained(redis, pool):
            await more(500)  # it caught up before we caught it in the middle (a slow test process): more work
        await asyncio.sleep(0.001)
    first.popen.kill()
    first.popen.wait(10)
    summary = await redis.xpending(pool.outbox, GROUP)
    written_by_first = await orders_in_sql(engine)
    assert 0 < written_by_first < created
    await more(AFTER_KILL)

    second = start_worker(launcher, tmp_path / "w2", redis_url, database.url, "worker-2")

    async def all_written() -> bool:
        second.check_running("every order was written")
        async with engine.connect() as connection:
            paid = await connection.scalar(select(func.count()).where(Order.status == OrderStatus.PAID))
        return paid == created and await pool_drained(redis, pool)

    await until(all_written, within=40, what=f"all {created} paid orders in SQL")

    audit = await audit_pool(redis, pool)
    paid = {h.id: h.payment_ref for h in audit.holds if h.state is HoldState.PAID}
    assert len(paid) == created
    async with engine.connect() as connection:
        rows = (await connection.execute(select(Order.hold_id, Order.status, Order.payment_ref))).all()
    assert len(rows) == created
    assert {row.hold_id: row.payment_ref for row in rows} == paid
    assert {row.status for row in rows} == {OrderStatus.PAID}
    # Counters move once per order, however often an entry was read: the double-apply a replay would cause.
    assert await product_row(engine, shop.product_id) == (STOCK - created, created)
    # Each paid hold posted its sale once: exactly its lines (the default terms: the 2% fee), in its order.
    terms = SaleTerms.default()
    split = split_sale(1999, commission_bps=0, fee_bps=terms.fee_bps, fee_base=terms.fee_base)
    expected = {LedgerAccount.BUYER_PAID: -1999, LedgerAccount.PLATFORM_FEE: split.platform_fee,
                LedgerAccount.BRAND_NET: split.brand_net}  # fmt: skip
    async with engine.connect() as connection:
        lines = (await connection.execute(select(LedgerLine.posting, LedgerLine.account, LedgerLine.amount_minor,
                                                 LedgerLine.order_id))).all()  # fmt: skip
        order_ids = {h: i for h, i in (await connection.execute(select(Order.hold_id, Order.id))).all()}
    postings: dict[str, dict[LedgerAccount, int]] = {}
    for posting, account, amount, order_id in lines:
        assert account not in postings.setdefault(posting, {}), f"{posting} {account} posted twice"
        postings[posting][account] = amount
        assert order_id == order_ids[posting.removeprefix("sale:")]
    assert len(lines) == 3 * created
    assert postings == {f"sale:{hold_id}": expected for hold_id in paid}
    assert await redis.xlen(DEAD_LETTERS) == 0
    assert await pending(redis, pool) == 0
    if summary["pending"]:  # the kill caught a batch in flight: the second worker took it over
        assert "took over" in second.stderr, second.stderr

    assert second.stop() == 0
    assert "Traceback" not in first.stderr + second.stderr, first.stderr + second.stderr
