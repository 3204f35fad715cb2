"""The price after vouchers (`commerce.voucher_price`) as properties, over random prices, quantities, caps,
minimum spends, kinds and funding splits: no cent is created or lost, the buyer always pays at least 1 minor
unit, and what a claim reserves covers what it settles. Then worked examples of each rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecommerce.commerce.voucher_price import (
    BPS,
    Price,
    VoucherTerms,
    discount,
    max_discount,
    platform_part,
    price_after,
    worst_cost,
)
from livecommerce.models import Funding, VoucherKind

_MINOR = st.one_of(st.integers(1, 10), st.integers(1, 10**6), st.integers(1, 10**12))


@st.composite
def terms(draw: st.DrawFn, funding: Funding) -> VoucherTerms:
    kind = draw(st.sampled_from(list(VoucherKind)))
    if kind is VoucherKind.AMOUNT:
        amount = draw(_MINOR)
        percent, cap = 0, amount
    else:
        amount = 0
        percent = draw(st.one_of(st.integers(1, BPS), st.sampled_from([1, 5000, BPS])))
        cap = draw(_MINOR)
    fixed = {Funding.SELLER: 0, Funding.PLATFORM: BPS}
    share = fixed[funding] if funding in fixed else draw(st.integers(1, BPS - 1))
    return VoucherTerms(
        voucher_id=draw(st.integers(1, 1000)), kind=kind, amount_minor=amount, percent_bps=percent, cap_minor=cap,
        min_spend_minor=draw(st.one_of(st.just(0), st.integers(0, 10**7))), platform_share_bps=share,
        currency="USD",
    )  # fmt: skip


@st.composite
def orders(draw: st.DrawFn) -> tuple[int, VoucherTerms | None, VoucherTerms | None]:
    price = draw(st.one_of(st.integers(0, 3), st.integers(0, 10**7), st.integers(0, 10**10)))
    subtotal = price * draw(st.integers(1, 100))
    seller = draw(st.none() | terms(Funding.SELLER))
    platform = draw(st.none() | terms(Funding.PLATFORM) | terms(Funding.CO))
    return subtotal, seller, platform


@settings(max_examples=2000, deadline=None)
@given(orders())
def test_no_cent_is_created_or_lost_and_the_buyer_pays_at_least_one(
    order: tuple[int, VoucherTerms | None, VoucherTerms | None],
) -> None:
    subtotal, seller, platform = order
    price = price_after(subtotal, seller=seller, platform=platform)
    assert price.subtotal_minor == subtotal
    assert subtotal == price.buyer_pays + price.seller_funded + price.platform_funded
    assert (
        price.seller_voucher_discount + price.platform_voucher_discount == price.seller_funded + price.platform_funded
    )
    assert min(price.seller_voucher_discount, price.platform_voucher_discount, price.seller_funded) >= 0
    assert price.platform_funded >= 0
    if subtotal >= 1:
        assert price.buyer_pays >= 1
    else:
        assert price.buyer_pays == 0
    for v, off in ((seller, price.seller_voucher_discount), (platform, price.platform_voucher_discount)):
        if v is None:
            assert off == 0
            continue
        assert off <= max_discount(v)  # at most the amount, or the cap
        if subtotal < v.min_spend_minor:
            assert off == 0  # minimum spend, against the subtotal, for both
        assert platform_part(v, off) <= worst_cost(v)  # the claim's reservation covers its settlement
    # The platform funds only the platform slot's platform part; the seller voucher is all the seller's.
    expected = 0 if platform is None else platform_part(platform, price.platform_voucher_discount)
    assert price.platform_funded == expected


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**12), terms(Funding.CO))
def test_the_platform_part_is_monotone_in_the_discount(a: int, b: int, v: VoucherTerms) -> None:
    low, high = sorted((a, b))
    assert 0 <= platform_part(v, low) <= platform_part(v, high) <= high


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 10**10), terms(Funding.PLATFORM))
def test_a_percent_discount_is_the_floor_capped_and_never_the_whole_base(base: int, v: VoucherTerms) -> None:
    off = discount(v, base)
    if base < v.min_spend_minor or base <= 1:
        assert off == 0
        return
    raw = v.amount_minor if v.kind is VoucherKind.AMOUNT else min(base * v.percent_bps // BPS, v.cap_minor)
    assert off == min(raw, base - 1)


# --- worked examples ------------------------------------------------------------------------------------------


def _amount(amount: int, *, share: int = 0, min_spend: int = 0) -> VoucherTerms:
    return VoucherTerms(1, VoucherKind.AMOUNT, amount, 0, amount, min_spend, share, "USD")


def _percent(bps: int, cap: int, *, share: int = BPS, min_spend: int = 0) -> VoucherTerms:
    return VoucherTerms(2, VoucherKind.PERCENT, 0, bps, cap, min_spend, share, "USD")


def test_a_percent_voucher_rounds_down_and_stops_at_its_cap() -> None:
    assert price_after(2999, seller=None, platform=_percent(1000, 500)) == Price(2999, 0, 299, 0, 299, 2700)
    assert price_after(9999, seller=None, platform=_percent(1000, 500)) == Price(9999, 0, 500, 0, 500, 9499)


def test_the_seller_voucher_goes_first_and_a_co_voucher_splits_its_discount() -> None:
    # 2 x 1999: the seller's 200 off, then 10% of the 3798 left (379), half the platform's (189, rounded down).
    price = price_after(3998, seller=_amount(200), platform=_percent(1000, 500, share=5000))
    assert price == Price(3998, 200, 379, seller_funded=200 + 190, platform_funded=189, buyer_pays=3998 - 579)


def test_the_minimum_spend_is_checked_against_the_subtotal_for_both_vouchers() -> None:
    assert price_after(4999, seller=_amount(500, min_spend=5000), platform=None).buyer_pays == 4999
    # 1000 of goods: the seller's 200 off leaves 800, and the platform's 1000 minimum spend still holds.
    price = price_after(1000, seller=_amount(200), platform=_amount(100, share=BPS, min_spend=1000))
    assert (price.seller_voucher_discount, price.platform_voucher_discount, price.buyer_pays) == (200, 100, 700)


def test_no_discount_takes_the_payment_below_one_minor_unit() -> None:
    assert price_after(3000, seller=_amount(5000), platform=None) == Price(3000, 2999, 0, 2999, 0, 1)
    # The seller took all it could: the platform voucher finds a base of 1 and gives nothing.
    assert price_after(3000, seller=_amount(5000), platform=_amount(100, share=BPS)).platform_voucher_discount == 0
    for subtotal in (0, 1):
        price = price_after(subtotal, seller=_amount(1), platform=_percent(BPS, 10))
        assert price == Price(subtotal, 0, 0, 0, 0, subtotal)


def test_worst_cost_is_the_platform_part_of_the_amount_or_cap() -> None:
    assert worst_cost(_percent(1000, 500, share=5000)) == 250
    assert worst_cost(_percent(1000, 501, share=5000)) == 250  # rounded down, as every settlement is
    assert worst_cost(_amount(300, share=BPS)) == 300
    assert worst_cost(_amount(300)) == 0  # a seller voucher reserves nothing from a campaign


def test_a_voucher_in_the_wrong_slot_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="platform slot"):
        price_after(100, seller=_amount(10, share=BPS), platform=None)
    with pytest.raises(ValueError, match="seller slot"):
        price_after(100, seller=None, platform=_amount(10))
    with pytest.raises(ValueError, match="at least 0"):
        price_after(-1, seller=None, platform=None)
