"""Claiming vouchers in a LIVE, and a buyer's claims: thin mappings onto `commerce.voucher_live`.

The REST twin of the hub's `claim_voucher` event (the same `VoucherLive.claim`, the same error codes). Its router
is listed in `api/routes.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from livecommerce.api.routing import Call, Router
from livecommerce.commerce.voucher_live import VOUCHERS, claim_wire

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

_REFUSALS = (
    "409 `voucher_not_in_room` (not pinned in this show), `voucher_claimed_out`, `voucher_limit_reached`, "
    "`voucher_budget_spent`, `voucher_not_started`, `voucher_ended`, `room_not_live`; 403 `account_too_new`. "
    "A retry with the same `idempotency_key` returns the same claim (`replayed`)."
)


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    idempotency_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] = Field(
        description="A fresh key per tap on Claim, the same one on a retry."
    )


class ClaimVoucherOut(BaseModel):
    id: int
    title: str
    kind: str
    amount_minor: int
    percent_bps: int
    cap_minor: int
    min_spend_minor: int
    currency: str
    funding: str
    starts_at_ms: int
    ends_at_ms: int


class ClaimOut(BaseModel):
    """A voucher claim: `claimed` (yours to use at checkout), `applied` (to a hold being paid), `used`, or
    `expired` (the voucher ended unused)."""

    id: str
    voucher_id: int
    state: Literal["claimed", "applied", "used", "expired"]
    hold_id: str | None
    discount_minor: int
    created_at_ms: int
    used_at_ms: int | None
    voucher: ClaimVoucherOut | None
    replayed: bool = False


class ClaimList(BaseModel):
    items: list[ClaimOut]


def _claim(wire: dict[str, Any], *, replayed: bool = False) -> ClaimOut:
    voucher = None if wire["voucher"] is None else ClaimVoucherOut(**wire["voucher"])
    return ClaimOut(**{**wire, "voucher": voucher}, replayed=replayed)


@route("POST", "/rooms/{room_id}/vouchers/{voucher_id}/claims", summary="Claim a voucher pinned in a live room",
       access="signed-in users who can see the room", tag="vouchers", body=ClaimIn, response=ClaimOut, status=201,
       errors=(400, 401, 403, 404, 409, 413, 415, 422, 503), notes=_REFUSALS)  # fmt: skip
async def claim_voucher(call: Call, room_id: int, voucher_id: int, body: ClaimIn) -> ClaimOut:
    live = call.request.app[VOUCHERS]
    claim, replayed = await live.claim(call.who, room_id, voucher_id, body.idempotency_key)
    return _claim(claim_wire(claim, await live.info(voucher_id)), replayed=replayed)


@route("GET", "/me/voucher-claims", summary="Your voucher claims, newest first", access="signed-in users",
       tag="vouchers", response=ClaimList, errors=(401,))  # fmt: skip
async def my_voucher_claims(call: Call) -> ClaimList:
    views = await call.request.app[VOUCHERS].my_claims(call.who)
    return ClaimList(items=[_claim(view.as_wire()) for view in views])
