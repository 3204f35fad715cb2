"""A bare python-socketio server on a loopback port running a `Fanout` (clients join rooms with the "join"
event), and its clients: python-socketio (`Viewer`) and a hand-made websocket client that can stop reading
(`RawViewer`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import socketio
from aiohttp import web
from aiohttp.test_utils import TestServer

from livecommerce.hub.fanout import Fanout
from livecommerce.hub.transport import install

__all__ = ["Hub", "RawViewer", "Viewer", "serve"]


@dataclass
class Hub:
    """A python-socketio server with a running `Fanout`; clients join rooms with the "join" event."""

    sio: socketio.AsyncServer
    fanout: Fanout
    server: TestServer
    disconnects: list[str] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    async def wait_disconnected(self, sid: str, within: float = 5) -> None:
        async with asyncio.timeout(within):
            while sid not in self.disconnects:
                self.disconnected.clear()
                await self.disconnected.wait()


@contextlib.asynccontextmanager
async def serve(*, ping: int = 25, **options: Any) -> AsyncIterator[Hub]:
    """`ping` short makes long-polling clients quick to disconnect (python-engineio waits out a poll first)."""
    sio = socketio.AsyncServer(
        async_mode="aiohttp", ping_interval=ping, ping_timeout=ping, logger=False, engineio_logger=False
    )
    install(sio, output_budget=options.get("hard_limit", 1024 * 1024))  # one budget, as in hub/runtime.py
    app = web.Application()
    sio.attach(app)
    hub = Hub(sio, Fanout(sio, **options), TestServer(app, host="127.0.0.1"))

    async def join(sid: str, room: int) -> bool:
        hub.fanout.join(room, sid)
        return True

    async def leave(sid: str, room: int) -> bool:
        hub.fanout.leave(room, sid)
        return True

    async def disconnect(sid: str, reason: Any = None) -> None:
        hub.fanout.leave_all(sid)
        hub.disconnects.append(sid)
        hub.disconnected.set()

    async def connect(sid: str, environ: Any, auth: Any = None) -> None:
        for room in auth.get("rooms", []) if isinstance(auth, dict) else []:
            hub.fanout.join(room, sid)

    sio.on("connect", connect)
    sio.on("join", join)
    sio.on("leave", leave)
    sio.on("disconnect", disconnect)
    await hub.server.start_server()
    task = asyncio.create_task(hub.fanout.run())
    try:
        yield hub
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sio.shutdown()
        await hub.server.close()


class Viewer:
    """A real python-socketio client recording every server event, with deadline-bound waits."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()
        self.client.on("*", self._record)

    def _record(self, event: str, data: Any) -> None:  # not async: recorded in arrival order
        self.received.append((event, data))
        self._changed.set()

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, hub: Hub, *rooms: int, transports: list[str] | None = None) -> AsyncIterator[Viewer]:
        viewer = cls()
        await viewer.client.connect(hub.url, transports=transports)
        try:
            for room in rooms:
                assert await viewer.client.call("join", room, timeout=5) is True
            yield viewer
        finally:
            await viewer.client.disconnect()

    @property
    def sid(self) -> str:
        sid = self.client.get_sid()
        assert isinstance(sid, str)
        return sid

    def named(self, event: str) -> list[Any]:
        return [data for name, data in self.received if name == event]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5) -> None:
        try:
            async with asyncio.timeout(within):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            names = [name for name, _ in self.received]
            raise AssertionError(f"not seen within {within} s; received {len(names)}: {names[-20:]}") from None

    async def wait_event(self, event: str, match: Callable[[Any], bool] = lambda _: True) -> Any:
        await self.wait_for(lambda: any(match(data) for data in self.named(event)))
        return next(data for data in self.named(event) if match(data))


class RawViewer:
    """A websocket Socket.IO client written by hand, so that it can stop reading (and make its buffers small)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        self.reader, self.writer, self.headers = reader, writer, headers
        self.received: list[tuple[str, Any]] = []
        self.sid = ""
        self._ack = 0

    @classmethod
    async def open(
        cls, hub: Hub, *, eio_sid: str | None = None, rcvbuf: int | None = None, extensions: str | None = None
    ) -> RawViewer:
        """The websocket alone: new (then call `handshake`), or an upgrade of the long-polling session `eio_sid`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connecting, so the window is negotiated small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (hub.server.host, hub.server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            "GET /socket.io/?EIO=4&transport=websocket" + (f"&sid={eio_sid}" if eio_sid else "") + " HTTP/1.1",
            f"Host: {hub.server.host}:{hub.server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if extensions:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().strip().split("\r\n")
        assert status.startswith("HTTP/1.1 101"), status
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
        return cls(reader, writer, headers)

    @classmethod
    async def connect(cls, hub: Hub, *, rcvbuf: int | None = None, extensions: str | None = None) -> RawViewer:
        viewer = await cls.open(hub, rcvbuf=rcvbuf, extensions=extensions)
        assert (await viewer.read_packet()).startswith(b"0{")  # Engine.IO open
        viewer.send(b"40")
        connected = await viewer.read_packet()
        assert connected.startswith(b"40{"), connected
        viewer.sid = orjson.loads(connected[2:])["sid"]
        return viewer

    def send(self, data: bytes) -> None:
        assert len(data) < 126
        mask = os.urandom(4)
        self.writer.write(bytes((0x81, 0x80 | len(data))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    async def read_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next final server frame that is not an Engine.IO ping (pings are answered)."""
        while True:
            first, second = await self.reader.readexactly(2)
            assert first & 0xF0 == 0x80, f"not a final frame without extension bits: {first:#x}"
            assert second & 0x80 == 0, "server frames are never masked"
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            data = await self.reader.readexactly(length)
            if (first & 0x0F, data) == (0x1, b"2"):
                self.send(b"3")
                continue
            return first & 0x0F, data

    async def read_packet(self) -> bytes:
        """The next Engine.IO packet (a text frame) that is not a ping (pings are answered)."""
        opcode, data = await self.read_frame()
        assert opcode == 0x1, f"not a text frame: opcode {opcode:#x}"
        return data

    async def read_event(self) -> tuple[str, Any]:
        while True:
            packet = await self.read_packet()
            if packet.startswith(b"42["):
                event, data = orjson.loads(packet[2:])
                self.received.append((event, data))
                return event, data

    async def join(self, room: int) -> None:
        self._ack += 1
        self.send(b'42%d["join",%d]' % (self._ack, room))
        expected = b"43%d[true]" % self._ack
        while (packet := await self.read_packet()) != expected:
            assert packet.startswith(b"42["), packet

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
