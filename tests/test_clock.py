"""Datetimes become milliseconds exactly: one conversion for every `*_ms` field and Redis."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from livecommerce.clock import from_ms, now_ms, redis_time_ms, to_ms


def test_to_ms_is_exact_where_the_float_way_is_not() -> None:
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert to_ms(last) == 253402300799999
    assert int(last.timestamp() * 1000) == 253402300800000, "the float way rounds up into the next second"
    before = datetime(1969, 6, 1, 0, 0, 0, 500, tzinfo=UTC)
    assert to_ms(before) == -18489600000, "floored, like Redis and // on the way back"
    assert int(before.timestamp() * 1000) == -18489599999, "the float way truncates toward zero"


def test_offsets_do_not_matter() -> None:
    moment = datetime(2026, 12, 3, 11, 0, 0, 123456, tzinfo=UTC)
    assert to_ms(moment) == to_ms(moment.astimezone(timezone(timedelta(hours=-5, minutes=-30)))) == 1796295600123


@given(st.integers(min_value=-(2**40), max_value=2**47))
def test_from_ms_and_to_ms_round_trip(ms: int) -> None:
    moment = from_ms(ms)
    assert moment.tzinfo is UTC
    assert to_ms(moment) == ms
    assert to_ms(moment + timedelta(microseconds=999)) == ms, "floored, never rounded up"


def test_now_ms_is_the_wall_clock() -> None:
    before = time.time_ns() // 1_000_000
    now = now_ms()
    assert before <= now <= time.time_ns() // 1_000_000
    assert isinstance(now, int)


def test_redis_time_is_floored_to_the_millisecond_whatever_the_reply_type() -> None:
    assert redis_time_ms((b"1700000000", b"999999")) == 1_700_000_000_999
    assert redis_time_ms((1_700_000_000, 1_000)) == 1_700_000_000_001
    assert redis_time_ms(("0", "999")) == 0
