"""GMV rankings of creators and brands, creator levels, and the live dashboards of rooms, brands and creators.

GMV is the goods value (`Order.total_minor`: unit price x quantity, before vouchers) of paid orders, counted in
the UTC day the order was paid. Refunds do not reduce GMV: it measures what was sold, and a later refund is a
statement's business (`commerce.statements`). Amounts of every currency add up as minor units (the demo and the
platforms we serve rank within one currency).

Redis keeps the figures (`livecommerce/lua/rankings.lua`, every key under the hash tag ``{rank}``): per UTC day a
sorted set of creators and one of brands by GMV, and the set of hold ids already counted that day; per room a
hash (gmv, orders, units, voucher_orders, viewers_peak), a HyperLogLog of its buyers and its own seen set. The
order writer (`commerce.orders`) calls `record_paid` after every batch it commits, for every paid order in the
batch, new or replayed: `rank_add` counts a hold id once per day and once per room, so a replay, a worker killed
between its commit and this call, or a repair changes nothing already counted. A failing Redis never stops the
writer (it logs); each worker's start-up runs `repair` over this month and the last, which adds from SQL what
Redis missed.

Reads: a period is ``day`` (the date), ``week`` (7 days) or ``month`` (30 days) ending on a date (today, UTC, by
default); growth is this period's GMV minus the previous period's of the same length, with the growth in percent
when the previous period had any. Ties order by Redis's member order.

Viewers are what the hub already counts: the room's live viewer total across hub processes
(`live.store.RoomStore`, ``room_counters.lua``). The hub counts concurrent viewers, not distinct ones, so a
dashboard's conversion is distinct buyers / the most viewers seen at once (``viewers_peak``, raised by each
dashboard read): a lower bound of the audience, so the conversion an upper bound.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from redis.asyncio import Redis
from sqlalchemy import false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce import rooms
from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.clock import from_ms
from livecommerce.commerce.pools import Hold, HoldState
from livecommerce.errors import NotFound
from livecommerce.live import codec
from livecommerce.live.store import RoomStore
from livecommerce.models import Brand, Order, OrderStatus, Role, User, utcnow
from livecommerce.scripts import FunctionLibrary

__all__ = [
    "LEVELS",
    "Board",
    "By",
    "Entry",
    "Period",
    "RankedOrder",
    "Rankings",
    "RoomDashboard",
    "Standing",
    "leaderboard",
    "level_of",
    "months_back",
    "rebuild",
    "record_paid",
    "repair",
    "require_brand_dashboard",
    "require_creator_dashboard",
    "require_reader",
    "require_room_dashboard",
    "today",
]

log = logging.getLogger(__name__)

_LIBRARY: Final = "livecommerce_rankings"
_PREFIX: Final = "livecommerce:{rank}"
_BATCH: Final = 1000  # orders per rank_add call (rankings.lua MAX_BATCH)


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def days(self) -> int:
        return {Period.DAY: 1, Period.WEEK: 7, Period.MONTH: 30}[self]


class By(StrEnum):
    GMV = "gmv"
    GROWTH = "growth"


class Board(StrEnum):
    CREATORS = "creators"
    BRANDS = "brands"


# Creator levels by GMV over the last 30 days (Period.MONTH), in minor units: the highest threshold reached.
LEVELS: Final[tuple[tuple[int, str], ...]] = (
    (0, "newcomer"),
    (100_000, "rising"),  # 1 000.00
    (1_000_000, "star"),  # 10 000.00
    (10_000_000, "legend"),  # 100 000.00
)


def level_of(monthly_gmv_minor: int) -> str:
    """The creator level for a 30-day GMV (see `LEVELS`)."""
    name = LEVELS[0][1]
    for threshold, level in LEVELS:
        if monthly_gmv_minor >= threshold:
            name = level
    return name


def _day_key(day: date, part: str) -> str:
    return f"{_PREFIX}:day:{day:%Y%m%d}:{part}"


def _room_keys(room_id: int) -> list[str]:
    base = f"{_PREFIX}:room:{room_id}"
    return [base, f"{base}:buyers", f"{base}:seen"]


def _days(end: date, count: int) -> list[date]:
    return [end - timedelta(days=i) for i in range(count)]


# --- writing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankedOrder:
    """What a paid order adds to the rankings."""

    hold_id: str
    day: date  # UTC day it was paid
    creator_id: int  # 0: no creator
    brand_id: int
    room_id: int  # 0: sold outside a room
    amount_minor: int  # goods value
    quantity: int
    used_voucher: bool
    buyer_id: int

    @classmethod
    def from_hold(cls, hold: Hold) -> RankedOrder | None:
        """A paid hold's contribution; None for any other state (or a paid hold with no payment time)."""
        if hold.state is not HoldState.PAID or hold.paid_at_ms is None:
            return None
        return cls(hold.id, from_ms(hold.paid_at_ms).date(), hold.terms.creator_id or 0, hold.brand_id,
                   hold.room_id or 0, hold.total_minor, hold.quantity, _hold_used_voucher(hold),
                   hold.buyer_id)  # fmt: skip


