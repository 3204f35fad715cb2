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

- `AsyncServer.create_queue()` makes each socket's `queue` (an `asyncio.Queue` whose `put`/`get` go through
  `put_nowait`/`get_nowait`), and the websocket loop decodes what `ws.wait()` returns with
  `packet.Packet(encoded_packet=...)` outside any `try` (so `wait` is where bad frames are stopped);
- python-socketio's `_handle_eio_message` is the engineio `message` handler and raises for a packet it cannot
  decode (which engineio would log with a traceback).

Writing to the transport directly is safe next to engineio's own writer because every frame write, ours
and aiohttp's (without compression), is one synchronous `transport.write`. Ordering is the one thing to
care about: what engineio has queued for a viewer is written later than a direct write made now, so a
viewer leaves the queued path only after `wait_flushed` has seen the queue written out.

**One output budget per connection.** Acknowledgements (python-socketio's path: engineio's queue, then
aiohttp's writer, which waits while the socket is full) and the fan-out's direct writes end in the same
place. `OutputQueue` counts the bytes engineio holds for a connection; with the transport's write buffer that
is everything this process has not handed to the kernel. Past `output_budget` the connection is closed at
once (the client resumes with `since`), whichever path added the last bytes: the fan-out checks the same
sum before it writes.

**Bad frames.** An empty or undecodable text frame closes that websocket with close code 1002; a Socket.IO
packet that cannot be decoded is dropped. Either is counted in `SocketStats` and logged once per connection,
without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import socketio
from aiohttp import WSCloseCode, WSMsgType, web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

__all__ = [
    "DEFAULT_OUTPUT_BUDGET",
    "OutputQueue",
    "SocketStats",
    "install",
    "output_queue",
    "queued_packets",
    "send_packet",
    "socket_stats",
    "wait_flushed",
    "websocket_transport",
]

log = logging.getLogger(__name__)

NAMESPACE = "/"
DEFAULT_OUTPUT_BUDGET = 1024 * 1024
_TRANSPORT_ATTR = "_livecommerce_transport"
_MALFORMED_ATTR = "_livecommerce_malformed"
_STATS_ATTR = "_livecommerce_stats"
_PACKET_TYPES = frozenset("0123456")  # Engine.IO v4 packet types; over a websocket a text frame starts with one


@dataclass
class SocketStats:
    """Running totals an operator reads in `/health`."""

    over_budget: int = 0  # connections closed because more than their output budget waited to be sent
    malformed_packets: int = 0  # Engine.IO frames or Socket.IO packets that could not be decoded
    malformed_connections: int = 0  # connections that sent at least one (each logged once)


class OutputQueue(asyncio.Queue[Any]):
    """engineio's per-connection send queue, counting what it holds against the connection's output budget.

    `transport` is set once the connection is on a websocket; until then (long-polling) the queue alone counts.
    """

    def __init__(self, server: Any, budget: int, stats: SocketStats) -> None:
        super().__init__()
        self.bytes = 0
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._server = server
        self._budget = budget
        self._stats = stats

    def unsent(self) -> int:
        """Bytes waiting in this process: queued here plus the transport's write buffer."""
        transport = self.transport
        return self.bytes + (transport.get_write_buffer_size() if transport is not None else 0)

    def put_nowait(self, item: Any) -> None:
        if item is None:  # engineio's "stop" for its writer: always let it through
            super().put_nowait(item)
            return
        if self.closing:
            return  # over budget and being closed: nothing more is queued
        self.bytes += _size(item)
        super().put_nowait(item)
        if self.bytes > self._budget or (self.transport is not None and self.unsent() > self._budget):
            self._over_budget()

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        if item is not None:
            self.bytes -= _size(item)
        return item

    def _over_budget(self) -> None:
        unsent = self.unsent()
        self.closing = True
        self._stats.over_budget += 1
        log.info("closing a connection: %d bytes unsent (output budget %d)", unsent, self._budget)
        transport = self.transport
        if transport is not None:  # websocket: engineio sees the connection drop and cleans up
            transport.abort()
            return
        # Long-polling: what it never fetched is dropped, so closing does not wait for it to be polled.
        while not self.empty():
            super().get_nowait()
            self.task_done()
        self.bytes = 0
        for sid, socket in list(self._server.sockets.items()):
            if socket.queue is self:
                task = asyncio.get_running_loop().create_task(self._server.disconnect(sid))
                _background.add(task)
                task.add_done_callback(_background.discard)
                break


_background: set[asyncio.Task[None]] = set()


def _size(item: Any) -> int:
    """About the bytes an engineio packet becomes on the wire (its UTF-8 length; the type digit is 1)."""
    data = getattr(item, "data", None)
    if isinstance(data, str):
        return (len(data) if data.isascii() else len(data.encode())) + 1
    if isinstance(data, bytes):
        return len(data) + 1
    return 64 if data is not None else 1


def socket_stats(sio: socketio.AsyncServer) -> SocketStats:
    """The totals of a server `install` was called on."""
    return _stats_of(sio.eio)


def _stats_of(eio: Any) -> SocketStats:
    stats: SocketStats = getattr(eio, _STATS_ATTR)
    return stats


def _malformed(stats: SocketStats, socket: Any, what: str, error: object) -> None:
    """Count a bad packet; log the first from each connection, one line, no traceback."""
    stats.malformed_packets += 1
    seen = getattr(socket, _MALFORMED_ATTR, 0) if socket is not None else 0
    if socket is not None:
        setattr(socket, _MALFORMED_ATTR, seen + 1)
    if not seen:
        stats.malformed_connections += 1
        sid = getattr(socket, "sid", "?")
        log.warning("connection %s sent a malformed %s (%s); further ones are counted, not logged", sid, what, error)


class _Barrier(str):
    """What engineio's writer hands to `_HubWebSocket.send` instead of text: all queued before it is written.

    It is the cached encoding of a NOOP packet, so a writer that is not ours (long-polling) sends a harmless
    Engine.IO NOOP ("6") instead.
    """

    future: asyncio.Future[None]


class _HubWebSocket(eio_aiohttp.WebSocket):  # type: ignore[misc]
    """engineio's aiohttp websocket wrapper, recording the transport and without per-message deflate."""

    _socket: Any = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request: web.Request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=False)
        await self._sock.prepare(request)
        self.environ = environ
        socket = self._socket = getattr(self.handler, "__self__", None)
        if isinstance(socket, AsyncSocket):
            setattr(socket, _TRANSPORT_ATTR, request.transport)
            if isinstance(socket.queue, OutputQueue):
                socket.queue.transport = request.transport
        else:  # engineio changed; viewers still work, through the slow path
            log.error("engineio's websocket handler is not bound to an AsyncSocket; direct writes are off")
        try:
            await self.handler(self)
        except Exception as error:  # noqa: BLE001 - never an HTTP 500 written onto an upgraded connection
            _malformed(_stats_of(self.server), socket, "websocket message", repr(error))
            await self._sock.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"invalid packet")
            if isinstance(socket, AsyncSocket):
                socket.queue.put_nowait(None)  # ends engineio's writer task
                await socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        return self._sock

    async def wait(self) -> str | bytes:
        """The next message; an empty or invalid text frame closes the websocket (close code 1002)."""
        msg = await self._sock.receive()
        if msg.type is WSMsgType.BINARY:
            data: bytes = msg.data
            return data
        if msg.type is not WSMsgType.TEXT:
            raise OSError("websocket closed")
        text: str = msg.data
        if not text or text[0] not in _PACKET_TYPES:
            _malformed(_stats_of(self.server), self._socket, "Engine.IO packet", f"text frame {text[:16]!r}")
            await self._sock.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"invalid Engine.IO packet")
            raise OSError("invalid Engine.IO packet")
        return text

    async def send(self, message: str | bytes) -> None:
        if isinstance(message, _Barrier):
            if not message.future.done():
                message.future.set_result(None)
            return
        await super().send(message)


