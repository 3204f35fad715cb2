"""The host goes live from the browser camera (Chromium's fake device, over WHIP); a viewer page plays it (WHEP)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.support.browser import DESKTOP, Pages, Site

pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)

_FRAMES = """() => {
  const video = document.querySelector('[data-testid=video]');
  return video.getVideoPlaybackQuality().totalVideoFrames;
}"""


async def frames(page: Page) -> int:
    return int(await page.evaluate(_FRAMES))


async def test_the_host_goes_live_with_the_camera_and_a_viewer_sees_the_frames_advance(
    pages: Pages, site: Site
) -> None:
    room = site.world.ids["room"]
    host = await pages.open(f"/host/{room}", "host", DESKTOP)
    await expect(host.get_by_test_id("room-status")).to_have_text("scheduled")
    await host.get_by_test_id("go-live").click()
    try:
        await expect(host.get_by_test_id("room-status")).to_have_text("live")
    except AssertionError:  # say what the page said (a refusal, or nothing: the request did not finish)
        said = await host.get_by_test_id("message").inner_text()
        raise AssertionError(f"the room did not go live; the page says {said!r}") from None
    await host.get_by_test_id("publish-camera").click()
    await expect(host.get_by_test_id("publish-state")).to_have_text("publishing")
    await host.wait_for_function(
        "() => document.querySelector('[data-testid=preview]').videoWidth > 0", timeout=10_000
    )  # the host sees their own camera

    viewer = await pages.open(f"/watch/{room}", "viewer")
    await expect(viewer.get_by_test_id("room-status")).to_have_text("live")
    playing = """() => {
      const video = document.querySelector('[data-testid=video]');
      return video.readyState >= 2 && !video.paused && video.videoWidth > 0
        && video.getVideoPlaybackQuality().totalVideoFrames > 10;
    }"""
    await viewer.wait_for_function(playing, timeout=15_000)
    before = await frames(viewer)
    time_before = float(await viewer.evaluate("document.querySelector('[data-testid=video]').currentTime"))
    # Frames keep coming: at least 15 more (half a second of the fake camera's 30 fps) within 5 seconds.
    await viewer.wait_for_function(f"() => ({_FRAMES})() > {before + 15}", timeout=5_000)
    await viewer.wait_for_function(
        f"() => document.querySelector('[data-testid=video]').currentTime > {time_before + 0.4}", timeout=5_000
    )
    await expect(viewer.get_by_test_id("video-placeholder")).to_be_hidden()
