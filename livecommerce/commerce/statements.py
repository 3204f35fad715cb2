"""Statements: what a creator earned and what a brand sold in a period, read from the money ledger alone.

Every figure is a SUM over the party's `LedgerLine` rows posted in `[start, end)`, computed by the database,
so a statement always equals the sum of its lines (nothing is recomputed from orders or rates, which may have
changed since). Signs as posted (`LedgerAccount`): in a sale, funding lines (`buyer_paid`, `platform_discount`)
are negative and shares (`platform_fee`, `creator_commission`, `brand_net`) positive; a refund posts the
same accounts with the signs turned. So, per currency:

    orders                    sale postings
    gmv_minor                 -SUM(buyer_paid)             of sales: what buyers paid
    refunds_minor             SUM(buyer_paid)              of refunds: what went back to buyers
    commission_minor          SUM(creator_commission)      of sales
    commission_reversed_minor -SUM(creator_commission)     of refunds
    fees_minor                SUM(platform_fee)            of sales
    fees_reversed_minor       -SUM(platform_fee)           of refunds
    brand_net_minor           SUM(brand_net)               sales and refunds
    net_minor                 the party's share after reversals: commission for a creator, brand_net for a brand
    platform_discount_minor   -SUM(platform_discount)      sales and refunds: the platform-funded voucher parts
    seller_discount_minor     SUM(brand_discount)          sales and refunds: the brand's own voucher cost (the
                                                           memo pair's positive side; brands only)

A brand's statement also splits its sales `by_creator` (orders, GMV, commission before reversals, as in the
totals); sales without a creator (no room host) are only in the totals.

Who may read: a creator's statement only that creator (a host, with their own user id) and admins; anyone
else signed in gets 403 whether or not the id exists (so earnings and ids leak nothing); an admin asking for a
user that does not exist gets 404 (a user who is no longer a host keeps their history, so admins may read any
user's). A brand's statement its staff and admins; an unknown brand is 404 first, as for its orders.

The CSV export (`posting_rows`) has one row per posting, oldest first (keyset on its time and name), read page
by page in short sessions of their own like the orders export. (A posting committed during an export with a
time before the page being read is not in that export: ask for a period that has ended.)
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.catalog import get_brand
from livecommerce.errors import InvalidRequest
from livecommerce.models import LedgerAccount, LedgerLine, Order, PostingKind, Role, User
from livecommerce.users import get_user

__all__ = [
    "EXPORT_PAGE",
    "LONGEST_PERIOD",
    "CreatorSales",
    "Party",
    "PartyKind",
    "Period",
    "PostingRow",
    "Statement",
    "Totals",
    "brand_party",
    "creator_party",
    "period",
    "posting_rows",
    "statement",
]

LONGEST_PERIOD = timedelta(days=366)
EXPORT_PAGE = 500  # postings read per query when exporting


class PartyKind(enum.StrEnum):
    CREATOR = "creator"
    BRAND = "brand"


@dataclass(frozen=True, slots=True)
class Party:
    """Whose statement: a creator (a user id) or a brand, with the name it is shown under."""

    kind: PartyKind
    id: int
    name: str

    def lines(self) -> ColumnElement[bool]:
        """The ledger lines that are this party's."""
        column = LedgerLine.creator_id if self.kind is PartyKind.CREATOR else LedgerLine.brand_id
        return column == self.id


@dataclass(frozen=True, slots=True)
class Period:
    """`[start, end)`, both aware UTC."""

    start: datetime
    end: datetime

    def lines(self) -> ColumnElement[bool]:
        return and_(LedgerLine.posted_at >= self.start, LedgerLine.posted_at < self.end)


def period(start: datetime | None, end: datetime | None, *, now: datetime | None = None) -> Period:
    """The period asked for: each bound left out defaults to this calendar month's (UTC); `end` must be after
    `start` and at most `LONGEST_PERIOD` later (422 naming the field)."""
    today = (now or datetime.now(UTC)).astimezone(UTC)
    month = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    start = (start or month).astimezone(UTC)
    end = (end or next_month).astimezone(UTC)
    if end <= start:
        raise _invalid("to", "must be after from", f"the period ends ({end:%Y-%m-%dT%H:%M:%SZ}) before it starts "
                       f"({start:%Y-%m-%dT%H:%M:%SZ}); give a `to` after `from`")  # fmt: skip
    if end - start > LONGEST_PERIOD:
        raise _invalid("to", "must be within 366 days of from", "a statement covers at most 366 days; ask for "
                       "a shorter period (one request per year)")  # fmt: skip
    return Period(start, end)


