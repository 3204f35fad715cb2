"""Fixtures of the commerce tests: a Redis client, the pool functions loaded, a seeded shop, and `pair` (two
hub instances on one Redis and database, shared with the hub tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.pools import Inventory
from tests.commerce.shop import Shop, seed_shop
from tests.hub.test_hub import pair

__all__ = ["inventory", "pair", "redis", "shop"]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the suite's Redis (flushed before each test)."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def inventory(redis: Redis) -> Inventory:
    inventory = Inventory(redis)
    await inventory.load_library()
    return inventory


@pytest.fixture
async def shop(engine: AsyncEngine) -> Shop:
    """A brand, a product with 100 units and its buyers, in SQL."""
    return await seed_shop(engine, stock=100)
