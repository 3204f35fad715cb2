"""Migrations build the schema from empty on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from livecommerce.database import create_engine, current_revision, downgrade, head_revision, migrate
from livecommerce.models import Base
from tests.conftest import Database


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrated_schema_matches_the_models(database: Database) -> None:
    engine = create_engine(database.url)
    try:
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_migrations_run_down_to_empty_and_up_again(database: Database) -> None:
    engine = create_engine(database.url)
    try:
        await downgrade(engine, "base")
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) <= {"alembic_version"}
        await migrate(engine)
        await migrate(engine)  # idempotent: a second start changes nothing
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()
