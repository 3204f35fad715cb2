"""The refund routes: give back all or part of a paid order, and list an order's refunds.

Thin: `commerce.refunds` holds the rules and runs its own short transactions (the provider is asked between
them), so the request's transaction stays unused. Its router is listed with the others in `api/routes.py`.
"""

from __future__ import annotations

from livecommerce.api import schemas as s
from livecommerce.api.routing import Call, Replay, Router
from livecommerce.commerce import refunds
from livecommerce.commerce.buying import BUYING
from livecommerce.models import Order, Refund
from livecommerce.state import SESSIONS

__all__ = ["ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route


def _refund(refund: Refund, order: Order | None = None) -> s.RefundOut:
    fields = {name: getattr(refund, name) for name in s.RefundOut.model_fields if name != "note"}
    return s.RefundOut(**fields, note=None if order is None else refunds.voucher_note(order))


@route("POST", "/orders/{order_id}/refunds", summary="Refund all or part of a paid order",
       access="the order's brand's staff, admins", tag="orders", body=s.RefundIn, response=s.RefundOut, status=201,
       replay_status=200, errors=(400, 401, 403, 404, 409, 413, 415, 422),
       notes="At most what is left (what the buyer paid, after vouchers, less every refund made or under way; "
             "a voucher is never returned: `note` says so); `amount_minor` omitted "
             "refunds all that is left. A retry with the same `idempotency_key` answers 200 with the same refund "
             "(finishing it if it was interrupted).")  # fmt: skip
async def create_refund(call: Call, order_id: int, body: s.RefundIn) -> s.RefundOut | Replay:
    app = call.request.app
    refund, replayed = await refunds.request_refund(
        app[SESSIONS], app[BUYING].provider, call.who, order_id, key=body.idempotency_key,
        amount_minor=body.amount_minor, reason=body.reason,
    )  # fmt: skip
    order = await call.session.get(Order, order_id)
    out = _refund(refund, order)
    return Replay(out) if replayed else out


@route("GET", "/orders/{order_id}/refunds", summary="An order's refunds, oldest first",
       access="its buyer, its brand's staff, admins", tag="orders", response=s.RefundList,
       errors=(401, 404))  # fmt: skip
async def list_refunds(call: Call, order_id: int) -> s.RefundList:
    return s.RefundList(items=[_refund(r) for r in await refunds.list_refunds(call.session, call.who, order_id)])
