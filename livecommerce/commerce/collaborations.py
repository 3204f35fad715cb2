"""Commission plans and collaborations: which creator may sell a brand's products, and at what rate.

A brand has at most one *open* plan (any creator it approves gets its rates) and any number of *targeted* plans
(offered to named hosts; their rates override the open plan's for those creators). A creator's standing with a
plan is one `Collaboration` row: applied (open plans) or offered (targeted) → approved → ended, or rejected /
declined. Rates are `PlanRate` rows, only ever appended: the history is the audit and decides what is in force.

The rate rule (`rate_in_force`, pure, so it can be tested with explicit times): a creator gets the best of the
plan's rate now and of the rates it replaced within the lock period before (since their approval). So a raise
reaches everyone at once; a cut reaches creators already approved only after the lock period (`effective_at`),
while a creator approved after the cut gets it from their approval on. `terms_for` is what a room offer snapshots into
`SaleTerms`: it is read at the moment of the hold and never again for that sale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.commerce.terms import MAX_COMMISSION_BPS, MIN_COMMISSION_BPS
from livecommerce.errors import Conflict, InvalidRequest, NotFound
from livecommerce.models import (
    AccountStatus,
    Brand,
    Collaboration,
    CollaborationStatus,
    CommissionPlan,
    PlanKind,
    PlanRate,
    Product,
    Role,
    User,
    utcnow,
)

__all__ = [
    "CollaborationRate",
    "CollaborationView",
    "CreatorTerms",
    "PlanRateView",
    "PlanView",
    "RateChange",
    "accept",
    "apply",
    "approve",
    "create_plan",
    "decline",
    "end",
    "get_collaboration",
    "get_plan",
    "list_brand_plans",
    "list_collaborations",
    "list_open_plans",
    "next_change",
    "rate_in_force",
    "reject",
    "set_rate",
    "starts_at",
    "terms_for",
]

_Status = CollaborationStatus


# --- the rate rule (pure) -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateChange:
    """One `PlanRate` row as the rule sees it."""

    rate_bps: int
    set_at: datetime
    effective_at: datetime


def _floors(history: Sequence[RateChange], at: datetime, approved_at: datetime | None) -> list[RateChange]:
    """The changes whose rate this creator is owed at `at`: the plan's rate now, and every rate it replaced
    whose protection has not run out (until the replacing change's `effective_at`) and which was in force at
    some moment since the creator's approval (None: approved before every change)."""
    made = [c for c in history if c.set_at <= at]
    owed = []
    for i, change in enumerate(made):
        successor = made[i + 1] if i + 1 < len(made) else None
        if successor is None or (
            successor.set_at > change.set_at  # a rate replaced in the same instant was never in force
            and at < successor.effective_at
            and (approved_at is None or approved_at < successor.set_at)
        ):
            owed.append(change)
    return owed


def rate_in_force(
    history: Iterable[RateChange], *, at: datetime, approved_at: datetime | None = None
) -> RateChange | None:
    """The change whose rate a creator approved at `approved_at` (None: approved before every change, the
    longest-standing creator) gets at `at`: the best of the plan's rate now and of every rate it replaced
    that still protects them — a cut's `effective_at` is the lock period after it, a raise's is at once — and
    that was in force at some moment since their approval. So a raise reaches everyone at once (even during a
    pending cut, and even one still below the rate the cut replaced: it then applies when that protection
    ends), a cut reaches creators already approved only after the lock, a creator approved after a cut gets
    it at once, and no creator ever gets a rate the plan replaced before they joined. `history` in the order the
    changes were made; on equal rates, the latest-set."""
    best: RateChange | None = None
    for change in _floors(list(history), at, approved_at):
        if best is None or change.rate_bps >= best.rate_bps:
            best = change
    return best


def next_change(history: Sequence[RateChange], *, at: datetime, approved_at: datetime | None) -> RateChange | None:
    """The rate this creator gets next and when (`effective_at`): None when nothing set by `at` changes it.
    Their rate can only change when a protection runs out, so only those moments are looked at."""
    now = rate_in_force(history, at=at, approved_at=approved_at)
    ends = sorted({c.effective_at for c in history if c.set_at <= at < c.effective_at})
    for when in ends:
        then = rate_in_force(history, at=when, approved_at=approved_at)
        if then is not None and (now is None or then.rate_bps != now.rate_bps):
            return RateChange(then.rate_bps, then.set_at, when)
    return None


def starts_at(history: Iterable[RateChange], *, rate_bps: int, set_at: datetime, lock: timedelta) -> datetime:
    """The `effective_at` of a new rate set at `set_at`: when the rate it replaces stops protecting creators
    already approved — at once for a raise (or a first rate), after `lock` for a cut below the plan's rate."""
    made = [c for c in history if c.set_at <= set_at]
    if not made or rate_bps >= made[-1].rate_bps:
        return set_at
    return set_at + lock


# --- views ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatorTerms:
    """What a creator earns on one product now: their collaboration and its rate in force."""

    collaboration_id: int
    rate_bps: int


@dataclass(frozen=True, slots=True)
class PlanRateView:
    product: Product
    latest: RateChange  # the last change made, whether or not it is in force yet for everyone


@dataclass(frozen=True, slots=True)
class PlanView:
    plan: CommissionPlan
    brand_name: str
    rates: list[PlanRateView]


@dataclass(frozen=True, slots=True)
class CollaborationRate:
    product: Product
    rate_bps: int | None  # in force for this creator now; None when no rate is in force yet
    next: RateChange | None


@dataclass(frozen=True, slots=True)
class CollaborationView:
    collaboration: Collaboration
    plan: CommissionPlan
    brand_name: str
    creator_name: str
    rates: list[CollaborationRate]


def _invalid(field: str, message: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, errors=[{"field": field, "message": message}])


def _check_rate(rate_bps: int, field: str) -> None:
    if not MIN_COMMISSION_BPS <= rate_bps <= MAX_COMMISSION_BPS:
        raise _invalid(
            field,
            f"must be {MIN_COMMISSION_BPS}-{MAX_COMMISSION_BPS} basis points",
            f"{field} is {rate_bps}; a commission is 1-80%: {MIN_COMMISSION_BPS}-{MAX_COMMISSION_BPS} basis points",
        )


async def _histories(session: AsyncSession, plan_ids: Sequence[int]) -> dict[tuple[int, int], list[RateChange]]:
    """Rate changes by (plan, product), in the order they were made."""
    query = select(PlanRate).where(PlanRate.plan_id.in_(plan_ids)).order_by(PlanRate.id)
    found: dict[tuple[int, int], list[RateChange]] = {}
    for row in (await session.scalars(query)).all():
        found.setdefault((row.plan_id, row.product_id), []).append(
            RateChange(row.rate_bps, row.set_at, row.effective_at)
        )
    return found


async def _products(session: AsyncSession, ids: Iterable[int]) -> dict[int, Product]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {p.id: p for p in (await session.scalars(select(Product).where(Product.id.in_(wanted)))).all()}


async def _names(session: AsyncSession, model: type[Brand] | type[User], ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    if model is Brand:
        rows = await session.execute(select(Brand.id, Brand.name).where(Brand.id.in_(wanted)))
    else:
        rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {row[0]: row[1] for row in rows.all()}


async def _plan_views(session: AsyncSession, plans: Sequence[CommissionPlan]) -> list[PlanView]:
    histories = await _histories(session, [p.id for p in plans])
    products = await _products(session, (product_id for _, product_id in histories))
    brands = await _names(session, Brand, (p.brand_id for p in plans))
    views = []
    for plan in plans:
        rates = [
            PlanRateView(products[product_id], history[-1])
            for (plan_id, product_id), history in sorted(histories.items())
            if plan_id == plan.id
        ]
        views.append(PlanView(plan, brands.get(plan.brand_id, ""), rates))
    return views


async def _collaboration_views(
    session: AsyncSession, collaborations: Sequence[Collaboration], at: datetime
) -> list[CollaborationView]:
    plans = {p.id: p for p in await _plans_by_id(session, {c.plan_id for c in collaborations})}
    histories = await _histories(session, list(plans))
    products = await _products(session, (product_id for _, product_id in histories))
    brands = await _names(session, Brand, (c.brand_id for c in collaborations))
    creators = await _names(session, User, (c.creator_id for c in collaborations))
    views = []
    for c in collaborations:
        approved_at = c.approved_at or at  # not approved yet: what they would get if approved now
        rates = []
        for (plan_id, product_id), history in sorted(histories.items()):
            if plan_id != c.plan_id:
                continue
            now = rate_in_force(history, at=at, approved_at=approved_at)
            later = next_change(history, at=at, approved_at=approved_at)
            rates.append(CollaborationRate(products[product_id], now.rate_bps if now else None, later))
        views.append(
            CollaborationView(c, plans[c.plan_id], brands.get(c.brand_id, ""), creators.get(c.creator_id, ""), rates)
        )
    return views


async def _plans_by_id(session: AsyncSession, ids: Iterable[int]) -> list[CommissionPlan]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list((await session.scalars(select(CommissionPlan).where(CommissionPlan.id.in_(wanted)))).all())


# --- plans ----------------------------------------------------------------------------------------------------


def _offered_to(user_id: int) -> ColumnElement[bool]:
    return exists().where(Collaboration.plan_id == CommissionPlan.id, Collaboration.creator_id == user_id)


def _plan_visible(who: Principal) -> ColumnElement[bool]:
    """Staff see their brand's plans, admins all; every signed-in user the open plans, a creator the targeted
    plans offered to them."""
    if who.is_admin:
        return CommissionPlan.id.is_not(None)
    seen = [CommissionPlan.kind == PlanKind.OPEN]
    if who.user_id is not None:
        seen.append(_offered_to(who.user_id))
    if who.role is Role.BRAND_STAFF and who.brand_id is not None:
        seen.append(CommissionPlan.brand_id == who.brand_id)
    return or_(*seen)


def _signed_in(who: Principal, action: str) -> None:
    require(who, who.authenticated, action, "signed-in users")


async def _load_plan(session: AsyncSession, who: Principal, plan_id: int) -> CommissionPlan:
    _signed_in(who, "see commission plans")
    plan = await session.scalar(select(CommissionPlan).where(CommissionPlan.id == plan_id, _plan_visible(who)))
    if plan is None:
        raise NotFound(f"no commission plan with id {plan_id} that you can see")
    return plan


async def get_plan(session: AsyncSession, who: Principal, plan_id: int) -> PlanView:
    return (await _plan_views(session, [await _load_plan(session, who, plan_id)]))[0]


async def list_brand_plans(session: AsyncSession, who: Principal, brand_id: int) -> list[PlanView]:
    """The brand's plans the caller may see (its staff and admins: all, ended ones too)."""
    _signed_in(who, "see commission plans")
    if await session.get(Brand, brand_id) is None:
        raise NotFound(f"no brand with id {brand_id}")
    query = select(CommissionPlan).where(CommissionPlan.brand_id == brand_id, _plan_visible(who))
    return await _plan_views(session, list((await session.scalars(query.order_by(CommissionPlan.id))).all()))


async def list_open_plans(session: AsyncSession, who: Principal) -> list[PlanView]:
    """Every brand's open plan that has not ended: what creators browse to apply."""
    _signed_in(who, "browse commission plans")
    query = select(CommissionPlan).where(CommissionPlan.kind == PlanKind.OPEN, CommissionPlan.ended_at.is_(None))
    return await _plan_views(session, list((await session.scalars(query.order_by(CommissionPlan.id))).all()))


async def _check_products(session: AsyncSession, brand_id: int, product_ids: Sequence[int]) -> None:
    found = await _products(session, product_ids)
    for index, product_id in enumerate(product_ids):
        product = found.get(product_id)
        if product is None or product.brand_id != brand_id:
            why = "no such product" if product is None else "belongs to another brand"
            raise _invalid(
                f"body.rates.{index}.product_id",
                why,
                f"product {product_id}: {why}; a plan's rates are for its own brand's products",
            )
        if product_ids.index(product_id) != index:
            raise _invalid(
                f"body.rates.{index}.product_id",
                "listed twice",
                f"product {product_id} is listed twice; give one rate per product",
            )


async def _check_hosts(session: AsyncSession, creator_ids: Sequence[int]) -> list[int]:
    unique = sorted(set(creator_ids))
    if len(unique) != len(creator_ids):
        raise _invalid("body.creator_ids", "duplicate ids", "creator_ids lists a creator twice; list each once")
    query = select(User.id).where(User.id.in_(unique), User.role == Role.HOST, User.status == AccountStatus.ACTIVE)
    hosts = set((await session.scalars(query)).all())
    others = [i for i in unique if i not in hosts]
    if others:
        raise _invalid(
            "body.creator_ids",
            f"not active hosts: {others}",
            f"user {', '.join(map(str, others))} is not an active host; a plan is offered to hosts only",
        )
    return unique


async def create_plan(
    session: AsyncSession,
    who: Principal,
    brand_id: int,
    *,
    kind: PlanKind,
    name: str,
    rates: Sequence[tuple[int, int]],
    creator_ids: Sequence[int],
) -> PlanView:
    """A new plan with its first rates (`(product_id, rate_bps)`); a targeted plan is offered to `creator_ids`."""
    if await session.get(Brand, brand_id) is None:
        raise NotFound(f"no brand with id {brand_id}")
    require(
        who, may_manage_brand(who, brand_id), "create this brand's commission plans", "this brand's staff or an admin"
    )
    assert who.user_id is not None
    for index, (_, rate_bps) in enumerate(rates):
        _check_rate(rate_bps, f"body.rates.{index}.rate_bps")
    await _check_products(session, brand_id, [product_id for product_id, _ in rates])
    if kind is PlanKind.OPEN:
        if creator_ids:
            raise _invalid(
                "body.creator_ids",
                "only for targeted plans",
                "an open plan is for any creator; drop creator_ids or make it targeted",
            )
        await _no_open_plan(session, brand_id)
    elif not creator_ids:
        raise _invalid(
            "body.creator_ids",
            "name at least one host",
            "a targeted plan is offered to named hosts; list them in creator_ids",
        )
    hosts = await _check_hosts(session, creator_ids)
    now = utcnow()
    plan = CommissionPlan(
        brand_id=brand_id, kind=kind, name=name, open_brand_id=brand_id if kind is PlanKind.OPEN else None,
        created_by=who.user_id, created_at=now,
    )  # fmt: skip
    session.add(plan)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"brand {brand_id} already has an open plan; change its rates instead") from None
    for product_id, rate_bps in rates:
        session.add(
            PlanRate(
                plan_id=plan.id,
                product_id=product_id,
                rate_bps=rate_bps,
                set_at=now,
                effective_at=now,
                set_by=who.user_id,
            )
        )
    for creator_id in hosts:
        session.add(
            Collaboration(
                plan_id=plan.id,
                brand_id=brand_id,
                creator_id=creator_id,
                status=_Status.OFFERED,
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()
    return (await _plan_views(session, [plan]))[0]


async def _no_open_plan(session: AsyncSession, brand_id: int) -> None:
    existing = await session.scalar(select(CommissionPlan).where(CommissionPlan.open_brand_id == brand_id))
    if existing is not None:
        raise Conflict(
            f"brand {brand_id} already has an open plan, {existing.name!r} (id {existing.id}); a brand has one: "
            f"set its rates with PUT /api/v1/plans/{existing.id}/rates/{{product_id}}, or make a targeted plan"
        )


def _check_running(plan: CommissionPlan) -> None:
    if plan.ended_at is not None:
        raise Conflict(
            f"commission plan {plan.id} ended at {plan.ended_at.isoformat()}; it takes no changes or creators"
        )


async def set_rate(
    session: AsyncSession,
    who: Principal,
    plan_id: int,
    product_id: int,
    rate_bps: int,
    *,
    lock: timedelta,
    at: datetime | None = None,
) -> tuple[Product, RateChange]:
    """Append a rate change: a raise reaches everyone at once, a cut creators already approved after `lock`."""
    plan = await _load_plan(session, who, plan_id)
    require(who, may_manage_brand(who, plan.brand_id), "set this plan's rates", "the plan's brand staff or an admin")
    assert who.user_id is not None
    _check_running(plan)
    _check_rate(rate_bps, "body.rate_bps")
    product = await session.get(Product, product_id)
    if product is None:
        raise NotFound(f"no product with id {product_id}")
    if product.brand_id != plan.brand_id:
        raise NotFound(
            f"product {product_id} is not one of brand {plan.brand_id}'s products; a plan has rates only for its "
            "own brand's products"
        )
    now = at or utcnow()
    history = (await _histories(session, [plan.id])).get((plan.id, product_id), [])
    change = RateChange(rate_bps, now, starts_at(history, rate_bps=rate_bps, set_at=now, lock=lock))
    session.add(
        PlanRate(
            plan_id=plan.id,
            product_id=product_id,
            rate_bps=rate_bps,
            set_at=change.set_at,
            effective_at=change.effective_at,
            set_by=who.user_id,
        )
    )
    await session.flush()
    return product, change


# --- collaborations -------------------------------------------------------------------------------------------


def _collaboration_visible(who: Principal) -> ColumnElement[bool]:
    """A creator sees their own, brand staff their brand's, admins all."""
    if who.is_admin:
        return Collaboration.id.is_not(None)
    seen = [Collaboration.creator_id == (who.user_id or 0)]
    if who.role is Role.BRAND_STAFF and who.brand_id is not None:
        seen.append(Collaboration.brand_id == who.brand_id)
    return or_(*seen)


async def _load(session: AsyncSession, who: Principal, collaboration_id: int) -> Collaboration:
    _signed_in(who, "see collaborations")
    found = await session.scalar(
        select(Collaboration).where(Collaboration.id == collaboration_id, _collaboration_visible(who))
    )
    if found is None:
        raise NotFound(f"no collaboration with id {collaboration_id} that you can see")
    return found


async def _view(session: AsyncSession, collaboration: Collaboration) -> CollaborationView:
    await session.flush()
    return (await _collaboration_views(session, [collaboration], utcnow()))[0]


async def get_collaboration(session: AsyncSession, who: Principal, collaboration_id: int) -> CollaborationView:
    return await _view(session, await _load(session, who, collaboration_id))


async def list_collaborations(
    session: AsyncSession, who: Principal, *, status: CollaborationStatus | None = None, brand_id: int | None = None
) -> list[CollaborationView]:
    _signed_in(who, "see collaborations")
    query = select(Collaboration).where(_collaboration_visible(who))
    if status is not None:
        query = query.where(Collaboration.status == status)
    if brand_id is not None:
        query = query.where(Collaboration.brand_id == brand_id)
    rows = list((await session.scalars(query.order_by(Collaboration.id))).all())
    return await _collaboration_views(session, rows, utcnow())


async def apply(session: AsyncSession, who: Principal, plan_id: int, message: str) -> CollaborationView:
    """A host asks to join an open plan; after a rejection or an end the same row opens again."""
    require(who, who.role is Role.HOST, "apply to a commission plan", "hosts")
    assert who.user_id is not None
    plan = await _load_plan(session, who, plan_id)
    if plan.kind is not PlanKind.OPEN:
        raise Conflict(
            f"commission plan {plan_id} is targeted: it is offered, not applied to; accept or decline your offer"
        )
    _check_running(plan)
    now = utcnow()
    found = await session.scalar(
        select(Collaboration).where(Collaboration.plan_id == plan_id, Collaboration.creator_id == who.user_id)
    )
    if found is None:
        found = Collaboration(
            plan_id=plan_id,
            brand_id=plan.brand_id,
            creator_id=who.user_id,
            status=_Status.APPLIED,
            message=message,
            created_at=now,
            updated_at=now,
        )
        session.add(found)
        try:
            await session.flush()
        except IntegrityError:
            raise Conflict(f"you have already applied to commission plan {plan_id}") from None
        return await _view(session, found)
    if found.status not in (_Status.REJECTED, _Status.ENDED):
        raise Conflict(
            f"you already have collaboration {found.id} with this plan, and it is {found.status.value}; "
            "there is nothing to apply for"
        )
    found.status, found.message, found.reason = _Status.APPLIED, message, ""
    found.decided_at = found.approved_at = found.ended_at = None
    found.updated_at = now
    return await _view(session, found)


async def _move(
    session: AsyncSession,
    who: Principal,
    collaboration_id: int,
    *,
    may: str,
    verb: str,
    done: str,
    source: CollaborationStatus,
) -> tuple[Collaboration, datetime]:
    """Load a collaboration the caller may `verb` (`may`: "brand", "creator" or "either"), in state `source`."""
    collaboration = await _load(session, who, collaboration_id)
    brand = may in ("brand", "either") and may_manage_brand(who, collaboration.brand_id)
    creator = may in ("creator", "either") and who.user_id == collaboration.creator_id
    roles = {"brand": "the brand's staff or an admin", "creator": "the creator it was offered to"}
    require(
        who,
        brand or creator,
        f"{verb} this collaboration",
        roles.get(may, "its creator, the brand's staff or an admin"),
    )
    if collaboration.status is not source:
        raise Conflict(
            f"collaboration {collaboration_id} is {collaboration.status.value}; only an {source.value} collaboration "
            f"can be {done}"
        )
    if source is not _Status.APPROVED:  # deciding needs a running plan; ending never does
        plan = await session.get(CommissionPlan, collaboration.plan_id)
        assert plan is not None
        _check_running(plan)
    now = utcnow()
    collaboration.updated_at = now
    return collaboration, now


async def approve(session: AsyncSession, who: Principal, collaboration_id: int) -> CollaborationView:
    """The brand lets an applicant sell: it gets the plan's rates in force now, cuts pending included."""
    c, now = await _move(
        session, who, collaboration_id, may="brand", verb="approve", done="approved", source=_Status.APPLIED
    )
    c.status, c.decided_at, c.approved_at = _Status.APPROVED, now, now
    return await _view(session, c)


async def reject(session: AsyncSession, who: Principal, collaboration_id: int, reason: str) -> CollaborationView:
    c, now = await _move(
        session, who, collaboration_id, may="brand", verb="reject", done="rejected", source=_Status.APPLIED
    )
    c.status, c.decided_at, c.reason = _Status.REJECTED, now, reason
    return await _view(session, c)


async def accept(session: AsyncSession, who: Principal, collaboration_id: int) -> CollaborationView:
    """The creator takes a targeted offer: from now on its rates override the open plan's for them."""
    c, now = await _move(
        session, who, collaboration_id, may="creator", verb="accept", done="accepted", source=_Status.OFFERED
    )
    c.status, c.decided_at, c.approved_at = _Status.APPROVED, now, now
    return await _view(session, c)


async def decline(session: AsyncSession, who: Principal, collaboration_id: int, reason: str) -> CollaborationView:
    c, now = await _move(
        session, who, collaboration_id, may="creator", verb="decline", done="declined", source=_Status.OFFERED
    )
    c.status, c.decided_at, c.reason = _Status.DECLINED, now, reason
    return await _view(session, c)


async def end(session: AsyncSession, who: Principal, collaboration_id: int, reason: str) -> CollaborationView:
    """No new sales under it from now on; orders already made keep their terms (they carry a snapshot)."""
    c, now = await _move(
        session, who, collaboration_id, may="either", verb="end", done="ended", source=_Status.APPROVED
    )
    c.status, c.ended_at, c.reason = _Status.ENDED, now, reason
    return await _view(session, c)


# --- terms ----------------------------------------------------------------------------------------------------


async def terms_for(session: AsyncSession, *, creator_id: int, product: Product, at: datetime) -> CreatorTerms | None:
    """What `creator_id` earns selling `product` at `at`: their approved collaborations with its brand under a
    plan that has not ended, and that plan's rate in force for them. A targeted plan's rate overrides the open
    plan's (of several targeted plans, the highest rate). None: the creator has no terms for the product."""
    query = (
        select(Collaboration, CommissionPlan.kind)
        .join(CommissionPlan, CommissionPlan.id == Collaboration.plan_id)
        .where(
            Collaboration.creator_id == creator_id,
            Collaboration.brand_id == product.brand_id,
            Collaboration.status == _Status.APPROVED,
            or_(CommissionPlan.ended_at.is_(None), CommissionPlan.ended_at > at),
            exists().where(and_(PlanRate.plan_id == CommissionPlan.id, PlanRate.product_id == product.id)),
        )
        .order_by(Collaboration.id)
    )
    rows = (await session.execute(query)).all()
    if not rows:
        return None
    histories = await _histories(session, [c.plan_id for c, _ in rows])
    best: tuple[bool, int, CreatorTerms] | None = None
    for collaboration, kind in rows:
        history = histories.get((collaboration.plan_id, product.id), [])
        change = rate_in_force(history, at=at, approved_at=collaboration.approved_at)
        if change is None:
            continue
        rank = (kind is PlanKind.TARGETED, change.rate_bps)
        if best is None or rank > best[:2]:
            best = (*rank, CreatorTerms(collaboration.id, change.rate_bps))
    return None if best is None else best[2]
