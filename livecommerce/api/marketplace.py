"""The creator marketplace routes: commission plans and their rates, collaborations, platform fee rules.

Thin mappings onto `commerce.collaborations` and `commerce.fees`, which hold every rule. A change to what a
creator may sell, at which rate or under which fee drops the cached room offers once it has committed
(`Buying.forget_offers`), so the next hold snapshots the new terms. Its router is listed in `api/routes.py`.
"""

from __future__ import annotations

from datetime import timedelta

from livecommerce.api import schemas as s
from livecommerce.api.routing import Call, Router
from livecommerce.commerce import collaborations as collab
from livecommerce.commerce import fees
from livecommerce.commerce.buying import BUYING
from livecommerce.models import FeeRule

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

_WRITE = (400, 401, 403, 404, 409, 413, 415, 422)
_ACTION = (401, 403, 404, 409)
_PLAN_READERS = "signed-in users: the brand's staff and admins every plan, others open plans and plans offered to them"
_COLLAB_READERS = "its creator, the brand's staff, admins"
_MANAGERS = "the brand's staff, admins"
_STATES = "409 `conflict` when the collaboration is not in the state the action starts from (the detail says its state)"


def _forget_offers(call: Call) -> None:
    """After the commit: room offers are looked up again, so new holds carry the new terms."""
    buying = call.request.app[BUYING]

    async def forget() -> None:
        buying.forget_offers()

    call.on_commit(forget)


def _lock(call: Call) -> timedelta:
    return timedelta(days=call.settings.commission_lock_days)


def _plan_rate(rate: collab.PlanRateView) -> s.PlanRateOut:
    product, latest = rate.product, rate.latest
    return s.PlanRateOut(
        product_id=product.id, title=product.title, price_minor=product.price_minor, currency=product.currency,
        rate_bps=latest.rate_bps, set_at=latest.set_at, effective_at=latest.effective_at,
    )  # fmt: skip


def _plan(view: collab.PlanView) -> s.PlanOut:
    plan = view.plan
    rates = [_plan_rate(r) for r in view.rates]
    return s.PlanOut(
        id=plan.id, brand_id=plan.brand_id, brand_name=view.brand_name, kind=plan.kind, name=plan.name,
        created_at=plan.created_at, ended_at=plan.ended_at, rates=rates,
    )  # fmt: skip


def _collaboration(view: collab.CollaborationView) -> s.CollaborationOut:
    c = view.collaboration
    rates = [
        s.CollaborationRateOut(
            product_id=r.product.id,
            title=r.product.title,
            rate_bps=r.rate_bps,
            next=None if r.next is None else s.NextRateOut(rate_bps=r.next.rate_bps, effective_at=r.next.effective_at),
        )
        for r in view.rates
    ]
    return s.CollaborationOut(
        id=c.id, plan_id=c.plan_id, plan_kind=view.plan.kind, plan_name=view.plan.name, brand_id=c.brand_id,
        brand_name=view.brand_name, creator_id=c.creator_id, creator_name=view.creator_name, status=c.status,
        message=c.message, reason=c.reason, created_at=c.created_at, decided_at=c.decided_at,
        approved_at=c.approved_at, ended_at=c.ended_at, rates=rates,
    )  # fmt: skip


def _fee_rule(rule: FeeRule) -> s.FeeRuleOut:
    return s.FeeRuleOut(
        id=rule.id, bps=rule.bps, base=rule.base, effective_from=rule.effective_from, created_at=rule.created_at
    )


# --- plans ----------------------------------------------------------------------------------------------------


@route("POST", "/brands/{brand_id}/plans", summary="Create a commission plan (open, or targeted at named hosts)",
       access=_MANAGERS, tag="marketplace", body=s.PlanCreate, response=s.PlanOut, status=201, errors=_WRITE,
       notes="409 `conflict` when the brand already has its one open plan (the detail names it). A targeted plan "
             "creates an `offered` collaboration for each of `creator_ids` (each an active host).")  # fmt: skip
