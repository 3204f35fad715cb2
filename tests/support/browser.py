"""Browser tests: Debian's Chromium driven by Playwright against the whole app on a loopback port.

One browser per test session; one server per test module (the app with a real Redis and a real database,
seeded with `seed_world`, plus the worker's jobs, which load sales into Redis and write paid orders to SQL).
Each page gets a browser context of its own, so each signed-in user has their own `localStorage` token.

Chromium is Debian's package at /usr/bin/chromium (`make test` installs it); Playwright never downloads a
browser. Without it these tests are skipped with the reason, except under CI (`CI=true`), where that fails.
The browser tests run on SQLite only: the server code they reach is the same on PostgreSQL, where the rest of
the suite runs it, and a second database would double their time.

Screenshots go to tests/web/artifacts/ (ignored by git). The browser folder's conftest.py plugs these fixtures.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.aio import cancel_and_wait
from livecommerce.app import create_app
from livecommerce.auth import TokenSigner
from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.jobs import worker_jobs
from livecommerce.database import create_engine
from livecommerce.models import Role
from livecommerce.settings import Settings
from livecommerce.state import REDIS, SESSIONS
from tests.support.databases import Database, reset
from tests.support.world import SECRET, World, seed_world

__all__ = ["DESKTOP", "PHONE", "Pages", "Site", "browser", "chromium", "pages", "screenshot", "site"]

CHROMIUM: Final = Path(os.environ.get("LIVECOMMERCE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS: Final = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ARTIFACTS: Final = Path(__file__).parents[1] / "web" / "artifacts"
TOKEN_KEY: Final = "livecommerce.token"  # web/README.md: where the pages keep the bearer token
PHONE: Final = ViewportSize(width=390, height=844)
DESKTOP: Final = ViewportSize(width=1280, height=800)
TIMEOUT_MS: Final = 10_000  # the longest any expectation waits unless it says otherwise

expect.set_options(timeout=TIMEOUT_MS)


# --- the browser ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM}; `make test` installs Debian's package (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Chromium is required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# --- the server -----------------------------------------------------------------------------------------------


@dataclass
class Site:
    """The app on loopback with a seeded world; `world.api` calls it as any seeded user."""

    base_url: str
    app: web.Application
    engine: AsyncEngine
    world: World
    signer: TokenSigner

    def add_viewer_token(self, name: str, user_id: int) -> None:
        self.world.api.tokens[name] = self.signer.issue(user_id, Role.VIEWER)


@pytest.fixture(scope="module")
async def site(database: Database, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    redis = Redis.from_url(redis_server)
    await redis.flushall()
    await redis.aclose()
    engine = create_engine(database.url)
    await reset(engine)
    settings = Settings(
        database_url=database.url, data_dir=tmp_path_factory.mktemp("web"), secret_key=SECRET, demo=False,
        rate_limit_writes=0, rate_limit_reads=0,
    )  # fmt: skip
    app = create_app(settings, redis_url=redis_server)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        world = await seed_world(client, engine)
        signer = TokenSigner(SECRET, 3600)
        for name in ("viewer2", "viewer3"):
            person = {"email": f"{name}@t.dev", "display_name": name.title(), "role": "viewer"}
            body = await world.api.ok("POST", "/api/v1/users", who="admin", json=person, status=201)
            world.ids[name] = body["id"]
            world.api.tokens[name] = signer.issue(body["id"], Role.VIEWER)
        # The worker's jobs, as `livecommerce worker` runs them: load sales into Redis, write paid orders to SQL.
        jobs = worker_jobs(
            app[REDIS], app[SESSIONS], app[BUYING].inventory, app[BUYING].provider, consumer="web-tests",
            claim_after_ms=1000,
        )  # fmt: skip
        tasks = [asyncio.create_task(job.run(), name=job.name) for job in jobs]
        try:
            yield Site(str(client.make_url("")).rstrip("/"), app, engine, world, signer)
        finally:
            await cancel_and_wait(tasks)
    await engine.dispose()


# --- pages ----------------------------------------------------------------------------------------------------


@dataclass
class Pages:
    """Opens pages as seeded users, each in a browser context of its own. Uncaught script errors fail the test
    (`check`); console errors are kept to explain a failure (a refused request logs one, as it should)."""

    browser: Browser
    site: Site
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def open(self, path: str, who: str | None = None, viewport: ViewportSize = PHONE) -> Page:
        context = await self.browser.new_context(viewport=viewport, base_url=self.site.base_url)
        self.contexts.append(context)
        if who is not None:
            token = json.dumps(self.site.world.api.tokens[who])
            await context.add_init_script(f"window.localStorage.setItem({json.dumps(TOKEN_KEY)}, {token});")
        page = await context.new_page()
        label = f"{who or 'anonymous'} on {path}"
        page.on("pageerror", lambda exc: self.errors.append(f"{label}: uncaught {exc}"))
        page.on("console", lambda msg: self._console(label, msg.type, msg.text))
        response = await page.goto(path)
        assert response is not None
        assert response.ok, f"{path}: {response.status}"
        return page

    def _console(self, label: str, kind: str, text: str) -> None:
        if kind in ("error", "warning"):
            self.console.append(f"{label}: {kind}: {text}")

    def check(self) -> None:
        assert not self.errors, "uncaught errors in the pages:\n" + "\n".join(self.errors + self.console)

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()
        self.contexts.clear()


@pytest.fixture
async def pages(browser: Browser, site: Site) -> AsyncIterator[Pages]:
    opened = Pages(browser, site)
    try:
        yield opened
        opened.check()
    finally:
        if opened.console:
            print("\n".join(["browser console:", *opened.console]))  # noqa: T201 - shown when a test fails
        await opened.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as an artifact and return its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path
