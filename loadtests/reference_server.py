"""A minimal Socket.IO-compatible broadcaster: the calibration target of the harness.

asyncio + uvloop protocol, websocket transport only, default namespace only. A room broadcast builds the
websocket frame once and calls ``transport.write`` for each viewer: no task, queue or timer per viewer. This
is the "limit" of docs/benchmarks.md's Anchors, kept here for two reasons:

* it is fast enough to saturate the load generator, so the harness can measure its own ceiling (if a real
  target gets close to this server's numbers, the generator, not the target, may be the limit);
* it is an anchor to compare a real target against in the same run (``run_hub_bench.py --target reference``).

Not a server to copy as is: no authentication, no backpressure (a slow viewer's write buffer grows without
bound), no ping timeout enforcement, and a bare-bones HTTP parser good only for our own clients.

It speaks exactly what ``socketio_viewers.py`` and ``bench_protocol.py`` need: the Engine.IO open packet,
``40`` → ``40{"sid":...}``, ``2``/``3`` pings, ``421["join",{"room_id":R}]`` → ``431[{"ok":true}]``, and the
``/bench/*`` control routes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import itertools
import json
import os
import resource
import signal
import struct
import urllib.parse
from typing import Any

import orjson
import uvloop
from bench_protocol import EVENT, JOIN_EVENT, BenchRuns

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
_PING_INTERVAL_S = 25.0
_MAX_REQUEST = 64 * 1024


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server-to-client websocket frame."""
    head = 0x80 | opcode
    size = len(payload)
    if size < 126:
        return bytes((head, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", head, 126, size) + payload
    return struct.pack("!BBQ", head, 127, size) + payload


class _Hub:
    """Rooms and connections of one process."""

    def __init__(self) -> None:
        self.connections: set[_Connection] = set()
        self.rooms: dict[str, set[_Connection]] = {}
        self.runs = BenchRuns()
        self._sids = itertools.count(1)

    def new_sid(self) -> str:
        return f"r{os.getpid()}-{next(self._sids)}"

    def broadcast(self, room: str, *texts: str) -> None:
        """Write the frames of ``texts`` to every viewer of ``room``: built once, one write per viewer."""
        frame = b"".join(_frame(text.encode()) for text in texts)
        for connection in self.rooms.get(room, ()):
            transport = connection.transport
            if transport is not None and not transport.is_closing():
                transport.write(frame)

    def leave_all(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        for room in connection.rooms:
            members = self.rooms.get(room)
            if members is not None:
                members.discard(connection)
                if not members:
                    del self.rooms[room]

    async def ping_forever(self) -> None:
        frame = _frame(b"2")
        while True:
            await asyncio.sleep(_PING_INTERVAL_S)
            for connection in list(self.connections):
                if connection.transport is not None and not connection.transport.is_closing():
                    connection.transport.write(frame)


class _Connection(asyncio.Protocol):
    """One TCP connection: an HTTP request, then (after an upgrade) Engine.IO over a websocket."""

    def __init__(self, hub: _Hub) -> None:
        self.hub = hub
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.rooms: set[str] = set()
        self.sid = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.leave_all(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.upgraded:
            self._read_frames()
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _MAX_REQUEST:
                self._close()
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        self._http(head)

    # HTTP

    def _http(self, head: str) -> None:
        lines = head.split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            self._close()
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        url = urllib.parse.urlsplit(target)
        query = {key: values[-1] for key, values in urllib.parse.parse_qs(url.query).items()}
        if url.path.rstrip("/") == "/socket.io" and headers.get("upgrade", "").lower() == "websocket":
            self._upgrade(headers.get("sec-websocket-key", ""))
        elif url.path == "/bench/health" and method == "GET":
            self._json(200, {"ok": True, "viewers": len(self.hub.connections), "pid": os.getpid()})
        elif url.path == "/bench/start" and method == "POST":
            self._start(query)
        elif url.path == "/bench/status" and method == "GET":
            found = self.hub.runs.status(int(query.get("run", "0")))
            if found is None:
                self._json(404, {"error": "no such run"})
            else:
                self._json(200, found.as_json())
        else:
            self._json(404, {"error": "not found"})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(head.encode() + payload)
        self.transport.close()

    def _start(self, query: dict[str, str]) -> None:
        room = query.get("room", "bench")
        hub = self.hub

        def emit(payload: dict[str, Any]) -> None:
            hub.broadcast(room, "42" + orjson.dumps([EVENT, payload]).decode())

        def emit_batch(payloads: list[dict[str, Any]]) -> None:
            hub.broadcast(room, *("42" + orjson.dumps([EVENT, payload]).decode() for payload in payloads))

        try:
            status = hub.runs.start(
                emit,
                rate=float(query.get("rate", "10")),
                seconds=float(query.get("seconds", "10")),
                pad=int(query.get("pad", "0")),
                burst=int(query.get("burst", "1")),
                emit_batch=emit_batch,
            )
        except ValueError as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"run": status.run, "planned": status.planned})

    def _upgrade(self, key: str) -> None:
        accept = base64.b64encode(hashlib.sha1(key.encode() + _WS_GUID).digest()).decode()  # noqa: S324 (RFC 6455)
        assert self.transport is not None
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        self.upgraded = True
        self.sid = self.hub.new_sid()
        self.hub.connections.add(self)
        opening = {"sid": self.sid, "upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 1e6}
        self._send("0" + json.dumps(opening))
        if self.buffer:
            self._read_frames()

    # websocket

    def _send(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_frame(text.encode()))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _read_frames(self) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            masked = buf[1] & 0x80
            size = buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size = struct.unpack_from("!H", buf, 2)[0]
                offset = 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size = struct.unpack_from("!Q", buf, 2)[0]
                offset = 10
            if size > 1_000_000:
                self._close()
                return
            mask = b""
            if masked:
                if len(buf) < offset + 4:
                    return
                mask = bytes(buf[offset : offset + 4])
                offset += 4
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if mask:
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            self._on_frame(opcode, payload)

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x8:  # close
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_frame(payload[:2], 0x8))
            self._close()
        elif opcode == 0x9:  # websocket-level ping
            if self.transport is not None:
                self.transport.write(_frame(payload, 0xA))
        elif opcode == 0x1:
            self._on_text(payload.decode())

    def _on_text(self, text: str) -> None:
        if text == "3" or not text:  # Engine.IO pong
            return
        if text == "2":
            self._send("3")
        elif text.startswith("40"):
            self._send("40" + json.dumps({"sid": self.sid}))
        elif text.startswith("41"):
            self.hub.leave_all(self)
        elif text.startswith("42"):
            body = text[2:]
            digits = len(body) - len(body.lstrip("0123456789"))
            ack, body = body[:digits], body[digits:]
            try:
                event = json.loads(body)
            except ValueError:
                return
            if isinstance(event, list) and event and event[0] == JOIN_EVENT:
                self._join(event[1] if len(event) > 1 else None, ack)

    def _join(self, data: Any, ack: str) -> None:
        ok = isinstance(data, dict) and "room_id" in data
        if ok:
            room = str(data["room_id"])
            self.rooms.add(room)
            self.hub.rooms.setdefault(room, set()).add(self)
        if ack:
            self._send(f"43{ack}" + json.dumps([{"ok": ok}]))


async def _serve(host: str, port: int, backlog: int, max_seconds: float) -> None:
    hub = _Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(hub), host, port, backlog=backlog)
    pinger = loop.create_task(hub.ping_forever())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"reference_server pid={os.getpid()} listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print(f"reference_server: --max-seconds {max_seconds} reached, stopping", flush=True)
    finally:
        pinger.cancel()
        await hub.runs.close()
        server.close()
        for connection in list(hub.connections):
            connection._close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="exit by itself after this long")
    args = parser.parse_args()
    if args.host != "127.0.0.1":
        parser.error("benchmarks listen on 127.0.0.1 only")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(_serve(args.host, args.port, args.backlog, args.max_seconds))


if __name__ == "__main__":
    main()
