"""The price of an order after vouchers, in integer minor units: pure arithmetic, no I/O.

An order carries at most one voucher per slot: a SELLER-funded voucher takes the *seller* slot, a PLATFORM- or
CO-funded one the *platform* slot. With `subtotal` the goods value (unit price * quantity):

- Minimum spend is checked against the subtotal for both vouchers (never against what is left after the other).
- The seller voucher applies first, on the subtotal; the platform voucher on what is left of it (`base`).
- An AMOUNT voucher takes off `amount_minor`; a PERCENT voucher floor(base * percent_bps / 10 000), at most
  `cap_minor`.
- No discount ever takes the buyer's payment below 1 minor unit: a discount is at most `base - 1`, so a base of
  0 or 1 gets no discount, and neither do both vouchers together.
- Each voucher's discount splits into a platform part, floor(discount * platform_share_bps / 10 000), and a
  seller part, the remainder (SELLER: share 0, all the seller's; PLATFORM: 10 000, all the platform's; CO: in
  between). `seller_funded` is the sum of the seller parts, `platform_funded` of the platform parts, and
  `buyer_pays = subtotal - seller_funded - platform_funded`: no cent is created or lost.
- `worst_cost` is the platform part of the largest discount a voucher can give (its amount, or its cap). The
  platform part is monotone in the discount, so what a claim reserves from a campaign budget always covers what
  its redemption settles.

The voucher's currency must equal the product's for it to apply; the caller checks that (the arithmetic has no
currencies to compare).
"""

from __future__ import annotations

from dataclasses import dataclass

from livecommerce.models import Funding, VoucherKind

__all__ = [
    "BPS",
    "Price",
    "VoucherTerms",
    "discount",
    "max_discount",
    "platform_part",
    "price_after",
    "slot_of",
    "worst_cost",
]

BPS = 10_000


@dataclass(frozen=True, slots=True)
class VoucherTerms:
    """What the arithmetic needs of a voucher (built from the SQL row by `vouchers.voucher_terms`)."""

    voucher_id: int
    kind: VoucherKind
    amount_minor: int  # AMOUNT: the amount off; PERCENT: 0
    percent_bps: int  # PERCENT: 1..10 000; AMOUNT: 0
    cap_minor: int  # PERCENT: the most it takes off (>= 1); AMOUNT: == amount_minor
    min_spend_minor: int  # goods value (subtotal) needed, >= 0
    platform_share_bps: int  # SELLER 0, PLATFORM 10 000, CO 1..9 999
    currency: str


@dataclass(frozen=True, slots=True)
class Price:
    """An order's price after vouchers. `subtotal_minor = buyer_pays + seller_funded + platform_funded`."""

    subtotal_minor: int
    seller_voucher_discount: int  # what the seller-slot voucher took off
    platform_voucher_discount: int  # what the platform-slot voucher took off
    seller_funded: int  # the seller parts of both discounts
    platform_funded: int  # the platform parts of both discounts
    buyer_pays: int


def slot_of(funding: Funding) -> str:
    """ "seller" for SELLER-funded vouchers, "platform" for PLATFORM and CO: one voucher per slot per order."""
    return "seller" if funding is Funding.SELLER else "platform"


def max_discount(v: VoucherTerms) -> int:
    """The most this voucher can ever take off: its amount, or its cap."""
    return v.amount_minor if v.kind is VoucherKind.AMOUNT else v.cap_minor


def discount(v: VoucherTerms, base_minor: int, *, subtotal_minor: int | None = None) -> int:
    """What `v` takes off `base_minor`; `subtotal_minor` (default: the base) is what the minimum spend is checked
    against. 0 below the minimum spend; never more than `base_minor - 1`."""
    spend = base_minor if subtotal_minor is None else subtotal_minor
    if spend < v.min_spend_minor or base_minor <= 1:
        return 0
    off = v.amount_minor if v.kind is VoucherKind.AMOUNT else min(base_minor * v.percent_bps // BPS, v.cap_minor)
    return max(0, min(off, base_minor - 1))


def platform_part(v: VoucherTerms, discount_minor: int) -> int:
    """The platform's part of a discount (rounded down); the seller funds the rest."""
    return discount_minor * v.platform_share_bps // BPS


def worst_cost(v: VoucherTerms) -> int:
    """What one claim reserves from the campaign budget: the platform part of the largest possible discount."""
    return platform_part(v, max_discount(v))


def price_after(subtotal_minor: int, *, seller: VoucherTerms | None, platform: VoucherTerms | None) -> Price:
    """The price of goods worth `subtotal_minor` after the seller-slot and the platform-slot vouchers."""
    if subtotal_minor < 0:
        raise ValueError(f"subtotal_minor is {subtotal_minor}; it is a goods value, at least 0")
    if seller is not None and seller.platform_share_bps != 0:
        raise ValueError(f"voucher {seller.voucher_id} is platform-funded: it goes in the platform slot")
    if platform is not None and platform.platform_share_bps == 0:
        raise ValueError(f"voucher {platform.voucher_id} is seller-funded: it goes in the seller slot")
    seller_off = 0 if seller is None else discount(seller, subtotal_minor)
    left = subtotal_minor - seller_off
    platform_off = 0 if platform is None else discount(platform, left, subtotal_minor=subtotal_minor)
    seller_funded = 0
    platform_funded = 0
    for v, off in ((seller, seller_off), (platform, platform_off)):
        if v is None:
            continue
        part = platform_part(v, off)
        platform_funded += part
        seller_funded += off - part
    return Price(
        subtotal_minor=subtotal_minor,
        seller_voucher_discount=seller_off,
        platform_voucher_discount=platform_off,
        seller_funded=seller_funded,
        platform_funded=platform_funded,
        buyer_pays=subtotal_minor - seller_funded - platform_funded,
    )
