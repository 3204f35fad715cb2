"""Screenshots of the viewer page, the host console and the brand dashboard at phone and desktop sizes, in a
realistic state (a live camera, a pinned product, chat, an order), saved to tests/web/artifacts/ to look at.

What can be checked by a program is checked here: nothing is wider than the screen, and no two of a page's
main parts overlap. How it looks (hierarchy, contrast) is for a person looking at the pictures.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Page, ViewportSize, expect

from tests.support.browser import DESKTOP, PHONE, Pages, Site, screenshot

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

SIZES = {"phone": PHONE, "desktop": DESKTOP}
CHAT = ["Hi from Lisbon!", "Is the jacket true to size?", "Just bought one 🎉"]

# Parts of each page that must not overlap each other when visible (test ids).
PARTS = {
    "viewer": ["video", "pinned-card", "chat-list", "chat-input", "like-button", "room-title", "viewer-count"],
    "host": ["room-title", "publish-camera", "preview", "metrics-chart", "product-list", "chat-list", "end-room"],
    "brand": ["new-product-form", "new-sale-form", "orders-csv"],
}

_OVERLAPS = """(ids) => {
  const boxes = [];
  for (const id of ids) {
    const node = document.querySelector(`[data-testid="${id}"]`);
    if (!node || !node.checkVisibility()) continue;
    const r = node.getBoundingClientRect();
    if (r.width && r.height) boxes.push([id, r.left + scrollX, r.top + scrollY, r.right + scrollX, r.bottom + scrollY]);
  }
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, al, at, ar, ab] = boxes[i], [b, bl, bt, br, bb] = boxes[j];
    const contained = (al <= bl && at <= bt && ar >= br && ab >= bb) || (bl <= al && bt <= at && br >= ar && bb >= ab);
    if (!contained && al < br - 1 && bl < ar - 1 && at < bb - 1 && bt < ab - 1) overlaps.push(`${a} overlaps ${b}`);
  }
  return overlaps;
}"""


@pytest.fixture(scope="module")
async def showroom(site: Site) -> Site:
    """The room live with the host's camera on, a product pinned, chat and a paid order (set up once)."""
    ids, api = site.world.ids, site.world.api
    room = ids["room"]
    await api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    await api.ok(
        "PATCH", f"/api/v1/products/{ids['product']}", who="staff",
        json={"title": "Linen overshirt, washed sand", "description": "Relaxed fit, 100% linen."},
    )  # fmt: skip
    hold = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer2", json={"product_id": ids["product"]},
                        status=201)  # fmt: skip
    await api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer2",
                 json={"card_number": "4242 4242 4242 4242"})  # fmt: skip
    return site


async def _assert_layout(page: Page, kind: str, size: str) -> None:
    width = await page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{kind} at {size}: the page is {width[0]} px wide on a {width[1]} px screen"
    overlaps = await page.evaluate(_OVERLAPS, PARTS[kind])
    assert not overlaps, f"{kind} at {size}: {overlaps}"


async def test_screenshots_of_the_three_pages(pages: Pages, showroom: Site) -> None:
    ids = showroom.world.ids
    room = ids["room"]
    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    await expect(host.get_by_test_id("room-status")).to_have_text("live")
    await host.get_by_test_id("publish-camera").click()
    await expect(host.get_by_test_id("publish-state")).to_have_text("publishing")
    row = host.locator(f"[data-testid=product-row][data-product-id='{ids['product']}']")
    await row.get_by_test_id("pin-button").click()
    chatter = await pages.open(f"/watch/{room}", "viewer3")
    await expect(chatter.get_by_test_id("pinned-card")).to_be_visible()
    for text in CHAT:
        await chatter.get_by_test_id("chat-input").fill(text)
        await chatter.get_by_test_id("chat-send").click()
        await expect(chatter.get_by_test_id("chat-text").filter(has_text=text)).to_be_visible()

    for size, viewport in SIZES.items():
        viewer = await pages.open(f"/watch/{room}", "viewer", viewport)
        await expect(viewer.get_by_test_id("pinned-card")).to_be_visible()
        await expect(viewer.get_by_test_id("chat-message")).to_have_count(len(CHAT))
        await viewer.wait_for_function(
            "() => document.querySelector('[data-testid=video]').getVideoPlaybackQuality().totalVideoFrames > 5",
            timeout=15_000,
        )
        await _shoot(viewer, "viewer", size)

        console = host if viewport is DESKTOP else await pages.open(f"/host/{room}", "host", viewport)
        await expect(console.get_by_test_id("chat-message")).to_have_count(len(CHAT))
        await expect(console.get_by_test_id("metric-units")).to_have_text("1")
        await _shoot(console, "host", size)

        brand = await pages.open("/brand", "staff", viewport)
        await expect(brand.get_by_test_id("order-row")).to_have_count(2)  # the seeded one and viewer2's
        await expect(brand.get_by_test_id("sale-row").first).to_be_visible()
        await expect(brand.get_by_test_id("product-row").first).to_be_visible()
        await _shoot(brand, "brand", size)


async def _shoot(page: Page, kind: str, size: str) -> None:
    viewport: ViewportSize | None = page.viewport_size
    assert viewport is not None
    await page.evaluate("document.fonts.ready")
    path = await screenshot(page, f"{kind}-{size}")
    assert path.stat().st_size > 10_000, f"{path} is suspiciously small"
    await _assert_layout(page, kind, size)
