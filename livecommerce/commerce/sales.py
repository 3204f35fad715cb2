"""Flash sales in SQL: who may plan, schedule, count down and end them, and the stock they take.

Brand staff (or an admin) plan a sale as a draft, then schedule it. Scheduling takes the sale's quantity out
of the product's stock in the same transaction, with one conditional UPDATE, so concurrent schedules cannot
allocate the same units twice; cancelling a scheduled sale gives them back, and finalising an ended sale
gives back what was not paid for, once. Selling itself happens in Redis (`commerce.pools`): `version` rises
with every change the Redis copy must follow (edit, schedule, countdown, end early, cancel).

Visibility: a draft or cancelled sale exists only for its brand's staff and admins (404 to anyone else); a
scheduled, live or ended sale is readable by anyone who can see one of its rooms. Invite lists and codes are
for the brand's staff and admins only.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import ColumnElement, Result, delete, exists, func, insert, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.errors import Conflict, InvalidRequest, NotFound
from livecommerce.models import (
    FlashSale,
    Order,
    Product,
    Role,
    Room,
    SaleAudience,
    SaleCode,
    SaleStatus,
    User,
    sale_invites,
    sale_rooms,
    utcnow,
)
from livecommerce.paging import cut_page
from livecommerce.rooms import get_room, may_run, require_not_ended, sells, visible_to

__all__ = [
    "MAX_CODES",
    "UNFINALISED",
    "CodeInfo",
    "Countdown",
    "SaleView",
    "cancel_sale",
    "countdown",
    "create_sale",
    "end_sale",
    "finalise",
    "get_sale",
    "list_codes",
    "list_invites",
    "list_sales",
    "mark_live",
    "schedule_sale",
    "update_sale",
]

MAX_CODES: Final = 10_000  # invite codes per sale
CODE_LENGTH: Final = 10
# No 0/O, 1/I/L: a code read aloud on a stream or copied by hand comes through. 31**10 ≈ 8e14 codes.
_CODE_ALPHABET: Final = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_PAST_LEEWAY: Final = timedelta(minutes=5)
_HORIZON: Final = timedelta(days=366)
_LONGEST: Final = timedelta(days=31)
_PUBLIC: Final = (SaleStatus.SCHEDULED, SaleStatus.LIVE, SaleStatus.ENDED)
# States whose stock is allocated until `finalise` (an ended sale has finalised_at None until the worker runs).
UNFINALISED: Final = (SaleStatus.SCHEDULED, SaleStatus.LIVE, SaleStatus.ENDED)
_EDITABLE: Final = ("price_minor", "quantity", "per_buyer_limit", "starts_at", "ends_at", "hold_seconds", "audience")


@dataclass(frozen=True, slots=True)
class SaleView:
    """A sale as one caller may see it: only the rooms they can see; counts only for its managers."""

    sale: FlashSale
    room_ids: list[int]
    manager: bool
    invite_count: int | None = None
    code_count: int | None = None

    @property
    def id(self) -> int:
        return self.sale.id


@dataclass(frozen=True, slots=True)
class Countdown:
    sale: FlashSale
    room_id: int
    starts_at: datetime


@dataclass(frozen=True, slots=True)
class CodeInfo:
    id: int
    code: str
    created_at: datetime
    redeemed_hold: str | None
    redeemed_by: int | None


# --- reading --------------------------------------------------------------------------------------------------


def _visible(who: Principal) -> ColumnElement[bool]:
    """SQL condition on `FlashSale`: `who` may read the sale."""
    if who.is_admin:
        return true()
    shown = exists().where(sale_rooms.c.sale_id == FlashSale.id, sale_rooms.c.room_id == Room.id, visible_to(who))
    public = FlashSale.status.in_(_PUBLIC) & shown
    if who.role is Role.BRAND_STAFF and who.brand_id is not None:
        return or_(FlashSale.brand_id == who.brand_id, public)
    return public


async def _load(session: AsyncSession, who: Principal, sale_id: int) -> FlashSale:
    sale = await session.scalar(select(FlashSale).where(FlashSale.id == sale_id, _visible(who)))
    if sale is None:
        raise NotFound(f"no flash sale with id {sale_id}")
    return sale


async def _managed(session: AsyncSession, who: Principal, sale_id: int, action: str) -> FlashSale:
    sale = await _load(session, who, sale_id)
    require(who, may_manage_brand(who, sale.brand_id), action, "the sale's brand staff or an admin")
    return sale


async def _views(session: AsyncSession, who: Principal, sales: Sequence[FlashSale]) -> list[SaleView]:
    """Views of several sales in three queries, whatever their number."""
    ids = [sale.id for sale in sales]
    managed = {sale.id for sale in sales if may_manage_brand(who, sale.brand_id)}
    rooms_query = select(sale_rooms.c.sale_id, sale_rooms.c.room_id).where(sale_rooms.c.sale_id.in_(ids))
    if not who.is_admin:  # a manager sees every room of the sale; others only the rooms they can see
        rooms_query = rooms_query.join(Room, Room.id == sale_rooms.c.room_id).where(
            or_(sale_rooms.c.sale_id.in_(managed), visible_to(who))
        )
    room_ids: dict[int, list[int]] = {sale_id: [] for sale_id in ids}
    for sale_id, room_id in (await session.execute(rooms_query.order_by(sale_rooms.c.room_id))).all():
        room_ids[sale_id].append(room_id)
    invites: dict[int, int] = {}
    codes: dict[int, int] = {}
    if managed:
        counted = select(sale_invites.c.sale_id, func.count()).where(sale_invites.c.sale_id.in_(managed))
        invites = {sale: n for sale, n in (await session.execute(counted.group_by(sale_invites.c.sale_id))).all()}
        counted = select(SaleCode.sale_id, func.count()).where(SaleCode.sale_id.in_(managed))
        codes = {sale: n for sale, n in (await session.execute(counted.group_by(SaleCode.sale_id))).all()}
    return [
        SaleView(sale, room_ids[sale.id], True, invites.get(sale.id, 0), codes.get(sale.id, 0))
        if sale.id in managed
        else SaleView(sale, room_ids[sale.id], False)
        for sale in sales
    ]


async def _view(session: AsyncSession, who: Principal, sale: FlashSale) -> SaleView:
    return (await _views(session, who, [sale]))[0]


async def get_sale(session: AsyncSession, who: Principal, sale_id: int) -> SaleView:
    return await _view(session, who, await _load(session, who, sale_id))


async def list_sales(
    session: AsyncSession,
    who: Principal,
    limit: int,
    after: int | None,
    *,
    status: SaleStatus | None = None,
    room_id: int | None = None,
    brand_id: int | None = None,
) -> tuple[list[SaleView], int | None]:
    """Sales the caller may read, oldest first: for brand staff their brand's (any state) and public ones."""
    query = select(FlashSale).where(_visible(who)).order_by(FlashSale.id).limit(limit + 1)
    if after is not None:
        query = query.where(FlashSale.id > after)
    if status is not None:
        query = query.where(FlashSale.status == status)
    if brand_id is not None:
        query = query.where(FlashSale.brand_id == brand_id)
    if room_id is not None:
        query = query.where(exists().where(sale_rooms.c.sale_id == FlashSale.id, sale_rooms.c.room_id == room_id))
    rows, cursor = cut_page(list((await session.scalars(query)).all()), limit)
    return await _views(session, who, rows), cursor


