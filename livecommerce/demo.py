"""Demo data for `livecommerce serve --demo`: a brand, its staff, a host, a viewer, products and a room, the
brand's open commission plan (10% on every product) for the host to apply to, and vouchers for the host to pin:
the brand's own ($3 off from $15) and a platform campaign's co-funded one (10% off up to $5, half each).

Seeding is idempotent: a second start finds the demo users and adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.auth import Principal, TokenSigner
from livecommerce.commerce import collaborations, vouchers
from livecommerce.commerce.vouchers import VoucherDraft
from livecommerce.models import (
    Brand,
    Funding,
    PlanKind,
    Product,
    Role,
    Room,
    RoomStatus,
    RoomVisibility,
    User,
    VoucherKind,
    utcnow,
)

__all__ = ["DemoUser", "seed_demo"]

_BRAND = "Aurora Beauty"
_USERS = (
    ("admin@demo.livecommerce.dev", "Ada Admin", Role.ADMIN),
    ("host@demo.livecommerce.dev", "Mia Host", Role.HOST),
    ("brand@demo.livecommerce.dev", "Ben Brand", Role.BRAND_STAFF),
    ("viewer@demo.livecommerce.dev", "Vic Viewer", Role.VIEWER),
)
_DEMO_RATE_BPS = 1000  # the open plan's commission: 10%
_PRODUCTS = (
    ("AUR-LIP-01", "Velvet Matte Lipstick — Rose", 1899, 500),
    ("AUR-SER-02", "Vitamin C Glow Serum 30 ml", 3450, 200),
    ("AUR-PAL-03", "Sunset Eyeshadow Palette", 4200, 120),
)


@dataclass(frozen=True, slots=True)
class DemoUser:
    email: str
    role: Role
    token: str


async def seed_demo(sessions: async_sessionmaker[AsyncSession], signer: TokenSigner) -> tuple[list[DemoUser], int]:
    """Create the demo data if absent; return the demo users with fresh tokens, and the demo room's id."""
    async with sessions.begin() as session:
        brand = await session.scalar(select(Brand).where(Brand.name == _BRAND))
        created = brand is None
        if brand is None:
            brand = Brand(
                name=_BRAND, name_key=_BRAND.casefold(), description="Clean beauty, live.", created_at=utcnow()
            )
            session.add(brand)
            await session.flush()
            now = utcnow()
            for sku, title, price, stock in _PRODUCTS:
                session.add(Product(brand_id=brand.id, sku=sku, title=title, description="", image_url=None,
                                    price_minor=price, currency="USD", stock=stock, units_sold=0,
                                    created_at=now, updated_at=now))  # fmt: skip
        users = []
        for email, name, role in _USERS:
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                user = User(email=email, display_name=name, role=role, created_at=utcnow(),
                            brand_id=brand.id if role is Role.BRAND_STAFF else None)  # fmt: skip
                session.add(user)
                await session.flush()
            users.append(user)
        host = users[1]
        if created:
            products = (await session.scalars(select(Product.id).where(Product.brand_id == brand.id))).all()
            await collaborations.create_plan(
                session, Principal(users[0].id, Role.ADMIN), brand.id, kind=PlanKind.OPEN, name="Aurora creators",
                rates=[(product_id, _DEMO_RATE_BPS) for product_id in products], creator_ids=[],
            )  # fmt: skip
            await _seed_vouchers(session, Principal(users[0].id, Role.ADMIN), brand.id)
        room = await session.scalar(
            select(Room).where(Room.host_id == host.id, Room.status != RoomStatus.ENDED).order_by(Room.id)
        )
        if room is None:
            room = Room(title="Glow-up Friday: live beauty deals", host_id=host.id,
                        visibility=RoomVisibility.PUBLIC, status=RoomStatus.SCHEDULED,
                        scheduled_start=utcnow() + timedelta(minutes=10), created_at=utcnow(),
                        brands=[brand])  # fmt: skip
            session.add(room)
            await session.flush()
        demo = [DemoUser(u.email, u.role, signer.issue(u.id, u.role, u.brand_id)) for u in users]
        return demo, room.id


async def _seed_vouchers(session: AsyncSession, admin: Principal, brand_id: int) -> None:
    """The brand's $3-off voucher and a month-long platform campaign with a co-funded 10% voucher (Redis loads
    them when the host first pins one)."""
    now = utcnow()
    month = now + timedelta(days=30)
    await vouchers.create_seller_voucher(
        session, admin, brand_id,
        VoucherDraft(title="Aurora: $3 off from $15", kind=VoucherKind.AMOUNT, starts_at=now, ends_at=month,
                     quota=1000, amount_minor=300, min_spend_minor=1500),
        currency="USD",
    )  # fmt: skip
    campaign = await vouchers.create_campaign(
        session, admin, name="Holiday LIVE deals", currency="USD", budget_minor=50_000, starts_at=now, ends_at=month
    )
    await vouchers.create_campaign_voucher(
        session, admin, campaign.campaign.id,
        VoucherDraft(title="Holiday: 10% off up to $5", kind=VoucherKind.PERCENT, starts_at=now, ends_at=month,
                     quota=500, percent_bps=1000, cap_minor=500),
        funding=Funding.CO, budget_minor=25_000, platform_share_bps=5000, brand_id=brand_id,
    )  # fmt: skip
