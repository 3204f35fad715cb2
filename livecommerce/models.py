"""SQLAlchemy models: the SQL system of record.

Storage only: no HTTP, no authorisation. The same models run on SQLite and PostgreSQL; `UTCDateTime` makes
timestamps timezone-aware UTC on both. Changes to this file need an Alembic migration
(`livecommerce/migrations/versions/`); a test fails when models and migrations disagree.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "AccountStatus",
    "Base",
    "Brand",
    "Campaign",
    "Collaboration",
    "CollaborationStatus",
    "CommissionPlan",
    "FeeBase",
    "FeeRule",
    "FlashSale",
    "Funding",
    "LedgerAccount",
    "LedgerLine",
    "Order",
    "OrderStatus",
    "PlanKind",
    "PlanRate",
    "PostingKind",
    "Product",
    "Refund",
    "RefundStatus",
    "Role",
    "Room",
    "RoomStatus",
    "RoomVisibility",
    "SaleAudience",
    "SaleCode",
    "SaleStatus",
    "User",
    "Voucher",
    "VoucherKind",
    "VoucherStatus",
    "sale_invites",
    "sale_rooms",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC: SQLite keeps no time zone, PostgreSQL's `timestamp` neither."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Role(enum.StrEnum):
    VIEWER = "viewer"
    HOST = "host"
    BRAND_STAFF = "brand_staff"
    ADMIN = "admin"


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"  # can be reinstated
    DELETED = "deleted"  # anonymised for good; the row stays so orders keep their buyer


class RoomStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


class RoomVisibility(enum.StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class SaleAudience(enum.StrEnum):
    OPEN = "open"
    INVITE_LIST = "invite_list"
    INVITE_CODES = "invite_codes"


class SaleStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class OrderStatus(enum.StrEnum):
    HELD = "held"
    PAID = "paid"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # a paid order refunded stays paid: `refunded_minor` says how much went back


class PlanKind(enum.StrEnum):
    OPEN = "open"  # any creator the brand approves gets its rates
    TARGETED = "targeted"  # offered to named creators, whose rates override the open plan's for them


class CollaborationStatus(enum.StrEnum):
    APPLIED = "applied"  # a creator asked to join an open plan; the brand decides
    OFFERED = "offered"  # the brand offered a targeted plan; the creator decides
    APPROVED = "approved"  # the creator sells the plan's products in their rooms
    REJECTED = "rejected"  # the brand said no to an application (with a reason)
    DECLINED = "declined"  # the creator said no to an offer
    ENDED = "ended"  # no new sales; paid orders stay as they were


class FeeBase(enum.StrEnum):
    """What the platform fee is a share of."""

    BUYER_PAID = "buyer_paid"
    BUYER_PAID_PLUS_DISCOUNT = "buyer_paid_plus_discount"


class PostingKind(enum.StrEnum):
    SALE = "sale"
    REFUND = "refund"


class LedgerAccount(enum.StrEnum):
    """The accounts of one posting. Funding lines are negative, shares positive: every posting sums to 0, so
    `buyer_paid + platform_discount = brand_net + creator_commission + platform_fee` (a refund posts the same
    accounts with the signs turned)."""

    BUYER_PAID = "buyer_paid"
    PLATFORM_DISCOUNT = "platform_discount"
    BRAND_NET = "brand_net"
    CREATOR_COMMISSION = "creator_commission"
    PLATFORM_FEE = "platform_fee"
    # A memo pair when the brand's own vouchers took part of the price off (migration 0007): `seller_discount`
    # (funding, negative) and `brand_discount` (the brand's cost of it, positive); they sum to 0 by themselves.
    SELLER_DISCOUNT = "seller_discount"
    BRAND_DISCOUNT = "brand_discount"


class RefundStatus(enum.StrEnum):
    PENDING = "pending"  # recorded; the provider is being asked (a retry or the worker finishes it)
    DONE = "done"  # refunded by the provider and posted to the ledger


class VoucherKind(enum.StrEnum):
    AMOUNT = "amount"  # a fixed amount off
    PERCENT = "percent"  # a share of the price off, up to a cap


class Funding(enum.StrEnum):
    """Who bears a voucher's discount: the seller (brand), the platform (from a campaign budget), or both."""

    SELLER = "seller"
    PLATFORM = "platform"
    CO = "co"  # the platform funds `platform_share_bps` of it, the seller the rest


