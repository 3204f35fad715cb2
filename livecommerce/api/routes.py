"""Every REST router, listed once: the app installs them and the OpenAPI document describes them from here.

Each route module declares its own `Router` (no module adds routes to another's), so adding a module of routes
is adding it to `ROUTERS`. The order is the order of the paths in `/openapi.json`.
"""

from __future__ import annotations

from aiohttp import web

from livecommerce.api import (
    marketplace,
    purchases,
    rankings,
    refunds,
    reports,
    rest,
    statements,
    voucher_claims,
    vouchers,
)
from livecommerce.api.routing import Endpoint, Router

__all__ = ["ENDPOINTS", "ROUTERS", "install"]

ROUTERS: tuple[Router, ...] = (
    rest.ROUTER,
    purchases.ROUTER,
    refunds.ROUTER,
    reports.ROUTER,
    marketplace.ROUTER,
    statements.ROUTER,
    rankings.ROUTER,
    vouchers.ROUTER,
    voucher_claims.ROUTER,
)
ENDPOINTS: list[Endpoint] = [endpoint for router in ROUTERS for endpoint in router.endpoints]


def install(app: web.Application) -> None:
    """Add every REST route to `app`."""
    for router in ROUTERS:
        router.install(app)
