"""Campaign and voucher routes: thin mappings onto `commerce.vouchers`, which holds every rule.

Admins run campaigns and their platform and co-funded vouchers; a brand's staff its seller vouchers. Anyone may
read an active voucher's public terms; its managers also see its campaign, allotment and worst cost per claim.
Its router is listed in `api/routes.py`.
"""

from __future__ import annotations

from livecommerce.api import voucher_schemas as s
from livecommerce.api.routing import Call, Router
from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.voucher_live import VOUCHERS
from livecommerce.commerce.voucher_price import worst_cost
from livecommerce.commerce.voucher_store import Budget
from livecommerce.models import Voucher

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

_WRITE = (400, 401, 403, 404, 409, 413, 415, 422)
_ACTION = (401, 403, 404, 409)
_SELLER = "seller vouchers: the brand's staff and admins; platform and co-funded vouchers: admins"
_IMMUTABLE = ("The arithmetic (kind, amount, percent, cap, minimum spend, funding) never changes: claims reserved "
              "against it. End the voucher and create another.")  # fmt: skip


def _campaign(view: vouchers.CampaignView) -> s.CampaignOut:
    c = view.campaign
    return s.CampaignOut(
        id=c.id, name=c.name, currency=c.currency, budget_minor=c.budget_minor, allotted_minor=view.allotted_minor,
        unallotted_minor=view.unallotted_minor, starts_at=c.starts_at, ends_at=c.ends_at, status=c.status,
        created_at=c.created_at, updated_at=c.updated_at,
    )  # fmt: skip


def _voucher(v: Voucher, who: Principal) -> s.VoucherOut:
    manager = vouchers.may_manage_voucher(who, v)
    return s.VoucherOut(
        id=v.id, title=v.title, kind=v.kind, amount_minor=v.amount_minor, percent_bps=v.percent_bps,
        cap_minor=v.cap_minor, min_spend_minor=v.min_spend_minor, currency=v.currency, starts_at=v.starts_at,
        ends_at=v.ends_at, quota=v.quota, per_buyer_limit=v.per_buyer_limit,
        min_account_age_days=v.min_account_age_days, funding=v.funding, platform_share_bps=v.platform_share_bps,
        brand_id=v.brand_id, product_id=v.product_id, status=v.status,
        campaign_id=v.campaign_id if manager else None, budget_minor=v.budget_minor if manager else None,
        worst_cost_minor=worst_cost(vouchers.voucher_terms(v)) if manager else None,
        created_at=v.created_at, updated_at=v.updated_at,
    )  # fmt: skip


def _live(budgets: list[Budget | None]) -> s.LiveBudgetOut | None:
    """The live figures of one budget, or the sum of several (a campaign's vouchers; None: none loaded)."""
    found = [b for b in budgets if b is not None]
    if not found:
        return None
    return s.LiveBudgetOut(
        funded_minor=sum(b.funded for b in found), reserved_minor=sum(b.reserved for b in found),
        spent_minor=sum(b.spent for b in found), free_minor=sum(b.free for b in found),
        claimed=sum(b.claimed for b in found),
    )  # fmt: skip


async def _with_budget(call: Call, out: s.VoucherOut) -> s.VoucherOut:
    """A manager's view of one voucher gains its live budget figures from Redis."""
    if out.budget_minor is None:  # not a manager
        return out
    return out.model_copy(update={"live": _live([await call.request.app[VOUCHERS].budget(out.id)])})


def _reload_after_commit(call: Call, voucher_id: int) -> None:
    """Once the change commits, Redis follows it (load, update or close the voucher)."""
    live = call.request.app[VOUCHERS]
    call.on_commit(lambda: live.reload(voucher_id))


