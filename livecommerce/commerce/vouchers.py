"""Campaigns and vouchers: who creates which, their terms, and the rule that a campaign's budget is never
over-allotted.

A *seller* voucher is the brand's own: its staff (and admins) create, change and end it, for one of the brand's
products or all of them; the brand bears the whole discount. *Platform* and *co-funded* vouchers are the
platform's: only admins create them, always under a `Campaign`, each with an allotment (`budget_minor`) of the
campaign's budget from which its claims reserve their worst-case cost (`voucher_price.worst_cost`). A PLATFORM
voucher may name a brand and a product or neither (any brand); a CO voucher names the brand that funds the rest.

The invariant: the allotments of a campaign's vouchers never add up to more than the campaign's budget. Every
change that could break it (a new campaign voucher, a larger allotment, a smaller budget) first locks the
campaign row (`SELECT … FOR UPDATE` on PostgreSQL; on SQLite a no-op write that takes the database's write lock
before anything is read), so concurrent changes are serialised and the sum is read fresh. An allotment may rise
as far as the campaign has unallotted budget, and fall only within its unused part: `used_minor` is what the
voucher's claims hold (reserved and spent, from Redis, passed by the caller; 0 until claims are wired).

A voucher's arithmetic terms (kind, amount, percent, cap, minimum spend, funding) never change once created:
claims already made reserved against them. End it and create another instead. The window, quota, per-buyer
limit, account age and title may change. `voucher_terms` is what the price arithmetic and the claim cache read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.commerce.voucher_price import BPS, VoucherTerms, worst_cost
from livecommerce.errors import Conflict, InvalidRequest, NotFound
from livecommerce.models import Brand, Campaign, Funding, Product, Voucher, VoucherKind, VoucherStatus, utcnow

__all__ = [
    "MAX_ACCOUNT_AGE_DAYS",
    "MAX_MINOR",
    "MAX_QUOTA",
    "CampaignView",
    "VoucherDraft",
    "create_campaign",
    "create_campaign_voucher",
    "create_seller_voucher",
    "end_campaign",
    "end_voucher",
    "get_campaign",
    "get_voucher",
    "list_brand_vouchers",
    "list_campaign_vouchers",
    "list_campaigns",
    "may_manage_voucher",
    "update_campaign",
    "update_voucher",
    "voucher_terms",
]

MAX_MINOR: Final = 10**12  # the largest amount, cap, spend or budget, in minor units
MAX_QUOTA: Final = 10**9
MAX_ACCOUNT_AGE_DAYS: Final = 3650
_ADMINS = "admins"
_UPDATABLE: Final = frozenset(
    {"title", "starts_at", "ends_at", "quota", "per_buyer_limit", "min_account_age_days", "budget_minor"}
)


@dataclass(frozen=True, slots=True)
class CampaignView:
    campaign: Campaign
    allotted_minor: int  # Σ budget_minor of its vouchers

    @property
    def unallotted_minor(self) -> int:
        return self.campaign.budget_minor - self.allotted_minor


@dataclass(frozen=True, slots=True)
class VoucherDraft:
    """The terms every voucher has, as a caller gives them (checked by `_check_draft`)."""

    title: str
    kind: VoucherKind
    starts_at: datetime
    ends_at: datetime
    quota: int
    amount_minor: int | None = None  # AMOUNT only
    percent_bps: int | None = None  # PERCENT only
    cap_minor: int | None = None  # PERCENT only
    min_spend_minor: int = 0
    per_buyer_limit: int = 1
    min_account_age_days: int = 0
    product_id: int | None = None


def voucher_terms(voucher: Voucher) -> VoucherTerms:
    """What the price arithmetic needs of a voucher."""
    return VoucherTerms(
        voucher_id=voucher.id,
        kind=voucher.kind,
        amount_minor=voucher.amount_minor,
        percent_bps=voucher.percent_bps,
        cap_minor=voucher.cap_minor,
        min_spend_minor=voucher.min_spend_minor,
        platform_share_bps=voucher.platform_share_bps,
        currency=voucher.currency,
    )


def _invalid(field: str, message: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, errors=[{"field": field, "message": message}])


def _in_range(field: str, value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise _invalid(f"body.{field}", f"must be {low}-{high}", f"{field} is {value}; {what} is {low}-{high}")


def _check_window(starts_at: datetime, ends_at: datetime, *, now: datetime) -> None:
    if ends_at <= starts_at:
        raise _invalid("body.ends_at", "must be after starts_at", "ends_at must be after starts_at; give a later end")
    if ends_at <= now:
        raise _invalid("body.ends_at", "must be in the future", "ends_at is in the past; give an end from now on")


def _check_in_campaign(campaign: Campaign, draft: VoucherDraft) -> None:
    if draft.starts_at < campaign.starts_at or draft.ends_at > campaign.ends_at:
        raise _invalid(
            "body.ends_at" if draft.ends_at > campaign.ends_at else "body.starts_at", "outside the campaign",
            f"campaign {campaign.id} runs {campaign.starts_at.isoformat()} to {campaign.ends_at.isoformat()}; a "
            "voucher's window must lie within it: change the voucher's or the campaign's",
        )  # fmt: skip


# --- who ------------------------------------------------------------------------------------------------------


def may_manage_voucher(who: Principal, voucher: Voucher) -> bool:
    """Seller vouchers: the brand's staff and admins. Platform and co-funded vouchers: admins."""
    if voucher.funding is Funding.SELLER:
        assert voucher.brand_id is not None  # a CHECK says so
        return may_manage_brand(who, voucher.brand_id)
    return who.is_admin


