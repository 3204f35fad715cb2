"""Loading a flash sale from SQL into its Redis pool (by the worker before it starts, and by the countdown).

Loading is idempotent: the pool takes the sale's configuration at `FlashSale.version` (an older version never
replaces a newer one), its stock is created once from `quantity` and never overwritten, invitees and codes
are added (a code already used in Redis stays used).
"""

from __future__ import annotations

from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.clock import to_ms
from livecommerce.commerce.pools import Inventory, PoolConfig, PoolId
from livecommerce.commerce.sales import UNFINALISED
from livecommerce.models import FlashSale, SaleAudience, SaleCode, sale_invites

__all__ = ["LoadResult", "load_sale", "sale_pool_config"]

_AUDIENCE: Final[dict[SaleAudience, Literal["open", "list", "codes"]]] = {
    SaleAudience.OPEN: "open",
    SaleAudience.INVITE_LIST: "list",
    SaleAudience.INVITE_CODES: "codes",
}

LoadResult = tuple[str, int, bool]  # Inventory.load: (status, stored version, created)


def sale_pool_config(sale: FlashSale) -> PoolConfig:
    return PoolConfig(
        version=sale.version,
        product_id=sale.product_id,
        brand_id=sale.brand_id,
        sale_id=sale.id,
        price_minor=sale.price_minor,
        currency=sale.currency,
        quantity=sale.quantity,
        per_buyer_limit=sale.per_buyer_limit,
        starts_at_ms=to_ms(sale.starts_at),
        ends_at_ms=to_ms(sale.ends_at),
        hold_ms=sale.hold_seconds * 1000,
        audience=_AUDIENCE[sale.audience],
    )


async def load_sale(inventory: Inventory, session: AsyncSession, sale_id: int) -> LoadResult | None:
    """Load (or update) the pool of a sale not yet finalised (an ended one: its closed window); None when the
    sale has no pool to follow."""
    sale = await session.get(FlashSale, sale_id, populate_existing=True)
    if sale is None or sale.status not in UNFINALISED or sale.finalised_at is not None:
        return None
    invitees: list[int] = []
    codes: list[str] = []
    if sale.audience is SaleAudience.INVITE_LIST:
        query = select(sale_invites.c.user_id).where(sale_invites.c.sale_id == sale.id).order_by(sale_invites.c.user_id)
        invitees = list((await session.scalars(query)).all())
    elif sale.audience is SaleAudience.INVITE_CODES:
        query_codes = select(SaleCode.code).where(SaleCode.sale_id == sale.id).order_by(SaleCode.id)
        codes = list((await session.scalars(query_codes)).all())
    return await inventory.load(PoolId.sale(sale.id), sale_pool_config(sale), invitees=invitees, codes=codes)