def _draft(body: s.SellerVoucherCreate | s.CampaignVoucherCreate) -> vouchers.VoucherDraft:
    return vouchers.VoucherDraft(
        title=body.title, kind=body.kind, starts_at=body.starts_at, ends_at=body.ends_at, quota=body.quota,
        amount_minor=body.amount_minor, percent_bps=body.percent_bps, cap_minor=body.cap_minor,
        min_spend_minor=body.min_spend_minor, per_buyer_limit=body.per_buyer_limit,
        min_account_age_days=body.min_account_age_days, product_id=body.product_id,
    )  # fmt: skip


# --- campaigns ------------------------------------------------------------------------------------------------


@route("POST", "/campaigns", summary="Create a campaign: a platform budget for vouchers", access="admins",
       tag="vouchers", body=s.CampaignCreate, response=s.CampaignOut, status=201,
       errors=(400, 401, 403, 413, 415, 422))  # fmt: skip
async def create_campaign(call: Call, body: s.CampaignCreate) -> s.CampaignOut:
    view = await vouchers.create_campaign(
        call.session, call.who, name=body.name, currency=body.currency, budget_minor=body.budget_minor,
        starts_at=body.starts_at, ends_at=body.ends_at,
    )  # fmt: skip
    return _campaign(view)


@route("GET", "/campaigns", summary="Every campaign and its budget use", access="admins", tag="vouchers",
       response=s.CampaignList, errors=(401, 403))  # fmt: skip
async def list_campaigns(call: Call) -> s.CampaignList:
    return s.CampaignList(items=[_campaign(v) for v in await vouchers.list_campaigns(call.session, call.who)])


@route("GET", "/campaigns/{campaign_id}", summary="A campaign and its budget use", access="admins",
       tag="vouchers", response=s.CampaignOut, errors=(401, 403, 404))  # fmt: skip
async def get_campaign(call: Call, campaign_id: int) -> s.CampaignOut:
    out = _campaign(await vouchers.get_campaign(call.session, call.who, campaign_id))
    found = await vouchers.list_campaign_vouchers(call.session, call.who, campaign_id)
    live = call.request.app[VOUCHERS]
    return out.model_copy(update={"live": _live([await live.budget(v.id) for v in found])})


@route("PATCH", "/campaigns/{campaign_id}", summary="Change a campaign's name, budget or window", access="admins",
       tag="vouchers", body=s.CampaignUpdate, response=s.CampaignOut, errors=_WRITE,
       notes="409 `conflict` when the budget would fall below what is allotted to its vouchers, or the campaign "
             "has ended.")  # fmt: skip
async def update_campaign(call: Call, campaign_id: int, body: s.CampaignUpdate) -> s.CampaignOut:
    changes = body.model_dump(exclude_unset=True)
    return _campaign(await vouchers.update_campaign(call.session, call.who, campaign_id, changes))


@route("POST", "/campaigns/{campaign_id}/end", summary="End a campaign and every voucher under it",
       access="admins", tag="vouchers", response=s.CampaignOut, errors=_ACTION,
       notes="409 `conflict` when it has already ended. Claims already made keep their terms.")  # fmt: skip
async def end_campaign(call: Call, campaign_id: int) -> s.CampaignOut:
    view = await vouchers.end_campaign(call.session, call.who, campaign_id)
    for voucher in await vouchers.list_campaign_vouchers(call.session, call.who, campaign_id):
        _reload_after_commit(call, voucher.id)
    return _campaign(view)


@route("GET", "/campaigns/{campaign_id}/vouchers", summary="A campaign's vouchers", access="admins",
       tag="vouchers", response=s.VoucherList, errors=(401, 403, 404))  # fmt: skip
async def list_campaign_vouchers(call: Call, campaign_id: int) -> s.VoucherList:
    found = await vouchers.list_campaign_vouchers(call.session, call.who, campaign_id)
    return s.VoucherList(items=[_voucher(v, call.who) for v in found])


