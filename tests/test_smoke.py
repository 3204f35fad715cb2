from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.world import seed_world


async def test_world_seeds_and_reads(client: TestClient[Any, Any], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    body = await world.api.ok("GET", f"/api/v1/rooms/{world.ids['room']}")
    assert body["host"]["display_name"] == "Host"
    assert [b["name"] for b in body["brands"]] == ["Brand"]
