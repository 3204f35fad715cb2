"""Keeps a product's own pool in Redis in step with the product's stock in SQL.

Once a product sells outside flash sales, Redis holds its live count (`PoolId.product`). Every other change
to `products.stock` — a brand editing it, a flash sale taking its quantity when scheduled, or giving units
back when cancelled or finalised — must move that pool by the same amount. Callers take units out of Redis
*before* their SQL transaction commits (refused when buyers already hold them) and put units back only
*after* it commits, so a crash between the two can leave units unsold, never sold twice. Each move is applied
once (`Inventory.adjust`'s once key): a Redis call retried after its answer was lost moves nothing twice.
"""

from __future__ import annotations

from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.errors import Conflict

__all__ = ["give_units", "take_units"]


async def take_units(inventory: Inventory, product_id: int, units: int) -> None:
    """Remove `units` free units from the product's pool (nothing to do when it has none); 409 when fewer are free."""
    status, stock = await inventory.adjust(PoolId.product(product_id), -units)
    if status == "short":
        assert stock is not None
        raise Conflict(
            f"buyers hold or have bought units of this product: only {stock.available} are free to take now; "
            "try a smaller change, or again when holds expire"
        )


async def give_units(inventory: Inventory, product_id: int, units: int, op: str | None = None) -> None:
    """Add `units` to the product's pool (nothing to do when it has none), once per `op` (see `adjust`)."""
    await inventory.adjust(PoolId.product(product_id), units, op)
