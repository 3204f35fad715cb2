"""Which commission a creator earns on a product: the approved collaborations and their rates in force.

A rate row of a collaboration's plan is in force at `t` when it was set by then and either reached every
creator (`effective_at <= t`) or was set before this creator's approval (a creator approved after a cut gets
it at once); the latest such row wins. Among the creator's approved collaborations with the product's brand
whose plan has not ended and has a rate in force, a targeted plan's rate overrides the open plan's (the most
recent collaboration on a tie).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.models import Collaboration, CollaborationStatus, CommissionPlan, PlanKind, PlanRate, Product

__all__ = ["CreatorTerms", "terms_for"]


@dataclass(frozen=True, slots=True)
class CreatorTerms:
    """What a creator earns on a product now: the collaboration it is earned under and its rate."""

    collaboration_id: int
    rate_bps: int


async def terms_for(session: AsyncSession, *, creator_id: int, product: Product, at: datetime) -> CreatorTerms | None:
    """The creator's terms for `product` at `at`, or None: they may not sell it through a collaboration."""
    rows = await session.execute(
        select(Collaboration.id, CommissionPlan.kind, PlanRate.rate_bps, PlanRate.set_at, PlanRate.id)
        .join(CommissionPlan, CommissionPlan.id == Collaboration.plan_id)
        .join(PlanRate, PlanRate.plan_id == CommissionPlan.id)
        .where(
            Collaboration.creator_id == creator_id,
            Collaboration.brand_id == product.brand_id,
            Collaboration.status == CollaborationStatus.APPROVED,
            or_(CommissionPlan.ended_at.is_(None), CommissionPlan.ended_at > at),
            PlanRate.product_id == product.id,
            PlanRate.set_at <= at,
            or_(PlanRate.effective_at <= at, PlanRate.set_at <= Collaboration.approved_at),
        )
    )
    latest: dict[int, tuple[tuple[datetime, int], PlanKind, int]] = {}  # collaboration -> its rate in force
    for collaboration_id, kind, rate_bps, set_at, rate_id in rows:
        seen = latest.get(collaboration_id)
        if seen is None or (set_at, rate_id) > seen[0]:
            latest[collaboration_id] = ((set_at, rate_id), kind, rate_bps)
    if not latest:
        return None
    chosen = max(latest, key=lambda c: (latest[c][1] is PlanKind.TARGETED, c))
    return CreatorTerms(chosen, latest[chosen][2])
