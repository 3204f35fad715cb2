"""The whole app served on a loopback port, with an HTTP client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.settings import Settings
from tests.support.databases import Database
from tests.support.world import SECRET

__all__ = ["client", "settings"]


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Settings:
    # Rate limits are off here (the fuzz and the matrix make many calls); tests/test_ratelimit.py turns them on.
    return Settings(
        database_url=database.url,
        data_dir=tmp_path,
        secret_key=SECRET,
        demo=False,
        rate_limit_writes=0,
        rate_limit_reads=0,
    )


@pytest.fixture
async def client(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> AsyncIterator[TestClient[Request, Application]]:
    """The whole app served on a loopback port, with an HTTP client pointed at it."""
    app = create_app(settings, redis_url=redis_url)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
