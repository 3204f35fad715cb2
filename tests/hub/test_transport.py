"""Pins the engineio and python-socketio internals `livecommerce.hub.transport` relies on.

If one of these fails after upgrading python-engineio or python-socketio, do not patch the test: read the new
engineio `async_drivers/aiohttp.py` and `async_socket.py`, then fix `transport.py` (or pin the old version).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket

import aiohttp
import orjson
import pytest
import socketio
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp
from engineio.async_socket import AsyncSocket

from livecommerce.hub import transport
from livecommerce.hub.frames import encode_events
from tests.support.fanout_hub import Hub, RawViewer, Viewer, serve


def _parameters(function: object) -> list[str]:
    assert callable(function)
    return list(inspect.signature(function).parameters)


def test_the_shapes_we_depend_on() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    assert sio.eio._async["websocket"] is eio_aiohttp.WebSocket
    assert _parameters(eio_aiohttp.WebSocket.__init__) == ["self", "handler", "server"]
    assert _parameters(eio_aiohttp.WebSocket.__call__) == ["self", "environ"]
    assert _parameters(eio_aiohttp.WebSocket.send) == ["self", "message"]
    assert _parameters(AsyncSocket._websocket_handler) == ["self", "ws"]
    assert "self._websocket_handler" in inspect.getsource(AsyncSocket._upgrade_websocket)
    assert "ws.send(pkt.encode())" in inspect.getsource(AsyncSocket._websocket_handler), "the writer's call"
    cached = eio_packet.Packet(eio_packet.NOOP)
    cached.encode_cache = "sentinel"
    assert cached.encode() == "sentinel"
    assert callable(sio.manager.eio_sid_from_sid)


def test_install_replaces_the_wrapper_for_this_server_only() -> None:
    sio, other = socketio.AsyncServer(async_mode="aiohttp"), socketio.AsyncServer(async_mode="aiohttp")
    transport.install(sio)
    transport.install(sio)  # idempotent
    assert issubclass(sio.eio._async["websocket"], eio_aiohttp.WebSocket)
    assert sio.eio._async["websocket"] is not eio_aiohttp.WebSocket
    assert other.eio._async["websocket"] is eio_aiohttp.WebSocket
    with pytest.raises(ValueError, match="aiohttp"):
        transport.install(socketio.AsyncServer(async_mode="asgi"))
    changed = socketio.AsyncServer(async_mode="aiohttp")
    changed.eio._async = {**changed.eio._async, "websocket": object}
    with pytest.raises(RuntimeError, match="internals changed"):
        transport.install(changed)


async def test_websocket_viewers_expose_their_transport() -> None:
    async with serve() as hub:
        raw = await RawViewer.connect(hub)
        try:
            found = transport.websocket_transport(hub.sio, raw.sid)
            assert found is not None  # uvloop's TCPTransport is not an asyncio.Transport subclass; same methods
            assert all(callable(getattr(found, m)) for m in ("write", "is_closing", "get_write_buffer_size", "abort"))
            assert not found.is_closing()
            assert found.get_extra_info("peername") == raw.writer.get_extra_info("sockname"), "the viewer's socket"
            eio_socket = hub.sio.eio.sockets[hub.sio.manager.eio_sid_from_sid(raw.sid, "/")]
            assert isinstance(eio_socket, AsyncSocket)
            assert (eio_socket.upgraded, eio_socket.upgrading, eio_socket.closing, eio_socket.closed) == (
                True,
                False,
                False,
                False,
            )
            assert isinstance(eio_socket.queue, asyncio.Queue)
        finally:
            await raw.close()
        await hub.wait_disconnected(raw.sid)
        assert transport.websocket_transport(hub.sio, raw.sid) is None
        assert transport.websocket_transport(hub.sio, "no-such-sid") is None


async def test_polling_viewers_have_no_transport_until_upgraded() -> None:
    async with serve(ping=1) as hub, Viewer.connected(hub, transports=["polling"]) as viewer:
        assert transport.websocket_transport(hub.sio, viewer.sid) is None
        assert not await transport.wait_flushed(hub.sio, viewer.sid)
        assert await transport.send_packet(hub.sio, viewer.sid, b'42["queued",{"n":1}]')
        await viewer.wait_event("queued")
        assert viewer.named("queued") == [{"n": 1}]
        assert not await transport.send_packet(hub.sio, "no-such-sid", b'42["x",{}]')
        with pytest.raises(ValueError, match=r"Engine\.IO message"):
            await transport.send_packet(hub.sio, viewer.sid, b'2["not",{}]')


async def test_frames_written_directly_reach_a_python_socketio_client() -> None:
    """Several frames in one write, with 7-, 16- and 64-bit lengths, interleaved safely with python-socketio."""
    async with serve() as hub, Viewer.connected(hub) as viewer:
        found = transport.websocket_transport(hub.sio, viewer.sid)
        assert found is not None
        events: list[tuple[str, object]] = [("small", "a"), ("medium", "b" * 1000), ("large", "c" * 70_000)]
        found.write(encode_events(events))
        await hub.sio.emit("via_socketio", "d", to=viewer.sid)
        found.write(encode_events([("after", "e")]))
        await viewer.wait_event("after")
        await viewer.wait_event("via_socketio")
        assert [e for e in viewer.received if e[0] != "via_socketio"] == [*events, ("after", "e")]


async def test_per_message_deflate_is_off() -> None:
    """aiohttp would compress each frame for each viewer; the hub's frames are encoded once, uncompressed."""
    offer = "permessage-deflate; client_max_window_bits"
    async with serve() as hub:
        raw = await RawViewer.connect(hub, extensions=offer)
        await raw.close()
        assert "sec-websocket-extensions" not in raw.headers
    stock = socketio.AsyncServer(async_mode="aiohttp")  # the control: unpatched, aiohttp negotiates deflate
    app = aiohttp.web.Application()
    stock.attach(app)
    async with aiohttp.test_utils.TestServer(app, host="127.0.0.1") as server:
        raw = await RawViewer.open(Hub(stock, None, server), extensions=offer)  # type: ignore[arg-type]
        await raw.close()
        assert raw.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate")


