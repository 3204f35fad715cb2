"""Reaching a viewer's websocket transport under python-socketio: the one place that knows engineio's internals.

The fan-out writes pre-built frames straight to each viewer's `asyncio.Transport` instead of going through
python-socketio's emit (a task and a queue hop per recipient). python-socketio does not expose the
transport, so `install` replaces engineio's aiohttp websocket wrapper with `_HubWebSocket`, which records
the transport on the engineio socket when the websocket opens and turns per-message deflate off
(compressing per recipient would undo encoding once). What we rely on, pinned by `tests/hub/test_transport.py`:

- `engineio.async_drivers.aiohttp.WebSocket` is what `AsyncServer._async["websocket"]` holds, is built as
  `cls(handler, server)` and called with the WSGI-like environ holding `aiohttp.request`;
- `handler` is the bound `AsyncSocket._websocket_handler`, so `handler.__self__` is the engineio socket;
- the socket's `upgraded`, `upgrading`, `closing`, `closed` flags and its `queue`, whose writer task sends
  each packet as `await ws.send(packet.encode())` in queue order;
- `packet.Packet.encode()` returns `encode_cache` when set.

Writing to the transport directly is safe next to engineio's own writer because every frame write, ours
and aiohttp's (without compression), is one synchronous `transport.write`. Ordering is the one thing to
care about: what engineio has queued for a viewer is written later than a direct write made now, so a
viewer leaves the queued path only after `wait_flushed` has seen the queue written out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

__all__ = ["install", "queued_packets", "send_packet", "wait_flushed", "websocket_transport"]

log = logging.getLogger(__name__)

NAMESPACE = "/"
_TRANSPORT_ATTR = "_livecommerce_transport"


class _Barrier(str):
    """What engineio's writer hands to `_HubWebSocket.send` instead of text: all queued before it is written.

    It is the cached encoding of a NOOP packet, so a writer that is not ours (long-polling) sends a harmless
    Engine.IO NOOP ("6") instead.
    """

    future: asyncio.Future[None]


class _HubWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp websocket wrapper, recording the transport and without per-message deflate."""

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        socket = getattr(self.handler, "__self__", None)
        if isinstance(socket, AsyncSocket):
            setattr(socket, _TRANSPORT_ATTR, request.transport)
        else:  # engineio changed; viewers still work, through the slow path
            log.error("engineio's websocket handler is not bound to an AsyncSocket; direct writes are off")
        await self.handler(self)
        return self._sock

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, _Barrier):
            if not message.future.done():
                message.future.set_result(None)
            return
        await super().send(message)


def install(sio: socketio.AsyncServer) -> None:
    """Use `_HubWebSocket` for this server's websockets. Call once, before clients connect.

    Fails at start-up, not under load, if engineio no longer looks the way this module expects.
    """
    eio = sio.eio
    if eio.async_mode != "aiohttp":
        raise ValueError(f"the hub needs async_mode='aiohttp', not {eio.async_mode!r}")
    current = eio._async.get("websocket")
    if current is _HubWebSocket:
        return
    if current is not eio_aiohttp.WebSocket or not callable(getattr(AsyncSocket, "_websocket_handler", None)):
        raise RuntimeError(
            "engineio's aiohttp websocket internals changed (python-engineio upgrade?); "
            "review livecommerce/hub/transport.py and tests/hub/test_transport.py"
        )
    eio._async = {**eio._async, "websocket": _HubWebSocket}


def _socket(sio: socketio.AsyncServer, sid: str) -> Any:
    """The engineio socket behind a Socket.IO sid on `/`, or None when it is gone."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, NAMESPACE)
    if eio_sid is None:
        return None
    return sio.eio.sockets.get(eio_sid)


def websocket_transport(sio: socketio.AsyncServer, sid: str) -> asyncio.Transport | None:
    """The viewer's transport once its websocket is established and open, else None (polling, upgrading, gone).

    Frames written to it must be whole server-to-client websocket frames (see `frames`). The caller must
    also have seen `wait_flushed` succeed for this viewer if the order against queued packets matters.
    """
    socket = _socket(sio, sid)
    if socket is None or not socket.upgraded or socket.upgrading or socket.closing or socket.closed:
        return None
    transport: asyncio.Transport | None = getattr(socket, _TRANSPORT_ATTR, None)
    if transport is None or transport.is_closing():
        return None
    return transport


async def send_packet(sio: socketio.AsyncServer, sid: str, packet: bytes) -> bool:
    """Queue an encoded Engine.IO message (`42[...]`, see `frames`) on engineio's own path; False if gone.

    The slow path, for viewers on long-polling: the same bytes as the fast path, sent in order behind
    whatever python-socketio has queued.
    """
    socket = _socket(sio, sid)
    if socket is None or socket.closing or socket.closed:
        return False
    if packet[:1] != b"4":
        raise ValueError("not an Engine.IO message packet")
    await sio.eio.send_packet(socket.sid, eio_packet.Packet(eio_packet.MESSAGE, data=packet[1:].decode()))
    return True


def queued_packets(sio: socketio.AsyncServer, sid: str) -> int:
    """How many packets engineio holds for the viewer, not yet written or polled: its slow-path backlog."""
    socket = _socket(sio, sid)
    return 0 if socket is None else int(socket.queue.qsize())


async def wait_flushed(sio: socketio.AsyncServer, sid: str) -> bool:
    """Wait until engineio has written everything it had queued for this websocket viewer.

    True once a barrier queued now has reached the websocket writer; False at once if the viewer is not on an
    open websocket. If the connection closes first this never returns: wrap it in `asyncio.timeout`.
    """
    socket = _socket(sio, sid)
    if socket is None or websocket_transport(sio, sid) is None:
        return False
    barrier = _Barrier(eio_packet.Packet(eio_packet.NOOP).encode())
    barrier.future = asyncio.get_running_loop().create_future()
    noop = eio_packet.Packet(eio_packet.NOOP)
    noop.encode_cache = barrier
    await sio.eio.send_packet(socket.sid, noop)
    await barrier.future
    return True
