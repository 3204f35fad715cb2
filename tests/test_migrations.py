"""Migrations build the schema from empty on SQLite and PostgreSQL, and match the models exactly."""

from __future__ import annotations

from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from livecommerce.database import create_engine, current_revision, downgrade, head_revision, migrate
from livecommerce.models import Base
from tests.support.databases import Database, reset


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


async def test_account_status_migrates_a_database_whose_users_have_orders(database: Database) -> None:
    """0003 adds users.status in place: a table copy would be refused by the orders that refer to users."""
    engine = create_engine(database.url)
    rows = (
        "INSERT INTO brands (id, name, name_key, description, created_at) VALUES (1, 'B', 'b', '', :now)",
        "INSERT INTO users (id, email, display_name, role, created_at) VALUES (1, 'a@b.cd', 'A', 'viewer', :now)",
        "INSERT INTO products (id, brand_id, sku, title, description, price_minor, currency, stock, units_sold, "
        "created_at, updated_at) VALUES (1, 1, 'S', 'T', '', 100, 'USD', 1, 0, :now, :now)",
        "INSERT INTO orders (id, hold_id, pool, product_id, brand_id, buyer_id, quantity, unit_price_minor, "
        "total_minor, currency, status, held_at, expires_at, updated_at) "
        "VALUES (1, 'p1.1', 'p1', 1, 1, 1, 1, 100, 100, 'USD', 'held', :now, :now, :now)",
    )
    try:
        await reset(engine)
        await downgrade(engine, "0002")
        async with engine.begin() as connection:
            for row in rows:
                await connection.execute(text(row), {"now": datetime(2026, 1, 1, 10)})
        await migrate(engine)
        async with engine.begin() as connection:
            assert (await connection.execute(text("SELECT status, deleted_at FROM users"))).all() == [("active", None)]
        # An unknown status, and a deleted account without the time of its deletion, are refused.
        for bad in ("UPDATE users SET status = 'gone'", "UPDATE users SET status = 'deleted'"):
            with pytest.raises(IntegrityError):
                async with engine.begin() as connection:
                    await connection.execute(text(bad))
        await downgrade(engine, "0002")
        await migrate(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await reset(engine)
        await engine.dispose()
