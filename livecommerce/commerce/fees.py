"""The platform fee in force: the latest `FeeRule` that has started, or the built-in default before any.

Each hold snapshots the rule it was sold under (`commerce.terms`), so a new rule changes only later sales.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.commerce.terms import DEFAULT_FEE_BASE, DEFAULT_FEE_BPS
from livecommerce.models import FeeBase, FeeRule

__all__ = ["FeeTerms", "rule_in_force"]


@dataclass(frozen=True, slots=True)
class FeeTerms:
    """The fee a sale is made under: `rule_id` None is the built-in default (no rule set yet)."""

    rule_id: int | None
    bps: int
    base: FeeBase


async def rule_in_force(session: AsyncSession, at: datetime) -> FeeTerms:
    """The rule with the latest `effective_from` at or before `at` (the later-made one on a tie)."""
    rule = await session.scalar(
        select(FeeRule)
        .where(FeeRule.effective_from <= at)
        .order_by(FeeRule.effective_from.desc(), FeeRule.id.desc())
        .limit(1)
    )
    if rule is None:
        return FeeTerms(None, DEFAULT_FEE_BPS, DEFAULT_FEE_BASE)
    return FeeTerms(rule.id, rule.bps, rule.base)
