"""What a sale earns whom, fixed at the moment of the hold: the attribution and fee snapshot.

`Buying` computes a room offer's `SaleTerms` (the room's host as creator, the collaboration and its commission
rate in force, the platform fee rule in force) and every reservation carries them into Redis (`pools.lua`
stores the token verbatim in the hold's record), so the outbox and the order writer read the terms the buyer
bought under. They are never recomputed: a rate change, an ended collaboration or a new fee rule changes only
holds made after it.

The wire form is one token of at most 64 characters of `[A-Za-z0-9.]` (what `pools.lua` accepts):
``h<creator>.c<collaboration or 0>.r<commission bps>.f<fee rule or 0>.p<fee bps>.b<p|d>`` — `b` is the fee
base, `p` for what the buyer paid, `d` for that plus the platform discount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from livecommerce.models import FeeBase

__all__ = ["DEFAULT_FEE_BASE", "DEFAULT_FEE_BPS", "MAX_COMMISSION_BPS", "MIN_COMMISSION_BPS", "SaleTerms"]

MIN_COMMISSION_BPS: Final = 100  # 1%
MAX_COMMISSION_BPS: Final = 8000  # 80%
MAX_FEE_BPS: Final = 2000  # 20%: with at most 80% commission, the brand's net never goes below 0
DEFAULT_FEE_BPS: Final = 200  # the platform fee before an admin sets a rule: 2% of what the buyer paid
DEFAULT_FEE_BASE: Final = FeeBase.BUYER_PAID

_BASES: Final = {FeeBase.BUYER_PAID: "p", FeeBase.BUYER_PAID_PLUS_DISCOUNT: "d"}
_BY_LETTER: Final = {letter: base for base, letter in _BASES.items()}
_ID = r"(0|[1-9][0-9]{0,14})"
_TOKEN: Final = re.compile(rf"h{_ID}\.c{_ID}\.r([0-9]{{1,4}})\.f{_ID}\.p([0-9]{{1,4}})\.b([pd])")


@dataclass(frozen=True, slots=True)
class SaleTerms:
    """Who drove the sale and what each party's share is. `creator_id` 0 and `collaboration_id` None: no
    creator earns (a hold without a room); `fee_rule_id` None: the built-in default fee."""

    creator_id: int
    collaboration_id: int | None
    commission_bps: int
    fee_rule_id: int | None
    fee_bps: int
    fee_base: FeeBase

    def __post_init__(self) -> None:
        if self.collaboration_id is None and self.commission_bps:
            raise ValueError("a commission needs a collaboration")
        if self.collaboration_id is not None and not MIN_COMMISSION_BPS <= self.commission_bps <= MAX_COMMISSION_BPS:
            raise ValueError(f"commission_bps must be {MIN_COMMISSION_BPS}-{MAX_COMMISSION_BPS}")
        if not 0 <= self.fee_bps <= MAX_FEE_BPS:
            raise ValueError(f"fee_bps must be 0-{MAX_FEE_BPS}")

    def encode(self) -> str:
        return (
            f"h{self.creator_id}.c{self.collaboration_id or 0}.r{self.commission_bps}"
            f".f{self.fee_rule_id or 0}.p{self.fee_bps}.b{_BASES[self.fee_base]}"
        )

    @classmethod
    def parse(cls, token: str) -> SaleTerms:
        """From `encode`'s token; ValueError when it is not one."""
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise ValueError(f"{token!r} is not a sale terms token")
        creator, collaboration, rate, rule, fee, base = match.groups()
        return cls(
            creator_id=int(creator),
            collaboration_id=int(collaboration) or None,
            commission_bps=int(rate),
            fee_rule_id=int(rule) or None,
            fee_bps=int(fee),
            fee_base=_BY_LETTER[base],
        )

    @classmethod
    def default(cls, creator_id: int = 0) -> SaleTerms:
        """No collaboration, the built-in fee: what a hold recorded before terms existed is read as."""
        return cls(creator_id, None, 0, None, DEFAULT_FEE_BPS, DEFAULT_FEE_BASE)
