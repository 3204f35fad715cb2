"""Rate budgets shared by every process through Redis: the GCRA of `lua/gcra.lua`, one small key per caller.

Not a transport: the HTTP middleware (`ratelimit.py`) and the domain (`commerce/guesses.py`, the invite-code
tries) both count with `RateLimiter`, each over its own keys.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from livecommerce.scripts import script

__all__ = ["RateLimiter"]

_WINDOW_US: Final = 60_000_000  # budgets are per minute


class RateLimiter:
    """Checks one caller's budget; `per_minute=0` disables the limit."""

    def __init__(self, redis: Redis, per_minute: int, burst: int) -> None:
        self.per_minute = per_minute
        self.burst = max(1, burst)
        self._interval = _WINDOW_US // per_minute if per_minute else 0
        self._script: AsyncScript = script(redis, "rate_limit.lua")

    async def check(self, key: str) -> float:
        """0 when the request may go ahead (and it is counted), else the seconds to wait."""
        if not self.per_minute:
            return 0.0
        allowed, wait_ms = await self._script(keys=[key], args=[self._interval, self.burst])
        return 0.0 if allowed else int(wait_ms) / 1000