def _visible(voucher: Voucher, who: Principal, now: datetime) -> bool:
    """Anyone sees an active voucher that has not ended; its managers see every one."""
    return may_manage_voucher(who, voucher) or (voucher.status is VoucherStatus.ACTIVE and voucher.ends_at > now)


# --- campaigns ------------------------------------------------------------------------------------------------


async def _allotted(session: AsyncSession, campaign_ids: Sequence[int]) -> dict[int, int]:
    if not campaign_ids:
        return {}
    query = (
        select(Voucher.campaign_id, func.coalesce(func.sum(Voucher.budget_minor), 0))
        .where(Voucher.campaign_id.in_(campaign_ids))
        .group_by(Voucher.campaign_id)
    )
    return {row[0]: int(row[1]) for row in (await session.execute(query)).all() if row[0] is not None}


async def _view(session: AsyncSession, campaign: Campaign) -> CampaignView:
    return CampaignView(campaign, (await _allotted(session, [campaign.id])).get(campaign.id, 0))


async def _lock_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    """The campaign, its row locked for the rest of the transaction (see the module docstring)."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(update(Campaign).where(Campaign.id == campaign_id).values(id=Campaign.id))
    query = select(Campaign).where(Campaign.id == campaign_id).with_for_update()
    campaign = await session.scalar(query.execution_options(populate_existing=True))
    if campaign is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    return campaign


async def create_campaign(
    session: AsyncSession,
    who: Principal,
    *,
    name: str,
    currency: str,
    budget_minor: int,
    starts_at: datetime,
    ends_at: datetime,
) -> CampaignView:
    require(who, who.is_admin, "create campaigns", _ADMINS)
    assert who.user_id is not None
    _in_range("budget_minor", budget_minor, 0, MAX_MINOR, "a campaign budget, in minor units,")
    now = utcnow()
    _check_window(starts_at, ends_at, now=now)
    campaign = Campaign(
        name=name, currency=currency, budget_minor=budget_minor, starts_at=starts_at, ends_at=ends_at,
        status=VoucherStatus.ACTIVE, created_by=who.user_id, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(campaign)
    await session.flush()
    return CampaignView(campaign, 0)


async def list_campaigns(session: AsyncSession, who: Principal) -> list[CampaignView]:
    require(who, who.is_admin, "see campaigns", _ADMINS)
    campaigns = list((await session.scalars(select(Campaign).order_by(Campaign.id))).all())
    allotted = await _allotted(session, [c.id for c in campaigns])
    return [CampaignView(c, allotted.get(c.id, 0)) for c in campaigns]


async def get_campaign(session: AsyncSession, who: Principal, campaign_id: int) -> CampaignView:
    require(who, who.is_admin, "see campaigns", _ADMINS)
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    return await _view(session, campaign)


async def update_campaign(
    session: AsyncSession, who: Principal, campaign_id: int, changes: dict[str, Any]
) -> CampaignView:
    """Change `name`, `budget_minor` (never below what is allotted), `starts_at`, `ends_at` (keys absent or
    None are left as they are)."""
    require(who, who.is_admin, "change campaigns", _ADMINS)
    campaign = await _lock_campaign(session, campaign_id)
    if campaign.status is VoucherStatus.ENDED:
        raise Conflict(f"campaign {campaign_id} has ended; create a new campaign instead")
    changes = {k: v for k, v in changes.items() if v is not None}
    view = await _view(session, campaign)
    budget = changes.get("budget_minor", campaign.budget_minor)
    _in_range("budget_minor", budget, 0, MAX_MINOR, "a campaign budget, in minor units,")
    if budget < view.allotted_minor:
        raise Conflict(
            f"campaign {campaign_id} has {view.allotted_minor} allotted to its vouchers; its budget cannot go below "
            "that: lower the vouchers' allotments first"
        )
    starts_at = changes.get("starts_at", campaign.starts_at)
    ends_at = changes.get("ends_at", campaign.ends_at)
    if "starts_at" in changes or "ends_at" in changes:
        _check_window(starts_at, ends_at, now=utcnow())
        await _keeps_its_vouchers(session, campaign, starts_at, ends_at)
    for key in ("name", "budget_minor", "starts_at", "ends_at"):
        if key in changes:
            setattr(campaign, key, changes[key])
    await session.flush()
    return view if not changes else CampaignView(campaign, view.allotted_minor)


async def _keeps_its_vouchers(
    session: AsyncSession, campaign: Campaign, starts_at: datetime, ends_at: datetime
) -> None:
    """A campaign's window always holds its vouchers' windows."""
    query = select(func.min(Voucher.starts_at), func.max(Voucher.ends_at)).where(Voucher.campaign_id == campaign.id)
    first, last = (await session.execute(query)).one()
    if first is not None and (starts_at > first or ends_at < last):
        raise Conflict(
            f"campaign {campaign.id}'s vouchers run from {first.isoformat()} to {last.isoformat()}; its window must "
            "still hold them: change the vouchers' windows first"
        )


async def end_campaign(session: AsyncSession, who: Principal, campaign_id: int) -> CampaignView:
    """End the campaign and every voucher under it: no new claims."""
    require(who, who.is_admin, "end campaigns", _ADMINS)
    campaign = await _lock_campaign(session, campaign_id)
    if campaign.status is VoucherStatus.ENDED:
        raise Conflict(f"campaign {campaign_id} has already ended")
    campaign.status = VoucherStatus.ENDED
    now = utcnow()
    await session.execute(
        update(Voucher)
        .where(Voucher.campaign_id == campaign_id, Voucher.status == VoucherStatus.ACTIVE)
        .values(status=VoucherStatus.ENDED, updated_at=now)
    )
    await session.flush()
    return await _view(session, campaign)


# --- creating vouchers ----------------------------------------------------------------------------------------


def _arithmetic(draft: VoucherDraft) -> tuple[int, int, int]:
    """(amount_minor, percent_bps, cap_minor) as stored, checked against the kind."""
    if draft.kind is VoucherKind.AMOUNT:
        if draft.amount_minor is None:
            raise _invalid("body.amount_minor", "required for kind amount", "an amount voucher needs amount_minor")
        if draft.percent_bps is not None or draft.cap_minor is not None:
            field = "body.percent_bps" if draft.percent_bps is not None else "body.cap_minor"
            raise _invalid(field, "only for kind percent", f"{field[5:]} is for percent vouchers; leave it out")
        _in_range("amount_minor", draft.amount_minor, 1, MAX_MINOR, "the amount off, in minor units,")
        return draft.amount_minor, 0, draft.amount_minor
    if draft.percent_bps is None or draft.cap_minor is None:
        field = "body.percent_bps" if draft.percent_bps is None else "body.cap_minor"
        raise _invalid(field, "required for kind percent", "a percent voucher needs percent_bps and cap_minor")
    if draft.amount_minor is not None:
        raise _invalid("body.amount_minor", "only for kind amount", "amount_minor is for amount vouchers")
    _in_range("percent_bps", draft.percent_bps, 1, BPS, "the share off, in basis points (10000 is 100%),")
    _in_range("cap_minor", draft.cap_minor, 1, MAX_MINOR, "the most a percent voucher takes off, in minor units,")
    return 0, draft.percent_bps, draft.cap_minor


def _check_limits(draft: VoucherDraft) -> None:
    _in_range("min_spend_minor", draft.min_spend_minor, 0, MAX_MINOR, "the minimum spend, in minor units,")
    _in_range("quota", draft.quota, 1, MAX_QUOTA, "the number of claims")
    _in_range("per_buyer_limit", draft.per_buyer_limit, 1, draft.quota, "claims per buyer (at most the quota)")
    _in_range("min_account_age_days", draft.min_account_age_days, 0, MAX_ACCOUNT_AGE_DAYS, "the account age in days")


async def _product_of(session: AsyncSession, product_id: int, brand_id: int | None) -> Product:
    product = await session.get(Product, product_id)
    if product is None:
        raise _invalid("body.product_id", "no such product", f"no product with id {product_id}")
    if brand_id is not None and product.brand_id != brand_id:
        raise _invalid(
            "body.product_id",
            "belongs to another brand",
            f"product {product_id} belongs to brand {product.brand_id}, not brand {brand_id}; a voucher is for the "
            "brand's own products",
        )
    return product


def _new_voucher(
    who: Principal, draft: VoucherDraft, *, currency: str, funding: Funding, share_bps: int, brand_id: int | None,
    campaign_id: int | None, budget_minor: int,
) -> Voucher:  # fmt: skip
    assert who.user_id is not None
    amount, percent, cap = _arithmetic(draft)
    now = utcnow()
    return Voucher(
        title=draft.title, kind=draft.kind, amount_minor=amount, percent_bps=percent, cap_minor=cap,
        min_spend_minor=draft.min_spend_minor, currency=currency, starts_at=draft.starts_at, ends_at=draft.ends_at,
        quota=draft.quota, per_buyer_limit=draft.per_buyer_limit, min_account_age_days=draft.min_account_age_days,
        funding=funding, platform_share_bps=share_bps, brand_id=brand_id, product_id=draft.product_id,
        campaign_id=campaign_id, budget_minor=budget_minor, status=VoucherStatus.ACTIVE, created_by=who.user_id,
        created_at=now, updated_at=now,
    )  # fmt: skip


async def create_seller_voucher(
    session: AsyncSession, who: Principal, brand_id: int, draft: VoucherDraft, *, currency: str | None = None
) -> Voucher:
    """A brand's own voucher, for one of its products (`draft.product_id`) or all of them. `currency` defaults to
    the product's; a brand-wide voucher must name it."""
    require(who, may_manage_brand(who, brand_id), "create the brand's vouchers", "the brand's staff and admins")
    if await session.get(Brand, brand_id) is None:
        raise NotFound(f"no brand with id {brand_id}")
    _arithmetic(draft)
    _check_limits(draft)
    _check_window(draft.starts_at, draft.ends_at, now=utcnow())
    if draft.product_id is not None:
        product = await _product_of(session, draft.product_id, brand_id)
        if currency is not None and currency != product.currency:
            raise _invalid(
                "body.currency", "must be the product's", f"product {product.id} is priced in {product.currency}, "
                f"not {currency}; leave currency out or give {product.currency}",
            )  # fmt: skip
        currency = product.currency
    if currency is None:
        raise _invalid("body.currency", "required without product_id", "a voucher for all products names a currency")
    voucher = _new_voucher(
        who, draft, currency=currency, funding=Funding.SELLER, share_bps=0, brand_id=brand_id, campaign_id=None,
        budget_minor=0,
    )  # fmt: skip
    session.add(voucher)
    await session.flush()
    return voucher


