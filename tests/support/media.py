"""The media folder's fixtures: the whole app on loopback with short media timeouts, and ICE on 127.0.0.1.

The media tests run on SQLite only: they exercise peer connections and Redis, not SQL, and each takes
seconds of real media.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.media import ice
from livecommerce.media.http import MEDIA, MEDIA_CONFIG
from livecommerce.media.sessions import MediaConfig, MediaService
from livecommerce.settings import Settings
from tests.support.world import World, seed_world

__all__ = ["FAST", "loopback_ice", "media", "media_client", "media_config", "world"]

FAST = MediaConfig(
    keyframe_interval=0.2, connect_timeout=5.0, viewer_timeout=2.0, publisher_timeout=1.5, reconnect_grace=30.0,
    ice_address="127.0.0.1",  # the loopback-only mode (LIVECOMMERCE_MEDIA_ICE_ADDRESS=127.0.0.1)
)  # fmt: skip


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    """Gather host candidates on 127.0.0.1 only, for every peer of the process (the test's own too)."""
    ice.bind("127.0.0.1")
    yield
    ice.bind(None)


@pytest.fixture
def media_config() -> MediaConfig:
    return FAST


@pytest.fixture
async def media_client(
    settings: Settings, engine: AsyncEngine, redis_url: str, media_config: MediaConfig
) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(settings, redis_url=redis_url)
    app[MEDIA_CONFIG] = media_config
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.fixture
async def world(media_client: TestClient[Any, Any], engine: AsyncEngine) -> World:
    """The seeded world with `room` and `private_room` live (viewers watch only live rooms); other_room is not."""
    world = await seed_world(media_client, engine)
    for room in ("room", "private_room"):
        await world.api.ok("POST", f"/api/v1/rooms/{world.ids[room]}/live", who="host")
    return world


@pytest.fixture
def media(media_client: TestClient[Any, Any]) -> MediaService:
    service: MediaService = media_client.app[MEDIA]
    return service
