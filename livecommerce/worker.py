"""The background worker process.

It keeps a heartbeat key alive, so operators see live workers (`KEYS livecommerce:worker:*`), and runs the
jobs of `commerce.jobs`: the sale loader, the sale closer, the hold sweeper and the order writer (the
outbox consumer, one consumer named `<host>:<pid>` per worker). Any number of workers may run side by side;
every job is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.aio import cancel_and_wait
from livecommerce.commerce import rankings
from livecommerce.commerce.jobs import worker_jobs
from livecommerce.commerce.payments import TestModeProvider
from livecommerce.commerce.pools import Inventory
from livecommerce.commerce.voucher_live import VoucherLive
from livecommerce.commerce.voucher_store import VoucherStore
from livecommerce.database import open_database, session_factory
from livecommerce.errors import ConfigError
from livecommerce.server import wait_for_signal
from livecommerce.settings import Settings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5
RANKINGS_REPAIR_SECONDS = 60  # the start-up repair of the rankings gives up after this long (it is retried at
# the next start-up; a partial repair is still correct, as every addition counts a hold once)


async def _heartbeat(redis: Redis, key: str) -> None:
    while True:
        await redis.set(key, "alive", ex=HEARTBEAT_SECONDS * 3)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _repair_rankings(sessions: async_sessionmaker[AsyncSession], redis: Redis) -> None:
    """Add to the rankings the orders paid this month and the last that Redis missed (a writer that died between
    its commit and counting, a Redis failure, a Redis that lost its data)."""
    today = rankings.today()
    try:
        async with asyncio.timeout(RANKINGS_REPAIR_SECONDS):
            missing = await rankings.repair(sessions, rankings.Rankings(redis), rankings.months_back(today), today)
    except Exception:  # the worker's jobs matter more; the next start-up repairs again
        log.exception("repairing the rankings from SQL failed; continuing without it")
        return
    if missing:
        log.warning("the rankings missed %d paid orders; added them from SQL", missing)


async def run_worker(settings: Settings, redis_url: str) -> None:
    redis = Redis.from_url(redis_url, socket_connect_timeout=5)
    try:
        try:
            await redis.ping()
        except Exception as exc:  # noqa: BLE001 - any failure to reach Redis ends start-up with its reason
            raise ConfigError(f"cannot reach Redis at {redis_url}: {exc}") from None
        engine = await open_database(settings.effective_database_url)
    except BaseException:
        await redis.aclose()
        raise
    try:
        name = f"{socket.gethostname()}:{os.getpid()}"
        key = f"livecommerce:worker:{name}"
        inventory = Inventory(redis)
        await inventory.load_library()
        await _repair_rankings(session_factory(engine), redis)
        provider = TestModeProvider(redis, delay_s=settings.payment_delay_ms / 1000)
        store = VoucherStore(redis)
        await store.load_library()
        vouchers = VoucherLive(sessions=session_factory(engine), store=store, inventory=inventory)
        jobs = worker_jobs(
            redis,
            session_factory(engine),
            inventory,
            provider,
            consumer=name,
            claim_after_ms=settings.worker_claim_after_ms,
            vouchers=vouchers,
        )
        tasks = [asyncio.create_task(_heartbeat(redis, key), name="heartbeat")]
        tasks += [asyncio.create_task(job.run(), name=job.name) for job in jobs]
        log.info("worker started (%s)", key)
        await wait_for_signal()
        await cancel_and_wait(tasks)
        await redis.delete(key)
        log.info("worker stopped")
    finally:
        await redis.aclose()
        await engine.dispose()