@route("POST", "/campaigns/{campaign_id}/vouchers", summary="Create a platform or co-funded voucher",
       access="admins", tag="vouchers", body=s.CampaignVoucherCreate, response=s.VoucherOut, status=201,
       errors=_WRITE,
       notes="409 `conflict` when the allotment is more than the campaign has unallotted, or the campaign has "
             "ended. The window must lie within the campaign's; a product must be in the campaign's "
             "currency.")  # fmt: skip
async def create_campaign_voucher(call: Call, campaign_id: int, body: s.CampaignVoucherCreate) -> s.VoucherOut:
    voucher = await vouchers.create_campaign_voucher(
        call.session, call.who, campaign_id, _draft(body), funding=body.funding, budget_minor=body.budget_minor,
        platform_share_bps=body.platform_share_bps, brand_id=body.brand_id,
    )  # fmt: skip
    _reload_after_commit(call, voucher.id)
    return _voucher(voucher, call.who)


# --- vouchers -------------------------------------------------------------------------------------------------


@route("POST", "/brands/{brand_id}/vouchers", summary="Create a seller voucher for the brand's products",
       access="the brand's staff, admins", tag="vouchers", body=s.SellerVoucherCreate, response=s.VoucherOut,
       status=201, errors=_WRITE,
       notes="The brand bears the whole discount. `product_id` must be one of the brand's products.")  # fmt: skip
async def create_seller_voucher(call: Call, brand_id: int, body: s.SellerVoucherCreate) -> s.VoucherOut:
    voucher = await vouchers.create_seller_voucher(
        call.session, call.who, brand_id, _draft(body), currency=body.currency
    )
    _reload_after_commit(call, voucher.id)
    return _voucher(voucher, call.who)


@route("GET", "/brands/{brand_id}/vouchers", summary="The vouchers for a brand's products",
       access="anyone: active vouchers; the brand's staff and admins: every one", tag="vouchers",
       response=s.VoucherList, errors=(404,))  # fmt: skip
async def list_brand_vouchers(call: Call, brand_id: int) -> s.VoucherList:
    found = await vouchers.list_brand_vouchers(call.session, call.who, brand_id)
    return s.VoucherList(items=[_voucher(v, call.who) for v in found])


@route("GET", "/vouchers/{voucher_id}", summary="A voucher's terms",
       access="anyone: an active voucher's public terms; its managers: every voucher, with its budget",
       tag="vouchers", response=s.VoucherOut, errors=(404,))  # fmt: skip
async def get_voucher(call: Call, voucher_id: int) -> s.VoucherOut:
    return await _with_budget(call, _voucher(await vouchers.get_voucher(call.session, call.who, voucher_id), call.who))


@route("PATCH", "/vouchers/{voucher_id}", summary="Change a voucher's window, quota, limits or allotment",
       access=_SELLER, tag="vouchers", body=s.VoucherUpdate, response=s.VoucherOut, errors=_WRITE,
       notes=_IMMUTABLE + " 409 `conflict` when it has ended, or an allotment would exceed the campaign's "
             "unallotted budget or fall below what its claims use.")  # fmt: skip
async def update_voucher(call: Call, voucher_id: int, body: s.VoucherUpdate) -> s.VoucherOut:
    changes = body.model_dump(exclude_unset=True)
    budget = await call.request.app[VOUCHERS].budget(voucher_id)
    used = 0 if budget is None else budget.reserved + budget.spent
    voucher = await vouchers.update_voucher(call.session, call.who, voucher_id, changes, used_minor=used)
    _reload_after_commit(call, voucher_id)
    return _voucher(voucher, call.who)


@route("POST", "/vouchers/{voucher_id}/end", summary="End a voucher: no new claims", access=_SELLER,
       tag="vouchers", response=s.VoucherOut, errors=_ACTION,
       notes="409 `conflict` when it has already ended. Claims already made keep their terms.")  # fmt: skip
async def end_voucher(call: Call, voucher_id: int) -> s.VoucherOut:
    voucher = await vouchers.end_voucher(call.session, call.who, voucher_id)
    _reload_after_commit(call, voucher_id)
    return _voucher(voucher, call.who)
