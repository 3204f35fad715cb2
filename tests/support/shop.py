"""A small shop in SQL for commerce tests (rows written directly: these tests are about what comes after),
readers that snapshot what the order writer wrote, and the commerce folder's fixtures `shop` and `inventory`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.database import session_factory
from livecommerce.models import (
    Brand,
    FlashSale,
    Order,
    Product,
    Role,
    Room,
    RoomVisibility,
    SaleAudience,
    SaleCode,
    SaleStatus,
    User,
    sale_invites,
    utcnow,
)

__all__ = [
    "Shop",
    "add_sale",
    "inventory",
    "outbox_entries",
    "product_row",
    "redis_ms",
    "seed_shop",
    "shop",
    "sql_snapshot",
]


@dataclass(frozen=True)
class Shop:
    brand_id: int
    product_id: int
    staff_id: int
    room_id: int
    buyer_ids: list[int]


async def seed_shop(engine: AsyncEngine, *, stock: int = 100, buyers: int = 5) -> Shop:
    async with session_factory(engine).begin() as session:
        brand = Brand(name="Shop", name_key="shop")
        session.add(brand)
        await session.flush()
        staff = User(email="staff@shop.test", display_name="Staff", role=Role.BRAND_STAFF, brand_id=brand.id)
        host = User(email="host@shop.test", display_name="Host", role=Role.HOST)
        people = [User(email=f"b{i}@shop.test", display_name=f"Buyer {i}", role=Role.VIEWER) for i in range(buyers)]
        session.add_all([staff, host, *people])
        await session.flush()
        product = Product(brand_id=brand.id, sku="SKU-1", title="Thing", price_minor=1999, currency="USD", stock=stock)
        room = Room(title="Live", host_id=host.id, visibility=RoomVisibility.PUBLIC, scheduled_start=utcnow())
        session.add_all([product, room])
        await session.flush()
        return Shop(brand.id, product.id, staff.id, room.id, [p.id for p in people])


async def add_sale(
    engine: AsyncEngine,
    shop: Shop,
    *,
    quantity: int,
    starts_at: datetime,
    ends_at: datetime,
    audience: SaleAudience = SaleAudience.OPEN,
    codes: list[str] | None = None,
    invitees: list[int] | None = None,
    per_buyer_limit: int = 2,
    price_minor: int = 999,
    hold_seconds: int = 300,
) -> int:
    """A scheduled sale, its quantity taken out of the product's stock (as scheduling does)."""
    async with session_factory(engine).begin() as session:
        sale = FlashSale(
            brand_id=shop.brand_id, product_id=shop.product_id, price_minor=price_minor, currency="USD",
            quantity=quantity, per_buyer_limit=per_buyer_limit, starts_at=starts_at, ends_at=ends_at,
            hold_seconds=hold_seconds, audience=audience, status=SaleStatus.SCHEDULED, version=2, units_paid=0,
            created_by=shop.staff_id,
        )  # fmt: skip
        session.add(sale)
        await session.flush()
        if codes:
            await session.execute(insert(SaleCode), [{"sale_id": sale.id, "code": code} for code in codes])
        if invitees:
            await session.execute(insert(sale_invites), [{"sale_id": sale.id, "user_id": u} for u in invitees])
        await session.execute(
            update(Product).where(Product.id == shop.product_id).values(stock=Product.stock - quantity)
        )
        return sale.id


async def product_row(engine: AsyncEngine, product_id: int) -> tuple[int, int]:
    """(stock, units_sold)"""
    async with engine.connect() as connection:
        row = (
            await connection.execute(select(Product.stock, Product.units_sold).where(Product.id == product_id))
        ).one()
    return int(row[0]), int(row[1])


async def sql_snapshot(engine: AsyncEngine) -> dict[str, Any]:
    """Everything the order writer may touch, as plain values."""
    async with engine.connect() as connection:
        orders = (await connection.execute(select(Order.__table__).order_by(Order.hold_id))).all()
        products = (await connection.execute(select(Product.__table__).order_by(Product.id))).all()
        codes = (await connection.execute(select(SaleCode.__table__).order_by(SaleCode.id))).all()
        sales = (await connection.execute(select(FlashSale.__table__).order_by(FlashSale.id))).all()
    return {
        "orders": [tuple(r) for r in orders],
        "products": [tuple(r) for r in products],
        "codes": [tuple(r) for r in codes],
        "sales": [tuple(r) for r in sales],
    }


async def outbox_entries(redis: Redis, pool: PoolId) -> list[dict[bytes, bytes]]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(pool.outbox)  # type: ignore[assignment]
    return [fields for _, fields in entries]


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
async def shop(engine: AsyncEngine) -> Shop:
    """A brand, a product with 100 units and its buyers, in SQL."""
    return await seed_shop(engine, stock=100)


@pytest.fixture
async def inventory(redis: Redis) -> Inventory:
    """The pool functions, loaded into the suite's Redis."""
    inventory = Inventory(redis)
    await inventory.load_library()
    return inventory
