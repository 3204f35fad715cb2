"""Assemble the aiohttp application: middleware, routes, and the lifetimes of Redis and the database.

Resources live in `cleanup_ctx` contexts, opened in order at start-up and closed in reverse at shutdown.
Start-up fails fast with a `ConfigError` naming the unreachable service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecommerce import health, ratelimit, webapp
from livecommerce.accounts import ACCOUNTS, Accounts
from livecommerce.aio import cancel_and_wait
from livecommerce.api import routes
from livecommerce.api.middleware import authenticate, problems, read_deadline
from livecommerce.api.openapi import build_openapi
from livecommerce.auth import TokenSigner
from livecommerce.commerce.batcher import ReservationBatcher
from livecommerce.commerce.buying import BUYING, Buying
from livecommerce.commerce.guesses import CodeGuesses
from livecommerce.commerce.jobs import worker_jobs
from livecommerce.commerce.payments import TestModeProvider
from livecommerce.commerce.pools import Inventory
from livecommerce.commerce.voucher_live import VOUCHERS, VoucherLive
from livecommerce.commerce.voucher_store import VoucherClaimBatcher, VoucherStore
from livecommerce.database import open_database, session_factory
from livecommerce.embedded_redis import MIN_REDIS_MAJOR
from livecommerce.errors import ConfigError
from livecommerce.hub import runtime as hub_runtime
from livecommerce.live import rooms as live_rooms
from livecommerce.live.rooms import LIVE
from livecommerce.media import http as media_http
from livecommerce.services import SERVICES, Services
from livecommerce.settings import Settings
from livecommerce.state import ENGINE, REDIS, SESSIONS, SETTINGS, SIGNER

__all__ = ["create_app", "resolve_secret"]

log = logging.getLogger(__name__)

_STATIC = Path(__file__).parent / "static"
_REDIS_CONNECTIONS = 1000


def resolve_secret(settings: Settings) -> str:
    """The configured secret, or one generated once into the data directory (shared by its processes)."""
    if settings.secret_key is not None:
        return settings.secret_key
    path = settings.data_dir / "secret_key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    log.warning(
        "no LIVECOMMERCE_SECRET_KEY set: tokens are signed with a key generated into %s; "
        "set LIVECOMMERCE_SECRET_KEY in production",
        path,
    )
    return path.read_text().strip()


def _redis_context(url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        # Retries are safe: every script that changes state is idempotent for a retried call (once keys).
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3)
        # redis-py's pool refuses the 101st concurrent call by default; bursts of checkouts need more (and
        # a blocking pool starves tasks, docs/benchmarks.md): reservations themselves share a few (the batcher).
        client = Redis.from_url(
            url, health_check_interval=30, socket_connect_timeout=5, retry=retry,
            retry_on_error=[RedisConnectionError, RedisTimeoutError], max_connections=_REDIS_CONNECTIONS,
        )  # fmt: skip
        try:
            await client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure to reach Redis ends start-up with its reason
            await client.aclose()
            raise ConfigError(f"cannot reach Redis at {url}: {exc}") from None
        version = str((await client.info("server")).get("redis_version", "0"))
        if int(version.split(".")[0] or 0) < MIN_REDIS_MAJOR:
            await client.aclose()
            raise ConfigError(
                f"Redis at {url} is version {version}; livecommerce needs Redis {MIN_REDIS_MAJOR} or newer "
                "(or Valkey) for its inventory functions"
            )
        app[REDIS] = client
        yield
        await client.aclose()

    return context


async def _commerce_context(app: web.Application) -> AsyncIterator[None]:
    """Inventory pools (their Redis functions loaded once), the reservation batcher and the payment provider."""
    inventory = Inventory(app[REDIS])
    await inventory.load_library()
    batcher = ReservationBatcher(inventory)
    provider = TestModeProvider(app[REDIS], delay_s=app[SETTINGS].payment_delay_ms / 1000)
    app[BUYING] = buying = Buying(
        sessions=app[SESSIONS], inventory=inventory, batcher=batcher, provider=provider,
        guesses=CodeGuesses(app[REDIS]),
    )  # fmt: skip
    store = VoucherStore(app[REDIS])
    await store.load_library()
    claims = VoucherClaimBatcher(store)
    app[VOUCHERS] = buying.vouchers = VoucherLive(
        sessions=app[SESSIONS], store=store, batcher=claims, inventory=inventory, buying=buying
    )
    yield
    await claims.close()
    await batcher.close()


async def _demo_worker_context(app: web.Application) -> AsyncIterator[None]:
    """Demo mode runs the worker's jobs inside the web process, so `make demo` is a whole system: sales load
    and close, holds expire, orders land in SQL. Production runs `livecommerce worker` processes instead."""
    buying = app[BUYING]
    jobs = worker_jobs(
        app[REDIS], app[SESSIONS], buying.inventory, buying.provider,
        consumer=f"{socket.gethostname()}:{os.getpid()}:web", claim_after_ms=app[SETTINGS].worker_claim_after_ms,
        vouchers=app[VOUCHERS],
    )  # fmt: skip
    tasks = [asyncio.create_task(job.run(), name=f"demo {job.name}") for job in jobs]
    yield
    await cancel_and_wait(tasks)


async def _database_context(app: web.Application) -> AsyncIterator[None]:
    engine = await open_database(app[SETTINGS].effective_database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _accounts_context(app: web.Application) -> AsyncIterator[None]:
    """Current accounts (what a token may do now), and the listener that hears other processes' changes."""
    accounts = Accounts(app[SESSIONS], app[REDIS])
    app[ACCOUNTS] = accounts
    task = asyncio.create_task(accounts.run(), name="account changes")
    yield
    await cancel_and_wait([task])


async def _services_context(app: web.Application) -> AsyncIterator[None]:
    """The domain services, told of live-room changes through `LiveRooms` (the domain never imports it)."""
    app[SERVICES] = Services(sessions=app[SESSIONS], buying=app[BUYING], accounts=app[ACCOUNTS], notices=app[LIVE])
    yield


def create_app(settings: Settings, *, redis_url: str) -> web.Application:
    """The application for `settings`, using the Redis at `redis_url` (embedded or configured)."""
    # aiohttp closes a connection whose handler is idle — waiting for a request's headers to be complete —
    # past `keepalive_timeout`, counted from the connection's start or the previous response: that is the
    # header deadline (a client sending headers a byte at a time is closed), and the idle keep-alive limit.
    app = web.Application(
        middlewares=[problems, read_deadline, authenticate, ratelimit.rate_limit],
        client_max_size=settings.max_body_bytes,
        handler_args={"keepalive_timeout": settings.http_header_timeout},
    )
    app[SETTINGS] = settings
    app[SIGNER] = TokenSigner(resolve_secret(settings), settings.token_ttl)
    app.cleanup_ctx.append(_redis_context(redis_url))
    app.cleanup_ctx.append(_database_context)
    app.cleanup_ctx.append(_accounts_context)
    app.cleanup_ctx.append(_commerce_context)
    if settings.demo:
        app.cleanup_ctx.append(_demo_worker_context)
    ratelimit.install(app)
    app.cleanup_ctx.append(live_rooms.context())  # the process's one bus: the hub, media and services use it
    hub_runtime.install(app)
    app.cleanup_ctx.append(_services_context)
    media_http.install(app)
    webapp.install(app)
    routes.install(app)
    health.add_routes(app)
    document = orjson.dumps(build_openapi(routes.ENDPOINTS, media_http.openapi_paths()))

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(_STATIC / "index.html")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/", index)
    return app
