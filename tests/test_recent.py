"""RecentCache: a burst of misses for one key becomes one load; stale values are served during one refresh;
the last good value is kept, for a bounded time, through refreshes that fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import pytest

from livecommerce.errors import NotFound
from livecommerce.recent import RecentCache


class Source:
    """A slow data source that counts its reads and can be told to fail."""

    def __init__(self) -> None:
        self.reads = 0
        self.value = "v1"
        self.fail = False
        self.error: Exception = LookupError("gone")
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self) -> str:
        self.reads += 1
        await self.gate.wait()
        if self.fail:
            raise self.error
        return self.value


async def test_a_burst_of_misses_is_one_load() -> None:
    cache: RecentCache[int, str] = RecentCache(60, 60)
    source = Source()
    source.gate.clear()
    waiting = [asyncio.ensure_future(cache.get(1, source.read)) for _ in range(1_000)]
    await asyncio.sleep(0)
    source.gate.set()
    assert set(await asyncio.gather(*waiting)) == {"v1"}
    assert source.reads == 1
    assert await cache.get(1, source.read) == "v1"
    assert source.reads == 1


async def test_stale_values_are_served_while_one_refresh_runs() -> None:
    cache: RecentCache[int, str] = RecentCache(0, 60)  # everything is stale at once, but usable
    source = Source()
    assert await cache.get(1, source.read) == "v1"
    source.value = "v2"
    source.gate.clear()
    answers = [await cache.get(1, source.read) for _ in range(100)]
    assert answers == ["v1"] * 100  # nobody waited on the slow refresh
    await asyncio.sleep(0)
    assert source.reads == 2  # and only one refresh started
    source.gate.set()
    seen = [await _yield_then(cache.get(1, source.read)) for _ in range(20)]
    assert seen[-1] == "v2"  # the refresh landed in the background


async def _yield_then(answer: Awaitable[str]) -> str:
    await asyncio.sleep(0)
    return await answer


async def test_failures_are_shared_but_not_cached() -> None:
    cache: RecentCache[int, str] = RecentCache(60, 60)
    source = Source()
    source.fail = True
    source.gate.clear()
    waiting = [asyncio.ensure_future(cache.get(1, source.read)) for _ in range(10)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, LookupError) for result in results)
    assert source.reads == 1
    source.fail = False
    assert await cache.get(1, source.read) == "v1"
    assert source.reads == 2


class Clock:
    """Time for the cache, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settled(cache: RecentCache[int, str]) -> None:
    """Let a background refresh finish (it needs a few loop turns)."""
    for _ in range(100):
        await asyncio.sleep(0)
        if not cache._loading:
            return
    raise AssertionError("the refresh did not finish")


async def test_a_failed_refresh_keeps_the_last_good_value_for_a_bounded_time(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    cache: RecentCache[int, str] = RecentCache(1, 5, keep_seconds=60, clock=clock)
    source = Source()
    assert await cache.get(1, source.read) == "v1"
    source.fail = True  # the database goes down
    caplog.set_level(logging.WARNING, logger="livecommerce.recent")
    clock.now += 2
    assert await cache.get(1, source.read) == "v1"  # stale, the refresh fails behind it
    await settled(cache)
    assert source.reads == 2
    clock.now += 0.5
    assert [await cache.get(1, source.read) for _ in range(50)] == ["v1"] * 50
    await settled(cache)
    assert source.reads == 2  # a failing key is retried at most once per fresh_seconds, not per call
    clock.now += 20  # past stale_seconds: still served at once, without waiting on the failing source
    source.gate.clear()
    assert await cache.get(1, source.read) == "v1"
    await asyncio.sleep(0)
    assert source.reads == 3  # and one retry started behind it
    source.gate.set()
    await settled(cache)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per key per outage, not per failure
    assert "LookupError" in warnings[0].getMessage()
    clock.now += 40  # 62 s after the load: too old to serve, so the caller gets the failure
    with pytest.raises(LookupError):
        await cache.get(1, source.read)
    source.fail = False  # back: the next call loads
    source.value = "v2"
    assert await cache.get(1, source.read) == "v2"


async def test_a_caller_waiting_on_a_failed_load_gets_the_kept_value_but_fresh_gets_the_error() -> None:
    clock = Clock()
    cache: RecentCache[int, str] = RecentCache(1, 5, keep_seconds=60, clock=clock)
    source = Source()
    await cache.get(1, source.read)
    clock.now += 10  # past stale: a caller waits for the refresh
    source.fail = True
    assert await cache.get(1, source.read) == "v1"  # the refresh failed; the last good value answers
    with pytest.raises(LookupError):
        await cache.get(1, source.read, fresh=True)  # who needs current data hears that there is none
    assert await cache.get(1, source.read) == "v1"
    source.fail = False
    source.value = "v2"
    clock.now += 1
    assert await cache.get(1, source.read) == "v1"  # the retry runs behind the kept value...
    await settled(cache)
    assert await cache.get(1, source.read) == "v2"  # ...and its result replaces it


async def test_an_answer_from_the_source_is_never_served_from_the_cache() -> None:
    clock = Clock()
    cache: RecentCache[int, str] = RecentCache(1, 5, keep_seconds=60, clock=clock)
    source = Source()
    await cache.get(1, source.read)
    source.fail, source.error = True, NotFound("no room with id 1")  # deleted: a real answer, not an outage
    clock.now += 2
    assert await cache.get(1, source.read) == "v1"  # stale, refreshed behind
    await settled(cache)
    with pytest.raises(NotFound):
        await cache.get(1, source.read)
    with pytest.raises(NotFound):
        await cache.get(1, source.read)


def test_the_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="keep_seconds"):
        RecentCache(1, 5, keep_seconds=2)


async def test_fresh_waits_for_a_new_load_and_drop_forgets() -> None:
    cache: RecentCache[int, str] = RecentCache(60, 60)
    source = Source()
    await cache.get(1, source.read)
    source.value = "v2"
    assert await cache.get(1, source.read) == "v1"
    assert await cache.get(1, source.read, fresh=True) == "v2"
    source.value = "v3"
    cache.drop(1)
    assert await cache.get(1, source.read) == "v3"
    assert source.reads == 3


async def test_a_cancelled_caller_does_not_cancel_the_load_for_others() -> None:
    cache: RecentCache[int, str] = RecentCache(60, 60)
    source = Source()
    source.gate.clear()
    first = asyncio.ensure_future(cache.get(1, source.read))
    second = asyncio.ensure_future(cache.get(1, source.read))
    await asyncio.sleep(0)
    first.cancel()
    source.gate.set()
    assert await second == "v1"
    assert first.cancelled()
    assert source.reads == 1