def _invalid(field: str, message: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, errors=[{"field": f"query.{field}", "message": message}])


async def creator_party(session: AsyncSession, who: Principal, user_id: int) -> Party:
    """The creator `user_id`, if `who` may read their earnings (see the module docstring)."""
    own = who.user_id == user_id and who.role is Role.HOST
    require(who, who.is_admin or own, "see this creator's earnings", "the creator themself or an admin")
    user = await get_user(session, user_id)
    return Party(PartyKind.CREATOR, user.id, user.display_name)


async def brand_party(session: AsyncSession, who: Principal, brand_id: int) -> Party:
    """The brand, if `who` is its staff or an admin (404 for an unknown brand first)."""
    brand = await get_brand(session, brand_id)
    require(who, may_manage_brand(who, brand_id), "see this brand's statement", "the brand's staff or an admin")
    return Party(PartyKind.BRAND, brand.id, brand.name)


@dataclass(frozen=True, slots=True)
class Totals:
    currency: str
    orders: int
    gmv_minor: int
    refunds_minor: int
    commission_minor: int
    commission_reversed_minor: int
    fees_minor: int
    fees_reversed_minor: int
    brand_net_minor: int | None  # None in a creator's statement: the brand's share is the brand's business
    net_minor: int
    platform_discount_minor: int = 0
    seller_discount_minor: int | None = 0  # None in a creator's statement, like brand_net_minor


@dataclass(frozen=True, slots=True)
class CreatorSales:
    creator_id: int
    creator_name: str
    currency: str
    orders: int
    gmv_minor: int
    commission_minor: int


@dataclass(frozen=True, slots=True)
class Statement:
    party: Party
    period: Period
    totals: list[Totals]  # one per currency, by currency code
    by_creator: list[CreatorSales] | None  # a brand's only: by creator id, then currency


def _sum(account: LedgerAccount, kind: PostingKind | None = None) -> ColumnElement[Any]:
    """SUM of the lines of `account` (of postings of `kind`, or all), 0 when there are none."""
    match = LedgerLine.account == account
    if kind is not None:
        match = and_(match, LedgerLine.kind == kind)
    return func.coalesce(func.sum(case((match, LedgerLine.amount_minor), else_=0)), 0)


def _orders() -> ColumnElement[Any]:
    return func.count(distinct(case((LedgerLine.kind == PostingKind.SALE, LedgerLine.posting))))


async def statement(session: AsyncSession, party: Party, span: Period) -> Statement:
    """The party's statement for `span` (check access first: `creator_party` / `brand_party`)."""
    sale, refund = PostingKind.SALE, PostingKind.REFUND
    paid, fee, commission = LedgerAccount.BUYER_PAID, LedgerAccount.PLATFORM_FEE, LedgerAccount.CREATOR_COMMISSION
    query = (
        select(
            LedgerLine.currency,
            _orders(),
            _sum(paid, sale),
            _sum(paid, refund),
            _sum(commission, sale),
            _sum(commission, refund),
            _sum(fee, sale),
            _sum(fee, refund),
            _sum(LedgerAccount.BRAND_NET),
            _sum(LedgerAccount.PLATFORM_DISCOUNT),
            _sum(LedgerAccount.BRAND_DISCOUNT),
        )
        .where(party.lines(), span.lines())
        .group_by(LedgerLine.currency)
        .order_by(LedgerLine.currency)
    )
    totals = []
    for row in (await session.execute(query)).all():
        currency, orders, *sums = row
        gmv, refunds, comm, comm_back, fees, fees_back, brand_net, platform_off, seller_off = (int(v) for v in sums)
        creator = party.kind is PartyKind.CREATOR
        net = comm + comm_back if creator else brand_net
        shown = None if creator else brand_net
        totals.append(
            Totals(
                currency,
                int(orders),
                -gmv,
                refunds,
                comm,
                -comm_back,
                fees,
                -fees_back,
                shown,
                net,
                -platform_off,
                None if creator else seller_off,
            )
        )
    by_creator = await _by_creator(session, party, span) if party.kind is PartyKind.BRAND else None
    return Statement(party, span, totals, by_creator)


