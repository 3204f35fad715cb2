"""The ranking routes: leaderboards of creators and brands by GMV and by GMV growth, and the live dashboards of a
room, a brand and a creator.

Its router is listed with the others in `api/routes.py`; what GMV is, the periods and who may read a dashboard
are `commerce.rankings`'. The figures come from Redis (kept in step by the order writer), names from SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

from pydantic import BaseModel, ConfigDict, Field

from livecommerce.api.routing import Call, Router
from livecommerce.commerce import rankings as r
from livecommerce.state import REDIS

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

_GMV = ("GMV is the goods value (unit price x quantity, before vouchers) of orders paid in the period's UTC days; "
        "refunds do not reduce it. ")  # fmt: skip
_PERIOD = "`period` day, week (7 days) or month (30 days) ending on `date` (today, UTC, when left out). "


class RankingQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: r.Period = Field(default=r.Period.DAY, description="day, week (7 days) or month (30 days).")
    by: r.By = Field(default=r.By.GMV, description="gmv, or growth: this period's GMV minus the previous one's.")
    limit: int = Field(default=15, ge=1, le=100, description="How many to list.")
    date: dt.date | None = Field(default=None, description="The period's last day (UTC); today when left out.")


class RankingEntry(BaseModel):
    rank: int = Field(description="1 = the top.")
    id: int
    name: str
    gmv_minor: int
    previous_minor: int = Field(description="GMV of the previous period of the same length.")
    growth_minor: int
    growth_pct: float | None = Field(description="Growth against the previous period; null when that was 0.")
    level: str | None = Field(description="Creators: their level by 30-day GMV; null for brands.")


class RankingOut(BaseModel):
    board: r.Board
    period: r.Period
    by: r.By
    date: dt.date
    items: list[RankingEntry]


class StandingOut(BaseModel):
    period: r.Period
    gmv_minor: int
    previous_minor: int
    growth_minor: int
    growth_pct: float | None
    rank: int | None = Field(description="Place on the leaderboard by GMV; null when nothing was sold.")


class RoomDashboardOut(BaseModel):
    room_id: int
    gmv_minor: int
    orders: int
    units: int
    buyers: int = Field(description="Distinct buyers (estimated within about 1%).")
    voucher_orders: int = Field(description="Orders that used a seller or platform voucher.")
    viewers: int = Field(description="Viewers now, across hub processes.")
    viewers_peak: int = Field(description="The most viewers seen at once by dashboard reads.")
    conversion: float | None = Field(description="buyers / viewers_peak; null before any viewer was seen.")


class PartyDashboardOut(BaseModel):
    kind: r.Board
    id: int
    level: str | None = Field(description="Creators: their level by 30-day GMV; null for brands.")
    periods: list[StandingOut]


def _rankings(call: Call) -> r.Rankings:
    return r.Rankings(call.request.app[REDIS])


async def _board(call: Call, board: r.Board, query: RankingQuery) -> RankingOut:
    end = query.date or r.today()
    entries = await r.leaderboard(call.session, _rankings(call), board, query.period, query.by, query.limit, end)
    items = [RankingEntry(rank=n, **asdict(e)) for n, e in enumerate(entries, start=1)]
    return RankingOut(board=board, period=query.period, by=query.by, date=end, items=items)


async def _party(call: Call, board: r.Board, member: int) -> PartyDashboardOut:
    rankings, end = _rankings(call), r.today()
    periods = [await rankings.standing(board, member, p, end) for p in r.Period]
    level = r.level_of(periods[-1].gmv_minor) if board is r.Board.CREATORS else None
    return PartyDashboardOut(kind=board, id=member, level=level, periods=[StandingOut(**asdict(p)) for p in periods])


@route("GET", "/rankings/creators", summary="The top creators by GMV or GMV growth", access="signed-in users",
       tag="rankings", query=RankingQuery, response=RankingOut, errors=(401,),
       notes=_GMV + _PERIOD + "Creators are ranked by the orders attributed to them.")  # fmt: skip
async def creator_ranking(call: Call, query: RankingQuery) -> RankingOut:
    r.require_reader(call.who)
    return await _board(call, r.Board.CREATORS, query)


@route("GET", "/rankings/brands", summary="The top brands by GMV or GMV growth", access="signed-in users",
       tag="rankings", query=RankingQuery, response=RankingOut, errors=(401,), notes=_GMV + _PERIOD)  # fmt: skip
async def brand_ranking(call: Call, query: RankingQuery) -> RankingOut:
    r.require_reader(call.who)
    return await _board(call, r.Board.BRANDS, query)


@route("GET", "/rooms/{room_id}/dashboard", summary="A room's live figures",
       access="the room's host, staff of a brand featured in the room, admins", tag="rankings",
       response=RoomDashboardOut, errors=(401, 403, 404),
       notes=_GMV + "Over the whole show. A room the caller may not see is 404.")  # fmt: skip
async def room_dashboard(call: Call, room_id: int) -> RoomDashboardOut:
    await r.require_room_dashboard(call.session, call.who, room_id)
    return RoomDashboardOut(**asdict(await _rankings(call).room(room_id)))


@route("GET", "/brands/{brand_id}/dashboard", summary="A brand's GMV across rooms, by period",
       access="the brand's staff, admins", tag="rankings", response=PartyDashboardOut, errors=(401, 403, 404),
       notes=_GMV + "Periods day, week and month ending today (UTC), each against the previous one.")  # fmt: skip
async def brand_dashboard(call: Call, brand_id: int) -> PartyDashboardOut:
    await r.require_brand_dashboard(call.session, call.who, brand_id)
    return await _party(call, r.Board.BRANDS, brand_id)


@route("GET", "/creators/{user_id}/dashboard", summary="A creator's GMV across rooms, by period, and level",
       access="the creator themself (a host), admins", tag="rankings", response=PartyDashboardOut,
       errors=(401, 403, 404),
       notes=_GMV + "Periods day, week and month ending today (UTC), each against the previous one.")  # fmt: skip
async def creator_dashboard(call: Call, user_id: int) -> PartyDashboardOut:
    await r.require_creator_dashboard(call.session, call.who, user_id)
    return await _party(call, r.Board.CREATORS, user_id)
