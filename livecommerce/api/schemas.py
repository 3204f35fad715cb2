"""REST wire format: request and response bodies of `/api/v1`.

Requests are strict (no type coercion in JSON bodies) and forbid unknown fields, so a typo in a field name is
an error rather than a silently ignored value. Response models are what the OpenAPI document publishes;
a test checks real responses against it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from livecommerce.models import (
    AccountStatus,
    CollaborationStatus,
    FeeBase,
    OrderStatus,
    PlanKind,
    RefundStatus,
    Role,
    RoomStatus,
    RoomVisibility,
    SaleAudience,
    SaleStatus,
)
from livecommerce.wire import MAX_ID

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _moment(value: datetime) -> datetime:
    """A time with a zone, as UTC, within years every computation on it can reach (a bound a year out, a month
    on): outside them a request gets a 422 naming the field rather than an overflow."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = _LATEST
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("must be a time between the years 1970 and 8999")
    return utc


Moment = Annotated[AwareDatetime, AfterValidator(_moment)]


def _no_control_chars(value: str) -> str:
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _single_line(value: str) -> str:
    if "\n" in value or "\t" in value:
        raise ValueError("must be a single line")
    return value


# The rules above as patterns, so the API document says what the server accepts: no control characters
# (multi-line text allows tab and newline), except in the leading and trailing whitespace it strips. Pydantic
# strips Unicode White_Space, which is `\s` without the separators \x1c-\x1f that Python counts as space.
_STRIPPED = r"[^\S\x1c-\x1f]*"
# Single-line text must also keep a visible character once stripped.
_SINGLE_LINE_TEXT = Field(json_schema_extra={"pattern": rf"^{_STRIPPED}[^\x00-\x1f\s][^\x00-\x1f]*{_STRIPPED}$"})
_MULTI_LINE_TEXT = Field(json_schema_extra={"pattern": rf"^{_STRIPPED}[^\x00-\x08\x0b-\x1f]*{_STRIPPED}$"})
_VISIBLE = r"[^\s\x00-\x1f\x7f]"  # not whitespace, not a control character
_EMAIL_PART = r"[^@\s\x00-\x1f\x7f]"
_EMAIL_MAX = 254


