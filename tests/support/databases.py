"""Real databases: every database-backed test runs twice, on SQLite and on PostgreSQL.

PostgreSQL comes from `LIVECOMMERCE_TEST_POSTGRES_URL` (default: postgresql://postgres@127.0.0.1:5432/test); the
suite creates a database of its own there and drops it afterwards. Without a reachable PostgreSQL those tests
are skipped with the reason, except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.database import create_engine, migrate
from livecommerce.models import Base

__all__ = [
    "PG_ADMIN_URL",
    "Database",
    "create_postgres_database",
    "database",
    "drop_postgres_database",
    "engine",
    "postgres_url",
    "reset",
    "snapshot",
]

PG_ADMIN_URL = os.environ.get("LIVECOMMERCE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _require_postgres(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required under CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set LIVECOMMERCE_TEST_POSTGRES_URL to run these tests")


async def create_postgres_database() -> tuple[str, str]:
    """Create a database of our own on the test PostgreSQL server; return (its URL, its name)."""
    name = f"lc_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _require_postgres(f"{PG_ADMIN_URL}: {exc}")
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1), name


async def drop_postgres_database(name: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


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


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to prove a refused call changed nothing."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            result = await connection.execute(text(f"SELECT * FROM {table.name}"))  # noqa: S608 - our own table names
            rows[table.name] = sorted(tuple(row) for row in result.all())
    return rows


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database (skipped, or failed under CI, when PostgreSQL is unreachable)."""
    url, name = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(name)
