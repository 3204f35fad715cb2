"""Typed keys for the application's base state (aiohttp `AppKey`), set at start-up and frozen after.

Only the resources every layer shares live here (settings, signer, Redis, the database, the caller). A service's
key lives next to its class (`accounts.ACCOUNTS`, `commerce.buying.BUYING`, `services.SERVICES`,
`hub.runtime.HUB`), so this module names no concrete service and imports none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from livecommerce.auth import Principal, TokenSigner
    from livecommerce.settings import Settings

__all__ = ["ENGINE", "PRINCIPAL", "REDIS", "SESSIONS", "SETTINGS", "SIGNER"]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SIGNER: web.AppKey[TokenSigner] = web.AppKey("signer")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine")
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")

# Per request: who is calling (set by the authentication middleware).
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
