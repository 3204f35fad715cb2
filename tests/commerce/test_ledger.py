"""The money ledger against real Redis and both databases: the order writer posts each paid order once,
refunds post their reversals, and for every order the lines balance to the minor unit and add up to its split."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import defaultdict

import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce import refunds
from livecommerce.commerce.orders import apply_holds
from livecommerce.commerce.payments import ChargeStatus, RefundRefused, TestModeProvider
from livecommerce.commerce.pools import Hold, Inventory, PoolConfig, PoolId, Reserved, ReserveRequest
from livecommerce.commerce.split import split_sale
from livecommerce.commerce.terms import SaleTerms
from livecommerce.database import session_factory
from livecommerce.models import FeeBase, LedgerAccount, LedgerLine, Order, OrderStatus, Refund, RefundStatus, Role
from tests.support.shop import Shop, outbox_entries, redis_ms

CARD = "4242424242424242"
ACCOUNTS = list(LedgerAccount)


def random_terms(rng: random.Random, creator_id: int) -> SaleTerms:
    if rng.random() < 0.25:
        return SaleTerms.default(creator_id if rng.random() < 0.5 else 0)
    base = rng.choice(list(FeeBase))
    return SaleTerms(creator_id, rng.randint(1, 50), rng.choice([100, 1500, 3333, 8000]), rng.randint(1, 9),
                     rng.choice([0, 1, 200, 600, 2000]), base)  # fmt: skip


async def load_pool(redis: Redis, inventory: Inventory, shop: Shop, price: int = 1999) -> PoolId:
    pool = PoolId.product(shop.product_id)
    now = await redis_ms(redis)
    await inventory.load(pool, PoolConfig(1, shop.product_id, shop.brand_id, None, price, "USD", 100, 100, 0,
                                          now + 3_600_000, 300_000))  # fmt: skip
    return pool


async def reserve(inventory: Inventory, pool: PoolId, requests: list[ReserveRequest]) -> list[Hold]:
    results, _ = await inventory.reserve(pool, requests)
    holds = [r.hold for r in results if isinstance(r, Reserved)]
    assert len(holds) == len(requests), results
    return holds


async def pay(inventory: Inventory, provider: TestModeProvider, hold: Hold) -> None:
    assert (await inventory.begin_payment(hold.pool, hold.id, hold.buyer_id, 60_000)).status == "ok"
    charge = await provider.charge(hold.id, hold.total_minor, hold.currency, CARD)
    assert (await inventory.complete_payment(hold.pool, hold.id, charge.ref)).status == "ok"


async def records(redis: Redis, pool: PoolId, terms: dict[str, SaleTerms]) -> list[Hold]:
    """The pool's outbox as the writer reads it, each hold carrying the terms the test gave it."""
    holds = [Hold.from_json(fields[b"data"]) for fields in await outbox_entries(redis, pool)]
    return [dataclasses.replace(h, terms=terms[h.id]) for h in holds]


async def lines(engine: AsyncEngine) -> list[LedgerLine]:
    async with session_factory(engine)() as session:
        return list((await session.scalars(select(LedgerLine).order_by(LedgerLine.id))).all())