async def list_invites(
    session: AsyncSession, who: Principal, sale_id: int, limit: int, after: int | None
) -> tuple[list[User], int | None]:
    await _managed(session, who, sale_id, "see this sale's invite list")
    query = (
        select(User)
        .join(sale_invites, sale_invites.c.user_id == User.id)
        .where(sale_invites.c.sale_id == sale_id)
        .order_by(User.id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(User.id > after)
    return cut_page(list((await session.scalars(query)).all()), limit)


async def list_codes(
    session: AsyncSession, who: Principal, sale_id: int, limit: int, after: int | None
) -> tuple[list[CodeInfo], int | None]:
    """The sale's invite codes, each with the hold (and buyer) that redeemed it, if any."""
    await _managed(session, who, sale_id, "see this sale's invite codes")
    query = (
        select(SaleCode.id, SaleCode.code, SaleCode.created_at, SaleCode.redeemed_hold, Order.buyer_id)
        .outerjoin(Order, Order.hold_id == SaleCode.redeemed_hold)
        .where(SaleCode.sale_id == sale_id)
        .order_by(SaleCode.id)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(SaleCode.id > after)
    rows = [CodeInfo(*row) for row in (await session.execute(query)).all()]
    return cut_page(rows, limit)


# --- planning -------------------------------------------------------------------------------------------------


def _invalid(field: str, message: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, errors=[{"field": f"body.{field}", "message": message}])


def _check_window(starts_at: datetime, ends_at: datetime) -> None:
    now = utcnow()
    if starts_at < now - _PAST_LEEWAY:
        raise _invalid("starts_at", "must not be in the past", "starts_at is in the past; give a time from now on")
    if starts_at > now + _HORIZON:
        raise _invalid(
            "starts_at", "must be within 366 days", "starts_at is more than a year ahead; plan closer to the date"
        )
    if ends_at <= starts_at:
        raise _invalid("ends_at", "must be after starts_at", "ends_at must be after starts_at")
    if ends_at - starts_at > _LONGEST:
        raise _invalid("ends_at", "must be within 31 days of starts_at", "a flash sale lasts at most 31 days")


def _check_limits(quantity: int, per_buyer_limit: int) -> None:
    if per_buyer_limit > quantity:
        raise _invalid(
            "per_buyer_limit",
            "must not exceed quantity",
            f"per_buyer_limit ({per_buyer_limit}) is more than the sale's quantity ({quantity}); lower it",
        )


def _check_audience(audience: SaleAudience, invitees: int, codes: int, codes_field: str) -> None:
    if invitees and audience is not SaleAudience.INVITE_LIST:
        raise _invalid(
            "invitee_ids", "only for audience invite_list", "invitee_ids are only for a sale with audience invite_list"
        )
    if codes and audience is not SaleAudience.INVITE_CODES:
        raise _invalid(
            codes_field, "only for audience invite_codes", "invite codes are only for a sale with audience invite_codes"
        )


def _distinct(ids: Sequence[int], field: str, what: str) -> list[int]:
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        raise _invalid(field, "duplicate ids", f"{field} lists a {what} twice; list each {what} once")
    return unique


async def _not_featuring(session: AsyncSession, brand_id: int, room_ids: Sequence[int]) -> list[int]:
    """Those of the rooms that do not feature the brand (a sale shows only where its brand is featured)."""
    query = select(Room.id).where(Room.id.in_(room_ids), sells(brand_id))
    return sorted(set(room_ids) - set((await session.scalars(query)).all()))


async def _rooms(session: AsyncSession, brand_id: int, room_ids: Sequence[int]) -> list[int]:
    """The rooms, checked: each exists and features the sale's brand."""
    unique = _distinct(room_ids, "room_ids", "room")
    found = set((await session.scalars(select(Room.id).where(Room.id.in_(unique)))).all())
    missing = sorted(set(unique) - found)
    if missing:
        raise _invalid("room_ids", f"unknown room ids {missing}", f"no room with id {', '.join(map(str, missing))}")
    elsewhere = await _not_featuring(session, brand_id, unique)
    if elsewhere:
        raise _invalid(
            "room_ids",
            f"rooms {elsewhere} do not feature this brand",
            f"room {', '.join(map(str, elsewhere))} does not feature the sale's brand; "
            "ask the room's host to add the brand, or pick another room",
        )
    return unique


async def _invitees(session: AsyncSession, user_ids: Sequence[int]) -> list[int]:
    unique = _distinct(user_ids, "invitee_ids", "user")
    found = set((await session.scalars(select(User.id).where(User.id.in_(unique)))).all())
    missing = sorted(set(unique) - found)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise _invalid("invitee_ids", f"unknown user ids {missing[:10]}", f"no user with id {shown}; invite users only")
    return unique


async def _set_links(session: AsyncSession, sale_id: int, rooms: list[int] | None, invitees: list[int] | None) -> None:
    for table, column, ids in ((sale_rooms, "room_id", rooms), (sale_invites, "user_id", invitees)):
        if ids is None:
            continue
        await session.execute(delete(table).where(table.c.sale_id == sale_id))
        if ids:
            await session.execute(insert(table), [{"sale_id": sale_id, column: value} for value in ids])


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def _add_codes(session: AsyncSession, sale_id: int, count: int, field: str) -> None:
    if not count:
        return
    have = set((await session.scalars(select(SaleCode.code).where(SaleCode.sale_id == sale_id))).all())
    if len(have) + count > MAX_CODES:
        raise _invalid(
            field,
            f"at most {MAX_CODES} codes per sale",
            f"this sale has {len(have)} codes; it can have at most {MAX_CODES}, so add at most {MAX_CODES - len(have)}",
        )
    fresh: set[str] = set()
    while len(fresh) < count:
        code = _new_code()
        if code not in have:
            fresh.add(code)
    now = utcnow()
    await session.execute(insert(SaleCode), [{"sale_id": sale_id, "code": c, "created_at": now} for c in sorted(fresh)])


async def create_sale(
    session: AsyncSession,
    who: Principal,
    *,
    product_id: int,
    price_minor: int,
    quantity: int,
    per_buyer_limit: int,
    starts_at: datetime,
    ends_at: datetime,
    hold_seconds: int,
    audience: SaleAudience,
    room_ids: Sequence[int],
    invitee_ids: Sequence[int],
    code_count: int,
) -> SaleView:
    """A draft sale of one of the caller's brand's products (with `code_count` fresh invite codes)."""
    require(who, who.role in {Role.BRAND_STAFF, Role.ADMIN}, "create flash sales", "brand staff and admins")
    assert who.user_id is not None
    product = await session.get(Product, product_id)
    if product is None:
        raise _invalid("product_id", "unknown product", f"no product with id {product_id}")
    require(who, may_manage_brand(who, product.brand_id), "sell this product", "the product's brand staff or an admin")
    _check_window(starts_at, ends_at)
    _check_limits(quantity, per_buyer_limit)
    _check_audience(audience, len(invitee_ids), code_count, "code_count")
    rooms = await _rooms(session, product.brand_id, room_ids)
    invitees = await _invitees(session, invitee_ids)
    now = utcnow()
    sale = FlashSale(
        brand_id=product.brand_id, product_id=product.id, price_minor=price_minor, currency=product.currency,
        quantity=quantity, per_buyer_limit=per_buyer_limit, starts_at=starts_at, ends_at=ends_at,
        hold_seconds=hold_seconds, audience=audience, status=SaleStatus.DRAFT, version=1, units_paid=0,
        created_by=who.user_id, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(sale)
    await session.flush()
    await _set_links(session, sale.id, rooms, invitees)
    await _add_codes(session, sale.id, code_count, "code_count")
    return await _view(session, who, sale)


async def update_sale(session: AsyncSession, who: Principal, sale_id: int, changes: Mapping[str, Any]) -> SaleView:
    """Edit a draft. Keys as `create_sale` (null or absent: unchanged), plus `add_codes`; lists replace."""
    sale = await _managed(session, who, sale_id, "edit this sale")
    if sale.status is not SaleStatus.DRAFT:
        raise Conflict(f"this sale is {sale.status.value}; only a draft can be edited (cancel it and create a new one)")
    values = {key: changes[key] for key in _EDITABLE if changes.get(key) is not None}
    if "starts_at" in values or "ends_at" in values:
        _check_window(values.get("starts_at", sale.starts_at), values.get("ends_at", sale.ends_at))
    _check_limits(values.get("quantity", sale.quantity), values.get("per_buyer_limit", sale.per_buyer_limit))
    audience = values.get("audience", sale.audience)
    invitee_ids, room_ids = changes.get("invitee_ids"), changes.get("room_ids")
    add_codes = changes.get("add_codes") or 0
    _check_audience(audience, len(invitee_ids or ()), add_codes, "add_codes")
    rooms = None if room_ids is None else await _rooms(session, sale.brand_id, room_ids)
    invitees = None if invitee_ids is None else await _invitees(session, invitee_ids)
    await _set_links(session, sale.id, rooms, invitees)
    await _add_codes(session, sale.id, add_codes, "add_codes")
    for key, value in values.items():
        setattr(sale, key, value)
    sale.version += 1
    sale.updated_at = utcnow()
    await session.flush()
    return await _view(session, who, sale)


# --- life cycle -----------------------------------------------------------------------------------------------


async def _any(session: AsyncSession, condition: ColumnElement[bool]) -> bool:
    return bool(await session.scalar(select(exists().where(condition))))


def _rowcount(result: Result[Any]) -> int:
    return int(result.rowcount)  # type: ignore[attr-defined]


async def _refreshed(session: AsyncSession, sale: FlashSale) -> FlashSale:
    await session.refresh(sale)
    return sale


async def schedule_sale(session: AsyncSession, who: Principal, sale_id: int) -> SaleView:
    """Draft -> scheduled, taking the sale's quantity out of the product's stock (409 if short)."""
    sale = await _managed(session, who, sale_id, "schedule this sale")
    if sale.status is not SaleStatus.DRAFT:
        raise Conflict(f"this sale is already {sale.status.value}; only a draft can be scheduled")
    now = utcnow()
    if sale.ends_at <= now or sale.starts_at < now - _PAST_LEEWAY:
        raise Conflict("this sale's start time has passed; edit starts_at and ends_at, then schedule it")
    room_ids = list((await session.scalars(select(sale_rooms.c.room_id).where(sale_rooms.c.sale_id == sale.id))).all())
    if not room_ids:
        raise Conflict("this sale shows in no room; add room_ids (rooms featuring the brand), then schedule it")
    rooms = (await session.scalars(select(Room).where(Room.id.in_(room_ids)).order_by(Room.id))).all()
    require_not_ended(rooms, "; remove it from room_ids, then schedule")
    elsewhere = await _not_featuring(session, sale.brand_id, room_ids)
    if elsewhere:
        raise Conflict(
            f"room {', '.join(map(str, elsewhere))} no longer features the sale's brand; "
            "remove it from room_ids or ask its host to add the brand"
        )
    if sale.audience is SaleAudience.INVITE_LIST and not await _any(session, sale_invites.c.sale_id == sale.id):
        raise Conflict("this invite-only sale has no invitees; add invitee_ids, then schedule it")
    if sale.audience is SaleAudience.INVITE_CODES and not await _any(session, SaleCode.sale_id == sale.id):
        raise Conflict("this sale is for code holders but has no codes; add_codes, then schedule it")
    moved = await session.execute(
        update(FlashSale)
        .where(FlashSale.id == sale.id, FlashSale.status == SaleStatus.DRAFT)
        .values(status=SaleStatus.SCHEDULED, version=FlashSale.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(moved) != 1:
        await _refreshed(session, sale)
        raise Conflict(f"this sale is already {sale.status.value}; only a draft can be scheduled")
    # Conditional: of two schedules racing for the last units, the second finds the stock short.
    taken = await session.execute(
        update(Product)
        .where(Product.id == sale.product_id, Product.stock >= sale.quantity)
        .values(stock=Product.stock - sale.quantity, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(taken) != 1:
        stock = await session.scalar(select(Product.stock).where(Product.id == sale.product_id))
        raise Conflict(
            f"only {stock} in stock for this product and the sale needs {sale.quantity}; "
            "lower the sale's quantity or add stock, then schedule it"
        )
    # After the UPDATE above: it holds the product's row lock until commit, so of two overlapping sales
    # scheduled at once the second waits here and then sees the first (each statement reads anew).
    await _refuse_overlap(session, sale, sale.starts_at, sale.ends_at)
    return await _view(session, who, await _refreshed(session, sale))


async def _refuse_overlap(session: AsyncSession, sale: FlashSale, starts_at: datetime, ends_at: datetime) -> None:
    """409 if another scheduled or live sale of the product shares a room with `sale` and its window overlaps
    [starts_at, ends_at): a room sells a product from one sale at a time, so the other could never sell.

    Call it with the product's row locked (scheduling's stock UPDATE does): concurrent schedules of one
    product then run this check one after the other.
    """
    mine = select(sale_rooms.c.room_id).where(sale_rooms.c.sale_id == sale.id)
    other = await session.scalar(
        select(FlashSale)
        .where(
            FlashSale.product_id == sale.product_id,
            FlashSale.id != sale.id,
            FlashSale.status.in_((SaleStatus.SCHEDULED, SaleStatus.LIVE)),
            FlashSale.finalised_at.is_(None),
            FlashSale.starts_at < ends_at,
            FlashSale.ends_at > starts_at,
            exists().where(sale_rooms.c.sale_id == FlashSale.id, sale_rooms.c.room_id.in_(mine)),
        )
        .order_by(FlashSale.starts_at, FlashSale.id)
        .limit(1)
    )
    if other is None:
        return
    shared = (
        await session.scalars(
            select(sale_rooms.c.room_id)
            .where(sale_rooms.c.sale_id == other.id, sale_rooms.c.room_id.in_(mine))
            .order_by(sale_rooms.c.room_id)
        )
    ).all()
    raise Conflict(
        f"sale {other.id} ({other.status.value}, {_iso(other.starts_at)} to {_iso(other.ends_at)}) "
        f"sells this product in room {', '.join(map(str, shared))} in an overlapping window; a room sells a "
        f"product from one sale at a time: move this sale's window or its rooms, then schedule it"
    )


def _iso(moment: datetime) -> str:
    """As the API writes times (UTC, `Z`), so a detail can be matched with the sale's fields."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def cancel_sale(session: AsyncSession, who: Principal, sale_id: int) -> SaleView:
    """A draft, or a scheduled sale before it starts, is cancelled; a scheduled one gives its stock back."""
    sale = await _managed(session, who, sale_id, "cancel this sale")
    now = utcnow()
    values = {"status": SaleStatus.CANCELLED, "version": FlashSale.version + 1, "updated_at": now}
    returned = await session.execute(
        update(FlashSale)
        .where(FlashSale.id == sale.id, FlashSale.status == SaleStatus.SCHEDULED, FlashSale.starts_at > now)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(returned) == 1:
        await session.execute(
            update(Product)
            .where(Product.id == sale.product_id)
            .values(stock=Product.stock + sale.quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    else:
        dropped = await session.execute(
            update(FlashSale)
            .where(FlashSale.id == sale.id, FlashSale.status == SaleStatus.DRAFT)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(dropped) != 1:
            await _refreshed(session, sale)
            if sale.status in {SaleStatus.SCHEDULED, SaleStatus.LIVE}:
                raise Conflict(f"this sale has started; end it instead (POST /api/v1/sales/{sale.id}/end)")
            raise Conflict(f"this sale is already {sale.status.value}")
    return await _view(session, who, await _refreshed(session, sale))


async def end_sale(session: AsyncSession, who: Principal, sale_id: int) -> SaleView:
    """End a started sale now: it is `ended` at once (its window closes); the worker then finalises it
    (`finalised_at`) and returns the unsold stock."""
    sale = await _managed(session, who, sale_id, "end this sale")
    now = utcnow()
    ended = await session.execute(
        update(FlashSale)
        .where(
            FlashSale.id == sale.id,
            FlashSale.status.in_((SaleStatus.SCHEDULED, SaleStatus.LIVE)),
            FlashSale.starts_at < now,
            FlashSale.ends_at > now,
        )
        .values(status=SaleStatus.ENDED, ends_at=now, version=FlashSale.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(ended) != 1:
        await _refreshed(session, sale)
        if sale.status is SaleStatus.DRAFT:
            raise Conflict("this sale is a draft and has not started; cancel it instead")
        if sale.status is SaleStatus.SCHEDULED and sale.starts_at >= now:
            raise Conflict(f"this sale has not started yet; cancel it instead (POST /api/v1/sales/{sale.id}/cancel)")
        if sale.status in {SaleStatus.SCHEDULED, SaleStatus.LIVE} or (
            sale.status is SaleStatus.ENDED and sale.finalised_at is None
        ):
            raise Conflict("this sale's window has already closed; it is being finalised")
        raise Conflict(f"this sale is already {sale.status.value}")
    return await _view(session, who, await _refreshed(session, sale))


async def countdown(session: AsyncSession, who: Principal, sale_id: int, room_id: int, seconds: int) -> Countdown:
    """Start a scheduled sale `seconds` from now, announced in one of its rooms by that room's host (or staff)."""
    sale = await _load(session, who, sale_id)
    try:
        room = await get_room(session, who, room_id)
    except NotFound:
        raise _invalid("room_id", "unknown room", f"no room with id {room_id}") from None
    require(
        who,
        may_manage_brand(who, sale.brand_id) or may_run(who, room),
        "start this sale's countdown",
        "the room's host, the sale's brand staff or an admin",
    )
    if not await _any(session, (sale_rooms.c.sale_id == sale.id) & (sale_rooms.c.room_id == room_id)):
        raise _invalid("room_id", "the sale does not show in this room", f"this sale does not show in room {room_id}")
    require_not_ended(room, "; count down in one of the sale's other rooms")
    now = utcnow()
    if sale.status is not SaleStatus.SCHEDULED or sale.starts_at <= now:
        state = "started" if sale.status is SaleStatus.SCHEDULED else sale.status.value
        raise Conflict(f"this sale is {state}; only a scheduled sale that has not started can be counted down")
    starts_at = now + timedelta(seconds=seconds)
    if starts_at >= sale.ends_at:
        raise Conflict(
            f"a {seconds} s countdown would start the sale after it ends ({sale.ends_at.isoformat()}); "
            "use a shorter countdown"
        )
    # A countdown moves the window's start: like scheduling, it must not pull the sale into another's window.
    # Lock the product row first so a concurrent schedule of the same product runs its check after this one.
    await session.execute(select(Product.id).where(Product.id == sale.product_id).with_for_update())
    await _refuse_overlap(session, sale, starts_at, sale.ends_at)
    moved = await session.execute(
        update(FlashSale)
        .where(FlashSale.id == sale.id, FlashSale.status == SaleStatus.SCHEDULED, FlashSale.starts_at > now)
        .values(starts_at=starts_at, version=FlashSale.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(moved) != 1:
        raise Conflict("this sale changed meanwhile (started, ended or cancelled); reload it")
    return Countdown(await _refreshed(session, sale), room_id, starts_at)


# --- for the worker -------------------------------------------------------------------------------------------


async def mark_live(session: AsyncSession, sale_id: int) -> bool:
    """Scheduled -> live; False (and no change) if the sale is not scheduled."""
    result = await session.execute(
        update(FlashSale)
        .where(FlashSale.id == sale_id, FlashSale.status == SaleStatus.SCHEDULED)
        .values(status=SaleStatus.LIVE, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def finalise(session: AsyncSession, sale_id: int, units_paid: int) -> bool:
    """Close a sale and give its unpaid units back to the product's stock, once: False if already done (or
    never allocated: a draft or cancelled sale).

    Idempotent: only the call whose conditional UPDATE stamps `finalised_at` returns stock, so a worker that
    repeats the job after a crash returns nothing twice.
    """
    sale = await session.get(FlashSale, sale_id)
    if sale is None:
        raise ValueError(f"no flash sale with id {sale_id}")
    if not 0 <= units_paid <= sale.quantity:
        raise ValueError(f"units_paid {units_paid} is outside 0..{sale.quantity} for sale {sale_id}")
    now = utcnow()
    closed = await session.execute(
        update(FlashSale)
        .where(
            FlashSale.id == sale_id,
            FlashSale.finalised_at.is_(None),
            FlashSale.status.in_(UNFINALISED),
        )
        .values(
            status=SaleStatus.ENDED,
            units_paid=units_paid,
            returned_units=FlashSale.quantity - units_paid,
            finalised_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if _rowcount(closed) != 1:
        return False
    await session.execute(
        update(Product)
        .where(Product.id == sale.product_id)
        .values(stock=Product.stock + (sale.quantity - units_paid), updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(sale)
    return True