def _share(funding: Funding, platform_share_bps: int | None) -> int:
    if funding is Funding.SELLER:
        raise _invalid(
            "body.funding", "seller vouchers belong to a brand", "a campaign voucher is funded by the platform "
            "(platform) or by both (co); a seller voucher is created under its brand",
        )  # fmt: skip
    if funding is Funding.PLATFORM:
        if platform_share_bps not in (None, BPS):
            raise _invalid("body.platform_share_bps", "must be 10000", "a platform voucher is 100% the platform's")
        return BPS
    if platform_share_bps is None:
        raise _invalid("body.platform_share_bps", "required for co", "a co-funded voucher needs platform_share_bps")
    _in_range("platform_share_bps", platform_share_bps, 1, BPS - 1, "the platform's share of a co-funded voucher")
    return platform_share_bps


async def _campaign_brand(
    session: AsyncSession, funding: Funding, brand_id: int | None, product_id: int | None
) -> int | None:
    if brand_id is not None and await session.get(Brand, brand_id) is None:
        raise _invalid("body.brand_id", "no such brand", f"no brand with id {brand_id}")
    if product_id is not None:
        product = await _product_of(session, product_id, brand_id)
        brand_id = product.brand_id
    if funding is Funding.CO and brand_id is None:
        raise _invalid("body.brand_id", "required for co", "a co-funded voucher names the brand that funds the rest")
    return brand_id