def _sent_at_most(limit: int) -> BeforeValidator:
    """Count the characters as sent, before whitespace is stripped, as the document's `maxLength` does."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError(
                "string_too_long", "String should have at most {max_length} characters", {"max_length": limit}
            )
        return value

    return BeforeValidator(check)


def _email_fits(value: str) -> str:
    # Lower-casing can lengthen a string ("İ" becomes two code points); the column holds 254.
    if len(value) > _EMAIL_MAX:
        raise ValueError(f"must be at most {_EMAIL_MAX} characters once lower-cased")
    return value


Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=120),
    _sent_at_most(120),
    AfterValidator(_no_control_chars),
    AfterValidator(_single_line),
    _SINGLE_LINE_TEXT,
]
# users.display_name is VARCHAR(80).
DisplayName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=80),
    _sent_at_most(80),
    AfterValidator(_no_control_chars),
    AfterValidator(_single_line),
    _SINGLE_LINE_TEXT,
]
Title = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    _sent_at_most(200),
    AfterValidator(_no_control_chars),
    AfterValidator(_single_line),
    _SINGLE_LINE_TEXT,
]
LongText = Annotated[
    str, StringConstraints(max_length=5000), _sent_at_most(5000), AfterValidator(_no_control_chars), _MULTI_LINE_TEXT
]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
ImageUrl = Annotated[str, StringConstraints(max_length=2048, pattern=rf"^https?://[^\s/$.?#\x00-\x1f\x7f]{_VISIBLE}*$")]
Email = Annotated[
    str,
    StringConstraints(
        max_length=_EMAIL_MAX, pattern=rf"^{_EMAIL_PART}+@{_EMAIL_PART}+\.{_EMAIL_PART}+$", to_lower=True
    ),
    AfterValidator(_email_fits),
]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
PriceMinor = Annotated[int, Field(ge=0, le=10**12, description="Price in the currency's minor unit (cents).")]
Stock = Annotated[int, Field(ge=0, le=10**9)]


# --- errors ---------------------------------------------------------------------------------------------------


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `body.price_minor` or `query.limit`.")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str = Field(description="What went wrong and what to do about it.")
    code: str = Field(description="Stable machine-readable reason.")
    retryable: bool = Field(default=False, description="Whether the same request may succeed later, unchanged.")
    retry_after: float | None = Field(
        default=None, description="Seconds to wait before retrying (the `Retry-After` header, unrounded)."
    )
    instance: str | None = None
    errors: list[FieldError] | None = None


# --- pagination -----------------------------------------------------------------------------------------------


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100, description="Items per page.")
    after: int | None = Field(
        default=None, ge=0, le=MAX_ID, description="Cursor: the `next` value of the previous page."
    )


# --- users and auth -------------------------------------------------------------------------------------------


class UserOut(BaseModel):
    id: int
    email: str = Field(description="`deleted-<id>@invalid` once the account is deleted.")
    display_name: str
    role: Role
    brand_id: int | None
    status: AccountStatus = Field(description="Suspended and deleted accounts' tokens are refused.")
    created_at: datetime


class UserCreate(BaseModel):
    model_config = _STRICT

    email: Email
    display_name: DisplayName
    role: Role
    brand_id: Id | None = Field(default=None, description="Required for brand_staff, forbidden otherwise.")


class RoleChange(BaseModel):
    model_config = _STRICT

    role: Role
    brand_id: Id | None = Field(default=None, description="Required for brand_staff, forbidden otherwise.")


class TokenOut(BaseModel):
    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")
    user: UserOut


class DemoLogin(BaseModel):
    model_config = _STRICT

    email: Email


# --- brands ---------------------------------------------------------------------------------------------------


class BrandOut(BaseModel):
    id: int
    name: str
    description: str
    created_at: datetime


class BrandCreate(BaseModel):
    model_config = _STRICT

    name: Name
    description: LongText = ""


class BrandUpdate(BaseModel):
    """Only the fields sent change; a field sent as null is left as it is."""

    model_config = _STRICT

    name: Name | None = None
    description: LongText | None = None


class BrandPage(BaseModel):
    items: list[BrandOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


# --- products -------------------------------------------------------------------------------------------------


class ProductOut(BaseModel):
    id: int
    brand_id: int
    sku: str
    title: str
    description: str
    image_url: str | None
    price_minor: int
    currency: str
    stock: int
    units_sold: int
    created_at: datetime
    updated_at: datetime


class ProductCreate(BaseModel):
    model_config = _STRICT

    sku: Sku
    title: Title
    description: LongText = ""
    image_url: ImageUrl | None = None
    price_minor: PriceMinor
    currency: Currency
    stock: Stock


class ProductUpdate(BaseModel):
    """Only the fields sent change; a field sent as null is left as it is, except `image_url`: null removes it."""

    model_config = _STRICT

    sku: Sku | None = None
    title: Title | None = None
    description: LongText | None = None
    image_url: ImageUrl | None = None
    price_minor: PriceMinor | None = None
    currency: Currency | None = None
    stock: Stock | None = None


class ProductPage(BaseModel):
    items: list[ProductOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class ProductQuery(PageQuery):
    brand_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this brand's products.")


# --- rooms ----------------------------------------------------------------------------------------------------


class PersonOut(BaseModel):
    id: int
    display_name: str


class BrandRef(BaseModel):
    id: int
    name: str


class RoomOut(BaseModel):
    """A room's snapshot: what a viewer needs to render it."""

    id: int
    title: str
    host: PersonOut
    brands: list[BrandRef]
    visibility: RoomVisibility
    status: RoomStatus
    scheduled_start: datetime
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime


class RoomCreate(BaseModel):
    model_config = _STRICT

    title: Title
    scheduled_start: Moment = Field(description="When the LIVE is planned to start (with a time zone).")
    brand_ids: list[Id] = Field(default_factory=list, max_length=10, description="Featured brands.")
    visibility: RoomVisibility = RoomVisibility.PUBLIC
    host_id: Id | None = Field(default=None, description="Admins only: create the room for this host.")


class RoomUpdate(BaseModel):
    """Only the fields sent change; a field sent as null is left as it is."""

    model_config = _STRICT

    title: Title | None = None
    scheduled_start: Moment | None = Field(default=None, description="Reschedule (scheduled rooms only).")
    brand_ids: list[Id] | None = Field(default=None, max_length=10)
    visibility: RoomVisibility | None = None


