"""The local data plane against real clients: python-socketio over websocket and long-polling, and a hand-made
websocket client that can stop reading, all on a real python-socketio server on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import aiohttp
import orjson
import pytest
import socketio

from livecommerce.hub import transport as hub_transport
from livecommerce.hub.fanout import Fanout
from livecommerce.hub.transport import websocket_transport
from tests.support.fanout_hub import Hub, RawViewer, Viewer, serve
from tests.support.waits import eventually

# --- harness --------------------------------------------------------------------------------------------------


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    async with serve() as hub:
        yield hub


def numbered(n: int) -> Callable[[Any], bool]:
    return lambda data: bool(data["n"] == n)


# --- delivery -------------------------------------------------------------------------------------------------


async def test_events_reach_every_viewer_of_the_room_and_no_one_else(hub: Hub) -> None:
    async with (
        Viewer.connected(hub, 1) as a,
        Viewer.connected(hub, 2) as b,
        Viewer.connected(hub, 1, 2) as both,
    ):
        assert hub.fanout.local_counts() == {1: 2, 2: 2}
        assert hub.fanout.rooms() == {1, 2}
        hub.fanout.add_event(1, "room_status", {"room_id": 1, "status": "live", "seq": "1-0"})
        await a.wait_event("room_status")
        await both.wait_event("room_status")
        hub.fanout.add_event(2, "room_status", {"room_id": 2, "status": "ended", "seq": "2-0"})
        await both.wait_for(lambda: len(both.named("room_status")) == 2)
        await b.wait_event("room_status")
        assert b.named("room_status") == [{"room_id": 2, "status": "ended", "seq": "2-0"}]
        assert a.named("room_status") == [{"room_id": 1, "status": "live", "seq": "1-0"}]
        assert [d["room_id"] for d in both.named("room_status")] == [1, 2]
    assert hub.fanout.stats.writes > 0, "websocket viewers should be on direct writes"


async def test_one_tick_arrives_in_the_documented_order(hub: Hub) -> None:
    async with Viewer.connected(hub, 5) as viewer:
        f = hub.fanout  # one synchronous block: everything lands in the same tick
        f.set_counters(5, 3, 10)
        f.add_chat(5, {"id": "m1", "text": "first"})
        f.set_state(5, "pinned", "pinned", {"product": 1})
        f.add_event(5, "chat_deleted", {"ids": ["m0"], "seq": "1"})
        f.set_state(5, "status", "slow_mode", {"seconds": 5})
        f.set_state(5, "pinned", "pinned", {"product": 2})
        f.add_chat(5, {"id": "m2", "text": "second"})
        f.add_event(5, "room_status", {"status": "live", "seq": "2"})
        await viewer.wait_event("counters")
        assert viewer.received == [
            ("chat_deleted", {"ids": ["m0"], "seq": "1"}),
            ("room_status", {"status": "live", "seq": "2"}),
            ("slow_mode", {"seconds": 5}),
            ("pinned", {"product": 2}),
            ("chat", {"room_id": 5, "messages": [{"id": "m1", "text": "first"}, {"id": "m2", "text": "second"}],
                      "skipped": 0}),
            ("counters", {"room_id": 5, "viewers": 3, "likes": 10}),
        ]  # fmt: skip


async def test_state_is_latest_wins(hub: Hub) -> None:
    async with Viewer.connected(hub, 1) as viewer:
        for product in range(10):
            hub.fanout.set_state(1, "pinned", "pinned", {"product": product, "seq": f"1-{product}"})
        await viewer.wait_event("pinned")
        hub.fanout.add_event(1, "marker", {})  # a later tick: anything else pinned would have come before it
        await viewer.wait_event("marker")
        assert viewer.named("pinned") == [{"product": 9, "seq": "1-9"}]


async def test_chat_storm_is_sampled_per_tick_and_skipped_adds_up(hub: Hub) -> None:
    sent, tick = 2000, 0.05
    async with Viewer.connected(hub, 1) as viewer, Viewer.connected(hub, 1) as other:
        ticks_before, started = hub.fanout.stats.ticks, time.monotonic()
        for burst in range(40):  # 50 messages every 25 ms: ~1 s
            for n in range(50):
                hub.fanout.add_chat(1, {"id": burst * 50 + n, "text": "spam"})
            await asyncio.sleep(0.025)  # pacing the producer, not waiting for a result

        def accounted(v: Viewer) -> int:
            return sum(len(c["messages"]) + c["skipped"] for c in v.named("chat"))

        await viewer.wait_for(lambda: accounted(viewer) >= sent)
        await other.wait_for(lambda: accounted(other) >= sent)
        elapsed, ticks = time.monotonic() - started, hub.fanout.stats.ticks - ticks_before
        for v in (viewer, other):
            batches = v.named("chat")
            assert accounted(v) == sent
            assert all(len(b["messages"]) <= 25 for b in batches)
            assert len(batches) <= ticks + 1, (len(batches), ticks)
            assert len(batches) <= elapsed / tick + 3, (len(batches), elapsed)
            ids = [m["id"] for b in batches for m in b["messages"]]
            assert ids == sorted(set(ids)), "a sample keeps arrival order, without repeats"
            assert len(ids) < sent, "a storm is sampled"
        assert hub.fanout.stats.skipped_chat == sent - len([m for b in viewer.named("chat") for m in b["messages"]])


async def test_counters_are_coalesced_and_the_last_value_wins(hub: Hub) -> None:
    async with Viewer.connected(hub, 1) as viewer:
        started = time.monotonic()
        for burst in range(50):  # 1,000 updates over ~1 s
            for n in range(20):
                value = burst * 20 + n
                hub.fanout.set_counters(1, viewers=value, likes=2 * value)
            await asyncio.sleep(0.02)  # pacing the producer
        await viewer.wait_event("counters", lambda d: d["viewers"] == 999)
        elapsed = time.monotonic() - started
        counters = viewer.named("counters")
        assert counters[-1] == {"room_id": 1, "viewers": 999, "likes": 1998}
        assert len(counters) <= elapsed / 0.25 + 2, (len(counters), elapsed)
        assert [c["viewers"] for c in counters] == sorted({c["viewers"] for c in counters}), "only changes are sent"
        hub.fanout.set_counters(1, viewers=999, likes=1998)  # unchanged: not sent again
        hub.fanout.add_event(1, "marker", {})
        await viewer.wait_event("marker")
        await asyncio.sleep(0.3)  # past the interval: an unchanged value would have been sent by now
        hub.fanout.add_event(1, "marker2", {})
        await viewer.wait_event("marker2")
        assert len(viewer.named("counters")) == len(counters)


async def test_leave_and_disconnect_stop_delivery(hub: Hub) -> None:
    async with Viewer.connected(hub, 1, 2) as viewer, Viewer.connected(hub, 1) as witness:
        assert await viewer.client.call("leave", 1, timeout=5) is True
        assert hub.fanout.local_counts() == {1: 1, 2: 1}
        hub.fanout.add_event(1, "in_one", {})
        hub.fanout.add_event(2, "in_two", {})
        await viewer.wait_event("in_two")
        await witness.wait_event("in_one")
        hub.fanout.add_event(2, "later", {})  # the next tick: `in_one` would have arrived by now
        await viewer.wait_event("later")
        assert viewer.named("in_one") == []
        sid = viewer.sid
    await hub.wait_disconnected(sid)
    assert hub.fanout.rooms() == set(), "rooms without local viewers are forgotten"
    assert hub.fanout.local_counts() == {}
    assert hub.fanout.leave_all(sid) == []


def test_membership_bookkeeping_without_a_server() -> None:
    fanout = Fanout(socketio.AsyncServer(async_mode="aiohttp"))
    fanout.join(3, "s1")
    fanout.join(1, "s1")
    fanout.join(1, "s2")
    fanout.join(1, "s2")  # joining twice is once
    assert fanout.local_counts() == {1: 2, 3: 1}
    fanout.leave(9, "s1")  # not a member: nothing happens
    fanout.leave(1, "nobody")
    assert fanout.leave_all("s1") == [1, 3]
    assert fanout.local_counts() == {1: 1}
    fanout.add_event(42, "nobody_here", {})  # a room without local viewers keeps nothing
    assert fanout.rooms() == {1}
    with pytest.raises(TypeError):
        fanout.add_event(1, "bad", {"raw": b"bytes"})  # refused at the call, not in the tick
    with pytest.raises(ValueError, match="soft_limit"):
        Fanout(socketio.AsyncServer(async_mode="aiohttp"), soft_limit=2, hard_limit=1)


# --- transports -----------------------------------------------------------------------------------------------


async def test_polling_viewers_get_events_through_the_queue() -> None:
    async with (
        serve(ping=1) as hub,
        Viewer.connected(hub, 1, transports=["polling"]) as polling,
        Viewer.connected(hub, 1) as ws,
    ):
        assert websocket_transport(hub.sio, polling.sid) is None
        for n in range(5):
            hub.fanout.add_event(1, "numbered", {"n": n})
            hub.fanout.add_chat(1, {"n": n})
        hub.fanout.set_counters(1, 2, 0)
        await polling.wait_event("counters")
        await ws.wait_event("counters")
        assert polling.received == ws.received
        assert [d["n"] for d in polling.named("numbered")] == list(range(5))
        assert hub.fanout.stats.slow_deliveries >= 7
        assert polling.client.transport() == "polling"


async def test_default_client_ends_up_on_direct_writes(hub: Hub) -> None:
    """python-socketio's default client polls first and upgrades before its first event; then direct writes."""
    async with Viewer.connected(hub, 1, transports=["polling", "websocket"]) as viewer:
        assert viewer.client.transport() == "websocket"
        for n in range(3):
            hub.fanout.add_event(1, "numbered", {"n": n})
            await viewer.wait_event("numbered", numbered(n))
        assert [d["n"] for d in viewer.named("numbered")] == [0, 1, 2]
        assert hub.fanout.stats.writes >= 2, "after its first delivery the viewer is on direct writes"


