"""Shared fixtures: a private real Redis, real databases (SQLite and PostgreSQL), and the app on loopback.

Every database-backed test runs twice, on SQLite and on PostgreSQL. PostgreSQL comes from
`LIVECOMMERCE_TEST_POSTGRES_URL` (default: postgresql://postgres@127.0.0.1:5432/test); the suite creates a
database of its own there and drops it afterwards. Without a reachable PostgreSQL those tests are skipped
with the reason, except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.database import create_engine, migrate
from livecommerce.embedded_redis import find_redis_server
from livecommerce.models import Base
from livecommerce.settings import Settings
from tests.helpers import SECRET, create_postgres_database, drop_postgres_database, free_port, wait_for_redis


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Tests run on uvloop, as the server does."""
    return {"uvloop": uvloop.new_event_loop}


# --- Redis ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A private redis-server for the whole session, on a free loopback port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lc-redis-") as workdir:
        process = subprocess.Popen(
            [
                find_redis_server(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            wait_for_redis(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture
async def redis_url(redis_server: str) -> str:
    """The session Redis, flushed before each test."""
    client = Redis.from_url(redis_server)
    await client.flushall()
    await client.aclose()
    return redis_server


# --- databases ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    kind: str
    url: str


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """An empty database migrated to head, once per backend per session."""
    name = None
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    else:
        url, name = await create_postgres_database()
    engine = create_engine(url)
    await migrate(engine)
    await engine.dispose()
    try:
        yield Database(request.param, url)
    finally:
        if name is not None:
            await drop_postgres_database(name)


async def reset(engine: AsyncEngine) -> None:
    """Empty every table (and restart ids) so each test starts from the same state."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:  # ids restart too: the tables have no AUTOINCREMENT
                await connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our own table names


@pytest.fixture
async def engine(database: Database) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database.url)
    await reset(engine)
    yield engine
    await engine.dispose()


# --- the application ------------------------------------------------------------------------------------------


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
