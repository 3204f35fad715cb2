"""The buying routes: reserve in a room, read, pay for and cancel a hold.

The REST twins of the hub's `buy`, `checkout` and `cancel_hold` events: the same `commerce.buying` calls,
the same error codes. Its router is listed with the others in `api/routes.py`.
"""

from __future__ import annotations

from typing import Any

from livecommerce.api import schemas as s
from livecommerce.api.routing import Call, Router
from livecommerce.commerce.buying import BUYING, hold_wire
from livecommerce.commerce.pools import Hold, HoldState

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route


def _hold(hold: Hold, replayed: bool = False, price: dict[str, Any] | None = None) -> s.HoldOut:
    return s.HoldOut(**hold_wire(hold, price), replayed=replayed)


async def _quoted(call: Call, hold: Hold) -> dict[str, Any] | None:
    """A held hold not yet priced: its price with the buyer's best vouchers (what checkout will charge)."""
    vouchers = call.request.app[BUYING].vouchers
    if vouchers is None or hold.state is not HoldState.HELD or hold.disc is not None:
        return None
    return (await vouchers.quote_hold(hold)).as_wire()


@route("POST", "/rooms/{room_id}/buy", summary="Reserve a product shown in a live room (a hold)",
       access="signed-in users who can see the room", tag="buying", body=s.BuyIn, response=s.HoldOut, status=201,
       errors=(400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 503))  # fmt: skip
async def buy(call: Call, room_id: int, body: s.BuyIn) -> s.HoldOut:
    hold, replayed = await call.request.app[BUYING].buy(
        call.who, room_id, body.product_id, quantity=body.quantity, key=body.idempotency_key, code=body.code,
        sale_id=body.sale_id,
    )  # fmt: skip
    return _hold(hold, replayed, await _quoted(call, hold))


@route("GET", "/holds/{hold_id}", summary="One of your holds", access="the hold's buyer", tag="buying",
       response=s.HoldOut, errors=(401, 404))  # fmt: skip
async def get_hold(call: Call, hold_id: str) -> s.HoldOut:
    hold = await call.request.app[BUYING].hold(call.who, hold_id)
    return _hold(hold, price=await _quoted(call, hold))


@route("POST", "/holds/{hold_id}/checkout", summary="Pay for a hold (test mode: see the test cards)",
       access="the hold's buyer", tag="buying", body=s.CheckoutIn, response=s.HoldOut,
       errors=(400, 401, 402, 404, 409, 410, 413, 415, 422, 503))  # fmt: skip
async def checkout(call: Call, hold_id: str, body: s.CheckoutIn) -> s.HoldOut:
    buying = call.request.app[BUYING]
    return _hold(await buying.checkout(call.who, hold_id, body.card_number, claim_ids=body.claim_ids))


@route("DELETE", "/holds/{hold_id}", summary="Give a hold back (its units return to the sale)",
       access="the hold's buyer", tag="buying", response=s.HoldOut, errors=(401, 404, 409))  # fmt: skip
async def cancel_hold(call: Call, hold_id: str) -> s.HoldOut:
    return _hold(await call.request.app[BUYING].cancel(call.who, hold_id))
