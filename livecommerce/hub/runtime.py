"""Attach the hub to the aiohttp app and own its lifetime (a `cleanup_ctx`, after Redis and the database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator

import orjson
import socketio
from aiohttp import web

from livecommerce.hub import transport
from livecommerce.hub.bus import Bus
from livecommerce.hub.fanout import Fanout
from livecommerce.hub.service import Hub
from livecommerce.hub.store import RoomStore
from livecommerce.state import ACCOUNTS, BUYING, HUB, REDIS, SESSIONS, SIGNER

__all__ = ["install"]

log = logging.getLogger(__name__)

_MAX_PACKET_BYTES = 1024 * 1024  # past this Engine.IO drops the connection; our own limit (16 KiB) answers first


class _OrjsonModule:
    """python-socketio's `json` hook: orjson, returning str as the library expects."""

    @staticmethod
    def dumps(obj: object, **_: object) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(text: str | bytes, **_: object) -> object:
        return orjson.loads(text)


def _report_stop(task: asyncio.Task[None]) -> None:
    """The hub's loops end only at shutdown; if they end earlier, say so loudly instead of going quiet."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("the live hub stopped: live rooms get no updates on this process", exc_info=task.exception())


def install(app: web.Application) -> None:
    """Serve Socket.IO at /socket.io/ and run the hub while the app runs."""
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        json=_OrjsonModule,
        max_http_buffer_size=_MAX_PACKET_BYTES,
        ping_interval=20,
        ping_timeout=20,
        logger=False,
        engineio_logger=False,
    )
    transport.install(sio)
    sio.attach(app)
    process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def context(app: web.Application) -> AsyncIterator[None]:
        redis = app[REDIS]
        hub = Hub(
            sio,
            fanout=Fanout(sio),
            store=RoomStore(redis, process_id),
            bus=Bus(redis, process_id),
            sessions=app[SESSIONS],
            signer=app[SIGNER],
            buying=app[BUYING],
            accounts=app[ACCOUNTS],
        )
        app[HUB] = hub
        task = asyncio.create_task(hub.run(), name="hub")
        task.add_done_callback(_report_stop)
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(context)
