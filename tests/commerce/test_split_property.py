"""The split arithmetic (`commerce.split`) as properties: over random prices, quantities, rates, fee rules and
sequences of partial refunds, no rounding creates or loses a minor unit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecommerce.commerce.split import Split, split_refund, split_sale
from livecommerce.commerce.terms import MAX_COMMISSION_BPS, MAX_FEE_BPS
from livecommerce.models import FeeBase

commission = st.one_of(st.just(0), st.integers(100, MAX_COMMISSION_BPS))
fee = st.integers(0, MAX_FEE_BPS)
base = st.sampled_from(list(FeeBase))
SHARES = ("buyer_paid", "platform_discount", "platform_fee", "creator_commission", "brand_net")


@st.composite
def sales(draw: st.DrawFn) -> tuple[Split, list[int]]:
    """A sale (price x quantity, with a platform discount now and then) and refunds adding up to at most it."""
    price = draw(st.integers(0, 10**9))
    quantity = draw(st.integers(1, 100))
    discount = draw(st.one_of(st.just(0), st.integers(0, 10**8)))
    sale = split_sale(
        price * quantity, commission_bps=draw(commission), fee_bps=draw(fee), fee_base=draw(base),
        platform_discount=discount,
    )  # fmt: skip
    refunds: list[int] = []
    left = sale.buyer_paid
    for _ in range(draw(st.integers(0, 8))):
        if left < 1:
            break
        amount = draw(st.one_of(st.integers(1, left), st.just(left), st.integers(1, min(left, 3))))
        refunds.append(amount)
        left -= amount
    return sale, refunds


def _reversals(sale: Split, refunds: list[int]) -> list[Split]:
    out: list[Split] = []
    refunded = 0
    for amount in refunds:
        out.append(split_refund(sale, refunded=refunded, amount=amount))
        refunded += amount
    return out


@settings(max_examples=1000, deadline=None)
@given(sales())
def test_every_posting_balances_and_refunds_never_reverse_more_than_was_posted(case: tuple[Split, list[int]]) -> None:
    sale, refunds = case
    assert sale.balanced
    assert min(sale.platform_fee, sale.creator_commission, sale.brand_net, sale.platform_discount) >= 0
    assert sale.creator_commission <= sale.buyer_paid
    reversals = _reversals(sale, refunds)
    for reversal in reversals:
        assert reversal.balanced
        assert min(reversal.platform_fee, reversal.creator_commission, reversal.platform_discount) >= 0
    left = {share: getattr(sale, share) - sum(getattr(r, share) for r in reversals) for share in SHARES}
    for share in ("platform_discount", "platform_fee", "creator_commission"):
        assert 0 <= left[share] <= getattr(sale, share), (share, left)  # never more reversed than was posted
    # What stands after the refunds still balances: the ledger's total over all postings is 0.
    assert left["buyer_paid"] + left["platform_discount"] == (
        left["brand_net"] + left["creator_commission"] + left["platform_fee"]
    )
    assert left["buyer_paid"] == sale.buyer_paid - sum(refunds)


@settings(max_examples=1000, deadline=None)
@given(sales())
def test_refunds_of_the_whole_reverse_commission_fee_and_discount_exactly(case: tuple[Split, list[int]]) -> None:
    sale, refunds = case
    if sale.buyer_paid == 0:
        return
    rest = sale.buyer_paid - sum(refunds)
    reversals = _reversals(sale, [*refunds, rest] if rest else refunds)
    assert sum(r.buyer_paid for r in reversals) == sale.buyer_paid
    assert sum(r.creator_commission for r in reversals) == sale.creator_commission
    assert sum(r.platform_fee for r in reversals) == sale.platform_fee
    assert sum(r.platform_discount for r in reversals) == sale.platform_discount
    assert sum(r.brand_net for r in reversals) == sale.brand_net


@given(st.integers(1, 10**9), commission, fee, base)
def test_a_refund_in_one_go_is_the_sale_itself(paid: int, rate: int, fee_bps: int, fee_base: FeeBase) -> None:
    sale = split_sale(paid, commission_bps=rate, fee_bps=fee_bps, fee_base=fee_base)
    assert split_refund(sale, refunded=0, amount=paid) == sale


@given(sales(), st.integers(1, 5))
def test_a_refund_beyond_what_is_left_is_refused(case: tuple[Split, list[int]], over: int) -> None:
    sale, refunds = case
    left = sale.buyer_paid - sum(refunds)
    with pytest.raises(ValueError, match="a refund must be"):
        split_refund(sale, refunded=sum(refunds), amount=left + over)