async def create_campaign_voucher(
    session: AsyncSession,
    who: Principal,
    campaign_id: int,
    draft: VoucherDraft,
    *,
    funding: Funding,
    budget_minor: int,
    platform_share_bps: int | None = None,
    brand_id: int | None = None,
) -> Voucher:
    """A platform or co-funded voucher under a campaign, allotted `budget_minor` of the campaign's budget."""
    require(who, who.is_admin, "create platform vouchers", _ADMINS)
    share = _share(funding, platform_share_bps)
    _arithmetic(draft)
    _check_limits(draft)
    _check_window(draft.starts_at, draft.ends_at, now=utcnow())
    campaign = await _lock_campaign(session, campaign_id)
    if campaign.status is VoucherStatus.ENDED:
        raise Conflict(f"campaign {campaign_id} has ended; it takes no new vouchers")
    _check_in_campaign(campaign, draft)
    brand = await _campaign_brand(session, funding, brand_id, draft.product_id)
    if draft.product_id is not None:
        product = await _product_of(session, draft.product_id, brand)
        if product.currency != campaign.currency:
            raise _invalid(
                "body.product_id", "another currency", f"product {product.id} is priced in {product.currency}; "
                f"campaign {campaign_id} is in {campaign.currency}",
            )  # fmt: skip
    voucher = _new_voucher(
        who, draft, currency=campaign.currency, funding=funding, share_bps=share, brand_id=brand,
        campaign_id=campaign_id, budget_minor=0,
    )  # fmt: skip
    cost = worst_cost(voucher_terms(voucher))
    _in_range("budget_minor", budget_minor, cost, MAX_MINOR, f"the allotment (at least one claim's worst cost, {cost})")
    await _check_allotment(session, campaign, budget_minor)
    voucher.budget_minor = budget_minor
    session.add(voucher)
    await session.flush()
    return voucher