async def test_upgrade_mid_stream_loses_and_reorders_nothing() -> None:
    """A browser-like client: events over long-polling, then during and after its websocket upgrade.

    While the upgrade is pending engineio holds what it has queued, and once upgraded its writer may be stuck
    behind a full socket; the viewer moves to direct writes only after that queue has been written, so the
    numbering it sees has no gap, repeat or swap even though it reads nothing for a while.
    """
    async with serve(ping=5, hard_limit=64 * 1024 * 1024) as hub, aiohttp.ClientSession() as http:
        polling = f"{hub.url}/socket.io/?EIO=4&transport=polling"
        async with http.get(polling) as response:
            eio_sid = orjson.loads((await response.read())[1:])["sid"]
        polling += f"&sid={eio_sid}"
        received: list[int] = []

        async def post(packet: str) -> None:
            async with http.post(polling, data=packet) as response:
                assert response.status == 200

        async def poll() -> list[bytes]:
            async with http.get(polling) as response:
                packets = (await response.read()).split(b"\x1e")
            received.extend(orjson.loads(p[2:])[1]["n"] for p in packets if p.startswith(b'42["numbered"'))
            return packets

        await post("40")
        assert (await poll())[0].startswith(b"40{")
        await post('421["join",1]')
        while b"431[true]" not in await poll():
            pass
        produced = 0

        async def produce() -> None:
            nonlocal produced
            while True:
                hub.fanout.add_event(1, "numbered", {"n": produced, "blob": "x" * 20_000})
                produced += 1
                await asyncio.sleep(0.005)

        producer = asyncio.create_task(produce())
        ws: RawViewer | None = None
        try:
            while len(received) < 20:  # over long-polling
                await poll()
            assert hub.fanout.stats.slow_deliveries >= 20
            ws = await RawViewer.open(hub, eio_sid=eio_sid, rcvbuf=4096)
            ws.send(b"2probe")
            assert await ws.read_packet() == b"3probe"
            # A small send buffer on the server's side of the socket, so that a stalled reader stalls the writer.
            server_side = getattr(hub.sio.eio.sockets[eio_sid], hub_transport._TRANSPORT_ATTR)
            server_side.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            await asyncio.sleep(0.2)  # events pile up in engineio's queue while the upgrade is pending
            ws.send(b"5")
            await asyncio.sleep(0.3)  # upgraded, but reading nothing: engineio's writer stalls on a full socket
            writes = hub.fanout.stats.writes
            while len(received) < 200 or hub.fanout.stats.writes == writes:  # until on direct writes
                received.append((await asyncio.wait_for(ws.read_event(), 5))[1]["n"])
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            while len(received) < produced:  # the rest of the last tick
                received.append((await asyncio.wait_for(ws.read_event(), 5))[1]["n"])
            assert received == list(range(produced))
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producer
            if ws is not None:
                await ws.close()


