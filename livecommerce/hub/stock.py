"""Stock counters: the live stock of the product pinned in each room with local viewers.

Each room shows the pool of its pinned product (`track_pin`, fed by every `pinned` event and by a join's
snapshot; a voucher pin leaves the product's pool shown). Ten times a second the stock of every shown pool is
read in one round trip and sent as `stock` room state, only when it changed, so the rate of updates does not
follow the rate of purchases; sold out is pushed at once when a reservation here sees it (`reported`, the
batcher's callback).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livecommerce.commerce.batcher import ReservationBatcher
from livecommerce.commerce.pools import Inventory, PoolId, Stock
from livecommerce.hub.fanout import Fanout
from livecommerce.live import events as ev

__all__ = ["StockCounters"]

log = logging.getLogger(__name__)


class StockCounters:
    def __init__(
        self, fanout: Fanout, inventory: Inventory, batcher: ReservationBatcher, *, interval: float = 0.1
    ) -> None:
        self._fanout = fanout
        self._inventory = inventory
        self._batcher = batcher
        self._interval = interval
        self._room_pools: dict[int, PoolId] = {}  # the pool each room shows (from its pin)
        self._sent: dict[PoolId, Stock] = {}  # the last stock sent for each pool
        batcher.on_stock = self.reported

    def track_pin(self, room: int, pinned: dict[str, Any] | None) -> None:
        """Remember which pool a room's pinned product sells from (a `pinned` payload; None: nothing pinned).
        A voucher pin is ignored: the product pinned before it still sells, and its stock still counts."""
        if (pinned or {}).get("voucher"):
            return
        offer = (pinned or {}).get("offer") if (pinned or {}).get("product") else None
        pool = offer.get("pool") if isinstance(offer, dict) else None
        if isinstance(pool, str):
            try:
                self._room_pools[room] = PoolId.parse(pool)
                return
            except ValueError:
                pass
        self._room_pools.pop(room, None)

    async def current(self, room: int) -> dict[str, Any] | None:
        """The `stock` state of the room's pinned product now, for a join's snapshot (None: nothing pinned)."""
        pool = self._room_pools.get(room)
        if pool is None:
            return None
        found = (await self._inventory.stock([pool])).get(pool)
        return None if found is None else ev.stock(room, pool.name, found.as_wire())

    def reported(self, pool: PoolId, stock: Stock) -> None:
        """A reservation here just saw `pool`'s stock: sold out is shown at once, other changes wait for the
        next poll (so the rate of updates does not follow the rate of purchases)."""
        if stock.sold_out:
            self._push(pool, stock)

    async def run(self) -> None:
        """Poll the stock of pools shown in rooms with local viewers, every `interval`, in one round trip."""
        while True:
            await asyncio.sleep(self._interval)
            await self._poll()

    async def _poll(self) -> None:
        local = self._fanout.rooms()
        for room in [room for room in self._room_pools if room not in local]:
            del self._room_pools[room]
        pools = sorted(set(self._room_pools.values()))
        for pool in [pool for pool in self._sent if pool not in pools]:
            del self._sent[pool]
        if not pools:
            return
        try:
            stocks = await self._inventory.stock(pools)
        except Exception:
            log.exception("reading stock counters failed; retrying")
            return
        for pool, stock in stocks.items():
            self._batcher.stock_changed(pool, stock)
            self._push(pool, stock)

    def _push(self, pool: PoolId, stock: Stock) -> None:
        """Send `stock` to the local viewers of every room showing `pool`, if it changed (latest wins)."""
        if self._sent.get(pool) == stock:
            return
        self._sent[pool] = stock
        for room, shown in self._room_pools.items():
            if shown == pool:
                self._fanout.set_state(room, ev.STOCK, ev.STOCK, ev.stock(room, pool.name, stock.as_wire()))