def _hold_used_voucher(hold: Hold) -> bool:
    # Vouchers arrive with issue 14's checkout work: a hold (and an order) then names the seller and platform
    # vouchers it used. Read by name so this module works before and after those fields exist.
    return any(getattr(hold, name, None) for name in ("seller_voucher_id", "platform_voucher_id"))


def _order_used_voucher() -> Any:
    """SQL: the order used a voucher (false while `Order` has no voucher columns; see `_hold_used_voucher`)."""
    columns = [getattr(Order, name) for name in ("seller_voucher_id", "platform_voucher_id") if hasattr(Order, name)]
    return or_(*(c.is_not(None) for c in columns)) if columns else false()


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a leaderboard."""

    id: int
    name: str
    gmv_minor: int
    previous_minor: int
    growth_minor: int
    growth_pct: float | None  # None when the previous period had no GMV
    level: str | None  # creators only


@dataclass(frozen=True, slots=True)
class Standing:
    """A creator's or brand's GMV in a period, against the previous one, and their place (1 = top; None when
    they sold nothing in the period)."""

    period: Period
    gmv_minor: int
    previous_minor: int
    growth_minor: int
    growth_pct: float | None
    rank: int | None


@dataclass(frozen=True, slots=True)
class RoomDashboard:
    room_id: int
    gmv_minor: int
    orders: int
    units: int
    buyers: int  # distinct (HyperLogLog: within about 1%)
    voucher_orders: int
    viewers: int  # now
    viewers_peak: int  # the most seen at once
    conversion: float | None  # buyers / viewers_peak; None before any viewer was seen


def _pct(growth: int, previous: int) -> float | None:
    return round(growth * 100 / previous, 2) if previous > 0 else None


class Rankings:
    """Typed calls to the ranking functions. `load_library` once at start (re-loaded by itself when lost)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._library = FunctionLibrary(redis, "rankings.lua", "ranking functions")

    async def load_library(self) -> None:
        await self._library.load()

    async def _fcall(self, function: str, keys: Sequence[str], *args: Any) -> Any:
        return await self._library.call(function, keys, *args)

    async def add(self, orders: Iterable[RankedOrder]) -> int:
        """Count paid orders (each hold once); returns how many were new to their day's leaderboards."""
        by_day: dict[date, list[RankedOrder]] = defaultdict(list)
        for order in orders:
            by_day[order.day].append(order)
        added = 0
        for day in sorted(by_day):
            batch = by_day[day]
            for start in range(0, len(batch), _BATCH):
                chunk = batch[start : start + _BATCH]
                keys = [_day_key(day, "creators"), _day_key(day, "brands"), _day_key(day, "seen")]
                for room_id in sorted({o.room_id for o in chunk if o.room_id}):
                    keys += _room_keys(room_id)
                args: list[Any] = [f"{day:%Y%m%d}", len(chunk)]
                for o in chunk:
                    args += [o.hold_id, o.creator_id, o.brand_id, o.room_id, o.amount_minor, o.quantity,
                             int(o.used_voucher), o.buyer_id]  # fmt: skip
                reply = await self._fcall("rank_add", keys, *args)
                added += int(reply[1])
        return added

    # --- reads ------------------------------------------------------------------------------------------------

    async def _totals(self, board: Board, period: Period, end: date) -> tuple[str, str]:
        """Union the period's and the previous period's days into two scratch keys (expiring in a minute)."""
        scratch = f"{_PREFIX}:tmp:{uuid.uuid4().hex}"
        current, previous = f"{scratch}:current", f"{scratch}:previous"
        days = _days(end, 2 * period.days)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zunionstore(current, [_day_key(d, board.value) for d in days[: period.days]])
            pipe.zunionstore(previous, [_day_key(d, board.value) for d in days[period.days :]])
            pipe.pexpire(current, 60_000)
            pipe.pexpire(previous, 60_000)
            await pipe.execute()
        return current, previous

    async def top(self, board: Board, period: Period, by: By, limit: int, end: date) -> list[tuple[int, int, int]]:
        """The top `limit` ids of `board` by GMV or growth: (id, gmv, previous period's gmv), best first."""
        current, previous = await self._totals(board, period, end)
        try:
            ranked = current
            if by is By.GROWTH:
                ranked = f"{current}:growth"
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zunionstore(ranked, {current: 1, previous: -1})
                    pipe.pexpire(ranked, 60_000)
                    await pipe.execute()
            members = [codec.text(m) for m in await self._redis.zrevrange(ranked, 0, limit - 1)]
            if not members:
                return []
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zmscore(current, members)
                pipe.zmscore(previous, members)
                now, before = await pipe.execute()
            return [(int(m), int(a or 0), int(b or 0)) for m, a, b in zip(members, now, before, strict=True)]
        finally:
            await self._redis.delete(current, previous, f"{current}:growth")

    async def gmv_of(self, board: Board, members: Sequence[int], period: Period, end: date) -> dict[int, int]:
        """The GMV of each of `members` over the period (0 for those who sold nothing)."""
        if not members:
            return {}
        current, previous = await self._totals(board, period, end)
        try:
            scores = await self._redis.zmscore(current, [str(m) for m in members])
        finally:
            await self._redis.delete(current, previous)
        return {m: int(v or 0) for m, v in zip(members, scores, strict=True)}

    async def standing(self, board: Board, member: int, period: Period, end: date) -> Standing:
        current, previous = await self._totals(board, period, end)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zscore(current, str(member))
                pipe.zscore(previous, str(member))
                pipe.zrevrank(current, str(member))
                now, before, place = await pipe.execute()
        finally:
            await self._redis.delete(current, previous)
        gmv, prev = int(now or 0), int(before or 0)
        return Standing(period, gmv, prev, gmv - prev, _pct(gmv - prev, prev), None if place is None else place + 1)

    async def room(self, room_id: int) -> RoomDashboard:
        """The room's figures; the live viewer count is read from the hub's counters and raises the peak."""
        viewers = (await RoomStore(self._redis, "rankings").snapshot(room_id, chat_limit=0)).viewers
        hash_key, buyers_key, _ = _room_keys(room_id)
        reply = await self._fcall("rank_viewers", [hash_key], viewers)
        peak = int(reply[1])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(hash_key)
            pipe.pfcount(buyers_key)
            fields, buyers = await pipe.execute()
        figures = {codec.text(k): int(v) for k, v in fields.items()}
        return RoomDashboard(
            room_id=room_id, gmv_minor=figures.get("gmv", 0), orders=figures.get("orders", 0),
            units=figures.get("units", 0), buyers=int(buyers), voucher_orders=figures.get("voucher_orders", 0),
            viewers=viewers, viewers_peak=peak, conversion=round(int(buyers) / peak, 4) if peak else None,
        )  # fmt: skip


