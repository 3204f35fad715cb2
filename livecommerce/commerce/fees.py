"""The platform fee: rules with an effective date, and the one in force at a moment.

An admin adds a `FeeRule` (basis points and base) that applies from its `effective_from` on, until a later rule
starts; rules are never edited, so an order's `fee_rule_id` always names what it was sold under. Before any
rule exists the built-in default (`terms.DEFAULT_FEE_BPS` of `terms.DEFAULT_FEE_BASE`) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.access import require
from livecommerce.auth import Principal
from livecommerce.commerce.terms import DEFAULT_FEE_BASE, DEFAULT_FEE_BPS, MAX_FEE_BPS
from livecommerce.errors import InvalidRequest
from livecommerce.models import FeeBase, FeeRule, utcnow

__all__ = ["BACKDATE_LEEWAY", "FeeTerms", "create_rule", "list_rules", "rule_in_force"]

BACKDATE_LEEWAY: Final = timedelta(minutes=5)  # a rule may not reach back further: sold orders keep their fee


@dataclass(frozen=True, slots=True)
class FeeTerms:
    """The fee a sale is made under: `rule_id` None is the built-in default."""

    rule_id: int | None
    bps: int
    base: FeeBase


async def rule_in_force(session: AsyncSession, at: datetime) -> FeeTerms:
    """The latest rule with `effective_from <= at` (of two with the same start, the later added)."""
    query = (
        select(FeeRule)
        .where(FeeRule.effective_from <= at)
        .order_by(FeeRule.effective_from.desc(), FeeRule.id.desc())
        .limit(1)
    )
    rule = await session.scalar(query)
    if rule is None:
        return FeeTerms(None, DEFAULT_FEE_BPS, DEFAULT_FEE_BASE)
    return FeeTerms(rule.id, rule.bps, rule.base)


async def list_rules(session: AsyncSession, who: Principal) -> list[FeeRule]:
    """Every rule, by start (past, current and scheduled)."""
    require(who, who.is_admin, "see the platform fee rules", "admins")
    return list((await session.scalars(select(FeeRule).order_by(FeeRule.effective_from, FeeRule.id))).all())


async def create_rule(
    session: AsyncSession, who: Principal, *, bps: int, base: FeeBase, effective_from: datetime
) -> FeeRule:
    require(who, who.is_admin, "set the platform fee", "admins")
    if not 0 <= bps <= MAX_FEE_BPS:
        raise InvalidRequest(
            f"bps is {bps}; the platform fee is 0-{MAX_FEE_BPS} basis points (0-20%)",
            errors=[{"field": "body.bps", "message": f"must be 0-{MAX_FEE_BPS}"}],
        )
    now = utcnow()
    if effective_from < now - BACKDATE_LEEWAY:
        raise InvalidRequest(
            "effective_from is in the past; a fee rule cannot reach back more than 5 minutes (orders already sold "
            "keep their fee): give a time from now on",
            errors=[{"field": "body.effective_from", "message": "must not be more than 5 minutes in the past"}],
        )
    rule = FeeRule(bps=bps, base=base, effective_from=effective_from, created_at=now, created_by=who.user_id)
    session.add(rule)
    await session.flush()
    return rule