async def _check_allotment(
    session: AsyncSession, campaign: Campaign, allotment: int, *, voucher_id: int | None = None
) -> None:
    """Refuse an allotment of `allotment` to a new voucher (or to voucher `voucher_id`, replacing its own) when
    the campaign, locked by the caller, has less free. The other vouchers' sum is read after the lock."""
    query = select(func.coalesce(func.sum(Voucher.budget_minor), 0)).where(Voucher.campaign_id == campaign.id)
    if voucher_id is not None:
        query = query.where(Voucher.id != voucher_id)
    free = campaign.budget_minor - int(await session.scalar(query) or 0)
    if allotment <= free:
        return
    if voucher_id is None:
        raise Conflict(
            f"campaign {campaign.id} has {free} of its budget {campaign.budget_minor} unallotted; allot at most "
            "that, or raise the campaign's budget first"
        )
    raise Conflict(
        f"campaign {campaign.id} can allot voucher {voucher_id} at most {free} of its budget "
        f"{campaign.budget_minor} (what is unallotted plus the voucher's own); raise the campaign's budget first"
    )


# --- reading, changing and ending vouchers --------------------------------------------------------------------


async def _load(session: AsyncSession, voucher_id: int) -> Voucher:
    voucher = await session.get(Voucher, voucher_id)
    if voucher is None:
        raise NotFound(f"no voucher with id {voucher_id}")
    return voucher


async def _load_locked(session: AsyncSession, voucher_id: int) -> Voucher:
    """The voucher, its row locked, and its campaign's first (campaign before voucher, in every change, so two
    changes never wait for each other's locks). Its `campaign_id` never changes, so it may be read first."""
    campaign_id = await session.scalar(select(Voucher.campaign_id).where(Voucher.id == voucher_id))
    if campaign_id is not None:
        await _lock_campaign(session, campaign_id)
    query = select(Voucher).where(Voucher.id == voucher_id).with_for_update()
    voucher = await session.scalar(query.execution_options(populate_existing=True))
    if voucher is None:
        raise NotFound(f"no voucher with id {voucher_id}")
    return voucher


async def get_voucher(session: AsyncSession, who: Principal, voucher_id: int) -> Voucher:
    """Anyone may read an active voucher; ended ones only its managers (`may_manage_voucher`)."""
    voucher = await _load(session, voucher_id)
    if not _visible(voucher, who, utcnow()):
        raise NotFound(f"no voucher with id {voucher_id} that you can see")
    return voucher


