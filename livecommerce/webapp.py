"""The browser pages: the viewer page, the host console, the brand dashboard and sign-in, from `web/`.

    GET /signin              web/signin.html
    GET /watch/{room_id}     web/watch.html       (phone-first viewer page)
    GET /host                web/host-list.html   (a host's rooms)
    GET /host/{room_id}      web/host.html        (host console)
    GET /brand               web/brand.html       (brand dashboard)
    GET /rankings            web/rankings.html    (creator and brand leaderboards)
    GET /admin/vouchers      web/admin-vouchers.html (campaigns, platform vouchers, budget use)
    GET /web/...             static files (ES modules, CSS, the vendored Socket.IO client)

The pages are plain HTML, CSS and ES modules with no build step; they talk to `/api/v1` and `/socket.io/`
like any other client. HTML is sent with `Cache-Control: no-cache` so a new version shows on the next load.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from livecommerce.errors import ConfigError

__all__ = ["PAGES", "WEB_ROOT", "install"]

WEB_ROOT: Final = Path(__file__).resolve().parent.parent / "web"

PAGES: Final = (  # (route, file): the pages, which are not REST (tests/test_openapi.py)
    ("/signin", "signin.html"),
    ("/watch/{room_id:[0-9]{1,10}}", "watch.html"),
    ("/host", "host-list.html"),
    ("/host/{room_id:[0-9]{1,10}}", "host.html"),
    ("/brand", "brand.html"),
    ("/rankings", "rankings.html"),
    ("/admin/vouchers", "admin-vouchers.html"),
)
_NO_CACHE: Final = {"Cache-Control": "no-cache"}


def _page(path: Path) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def handler(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=_NO_CACHE)

    return handler


def install(app: web.Application, root: Path = WEB_ROOT) -> None:
    """Add the page routes and `/web/` static files; a missing `web/` directory or page is a `ConfigError`."""
    if not root.is_dir():
        raise ConfigError(
            f"the web pages directory {root} is missing; run livecommerce from a source checkout "
            "(the pages live in web/ next to the livecommerce package)"
        )
    for route, name in PAGES:
        page = root / name
        if not page.is_file():
            raise ConfigError(f"the web page {page} is missing; the web/ directory is incomplete")
        app.router.add_get(route, _page(page))
    app.router.add_static("/web/", root, append_version=False)