async def leaderboard(
    session: AsyncSession, rankings: Rankings, board: Board, period: Period, by: By, limit: int, end: date
) -> list[Entry]:
    """The top `limit` creators or brands with their names (and creators' levels, by their 30-day GMV)."""
    rows = await rankings.top(board, period, by, limit, end)
    ids = [r[0] for r in rows]
    if board is Board.CREATORS:
        found = await session.execute(select(User.id, User.display_name).where(User.id.in_(ids)))
    else:
        found = await session.execute(select(Brand.id, Brand.name).where(Brand.id.in_(ids)))
    names: dict[int, str] = {i: name for i, name in found.all()}
    monthly: dict[int, int] = {}
    if board is Board.CREATORS:
        monthly = await rankings.gmv_of(board, ids, Period.MONTH, end)
    return [
        Entry(i, names.get(i, f"#{i}"), gmv, prev, gmv - prev, _pct(gmv - prev, prev),
              level_of(monthly[i]) if board is Board.CREATORS else None)
        for i, gmv, prev in rows
    ]  # fmt: skip


def today() -> date:
    return utcnow().date()


# --- who may read dashboards (the one place of these rules) ---------------------------------------------------


def require_reader(who: Principal) -> None:
    """Leaderboards: any signed-in account."""
    require(who, who.authenticated, "read the rankings", "signed-in users")


async def require_room_dashboard(session: AsyncSession, who: Principal, room_id: int) -> None:
    """The room's host, staff of a brand featured in the room, admins. Others who may see the room get 403; a
    room they may not see does not exist to them (404)."""
    require(who, who.authenticated, "read a room's dashboard", "signed-in users")
    room = await rooms.get_room(session, who, room_id)
    allowed = rooms.may_run(who, room) or any(who.staff_of(b) for b in room.brand_ids)
    require(who, allowed, "read this room's dashboard", "the room's host, its brands' staff or an admin")


