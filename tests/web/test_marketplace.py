"""The marketplace in the browser, one flow: a creator applies to a brand's open plan on /host, the brand
approves on its dashboard, the creator pins that brand's product in their own live room (which does not feature
the brand), a viewer buys and pays, and then the creator's earnings and the brand's statement show the
commission and the fee, as posted to the ledger by the worker's order writer.

`other_plan` is other_brand's open plan: other_product ($19.99) at 5 %; `room` is host's and features only
`brand` (see `tests.support.world.seed_world`). The fee is the built-in 2 % of what the buyer paid.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.support.browser import DESKTOP, Pages, Site

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

TEST_CARD = "4242 4242 4242 4242"
PRICE, COMMISSION, FEE = 1999, 1999 * 500 // 10_000, 1999 * 200 // 10_000  # 99 and 39 minor units


async def test_a_creator_sells_an_approved_brand_and_both_statements_show_it(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    product, plan = ids["other_product"], ids["other_plan"]

    creator = await pages.open("/host", "host", DESKTOP)
    offer = creator.locator(f"[data-testid=open-plan][data-plan-id='{plan}']")
    await expect(offer).to_contain_text("5%")
    await offer.get_by_test_id("apply-button").click()
    await expect(offer.get_by_test_id("plan-status")).to_have_text("applied")

    brand = await pages.open("/brand", "other_staff", DESKTOP)
    application = brand.locator(f"[data-testid=application-row][data-creator-id='{ids['host']}']")
    await application.get_by_test_id("approve-button").click()
    await expect(application).to_have_count(0)
    await expect(brand.locator(f"[data-testid=creator-row][data-creator-id='{ids['host']}']")).to_contain_text(
        "approved"
    )
    mine = creator.locator(f"[data-testid=collaboration-row][data-brand-id='{ids['other_brand']}']")
    await expect(mine).to_have_attribute("data-status", "approved")  # the creator's page follows (polled)
    await expect(mine.get_by_test_id("collaboration-rates")).to_contain_text("5%")

    await site.world.api.ok("POST", f"/api/v1/rooms/{ids['room']}/live", who="host")
    console = await pages.open(f"/host/{ids['room']}", "host", DESKTOP)
    await expect(console.get_by_test_id("room-status")).to_have_text("live")
    row = console.locator(f"[data-testid=product-row][data-product-id='{product}']")
    await row.get_by_test_id("pin-button").click()
    await expect(row).to_have_attribute("data-pinned", "true")

    viewer = await pages.open(f"/watch/{ids['room']}", "viewer")
    await expect(viewer.get_by_test_id("pinned-card")).to_have_attribute("data-product-id", str(product))
    await viewer.get_by_test_id("buy-button").click()
    await viewer.get_by_test_id("card-input").fill(TEST_CARD)
    await viewer.get_by_test_id("pay-button").click()
    await expect(viewer.get_by_test_id("order-confirmation")).to_contain_text("Paid")

    # The worker writes the order and its ledger lines; both pages poll their statements.
    earnings = creator.locator("[data-testid=earnings-row][data-currency=USD]")
    await expect(earnings.get_by_test_id("earnings-commission")).to_have_attribute("data-minor", str(COMMISSION))
    await expect(earnings.get_by_test_id("earnings-net")).to_have_text("$0.99")
    await expect(earnings.get_by_test_id("earnings-gmv")).to_have_text("$19.99")
    statement = brand.locator("[data-testid=statement-row][data-currency=USD]")
    await expect(statement.get_by_test_id("statement-commission")).to_have_attribute("data-minor", str(COMMISSION))
    await expect(statement.get_by_test_id("statement-fees")).to_have_attribute("data-minor", str(FEE))
    await expect(statement.get_by_test_id("statement-net")).to_have_text("$18.61")  # 19.99 - 0.99 - 0.39
    seller = brand.locator(f"[data-testid=creator-row][data-creator-id='{ids['host']}']")
    await expect(seller.get_by_test_id("creator-commission")).to_have_text("$0.99")
    await expect(seller.get_by_test_id("creator-orders")).to_have_text("1")
