"""Bounded everything on the socket: the output budget (replies included), the connection caps, HTTP read
deadlines, and bad frames and packets. The whole app on loopback, real clients and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import aiohttp
import orjson
import pytest
import socketio
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.hub import transport
from livecommerce.hub.runtime import SIO, socket_counters
from livecommerce.settings import Settings, replace
from tests.support.fanout_hub import Hub, RawViewer
from tests.support.sockets import Viewer
from tests.support.waits import eventually
from tests.support.world import seed_world

Client = TestClient[Request, Application]

# The app's database does not matter here: SQLite only.
pytestmark = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@contextlib.asynccontextmanager
async def served(settings: Settings, redis_url: str, **changes: Any) -> AsyncIterator[Client]:
    app = create_app(replace(settings, **changes), redis_url=redis_url)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def as_hub(client: Client) -> Hub:
    """What `RawViewer` needs of a server: its host and port."""
    return cast(Hub, type("Served", (), {"server": client.server})())


def sio_of(client: Client) -> socketio.AsyncServer:
    return client.app[SIO]


def masked_frame(opcode: int, data: bytes) -> bytes:
    mask = os.urandom(4)
    assert len(data) < 126
    return bytes((0x80 | opcode, 0x80 | len(data))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


# --- the output budget ----------------------------------------------------------------------------------------


async def test_a_client_that_never_reads_is_disconnected_and_others_keep_receiving(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> None:
    """Joins answered with snapshots pile up behind a client that reads nothing: past its budget it is cut off,
    while a viewer of the same room keeps getting the room's events."""
    budget = 16 * 1024
    async with served(settings, redis_url, socket_output_budget=budget) as client:
        world = await seed_world(client, engine)
        room = world.ids["room"]
        await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
        url = str(client.make_url(""))
        host, fast = Viewer(), Viewer()
        await host.connect(url, world.api.tokens["host"])
        await fast.connect(url, world.api.tokens["viewer"])
        try:
            assert (await fast.call("join", {"room_id": room}))["ok"]
            assert (await host.call("join", {"room_id": room}))["ok"]
            for n in range(5):  # every snapshot now carries ~1.5 KB of chat
                assert (await host.call("chat", {"room_id": room, "text": f"{n} " + "x" * 290}))["ok"]
            slow = await RawViewer.connect(as_hub(client), rcvbuf=4096)
            server_side = transport.websocket_transport(sio_of(client), slow.sid)
            assert server_side is not None
            server_side.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            join = orjson.dumps({"room_id": room})
            try:
                for n in range(400):  # ~20 a second, the per-connection event rate; never reading an answer
                    slow.writer.write(masked_frame(0x1, b'42%d["join",%b]' % (n, join)))
                    await asyncio.sleep(0.05)  # pacing the producer
                    if n == 20:  # meanwhile the room goes on for everyone else
                        ack = await host.call("pin", {"room_id": room, "product_id": world.ids["product"]})
                        assert ack["ok"], ack
                        await fast.wait_for("pinned", lambda d: d["product"] is not None, within=2)
                    if socket_counters(client.app)["dropped_slow"]:
                        break
                assert socket_counters(client.app)["dropped_slow"] == 1, "cut off past its budget"
                with contextlib.suppress(ConnectionError):
                    async with asyncio.timeout(5):
                        while await slow.reader.read(65536):  # what the kernel still held, then the end
                            pass
            finally:
                await slow.close()
            ack = await host.call("unpin", {"room_id": room})
            assert ack["ok"], ack
            await fast.wait_for("pinned", lambda d: d["product"] is None, within=2)
            assert fast.sio.connected
            assert host.sio.connected
        finally:
            await fast.close()
            await host.close()


# --- connection caps ------------------------------------------------------------------------------------------


