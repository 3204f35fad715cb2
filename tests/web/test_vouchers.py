"""Vouchers in the browser, issue 14's last point: a host pins a voucher in the live; two viewers claim it; one
buys and pays the price after it; the brand's statement and the platform's budget move by the right amounts;
the leaderboard shows the creator.

The voucher is the seeded `platform_voucher` (`tests/support/voucher_world.py`): co-funded for `brand`, 10% off
capped at 500, the platform's share 50%, allotted 10 000 from `campaign`; a claim reserves its worst cost, the
platform's half of the cap: 250. `product` costs 1999 USD: 10% is 199 off (floor), the platform bears 99 (its
half, floor) and the brand 100; the buyer pays 1800.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import expect

from livecommerce.commerce.payments import TestModeProvider
from livecommerce.commerce.voucher_live import VOUCHERS
from livecommerce.state import REDIS
from tests.support.browser import DESKTOP, Pages, Site, screenshot
from tests.support.waits import eventually

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

TEST_CARD = "4242 4242 4242 4242"
PRICE, DISCOUNT, PLATFORM_PART, WORST = 1999, 199, 99, 250
PAYS = PRICE - DISCOUNT


async def _brand_totals(site: Site) -> dict[str, Any]:
    statement = await site.world.api.ok("GET", f"/api/v1/brands/{site.world.ids['brand']}/statement", who="staff")
    usd = [t for t in statement["totals"] if t["currency"] == "USD"]
    return usd[0] if usd else {"orders": 0, "gmv_minor": 0, "net_minor": 0, "commission_minor": 0, "fees_minor": 0}


async def test_a_pinned_voucher_is_claimed_and_paid_for_at_the_price_after_it(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    voucher, room = ids["platform_voucher"], ids["room"]
    before = await _brand_totals(site)
    await site.world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    console = await pages.open(f"/host/{room}", "host", DESKTOP)
    await expect(console.get_by_test_id("room-status")).to_have_text("live")
    product_row = console.locator(f"[data-testid=product-row][data-product-id='{ids['product']}']")
    await product_row.get_by_test_id("pin-button").click()
    await expect(product_row).to_have_attribute("data-pinned", "true")

    buyer = await pages.open(f"/watch/{room}", "viewer")
    other = await pages.open(f"/watch/{room}", "viewer2")
    for page in (buyer, other):
        await expect(page.get_by_test_id("pinned-card")).to_have_attribute("data-product-id", str(ids["product"]))
        await expect(page.get_by_test_id("voucher-card")).to_be_hidden()

    # The host pins the voucher from the console's list of vouchers usable in the room.
    voucher_row = console.locator(f"[data-testid=voucher-row][data-voucher-id='{voucher}']")
    await expect(voucher_row).to_contain_text("co-funded")
    await voucher_row.get_by_test_id("voucher-pin-button").click()
    await expect(voucher_row).to_have_attribute("data-pinned", "true")

    # Both viewers see the card and claim; the product card stays and shows the price after the voucher.
    for page in (buyer, other):
        card = page.get_by_test_id("voucher-card")
        await expect(card).to_have_attribute("data-voucher-id", str(voucher))
        await expect(page.get_by_test_id("voucher-terms")).to_have_text("10% off, up to $5.00")
        await page.get_by_test_id("claim-button").click()
        await expect(card).to_have_attribute("data-state", "claimed")
        await expect(page.get_by_test_id("claim-button")).to_have_text("Claimed")
        await expect(page.get_by_test_id("message")).to_contain_text("Voucher claimed")
        await expect(page.get_by_test_id("voucher-price-pay")).to_have_text(f"${PAYS / 100:.2f}")
        await expect(page.get_by_test_id("pinned-price")).to_have_text(f"${PRICE / 100:.2f}")
    await screenshot(buyer, "vouchers-viewer-claimed")
    await screenshot(console, "vouchers-host-console")
    live = site.app[VOUCHERS]
    budget = await live.budget(voucher)
    assert budget is not None
    assert (budget.claimed, budget.reserved, budget.spent) == (2, 2 * WORST, 0)

    # One buys: the hold and the Pay button say the price after the voucher, and that is what is charged.
    await buyer.get_by_test_id("buy-button").click()
    await expect(buyer.get_by_test_id("hold-price-pay")).to_have_text(f"${PAYS / 100:.2f}")
    await expect(buyer.get_by_test_id("pay-button")).to_have_text(f"Pay ${PAYS / 100:.2f}")
    await screenshot(buyer, "vouchers-viewer-hold")
    await buyer.get_by_test_id("card-input").fill(TEST_CARD)
    await buyer.get_by_test_id("pay-button").click()
    await expect(buyer.get_by_test_id("order-confirmation")).to_contain_text("Paid")
    await expect(buyer.get_by_test_id("paid-amount")).to_have_attribute("data-minor", str(PAYS))
    await expect(buyer.get_by_test_id("voucher-price")).to_have_count(0)  # the claim is used: full price again
    charges, _ = await TestModeProvider(site.app[REDIS]).charges(None, 100)
    ref = (await buyer.get_by_test_id("payment-ref").inner_text()).removeprefix("Payment ref ")
    assert [c.amount_minor for c in charges if c.ref == ref] == [PAYS], "the provider charged the price after it"

    # The platform's budget: the used claim spent its true cost and gave back the rest of its reservation; the
    # other viewer's claim still holds its worst cost.
    async def settled() -> bool:
        budget = await live.budget(voucher)
        return budget is not None and budget.spent == PLATFORM_PART

    await eventually(settled, "the claim is redeemed")
    budget = await live.budget(voucher)
    assert budget is not None
    assert (budget.funded, budget.reserved, budget.spent) == (10_000, WORST, PLATFORM_PART)
    assert budget.free == 10_000 - WORST - PLATFORM_PART

    # The brand's statement: one more order; what the brand nets follows the ledger's identity
    # (buyer paid + platform discount = brand net + commission + fee), with the platform's part paid to it.
    async def posted() -> bool:
        return int((await _brand_totals(site))["orders"]) == int(before["orders"]) + 1

    await eventually(posted, "the order is posted to the ledger")
    after = await _brand_totals(site)
    commission = after["commission_minor"] - before["commission_minor"]
    fees = after["fees_minor"] - before["fees_minor"]
    assert after["net_minor"] - before["net_minor"] == PAYS + PLATFORM_PART - commission - fees
    brand = await pages.open("/brand", "staff", DESKTOP)
    statement = brand.locator("[data-testid=statement-row][data-currency=USD]")
    await expect(statement.get_by_test_id("statement-net")).to_have_attribute("data-minor", str(after["net_minor"]))
    await expect(statement.get_by_test_id("statement-orders")).to_have_text(str(after["orders"]))
    assert after["seller_discount_minor"] - before.get("seller_discount_minor", 0) == DISCOUNT - PLATFORM_PART
    assert after["platform_discount_minor"] - before.get("platform_discount_minor", 0) == PLATFORM_PART
    for testid, key in (("statement-seller-vouchers", "seller_discount_minor"),
                        ("statement-platform-vouchers", "platform_discount_minor")):  # fmt: skip
        await expect(statement.get_by_test_id(testid)).to_have_attribute("data-minor", str(after[key]))

    # The leaderboard shows the room's host among the creators.
    board = await pages.open("/rankings", "staff", DESKTOP)
    await expect(board.locator(f"[data-testid=creator-row][data-id='{ids['host']}']")).to_be_visible()

    # The admin page shows the same budget use.
    admin = await pages.open("/admin/vouchers", "admin", DESKTOP)
    await (
        admin.locator(f"[data-testid=campaign-row][data-campaign-id='{ids['campaign']}']")
        .get_by_test_id("open-campaign")
        .click()
    )
    row = admin.locator(f"[data-testid=campaign-voucher-row][data-voucher-id='{voucher}']")
    for part, minor in (("spent", PLATFORM_PART), ("reserved", WORST), ("free", 10_000 - WORST - PLATFORM_PART)):
        await expect(row.get_by_test_id(f"voucher-{part}")).to_have_attribute("data-minor", str(minor))


async def test_the_brand_and_the_admin_create_vouchers_and_campaigns_on_their_pages(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    brand = await pages.open("/brand", "staff", DESKTOP)
    await brand.get_by_text("Create a voucher").click()
    form = brand.get_by_test_id("new-voucher-form")
    await form.get_by_test_id("voucher-title").fill("Tonight 3 off")
    await form.get_by_test_id("voucher-amount").fill("3.00")
    await form.get_by_test_id("voucher-product").select_option(str(ids["product"]))
    await form.get_by_test_id("voucher-quota").fill("20")
    await form.get_by_test_id("create-voucher").click()
    await expect(brand.get_by_test_id("message")).to_contain_text("Voucher “Tonight 3 off” created")
    made = brand.locator("[data-testid=voucher-row]", has_text="Tonight 3 off")
    await expect(made).to_have_attribute("data-funding", "seller")
    await expect(made.get_by_test_id("voucher-row-terms")).to_have_text("$3.00 off · seller-funded")
    await expect(made.get_by_test_id("voucher-claimed")).to_have_text("0 / 20")
    await made.get_by_test_id("end-voucher-button").click()
    await expect(made).to_have_attribute("data-status", "ended")

    admin = await pages.open("/admin/vouchers", "admin", DESKTOP)
    await admin.get_by_text("Create a campaign").click()
    await admin.get_by_test_id("campaign-name").fill("Double 12")
    await admin.get_by_test_id("campaign-budget").fill("500.00")
    await admin.get_by_test_id("create-campaign").click()
    await expect(admin.get_by_test_id("campaign-panel")).to_be_visible()
    await expect(admin.get_by_test_id("campaign-title")).to_contain_text("Double 12 · $500.00 not allotted")
    await admin.get_by_text("Create a platform or co-funded voucher").click()
    form = admin.get_by_test_id("new-campaign-voucher-form")
    await form.get_by_test_id("voucher-allotment").fill("100.00")
    await form.get_by_test_id("voucher-title").fill("Platform 15%")
    await form.get_by_test_id("voucher-kind").select_option("percent")
    await form.get_by_test_id("voucher-percent").fill("15")
    await form.get_by_test_id("voucher-cap").fill("4.00")
    await form.get_by_test_id("create-campaign-voucher").click()
    await expect(admin.get_by_test_id("message")).to_contain_text("Voucher “Platform 15%” created under “Double 12”")
    row = admin.locator("[data-testid=campaign-voucher-row]", has_text="Platform 15%")
    await expect(row).to_contain_text("15% off, up to $4.00 · platform-funded")
    await expect(row.get_by_test_id("voucher-funded")).to_have_attribute("data-minor", "10000")
    await expect(row.get_by_test_id("voucher-free")).to_have_attribute("data-minor", "10000")
    campaign = admin.locator("[data-testid=campaign-row]", has_text="Double 12")
    await expect(campaign.get_by_test_id("campaign-allotted")).to_have_attribute("data-minor", "10000")
    await screenshot(admin, "vouchers-admin")
    await screenshot(brand, "vouchers-brand")