async def create_plan(call: Call, brand_id: int, body: s.PlanCreate) -> s.PlanOut:
    view = await collab.create_plan(
        call.session, call.who, brand_id, kind=body.kind, name=body.name,
        rates=[(r.product_id, r.rate_bps) for r in body.rates], creator_ids=body.creator_ids,
    )  # fmt: skip
    _forget_offers(call)
    return _plan(view)


@route("GET", "/brands/{brand_id}/plans", summary="A brand's commission plans", access=_PLAN_READERS,
       tag="marketplace", response=s.PlanList, errors=(401, 404))  # fmt: skip
async def list_brand_plans(call: Call, brand_id: int) -> s.PlanList:
    return s.PlanList(items=[_plan(v) for v in await collab.list_brand_plans(call.session, call.who, brand_id)])


@route("GET", "/plans", summary="Every brand's open plan: what creators browse to apply",
       access="signed-in users", tag="marketplace", response=s.PlanList, errors=(401,))  # fmt: skip
async def list_open_plans(call: Call) -> s.PlanList:
    return s.PlanList(items=[_plan(v) for v in await collab.list_open_plans(call.session, call.who)])


@route("GET", "/plans/{plan_id}", summary="A commission plan", access=_PLAN_READERS, tag="marketplace",
       response=s.PlanOut, errors=(401, 404))  # fmt: skip
async def get_plan(call: Call, plan_id: int) -> s.PlanOut:
    return _plan(await collab.get_plan(call.session, call.who, plan_id))


@route("PUT", "/plans/{plan_id}/rates/{product_id}", summary="Set a product's commission rate in a plan",
       access="the plan's brand staff, admins", tag="marketplace", body=s.RateSet, response=s.RateOut,
       errors=_WRITE,
       notes="A raise reaches every creator at once. A cut reaches creators already approved only after the lock "
             "period (`effective_at`); creators approved after it get it at once. Every change is kept.")  # fmt: skip
async def set_rate(call: Call, plan_id: int, product_id: int, body: s.RateSet) -> s.RateOut:
    product, change = await collab.set_rate(
        call.session, call.who, plan_id, product_id, body.rate_bps, lock=_lock(call)
    )
    _forget_offers(call)
    return s.RateOut(
        product_id=product.id, rate_bps=change.rate_bps, set_at=change.set_at, effective_at=change.effective_at
    )


# --- collaborations -------------------------------------------------------------------------------------------


@route("POST", "/plans/{plan_id}/applications", summary="Apply to a brand's open plan",
       access="hosts", tag="marketplace", body=s.ApplicationIn, response=s.CollaborationOut, status=201,
       errors=_WRITE,
       notes="409 `conflict` for a targeted or ended plan, or when you already have a collaboration with the plan "
             "that is not rejected or ended (applying again after those reopens it).")  # fmt: skip
async def apply(call: Call, plan_id: int, body: s.ApplicationIn) -> s.CollaborationOut:
    return _collaboration(await collab.apply(call.session, call.who, plan_id, body.message))


@route("GET", "/collaborations", summary="Collaborations you are part of",
       access="signed-in users: creators their own, brand staff their brand's, admins all", tag="marketplace",
       query=s.CollaborationQuery, response=s.CollaborationList, errors=(401, 422))  # fmt: skip
async def list_collaborations(call: Call, query: s.CollaborationQuery) -> s.CollaborationList:
    views = await collab.list_collaborations(call.session, call.who, status=query.status, brand_id=query.brand_id)
    return s.CollaborationList(items=[_collaboration(v) for v in views])


@route("GET", "/collaborations/{collaboration_id}", summary="A collaboration and its rates for the creator",
       access=_COLLAB_READERS, tag="marketplace", response=s.CollaborationOut, errors=(401, 404))  # fmt: skip