class RoomPage(BaseModel):
    items: list[RoomOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class RoomQuery(PageQuery):
    status: RoomStatus | None = None
    host_id: int | None = Field(default=None, ge=1, le=MAX_ID)


# --- flash sales ----------------------------------------------------------------------------------------------

Quantity = Annotated[int, Field(ge=1, le=10**9)]
HoldSeconds = Annotated[int, Field(ge=30, le=3600, description="How long a buyer's hold lasts before checkout.")]
CodeCount = Annotated[int, Field(ge=0, le=10_000)]
_ROOMS = "Rooms where the sale shows; each must feature the product's brand."
_INVITEES = "Users invited (audience invite_list only). In an update the list replaces the old one."


class SaleCreate(BaseModel):
    """A draft flash sale; nothing is taken from stock until it is scheduled."""

    model_config = _STRICT

    product_id: Id
    price_minor: PriceMinor = Field(description="Sale price per unit, in the product's currency's minor unit.")
    quantity: Quantity = Field(description="Units for sale, taken from the product's stock when scheduled.")
    per_buyer_limit: Quantity = Field(description="Most units one buyer may take; at most `quantity`.")
    starts_at: Moment
    ends_at: Moment = Field(description="After `starts_at`, at most 31 days later.")
    hold_seconds: HoldSeconds = 300
    audience: SaleAudience = SaleAudience.OPEN
    room_ids: list[Id] = Field(default_factory=list, max_length=10, description=_ROOMS)
    invitee_ids: list[Id] = Field(default_factory=list, max_length=2000, description=_INVITEES)
    code_count: CodeCount = Field(default=0, description="Single-use invite codes to generate (invite_codes only).")


class SaleUpdate(BaseModel):
    """Edit a draft. Only the fields sent change; a field sent as null is left as it is."""

    model_config = _STRICT

    price_minor: PriceMinor | None = None
    quantity: Quantity | None = None
    per_buyer_limit: Quantity | None = None
    starts_at: Moment | None = None
    ends_at: Moment | None = None
    hold_seconds: HoldSeconds | None = None
    audience: SaleAudience | None = None
    room_ids: list[Id] | None = Field(default=None, max_length=10, description=_ROOMS)
    invitee_ids: list[Id] | None = Field(default=None, max_length=2000, description=_INVITEES)
    add_codes: CodeCount | None = Field(default=None, description="Generate this many more invite codes.")


class SaleOut(BaseModel):
    id: int
    brand_id: int
    product_id: int
    price_minor: int
    currency: str
    quantity: int
    per_buyer_limit: int
    starts_at: datetime
    ends_at: datetime
    hold_seconds: int
    audience: SaleAudience
    status: SaleStatus
    room_ids: list[int] = Field(description="The sale's rooms that the caller can see.")
    version: int = Field(description="Rises with every change live buying must follow.")
    units_paid: int = Field(description="Units sold and paid; set when the sale is finalised.")
    returned_units: int | None = Field(description="Units given back to the product's stock when finalised.")
    created_at: datetime
    updated_at: datetime
    finalised_at: datetime | None
    invite_count: int | None = Field(description="Invitees; null unless the caller manages the sale.")
    code_count: int | None = Field(description="Invite codes; null unless the caller manages the sale.")


class SalePage(BaseModel):
    items: list[SaleOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class SaleQuery(PageQuery):
    status: SaleStatus | None = None
    room_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only sales shown in this room.")
    brand_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this brand's sales.")


class CountdownStart(BaseModel):
    model_config = _STRICT

    room_id: Id = Field(description="One of the sale's rooms; its viewers see the countdown.")
    seconds: int = Field(ge=10, le=300, description="The sale starts this many seconds from now.")


class CountdownOut(BaseModel):
    sale_id: int
    room_id: int
    starts_at: datetime
    version: int


class InviteePage(BaseModel):
    items: list[PersonOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


class CodeOut(BaseModel):
    code: str
    created_at: datetime
    redeemed_hold: str | None = Field(description="The hold that used the code; null while unused.")
    redeemed_by: int | None = Field(description="The buyer who used the code, once their order is recorded.")


class CodePage(BaseModel):
    items: list[CodeOut]
    next: int | None = Field(description="Pass as `after` to get the next page; null on the last page.")


# --- orders ---------------------------------------------------------------------------------------------------


class OrderOut(BaseModel):
    id: int
    hold_id: str
    sale_id: int | None
    product_id: int
    brand_id: int
    room_id: int | None
    buyer_id: int
    buyer_name: str = Field(description="The buyer's display name as it is now (the pages show who bought).")
    quantity: int
    unit_price_minor: int
    total_minor: int
    currency: str
    status: OrderStatus
    payment_ref: str | None
    held_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    updated_at: datetime
    creator_id: int | None = Field(description="The host whose room sold it (null: no room).")
    collaboration_id: int | None = Field(
        description="The collaboration the creator sold it under (null: none, or you are not the brand's staff or "
        "an admin: the sale's terms are between the brand, the creator and the platform)."
    )
    commission_bps: int | None = Field(
        description="The creator's commission on what the buyer paid, in basis points (null: see collaboration_id)."
    )
    fee_bps: int | None = Field(description="The platform fee in basis points of `fee_base` (null: as above).")
    fee_base: FeeBase | None = Field(description="What the fee is taken of (null: as above).")
    refunded_minor: int = Field(description="Given back so far by refunds that are done.")


class OrderPage(BaseModel):
    items: list[OrderOut] = Field(description="Newest first.")
    next: int | None = Field(description="Pass as `after` to get the next (older) page; null on the last page.")


class OrderQuery(PageQuery):
    status: OrderStatus | None = None


class BrandOrderQuery(OrderQuery):
    sale_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this flash sale's orders.")


class OrderExportQuery(BaseModel):
    """Filters of a brand's CSV export (it has no pages: the whole list streams)."""

    model_config = ConfigDict(extra="forbid")

    status: OrderStatus | None = None
    sale_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this flash sale's orders.")


class SaleStatsOut(BaseModel):
    """A flash sale's figures now. `available + held + paid = total` while `live`."""

    sale_id: int
    status: SaleStatus
    live: bool = Field(description="True: unit counts from the sale's live pool; false: from SQL (not loaded).")
    available: int = Field(description="Units anyone may still take.")
    held: int = Field(description="Units in buyers' holds, not paid yet.")
    paid: int = Field(description="Units sold and paid.")
    total: int = Field(description="Units the sale sells.")
    sold_out: bool
    gmv_minor: int = Field(description="Paid units times the sale price, in the currency's minor unit.")
    currency: str
    orders_paid: int = Field(description="Paid orders recorded in SQL (the worker records them a moment later).")
    ts_ms: int = Field(description="When these figures were read, in ms since the epoch.")


# --- statements -----------------------------------------------------------------------------------------------


class StatementQuery(BaseModel):
    """The period `[from, to)`; each bound left out is this calendar month's (UTC)."""

    model_config = ConfigDict(extra="forbid")

    from_: Moment | None = Field(default=None, alias="from", description="Start (inclusive), with a time zone.")
    to: Moment | None = Field(default=None, description="End (exclusive): after `from`, at most 366 days later.")


class StatementParty(BaseModel):
    kind: Literal["creator", "brand"]
    id: int
    name: str


class StatementTotals(BaseModel):
    """One currency's figures: each is a SUM of the party's ledger lines in the period, in minor units."""

    currency: str
    orders: int = Field(description="Sale postings (paid orders).")
    gmv_minor: int = Field(description="What buyers paid.")
    refunds_minor: int = Field(description="What was refunded to buyers.")
    commission_minor: int = Field(description="Creator commission on the sales.")
    commission_reversed_minor: int = Field(description="Commission taken back by refunds.")
    fees_minor: int = Field(description="Platform fees on the sales.")
    fees_reversed_minor: int = Field(description="Platform fees given back by refunds.")
    brand_net_minor: int | None = Field(
        description="The brand's share after refunds (null in a creator's statement: it is the brand's business)."
    )
    net_minor: int = Field(description="The party's share after refunds: commission (creator) or brand net.")
    platform_discount_minor: int = Field(
        default=0, description="The platform-funded part of vouchers on these sales, after refunds."
    )
    seller_discount_minor: int | None = Field(
        default=0, description="What the brand's own vouchers took off, after refunds (null in a creator's statement)."
    )


class CreatorSalesOut(BaseModel):
    creator_id: int
    creator_name: str
    currency: str
    orders: int
    gmv_minor: int
    commission_minor: int = Field(description="Commission on the sales, before refunds (as in the totals).")


class StatementOut(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    party: StatementParty
    from_: datetime = Field(alias="from", description="The period's start (inclusive).")
    to: datetime = Field(description="The period's end (exclusive).")
    totals: list[StatementTotals] = Field(description="One entry per currency; empty when nothing was posted.")
    by_creator: list[CreatorSalesOut] | None = Field(
        default=None, description="A brand's sales by creator (brand statements only; null for a creator's)."
    )


# --- health ---------------------------------------------------------------------------------------------------


class SocketCounters(BaseModel):
    """This process's live connections, and the totals since it started of those refused or cut off."""

    connections: int = Field(description="Live Socket.IO connections now.")
    refused_full: int = Field(description="Handshakes refused (503) because the process was at `max_connections`.")
    refused_address: int = Field(
        description="Handshakes refused (429) because their address was at `max_connections_per_address`."
    )
    dropped_slow: int = Field(description="Connections closed for having more than their output budget unsent.")
    malformed_packets: int = Field(description="Engine.IO frames or Socket.IO packets that could not be decoded.")


class Health(BaseModel):
    status: Literal["ok"]
    demo: bool = Field(description="Whether the server runs in demo mode (the demo login works).")
    sockets: SocketCounters | None = Field(default=None, description="Live connections and refusals.")


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str] = Field(description="Each dependency and `ok` or what is wrong with it.")


# --- buying ---------------------------------------------------------------------------------------------------


class BuyIn(BaseModel):
    """A tap on Buy. Send a fresh `idempotency_key` per tap and the same one on a retry: the retry then returns
    the same hold instead of taking more units."""

    model_config = _STRICT

    product_id: Id
    quantity: Annotated[int, Field(ge=1, le=100)] = 1
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,32}$")] | None = Field(
        default=None, description="An invite code, for sales open to code holders."
    )
    sale_id: Id | None = Field(
        default=None,
        description="The sale you mean to buy from (the offer's `sale.id`): if the product does not sell from "
        "it now, the buy is refused (`sale_not_running`) instead of made at another price.",
    )


ClaimId = Annotated[str, StringConstraints(pattern=r"^v[0-9]{1,15}\.[0-9]{1,12}$")]


class CheckoutIn(BaseModel):
    model_config = _STRICT

    card_number: Annotated[str, StringConstraints(pattern=r"^[0-9 ]{12,23}$")] = Field(
        description="Test mode: 4242 4242 4242 4242 approves, 4000 0000 0000 0002 is declined."
    )
    claim_ids: list[ClaimId] | None = Field(
        default=None, max_length=2,
        description="Your voucher claims to use (at most one seller and one platform voucher); absent: the best "
        "of your claims for this hold; [] uses none.",
    )  # fmt: skip


class PriceVoucherOut(BaseModel):
    voucher_id: int
    claim_id: str
    title: str | None
    discount_minor: int | None


class PriceOut(BaseModel):
    """A price after vouchers: `pay_minor = subtotal_minor - seller_discount_minor - platform_discount_minor`."""

    subtotal_minor: int
    seller_discount_minor: int = Field(description="The part of the discounts the seller funds.")
    platform_discount_minor: int = Field(description="The part of the discounts the platform funds.")
    pay_minor: int = Field(description="What the buyer pays.")
    vouchers: list[PriceVoucherOut]


class HoldOut(BaseModel):
    """Units reserved for you until `expires_at_ms` (ms since the epoch); pay before then."""

    id: str
    state: Literal["held", "paying", "paid", "cancelled", "expired"]
    product_id: int
    sale_id: int | None
    room_id: int | None
    quantity: int
    unit_price_minor: int
    total_minor: int
    currency: str
    expires_at_ms: int
    payment_ref: str | None
    price: PriceOut | None = Field(
        default=None, description="The price after vouchers: what checkout charges (or charged)."
    )
    replayed: bool = Field(description="True when this answers a retry: the hold the key already had.")


# --- marketplace: commission plans, collaborations, fee rules -------------------------------------------------

RateBps = Annotated[int, Field(ge=100, le=8000, description="Commission in basis points: 100 is 1%, 8000 is 80%.")]


class RateIn(BaseModel):
    model_config = _STRICT

    product_id: Id = Field(description="One of the plan's brand's products.")
    rate_bps: RateBps


class PlanCreate(BaseModel):
    model_config = _STRICT

    kind: PlanKind = Field(description="`open`: one per brand, any approved creator; `targeted`: named creators.")
    name: Name
    rates: list[RateIn] = Field(default_factory=list, max_length=500, description="One rate per product.")
    creator_ids: list[Id] = Field(
        default_factory=list, max_length=200, description="Targeted plans only: the hosts it is offered to."
    )


class RateSet(BaseModel):
    model_config = _STRICT

    rate_bps: RateBps


class RateOut(BaseModel):
    product_id: int
    rate_bps: int
    set_at: datetime
    effective_at: datetime = Field(
        description="When it reaches creators approved before `set_at`: at once for a raise, after the lock period "
        "for a cut. Creators approved later get it from their approval on."
    )


class PlanRateOut(RateOut):
    title: str
    price_minor: int
    currency: str


class PlanOut(BaseModel):
    id: int
    brand_id: int
    brand_name: str
    kind: PlanKind
    name: str
    created_at: datetime
    ended_at: datetime | None
    rates: list[PlanRateOut] = Field(description="The latest rate set for each product.")


class PlanList(BaseModel):
    items: list[PlanOut]


class ApplicationIn(BaseModel):
    model_config = _STRICT

    message: LongText = Field(default="", description="A note to the brand: who you are, what you would show.")


class ReasonIn(BaseModel):
    model_config = _STRICT

    reason: LongText = Field(default="", description="Shown to the other side.")


class RejectIn(BaseModel):
    model_config = _STRICT

    reason: Annotated[LongText, StringConstraints(min_length=1)] = Field(
        description="Why the application is turned down; the creator sees it."
    )


class NextRateOut(BaseModel):
    rate_bps: int
    effective_at: datetime


class CollaborationRateOut(BaseModel):
    product_id: int
    title: str
    rate_bps: int | None = Field(description="In force for this creator now; null if none is yet.")
    next: NextRateOut | None = Field(description="A change already set that reaches this creator later.")


class CollaborationOut(BaseModel):
    id: int
    plan_id: int
    plan_kind: PlanKind
    plan_name: str
    brand_id: int
    brand_name: str
    creator_id: int
    creator_name: str
    status: CollaborationStatus
    message: str
    reason: str
    created_at: datetime
    decided_at: datetime | None
    approved_at: datetime | None
    ended_at: datetime | None
    rates: list[CollaborationRateOut]


class CollaborationList(BaseModel):
    items: list[CollaborationOut]


class CollaborationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: CollaborationStatus | None = None
    brand_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="Only this brand's collaborations.")


