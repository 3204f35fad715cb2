"""Text people type is shown as text: markup in a chat message or a display name never becomes elements."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import DESKTOP, Pages, Site

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

MARKUP = "<img src=x onerror=window.__pwned=1><b>bold</b>"
MARKUP_NAME = "<img src=y onerror=window.__pwned=2>Eve"


async def injected(page: Page) -> dict[str, object]:
    """What the markup would have left behind if it had been parsed."""
    result: dict[str, object] = await page.evaluate(
        """() => ({
          pwned: typeof window.__pwned,
          elements: document.querySelectorAll('[data-testid=chat-list] img, [data-testid=chat-list] b').length,
        })"""
    )
    return result


async def test_markup_in_chat_and_names_is_shown_as_text(pages: Pages, site: Site) -> None:
    ids, api = site.world.ids, site.world.api
    room = ids["room"]
    person = {"email": "eve@t.dev", "display_name": MARKUP_NAME, "role": "viewer"}
    eve = await api.ok("POST", "/api/v1/users", who="admin", json=person, status=201)
    site.add_viewer_token("eve", eve["id"])
    await api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")

    sender = await pages.open(f"/watch/{room}", "eve")
    reader = await pages.open(f"/watch/{room}", "viewer")
    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    for page in (sender, reader, host):
        await expect(page.get_by_test_id("room-status")).to_have_text("live")
    await sender.get_by_test_id("chat-input").fill(MARKUP)
    await sender.get_by_test_id("chat-send").click()

    for page in (sender, reader, host):
        message = page.get_by_test_id("chat-message").filter(has_text="bold")
        await expect(message).to_have_count(1)
        await expect(message.get_by_test_id("chat-text")).to_have_text(MARKUP)
        await expect(message.get_by_test_id("chat-author")).to_have_text(MARKUP_NAME)
        text = await message.get_by_test_id("chat-text").evaluate("node => node.textContent")
        assert text == MARKUP
        assert await injected(page) == {"pwned": "undefined", "elements": 0}

    # A page that loads afterwards gets the message in its snapshot: rendered the same way.
    late = await pages.open(f"/watch/{room}", None)
    await expect(late.get_by_test_id("chat-text").filter(has_text="bold")).to_have_text(MARKUP)
    assert await injected(late) == {"pwned": "undefined", "elements": 0}