def install(sio: socketio.AsyncServer, *, output_budget: int = DEFAULT_OUTPUT_BUDGET) -> None:
    """Use `_HubWebSocket` and `OutputQueue` for this server's connections, and drop undecodable Socket.IO
    packets without a traceback. Call once, before clients connect.

    Fails at start-up, not under load, if engineio no longer looks the way this module expects.
    """
    if output_budget < 1:
        raise ValueError("output_budget must be positive")
    eio = sio.eio
    if eio.async_mode != "aiohttp":
        raise ValueError(f"the hub needs async_mode='aiohttp', not {eio.async_mode!r}")
    current = eio._async.get("websocket")
    if current is _HubWebSocket:
        return
    if (
        current is not eio_aiohttp.WebSocket
        or not callable(getattr(AsyncSocket, "_websocket_handler", None))
        or not callable(eio.handlers.get("message"))
    ):
        raise RuntimeError(
            "engineio's aiohttp websocket internals changed (python-engineio upgrade?); "
            "review livecommerce/hub/transport.py and tests/hub/test_transport.py"
        )
    stats = SocketStats()
    setattr(eio, _STATS_ATTR, stats)
    eio._async = {**eio._async, "websocket": _HubWebSocket}
    eio.create_queue = lambda *args, **kwargs: OutputQueue(eio, output_budget, stats)
    eio.on("message", _guarded(eio, eio.handlers["message"], stats))


def _guarded(
    eio: Any, handle: Callable[[str, Any], Awaitable[None]], stats: SocketStats
) -> Callable[[str, Any], Awaitable[None]]:
    """python-socketio's message handler, with packets it cannot decode counted and dropped."""

    async def on_message(eio_sid: str, data: Any) -> None:
        try:
            await handle(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            _malformed(stats, eio.sockets.get(eio_sid), "Socket.IO packet", f"{type(error).__name__}: {error}")

    return on_message


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


def output_queue(sio: socketio.AsyncServer, sid: str) -> OutputQueue | None:
    """The viewer's engineio queue when it is metered (see `OutputQueue`), else None."""
    socket = _socket(sio, sid)
    queue = None if socket is None else socket.queue
    return queue if isinstance(queue, OutputQueue) else None


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