async def test_slow_viewer_is_cut_off_without_delaying_others() -> None:
    soft, hard = 16 * 1024, 128 * 1024
    async with serve(soft_limit=soft, hard_limit=hard) as hub, Viewer.connected(hub, 1) as fast:
        slow = await RawViewer.connect(hub, rcvbuf=4096)
        try:
            await slow.join(1)
            hub.fanout.add_event(1, "warmup", {})  # first delivery: the slow viewer moves to direct writes
            await slow.read_event()
            await eventually(lambda: websocket_transport(hub.sio, slow.sid) is not None)
            transport = websocket_transport(hub.sio, slow.sid)
            assert transport is not None
            server_socket = transport.get_extra_info("socket")
            server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # so the backlog shows in user space
            blob = "x" * 8000
            # From here the slow viewer reads nothing; the fast one must get everything, on time.
            for n in range(60):
                sent_at = time.monotonic()
                hub.fanout.add_event(1, "numbered", {"n": n, "blob": blob})
                hub.fanout.add_chat(1, {"n": n})
                await fast.wait_event("numbered", numbered(n))
                assert time.monotonic() - sent_at < 0.5, "the fast viewer was held up"
                if hub.fanout.stats.dropped_viewers:
                    break
            await hub.wait_disconnected(slow.sid)
            assert hub.fanout.stats.dropped_viewers == 1
            assert hub.fanout.stats.withheld_chat > 0, "past soft_limit its chat was withheld first"
            assert hub.fanout.local_counts() == {1: 1}
            hub.fanout.add_event(1, "after", {})
            await fast.wait_event("after")
            chat = fast.named("chat")
            assert sum(len(c["messages"]) + c["skipped"] for c in chat) == n + 1
        finally:
            await slow.close()


