"""REST wire format of campaigns and vouchers (`api/vouchers.py`): strict requests, as in `api/schemas.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from livecommerce.api.schemas import Currency, Id, Name
from livecommerce.commerce.vouchers import MAX_ACCOUNT_AGE_DAYS, MAX_MINOR, MAX_QUOTA
from livecommerce.models import Funding, VoucherKind, VoucherStatus

__all__ = [
    "CampaignCreate",
    "CampaignList",
    "CampaignOut",
    "CampaignUpdate",
    "CampaignVoucherCreate",
    "LiveBudgetOut",
    "SellerVoucherCreate",
    "VoucherList",
    "VoucherOut",
    "VoucherUpdate",
]

_STRICT = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)  # as api/schemas.py
Minor = Annotated[int, Field(ge=0, le=MAX_MINOR, description="In the currency's minor unit (cents).")]
PositiveMinor = Annotated[int, Field(ge=1, le=MAX_MINOR, description="In the currency's minor unit (cents).")]
Bps = Annotated[int, Field(ge=1, le=10_000, description="Basis points: 100 is 1%, 10000 is 100%.")]
Claims = Annotated[int, Field(ge=1, le=MAX_QUOTA)]
AgeDays = Annotated[int, Field(ge=0, le=MAX_ACCOUNT_AGE_DAYS, description="Days since sign-up; 0: any account.")]


# --- campaigns ------------------------------------------------------------------------------------------------


class CampaignCreate(BaseModel):
    model_config = _STRICT

    name: Name
    currency: Currency = Field(description="Every voucher of the campaign is in this currency.")
    budget_minor: Minor = Field(description="The most the campaign's vouchers may be allotted in total.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="After `starts_at`, in the future.")


class CampaignUpdate(BaseModel):
    """Only the fields sent change; a field sent as null is left as it is."""

    model_config = _STRICT

    name: Name | None = None
    budget_minor: Minor | None = Field(default=None, description="Never below what is allotted to its vouchers.")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None


class LiveBudgetOut(BaseModel):
    """A budget as Redis holds it now: `reserved + spent + free = funded`; `claimed` claims made so far."""

    funded_minor: int
    reserved_minor: int = Field(description="The worst cost of claims not yet used or expired.")
    spent_minor: int = Field(description="The true cost of claims used in paid orders.")
    free_minor: int
    claimed: int


class CampaignOut(BaseModel):
    id: int
    name: str
    currency: str
    budget_minor: int
    allotted_minor: int = Field(description="The sum of its vouchers' allotments (`budget_minor` of each).")
    unallotted_minor: int = Field(description="What more its vouchers may be allotted: budget less allotted.")
    starts_at: datetime
    ends_at: datetime
    status: VoucherStatus
    created_at: datetime
    updated_at: datetime
    live: LiveBudgetOut | None = Field(
        default=None, description="Managers, on reading one: the budget's live figures (null: not loaded yet)."
    )


class CampaignList(BaseModel):
    items: list[CampaignOut] = Field(description="Oldest first.")


# --- vouchers -------------------------------------------------------------------------------------------------


class _VoucherTerms(BaseModel):
    model_config = _STRICT

    title: Name
    kind: VoucherKind = Field(
        description="`amount`: `amount_minor` off; `percent`: `percent_bps` off, at most `cap_minor`."
    )
    amount_minor: PositiveMinor | None = Field(default=None, description="Kind `amount` only: the amount off.")
    percent_bps: Bps | None = Field(default=None, description="Kind `percent` only: the share off.")
    cap_minor: PositiveMinor | None = Field(default=None, description="Kind `percent` only: the most it takes off.")
    min_spend_minor: Minor = Field(default=0, description="The goods value an order needs for it to apply.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime = Field(description="After `starts_at`, in the future.")
    quota: Claims = Field(description="Claims in total.")
    per_buyer_limit: Claims = Field(default=1, description="Claims per buyer; at most `quota`.")
    min_account_age_days: AgeDays = 0
    product_id: Id | None = Field(default=None, description="Only this product; null: all the brand's products.")


class SellerVoucherCreate(_VoucherTerms):
    """A brand's own voucher: the brand bears the whole discount."""

    currency: Currency | None = Field(default=None, description="Defaults to the product's; needed without one.")


class CampaignVoucherCreate(_VoucherTerms):
    """A platform (`platform`) or co-funded (`co`) voucher, drawing the platform's part from the campaign."""

    funding: Funding = Field(description="`platform` or `co` (`seller` vouchers are created under their brand).")
    platform_share_bps: Bps | None = Field(
        default=None, description="`co`: the platform's share of each discount (1-9999); `platform`: 10000."
    )
    brand_id: Id | None = Field(default=None, description="`co`: the brand funding the rest. `platform`: null is any.")
    budget_minor: Minor = Field(
        description="The campaign budget allotted to this voucher; at least one claim's worst cost (the platform's "
        "part of its amount or cap)."
    )


class VoucherUpdate(BaseModel):
    """Only the fields sent change; a field sent as null is left as it is. The arithmetic never changes."""

    model_config = _STRICT

    title: Name | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    quota: Claims | None = None
    per_buyer_limit: Claims | None = None
    min_account_age_days: AgeDays | None = None
    budget_minor: Minor | None = Field(
        default=None, description="Campaign vouchers: up to the campaign's unallotted budget, down to what is used."
    )


class VoucherOut(BaseModel):
    id: int
    title: str
    kind: VoucherKind
    amount_minor: int
    percent_bps: int
    cap_minor: int = Field(description="The most it takes off (an amount voucher's: its amount).")
    min_spend_minor: int
    currency: str
    starts_at: datetime
    ends_at: datetime
    quota: int
    per_buyer_limit: int
    min_account_age_days: int
    funding: Funding
    platform_share_bps: int
    brand_id: int | None = Field(description="null: a platform voucher for any brand.")
    product_id: int | None = Field(description="null: any of the brand's products.")
    status: VoucherStatus
    campaign_id: int | None = Field(description="Its campaign; null for seller vouchers and for non-managers.")
    budget_minor: int | None = Field(description="Its campaign allotment; null unless you manage it.")
    worst_cost_minor: int | None = Field(
        description="What one claim reserves from the allotment; null unless you manage it."
    )
    created_at: datetime
    updated_at: datetime
    live: LiveBudgetOut | None = Field(
        default=None, description="Managers, on reading one: the budget's live figures (null: not loaded yet)."
    )


class VoucherList(BaseModel):
    items: list[VoucherOut] = Field(description="Oldest first.")