async def get_collaboration(call: Call, collaboration_id: int) -> s.CollaborationOut:
    return _collaboration(await collab.get_collaboration(call.session, call.who, collaboration_id))


@route("POST", "/collaborations/{collaboration_id}/approve", summary="Approve an application: the creator may sell",
       access=_MANAGERS, tag="marketplace", response=s.CollaborationOut, errors=_ACTION,
       notes=_STATES + " (`applied`).")  # fmt: skip
async def approve_collaboration(call: Call, collaboration_id: int) -> s.CollaborationOut:
    view = await collab.approve(call.session, call.who, collaboration_id)
    _forget_offers(call)
    return _collaboration(view)


@route("POST", "/collaborations/{collaboration_id}/reject", summary="Turn an application down, with a reason",
       access=_MANAGERS, tag="marketplace", body=s.RejectIn, response=s.CollaborationOut, errors=_WRITE,
       notes=_STATES + " (`applied`).")  # fmt: skip
async def reject_collaboration(call: Call, collaboration_id: int, body: s.RejectIn) -> s.CollaborationOut:
    return _collaboration(await collab.reject(call.session, call.who, collaboration_id, body.reason))


@route("POST", "/collaborations/{collaboration_id}/accept", summary="Accept a targeted offer: you may sell",
       access="the creator it was offered to", tag="marketplace", response=s.CollaborationOut, errors=_ACTION,
       notes=_STATES + " (`offered`).")  # fmt: skip
async def accept_collaboration(call: Call, collaboration_id: int) -> s.CollaborationOut:
    view = await collab.accept(call.session, call.who, collaboration_id)
    _forget_offers(call)
    return _collaboration(view)


@route("POST", "/collaborations/{collaboration_id}/decline", summary="Decline a targeted offer",
       access="the creator it was offered to", tag="marketplace", body=s.ReasonIn, response=s.CollaborationOut,
       errors=_WRITE, notes=_STATES + " (`offered`).")  # fmt: skip
async def decline_collaboration(call: Call, collaboration_id: int, body: s.ReasonIn) -> s.CollaborationOut:
    return _collaboration(await collab.decline(call.session, call.who, collaboration_id, body.reason))


@route("POST", "/collaborations/{collaboration_id}/end", summary="End a collaboration: no new sales under it",
       access="its creator, the brand's staff, admins", tag="marketplace", body=s.ReasonIn,
       response=s.CollaborationOut, errors=_WRITE,
       notes=_STATES + " (`approved`). Orders already made keep their terms.")  # fmt: skip
async def end_collaboration(call: Call, collaboration_id: int, body: s.ReasonIn) -> s.CollaborationOut:
    view = await collab.end(call.session, call.who, collaboration_id, body.reason)
    _forget_offers(call)
    return _collaboration(view)


# --- platform fee ---------------------------------------------------------------------------------------------


@route("GET", "/fee-rules", summary="The platform fee rules, past and scheduled", access="admins",
       tag="marketplace", response=s.FeeRuleList, errors=(401, 403))  # fmt: skip
async def list_fee_rules(call: Call) -> s.FeeRuleList:
    return s.FeeRuleList(items=[_fee_rule(r) for r in await fees.list_rules(call.session, call.who)])


@route("POST", "/fee-rules", summary="Set the platform fee from a moment on", access="admins", tag="marketplace",
       body=s.FeeRuleCreate, response=s.FeeRuleOut, status=201, errors=(400, 401, 403, 413, 415, 422),
       notes="Applies from `effective_from` until a later rule starts; each order keeps the rule it sold "
             "under.")  # fmt: skip
async def create_fee_rule(call: Call, body: s.FeeRuleCreate) -> s.FeeRuleOut:
    rule = await fees.create_rule(
        call.session, call.who, bps=body.bps, base=body.base, effective_from=body.effective_from
    )
    _forget_offers(call)
    return _fee_rule(rule)