async def test_viewer_that_falls_behind_is_told_what_it_missed() -> None:
    """Past soft_limit chat is withheld; when the viewer catches up, `skipped` accounts for every message."""
    soft = 16 * 1024
    async with serve(soft_limit=soft, hard_limit=64 * 1024 * 1024) as hub:
        lagging = await RawViewer.connect(hub, rcvbuf=4096)
        try:
            await lagging.join(1)
            hub.fanout.add_event(1, "warmup", {})
            await lagging.read_event()
            await eventually(lambda: websocket_transport(hub.sio, lagging.sid) is not None)
            transport = websocket_transport(hub.sio, lagging.sid)
            assert transport is not None
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
            hub.fanout.set_state(1, "blob", "blob", {"blob": "x" * (4 * soft)})  # fills its buffer past soft
            await eventually(lambda: transport.get_write_buffer_size() > soft, what="buffer past soft_limit")
            sent = 0
            for _tick in range(10):
                for _ in range(5):
                    hub.fanout.add_chat(1, {"n": sent})
                    sent += 1
                await asyncio.sleep(0.06)  # pacing: about one batch per tick
            assert hub.fanout.stats.withheld_chat > 0
            hub.fanout.add_event(1, "done", {})  # after the last chat tick

            async def read_until_done() -> None:
                while (await lagging.read_event())[0] != "done":
                    pass

            await asyncio.wait_for(read_until_done(), 10)
            hub.fanout.add_chat(1, {"n": sent})  # the next batch it gets carries the debt
            sent += 1
            while (
                not (chat := [d for e, d in lagging.received if e == "chat"])
                or chat[-1]["messages"][-1]["n"] != sent - 1
            ):
                await asyncio.wait_for(lagging.read_event(), 5)
            got = [m["n"] for c in chat for m in c["messages"]]
            assert len(got) + sum(c["skipped"] for c in chat) == sent
            assert got == sorted(got)
            assert got[-1] == sent - 1
            assert len(got) < sent, "some chat was withheld while it lagged"
        finally:
            await lagging.close()


async def test_run_stops_cleanly_when_cancelled() -> None:
    sio = socketio.AsyncServer(async_mode="aiohttp")
    fanout = Fanout(sio, tick=0.01)
    task = asyncio.create_task(fanout.run())
    await eventually(lambda: fanout.stats.ticks >= 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    ticks = fanout.stats.ticks
    await asyncio.sleep(0.05)
    assert fanout.stats.ticks == ticks, "no tick after cancellation"


async def test_a_large_room_is_flushed_less_often_and_loses_nothing() -> None:
    """Past `viewers_per_tick` local viewers a room's writes are spaced out; state still ends at its latest."""
    async with (
        serve(viewers_per_tick=1, max_room_interval=0.2) as hub,  # 3 viewers: every 3 ticks (150 ms)
        Viewer.connected(hub, 1) as a,
        Viewer.connected(hub, 1) as b,
        Viewer.connected(hub, 1) as c,
    ):
        started = time.monotonic()
        for n in range(50):  # a state change every ~20 ms for ~1 s
            hub.fanout.set_state(1, "stock", "stock", {"n": n})
            hub.fanout.add_chat(1, {"id": n})
            await asyncio.sleep(0.02)  # pacing the producer
        for viewer in (a, b, c):
            await viewer.wait_event("stock", numbered(49))
        elapsed = time.monotonic() - started
        for viewer in (a, b, c):
            stock = viewer.named("stock")
            assert len(stock) <= elapsed / 0.15 + 2, (len(stock), elapsed)  # not one per 50 ms tick
            assert [s["n"] for s in stock] == sorted({s["n"] for s in stock})
            await viewer.wait_for(partial(_chat_count_is, viewer, 50))


def _chat_count_is(viewer: Viewer, count: int) -> bool:
    return sum(len(batch["messages"]) for batch in viewer.named("chat")) == count