class VoucherStatus(enum.StrEnum):
    """Of vouchers and campaigns: an ended one takes no new claims (claims already made keep their terms)."""

    ACTIVE = "active"
    ENDED = "ended"


_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _enum(cls: type[enum.StrEnum], name: str, length: int = 16) -> Enum:
    """Enums stored as short strings with a CHECK constraint: portable, and readable in SQL."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=length,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Brand(Base):
    __tablename__ = "brands"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # `name.casefold()`: uniqueness ignoring case the same way on every backend (SQL lower() differs).
    name_key: Mapped[str] = mapped_column(String(480), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    """A person. Never removed: a deleted account is anonymised in place, so orders keep their buyer."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("(role = 'brand_staff') = (brand_id IS NOT NULL)", name="staff_has_brand"),
        CheckConstraint("(status = 'deleted') = (deleted_at IS NOT NULL)", name="deleted_has_time"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"), index=True)
    status: Mapped[AccountStatus] = mapped_column(
        _enum(AccountStatus, "account_status"), default=AccountStatus.ACTIVE, server_default=AccountStatus.ACTIVE.value
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("brand_id", "sku", name="uq_products_brand_sku"),
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("units_sold >= 0", name="units_sold_not_negative"),
        Index("ix_products_brand_id_id", "brand_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    sku: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str | None] = mapped_column(String(2048))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int] = mapped_column(Integer)
    # Raised by the order writer; a product that has sold cannot be deleted (orders refer to it).
    units_sold: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    brand: Mapped[Brand] = relationship(lazy="raise")


room_brands = Table(
    "room_brands",
    Base.metadata,
    Column("room_id", ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("brand_id", ForeignKey("brands.id", ondelete="RESTRICT"), primary_key=True, index=True),
)


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (Index("ix_rooms_status_scheduled_start", "status", "scheduled_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    visibility: Mapped[RoomVisibility] = mapped_column(_enum(RoomVisibility, "room_visibility"))
    status: Mapped[RoomStatus] = mapped_column(_enum(RoomStatus, "room_status"), default=RoomStatus.SCHEDULED)
    scheduled_start: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    host: Mapped[User] = relationship(lazy="raise")
    brands: Mapped[list[Brand]] = relationship(secondary=room_brands, lazy="raise", order_by=Brand.id)

    @property
    def brand_ids(self) -> frozenset[int]:
        """The featured brands' ids (`brands` must be loaded), as the room rules read them (`rooms.RoomFacts`)."""
        return frozenset(brand.id for brand in self.brands)


sale_rooms = Table(
    "sale_rooms",
    Base.metadata,
    Column("sale_id", ForeignKey("flash_sales.id", ondelete="CASCADE"), primary_key=True),
    Column("room_id", ForeignKey("rooms.id", ondelete="RESTRICT"), primary_key=True, index=True),
)

sale_invites = Table(
    "sale_invites",
    Base.metadata,
    Column("sale_id", ForeignKey("flash_sales.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True, index=True),
)


class FlashSale(Base):
    """A quantity of one product sold at a sale price in a time window, in some rooms, to some audience.

    Scheduling takes `quantity` out of `products.stock` (the allocation); finalising gives back what was not
    paid for (`returned_units`). `version` rises with every change the Redis copy of the sale must follow.
    """

    __tablename__ = "flash_sales"
    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("per_buyer_limit >= 1 AND per_buyer_limit <= quantity", name="per_buyer_limit_in_range"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("hold_seconds >= 30 AND hold_seconds <= 3600", name="hold_seconds_in_range"),
        CheckConstraint("version >= 1", name="version_positive"),
        CheckConstraint("units_paid >= 0 AND units_paid <= quantity", name="units_paid_in_range"),
        Index("ix_flash_sales_brand_id_id", "brand_id", "id"),
        Index("ix_flash_sales_status_starts_at", "status", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    price_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))  # the product's, copied when the sale is created
    quantity: Mapped[int] = mapped_column(Integer)
    per_buyer_limit: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    hold_seconds: Mapped[int] = mapped_column(Integer, default=300)
    audience: Mapped[SaleAudience] = mapped_column(_enum(SaleAudience, "sale_audience"), default=SaleAudience.OPEN)
    status: Mapped[SaleStatus] = mapped_column(_enum(SaleStatus, "sale_status"), default=SaleStatus.DRAFT)
    version: Mapped[int] = mapped_column(Integer, default=1)
    units_paid: Mapped[int] = mapped_column(Integer, default=0)
    returned_units: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finalised_at: Mapped[datetime | None]

    rooms: Mapped[list[Room]] = relationship(secondary=sale_rooms, lazy="raise", order_by=Room.id)


class SaleCode(Base):
    """A single-use invite code of a sale. `redeemed_hold` is set by the order writer when a hold uses it."""

    __tablename__ = "sale_codes"
    __table_args__ = (UniqueConstraint("sale_id", "code", name="uq_sale_codes_sale_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # only for keyset pages
    sale_id: Mapped[int] = mapped_column(ForeignKey("flash_sales.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    redeemed_hold: Mapped[str | None] = mapped_column(String(40))


class Order(Base):
    """One order per hold (`hold_id` is unique: replaying the outbox can never write a second one)."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price_minor >= 0", name="unit_price_not_negative"),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
        Index("ix_orders_buyer_id_id", "buyer_id", "id"),
        Index("ix_orders_brand_id_id", "brand_id", "id"),
        # Partial: only orders that used a voucher pay for an entry (the writer's cost per order stays as it was);
        # a voucher's history is read from them when Redis must load it again (`VoucherLive`).
        Index(
            "ix_orders_seller_voucher_id",
            "seller_voucher_id",
            postgresql_where=text("seller_voucher_id IS NOT NULL"),
            sqlite_where=text("seller_voucher_id IS NOT NULL"),
        ),
        Index(
            "ix_orders_platform_voucher_id",
            "platform_voucher_id",
            postgresql_where=text("platform_voucher_id IS NOT NULL"),
            sqlite_where=text("platform_voucher_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hold_id: Mapped[str] = mapped_column(String(40), unique=True)
    pool: Mapped[str] = mapped_column(String(24))  # "s12" (a flash sale's) or "p7" (a product's own)
    sale_id: Mapped[int | None] = mapped_column(ForeignKey("flash_sales.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id", ondelete="RESTRICT"))
    buyer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[OrderStatus] = mapped_column(_enum(OrderStatus, "order_status"))
    payment_ref: Mapped[str | None] = mapped_column(String(64))
    held_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Attribution, as the hold snapshotted it (`commerce.terms.SaleTerms`): never recomputed. No foreign keys
    # on the snapshot: a record of what was true is never refused (a paid order must always be written), and
    # each would cost the order writer a lookup per row. Users, collaborations and fee rules are never deleted.
    creator_id: Mapped[int | None] = mapped_column(Integer, index=True)
    collaboration_id: Mapped[int | None] = mapped_column(Integer)
    commission_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fee_rule_id: Mapped[int | None] = mapped_column(Integer)
    fee_bps: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    fee_base: Mapped[FeeBase] = mapped_column(
        _enum(FeeBase, "fee_base", 32), default=FeeBase.BUYER_PAID, server_default=FeeBase.BUYER_PAID.value
    )
    platform_discount_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Vouchers, as the hold applied them (`commerce.voucher_price.Price`): `total_minor` stays the goods value,
    # `platform_discount_minor` the platform-funded part of both vouchers, `seller_discount_minor` the seller's.
    # Snapshots without foreign keys, like the attribution above.
    seller_discount_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    seller_voucher_id: Mapped[int | None] = mapped_column(Integer)
    platform_voucher_id: Mapped[int | None] = mapped_column(Integer)
    seller_claim_id: Mapped[str | None] = mapped_column(String(40))
    platform_claim_id: Mapped[str | None] = mapped_column(String(40))

    @property
    def buyer_paid_minor(self) -> int:
        """What the buyer was charged: the goods value less both vouchers' discounts."""
        return self.total_minor - self.seller_discount_minor - self.platform_discount_minor


class FeeRule(Base):
    """The platform fee from `effective_from` on, until a later rule starts; each order snapshots its rule."""

    __tablename__ = "fee_rules"
    __table_args__ = (CheckConstraint("bps >= 0 AND bps <= 2000", name="bps_in_range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bps: Mapped[int] = mapped_column(Integer)
    base: Mapped[FeeBase] = mapped_column(_enum(FeeBase, "fee_base", 32))
    effective_from: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class CommissionPlan(Base):
    """A brand's commission offer: its one open plan (`open_brand_id` = the brand: unique), or a targeted plan
    offered to named creators. Rates per product are `PlanRate` rows."""

    __tablename__ = "commission_plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[PlanKind] = mapped_column(_enum(PlanKind, "plan_kind"))
    name: Mapped[str] = mapped_column(String(120))
    open_brand_id: Mapped[int | None] = mapped_column(Integer, unique=True)  # brand_id when kind is open
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class PlanRate(Base):
    """One change of a product's commission rate in a plan; rows are only added (the history is the audit).

    `effective_at` is when the rate reaches creators already approved when it was set: at once for a raise,
    after the lock period for a cut. Creators approved later get it from their approval on."""

    __tablename__ = "plan_rates"
    __table_args__ = (
        CheckConstraint("rate_bps >= 100 AND rate_bps <= 8000", name="rate_in_range"),
        Index("ix_plan_rates_plan_id_product_id", "plan_id", "product_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("commission_plans.id", ondelete="RESTRICT"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    rate_bps: Mapped[int] = mapped_column(Integer)
    set_at: Mapped[datetime]
    effective_at: Mapped[datetime]
    set_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class Collaboration(Base):
    """A creator working with a brand under one plan: applied/offered → approved → ended (or rejected/declined)."""

    __tablename__ = "collaborations"
    __table_args__ = (
        UniqueConstraint("plan_id", "creator_id", name="uq_collaborations_plan_creator"),
        Index("ix_collaborations_creator_id_status", "creator_id", "status"),
        Index("ix_collaborations_brand_id_status", "brand_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("commission_plans.id", ondelete="RESTRICT"))
    brand_id: Mapped[int] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    status: Mapped[CollaborationStatus] = mapped_column(_enum(CollaborationStatus, "collaboration_status"))
    message: Mapped[str] = mapped_column(Text, default="")  # the creator's application note
    reason: Mapped[str] = mapped_column(Text, default="")  # why the brand rejected or ended it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Refund(Base):
    """Money given back on a paid order, in full or in part; `key` makes a retry the same refund."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("order_id", "key", name="uq_refunds_order_key"),
        CheckConstraint("amount_minor >= 1", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[RefundStatus] = mapped_column(_enum(RefundStatus, "refund_status"))
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    provider_ref: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]


class LedgerLine(Base):
    """One line of the double-entry money ledger, in minor units. Append-only: a database trigger refuses any
    UPDATE (corrections are new lines). `(posting, account)` is unique, so posting again writes nothing.

    A posting is one order's sale (`sale:<hold id>`) or one refund (`refund:<refund id>`); its lines sum to 0."""

    __tablename__ = "ledger_lines"
    __table_args__ = (
        UniqueConstraint("posting", "account", name="uq_ledger_lines_posting_account"),
        Index("ix_ledger_lines_brand_id_posted_at", "brand_id", "posted_at"),
        Index("ix_ledger_lines_creator_id_posted_at", "creator_id", "posted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    posting: Mapped[str] = mapped_column(String(64))
    kind: Mapped[PostingKind] = mapped_column(_enum(PostingKind, "posting_kind"))
    account: Mapped[LedgerAccount] = mapped_column(_enum(LedgerAccount, "ledger_account", 32))
    # No foreign key (migration 0006): the writer posts a sale in its order's own transaction, from the id the
    # INSERT returned, and orders are never deleted; the check cost the writer a third of its throughput.
    order_id: Mapped[int] = mapped_column(Integer, index=True)
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id", ondelete="RESTRICT"))
    # Copies of the order's (checked there): a foreign key each would cost the writer a lookup per line.
    brand_id: Mapped[int] = mapped_column(Integer)
    creator_id: Mapped[int | None] = mapped_column(Integer)
    room_id: Mapped[int | None] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    posted_at: Mapped[datetime]


class Campaign(Base):
    """A platform budget for vouchers: `budget_minor` caps what its vouchers may be allotted in total."""

    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint("length(name) >= 1", name="name_not_empty"),
        CheckConstraint("budget_minor >= 0", name="budget_not_negative"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    budget_minor: Mapped[int] = mapped_column(BigInteger)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[VoucherStatus] = mapped_column(_enum(VoucherStatus, "campaign_status"), default=VoucherStatus.ACTIVE)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


_VOUCHER_KIND = (
    "(kind = 'amount' AND amount_minor >= 1 AND percent_bps = 0 AND cap_minor = amount_minor) OR "
    "(kind = 'percent' AND amount_minor = 0 AND percent_bps >= 1 AND percent_bps <= 10000 AND cap_minor >= 1)"
)
_VOUCHER_FUNDING = (
    "(funding = 'seller' AND platform_share_bps = 0 AND campaign_id IS NULL AND budget_minor = 0 "
    "AND brand_id IS NOT NULL) OR "
    "(funding = 'platform' AND platform_share_bps = 10000 AND campaign_id IS NOT NULL) OR "
    "(funding = 'co' AND platform_share_bps >= 1 AND platform_share_bps <= 9999 AND campaign_id IS NOT NULL "
    "AND brand_id IS NOT NULL)"
)


class Voucher(Base):
    """An amount or percent off, claimable by buyers, funded by the seller, the platform or both.

    SELLER vouchers belong to a brand (`campaign_id` null, `budget_minor` 0). PLATFORM and CO vouchers draw the
    platform's part from a campaign: `budget_minor` is what the campaign allotted to this voucher (claims reserve
    their worst-case cost from it), and the allotments of a campaign never add up to more than its budget.
    `brand_id` null (PLATFORM only) means any brand; `product_id` null means any of the brand's products."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("length(title) >= 1", name="title_not_empty"),
        CheckConstraint(_VOUCHER_KIND, name="kind_terms"),
        CheckConstraint("min_spend_minor >= 0", name="min_spend_not_negative"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        CheckConstraint("quota >= 1", name="quota_positive"),
        CheckConstraint("per_buyer_limit >= 1", name="per_buyer_limit_positive"),
        CheckConstraint("min_account_age_days >= 0", name="account_age_not_negative"),
        CheckConstraint(_VOUCHER_FUNDING, name="funding_terms"),
        CheckConstraint("budget_minor >= 0", name="budget_not_negative"),
        CheckConstraint("product_id IS NULL OR brand_id IS NOT NULL", name="product_has_brand"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(120))
    kind: Mapped[VoucherKind] = mapped_column(_enum(VoucherKind, "voucher_kind"))
    amount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    percent_bps: Mapped[int] = mapped_column(Integer, default=0)
    cap_minor: Mapped[int] = mapped_column(BigInteger)
    min_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    quota: Mapped[int] = mapped_column(Integer)
    per_buyer_limit: Mapped[int] = mapped_column(Integer, default=1)
    min_account_age_days: Mapped[int] = mapped_column(Integer, default=0)
    funding: Mapped[Funding] = mapped_column(_enum(Funding, "funding"))
    platform_share_bps: Mapped[int] = mapped_column(Integer)
    brand_id: Mapped[int | None] = mapped_column(ForeignKey("brands.id", ondelete="RESTRICT"), index=True)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id", ondelete="RESTRICT"), index=True)
    budget_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[VoucherStatus] = mapped_column(_enum(VoucherStatus, "voucher_status"), default=VoucherStatus.ACTIVE)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
