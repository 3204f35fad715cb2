"""Per-caller request rate limits, shared by every web process through Redis.

A GCRA script (`lua/rate_limit.lua`, loaded once; redis-py re-loads it on NOSCRIPT) keeps one small key per
caller: the user id when signed in, else the client address. Writes and reads have separate budgets. A
refused request gets 429 with `Retry-After` and a problem saying when to retry. If Redis is unreachable the
request is refused with 503 rather than served unlimited.
"""

from __future__ import annotations

import math
from importlib import resources

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from livecommerce.errors import ServiceUnavailable, TooManyRequests
from livecommerce.state import PRINCIPAL, REDIS, SETTINGS

__all__ = ["RateLimiter", "rate_limit"]

_WINDOW_US = 60_000_000  # budgets are per minute
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RateLimiter:
    """Checks one caller's budget; `per_minute=0` disables the limit."""

    def __init__(self, redis: Redis, per_minute: int, burst: int) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst)
        self._interval = _WINDOW_US // per_minute if per_minute else 0
        source = resources.files("livecommerce").joinpath("lua/rate_limit.lua").read_text()
        self._script: AsyncScript = redis.register_script(source)

    async def check(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait."""
        if not self.per_minute:
            return 0.0
        allowed, wait_ms = await self._script(keys=[key], args=[self._interval, self.burst])
        return 0.0 if allowed else int(wait_ms) / 1000


RATE_LIMITERS: web.AppKey[dict[str, RateLimiter]] = web.AppKey("rate_limiters")


def install(app: web.Application) -> None:
    """Create the limiters once Redis is open (call after the Redis cleanup context is added)."""

    async def create(app: web.Application) -> None:
        settings = app[SETTINGS]
        app[RATE_LIMITERS] = {
            "w": RateLimiter(app[REDIS], settings.rate_limit_writes, burst=max(1, settings.rate_limit_writes // 4)),
            "r": RateLimiter(app[REDIS], settings.rate_limit_reads, burst=max(1, settings.rate_limit_reads // 4)),
        }

    app.on_startup.append(create)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/"):
        return await handler(request)
    kind = "r" if request.method in _SAFE_METHODS else "w"
    who = request[PRINCIPAL]
    caller = f"user:{who.user_id}" if who.user_id is not None else f"ip:{request.remote or 'unknown'}"
    limiter = request.app[RATE_LIMITERS][kind]
    try:
        wait = await limiter.check(f"livecommerce:rl:{{{kind}:{caller}}}")
    except RedisError:
        raise ServiceUnavailable("rate limiting is unavailable (Redis does not answer); retry shortly") from None
    if wait:
        seconds = max(1, math.ceil(wait))
        kinds = "changes" if kind == "w" else "reads"
        raise TooManyRequests(
            f"too many {kinds}: the limit is {limiter.per_minute} per minute; retry in {seconds} s",
            retry_after=seconds,
        )
    return await handler(request)