async def test_queued_packets_counts_what_a_poller_has_not_fetched() -> None:
    async with serve(ping=5) as hub, aiohttp.ClientSession() as http:
        url = f"{hub.url}/socket.io/?EIO=4&transport=polling"
        async with http.get(url) as response:
            url += "&sid=" + orjson.loads((await response.read())[1:])["sid"]
        async with http.post(url, data="40") as response:
            assert response.status == 200
        async with http.get(url) as response:
            sid = orjson.loads((await response.read())[2:])["sid"]
        assert transport.queued_packets(hub.sio, sid) == 0
        for n in range(3):
            assert await transport.send_packet(hub.sio, sid, b'42["n",%d]' % n)
        assert transport.queued_packets(hub.sio, sid) == 3
        async with http.get(url) as response:
            assert (await response.read()).split(b"\x1e") == [b'42["n",0]', b'42["n",1]', b'42["n",2]']
        assert transport.queued_packets(hub.sio, sid) == 0
        assert transport.queued_packets(hub.sio, "no-such-sid") == 0
        async with http.post(url, data="1") as response:  # Engine.IO close
            assert response.status == 200


async def test_wait_flushed_returns_only_after_the_queue_is_written() -> None:
    """With engineio's writer stuck behind a viewer that reads nothing, the barrier waits; then it is in order."""
    async with serve(hard_limit=4 * 1024 * 1024) as hub:  # ~1 MB queued must stay within the output budget
        raw = await RawViewer.connect(hub, rcvbuf=4096)
        try:
            found = transport.websocket_transport(hub.sio, raw.sid)
            assert found is not None
            found.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            blob = b"x" * 20_000
            for n in range(50):  # ~1 MB through engineio's queue
                assert await transport.send_packet(hub.sio, raw.sid, b'42["queued",{"n":%d,"blob":"%b"}]' % (n, blob))
            flushed = asyncio.create_task(transport.wait_flushed(hub.sio, raw.sid))
            done, _ = await asyncio.wait([flushed], timeout=0.3)
            assert not done, "the barrier cannot pass a writer that is stuck"
            order = [(await raw.read_event())[1]["n"] for _ in range(50)]
            assert order == list(range(50))
            assert await asyncio.wait_for(flushed, 5) is True
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                flushed.cancel()
            await raw.close()


async def test_replies_alone_are_held_to_the_output_budget() -> None:
    """Acknowledgements go through engineio's queue, not the fan-out: a client that asks and never reads is
    still cut off once its unsent replies pass the budget, and the queue stops growing."""
    budget = 64 * 1024
    async with serve(hard_limit=budget, soft_limit=budget // 4) as hub:

        async def big(sid: str, data: object) -> str:
            return "x" * 8000

        hub.sio.on("big", big)
        raw = await RawViewer.connect(hub, rcvbuf=4096)
        try:
            found = transport.websocket_transport(hub.sio, raw.sid)
            queue = transport.output_queue(hub.sio, raw.sid)
            assert found is not None
            assert queue is not None
            found.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            for n in range(1000):  # 8 MB of replies asked for, none read
                raw.send(b'42%d["big",1]' % n)
                await asyncio.sleep(0.002)  # pacing the client
                if transport.socket_stats(hub.sio).over_budget:
                    break
            assert transport.socket_stats(hub.sio).over_budget == 1
            assert queue.unsent() <= budget + 8100, "nothing more is queued once over the budget"
            await hub.wait_disconnected(raw.sid)
            assert hub.fanout.stats.dropped_viewers == 0, "the fan-out had nothing to do with it"
        finally:
            await raw.close()
