"""LIVE rooms: who may see, run, moderate, chat and buy in them, and their life cycle scheduled -> live -> ended.

Every room rule is one function here, called by REST, the socket hub and media alike (a rule written twice
drifts): `require_visible` (see and join), `require_runner` / `require_live_runner` (edit, start, end,
publish video; pin while live; `require_signed_in_runner` asks an anonymous caller to sign in first),
`require_moderator`, `require_chatter`, `require_buyer` with `require_buying_open`, `require_sellable` (which
products a room may sell: its featured brands', and those its host collaborates on) and `require_not_ended`.
They are pure: they read what the caller already has (a loaded `Room` or the buying cache's `RoomInfo`, both
`RoomFacts`, and what the caller looked up, e.g. whether the host collaborates) and raise our client errors.

A public room is readable by everyone; a private room only by its host, admins and the staff of the brands
it features (to anyone else it does not exist: 404, not 403, so ids leak nothing). That rule is decided once
(`_sight`) and rendered twice: as SQL (`visible_to`, for lists and joins in queries) and in Python
(`can_see`, for a room already loaded); so are who runs a room (`run_by` / `may_run`) and which brands it
features for selling (`sells` / `can_sell` without a collaboration). Only the room's host or an admin may edit,
start or end it. An ended room is final.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import ColumnElement, Select, exists, false, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.access import require
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from livecommerce.models import Brand, Role, Room, RoomStatus, RoomVisibility, User, room_brands, utcnow
from livecommerce.paging import cut_page

__all__ = [
    "RoomFacts",
    "RoomNotLive",
    "RoomNotices",
    "can_see",
    "can_sell",
    "create_room",
    "end_room",
    "get_room",
    "go_live",
    "list_rooms",
    "load_room",
    "may_run",
    "require_buyer",
    "require_buying_open",
    "require_chatter",
    "require_live_runner",
    "require_moderator",
    "require_not_ended",
    "require_runner",
    "require_sellable",
    "require_signed_in_runner",
    "require_visible",
    "run_by",
    "sells",
    "update_room",
    "video_room",
    "visible_to",
]

_SCHEDULE_PAST_LEEWAY = timedelta(minutes=5)
_SCHEDULE_HORIZON = timedelta(days=366)
_RUNNERS = "the room's host or an admin"


# --- the rules ------------------------------------------------------------------------------------------------


class RoomFacts(Protocol):
    """What the rules read of a room: a `Room` loaded with its brands, or the buying cache's `RoomInfo`."""

    @property
    def id(self) -> int: ...
    @property
    def status(self) -> RoomStatus: ...
    @property
    def visibility(self) -> RoomVisibility: ...
    @property
    def host_id(self) -> int: ...
    @property
    def brand_ids(self) -> Collection[int]: ...


class RoomNotices(Protocol):
    """Where the domain tells a room's live viewers of a committed change (implemented by `live.rooms.LiveRooms`,
    wired in `app.py`, so the domain never imports what delivers it)."""

    async def room_status_changed(self, room: Room) -> None:
        """The room went live or ended: every viewer hears its new status."""

    async def announce_countdown(self, room_id: int, sale_id: int, starts_at_ms: int) -> None:
        """A sale's countdown started in the room: viewers see when the sale starts."""


class RoomNotLive(Conflict):
    """Buying needs the show on (chat's own refusal, from Redis, has the same code)."""

    code = "room_not_live"
    title = "The room is not live"


@dataclass(frozen=True, slots=True)
class _Sight:
    """Which rooms a caller sees besides the public ones: every room (admins), those they host, those featuring
    their brand (brand staff). The one decision behind `visible_to` (SQL) and `can_see` (Python)."""

    everything: bool
    hosted_by: int | None
    featuring: int | None


def _sight(who: Principal) -> _Sight:
    featuring = who.brand_id if who.role is Role.BRAND_STAFF else None
    return _Sight(everything=who.is_admin, hosted_by=who.user_id, featuring=featuring)


