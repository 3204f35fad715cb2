"""The room bus: events reach the other hub processes, never their origin, and survive connection loss.

Fault injection (CLIENT KILL, a Redis restart) runs against a redis-server of the test's own
(`RedisProcess`), never the session's shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecommerce.live import events as ev
from livecommerce.live.bus import Bus
from livecommerce.live.store import RoomStore, bus_channel
from tests.support.redis_process import RedisProcess
from tests.support.waits import eventually

Received = tuple[int, str, str, dict[str, Any]]


class Listener:
    """A Bus running in a task, collecting what it delivers."""

    def __init__(self, redis: Redis, process_id: str, **options: Any) -> None:
        self.bus = Bus(redis, process_id, **options)
        self.events: asyncio.Queue[Received] = asyncio.Queue()
        self.reconnects: list[frozenset[int]] = []
        self.task: asyncio.Task[None] | None = None

    def on_event(self, room: int, seq: str, event: str, payload: dict[str, Any]) -> None:
        self.events.put_nowait((room, seq, event, payload))

    async def start(self) -> None:
        self.task = asyncio.create_task(self.bus.run(self.on_event, self.reconnects.append))

        async def connected() -> bool:
            return self.bus.connected

        await eventually(connected, "the bus to connect")

    async def next(self, within: float = 5.0) -> Received:
        return await asyncio.wait_for(self.events.get(), within)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@contextlib.asynccontextmanager
async def listening(redis: Redis, *process_ids: str, **options: Any) -> AsyncIterator[list[Listener]]:
    listeners = [Listener(redis, process_id, **options) for process_id in process_ids]
    for listener in listeners:
        await listener.start()
    try:
        yield listeners
    finally:
        for listener in listeners:
            await listener.stop()


async def subscribers(redis: Redis, room: int) -> int:
    (_, count), *_ = await redis.pubsub_numsub(bus_channel(room))
    return int(count)


async def test_an_event_reaches_other_processes_once_and_never_its_origin(redis: Redis) -> None:
    store_a, store_b = RoomStore(redis, "a"), RoomStore(redis, "b")
    async with listening(redis, "a", "b", "c") as (a, b, c):
        for listener in (a, b):
            await listener.bus.subscribe(7)
        seq = await store_a.publish(7, "pinned", {"room_id": 7, "product": {"id": 3}}, state=("pinned", {"x": 1}))
        assert await b.next() == (7, seq, "pinned", {"room_id": 7, "product": {"id": 3}})
        # b's own event goes to a, not back to b; c never subscribed and hears nothing.
        seq_b = await store_b.publish(7, "chat_settings", {"room_id": 7, "slow_mode": 5})
        assert await a.next() == (7, seq_b, "chat_settings", {"room_id": 7, "slow_mode": 5})
        # Chat needs a live room.
        status_seq = await store_b.publish_status(7, ev.room_status(7, "live"), only_if_changed=True)
        assert (await a.next())[1:3] == (status_seq, "room_status")
        message = await store_b.post_chat(7, 1, "Ann", "hi", rate_per_minute=0, burst=1)
        room, seq_chat, event, fields = await a.next()
        assert (room, seq_chat, event) == (7, message.seq, "chat")  # the bus carries the logged fields
        assert ev.chat_message(seq_chat, fields) == message.payload
        assert await store_a.delete_chat(7, message.seq)
        deleted = await b.next()
        assert deleted[2:] == ("chat_deleted", {"room_id": 7, "ids": [message.seq]})
        await asyncio.sleep(0.1)  # anything echoed or misrouted would have arrived by now
        assert all(listener.events.empty() for listener in (a, b, c))
    # The log holds what the bus carried, under the same seqs (less the deleted message).
    logged = await store_a.events_since(7, seq)
    assert logged is not None
    assert [(event.seq, event.event) for event in logged] == [
        (seq_b, "chat_settings"),
        (status_seq, "room_status"),
        (deleted[1], "chat_deleted"),
    ]


async def test_subscriptions_are_idempotent_and_leaving_stops_delivery(redis: Redis) -> None:
    store = RoomStore(redis, "origin")
    async with listening(redis, "p") as (listener,):
        bus = listener.bus
        for _ in range(3):
            await bus.subscribe(1)
            await bus.subscribe(2)
        assert bus.rooms == {1, 2}
        assert await subscribers(redis, 1) == 1
        await bus.unsubscribe(1)
        await bus.unsubscribe(1)
        await bus.unsubscribe(99)  # never subscribed: nothing to do
        assert bus.rooms == {2}

        async def unsubscribed() -> bool:
            return await subscribers(redis, 1) == 0

        await eventually(unsubscribed, "room 1's channel to lose its subscriber")
        await store.publish(1, "pinned", {"n": 1})
        seq = await store.publish(2, "pinned", {"n": 2})
        assert await listener.next() == (2, seq, "pinned", {"n": 2})  # room 1's event was not delivered
        await bus.subscribe(1)
        seq = await store.publish(1, "pinned", {"n": 3})
        assert await listener.next() == (1, seq, "pinned", {"n": 3})


async def test_bad_messages_and_failing_handlers_do_not_stop_the_bus(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    store = RoomStore(redis, "origin")
    bus = Bus(redis, "p")
    received: list[Received] = []

    def on_event(room: int, seq: str, event: str, payload: dict[str, Any]) -> None:
        if payload.get("boom"):
            raise RuntimeError("handler bug")
        received.append((room, seq, event, payload))

    task = asyncio.create_task(bus.run(on_event))

    async def connected() -> bool:
        return bus.connected

    await eventually(connected, "the bus to connect")
    await bus.subscribe(3)
    channel = bus_channel(3)
    pickled = b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x01x\x94."  # a pickle is just garbage here
    for junk in (b"not msgpack \xc1", msgpack.packb([1, 2, 3]), msgpack.packb(["o", "1-0", "e", [1]]), pickled):
        await redis.publish(channel, junk)
    await store.publish(3, "boom", {"boom": True})
    seq = await store.publish(3, "after", {"ok": True})

    async def delivered() -> bool:
        return bool(received)

    with caplog.at_level(logging.WARNING, logger="livecommerce.live.bus"):
        await eventually(delivered, "the event after the junk")
    assert received == [(3, seq, "after", {"ok": True})]
    assert "handling bus event boom" in caplog.text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_run_propagates_and_releases_the_connection(redis: Redis) -> None:
    async with listening(redis, "p") as (listener,):
        await listener.bus.subscribe(5)
        assert await subscribers(redis, 5) == 1
        with pytest.raises(RuntimeError, match="already running"):
            await listener.bus.run(listener.on_event)
    # listening() asserted CancelledError came out of run(); the subscription left with the connection.
    assert await subscribers(redis, 5) == 0
    assert not listener.bus.connected


@pytest.mark.parametrize("client", ["from_url", "retrying"])
async def test_the_bus_reconnects_after_its_connection_is_killed(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture, client: str
) -> None:
    # from_url clients do not retry, so run() reconnects; a client whose connections retry heals the connection
    # inside redis-py, and the bus must still notice and report the gap.
    if client == "from_url":
        redis = Redis.from_url(private_redis.url)
    else:
        redis = Redis(host="127.0.0.1", port=private_redis.port, retry=Retry(NoBackoff(), 3))
    store = RoomStore(redis, "origin")
    caplog.set_level(logging.WARNING, logger="livecommerce.live.bus")
    async with listening(redis, "p", min_backoff=0.05, max_backoff=0.2) as (listener,):
        await listener.bus.subscribe(1)
        await listener.bus.subscribe(2)
        for round_ in range(2):
            assert await redis.client_kill_filter(_type="pubsub") == 1
            await _delivered_again(store, listener, 1, f"after kill {round_}")
            await _delivered_again(store, listener, 2, f"after kill {round_}")
        assert "room bus connection" in caplog.text
        assert listener.reconnects
        assert all(rooms == {1, 2} for rooms in listener.reconnects)
    await redis.aclose()


async def test_the_bus_and_the_store_survive_a_redis_restart(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    redis = Redis.from_url(private_redis.url)
    store = RoomStore(redis, "origin")
    await store.publish_status(1, ev.room_status(1, "live"))
    caplog.set_level(logging.WARNING, logger="livecommerce.live.bus")
    async with listening(redis, "p", min_backoff=0.05, max_backoff=0.5) as (listener,):
        await listener.bus.subscribe(1)
        private_redis.stop()

        async def disconnected() -> bool:
            return not listener.bus.connected

        await eventually(disconnected, "the bus to notice Redis is gone")
        await listener.bus.subscribe(2)  # while disconnected: returns at once, applied on reconnect
        await asyncio.sleep(0.3)  # a few failed attempts with backoff
        private_redis.start()  # empty: no data, no scripts
        await _delivered_again(store, listener, 1, "after the restart")
        await _delivered_again(store, listener, 2, "after the restart")
        await store.publish_status(1, ev.room_status(1, "live"))
        posted = await store.post_chat(1, 9, "Ann", "back again", rate_per_minute=60, burst=2)
        assert (await store.snapshot(1)).chat[-1] == posted
        assert "reconnecting in" in caplog.text
        assert "reconnected after" in caplog.text
    await redis.aclose()


async def _delivered_again(store: RoomStore, listener: Listener, room: int, note: str) -> None:
    """Publish until the listener hears it: events published during the gap are lost, by design."""
    deadline = time.monotonic() + 15
    while True:
        try:
            seq: str | None = await store.publish(room, "probe", {"note": note})
        except (RedisConnectionError, RedisTimeoutError):
            seq = None  # Redis is still coming back
        if seq is not None:
            with contextlib.suppress(TimeoutError):
                while True:
                    if await listener.next(within=0.2) == (room, seq, "probe", {"note": note}):
                        return
        if time.monotonic() > deadline:
            pytest.fail(f"room {room}: no delivery {note}")
        await asyncio.sleep(0.05)
