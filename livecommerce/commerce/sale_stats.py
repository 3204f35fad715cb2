"""A flash sale's figures as it sells: units left, held and paid, and the money taken.

Live numbers come from the sale's pool in Redis (`commerce.pools`), where every unit is counted the instant it
moves; the count of paid orders comes from SQL, which the worker fills from the pool's outbox a moment later.
Before the pool is loaded (a scheduled sale the worker has not opened yet) or after it is gone, the figures
come from SQL alone and `live` is false.

Who may look: the sale's brand staff and admins, and the host of a room that shows the sale (they sell it on
air). Anyone else who can see the sale is refused (403); to those who cannot see it, it does not exist (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import require
from livecommerce.auth import Principal
from livecommerce.commerce import order_queries, sales
from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.models import FlashSale, Room, SaleStatus, sale_rooms
from livecommerce.rooms import run_by

__all__ = ["SaleStats", "sale_stats"]

_SELLING = (SaleStatus.SCHEDULED, SaleStatus.LIVE)


@dataclass(frozen=True, slots=True)
class SaleStats:
    sale: FlashSale
    live: bool  # the unit counts are the pool's in Redis (else SQL's)
    available: int
    held: int
    paid: int
    total: int
    orders_paid: int

    @property
    def sold_out(self) -> bool:
        """No unit left to take, every one held or paid (an ended sale with units left is not sold out)."""
        return self.available == 0 and self.paid + self.held >= self.total

    @property
    def gmv_minor(self) -> int:
        return self.paid * self.sale.price_minor


async def _runs_a_room_of(session: AsyncSession, who: Principal, sale_id: int) -> bool:
    if who.user_id is None:
        return False
    shown = exists().where(sale_rooms.c.sale_id == sale_id, sale_rooms.c.room_id == Room.id, run_by(who))
    return bool(await session.scalar(select(shown)))


async def sale_stats(session: AsyncSession, inventory: Inventory, who: Principal, sale_id: int) -> SaleStats:
    view = await sales.get_sale(session, who, sale_id)
    allowed = view.manager or await _runs_a_room_of(session, who, sale_id)
    require(who, allowed, "see this sale's figures", "the sale's brand staff, the host of one of its rooms or an admin")
    sale = view.sale
    orders_paid, units_paid = await order_queries.paid_order_count(session, sale_id)
    stock = (await inventory.stock([PoolId.sale(sale_id)])).get(PoolId.sale(sale_id))
    if stock is not None:
        return SaleStats(sale, True, stock.available, stock.held, stock.paid, stock.total, orders_paid)
    paid = max(units_paid, sale.units_paid)
    available = max(sale.quantity - paid, 0) if sale.status in _SELLING else 0
    return SaleStats(sale, False, available, 0, paid, sale.quantity, orders_paid)
