"""The seeded world's campaign and vouchers (`seed_world` calls `seed_vouchers`), through the domain layer.

campaign: admin's, USD, budget 100 000, running from a minute ago for a week. seller_voucher: brand's, 200 off
sale_product. platform_voucher: co-funded under campaign for brand (10% capped at 500, the platform's share 50%),
allotted 10 000. ended_voucher: brand's, ended (only its managers see it).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.vouchers import VoucherDraft
from livecommerce.database import session_factory
from livecommerce.models import Funding, Role, VoucherKind

__all__ = ["seed_vouchers"]


async def seed_vouchers(engine: AsyncEngine, ids: dict[str, int]) -> None:
    admin = Principal(ids["admin"], Role.ADMIN)
    staff = Principal(ids["staff"], Role.BRAND_STAFF, ids["brand"])
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=1), now + timedelta(days=7)
    async with session_factory(engine).begin() as session:
        campaign = await vouchers.create_campaign(
            session, admin, name="Campaign", currency="USD", budget_minor=100_000, starts_at=start, ends_at=end
        )
        ids["campaign"] = campaign.campaign.id
        amount = VoucherDraft(title="200 off", kind=VoucherKind.AMOUNT, amount_minor=200, starts_at=start,
                              ends_at=end, quota=100, product_id=ids["sale_product"])  # fmt: skip
        ids["seller_voucher"] = (await vouchers.create_seller_voucher(session, staff, ids["brand"], amount)).id
        ended = await vouchers.create_seller_voucher(session, staff, ids["brand"], amount)
        ids["ended_voucher"] = (await vouchers.end_voucher(session, staff, ended.id)).id
        percent = VoucherDraft(title="10% off", kind=VoucherKind.PERCENT, percent_bps=1000, cap_minor=500,
                               starts_at=start, ends_at=end, quota=100)  # fmt: skip
        co = await vouchers.create_campaign_voucher(
            session, admin, ids["campaign"], percent, funding=Funding.CO, budget_minor=10_000,
            platform_share_bps=5000, brand_id=ids["brand"],
        )  # fmt: skip
        ids["platform_voucher"] = co.id
