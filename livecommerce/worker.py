"""The background worker process.

For now it proves it can reach Redis and the database and keeps a heartbeat key alive, so operators see
live workers (`KEYS livecommerce:worker:*`); flash-sale loading, outbox consumption and hold sweeping join it
as those features land.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from redis.asyncio import Redis

from livecommerce.database import open_database
from livecommerce.errors import ConfigError
from livecommerce.server import wait_for_signal
from livecommerce.settings import Settings

__all__ = ["run_worker"]

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5


async def _heartbeat(redis: Redis, key: str) -> None:
    while True:
        await redis.set(key, "alive", ex=HEARTBEAT_SECONDS * 3)
        await asyncio.sleep(HEARTBEAT_SECONDS)


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
        key = f"livecommerce:worker:{socket.gethostname()}:{os.getpid()}"
        beat = asyncio.create_task(_heartbeat(redis, key))
        log.info("worker started (%s)", key)
        await wait_for_signal()
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await redis.delete(key)
        log.info("worker stopped")
    finally:
        await redis.aclose()
        await engine.dispose()