def visible_to(who: Principal) -> ColumnElement[bool]:
    """SQL condition on `Room`: `who` may see the room (other modules, e.g. flash sales, follow the same rule)."""
    sight = _sight(who)
    if sight.everything:
        return true()
    conditions = [Room.visibility == RoomVisibility.PUBLIC]
    if sight.hosted_by is not None:
        conditions.append(Room.host_id == sight.hosted_by)
    if sight.featuring is not None:
        conditions.append(exists().where(room_brands.c.room_id == Room.id, room_brands.c.brand_id == sight.featuring))
    return or_(*conditions)


def can_see(who: Principal, room: RoomFacts) -> bool:
    """`visible_to` for a room already loaded (the buy path checks a cached room without a query)."""
    sight = _sight(who)
    return (
        sight.everything
        or room.visibility is RoomVisibility.PUBLIC
        or (sight.hosted_by is not None and room.host_id == sight.hosted_by)
        or (sight.featuring is not None and sight.featuring in room.brand_ids)
    )


def require_visible(who: Principal, room: RoomFacts) -> None:
    """Who may see and join the room; to anyone else it does not exist (404)."""
    if not can_see(who, room):
        raise NotFound(f"no room with id {room.id}")


def may_run(who: Principal, room: RoomFacts) -> bool:
    """The room's host or an admin: who may edit, start, end, pin in and publish video to the room."""
    return who.is_admin or (who.user_id is not None and who.user_id == room.host_id)


def run_by(who: Principal) -> ColumnElement[bool]:
    """`may_run` as an SQL condition on `Room` (e.g. a sale's figures are for the runner of one of its rooms)."""
    if who.is_admin:
        return true()
    if who.user_id is None:
        return false()
    return Room.host_id == who.user_id


def require_signed_in_runner(who: Principal, action: str) -> None:
    """The part of `require_runner` checked before the room is looked up (media): an anonymous caller is told to
    sign in (401), rather than that a private room does not exist; `require_runner` follows once it is loaded."""
    require(who, who.authenticated, action, _RUNNERS)


def require_runner(who: Principal, room: RoomFacts, action: str) -> None:
    """`may_run`, else 401 (anonymous) or 403; `action` completes "to ...", e.g. "end this room"."""
    require(who, may_run(who, room), action, _RUNNERS)


def require_live_runner(who: Principal, room: RoomFacts, action: str) -> None:
    """`require_runner`, and the room must be live (pin and unpin)."""
    require_runner(who, room, action)
    if room.status is not RoomStatus.LIVE:
        raise Conflict(f"the room is {room.status.value}; you can {action} only while it is live")


def require_moderator(who: Principal, room: RoomFacts, *, appointed: bool, appoints: bool = False) -> None:
    """Who may moderate the chat: the room's runners and the moderators they `appointed` (looked up by the
    caller, in Redis, only when `may_run` is false); only runners may appoint or remove moderators (`appoints`)."""
    runner = may_run(who, room)
    if appoints and not runner:
        raise Forbidden(f"only {_RUNNERS} may appoint moderators")
    if not (runner or appointed):
        if not who.authenticated:
            raise Unauthorized("sign in to moderate")
        raise Forbidden("only the room's host, its moderators or an admin may moderate the chat")


def require_chatter(who: Principal) -> None:
    """Who may chat in a room they have joined: anyone signed in (Redis then checks live, mute, ban, rate)."""
    if not who.authenticated:
        raise Unauthorized("sign in to chat; anonymous viewers can watch and like")


def require_buyer(who: Principal) -> None:
    """Who may buy: anyone signed in (checked before the room is looked up, so an anonymous caller is told to
    sign in rather than that a private room does not exist), in a room they can see, while `require_buying_open`."""
    if not who.authenticated:
        raise Unauthorized("sign in to buy")


def require_buying_open(room: RoomFacts) -> None:
    """A room sells while the show is on."""
    if room.status is not RoomStatus.LIVE:
        raise RoomNotLive("the room is not live; you can buy while the show is on")


def can_sell(room: RoomFacts, brand_id: int, *, collaborating: bool = False) -> bool:
    """A room sells (and pins) a product when its brand is featured in the room, or when the room's host has
    collaboration terms for the product (`collaborating`: `commerce.collaborations.terms_for` found some, for this
    product, now). Flash sales run in featured rooms only (`sells`)."""
    return brand_id in room.brand_ids or collaborating


