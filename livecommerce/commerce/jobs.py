"""The worker's loops: load sales before they start, close and finalise them after they end, sweep holds,
write the outboxes to SQL, finish refunds a crash left pending, and audit that every charge has its order.

Each job is a small class whose `step` does one round; `Job.run` repeats it forever. A failed round is
logged and retried after a capped exponential backoff; cancellation (the worker stopping) is never caught.
Every round is idempotent, so several workers may run side by side and a worker killed mid-round repeats
nothing when it restarts: loading never overwrites live stock, finalising returns stock once (a conditional
UPDATE), the order writer's SQL is keyed by hold id, a refund is asked of the provider under its own key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar, Final

from redis.asyncio import Redis
from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.aio import raise_if_cancelled
from livecommerce.clock import now_ms
from livecommerce.commerce import refunds, sales
from livecommerce.commerce.loading import load_sale
from livecommerce.commerce.orders import OrderWriter, pool_drained
from livecommerce.commerce.payments import (
    REFUNDS_OWED,
    Charge,
    ChargeStatus,
    PaymentProvider,
    retry_owed_refunds,
    settle_by_provider,
)
from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.commerce.product_stock import give_units
from livecommerce.commerce.voucher_live import VoucherLive
from livecommerce.errors import ClientError
from livecommerce.models import FlashSale, Order, OrderStatus, SaleStatus, utcnow

__all__ = [
    "ORPHANS",
    "ChargeAudit",
    "Job",
    "OutboxWriter",
    "RefundFinisher",
    "SaleCloser",
    "SaleLoader",
    "Sweeper",
    "VoucherSweeper",
    "worker_jobs",
]

log = logging.getLogger(__name__)

LOAD_AHEAD: Final = timedelta(minutes=10)  # a sale is loaded into Redis this long before it starts
SWEEP_MAX: Final = 1000  # holds one sweep call looks at
_BACKOFF_START: Final = 0.5
_BACKOFF_MAX: Final = 30.0
_OPEN: Final = (SaleStatus.SCHEDULED, SaleStatus.LIVE)
ORPHANS: Final = "livecommerce:payments:orphans"  # set: hold ids charged with no paid order and no refund


class Job:
    """One background loop. `step` returns True when more work is waiting (run again at once)."""

    name: ClassVar[str] = "job"
    interval: float = 1.0
    backoff_start: float = _BACKOFF_START  # seconds after the first failure, doubling up to backoff_max
    backoff_max: float = _BACKOFF_MAX

    async def step(self) -> bool:
        raise NotImplementedError

    def recover(self) -> None:
        """Called after a failed step, before the next one."""

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                busy = await self.step()
                raise_if_cancelled()
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(self.backoff_max, self.backoff_start * 2 ** min(failures - 1, 16))
                log.exception("%s failed (%d in a row); retrying in %.1f s", self.name, failures, delay)
                self.recover()
                raise_if_cancelled()  # a redis-py timeout may have swallowed our cancellation
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("%s works again after %d failures", self.name, failures)
                failures = 0
            if not busy:
                await asyncio.sleep(self.interval)


class SaleLoader(Job):
    """Loads scheduled sales into Redis before they start (and again when their version rises); marks a sale
    live once its start has passed and its pool is loaded."""

    name = "sale loader"

    def __init__(self, sessions: async_sessionmaker[AsyncSession], inventory: Inventory, interval: float = 1.0):
        self.sessions = sessions
        self.inventory = inventory
        self.interval = interval

    async def step(self) -> bool:
        now = utcnow()
        async with self.sessions.begin() as session:
            due = await session.scalars(
                select(FlashSale)
                .where(
                    FlashSale.status.in_(_OPEN),
                    FlashSale.finalised_at.is_(None),
                    FlashSale.starts_at <= now + LOAD_AHEAD,
                    FlashSale.ends_at > now,
                )
                .order_by(FlashSale.starts_at, FlashSale.id)
            )
            for sale in due.all():
                pool = PoolId.sale(sale.id)
                stored = await self.inventory.config(pool)
                if stored.get("state") == "closed":
                    continue  # a closed pool never opens again
                if int(stored.get("version", 0)) < sale.version:
                    loaded = await load_sale(self.inventory, session, sale.id)
                    if loaded is None or loaded[0] not in ("loaded", "stale"):
                        continue
                    log.info("sale %d loaded into Redis (version %d, %s)", sale.id, loaded[1],
                             "new pool" if loaded[2] else "stock kept")  # fmt: skip
                started = sale.status is SaleStatus.SCHEDULED and sale.starts_at <= now
                if started and await sales.mark_live(session, sale.id):
                    log.info("sale %d is live", sale.id)
        return False


class SaleCloser(Job):
    """Closes sales whose window has passed, and once every hold is settled and written to SQL, finalises
    them (unsold and unpaid units go back to the product's stock, once) and retires their pools. Pools of
    cancelled or already finalised sales are closed and retired the same way."""

    name = "sale closer"

    def __init__(
        self,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        inventory: Inventory,
        interval: float = 1.0,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.inventory = inventory
        self.interval = interval

    async def step(self) -> bool:
        now = utcnow()
        registered = [pool.id for pool in await self.inventory.registered() if pool.kind == "sale"]
        async with self.sessions() as session:
            ended = and_(FlashSale.status.in_(sales.UNFINALISED), FlashSale.finalised_at.is_(None),
                         FlashSale.ends_at <= now)  # fmt: skip
            gone = and_(FlashSale.id.in_(registered), FlashSale.status.notin_(_OPEN))  # ended early, cancelled
            due = (await session.scalars(select(FlashSale).where(or_(ended, gone)).order_by(FlashSale.id))).all()
        for sale in due:
            await self.close(sale)
        return False

    async def close(self, sale: FlashSale) -> bool:
        """One attempt to settle a sale's pool; True when it is finalised (if it sold) and retired."""
        pool = PoolId.sale(sale.id)
        await self.inventory.close(pool)
        while len((swept := await self.inventory.sweep(pool, SWEEP_MAX)).expired) >= SWEEP_MAX:
            pass
        if swept.stock.held:
            return False  # holds being paid: the sweeper settles them after their deadline
        if not await pool_drained(self.redis, pool):
            return False
        if sale.status in sales.UNFINALISED and sale.finalised_at is None:
            async with self.sessions.begin() as session:
                in_sql = await session.scalar(
                    select(func.coalesce(func.sum(Order.quantity), 0)).where(
                        Order.sale_id == sale.id, Order.status == OrderStatus.PAID
                    )
                )
                units_paid = swept.stock.paid
                if int(in_sql or 0) != units_paid:
                    log.warning("sale %d: Redis counts %d units paid, SQL orders %d; returning stock for the larger",
                                sale.id, units_paid, in_sql)  # fmt: skip
                    units_paid = max(units_paid, int(in_sql or 0))
                finalised = await sales.finalise(session, sale.id, units_paid=units_paid)
            if finalised:  # after the commit: a crash in between leaves units unsold, never sold twice
                returned = sale.quantity - units_paid
                await give_units(self.inventory, sale.product_id, returned, op=f"finalised:s{sale.id}")
                log.info("sale %d finalised: %d of %d units paid, %d returned to the product's stock",
                         sale.id, units_paid, sale.quantity, returned)  # fmt: skip
        elif swept.stock.paid and sale.finalised_at is None:
            log.error("sale %d is %s but its pool sold %d units", sale.id, sale.status.value, swept.stock.paid)
        await self.inventory.retire(pool)
        return True


class VoucherSweeper(Job):
    """Returns the reservations of claims that expired unused to their voucher's budget, and settles claims
    applied to a hold past its payment deadline: the hold paid with the claim → redeemed, otherwise released
    (`VoucherLive.sweep`): a crash between applying a voucher and the payment is reconciled here."""

    name = "voucher sweeper"

    def __init__(self, vouchers: VoucherLive, interval: float = 1.0) -> None:
        self.vouchers = vouchers
        self.interval = interval

    async def step(self) -> bool:
        await self.vouchers.sweep()
        return False


class Sweeper(Job):
    """Returns expired holds to stock in every registered pool, and settles holds whose payment outlived its
    deadline by asking the payment provider: charged → paid, otherwise → expired."""

    name = "sweeper"

    def __init__(self, inventory: Inventory, provider: PaymentProvider, interval: float = 0.25) -> None:
        self.inventory = inventory
        self.provider = provider
        self.interval = interval

    async def step(self) -> bool:
        failed: list[BaseException] = []
        await retry_owed_refunds(self.inventory.redis, self.provider)
        for pool in await self.inventory.registered():
            try:
                await self.sweep(pool)
            except Exception as exc:  # noqa: BLE001 - one broken pool must not stop the others being swept
                failed.append(exc)
        if failed:
            raise failed[0]
        return False

    async def sweep(self, pool: PoolId) -> None:
        while True:
            swept = await self.inventory.sweep(pool, SWEEP_MAX)
            for hold_id in swept.stale_paying:
                await self.reconcile(pool, hold_id)
            if len(swept.expired) < SWEEP_MAX:
                return

    async def reconcile(self, pool: PoolId, hold_id: str) -> str:
        """Settle a hold stuck in payment by what the provider recorded; returns the hold's new status."""
        return (await settle_by_provider(self.inventory, self.provider, pool, hold_id, expire=True)).status


class OutboxWriter(Job):
    """Writes the pools' outboxes to SQL (see `commerce.orders`)."""

    name = "order writer"

    def __init__(self, writer: OrderWriter, interval: float = 0.1) -> None:
        self.writer = writer
        self.interval = interval

    async def step(self) -> bool:
        return await self.writer.step() > 0

    def recover(self) -> None:
        self.writer.restart()


class RefundFinisher(Job):
    """Finishes refunds left ``pending`` for over a minute (a crash between recording a refund and posting it):
    asks the provider again under the refund's key, then posts it (`commerce.refunds.finish_refund`)."""

    name = "refund finisher"

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], provider: PaymentProvider, interval: float = 10.0
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.interval = interval

    async def step(self) -> bool:
        stale = await refunds.stale_refunds(self.sessions)
        for refund_id in stale:
            try:
                await refunds.finish_refund(self.sessions, self.provider, refund_id)
            except ClientError as exc:  # this refund needs a person (e.g. no charge at the provider); go on
                log.error("refund %d cannot be finished: %s", refund_id, exc.detail)
            else:
                log.warning("refund %d was left pending (a crash?); finished now", refund_id)
        return False