async def _by_creator(session: AsyncSession, party: Party, span: Period) -> list[CreatorSales]:
    sale = PostingKind.SALE
    query = (
        select(
            LedgerLine.creator_id,
            User.display_name,
            LedgerLine.currency,
            _orders(),
            _sum(LedgerAccount.BUYER_PAID, sale),
            _sum(LedgerAccount.CREATOR_COMMISSION, sale),
        )
        .join(User, User.id == LedgerLine.creator_id)
        .where(party.lines(), span.lines())
        .group_by(LedgerLine.creator_id, User.display_name, LedgerLine.currency)
        .order_by(LedgerLine.creator_id, LedgerLine.currency)
    )
    rows = (await session.execute(query)).all()
    return [
        CreatorSales(int(creator), name, currency, int(orders), -int(gmv), int(comm))
        for creator, name, currency, orders, gmv, comm in rows
        if int(orders) or int(gmv) or int(comm)  # only refunds in the period: nothing sold
    ]


@dataclass(frozen=True, slots=True)
class PostingRow:
    """One posting as the CSV shows it: its lines side by side, signed as posted."""

    posted_at: datetime
    posting: str
    kind: PostingKind
    order_id: int
    refund_id: int | None
    room_id: int | None
    brand_id: int
    creator_id: int | None
    product_id: int
    currency: str
    buyer_paid_minor: int
    platform_discount_minor: int
    platform_fee_minor: int
    creator_commission_minor: int
    brand_net_minor: int | None  # None in a creator's statement (as in `Totals`)


async def posting_rows(
    sessions: async_sessionmaker[AsyncSession], party: Party, span: Period, *, page_size: int = EXPORT_PAGE
) -> AsyncIterator[list[PostingRow]]:
    """The party's postings in `span`, oldest first, one page per query (check access first).

    Pages are keyset on (posted_at, posting), the group's own key, so each line is in exactly one page (a
    posting's lines share their time: they are written together)."""
    after: tuple[datetime, str] | None = None
    while True:
        query = (
            select(
                LedgerLine.posted_at,
                LedgerLine.posting,
                func.max(LedgerLine.kind),
                func.max(LedgerLine.order_id),
                func.max(LedgerLine.refund_id),
                func.max(LedgerLine.room_id),
                func.max(LedgerLine.brand_id),
                func.max(LedgerLine.creator_id),
                func.max(Order.product_id),
                func.max(LedgerLine.currency),
                *(_sum(account) for account in _CSV_ACCOUNTS),
            )
            .join(Order, Order.id == LedgerLine.order_id)
            .where(party.lines(), span.lines())
            .group_by(LedgerLine.posted_at, LedgerLine.posting)
            .order_by(LedgerLine.posted_at, LedgerLine.posting)
            .limit(page_size)
        )
        if after is not None:
            at, posting = after
            query = query.where(
                or_(LedgerLine.posted_at > at, and_(LedgerLine.posted_at == at, LedgerLine.posting > posting))
            )
        async with sessions() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return
        page = [_posting_row(row, brand_net=party.kind is PartyKind.BRAND) for row in rows]
        yield page
        if len(rows) < page_size:
            return
        after = page[-1].posted_at, page[-1].posting


_CSV_ACCOUNTS = (
    LedgerAccount.BUYER_PAID,
    LedgerAccount.PLATFORM_DISCOUNT,
    LedgerAccount.PLATFORM_FEE,
    LedgerAccount.CREATOR_COMMISSION,
    LedgerAccount.BRAND_NET,
)


def _posting_row(row: Any, *, brand_net: bool) -> PostingRow:
    posted_at, posting, kind, order_id, refund_id, room_id, brand_id, creator_id, product_id, currency = row[:10]
    paid, discount, fee, commission, net = (int(value) for value in row[10:])
    return PostingRow(
        posted_at, posting, PostingKind(kind), order_id, refund_id, room_id, brand_id, creator_id, product_id,
        currency, paid, discount, fee, commission, net if brand_net else None,
    )  # fmt: skip