def sells(brand_id: int) -> ColumnElement[bool]:
    """`can_sell` without collaborations, as an SQL condition on `Room`: the rooms that feature the brand. Flash
    sales check their rooms with it, so a flash sale runs only in rooms featuring its brand (a creator selling
    through a collaboration sells at the product's own price)."""
    return exists().where(room_brands.c.room_id == Room.id, room_brands.c.brand_id == brand_id)


def require_sellable(room: RoomFacts, brand_id: int, *, collaborating: bool = False) -> None:
    """`can_sell`, else 403 saying what the host can do about it."""
    if not can_sell(room, brand_id, collaborating=collaborating):
        raise Forbidden(
            "this product's brand is not featured in the room, and the room's host has no approved collaboration "
            "with a commission for it: the host can apply to the brand's open plan (or accept its offer), "
            "or feature the brand in the room"
        )


def require_not_ended(room: RoomFacts | Sequence[RoomFacts], then: str) -> None:
    """An ended room is final: 409 if the room (or any of several) has ended. `then` completes the message,
    "this room has ended" (or "room 3, 4 has ended" for several), with what that means for the caller."""
    if isinstance(room, Sequence):
        ended = [one.id for one in room if one.status is RoomStatus.ENDED]
        if ended:
            raise Conflict(f"room {', '.join(map(str, ended))} has ended{then}")
    elif room.status is RoomStatus.ENDED:
        raise Conflict(f"this room has ended{then}")


# --- queries and the life cycle -------------------------------------------------------------------------------


def _loaded() -> Select[Room]:
    return select(Room).options(selectinload(Room.host), selectinload(Room.brands))


def _visible_filter(who: Principal) -> Select[Room]:
    return _loaded().where(visible_to(who))


async def load_room(session: AsyncSession, room_id: int) -> Room | None:
    """The room with its host and brands, whoever asks (the caller applies `can_see`)."""
    return await session.scalar(_loaded().where(Room.id == room_id))


async def get_room(session: AsyncSession, who: Principal, room_id: int) -> Room:
    room = await session.scalar(_visible_filter(who).where(Room.id == room_id))
    if room is None:
        raise NotFound(f"no room with id {room_id}")
    return room


async def list_rooms(
    session: AsyncSession,
    who: Principal,
    limit: int,
    after: int | None,
    status: RoomStatus | None,
    host_id: int | None,
) -> tuple[list[Room], int | None]:
    query = _visible_filter(who).order_by(Room.id).limit(limit + 1)
    if after is not None:
        query = query.where(Room.id > after)
    if status is not None:
        query = query.where(Room.status == status)
    if host_id is not None:
        query = query.where(Room.host_id == host_id)
    rows = list((await session.scalars(query)).unique().all())
    return cut_page(rows, limit)


def _check_schedule(start: datetime) -> None:
    now = utcnow()
    if start < now - _SCHEDULE_PAST_LEEWAY:
        raise InvalidRequest(
            "scheduled_start is in the past; give a time from now on",
            errors=[{"field": "body.scheduled_start", "message": "must not be in the past"}],
        )
    if start > now + _SCHEDULE_HORIZON:
        raise InvalidRequest(
            "scheduled_start is more than a year ahead; schedule closer to the date",
            errors=[{"field": "body.scheduled_start", "message": "must be within 366 days"}],
        )


async def _brands(session: AsyncSession, brand_ids: Sequence[int]) -> list[Brand]:
    unique = sorted(set(brand_ids))
    if len(unique) != len(brand_ids):
        raise InvalidRequest(
            "brand_ids lists a brand twice; list each brand once",
            errors=[{"field": "body.brand_ids", "message": "duplicate ids"}],
        )
    found = list((await session.scalars(select(Brand).where(Brand.id.in_(unique)).order_by(Brand.id))).all())
    missing = sorted(set(unique) - {brand.id for brand in found})
    if missing:
        raise InvalidRequest(
            f"no brand with id {', '.join(map(str, missing))}; feature existing brands only",
            errors=[{"field": "body.brand_ids", "message": f"unknown brand ids {missing}"}],
        )
    return found