class FeeRuleCreate(BaseModel):
    model_config = _STRICT

    bps: int = Field(ge=0, le=2000, description="The fee in basis points of `base`: 200 is 2%.")
    base: FeeBase
    effective_from: Moment = Field(description="From when; at most 5 minutes in the past.")


class FeeRuleOut(BaseModel):
    id: int
    bps: int
    base: FeeBase
    effective_from: datetime
    created_at: datetime


class FeeRuleList(BaseModel):
    items: list[FeeRuleOut] = Field(description="By `effective_from`.")


# --- refunds --------------------------------------------------------------------------------------------------


class RefundIn(BaseModel):
    """Send a fresh `idempotency_key` per refund and the same one on a retry: the retry returns (and finishes)
    the same refund instead of giving more back."""

    model_config = _STRICT

    amount_minor: Annotated[int, Field(ge=1, le=10**14)] | None = Field(
        default=None, description="How much to give back, in minor units; omitted: all that is left."
    )
    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    reason: LongText = ""


class RefundOut(BaseModel):
    id: int
    order_id: int
    amount_minor: int
    currency: str
    reason: str
    status: RefundStatus = Field(description="`pending` until the provider gave the money back and it is posted.")
    created_at: datetime
    completed_at: datetime | None
    note: str | None = Field(
        default=None, description="Set when the order used a voucher: the voucher is not returned by a refund."
    )


class RefundList(BaseModel):
    items: list[RefundOut] = Field(description="Oldest first.")
