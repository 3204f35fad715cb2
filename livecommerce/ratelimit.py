"""Per-caller request rate limits, shared by every web process through Redis: the HTTP side of the budgets.

The budgets are `limits.RateLimiter`s (GCRA in Redis, `lua/rate_limit.lua`), one small key per caller: the
user id when signed in, else the client address. Writes and reads have separate budgets. A refused request
gets 429 with `Retry-After` and a problem saying when to retry. If Redis is unreachable the request is
refused with 503 rather than served unlimited.
"""

from __future__ import annotations

import math

from aiohttp import web
from aiohttp.typedefs import Handler
from redis.exceptions import RedisError

from livecommerce.errors import ServiceUnavailable, TooManyRequests
from livecommerce.limits import RateLimiter
from livecommerce.state import PRINCIPAL, REDIS, SETTINGS

__all__ = ["RATE_LIMITERS", "install", "rate_limit"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