async def handshake(client: Client, source: str) -> tuple[int, dict[str, str], Any]:
    """An Engine.IO long-polling handshake from the loopback address `source`."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(client.make_url("/socket.io/?EIO=4&transport=polling")) as response,
    ):
        body = await response.read()
        return response.status, dict(response.headers), body


async def test_connections_past_the_caps_are_refused_with_a_reason(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> None:
    async with served(settings, redis_url, max_connections=3, max_connections_per_address=2) as client:
        url = str(client.make_url(""))
        first, second, late = Viewer(), Viewer(), Viewer()
        await first.connect(url)
        await second.connect(url)
        try:
            status, headers, body = await handshake(client, "127.0.0.1")  # a third from the same address
            problem = orjson.loads(body)
            assert (status, problem["code"]) == (429, "rate_limited"), problem
            assert "your address" in problem["detail"]
            assert int(headers["Retry-After"]) > 0
            refused = Viewer()
            with pytest.raises(socketio.exceptions.ConnectionError):
                await refused.connect(url)
            await refused.close()

            status, _, body = await handshake(client, "127.0.0.2")  # another address: the third place
            assert status == 200, body
            eio_sid = orjson.loads(body[1:])["sid"]
            status, headers, body = await handshake(client, "127.0.0.3")  # the process is full
            problem = orjson.loads(body)
            assert (status, problem["code"]) == (503, "unavailable"), problem
            assert int(headers["Retry-After"]) > 0

            async with client.get("/health") as response:
                sockets = (await response.json())["sockets"]
            assert sockets["connections"] == 3
            assert (sockets["refused_address"], sockets["refused_full"]) == (2, 1)

            await first.close()  # a place is given back when a connection ends
            async with client.post(f"/socket.io/?EIO=4&transport=polling&sid={eio_sid}", data="1") as response:
                assert response.status == 200  # Engine.IO close of the polling session
            await eventually(lambda: socket_counters(client.app)["connections"] == 1, what="places back")
            await late.connect(url)
            assert late.sio.connected
        finally:
            for viewer in (first, second, late):
                await viewer.close()


# --- HTTP read deadlines --------------------------------------------------------------------------------------


async def test_a_slow_header_client_is_closed_and_the_server_keeps_serving(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> None:
    async with served(settings, redis_url, http_header_timeout=1) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        try:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            closed = False
            for byte in b"X-Slow: " + b"a" * 200:  # one byte every 50 ms: never a whole header block
                if reader.at_eof():
                    closed = True
                    break
                writer.write(bytes((byte,)))
                await asyncio.sleep(0.05)  # pacing the slow client
            assert closed, "the connection was still open after 10 s of headers"
            assert await reader.read() == b"", "closed without a response"
        finally:
            writer.close()
        async with client.get("/health") as response:
            assert response.status == 200


async def test_a_slow_body_gets_408_and_its_connection_is_closed(
    settings: Settings, engine: AsyncEngine, redis_url: str
) -> None:
    async with served(settings, redis_url, http_body_timeout=1) as client:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        try:
            writer.write(
                b"POST /api/v1/auth/demo-login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"email":'
            )
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                rest = await reader.read()  # to the end: the server closes the connection
            assert head.startswith(b"HTTP/1.1 408"), head
            assert b"connection: close" in head.lower()
            assert orjson.loads(rest)["code"] == "request_timeout"
        finally:
            writer.close()


# --- bad frames and packets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", [b"", b"x", b"9junk"], ids=["empty", "not-a-packet-type", "unknown-type"])
async def test_an_invalid_websocket_text_frame_closes_it_cleanly(
    settings: Settings, engine: AsyncEngine, redis_url: str, frame: bytes
) -> None:
    async with served(settings, redis_url) as client:
        raw = await RawViewer.connect(as_hub(client))
        try:
            raw.writer.write(masked_frame(0x1, frame))
            async with asyncio.timeout(5):
                opcode, payload = await raw.read_frame()
                assert opcode == 0x8, (opcode, payload)  # a close frame, not an HTTP 500 on the upgraded stream
                assert int.from_bytes(payload[:2], "big") == 1002
                raw.writer.write(masked_frame(0x8, payload[:2]))  # the client's half of the closing handshake
                assert await raw.reader.read() == b"", "then the server closes the connection"
        finally:
            await raw.close()
        await eventually(lambda: socket_counters(client.app)["connections"] == 0, what="session ended")
        assert socket_counters(client.app)["malformed_packets"] == 1
        viewer = Viewer()  # the server keeps serving
        await viewer.connect(str(client.make_url("")))
        await viewer.close()


async def test_a_malformed_packet_is_logged_once_without_a_traceback(
    settings: Settings, engine: AsyncEngine, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings, redis_url) as client:
        raw = await RawViewer.connect(as_hub(client))
        try:
            for bad in (b'42{"unclosed', b"42[]", b'42{"a":1}', b"4"):
                raw.send(bad)
            raw.send(b'421["nope",{}]')  # still connected and answered
            async with asyncio.timeout(5):
                while not (packet := await raw.read_packet()).startswith(b"431"):
                    pass
            assert orjson.loads(packet[3:])[0]["error"]["code"] == "not_found"
        finally:
            await raw.close()
        assert socket_counters(client.app)["malformed_packets"] == 4
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 1, [r.getMessage() for r in malformed]
    assert all(r.exc_info is None and r.exc_text is None for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.exc_info
    ]


async def test_an_undecodable_long_polling_body_is_logged_as_one_line(
    settings: Settings, engine: AsyncEngine, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with served(settings, redis_url) as client:
        opened = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert opened.status == 200
        sid = orjson.loads((await opened.read())[1:])["sid"]
        posted = await client.post(
            "/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid}, data=b"zz not a packet"
        )
        assert posted.status < 500
        assert (await client.get("/health")).status == 200  # still serving
    errors = [r for r in caplog.records if r.name == "livecommerce.hub.engineio"]
    assert errors, "engineio's error about the body reaches our log"
    assert all(r.exc_info is None and r.exc_text is None for r in caplog.records), [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
