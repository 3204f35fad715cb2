"""The SQL engine, sessions and schema migrations.

`create_engine` gives an async engine tuned per backend (SQLite: WAL, foreign keys, a busy timeout so several
processes can share one file). `migrate` brings the schema to the newest Alembic revision; on PostgreSQL it
holds an advisory lock so that web processes starting together do not race each other.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from livecommerce.errors import ConfigError

__all__ = [
    "create_engine",
    "current_revision",
    "head_revision",
    "migrate",
    "open_database",
    "session_factory",
]

log = logging.getLogger(__name__)

_MIGRATION_LOCK_ID = 0x6C697665  # "live": one advisory lock id for schema migrations
_CONNECT_TIMEOUT = 3.0  # seconds a PostgreSQL connect may take before it counts as the database being down


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for a sqlite+aiosqlite:// or postgresql+asyncpg:// URL."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.close()

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    # A server that does not answer fails a connect within seconds (asyncpg waits 60 s by default), well inside
    # the buy path's stale window, so the caches switch to their kept values instead of holding buyers.
    kwargs.setdefault("connect_args", {"timeout": _CONNECT_TIMEOUT})
    return create_async_engine(url, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("livecommerce") / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current)


def _run_migrations(connection: Connection, revision: str, direction: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction commits, so a process that waited sees the finished schema.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
    before = _current(connection)
    step = command.upgrade if direction == "up" else command.downgrade
    step(_alembic_config(connection), revision)
    after = _current(connection)
    if before != after:
        log.info("database schema migrated from %s to %s", before or "empty", after)


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema to `revision` (default: the newest)."""
    async with engine.begin() as connection:
        await connection.run_sync(_run_migrations, revision, "up")


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Roll the schema back to `revision` ("base": empty). Destroys the data of what it removes."""
    async with engine.begin() as connection:
        await connection.run_sync(_run_migrations, revision, "down")


async def open_database(url: str) -> AsyncEngine:
    """An engine whose schema is migrated to the newest revision, or `ConfigError` naming the problem."""
    engine = create_engine(url)
    try:
        await migrate(engine)
    except (SQLAlchemyError, OSError) as exc:
        await engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot use the database {engine.url.render_as_string()}: {reason}") from None
    return engine
