"""Time on the wire and in Redis: integer milliseconds since the Unix epoch, computed exactly.

Redis (`TIME`), the pool functions and every `*_ms` / `ts` field count milliseconds. A datetime becomes one by
integer arithmetic on its `timedelta` from the epoch, floored: `int(moment.timestamp() * 1000)` goes through a
float, which truncates toward zero before 1970 and rounds up a microsecond before a whole second in the far
future — a sale would start or end a millisecond off.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["from_ms", "now_ms", "redis_time_ms", "to_ms"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime, floored, exactly (no float on the way)."""
    return (moment - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """The aware UTC datetime of `ms` milliseconds since the epoch (`to_ms(from_ms(ms)) == ms`)."""
    return _EPOCH + ms * _MS


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch, floored (integer nanoseconds, no float)."""
    return time.time_ns() // 1_000_000


def redis_time_ms(reply: tuple[int | bytes | str, int | bytes | str]) -> int:
    """Redis's `TIME` reply (seconds, microseconds) in milliseconds, floored: Redis's clock, not this process's."""
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000
