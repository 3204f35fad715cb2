"""Reading orders: a buyer's own, a brand's, and one order for those entitled to it.

Orders are written only by the outbox consumer (`commerce.orders`); this module never changes one. Lists are
newest first, with keyset pages (`after` = the last id of the previous page) over the `(buyer_id, id)` and
`(brand_id, id)` indexes. An order is visible to its buyer, its brand's staff and admins; to anyone else
signed in it does not exist (404), so order ids leak nothing.

A brand's export (`brand_order_lines`) reads oldest first in pages, each in a short session of its own, so a
brand with a million orders is never in memory at once nor holds one transaction for the whole download.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.catalog import get_brand
from livecommerce.errors import NotFound
from livecommerce.models import Order, OrderStatus, Product, User
from livecommerce.paging import cut_page

__all__ = [
    "OrderLine",
    "brand_order_lines",
    "buyer_names",
    "check_brand_orders_reader",
    "get_order",
    "list_brand_orders",
    "list_my_orders",
    "may_see_terms",
    "paid_order_count",
]

EXPORT_PAGE = 500  # orders read per query when exporting


async def _page(
    session: AsyncSession, query: Select[Order], limit: int, after: int | None, status: OrderStatus | None
) -> tuple[list[Order], int | None]:
    query = query.order_by(Order.id.desc()).limit(limit + 1)
    if after is not None:
        query = query.where(Order.id < after)
    if status is not None:
        query = query.where(Order.status == status)
    return cut_page(list((await session.scalars(query)).all()), limit)


async def list_my_orders(
    session: AsyncSession, who: Principal, limit: int, after: int | None, status: OrderStatus | None = None
) -> tuple[list[Order], int | None]:
    require(who, who.authenticated, "see your orders", "signed-in users")
    return await _page(session, select(Order).where(Order.buyer_id == who.user_id), limit, after, status)


async def list_brand_orders(
    session: AsyncSession,
    who: Principal,
    brand_id: int,
    limit: int,
    after: int | None,
    *,
    status: OrderStatus | None = None,
    sale_id: int | None = None,
) -> tuple[list[Order], int | None]:
    await check_brand_orders_reader(session, who, brand_id)
    query = select(Order).where(Order.brand_id == brand_id)
    if sale_id is not None:
        query = query.where(Order.sale_id == sale_id)
    return await _page(session, query, limit, after, status)


async def get_order(session: AsyncSession, who: Principal, order_id: int) -> Order:
    require(who, who.authenticated, "see orders", "signed-in users")
    order = await session.get(Order, order_id)
    if order is None or not (who.user_id == order.buyer_id or may_manage_brand(who, order.brand_id)):
        raise NotFound(f"no order with id {order_id}")
    return order


def may_see_terms(who: Principal, order: Order) -> bool:
    """Whether `who` sees the terms an order was sold under (collaboration, commission, fee): the brand's staff
    and admins. Its buyer does not: what the creator earns is between the brand, the creator and the platform."""
    return may_manage_brand(who, order.brand_id)


async def buyer_names(session: AsyncSession, orders: Iterable[Order]) -> dict[int, str]:
    """The display names of the orders' buyers, in one query: an order list names who bought, not a user id."""
    ids = {order.buyer_id for order in orders}
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows.all()}


async def check_brand_orders_reader(session: AsyncSession, who: Principal, brand_id: int) -> None:
    """404 for an unknown brand; 401/403 unless `who` is the brand's staff or an admin."""
    await get_brand(session, brand_id)
    require(who, may_manage_brand(who, brand_id), "see this brand's orders", "the brand's staff or an admin")


@dataclass(frozen=True, slots=True)
class OrderLine:
    """An order with the product fields an export shows beside it."""

    order: Order
    sku: str
    title: str


async def brand_order_lines(
    sessions: async_sessionmaker[AsyncSession],
    brand_id: int,
    *,
    status: OrderStatus | None = None,
    sale_id: int | None = None,
    page_size: int = EXPORT_PAGE,
) -> AsyncIterator[list[OrderLine]]:
    """The brand's orders oldest first, one page per query. Check access first (`check_brand_orders_reader`)."""
    after = 0
    while True:
        query = (
            select(Order, Product.sku, Product.title)
            .join(Product, Product.id == Order.product_id)
            .where(Order.brand_id == brand_id, Order.id > after)
            .order_by(Order.id)
            .limit(page_size)
        )
        if status is not None:
            query = query.where(Order.status == status)
        if sale_id is not None:
            query = query.where(Order.sale_id == sale_id)
        async with sessions() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return
        yield [OrderLine(order, sku, title) for order, sku, title in rows]
        if len(rows) < page_size:
            return
        after = rows[-1][0].id


async def paid_order_count(session: AsyncSession, sale_id: int) -> tuple[int, int]:
    """(paid orders, units in them) of a flash sale, as recorded in SQL (the worker writes them)."""
    row = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Order.quantity), 0)).where(
                Order.sale_id == sale_id, Order.status == OrderStatus.PAID
            )
        )
    ).one()
    return int(row[0]), int(row[1])
