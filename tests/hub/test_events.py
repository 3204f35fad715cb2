"""Every logged server event, built by its one builder (`livecommerce.live.events`), reaches a viewer in one
form: delivered live by the process that published it, delivered live by another process that heard it on
the bus, and replayed from the room's log to a viewer who resumes — byte for byte, key order included (chat
replay once differed from live chat). Against a real Redis, through two `LiveRooms` as two web processes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from livecommerce.live import events as ev
from livecommerce.live.events import Event
from livecommerce.live.rooms import LiveRooms
from livecommerce.models import Product

ROOM = 21


class Heard:
    """What a process's listener was handed, in order."""

    def __init__(self, rooms: LiveRooms) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        rooms.listen(lambda room, event: self.events.put_nowait(event) if room == ROOM else None)

    async def next(self) -> Event:
        return await asyncio.wait_for(self.events.get(), 5)


@pytest.fixture
async def processes(redis_url: str) -> AsyncIterator[tuple[LiveRooms, LiveRooms]]:
    """Two processes' live rooms on one Redis: `a` publishes, `b` watches the room and hears it on its bus."""
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    a, b = LiveRooms(clients[0], "proc-a"), LiveRooms(clients[1], "proc-b")
    running = asyncio.create_task(b.run())
    async with asyncio.timeout(5):
        while not b.bus.connected:  # noqa: ASYNC110 - the bus offers no event to await
            await asyncio.sleep(0.01)
    await b.watch(ROOM, "test")  # returns once Redis confirmed the subscription
    await a.watch(ROOM, "test")
    try:
        yield a, b
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        for client in clients:
            await client.aclose()


def _product() -> Product:
    return Product(id=3, brand_id=2, title="Linen shirt", image_url="https://example.test/s.jpg", currency="EUR")


async def test_every_logged_event_is_the_same_live_here_live_elsewhere_and_replayed(
    processes: tuple[LiveRooms, LiveRooms],
) -> None:
    a, b = processes
    here, elsewhere = Heard(a), Heard(b)
    sale = {"id": 4, "starts_at_ms": 1, "ends_at_ms": 2, "audience": "everyone"}
    offer = {"pool": "s4", "price_minor": 1900, "list_price_minor": 2500, "currency": "EUR", "per_buyer_limit": 2,
             "hold_seconds": 300, "sale": sale}  # fmt: skip
    start = await a.publish(ROOM, ev.room_status(ROOM, "scheduled"))  # replays resume after it
    assert (await here.next()).seq == (await elsewhere.next()).seq == start.seq
    built = [
        ev.room_status(ROOM, "live"),
        ev.pinned(ROOM, _product(), price_minor=1900, stock=7, offer=offer),
        ev.unpinned(ROOM),
        ev.countdown(ROOM, 4, 1_900_000_000_000),
        ev.chat_settings(ROOM, 30),
        ev.video(ROOM, "live"),
    ]
    published = [await a.publish(ROOM, event) for event in built]
    chat = await a.post_chat(ROOM, 9, "Ann “the buyer”", "hello ✨ world", rate_per_minute=0, burst=1)
    published.append(chat)
    other = await a.post_chat(ROOM, 10, "Bo", "gone soon", rate_per_minute=0, burst=1)
    published.append(other)
    deleted = await a.delete_chat(ROOM, other.seq)
    assert deleted is not None
    published.append(deleted)

    names = {event.event for event in published}
    assert names == ev.LOGGED, "every logged event is checked here"
    replay = await a.events_since(ROOM, start.seq)
    assert replay is not None
    replayed = {event.seq: event for event in replay}
    for sent in published:
        live_here, live_elsewhere = await here.next(), await elsewhere.next()
        assert live_here.seq == live_elsewhere.seq == sent.seq
        wire = orjson.dumps(sent.live_payload(ROOM))
        assert orjson.dumps(live_here.live_payload(ROOM)) == wire, sent.event
        assert orjson.dumps(live_elsewhere.live_payload(ROOM)) == wire, f"{sent.event} heard on the bus"
        if sent.seq != other.seq:  # a deleted message is gone from the log; its deletion is replayed
            again = replayed[sent.seq].as_wire(ROOM)
            assert (again["event"], again["seq"]) == (sent.event, sent.seq)
            assert orjson.dumps(again["payload"]) == wire, f"{sent.event} replayed"
    assert other.seq not in replayed


async def test_a_chat_message_has_one_shape_wherever_it_is_read(processes: tuple[LiveRooms, LiveRooms]) -> None:
    a, b = processes
    elsewhere = Heard(b)
    await a.publish(ROOM, ev.room_status(ROOM, "live"))
    assert (await elsewhere.next()).event == ev.ROOM_STATUS
    posted = await a.post_chat(ROOM, 9, "Ann", "hi", rate_per_minute=0, burst=1)
    heard = await elsewhere.next()
    snapshot = await a.snapshot(ROOM)
    message = {"id": posted.seq, "user": {"id": 9, "name": "Ann"}, "text": "hi", "ts": posted.payload["ts"]}
    for form in (posted.payload, heard.payload, snapshot.as_wire()["chat"][-1]):
        assert orjson.dumps(form) == orjson.dumps(message)
    assert posted.live_payload(ROOM) == {"room_id": ROOM, "messages": [message], "skipped": 0}
