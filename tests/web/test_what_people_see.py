"""What a shopper and a host see, at a phone's size (390x844) and a desktop's (1280x800): text that is there
and readable, parts where they belong, live state without a reload. Each test reads the page as a person
would (visible text, boxes on screen, the chart's pixels), not only that an element exists.

`room` (host's) shows `live_sale`, an invite-code sale of `sale_product` (see `tests.support.world.seed_world`);
`other_room` (other_host's) features the same brand.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.async_api import FloatRect, Locator, Page, expect

from tests.support.browser import DESKTOP, PHONE, Pages, Site, screenshot
from tests.support.waits import until

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

SIZES = {"phone": PHONE, "desktop": DESKTOP}
TEST_CARD = "4242 4242 4242 4242"
CODE = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{10}$")  # livecommerce/commerce/sales.py: no 0/O/1/I/L


async def box(locator: Locator) -> FloatRect:
    found = await locator.bounding_box()
    assert found is not None, f"{locator} is not on screen"
    return found


async def line_height(locator: Locator) -> float:
    value = await locator.evaluate(
        "n => { const s = getComputedStyle(n); return s.lineHeight === 'normal' ? 1.2 * parseFloat(s.fontSize)"
        " : parseFloat(s.lineHeight); }"
    )
    return float(value)


async def gap(near: Locator, far: Locator) -> float:
    """The distance in px between two boxes (0 when they touch or overlap)."""
    a, b = await box(near), await box(far)
    dx = max(0.0, b["x"] - (a["x"] + a["width"]), a["x"] - (b["x"] + b["width"]))
    dy = max(0.0, b["y"] - (a["y"] + a["height"]), a["y"] - (b["y"] + b["height"]))
    return float((dx * dx + dy * dy) ** 0.5)


async def on_screen(page: Page, locator: Locator) -> bool:
    """Whether the element is inside the viewport (scrolled into view), not just somewhere on the page."""
    b = await box(locator)
    viewport = page.viewport_size
    assert viewport is not None
    return b["y"] >= 0 and b["y"] + b["height"] <= viewport["height"]


async def not_wider_than_screen(page: Page) -> None:
    width = await page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"the page is {width[0]} px wide on a {width[1]} px screen"


def later(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def new_product(site: Site, title: str, stock: int = 5) -> int:
    body = await site.world.api.ok(
        "POST", f"/api/v1/brands/{site.world.ids['brand']}/products", who="staff", status=201,
        json={"sku": "SKU-" + re.sub(r"\W", "", title)[:20], "title": title, "price_minor": 2500, "currency": "USD",
              "stock": stock},
    )  # fmt: skip
    return int(body["id"])


async def scheduled_sale(site: Site, product: int, room: int, starts_in_minutes: float, **terms: Any) -> int:
    api = site.world.api
    sale = await api.ok(
        "POST", "/api/v1/sales", who="staff", status=201,
        json={"product_id": product, "price_minor": 700, "quantity": 3, "per_buyer_limit": 1, "hold_seconds": 300,
              "starts_at": later(starts_in_minutes), "ends_at": later(60 + starts_in_minutes),
              "audience": "open", "room_ids": [room], **terms},
    )  # fmt: skip
    await api.ok("POST", f"/api/v1/sales/{sale['id']}/schedule", who="staff")
    return int(sale["id"])


async def until_live(site: Site, sale: int) -> None:
    async def live() -> bool:
        body = await site.world.api.ok("GET", f"/api/v1/sales/{sale}", who="staff")
        return bool(body["status"] == "live")

    await until(live, 10, f"the worker puts sale {sale} live")


# --- the host's room list and the landing page ----------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_the_room_list_shows_each_title_and_date_on_a_line_or_two(pages: Pages, site: Site, size: str) -> None:
    page = await pages.open("/host", "host", SIZES[size])
    rows = page.get_by_test_id("room-row")
    await expect(rows).to_have_count(2)  # room and private_room
    for index in range(2):
        row = rows.nth(index)
        title, start = row.get_by_test_id("room-name"), row.get_by_test_id("room-start")
        await expect(title).to_be_visible()
        await expect(title).to_have_text(re.compile(r"^(room|private_room)$"))
        assert (await box(title))["width"] >= 80, "the title has room to be read"
        await expect(start).to_have_text(re.compile(r"\d{4}"))  # a date with its year
        start_box, lines = await box(start), await line_height(start)
        assert start_box["height"] <= 2 * lines + 1, f"the date takes {start_box['height']:.0f} px: wrapped"
        assert start_box["width"] >= 100, "the date is not squeezed into a column"
        await expect(row.get_by_test_id("room-link")).to_be_visible()
    await not_wider_than_screen(page)
    await screenshot(page, f"host-list-{size}")

    # The landing page writes the same date the same way (one formatter for every page).
    room = site.world.ids["room"]
    row = page.locator(f"[data-testid=room-row][data-room-id='{room}']")
    shown = await row.get_by_test_id("room-start").text_content()
    landing = await pages.open("/", None, SIZES[size])
    card = landing.locator(f"[data-testid=landing-room][data-room-id='{room}']")
    await expect(card.get_by_test_id("room-start")).to_have_text(shown or "-")


# --- live state on the console and the brand page -------------------------------------------------------------


async def test_a_sale_that_goes_live_and_sells_shows_so_without_a_reload(pages: Pages, site: Site) -> None:
    ids, api = site.world.ids, site.world.api
    room = ids["room"]
    await api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    product = await new_product(site, "Glow serum")
    sale = await scheduled_sale(site, product, room, starts_in_minutes=30)

    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    brand = await pages.open("/brand", "staff", PHONE)
    host_row = host.locator(f"[data-testid=sale-row][data-sale-id='{sale}']")
    brand_row = brand.locator(f"[data-testid=sale-row][data-sale-id='{sale}']")
    await expect(host_row.get_by_test_id("sale-status")).to_have_text("scheduled")
    await expect(brand_row.get_by_test_id("sale-status")).to_have_text("scheduled")
    # The host starts the shortest countdown; the sale opens when it ends.
    await host_row.get_by_test_id("countdown-seconds").fill("10")
    await host_row.get_by_test_id("countdown-button").click()
    await expect(host.get_by_test_id("message")).to_contain_text("Countdown started")

    # The worker marks it live once it has started: both pages follow, with no reload.
    await expect(host_row.get_by_test_id("sale-status")).to_have_text("live", timeout=16_000)
    await expect(host_row).to_have_attribute("data-status", "live")
    await expect(host_row.get_by_test_id("countdown-button")).to_have_count(0)
    await expect(host_row).not_to_contain_text("Start countdown")
    await expect(brand_row.get_by_test_id("sale-status")).to_have_text("live", timeout=5_000)
    await expect(brand_row.get_by_test_id("end-sale-button")).to_be_visible()

    hold = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer", json={"product_id": product}, status=201)
    assert hold["unit_price_minor"] == 700, "bought at the sale's price"
    await api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": TEST_CARD})
    await expect(host.get_by_test_id("metric-units")).to_have_text("1", timeout=6_000)
    await expect(host_row.get_by_test_id("sale-status")).to_have_text("live")

    # The brand's orders say who bought, by name.
    order_row = brand.locator(f"[data-testid=order-row][data-hold-id='{hold['id']}']")
    await expect(order_row.get_by_test_id("order-buyer")).to_have_text("Viewer", timeout=10_000)
    await expect(brand.get_by_test_id("order-list")).not_to_contain_text(re.compile(r"User \d"))

    # The console's chart: lines only (no grey block over the plot), and the GMV line shows even where it
    # runs on top of the units line (both scale to their own maximum, so they coincide here).
    await expect(host.get_by_test_id("metrics-chart").locator("polyline")).to_have_count(3, timeout=6_000)
    await host.wait_for_function(
        "() => { const t = document.querySelector('[data-testid=metrics-chart] title');"
        " return t && /GMV: \\$7\\.00/.test(t.textContent); }",
        timeout=6_000,
    )
    # One more sample at the new figures, so the lines run flat together: wait for the chart to draw it.
    drawn = "document.querySelector('[data-testid=metrics-chart] polyline').points.numberOfItems"
    await host.wait_for_function(f"n => {drawn} > n", arg=await host.evaluate(drawn), timeout=6_000)
    chart = host.get_by_test_id("metrics-chart")
    assert await chart.locator("path, rect, polygon").count() == 0, "nothing but lines is drawn over the plot"
    colours = await pixels(host, chart)
    assert colours["gmv"] >= 100, f"the GMV line is visible: {colours}"
    assert colours["units"] >= 100, f"the units line is visible: {colours}"
    assert colours["plain"] >= 0.8 * colours["total"], f"the plot shows through: no block covers it: {colours}"
    legend = host.locator(".legend").filter(has_text="GMV")
    gmv = legend.locator("[data-series=GMV]")
    await expect(gmv).to_have_text("GMV")
    swatch = await pixels(host, gmv.locator("svg"))
    assert swatch["gmv"] >= 5, f"the legend draws the GMV line: {swatch}"
    await screenshot(host, "host-chart-desktop")


_PIXELS = """async ([png]) => {
  const bitmap = await createImageBitmap(await (await fetch('data:image/png;base64,' + png)).blob());
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext('2d');
  context.drawImage(bitmap, 0, 0);
  const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const off = (i, [r, g, b]) => Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b);
  const at = 4 * (bitmap.width * 2 + (bitmap.width >> 1));  // near the top edge, mid-way: never under a line
  const background = [data[at], data[at + 1], data[at + 2]];
  const counts = {gmv: 0, units: 0, plain: 0, other: 0, total: bitmap.width * bitmap.height};
  for (let i = 0; i < data.length; i += 4) {
    if (off(i, [224, 36, 94]) < 90) counts.gmv += 1;
    else if (off(i, [19, 160, 90]) < 90) counts.units += 1;
    else if (off(i, background) < 14 || off(i, [220, 223, 230]) < 14) counts.plain += 1;  // the plot, its grid
    else counts.other += 1;
  }
  return counts;
}"""


async def pixels(page: Page, locator: Locator) -> dict[str, int]:
    """Counts of the pixels on screen in the element: GMV red, units green, plain background (or grid) and the
    rest (line edges, the viewers' line, or a fill over the plot)."""
    png = base64.b64encode(await locator.screenshot()).decode()
    counts: dict[str, int] = await page.evaluate(_PIXELS, [png])
    return counts


# --- the brand's sale form ------------------------------------------------------------------------------------


async def test_the_sale_form_answers_next_to_its_button_and_starts_afresh(pages: Pages, site: Site) -> None:
    ids = site.world.ids
    brand = await pages.open("/brand", "staff", PHONE)
    await expect(brand.get_by_test_id("product-row").first).to_be_visible()
    await brand.get_by_text("Plan a flash sale").click()
    form = brand.get_by_test_id("new-sale-form")
    await form.get_by_test_id("sale-product").select_option(str(ids["product"]))
    await form.get_by_test_id("sale-price").fill("7.50")
    await form.get_by_test_id("sale-quantity").fill("1")
    await form.get_by_test_id("sale-limit").fill("2")  # more than the quantity: refused by the server
    await form.locator(f"input[name=room][value='{ids['other_room']}']").check()
    button, message = form.get_by_test_id("create-sale"), brand.get_by_test_id("message")
    await button.click()
    await expect(message).to_have_attribute("data-kind", "error")
    await expect(message).to_contain_text("per_buyer_limit")
    assert await gap(message, button) <= 60, "the refusal shows right by the button that was pressed"
    assert await on_screen(brand, message), "the refusal is on screen, not scrolled away at the top"

    await form.get_by_test_id("sale-quantity").fill("4")
    await button.click()
    await expect(message).to_have_attribute("data-kind", "ok")
    await expect(message).to_contain_text(re.compile(r"Sale #\d+ scheduled"))
    assert await gap(message, button) <= 60
    # The sale exists: the form is back to its defaults, so a second tap does not plan a duplicate.
    await expect(form.get_by_test_id("sale-price")).to_have_value("")
    await expect(form.get_by_test_id("sale-quantity")).to_have_value("50")
    await expect(form.get_by_test_id("sale-limit")).to_have_value("2")
    assert not await form.locator(f"input[name=room][value='{ids['other_room']}']").is_checked()
    await screenshot(brand, "brand-sale-form-phone")


# --- the viewer page ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_a_missing_room_says_so_once_and_offers_nothing_to_do(pages: Pages, site: Site, size: str) -> None:
    page = await pages.open("/watch/999999", None, SIZES[size])
    await expect(page.get_by_test_id("room-title")).to_have_text("Room not found")
    why = page.get_by_test_id("video-placeholder")
    await expect(why).to_be_visible()
    reason = (await why.text_content() or "").strip()
    assert reason, "the page says why"
    text = await page.evaluate("() => document.body.innerText")
    assert text.count(reason) == 1, f"the reason shows once: {text!r}"
    for offer in ("like-button", "chat-signin", "chat-input", "buy-button", "message", "offline-banner"):
        await expect(page.get_by_test_id(offer)).to_be_hidden()
    await not_wider_than_screen(page)
    await screenshot(page, f"viewer-missing-{size}")


async def test_empty_chat_panels_say_so(pages: Pages, site: Site) -> None:
    room = site.world.ids["other_room"]
    await site.world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="other_host")
    viewer = await pages.open(f"/watch/{room}", "viewer2", PHONE)
    anonymous = await pages.open(f"/watch/{room}", None, DESKTOP)
    host = await pages.open(f"/host/{room}", "other_host", DESKTOP)
    for page in (viewer, anonymous, host):
        await expect(page.get_by_test_id("room-status")).to_have_text("live")
    await expect(viewer.get_by_test_id("chat-empty")).to_have_text("No messages yet. Say hello!")
    await expect(anonymous.get_by_test_id("chat-empty")).to_have_text("No messages yet.")
    await expect(host.get_by_test_id("chat-empty")).to_have_text(re.compile(r"^No messages yet\."))
    for page in (viewer, anonymous, host):
        await expect(page.get_by_test_id("chat-empty")).to_be_visible()

    await viewer.get_by_test_id("chat-input").fill("First!")
    await viewer.get_by_test_id("chat-send").click()
    for page in (viewer, anonymous, host):
        await expect(page.get_by_test_id("chat-text")).to_have_text("First!")
        await expect(page.get_by_test_id("chat-empty")).to_be_hidden()


