"""Typed keys for the application's shared state (aiohttp `AppKey`), set at start-up and frozen after."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from livecommerce.accounts import Accounts
    from livecommerce.auth import Principal, TokenSigner
    from livecommerce.commerce.buying import Buying
    from livecommerce.hub.service import Hub
    from livecommerce.settings import Settings

__all__ = ["ACCOUNTS", "BUYING", "ENGINE", "HUB", "PRINCIPAL", "REDIS", "SESSIONS", "SETTINGS", "SIGNER"]

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SIGNER: web.AppKey[TokenSigner] = web.AppKey("signer")
REDIS: web.AppKey[Redis] = web.AppKey("redis")
ENGINE: web.AppKey[AsyncEngine] = web.AppKey("engine")
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
HUB: web.AppKey[Hub] = web.AppKey("hub")
BUYING: web.AppKey[Buying] = web.AppKey("buying")
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")

# Per request: who is calling (set by the authentication middleware).
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
