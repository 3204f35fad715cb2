"""The browser folder's fixtures (defined in tests/support/browser.py): Debian's Chromium driven by Playwright,
one server per test module, and `pages` opened as seeded users."""

from tests.support.browser import browser, chromium, pages, site

__all__ = ["browser", "chromium", "pages", "site"]