async def test_right_after_a_pin_an_unloaded_sale_reads_opens_soon_not_sold_out(pages: Pages, site: Site) -> None:
    ids, api = site.world.ids, site.world.api
    room = ids["other_room"]
    await api.call("POST", f"/api/v1/rooms/{room}/live", who="other_host")  # live already if run after the chat test
    product = await new_product(site, "Linen tote")
    await scheduled_sale(site, product, room, starts_in_minutes=120)  # loaded into Redis 10 minutes before
    host = await pages.open(f"/host/{room}", "other_host", DESKTOP)
    viewer = await pages.open(f"/watch/{room}", "viewer", PHONE)
    await expect(viewer.get_by_test_id("room-status")).to_have_text("live")
    await host.locator(f"[data-testid=product-row][data-product-id='{product}']").get_by_test_id("pin-button").click()

    card = viewer.get_by_test_id("pinned-card")
    await expect(card).to_have_attribute("data-product-id", str(product))
    await expect(viewer.get_by_test_id("pinned-price")).to_have_text("$7.00")
    await expect(viewer.get_by_test_id("stock-count")).to_have_text("—")
    await expect(viewer.get_by_test_id("stock-line")).to_have_text("— left · opens soon")
    await expect(viewer.get_by_test_id("sold-out")).to_be_hidden()
    await expect(viewer.get_by_test_id("buy-button")).to_have_text("Opens soon")
    await expect(viewer.get_by_test_id("buy-button")).to_be_disabled()
    seen = await card.evaluate("n => n.innerText")
    assert not re.search(r"\b0 left|sold out", seen, re.IGNORECASE), f"nothing reads as sold out: {seen!r}"
    await screenshot(viewer, "viewer-opens-soon-phone")


