"""Pinning and buying in the browser: the host pins, viewers see it at once, buy and pay; every page follows.

`other_room` (other_host's, featuring the brand) sells `product` at its own price; `room` (host's) shows
`live_sale`, an invite-code sale of `sale_product` that started a minute ago (see `tests.support.world.seed_world`).
"""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Page, expect

from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.pools import PoolId
from tests.support.browser import DESKTOP, Pages, Site
from tests.support.waits import until

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

TEST_CARD = "4242 4242 4242 4242"


async def go_live(site: Site, room: str, host: str) -> None:
    await site.world.api.ok("POST", f"/api/v1/rooms/{site.world.ids[room]}/live", who=host)


async def watch(pages: Pages, room_id: int, who: str) -> Page:
    page = await pages.open(f"/watch/{room_id}", who)
    await expect(page.get_by_test_id("room-status")).to_have_text("live")  # joined: the snapshot arrived
    return page


async def pin(host: Page, product_id: int) -> None:
    row = host.locator(f"[data-testid=product-row][data-product-id='{product_id}']")
    await row.get_by_test_id("pin-button").click()


async def test_a_pin_reaches_two_viewers_and_a_purchase_moves_every_page(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    room, product = ids["other_room"], ids["product"]
    await go_live(site, "other_room", "other_host")
    host = await pages.open(f"/host/{room}", "other_host", DESKTOP)
    await expect(host.get_by_test_id("room-status")).to_have_text("live")
    brand = await pages.open("/brand", "staff", DESKTOP)
    await expect(brand.get_by_test_id("order-row")).to_have_count(1)  # the seeded order only
    buyer, other = await asyncio.gather(watch(pages, room, "viewer"), watch(pages, room, "viewer2"))
    await expect(buyer.get_by_test_id("pinned-card")).to_be_hidden()

    # Pushed over the socket (the pages never reload or poll for pins); how fast is for the benchmarks, not here.
    await pin(host, product)
    for page in (buyer, other):
        card = page.get_by_test_id("pinned-card")
        await expect(card).to_be_visible()
        await expect(card).to_have_attribute("data-product-id", str(product))
        await expect(page.get_by_test_id("pinned-title")).to_have_text("Product")
    for page in (buyer, other):
        await expect(page.get_by_test_id("pinned-price")).to_have_text("$19.99")
        await expect(page.get_by_test_id("stock-count")).to_have_text("10")

    await buyer.get_by_test_id("buy-button").click()
    await expect(buyer.get_by_test_id("hold-timer")).to_have_text(re.compile(r"^[0-9]+:[0-5][0-9]$"))
    for page in (buyer, other):
        await expect(page.get_by_test_id("stock-count")).to_have_text("9")  # held units are gone for everyone
    await buyer.get_by_test_id("card-input").fill(TEST_CARD)
    await buyer.get_by_test_id("pay-button").click()
    await expect(buyer.get_by_test_id("order-confirmation")).to_be_visible()
    await expect(buyer.get_by_test_id("order-confirmation")).to_contain_text("Paid")
    await expect(buyer.get_by_test_id("hold-panel")).to_be_hidden()
    for page in (buyer, other):
        await expect(page.get_by_test_id("stock-count")).to_have_text("9")
    await expect(host.get_by_test_id("metric-units")).to_have_text("1")
    await expect(host.get_by_test_id("metric-gmv")).to_have_text("$19.99")

    # The worker writes the order to SQL; the open brand dashboard lists it.
    async def recorded() -> bool:
        return await _paid_order_of(site, product, ids["viewer"]) is not None

    await until(recorded, 10, "the worker records the paid order")
    order = await _paid_order_of(site, product, ids["viewer"])
    assert order is not None
    row = brand.locator(f"[data-testid=order-row][data-order-id='{order}']")
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("$19.99")
    await expect(row).to_contain_text("paid")


async def _paid_order_of(site: Site, product_id: int, buyer_id: int) -> int | None:
    """The id of the buyer's paid order of the product, once the worker has written it."""
    page = await site.world.api.ok("GET", "/api/v1/orders?status=paid", who="viewer")
    found = [o["id"] for o in page["items"] if o["product_id"] == product_id and o["buyer_id"] == buyer_id]
    return int(found[0]) if found else None


async def test_an_invite_code_sale_refuses_without_a_code_and_takes_a_code_once(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    room, sale = ids["room"], ids["live_sale"]
    inventory = site.app[BUYING].inventory
    await until(lambda: _loaded(site, sale), 10, "the worker loads the live sale into Redis")
    codes = await site.world.api.ok("GET", f"/api/v1/sales/{sale}/codes", who="staff")
    code = next(c["code"] for c in codes["items"] if c["redeemed_hold"] is None)
    await go_live(site, "room", "host")
    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    await expect(host.get_by_test_id("room-status")).to_have_text("live")
    uninvited, invited, late = await asyncio.gather(
        watch(pages, room, "viewer3"), watch(pages, room, "viewer"), watch(pages, room, "viewer2")
    )
    await pin(host, ids["sale_product"])
    for page in (uninvited, invited, late):
        await expect(page.get_by_test_id("pinned-card")).to_have_attribute("data-product-id", str(ids["sale_product"]))
        await expect(page.get_by_test_id("code-input")).to_be_visible()
        await expect(page.get_by_test_id("pinned-price")).to_have_text("$9.99")
        await expect(page.get_by_test_id("list-price")).to_have_text("$29.99")

    await uninvited.get_by_test_id("buy-button").click()
    message = uninvited.get_by_test_id("message")
    await expect(message).to_have_attribute("data-code", "invite_code_required")
    await expect(message).to_have_text("this sale is invite-only: enter your invite code")
    await expect(uninvited.get_by_test_id("hold-panel")).to_be_hidden()

    await invited.get_by_test_id("code-input").fill(code.lower())  # codes are read aloud: case does not matter
    await invited.get_by_test_id("buy-button").click()
    await expect(invited.get_by_test_id("hold-panel")).to_be_visible()
    await expect(invited.get_by_test_id("message")).to_be_hidden()

    await late.get_by_test_id("code-input").fill(code)
    await late.get_by_test_id("buy-button").click()
    message = late.get_by_test_id("message")
    await expect(message).to_have_attribute("data-code", "invite_code_used")
    await expect(message).to_have_text("that invite code has already been used")
    await expect(late.get_by_test_id("hold-panel")).to_be_hidden()
    stock = (await inventory.stock([PoolId.sale(sale)]))[PoolId.sale(sale)]
    assert (stock.held, stock.available) == (1, 1), "one code, one hold"
    for page in (uninvited, invited, late):
        await expect(page.get_by_test_id("stock-count")).to_have_text("1")


async def _loaded(site: Site, sale_id: int) -> bool:
    pool = PoolId.sale(sale_id)
    return pool in await site.app[BUYING].inventory.stock([pool])
