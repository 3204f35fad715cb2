"""Paid orders and their ledger postings written straight to SQL, from `commerce.split`, with the documented
signs (a sale: funding lines negative, shares positive; a refund: the same accounts, signs turned; no line of
0). For tests of what reads the ledger (statements), independent of the order writer that posts in production.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from livecommerce.commerce.split import Split, split_refund, split_sale
from livecommerce.models import (
    FeeBase,
    LedgerAccount,
    LedgerLine,
    Order,
    OrderStatus,
    PostingKind,
    Refund,
    RefundStatus,
)

__all__ = ["Sold", "refund", "sell"]


@dataclass
class Sold:
    """A paid order and the split it was posted with (what a refund reverses from)."""

    order: Order
    split: Split


def _lines(
    posting: str, kind: PostingKind, order: Order, split: Split, sign: int, at: datetime, refund_id: int | None
) -> list[LedgerLine]:
    amounts = {
        LedgerAccount.BUYER_PAID: -split.buyer_paid,
        LedgerAccount.PLATFORM_DISCOUNT: -split.platform_discount,
        LedgerAccount.PLATFORM_FEE: split.platform_fee,
        LedgerAccount.CREATOR_COMMISSION: split.creator_commission,
        LedgerAccount.BRAND_NET: split.brand_net,
    }
    return [
        LedgerLine(
            posting=posting,
            kind=kind,
            account=account,
            order_id=order.id,
            refund_id=refund_id,
            brand_id=order.brand_id,
            creator_id=order.creator_id,
            room_id=order.room_id,
            amount_minor=sign * amount,
            currency=order.currency,
            posted_at=at,
        )
        for account, amount in amounts.items()
        if amount != 0
    ]


async def sell(
    session: AsyncSession,
    *,
    hold_id: str,
    product_id: int,
    brand_id: int,
    buyer_id: int,
    at: datetime,
    unit_price: int,
    quantity: int = 1,
    room_id: int | None = None,
    creator_id: int | None = None,
    commission_bps: int = 0,
    fee_bps: int = 200,
    fee_base: FeeBase = FeeBase.BUYER_PAID,
    currency: str = "USD",
) -> Sold:
    """A paid order of `quantity` units at `unit_price`, paid at `at`, and its `sale:<hold_id>` posting."""
    total = unit_price * quantity
    order = Order(
        hold_id=hold_id, pool=hold_id.split(".")[0], sale_id=None, product_id=product_id, brand_id=brand_id,
        room_id=room_id, buyer_id=buyer_id, quantity=quantity, unit_price_minor=unit_price, total_minor=total,
        currency=currency, status=OrderStatus.PAID, payment_ref=f"test_{hold_id}", held_at=at - timedelta(seconds=5),
        expires_at=at + timedelta(minutes=5), paid_at=at, updated_at=at, creator_id=creator_id,
        commission_bps=commission_bps, fee_bps=fee_bps, fee_base=fee_base,
    )  # fmt: skip
    session.add(order)
    await session.flush()
    split = split_sale(total, commission_bps=commission_bps, fee_bps=fee_bps, fee_base=fee_base)
    session.add_all(_lines(f"sale:{hold_id}", PostingKind.SALE, order, split, 1, at, None))
    await session.flush()
    return Sold(order, split)


async def refund(session: AsyncSession, sold: Sold, amount: int, *, at: datetime, requested_by: int) -> Split:
    """A done refund of `amount` of the order (after what was refunded before) and its `refund:<id>` posting."""
    order = sold.order
    reversed_split = split_refund(sold.split, refunded=order.refunded_minor, amount=amount)
    row = Refund(
        order_id=order.id, key=f"k{order.refunded_minor}", amount_minor=amount, currency=order.currency,
        reason="test", status=RefundStatus.DONE, requested_by=requested_by, provider_ref="test_refund",
        created_at=at, completed_at=at,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    order.refunded_minor += amount
    session.add_all(_lines(f"refund:{row.id}", PostingKind.REFUND, order, reversed_split, -1, at, row.id))
    await session.flush()
    return reversed_split
