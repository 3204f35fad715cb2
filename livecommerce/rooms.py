"""LIVE rooms: who may see and run them, and their life cycle scheduled -> live -> ended.

A public room is readable by everyone; a private room only by its host, admins and the staff of the brands
it features (to anyone else it does not exist: 404, not 403, so ids leak nothing). Only the room's host or
an admin may edit, start or end it. An ended room is final.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, exists, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from livecommerce.access import require
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, InvalidRequest, NotFound
from livecommerce.models import Brand, Role, Room, RoomStatus, RoomVisibility, User, room_brands, utcnow
from livecommerce.paging import cut_page

__all__ = [
    "can_see",
    "create_room",
    "end_room",
    "get_room",
    "go_live",
    "list_rooms",
    "load_room",
    "update_room",
    "visible_to",
]

_SCHEDULE_PAST_LEEWAY = timedelta(minutes=5)
_SCHEDULE_HORIZON = timedelta(days=366)


def _loaded() -> Select[Room]:
    return select(Room).options(selectinload(Room.host), selectinload(Room.brands))


def visible_to(who: Principal) -> ColumnElement[bool]:
    """SQL condition on `Room`: `who` may see the room (other modules, e.g. flash sales, follow the same rule)."""
    if who.is_admin:
        return true()
    conditions = [Room.visibility == RoomVisibility.PUBLIC]
    if who.user_id is not None:
        conditions.append(Room.host_id == who.user_id)
    if who.role is Role.BRAND_STAFF and who.brand_id is not None:
        conditions.append(exists().where(room_brands.c.room_id == Room.id, room_brands.c.brand_id == who.brand_id))
    return or_(*conditions)


def can_see(who: Principal, visibility: RoomVisibility, host_id: int, brand_ids: Collection[int]) -> bool:
    """`visible_to` for a room already loaded (the buy path checks a cached room without a query)."""
    return (
        who.is_admin
        or visibility is RoomVisibility.PUBLIC
        or (who.user_id is not None and who.user_id == host_id)
        or (who.role is Role.BRAND_STAFF and who.brand_id in brand_ids)
    )


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


def _require_runner(who: Principal, room: Room, action: str) -> None:
    require(who, who.is_admin or who.user_id == room.host_id, action, "the room's host or an admin")


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
    _require_runner(who, room, "edit this room")
    if room.status is RoomStatus.ENDED:
        raise Conflict("this room has ended and can no longer be edited")
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
    runner = who.is_admin or who.user_id == room.host_id
    if publish:
        _require_runner(who, room, "publish video to this room")
    if room.status is RoomStatus.ENDED:
        raise Conflict("this room has ended; its video cannot be published or watched")
    if not publish and not runner and room.status is not RoomStatus.LIVE:
        raise Conflict("this room is not live yet; watch its video once the show starts (`room_status` says when)")
    return room


async def go_live(session: AsyncSession, who: Principal, room_id: int) -> Room:
    room = await get_room(session, who, room_id)
    _require_runner(who, room, "start this room")
    return await _transition(session, room, {RoomStatus.SCHEDULED}, RoomStatus.LIVE, "started_at")


async def end_room(session: AsyncSession, who: Principal, room_id: int) -> Room:
    """End a live room, or cancel a scheduled one. Final."""
    room = await get_room(session, who, room_id)
    _require_runner(who, room, "end this room")
    return await _transition(session, room, {RoomStatus.SCHEDULED, RoomStatus.LIVE}, RoomStatus.ENDED, "ended_at")