async def create_room(
    session: AsyncSession,
    who: Principal,
    *,
    title: str,
    scheduled_start: datetime,
    brand_ids: Sequence[int],
    visibility: RoomVisibility,
    host_id: int | None,
) -> Room:
    require(who, who.role in {Role.HOST, Role.ADMIN}, "create rooms", "hosts and admins")
    assert who.user_id is not None
    if host_id is not None and host_id != who.user_id:
        require(who, who.is_admin, "create rooms for another host", "admins")
        host = await session.get(User, host_id)
        if host is None or host.role is not Role.HOST:
            raise InvalidRequest(
                f"user {host_id} is not a host; give the id of a user with the host role",
                errors=[{"field": "body.host_id", "message": "not a host"}],
            )
    _check_schedule(scheduled_start)
    room = Room(
        title=title,
        host_id=host_id or who.user_id,
        visibility=visibility,
        status=RoomStatus.SCHEDULED,
        scheduled_start=scheduled_start,
        created_at=utcnow(),
        brands=await _brands(session, brand_ids),
    )
    session.add(room)
    await session.flush()
    return await get_room(session, who, room.id)


async def update_room(
    session: AsyncSession,
    who: Principal,
    room_id: int,
    *,
    title: str | None,
    scheduled_start: datetime | None,
    brand_ids: Sequence[int] | None,
    visibility: RoomVisibility | None,
) -> Room:
    room = await get_room(session, who, room_id)
    require_runner(who, room, "edit this room")
    require_not_ended(room, " and can no longer be edited")
    if scheduled_start is not None:
        if room.status is not RoomStatus.SCHEDULED:
            raise Conflict("this room is already live; only a scheduled room can be rescheduled")
        _check_schedule(scheduled_start)
        room.scheduled_start = scheduled_start
    if title is not None:
        room.title = title
    if visibility is not None:
        room.visibility = visibility
    if brand_ids is not None:
        room.brands = await _brands(session, brand_ids)
    await session.flush()
    return room


async def _transition(
    session: AsyncSession, room: Room, allowed: set[RoomStatus], target: RoomStatus, stamp: str
) -> Room:
    """Move the room to `target` with one conditional UPDATE, so concurrent calls cannot both succeed."""
    now = utcnow()
    result = await session.execute(
        update(Room)
        .where(Room.id == room.id, Room.status.in_(allowed))
        .values({"status": target, stamp: now})
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(room, ["status", "started_at", "ended_at"])
        raise Conflict(_refusal(room.status, target))
    await session.refresh(room, ["status", "started_at", "ended_at"])
    return room


def _refusal(current: RoomStatus, target: RoomStatus) -> str:
    if current is RoomStatus.ENDED:
        return "this room has already ended"
    if target is RoomStatus.LIVE:
        return f"this room is already {current.value}; only a scheduled room can go live"
    return f"this room is {current.value} and cannot be ended"


async def video_room(session: AsyncSession, who: Principal, room_id: int, *, publish: bool) -> Room:
    """The room whose video `who` may publish (its host or an admin, until it ends) or watch: anyone who can see
    the room, while it is live (its host and admins also before, to check the picture before the show)."""
    room = await get_room(session, who, room_id)
    runner = may_run(who, room)
    if publish:
        require_runner(who, room, "publish video to this room")
    require_not_ended(room, "; its video cannot be published or watched")
    if not publish and not runner and room.status is not RoomStatus.LIVE:
        raise Conflict("this room is not live yet; watch its video once the show starts (`room_status` says when)")
    return room


async def go_live(session: AsyncSession, who: Principal, room_id: int) -> Room:
    room = await get_room(session, who, room_id)
    require_runner(who, room, "start this room")
    return await _transition(session, room, {RoomStatus.SCHEDULED}, RoomStatus.LIVE, "started_at")


async def end_room(session: AsyncSession, who: Principal, room_id: int) -> Room:
    """End a live room, or cancel a scheduled one. Final."""
    room = await get_room(session, who, room_id)
    require_runner(who, room, "end this room")
    return await _transition(session, room, {RoomStatus.SCHEDULED, RoomStatus.LIVE}, RoomStatus.ENDED, "ended_at")
