"""Invite-code guessing is bounded per user, whatever the path: REST, the socket, any web process.

Every buy that carries a code spends one of the user's tries (`WRONG_CODES` per `WINDOW_MINUTES`, regained
steadily: the request limiter's GCRA in Redis, `limits.RateLimiter`) before it reaches the pool, in one
atomic step: counting only the refusals afterwards would let a burst of concurrent guesses all pass the
check before any was counted. A buyer with the right code needs one try. Once they are spent, a buy that
carries a code is refused with 429 `rate_limited` and `retry_after`, so even the right code waits: guessing
cannot be told apart from a typo by its result.
Buys without a code are not affected. If Redis does not answer, the buy is refused with 503 (the pool
needs Redis too), never let through unchecked.
"""

from __future__ import annotations

import logging
import math

from redis.asyncio import Redis
from redis.exceptions import RedisError

from livecommerce.errors import ServiceUnavailable, TooManyRequests
from livecommerce.limits import RateLimiter

__all__ = ["WINDOW_MINUTES", "WRONG_CODES", "CodeGuesses"]

WRONG_CODES = 10
WINDOW_MINUTES = 10

log = logging.getLogger(__name__)


class CodeGuesses:
    """One per web process; the budget itself lives in Redis, shared by all of them."""

    def __init__(self, redis: Redis, *, wrong_codes: int = WRONG_CODES, window_minutes: int = WINDOW_MINUTES) -> None:
        if wrong_codes < window_minutes:
            raise ValueError("wrong_codes must be at least window_minutes (the limiter counts whole per-minute steps)")
        self.wrong_codes = wrong_codes
        self.window_minutes = window_minutes
        self._limiter = RateLimiter(redis, per_minute=wrong_codes // window_minutes, burst=wrong_codes)

    @staticmethod
    def _key(user_id: int) -> str:
        return f"livecommerce:rl:{{code:user:{user_id}}}"

    async def before_code(self, user_id: int) -> None:
        """Spend one try, or raise `TooManyRequests` if the user has none left."""
        try:
            wait = await self._limiter.check(self._key(user_id))
        except (RedisError, OSError):
            raise ServiceUnavailable("we could not reach the stock service; try again in a moment") from None
        if wait:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many tries with an invite code: at most {self.wrong_codes} per {self.window_minutes} minutes; "
                f"check your code and try again in {seconds} s",
                retry_after=seconds,
            )