def expected_balance(order: Order) -> dict[LedgerAccount, int]:
    """What an order's lines must add up to, per account, computed on its own (not by summing postings): the
    sale less, for each share, floor(share x refunded / paid)."""
    paid, refunded = order.total_minor, order.refunded_minor
    sale = split_sale(paid, commission_bps=order.commission_bps, fee_bps=order.fee_bps, fee_base=order.fee_base)
    if order.status is not OrderStatus.PAID:
        return {}

    def left(share: int) -> int:
        return share - (share * refunded // paid if paid else 0)

    fee, commission = left(sale.platform_fee), left(sale.creator_commission)
    out = {
        LedgerAccount.BUYER_PAID: -(paid - refunded),
        LedgerAccount.PLATFORM_FEE: fee,
        LedgerAccount.CREATOR_COMMISSION: commission,
        LedgerAccount.BRAND_NET: (paid - refunded) - fee - commission,
    }
    return {account: amount for account, amount in out.items() if amount}


def balances(all_lines: list[LedgerLine]) -> dict[int, dict[LedgerAccount, int]]:
    out: dict[int, dict[LedgerAccount, int]] = defaultdict(lambda: defaultdict(int))
    for line in all_lines:
        out[line.order_id][line.account] += line.amount_minor
    return {order: {a: v for a, v in accounts.items() if v} for order, accounts in out.items()}


async def test_applying_a_batch_again_posts_nothing_twice(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    provider = TestModeProvider(redis)
    pool = await load_pool(redis, inventory, shop)
    holds = await reserve(
        inventory, pool, [ReserveRequest(b, f"k{b}", 2, room_id=shop.room_id) for b in shop.buyer_ids]
    )
    for hold in holds[:3]:
        await pay(inventory, provider, hold)
    await inventory.cancel(pool, holds[3].id, holds[3].buyer_id)
    terms = {h.id: SaleTerms(77, 5, 1500, 3, 600, FeeBase.BUYER_PAID_PLUS_DISCOUNT) for h in holds}
    terms[holds[2].id] = SaleTerms.default()
    batch = await records(redis, pool, terms)
    sessions = session_factory(engine)
    for _ in range(2):  # the same batch again (a crash before the ack), then in two halves, then all at once
        async with sessions.begin() as session:
            await apply_holds(session, batch)
    first = await lines(engine)
    for part in (batch[: len(batch) // 2], batch[len(batch) // 2 :]):
        async with sessions.begin() as session:
            await apply_holds(session, part)
    await asyncio.gather(*(apply_twice(sessions, batch) for _ in range(3)))
    assert [(line.posting, line.account, line.amount_minor) for line in await lines(engine)] == [
        (line.posting, line.account, line.amount_minor) for line in first
    ]
    # 3998 paid: commission 15% = 599, fee 6% of 3998 = 239, brand 3160; the default terms: fee 2% = 79.
    by_posting: dict[str, dict[LedgerAccount, int]] = defaultdict(dict)
    for line in first:
        by_posting[line.posting][line.account] = line.amount_minor
    assert by_posting == {
        f"sale:{holds[0].id}": {LedgerAccount.BUYER_PAID: -3998, LedgerAccount.PLATFORM_FEE: 239,
                                LedgerAccount.CREATOR_COMMISSION: 599, LedgerAccount.BRAND_NET: 3160},
        f"sale:{holds[1].id}": {LedgerAccount.BUYER_PAID: -3998, LedgerAccount.PLATFORM_FEE: 239,
                                LedgerAccount.CREATOR_COMMISSION: 599, LedgerAccount.BRAND_NET: 3160},
        f"sale:{holds[2].id}": {LedgerAccount.BUYER_PAID: -3998, LedgerAccount.PLATFORM_FEE: 79,
                                LedgerAccount.BRAND_NET: 3919},
    }  # fmt: skip
    line = next(li for li in first if li.posting == f"sale:{holds[0].id}")
    assert (line.creator_id, line.room_id, line.brand_id, line.currency) == (77, shop.room_id, shop.brand_id, "USD")
    assert next(li for li in first if li.posting == f"sale:{holds[2].id}").creator_id is None
    async with sessions() as session:
        order = await session.scalar(select(Order).where(Order.hold_id == holds[0].id))
    assert order is not None
    assert line.posted_at == order.paid_at
    assert (order.creator_id, order.collaboration_id, order.commission_bps, order.fee_rule_id, order.fee_bps,
            order.fee_base) == (77, 5, 1500, 3, 600, FeeBase.BUYER_PAID_PLUS_DISCOUNT)  # fmt: skip


async def apply_twice(sessions: object, batch: list[Hold]) -> None:
    """A writer racing another for the same entries (a takeover while the slow one still commits)."""
    async with sessions.begin() as session:  # type: ignore[attr-defined]
        await apply_holds(session, batch)


async def test_a_posted_line_is_never_updated(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    provider = TestModeProvider(redis)
    pool = await load_pool(redis, inventory, shop)
    (hold,) = await reserve(inventory, pool, [ReserveRequest(shop.buyer_ids[0], "a", 1)])
    await pay(inventory, provider, hold)
    async with session_factory(engine).begin() as session:
        await apply_holds(session, await records(redis, pool, {hold.id: SaleTerms.default()}))
    before = [(li.id, li.amount_minor) for li in await lines(engine)]
    assert before
    for statement in ("UPDATE ledger_lines SET amount_minor = 0", "UPDATE ledger_lines SET posting = 'x'"):
        with pytest.raises(DBAPIError, match="ledger lines are never updated"):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert [(li.id, li.amount_minor) for li in await lines(engine)] == before


async def test_a_mixed_burst_balances_to_the_minor_unit_for_every_order(
    redis: Redis, inventory: Inventory, engine: AsyncEngine, shop: Shop
) -> None:
    """Holds of random quantities under random terms, paid, cancelled or left held; then full and partial
    refunds, some at once on one order, some retried: every order's lines add up to its split."""
    rng = random.Random(13)
    provider = TestModeProvider(redis)
    pool = await load_pool(redis, inventory, shop, price=1337)
    staff = Principal(shop.staff_id, Role.BRAND_STAFF, shop.brand_id)
    requests = [ReserveRequest(shop.buyer_ids[i % 5], f"t{i}", rng.randint(1, 3), room_id=shop.room_id)
                for i in range(40)]  # fmt: skip
    holds = await reserve(inventory, pool, requests)
    terms = {h.id: random_terms(rng, 900 + i % 2) for i, h in enumerate(holds)}
    paid = []
    for hold in holds:
        roll = rng.random()
        if roll < 0.7:
            await pay(inventory, provider, hold)
            paid.append(hold)
        elif roll < 0.85:
            await inventory.cancel(pool, hold.id, hold.buyer_id)
    batch = await records(redis, pool, terms)
    sessions = session_factory(engine)
    for start in range(0, len(batch), 7):  # the writer's batches, each written twice
        for _ in range(2):
            async with sessions.begin() as session:
                await apply_holds(session, batch[start : start + 7])
    async with sessions() as session:
        order_ids = {o.hold_id: o.id for o in (await session.scalars(select(Order))).all()}

    async def refund_story(hold: Hold) -> None:
        order_id = order_ids[hold.id]
        kind = rng.choice(["full", "parts", "parts_to_the_end", "racing", "none"])
        if kind == "full":
            await refunds.request_refund(sessions, provider, staff, order_id, key="all")
        elif kind in ("parts", "parts_to_the_end"):
            left = hold.total_minor
            for n in range(rng.randint(1, 4)):
                amount = rng.randint(1, max(1, left // 2))
                await refunds.request_refund(sessions, provider, staff, order_id, key=f"p{n}", amount_minor=amount)
                left -= amount
            if kind == "parts_to_the_end":
                await refunds.request_refund(sessions, provider, staff, order_id, key="rest")
        elif kind == "racing":  # two refunds and a retry of one at once: what fits goes through, once
            third = hold.total_minor // 3 or 1
            results = await asyncio.gather(
                refunds.request_refund(sessions, provider, staff, order_id, key="a", amount_minor=third),
                refunds.request_refund(sessions, provider, staff, order_id, key="a", amount_minor=third),
                refunds.request_refund(sessions, provider, staff, order_id, key="b"),
                return_exceptions=True,
            )
            for result in results:
                assert not isinstance(result, BaseException) or isinstance(result, refunds.RefundTooLarge), result

    await asyncio.gather(*(refund_story(h) for h in paid))

    all_lines = await lines(engine)
    postings: dict[str, int] = defaultdict(int)
    for line in all_lines:
        postings[line.posting] += line.amount_minor
    assert postings
    assert all(total == 0 for total in postings.values()), postings
    assert sum(line.amount_minor for line in all_lines) == 0
    async with sessions() as session:
        orders = (await session.scalars(select(Order))).all()
        done = (await session.scalars(select(Refund))).all()
    assert {r.status for r in done} == {RefundStatus.DONE}
    assert len({(r.order_id, r.key) for r in done}) == len(done)
    got = balances(all_lines)
    refunded_by_order: dict[int, int] = defaultdict(int)
    for refund in done:
        refunded_by_order[refund.order_id] += refund.amount_minor
    assert any(0 < refunded_by_order[o.id] < o.total_minor for o in orders)  # partial refunds happened
    assert any(refunded_by_order[o.id] == o.total_minor for o in orders)  # and full ones
    for order in orders:
        assert order.refunded_minor == refunded_by_order[order.id] <= order.total_minor
        assert got.get(order.id, {}) == expected_balance(order), order.hold_id
        if order.status is OrderStatus.PAID:
            charge = await provider.lookup(order.hold_id)
            assert charge is not None
            assert charge.refunded_minor == order.refunded_minor
            assert (charge.status is ChargeStatus.REFUNDED) == (order.refunded_minor == order.total_minor)


async def test_the_provider_refuses_more_than_is_left_and_repeats_a_refund_key(redis: Redis) -> None:
    provider = TestModeProvider(redis)
    await provider.charge("p1.1", 1000, "USD", CARD)
    first = await provider.refund_part("p1.1", "refund:1", 400)
    assert first is not None
    assert (first.refunded_minor, first.status) == (400, ChargeStatus.CHARGED)
    assert await provider.refund_part("p1.1", "refund:1", 400) == first  # a retry gives nothing more back
    with pytest.raises(RefundRefused, match="only 600 is left"):
        await provider.refund_part("p1.1", "refund:2", 601)
    rest = await provider.refund_part("p1.1", "refund:2", 600)
    assert rest is not None
    assert (rest.refunded_minor, rest.status) == (1000, ChargeStatus.REFUNDED)
    with pytest.raises(RefundRefused, match="refunded"):
        await provider.refund_part("p1.1", "refund:3", 1)
    assert await provider.refund_part("p9.9", "refund:4", 1) is None
