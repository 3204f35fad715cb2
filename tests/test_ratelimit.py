"""Rate limits: per caller, shared across processes through Redis, survive a script flush, and say when to retry."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.limits import RateLimiter
from livecommerce.settings import Settings
from tests.support.world import seed_world

Client = TestClient[Request, Application]


@pytest.fixture
async def limited(settings: Settings, engine: AsyncEngine, redis_url: str) -> AsyncIterator[tuple[Client, Client]]:
    """Two app instances (two 'web processes') sharing one Redis, with a small write budget."""
    limited_settings = dataclasses.replace(settings, rate_limit_writes=8, rate_limit_reads=0)
    async with (
        TestClient(TestServer(create_app(limited_settings, redis_url=redis_url), host="127.0.0.1")) as first,
        TestClient(TestServer(create_app(limited_settings, redis_url=redis_url), host="127.0.0.1")) as second,
    ):
        yield first, second


async def test_a_callers_writes_are_limited_across_processes(
    client: Client, limited: tuple[Client, Client], engine: AsyncEngine, redis_url: str
) -> None:
    first, second = limited
    world = await seed_world(client, engine)  # through an unlimited instance
    redis = Redis.from_url(redis_url)
    burst = 8 // 4
    statuses = []
    for n in range(burst + 1):
        client = first if n % 2 == 0 else second  # alternate processes: one shared budget
        async with client.patch(
            f"/api/v1/products/{world.ids['product']}",
            json={"stock": n},
            headers={"Authorization": f"Bearer {world.api.tokens['staff']}"},
        ) as response:
            statuses.append(response.status)
            if response.status == 429:
                problem = await response.json(content_type=None)
                retry_after = int(response.headers["Retry-After"])
    assert statuses == [200] * burst + [429]
    assert 1 <= retry_after <= 60 // 8 + 1
    assert "8 per minute" in problem["detail"]
    assert problem["code"] == "rate_limited"
    assert problem["retryable"] is True
    assert 0 < problem["retry_after"] <= int(response.headers["Retry-After"]), "unrounded, at most the header"
    # Another caller has its own budget, and reads are not writes.
    async with first.patch(
        f"/api/v1/products/{world.ids['other_product']}",
        json={"stock": 1},
        headers={"Authorization": f"Bearer {world.api.tokens['other_staff']}"},
    ) as response:
        assert response.status == 200
    async with first.get(f"/api/v1/products/{world.ids['product']}") as response:
        assert response.status == 200
    # A refused write changed nothing: the stock is the last accepted value.
    async with first.get(f"/api/v1/products/{world.ids['product']}") as response:
        assert (await response.json())["stock"] == burst - 1
    # The script survives SCRIPT FLUSH (redis-py re-loads it on NOSCRIPT).
    await redis.script_flush()
    async with second.patch(
        f"/api/v1/products/{world.ids['product']}",
        json={"stock": 9},
        headers={"Authorization": f"Bearer {world.api.tokens['staff']}"},
    ) as response:
        assert response.status == 429
    await redis.aclose()


async def test_bad_script_arguments_are_refused_by_the_script(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    limiter = RateLimiter(redis, per_minute=10, burst=1)
    with pytest.raises(Exception, match="interval must be > 0"):
        await limiter._script(keys=["livecommerce:rl:{t}"], args=[0, 1])
    assert await redis.exists("livecommerce:rl:{t}") == 0
    await redis.aclose()