async def list_brand_vouchers(session: AsyncSession, who: Principal, brand_id: int) -> list[Voucher]:
    """The vouchers that apply to the brand's products (its own, and campaign vouchers naming it): every one
    for its managers, the active ones for everyone else."""
    if await session.get(Brand, brand_id) is None:
        raise NotFound(f"no brand with id {brand_id}")
    query = select(Voucher).where(Voucher.brand_id == brand_id).order_by(Voucher.id)
    now = utcnow()
    return [v for v in (await session.scalars(query)).all() if _visible(v, who, now)]


async def list_campaign_vouchers(session: AsyncSession, who: Principal, campaign_id: int) -> list[Voucher]:
    require(who, who.is_admin, "see campaigns", _ADMINS)
    if await session.get(Campaign, campaign_id) is None:
        raise NotFound(f"no campaign with id {campaign_id}")
    query = select(Voucher).where(Voucher.campaign_id == campaign_id).order_by(Voucher.id)
    return list((await session.scalars(query)).all())


async def _change_allotment(session: AsyncSession, voucher: Voucher, budget: int, used_minor: int) -> None:
    """With the campaign locked (`_load_locked`): up within what the campaign has free, down to what is used."""
    if budget == voucher.budget_minor:
        return
    if voucher.campaign_id is None:
        raise _invalid("body.budget_minor", "seller vouchers have none", "a seller voucher has no campaign budget")
    if budget < used_minor:
        raise Conflict(
            f"voucher {voucher.id}'s claims hold {used_minor} of its allotment; it can fall only within the unused "
            f"part: to {used_minor} at the least"
        )
    campaign = await session.get(Campaign, voucher.campaign_id)
    assert campaign is not None
    await _check_allotment(session, campaign, budget, voucher_id=voucher.id)


async def update_voucher(
    session: AsyncSession, who: Principal, voucher_id: int, changes: dict[str, Any], *, used_minor: int = 0
) -> Voucher:
    """Change the window, quota, limits, title or (campaign vouchers) allotment; keys absent or None are left
    as they are. `used_minor`: what the voucher's claims hold of its allotment now (reserved + spent)."""
    voucher = await _load_locked(session, voucher_id)
    require(who, may_manage_voucher(who, voucher), "change this voucher", _managers(voucher))
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise _invalid(f"body.{unknown[0]}", "cannot change", f"{unknown[0]} never changes: end the voucher and "
                       "create another")  # fmt: skip
    if voucher.status is VoucherStatus.ENDED:
        raise Conflict(f"voucher {voucher_id} has ended; create a new one instead")
    changes = {k: v for k, v in changes.items() if v is not None}
    draft = VoucherDraft(
        title=changes.get("title", voucher.title), kind=voucher.kind,
        starts_at=changes.get("starts_at", voucher.starts_at), ends_at=changes.get("ends_at", voucher.ends_at),
        quota=changes.get("quota", voucher.quota), min_spend_minor=voucher.min_spend_minor,
        per_buyer_limit=changes.get("per_buyer_limit", voucher.per_buyer_limit),
        min_account_age_days=changes.get("min_account_age_days", voucher.min_account_age_days),
    )  # fmt: skip
    _check_limits(draft)
    if "starts_at" in changes or "ends_at" in changes:
        _check_window(draft.starts_at, draft.ends_at, now=utcnow())
        await _within_campaign(session, voucher, draft)
    if "budget_minor" in changes:
        _in_range("budget_minor", changes["budget_minor"], 0, MAX_MINOR, "the allotment, in minor units,")
        await _change_allotment(session, voucher, changes["budget_minor"], used_minor)
    for key, value in changes.items():
        setattr(voucher, key, value)
    await session.flush()
    return voucher


async def _within_campaign(session: AsyncSession, voucher: Voucher, draft: VoucherDraft) -> None:
    if voucher.campaign_id is None:
        return
    campaign = await session.get(Campaign, voucher.campaign_id)
    assert campaign is not None
    _check_in_campaign(campaign, draft)


def _managers(voucher: Voucher) -> str:
    return "the brand's staff and admins" if voucher.funding is Funding.SELLER else _ADMINS


async def end_voucher(session: AsyncSession, who: Principal, voucher_id: int) -> Voucher:
    """No new claims; claims already made keep their terms until they are used or expire."""
    voucher = await _load_locked(session, voucher_id)
    require(who, may_manage_voucher(who, voucher), "end this voucher", _managers(voucher))
    if voucher.status is VoucherStatus.ENDED:
        raise Conflict(f"voucher {voucher_id} has already ended")
    voucher.status = VoucherStatus.ENDED
    await session.flush()
    return voucher
