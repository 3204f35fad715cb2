"""RecentCache: a burst of misses for one key becomes one load; stale values are served during one refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from livecommerce.recent import RecentCache


class Source:
    """A slow data source that counts its reads and can be told to fail."""

    def __init__(self) -> None:
        self.reads = 0
        self.value = "v1"
        self.fail = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self) -> str:
        self.reads += 1
        await self.gate.wait()
        if self.fail:
            raise LookupError("gone")
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


async def test_a_failed_refresh_drops_the_stale_value() -> None:
    cache: RecentCache[int, str] = RecentCache(0, 60)
    source = Source()
    await cache.get(1, source.read)
    source.fail = True
    assert await cache.get(1, source.read) == "v1"  # served stale; the refresh fails behind it
    for _ in range(100):
        await asyncio.sleep(0)
        if source.reads == 2 and not cache._loading:
            break
    with pytest.raises(LookupError):
        await cache.get(1, source.read)


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
