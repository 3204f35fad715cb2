"""The leaderboard page in the browser: a viewer buys and pays in a live room; the worker's order writer counts
the order, and /rankings (polled) shows the room's host among the creators and the brand among the brands, with
the order's GMV, and so do the host console's live panel and the brand dashboard's GMV card. `room` is host's
and features `brand`; `product` is brand's (see `tests.support.world`)."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.support.browser import DESKTOP, Pages, Site

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

TEST_CARD = "4242 4242 4242 4242"


async def test_a_paid_order_reaches_the_leaderboards(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    board = await pages.open("/rankings", "other_staff", DESKTOP)
    await expect(board.get_by_test_id("creator-board")).to_contain_text("No sales in this period yet.")

    await site.world.api.ok("POST", f"/api/v1/rooms/{ids['room']}/live", who="host")
    console = await pages.open(f"/host/{ids['room']}", "host", DESKTOP)
    await expect(console.get_by_test_id("room-status")).to_have_text("live")
    row = console.locator(f"[data-testid=product-row][data-product-id='{ids['product']}']")
    await row.get_by_test_id("pin-button").click()
    await expect(row).to_have_attribute("data-pinned", "true")

    viewer = await pages.open(f"/watch/{ids['room']}", "viewer")
    await expect(viewer.get_by_test_id("pinned-card")).to_have_attribute("data-product-id", str(ids["product"]))
    await viewer.get_by_test_id("buy-button").click()
    await viewer.get_by_test_id("card-input").fill(TEST_CARD)
    await viewer.get_by_test_id("pay-button").click()
    await expect(viewer.get_by_test_id("order-confirmation")).to_contain_text("Paid")

    total = (await site.world.api.ok("GET", f"/api/v1/products/{ids['product']}"))["price_minor"]  # one unit
    creator = board.locator(f"[data-testid=creator-row][data-id='{ids['host']}']")
    await expect(creator.get_by_test_id("rank-gmv")).to_have_text(f"${total / 100:.2f}")
    await expect(creator.get_by_test_id("rank-level")).to_have_text("newcomer")
    brand = board.locator(f"[data-testid=brand-row][data-id='{ids['brand']}']")
    await expect(brand.get_by_test_id("rank-gmv")).to_have_text(f"${total / 100:.2f}")
    await board.get_by_test_id("rank-by").select_option("growth")
    await expect(creator.get_by_test_id("rank-growth")).to_contain_text("(new)")

    # The host console's live panel and the brand dashboard's GMV card follow (polled).
    await expect(console.get_by_test_id("dash-orders")).to_have_text("1")
    await expect(console.get_by_test_id("dash-buyers")).to_have_text("1")
    brand_page = await pages.open("/brand", "staff", DESKTOP)
    today = brand_page.get_by_test_id("brand-gmv-day")
    await expect(today.get_by_test_id("brand-gmv")).to_have_text(f"${total / 100:.2f}")
    await expect(today).to_contain_text("#1")

    dashboard = await site.world.api.ok("GET", f"/api/v1/rooms/{ids['room']}/dashboard", who="staff")
    assert (dashboard["gmv_minor"], dashboard["orders"], dashboard["buyers"]) == (total, 1, 1)
