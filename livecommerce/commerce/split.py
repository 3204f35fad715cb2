"""The split of an order's money, and of each refund, in integer minor units: no rounding creates or loses a cent.

A sale of `buyer_paid` (what the buyer's card was charged) with a `platform_discount` (the platform-funded
part of the order's vouchers) splits into

    platform_fee       = floor(fee_base * fee_bps / 10 000)     fee_base = buyer_paid, or buyer_paid + discount
    creator_commission = floor(buyer_paid * commission_bps / 10 000)
    brand_net          = buyer_paid + platform_discount - platform_fee - creator_commission

so `buyer_paid + platform_discount = brand_net + creator_commission + platform_fee` exactly: each share rounds
down and the brand takes the remainder (at most one minor unit per share). The seller-funded part of the
vouchers (`seller_discount`) is money nobody paid: the brand bears it by receiving less (it is already out of
`buyer_paid`), and the split carries it only for the ledger's memo pair (`seller_discount` / `brand_discount`,
which sum to 0 by themselves). The goods value is `buyer_paid + platform_discount + seller_discount`.

A refund of `amount` (after `refunded` was already given back) reverses each share pro rata *cumulatively*:
after refunds totalling R, the share reversed is floor(share * R / buyer_paid), and this refund reverses the
difference from before it; the brand again takes the remainder. So a refund in full reverses the commission
and the fee in full, partial refunds that add up to the whole reverse exactly what was posted, and no
sequence of refunds drifts by a cent. (One refund's brand line may be a unit more or less than its pro-rata
part; the brand's total is exact once the sum is.)
"""

from __future__ import annotations

from dataclasses import dataclass

from livecommerce.models import FeeBase

__all__ = ["Split", "split_refund", "split_sale"]

_BPS = 10_000


@dataclass(frozen=True, slots=True)
class Split:
    """One posting's amounts, all ≥ 0 for a sale; for a refund, what is reversed (also ≥ 0 except `brand_net`,
    which may be -1 … +1 off its pro-rata part, see the module docstring)."""

    buyer_paid: int
    platform_discount: int
    platform_fee: int
    creator_commission: int
    brand_net: int
    seller_discount: int = 0  # the memo pair's amount (not part of the balance: see the module docstring)

    @property
    def balanced(self) -> bool:
        return self.buyer_paid + self.platform_discount == self.brand_net + self.creator_commission + self.platform_fee


def split_sale(
    buyer_paid: int, *, commission_bps: int, fee_bps: int, fee_base: FeeBase, platform_discount: int = 0,
    seller_discount: int = 0,
) -> Split:  # fmt: skip
    if buyer_paid < 0 or platform_discount < 0 or seller_discount < 0:
        raise ValueError("amounts must not be negative")
    base = buyer_paid + (platform_discount if fee_base is FeeBase.BUYER_PAID_PLUS_DISCOUNT else 0)
    fee = base * fee_bps // _BPS
    commission = buyer_paid * commission_bps // _BPS
    brand = buyer_paid + platform_discount - fee - commission
    return Split(buyer_paid, platform_discount, fee, commission, brand, seller_discount)


def split_refund(sale: Split, *, refunded: int, amount: int) -> Split:
    """What a refund of `amount` reverses, `refunded` having been given back already (0 ≤ refunded,
    refunded + amount ≤ sale.buyer_paid)."""
    if amount < 1 or refunded < 0 or refunded + amount > sale.buyer_paid:
        raise ValueError(f"a refund must be 1..{sale.buyer_paid - refunded} (already refunded {refunded})")
    after = refunded + amount

    def reversed_by(share: int) -> int:
        return share * after // sale.buyer_paid - share * refunded // sale.buyer_paid

    discount = reversed_by(sale.platform_discount)
    fee = reversed_by(sale.platform_fee)
    commission = reversed_by(sale.creator_commission)
    seller = reversed_by(sale.seller_discount)
    return Split(amount, discount, fee, commission, amount + discount - fee - commission, seller)
