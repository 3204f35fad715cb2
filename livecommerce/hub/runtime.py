"""Attach the hub to the aiohttp app and own its lifetime (a `cleanup_ctx`, after Redis and the database), and
the process's `LiveRooms` (before the hub and media, which both publish and listen through it)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import socketio
from aiohttp import web
from aiohttp.typedefs import Handler

from livecommerce.accounts import ACCOUNTS
from livecommerce.aio import cancel_and_wait
from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.voucher_live import VOUCHERS
from livecommerce.hub import transport
from livecommerce.hub.admission import Admission
from livecommerce.hub.fanout import Fanout
from livecommerce.hub.service import Hub
from livecommerce.live.rooms import LIVE
from livecommerce.state import SESSIONS, SETTINGS, SIGNER

__all__ = ["HUB", "install", "socket_counters"]

log = logging.getLogger(__name__)

_MAX_PACKET_BYTES = 1024 * 1024  # past this Engine.IO drops the connection; our own limit (16 KiB) answers first
_PATH = "/socket.io/"

HUB: web.AppKey[Hub] = web.AppKey("hub")
SIO: web.AppKey[socketio.AsyncServer] = web.AppKey("socketio")
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")
_ADMITTED: web.RequestKey[str] = web.RequestKey("admitted_address")  # the place this handshake took
_HELD: web.RequestKey[bool] = web.RequestKey("admission_held")  # ... now held by an engineio session


class _OrjsonModule:
    """python-socketio's `json` hook: orjson, returning str as the library expects."""

    @staticmethod
    def dumps(obj: object, **_: object) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: object) -> object:
        return orjson.loads(text)


class _OneLine(logging.Filter):
    """Engine.IO's own errors (e.g. an undecodable long-polling body) as one line: a client's bad bytes must not
    write a traceback per request (a cheap way to fill disks). Our own malformed-packet counting is in
    `transport`; this covers what engineio logs before our code sees the packet."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error}); the request was refused"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


# engineio logs every packet at INFO: only its errors, one line each, reach the log.
_ENGINEIO_LOG = logging.getLogger("livecommerce.hub.engineio")
_ENGINEIO_LOG.setLevel(logging.ERROR)
_ENGINEIO_LOG.addFilter(_OneLine())


def _report_stop(task: asyncio.Task[None]) -> None:
    """The hub's loops end only at shutdown; if they end earlier, say so loudly instead of going quiet."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the live hub stopped: live rooms get no updates on this process", exc_info=task.exception())


def install(app: web.Application) -> None:
    """Serve Socket.IO at /socket.io/ and run the hub while the app runs."""
    budget = app[SETTINGS].socket_output_budget
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        json=_OrjsonModule,
        max_http_buffer_size=_MAX_PACKET_BYTES,
        ping_interval=20,
        ping_timeout=20,
        logger=False,
        engineio_logger=_ENGINEIO_LOG,
    )
    transport.install(sio, output_budget=budget)
    sio.attach(app)
    settings = app[SETTINGS]
    admission = Admission(max_total=settings.max_connections, max_per_address=settings.max_connections_per_address)
    _count_sessions(sio, admission)
    app[SIO], app[ADMISSION] = sio, admission
    app.middlewares.append(_admit)

    async def context(app: web.Application) -> AsyncIterator[None]:
        hub = Hub(
            sio,
            fanout=Fanout(sio, soft_limit=budget // 4, hard_limit=budget),
            live=app[LIVE],
            sessions=app[SESSIONS],
            signer=app[SIGNER],
            buying=app[BUYING],
            accounts=app[ACCOUNTS],
            vouchers=app.get(VOUCHERS),
        )
        app[HUB] = hub
        task = asyncio.create_task(hub.run(), name="hub")
        task.add_done_callback(_report_stop)
        yield
        await cancel_and_wait([task])  # bounded: a shutdown completes even if the loop swallowed its cancel

    app.cleanup_ctx.append(context)


@web.middleware
async def _admit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A Socket.IO handshake takes a place (`Admission`) or is refused with a problem and `Retry-After`."""
    if request.path != _PATH or request.method != "GET" or "sid" in request.query:
        return await handler(request)
    address = request.remote or "unknown"
    request.app[ADMISSION].admit(address)
    request[_ADMITTED] = address
    try:
        return await handler(request)
    finally:
        if not request.get(_HELD):  # refused by engineio (bad version, transport...): no session holds it
            request.app[ADMISSION].release(address)


def _count_sessions(sio: socketio.AsyncServer, admission: Admission) -> None:
    """Wrap engineio's connect and disconnect handlers (python-socketio's) so each session holds its place."""
    eio = sio.eio
    on_connect: Callable[..., Awaitable[Any]] = eio.handlers["connect"]
    on_disconnect: Callable[..., Awaitable[Any]] = eio.handlers["disconnect"]

    async def connect(eio_sid: str, environ: dict[str, Any]) -> Any:
        result = await on_connect(eio_sid, environ)
        request = environ.get("aiohttp.request")
        accepted = result is None or result is True
        if accepted and isinstance(request, web.Request) and (address := request.get(_ADMITTED)) is not None:
            request[_HELD] = True
            admission.bind(eio_sid, address)
        return result

    async def disconnect(eio_sid: str, *args: Any) -> Any:
        try:
            return await on_disconnect(eio_sid, *args)
        finally:
            admission.unbind(eio_sid)

    eio.on("connect", connect)
    eio.on("disconnect", disconnect)


def socket_counters(app: web.Application) -> dict[str, int]:
    """What `/health` reports about live connections: how many, and how many were refused or cut off."""
    admission, sio, hub = app.get(ADMISSION), app.get(SIO), app.get(HUB)
    if admission is None or sio is None:
        return {}
    stats = transport.socket_stats(sio)
    return {
        "connections": admission.open,
        "refused_full": admission.stats.refused_full,
        "refused_address": admission.stats.refused_address,
        "dropped_slow": stats.over_budget + (hub.fanout.stats.dropped_viewers if hub is not None else 0),
        "malformed_packets": stats.malformed_packets,
    }
