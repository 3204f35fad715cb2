"""Refunds of paid orders, in full or in part, that lose nothing whoever crashes when.

A refund is three steps, each safe to repeat:

1. one transaction, with the order row locked (``SELECT … FOR UPDATE``; SQLite serialises writers): check
   the caller may refund it, that it is paid and that the amount fits in what is left (what the buyer paid,
   `Order.buyer_paid_minor`, less every refund recorded, pending or done), and insert the refund as
   ``pending`` under its key (unique per order: a retry of the key finds it and carries on from where it stopped);
2. ask the payment provider to give the amount back under the refund key ``refund:<id>`` (idempotent at the
   provider, so asking again never refunds twice);
3. one transaction, the order locked again: post the reversal to the ledger (`commerce.ledger`, pro rata
   after what the done refunds already gave back), mark the refund ``done`` and add it to
   `orders.refunded_minor`.

A crash between 1 and 3 leaves the refund ``pending``: a retry with the same key resumes it, and the worker
(`jobs.RefundFinisher`) finishes refunds left pending for over a minute. A paid order stays ``paid``; its
`refunded_minor` says how much went back.

An order paid with vouchers refunds at most what the buyer paid; its ledger reversal takes back the platform's
and the seller's discount lines pro rata, and nothing goes back to a campaign budget: the voucher was used and
is not returned (`voucher_note`, which the refund reply carries).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from livecommerce.access import may_manage_brand, require
from livecommerce.auth import Principal
from livecommerce.commerce import ledger
from livecommerce.commerce.payments import PaymentProvider
from livecommerce.errors import ClientError, Conflict, NotFound
from livecommerce.models import Order, OrderStatus, Refund, RefundStatus, utcnow

__all__ = [
    "STALE_AFTER",
    "OrderNotPaid",
    "RefundTooLarge",
    "finish_refund",
    "list_refunds",
    "request_refund",
    "stale_refunds",
    "voucher_note",
]

log = logging.getLogger(__name__)

STALE_AFTER: Final = timedelta(minutes=1)  # a pending refund this old was left by a crash: the worker ends it


class OrderNotPaid(ClientError):
    status = 409
    code = "order_not_paid"
    title = "Only paid orders can be refunded"


class RefundTooLarge(ClientError):
    status = 409
    code = "refund_too_large"
    title = "The refund is more than is left to refund"


class ChargeNotFound(ClientError):
    status = 409
    code = "charge_not_found"
    title = "The payment provider has no charge for this order"


def _visible(who: Principal, order: Order) -> bool:
    return who.user_id == order.buyer_id or may_manage_brand(who, order.brand_id)


async def _locked(session: AsyncSession, order_id: int) -> Order | None:
    """The order row, locked until the transaction ends. SQLite has no row locks and begins a transaction
    only at its first write: a no-op write takes its one writer lock first, so the reads after it hold."""
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("UPDATE orders SET id = id WHERE id = :id"), {"id": order_id})
    return await session.scalar(select(Order).where(Order.id == order_id).with_for_update())


async def _order(session: AsyncSession, who: Principal, order_id: int, *, lock: bool) -> Order:
    order = await (_locked(session, order_id) if lock else session.get(Order, order_id))
    if order is None or not _visible(who, order):
        raise NotFound(f"no order with id {order_id}")
    return order


async def _record(
    session: AsyncSession, who: Principal, order_id: int, key: str, amount_minor: int | None, reason: str
) -> tuple[Refund, bool]:
    """Step 1 (in the caller's transaction): the refund under `key`, made now as pending unless it exists;
    returns it and whether it existed (a retry)."""
    require(who, who.authenticated, "refund orders", "the brand's staff or an admin")
    order = await _order(session, who, order_id, lock=True)
    require(who, may_manage_brand(who, order.brand_id), "refund this order", "the brand's staff or an admin")
    existing = await session.scalar(select(Refund).where(Refund.order_id == order_id, Refund.key == key))
    if existing is not None:
        if amount_minor is not None and amount_minor != existing.amount_minor:
            raise Conflict(
                f"refund key {key!r} was used for {existing.amount_minor} {existing.currency}, not {amount_minor}; "
                "send a new idempotency_key for a new refund"
            )
        return existing, True
    if order.status is not OrderStatus.PAID:
        raise OrderNotPaid(f"order {order_id} is {order.status.value}; only a paid order can be refunded")
    recorded = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(Refund.order_id == order_id)
    )
    paid = order.buyer_paid_minor  # the goods value less the vouchers: what the buyer's card was charged
    left = paid - int(recorded or 0)
    if left <= 0:
        raise RefundTooLarge(f"order {order_id} is already refunded in full ({paid} {order.currency})")
    amount = left if amount_minor is None else amount_minor
    if amount > left:
        voucher = f"; the buyer paid {paid} after vouchers" if paid != order.total_minor else ""
        raise RefundTooLarge(
            f"at most {left} {order.currency} of order {order_id} is left to refund "
            f"(paid {paid}, refunded or being refunded {paid - left}{voucher}); ask for {left} or less"
        )
    refund = Refund(
        order_id=order_id, key=key, amount_minor=amount, currency=order.currency, reason=reason,
        status=RefundStatus.PENDING, requested_by=who.user_id, created_at=utcnow(),
    )  # fmt: skip
    session.add(refund)
    await session.flush()
    return refund, False


def voucher_note(order: Order) -> str | None:
    """What a refund reply says of the order's vouchers: they are not returned (each was used; a campaign
    budget is never credited by a refund)."""
    if order.seller_voucher_id is None and order.platform_voucher_id is None:
        return None
    return (
        f"this order used a voucher ({order.total_minor - order.buyer_paid_minor} {order.currency} off); the "
        "refund gives back what the buyer paid, and the voucher is not returned"
    )


async def request_refund(
    sessions: async_sessionmaker[AsyncSession],
    provider: PaymentProvider,
    who: Principal,
    order_id: int,
    *,
    key: str,
    amount_minor: int | None = None,
    reason: str = "",
) -> tuple[Refund, bool]:
    """Refund `amount_minor` of a paid order (None: all that is left), or resume the refund `key` named before.
    Returns the refund, done, and whether it answers a retry of `key`."""
    for attempt in range(2):
        try:
            async with sessions.begin() as session:
                refund, replayed = await _record(session, who, order_id, key, amount_minor, reason)
            break
        except IntegrityError:  # the same key, recorded at this moment by another request: read it
            if attempt:
                raise
    if refund.status is RefundStatus.PENDING:
        refund = await finish_refund(sessions, provider, refund.id)
    return refund, replayed


async def finish_refund(
    sessions: async_sessionmaker[AsyncSession], provider: PaymentProvider, refund_id: int
) -> Refund:
    """Steps 2 and 3 for a recorded refund: the provider gives the money back, then the ledger and the order
    record it. Safe to call again at any point (the provider is asked under the refund's key)."""
    async with sessions() as session:
        refund = await session.get(Refund, refund_id)
        order = await session.get(Order, refund.order_id) if refund is not None else None
    if refund is None or order is None:
        raise NotFound(f"no refund with id {refund_id}")
    if refund.status is RefundStatus.DONE:
        return refund
    charge = await provider.refund_part(order.hold_id, f"refund:{refund.id}", refund.amount_minor)
    if charge is None:
        raise ChargeNotFound(
            f"the payment provider has no charge {order.hold_id} for order {order.id}; refund {refund.id} stays "
            "pending: refund the buyer by other means"
        )
    return await _complete(sessions, refund.id, charge.ref, utcnow())


async def _complete(sessions: async_sessionmaker[AsyncSession], refund_id: int, ref: str, now: datetime) -> Refund:
    async with sessions.begin() as session:
        order_id = await session.scalar(select(Refund.order_id).where(Refund.id == refund_id))
        order = await _locked(session, order_id) if order_id is not None else None
        refund = await session.scalar(
            select(Refund).where(Refund.id == refund_id).with_for_update().execution_options(populate_existing=True)
        )
        assert order is not None
        assert refund is not None
        if refund.status is RefundStatus.DONE:
            return refund  # another request or the worker finished it meanwhile
        await ledger.post_refund(
            session, order, refund_id=refund.id, amount=refund.amount_minor, refunded=order.refunded_minor,
            posted_at=now,
        )  # fmt: skip
        refund.status = RefundStatus.DONE
        refund.provider_ref = ref
        refund.completed_at = now
        order.refunded_minor += refund.amount_minor
    log.info("refund %d of order %d done: %d %s", refund.id, order.id, refund.amount_minor, refund.currency)
    return refund


async def list_refunds(session: AsyncSession, who: Principal, order_id: int) -> list[Refund]:
    """The order's refunds, oldest first: for its buyer, its brand's staff and admins."""
    require(who, who.authenticated, "see refunds", "signed-in users")
    await _order(session, who, order_id, lock=False)
    return list((await session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id))).all())


async def stale_refunds(sessions: async_sessionmaker[AsyncSession], limit: int = 100) -> list[int]:
    """Ids of refunds pending for longer than `STALE_AFTER` (left by a crash between the steps)."""
    async with sessions() as session:
        rows = await session.scalars(
            select(Refund.id)
            .where(Refund.status == RefundStatus.PENDING, Refund.created_at <= utcnow() - STALE_AFTER)
            .order_by(Refund.id)
            .limit(limit)
        )
        return list(rows.all())