class ChargeAudit(Job):
    """Checks that every charge in the provider's ledger has a paid order in SQL, or a refund (done or owed).

    Charges younger than `grace_seconds` are skipped: their order may still be in an outbox (during a database
    outage orders wait there; a charge found meanwhile is reported, and crossed off once its order lands). A
    charge without either is logged at error with its hold id and kept in the Redis set
    ``livecommerce:payments:orphans`` (what monitoring watches: `SCARD`) until it is resolved. One page of the
    ledger per step; a full pass, then `interval` seconds of rest.
    """

    name = "charge audit"

    def __init__(
        self,
        redis: Redis,
        sessions: async_sessionmaker[AsyncSession],
        provider: PaymentProvider,
        *,
        grace_seconds: float = 900.0,
        interval: float = 60.0,
        page: int = 500,
    ) -> None:
        self.redis = redis
        self.sessions = sessions
        self.provider = provider
        self.grace_ms = int(grace_seconds * 1000)
        self.interval = interval
        self.page = page
        self._cursor: str | None = None

    async def step(self) -> bool:
        charges, self._cursor = await self.provider.charges(self._cursor, self.page)
        await self.check(charges)
        return self._cursor is not None

    async def check(self, charges: Sequence[Charge]) -> set[str]:
        """Report the charges of `charges` that have no order; returns their keys (hold ids)."""
        recent = now_ms() - self.grace_ms
        due = [
            c for c in charges
            if c.status is ChargeStatus.CHARGED and (c.charged_at_ms is None or c.charged_at_ms <= recent)
        ]  # fmt: skip
        settled = {c.key for c in charges if c.status is ChargeStatus.REFUNDED}
        if due:
            keys = [c.key for c in due]
            async with self.sessions() as session:
                ordered = set(
                    (
                        await session.scalars(
                            select(Order.hold_id).where(Order.hold_id.in_(keys), Order.status == OrderStatus.PAID)
                        )
                    ).all()
                )
            owed = await self.redis.smismember(REFUNDS_OWED, keys)
            settled |= {key for key, is_owed in zip(keys, owed, strict=True) if key in ordered or is_owed}
        orphans = {c.key for c in due} - settled
        for charge in due:
            if charge.key in orphans and await self.redis.sadd(ORPHANS, charge.key):
                log.error("charge %s (%s, %d %s) has no paid order and no refund: a charge without an order",
                          charge.key, charge.ref, charge.amount_minor, charge.currency)  # fmt: skip
        resolved = sorted(settled)
        if resolved and await self.redis.srem(ORPHANS, *resolved):
            log.info("charges without an order resolved (their order or refund arrived): %s", ", ".join(resolved))
        return orphans


def worker_jobs(
    redis: Redis,
    sessions: async_sessionmaker[AsyncSession],
    inventory: Inventory,
    provider: PaymentProvider,
    *,
    consumer: str,
    claim_after_ms: int,
    vouchers: VoucherLive | None = None,
) -> Sequence[Job]:
    """The worker's jobs, ready to `run` (`vouchers`: also sweep the vouchers' claims)."""
    writer = OrderWriter(redis, sessions, inventory, consumer=consumer, claim_after_ms=claim_after_ms)
    jobs: list[Job] = [
        SaleLoader(sessions, inventory),
        SaleCloser(redis, sessions, inventory),
        Sweeper(inventory, provider),
        OutboxWriter(writer),
        RefundFinisher(sessions, provider),
        ChargeAudit(redis, sessions, provider),
    ]
    if vouchers is not None:
        jobs.append(VoucherSweeper(vouchers))
    return jobs
