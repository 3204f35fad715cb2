"""Liveness and readiness probes.

`/health` answers as long as the process serves requests, with `demo` telling whether the server runs in demo
mode (the sign-in page then offers the demo accounts) and `sockets` counting live connections and those
refused at the caps or cut off (slow readers, malformed packets); `/ready` also checks that Redis and the database
answer within a short timeout, so a load balancer stops sending traffic to a process that cannot serve it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from livecommerce.api.schemas import Health, Readiness, SocketCounters
from livecommerce.hub.runtime import socket_counters
from livecommerce.state import ENGINE, REDIS, SETTINGS

__all__ = ["add_routes"]

_TIMEOUT = 2.0


async def _health(request: web.Request) -> web.Response:
    counters = socket_counters(request.app)
    sockets = SocketCounters(**counters) if counters else None
    return web.json_response(Health(status="ok", demo=request.app[SETTINGS].demo, sockets=sockets).model_dump())


async def _check(name: str, probe: asyncio.Future[object] | object) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, _TIMEOUT)  # type: ignore[arg-type]
    except TimeoutError:
        return name, f"no answer within {_TIMEOUT:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        return name, f"{type(exc).__name__}: {exc}"
    return name, "ok"


async def _db_probe(request: web.Request) -> None:
    async with request.app[ENGINE].connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _ready(request: web.Request) -> web.Response:
    results = await asyncio.gather(
        _check("redis", request.app[REDIS].ping()),
        _check("database", _db_probe(request)),
    )
    checks = dict(results)
    ready = all(value == "ok" for value in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return web.json_response(body.model_dump(), status=200 if ready else 503)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", _health)
    app.router.add_get("/ready", _ready)