@pytest.mark.parametrize("size", SIZES)
async def test_the_invite_code_box_reads_whole_refusals_show_by_it_and_a_used_code_is_cleared(
    pages: Pages, site: Site, size: str
) -> None:
    ids, api = site.world.ids, site.world.api
    room = ids["room"]
    await api.call("POST", f"/api/v1/rooms/{room}/live", who="host")  # live already if run after another test
    product = await new_product(site, f"Silk scarf {size}")
    sale = await scheduled_sale(site, product, room, 0.02, audience="invite_codes", code_count=2)
    await until_live(site, sale)
    codes = await api.ok("GET", f"/api/v1/sales/{sale}/codes", who="staff")
    assert all(CODE.match(c["code"]) for c in codes["items"]), "real codes look as the placeholder says"
    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    page = await pages.open(f"/watch/{room}", "viewer2", SIZES[size])
    await expect(page.get_by_test_id("room-status")).to_have_text("live")
    await host.locator(f"[data-testid=product-row][data-product-id='{product}']").get_by_test_id("pin-button").click()
    await expect(page.get_by_test_id("pinned-card")).to_have_attribute("data-product-id", str(product))

    code_input = page.get_by_test_id("code-input")
    await expect(code_input).to_be_visible()
    placeholder = await code_input.get_attribute("placeholder") or ""
    example = placeholder.rsplit(" ", 1)[-1]
    assert CODE.match(example), f"the placeholder's example {example!r} looks like a real code"
    fits = await code_input.evaluate(
        """n => { const s = getComputedStyle(n); const c = document.createElement('canvas').getContext('2d');
                  c.font = s.font; const room = n.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
                  return [c.measureText(n.placeholder).width, room]; }"""
    )
    assert fits[0] <= fits[1], f"the placeholder ({fits[0]:.0f} px) fits its box ({fits[1]:.0f} px)"

    buy, message = page.get_by_test_id("buy-button"), page.get_by_test_id("message")
    await buy.click()
    await expect(message).to_have_attribute("data-code", "invite_code_required")
    assert await gap(message, buy) <= 40, "the refusal shows by the Buy button and the code box"
    assert await gap(message, code_input) <= 120
    assert await on_screen(page, message)
    await screenshot(page, f"viewer-code-refused-{size}")

    await code_input.fill(codes["items"][0]["code"])
    await buy.click()
    await expect(page.get_by_test_id("hold-panel")).to_be_visible()
    await expect(message).to_be_hidden()
    await page.get_by_test_id("card-input").fill(TEST_CARD)
    await page.get_by_test_id("pay-button").click()
    await expect(page.get_by_test_id("order-confirmation")).to_contain_text("Paid")
    await expect(code_input).to_have_value("")  # a code buys once: the next tap must not send it again
    await not_wider_than_screen(page)


async def test_replayed_chat_is_handled_as_it_arrived_live(pages: Pages, site: Site) -> None:
    """A join's `replay` items carry the live payloads (docs/protocol.md): the page takes them as they are."""
    page = await pages.open("/signin", None, DESKTOP)
    message = {"id": "1732190000000-3", "user": {"id": 4, "name": "Ana"}, "text": "hi", "ts": 1732190000000}
    items: list[dict[str, Any]] = [
        {"event": "chat", "seq": message["id"], "payload": {"room_id": 7, "messages": [message], "skipped": 2}},
        {"event": "pinned", "seq": "1732190000000-4", "payload": {"room_id": 7, "product": None, "ts": 1}},
    ]
    got = await page.evaluate(
        "async (items) => (await import('/web/js/live.js')).replayed(items)", items
    )  # the page's own module, in the browser
    assert got == [
        ["chat", {"room_id": 7, "messages": [message], "skipped": 2}],
        ["pinned", {"room_id": 7, "product": None, "ts": 1, "seq": "1732190000000-4"}],
    ]