async def require_brand_dashboard(session: AsyncSession, who: Principal, brand_id: int) -> None:
    require(who, may_manage_brand(who, brand_id), "read this brand's dashboard", "the brand's staff or an admin")
    if await session.get(Brand, brand_id) is None:
        raise NotFound(f"no brand with id {brand_id}")


async def require_creator_dashboard(session: AsyncSession, who: Principal, user_id: int) -> None:
    allowed = who.is_admin or (who.user_id is not None and who.user_id == user_id)
    require(who, allowed, "read this creator's dashboard", "the creator themself or an admin")
    user = await session.get(User, user_id)
    if user is None or user.role is not Role.HOST:
        raise NotFound(f"no creator with id {user_id}")


# --- the order writer's hook, rebuild and repair --------------------------------------------------------------


async def record_paid(rankings: Rankings, holds: Iterable[Hold]) -> None:
    """After a batch of holds was committed to SQL: count its paid orders. Never raises (but cancellation): a
    failure is logged, and the next worker start-up's `repair` adds what was missed."""
    orders = [o for o in (RankedOrder.from_hold(h) for h in holds) if o is not None]
    if not orders:
        return
    try:
        await rankings.add(orders)
    except Exception:  # the orders are committed; rankings catch up at the next start-up
        log.exception("counting %d paid orders in the rankings failed; a worker start-up repairs it", len(orders))


def _ranked(row: Any) -> RankedOrder:
    return RankedOrder(row.hold_id, row.paid_at.date(), row.creator_id or 0, row.brand_id, row.room_id or 0,
                       row.total_minor, row.quantity, bool(row.used_voucher), row.buyer_id)  # fmt: skip


def _paid_orders() -> Any:
    return select(
        Order.hold_id, Order.paid_at, Order.creator_id, Order.brand_id, Order.room_id, Order.total_minor,
        Order.quantity, Order.buyer_id, _order_used_voucher().label("used_voucher"),
    ).where(Order.status == OrderStatus.PAID, Order.paid_at.is_not(None))  # fmt: skip


async def _from_sql(
    sessions: async_sessionmaker[AsyncSession], from_day: date, to_day: date
) -> tuple[list[RankedOrder], set[int]]:
    start = datetime.combine(from_day, datetime.min.time()).replace(tzinfo=utcnow().tzinfo)
    end = start + timedelta(days=(to_day - from_day).days + 1)
    async with sessions() as session:
        rows = (await session.execute(_paid_orders().where(Order.paid_at >= start, Order.paid_at < end))).all()
        room_ids = {r.room_id for r in rows if r.room_id}
        # A room's dashboard covers the whole show: its orders outside the window too.
        extra: Sequence[Any] = []
        if room_ids:
            extra = (
                await session.execute(
                    _paid_orders().where(Order.room_id.in_(sorted(room_ids)), or_(Order.paid_at < start,
                                                                                  Order.paid_at >= end))
                )
            ).all()  # fmt: skip
    return [_ranked(r) for r in [*rows, *extra]], room_ids


async def repair(sessions: async_sessionmaker[AsyncSession], rankings: Rankings, from_day: date, to_day: date) -> int:
    """Add to Redis every order paid in the UTC days `[from_day, to_day]` that it has not counted (idempotent, so
    safe beside running order writers). Returns how many were missing."""
    orders, _ = await _from_sql(sessions, from_day, to_day)
    return await rankings.add(orders)


async def rebuild(sessions: async_sessionmaker[AsyncSession], redis: Redis, from_day: date, to_day: date) -> int:
    """Recompute the days `[from_day, to_day]` and the dashboards of the rooms that sold in them from SQL:
    their keys are deleted, then every paid order is added again. An order committed meanwhile and counted by a
    writer in between may be lost until the next `repair`: run it while no order writer runs (an operator's
    tool, the tests). Returns the orders counted."""
    orders, room_ids = await _from_sql(sessions, from_day, to_day)
    keys = [_day_key(from_day + timedelta(days=i), part)
            for i in range((to_day - from_day).days + 1) for part in ("creators", "brands", "seen")]  # fmt: skip
    for room_id in sorted(room_ids):
        keys += _room_keys(room_id)
    for start in range(0, len(keys), 500):
        await redis.delete(*keys[start : start + 500])
    rankings = Rankings(redis)
    await rankings.load_library()
    return await rankings.add(orders)


def months_back(day: date) -> date:
    """The first day of the month before `day`'s: the start of the worker's start-up repair."""
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)
