"""An independent audit of a pool in Redis: recomputes every total from the holds themselves."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from redis.asyncio import Redis

from livecommerce.commerce.pools import Hold, HoldState, PoolId, Stock

__all__ = ["PoolAudit", "audit_pool"]


@dataclass(frozen=True)
class PoolAudit:
    stock: Stock
    holds: list[Hold]
    per_buyer: dict[int, int]  # units held, paying or paid, from the holds

    @property
    def paid_units(self) -> int:
        return sum(h.quantity for h in self.holds if h.state is HoldState.PAID)


async def audit_pool(redis: Redis, pool: PoolId, *, limit: int | None = None) -> PoolAudit:
    """Read the pool atomically and check conservation; raises AssertionError naming what broke."""
    keys = pool.keys
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.stock, ["available", "held", "paid", "total"])
        pipe.hgetall(keys.holds)
        pipe.hgetall(keys.buyers)
        pipe.zrange(keys.expiry, 0, -1)
        stock_raw, holds_raw, buyers_raw, expiring = await pipe.execute()
    stock = Stock(*(int(v) for v in stock_raw))
    holds = [Hold.from_json(raw) for raw in holds_raw.values()]
    live = {HoldState.HELD, HoldState.PAYING}
    held = sum(h.quantity for h in holds if h.state in live)
    paid = sum(h.quantity for h in holds if h.state is HoldState.PAID)
    assert stock.available >= 0, f"negative stock: {stock}"
    assert stock.available + stock.held + stock.paid == stock.total, f"available + held + paid != total: {stock}"
    assert stock.held == held, f"stock says {stock.held} held, holds say {held}"
    assert stock.paid == paid, f"stock says {stock.paid} paid, holds say {paid}"
    per_buyer: Counter[int] = Counter()
    for hold in holds:
        if hold.state in live or hold.state is HoldState.PAID:
            per_buyer[hold.buyer_id] += hold.quantity
    recorded = {int(k): int(v) for k, v in buyers_raw.items() if int(v) != 0}
    assert recorded == dict(per_buyer), "the per-buyer counts disagree with the holds"
    if limit is not None:
        over = {b: n for b, n in per_buyer.items() if n > limit}
        assert not over, f"buyers above the cap of {limit}: {over}"
    expiring_ids = {e.decode() for e in expiring}
    assert expiring_ids == {h.id for h in holds if h.state in live}, "expiry index disagrees with the live holds"
    return PoolAudit(stock, holds, dict(per_buyer))
