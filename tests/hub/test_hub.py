"""The hub end to end: two hub instances on one Redis and database, real python-socketio clients.

Instance A and instance B stand for two web processes; a viewer on B must see what happens through A.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.live.rooms import LIVE
from livecommerce.settings import Settings
from tests.support.sockets import Viewer, viewer_in
from tests.support.world import World, seed_world

Client = TestClient[Request, Application]


async def test_pin_and_chat_through_a_reach_a_viewer_on_b(pair: tuple[World, str, str, list[Viewer]]) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, snapshot = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    assert snapshot["snapshot"]["room"]["status"] == "live"
    started = time.monotonic()
    ack = await host.call("pin", {"room_id": room, "product_id": world.ids["product"]})
    assert ack["ok"], ack
    pinned = await fan.wait_for("pinned", lambda d: d["product"] and d["product"]["id"] == world.ids["product"])
    assert pinned["seq"] == ack["data"]["seq"]
    ack = await host.call("chat", {"room_id": room, "text": "hello from A"})
    assert ack["ok"], ack
    batch = await fan.wait_for("chat", lambda d: any(m["text"] == "hello from A" for m in d["messages"]))
    assert batch["messages"][0]["user"]["name"] == "Host"
    assert time.monotonic() - started < 2.0  # each within a second
    # A late joiner gets both in its snapshot.
    _, snapshot = await viewer_in(viewers, b, room)
    assert snapshot["snapshot"]["pinned"]["product"]["id"] == world.ids["product"]
    assert [m["text"] for m in snapshot["snapshot"]["chat"]] == ["hello from A"]


async def test_going_live_and_ending_reach_viewers_and_ending_stops_chat_and_pins(
    pair: tuple[World, str, str, list[Viewer]],
) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    fan, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    await world.api.ok("POST", f"/api/v1/rooms/{room}/end", who="host")
    status = await fan.wait_for("room_status", lambda d: d["status"] == "ended")
    assert status["room_id"] == room
    assert fan.sio.connected, "ending a room disconnects no one"
    ack = await fan.call("chat", {"room_id": room, "text": "still here?"})
    assert not ack["ok"]
    assert ack["error"]["code"] == "room_not_live"
    ack = await host.call("pin", {"room_id": room, "product_id": world.ids["product"]})
    assert not ack["ok"]
    assert "ended" in ack["error"]["message"]


async def test_authorisation_of_socket_actions(pair: tuple[World, str, str, list[Viewer]]) -> None:
    world, a, _, viewers = pair
    room, other_room, product = world.ids["room"], world.ids["other_room"], world.ids["product"]
    await world.api.ok("POST", f"/api/v1/rooms/{other_room}/live", who="other_host")
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    for event, payload in (
        ("pin", {"room_id": room, "product_id": product}),
        ("moderate", {"room_id": room, "action": "ban", "user_id": world.ids["staff"]}),
    ):
        ack = await fan.call(event, payload)
        assert (ack["ok"], ack["error"]["code"]) == (False, "forbidden"), (event, ack)
    other_host, _ = await viewer_in(viewers, a, room, world.api.tokens["other_host"])
    ack = await other_host.call("pin", {"room_id": room, "product_id": product})
    assert ack["error"]["code"] == "forbidden"
    anonymous, _ = await viewer_in(viewers, a, room)
    ack = await anonymous.call("chat", {"room_id": room, "text": "hi"})
    assert ack["error"]["code"] == "unauthorized"
    assert (await anonymous.call("like", {"room_id": room}))["ok"], "anonymous viewers may like"
    ack = await anonymous.call("join", {"room_id": world.ids["private_room"]})
    assert ack["error"]["code"] == "not_found", "a private room does not exist for those who may not see it"


async def test_bad_events_get_error_acks_and_the_server_keeps_serving(
    pair: tuple[World, str, str, list[Viewer]],
) -> None:
    world, a, _, viewers = pair
    room = world.ids["room"]
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    cases = [
        ("dance", {"room_id": room}, "not_found"),
        ("chat", "not an object", "invalid_request"),
        ("chat", {"room_id": room}, "invalid_request"),
        ("chat", {"room_id": "7", "text": "x"}, "invalid_request"),
        ("chat", {"room_id": room, "text": "x" * 301}, "invalid_request"),
        ("chat", {"room_id": room, "text": "x", "colour": "red"}, "invalid_request"),
        ("chat", {"room_id": room, "text": "y" * 20000}, "payload_too_large"),
        ("moderate", {"room_id": room, "action": "explode"}, "invalid_request"),
        ("join", {"room_id": 0}, "invalid_request"),
    ]
    for event, payload, code in cases:
        ack = await fan.call(event, payload)
        assert not ack["ok"], (event, payload)
        assert ack["error"]["code"] == code, (event, payload, ack)
        assert ack["error"]["message"]
    assert (await fan.call("chat", {"room_id": room, "text": "still serving"}))["ok"]
    other, _ = await viewer_in(viewers, a, room)
    assert other.sio.connected


async def test_chat_moderation(pair: tuple[World, str, str, list[Viewer]]) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    staff, _ = await viewer_in(viewers, b, room, world.api.tokens["staff"])

    async def moderate(**payload: Any) -> dict[str, Any]:
        ack = await host.call("moderate", {"room_id": room, **payload})
        assert ack["ok"], ack
        return ack

    # Block list: a blocked word is refused with a reason; other messages pass.
    await moderate(action="block_words", words=["Spoiler"])
    ack = await fan.call("chat", {"room_id": room, "text": "big SPOILER ahead"})
    assert ack["error"]["code"] == "invalid_request"
    assert "does not allow" in ack["error"]["message"]
    ack = await fan.call("chat", {"room_id": room, "text": "love it"})
    message_id = ack["data"]["message"]["id"]
    await host.wait_for("chat", lambda d: any(m["id"] == message_id for m in d["messages"]))
    # Delete: everyone is told, and it is gone from the history a new viewer gets.
    await moderate(action="delete", message_id=message_id)
    on_a = await host.wait_for("chat_deleted", lambda d: message_id in d["ids"])  # the deleting process
    on_b = await fan.wait_for("chat_deleted", lambda d: message_id in d["ids"])  # through the bus
    assert on_a["seq"] == on_b["seq"], "the same event, with its seq, on every process"
    _, snapshot = await viewer_in(viewers, b, room)
    assert message_id not in [m["id"] for m in snapshot["snapshot"]["chat"]]
    # Mute: refused with when it ends; unmute lifts it.
    await moderate(action="mute", user_id=world.ids["viewer"], seconds=60)
    ack = await fan.call("chat", {"room_id": room, "text": "hello?"})
    assert ack["error"]["code"] == "muted"
    assert 50 <= ack["error"]["retry_after"] <= 60
    assert ack["error"]["retryable"] is False, "a mute is waited out by a person, not retried by the client"
    await moderate(action="unmute", user_id=world.ids["viewer"])
    assert (await fan.call("chat", {"room_id": room, "text": "back"}))["ok"]
    # Ban, by a moderator the host appointed.
    await moderate(action="add_moderator", user_id=world.ids["staff"])
    ack = await staff.call("moderate", {"room_id": room, "action": "ban", "user_id": world.ids["viewer"]})
    assert ack["ok"], ack
    assert (await fan.call("chat", {"room_id": room, "text": "hi"}))["error"]["code"] == "banned"
    ack = await staff.call("moderate", {"room_id": room, "action": "add_moderator", "user_id": world.ids["viewer"]})
    assert ack["error"]["code"] == "forbidden", "moderators cannot appoint moderators"
    await moderate(action="unban", user_id=world.ids["viewer"])
    # Slow mode: the second message within the interval is refused with how long to wait.
    await moderate(action="slow_mode", seconds=30)
    await fan.wait_for("chat_settings", lambda d: d["slow_mode"] == 30)
    newcomer, _ = await viewer_in(viewers, b, room, world.api.tokens["other_host"])  # has not chatted yet
    ack = await newcomer.call("chat", {"room_id": room, "text": "one"})
    assert ack["ok"], ack
    ack = await newcomer.call("chat", {"room_id": room, "text": "two"})
    assert ack["error"]["code"] == "slow_mode"
    assert 25 <= ack["error"]["retry_after"] <= 30
    assert ack["error"]["retryable"] is True


async def test_chat_rate_limit_per_user(pair: tuple[World, str, str, list[Viewer]]) -> None:
    world, a, _, viewers = pair
    room = world.ids["room"]
    fan, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    codes = []
    for n in range(8):
        ack = await fan.call("chat", {"room_id": room, "text": f"message {n}"})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    assert codes[:5] == ["ok"] * 5
    assert "rate_limited" in codes[5:]


async def test_counters_are_coalesced_and_count_viewers_across_instances(
    pair: tuple[World, str, str, list[Viewer]],
) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    watcher, _ = await viewer_in(viewers, a, room)
    for url in (a, b, b):
        await viewer_in(viewers, url, room)
    await watcher.wait_for("counters", lambda d: d["viewers"] == 4, within=3)
    liker, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    for _ in range(30):
        assert (await liker.call("like", {"room_id": room, "count": 3}))["ok"]
    await watcher.wait_for("counters", lambda d: d["likes"] == 90 and d["viewers"] == 5, within=3)
    await liker.close()
    await watcher.wait_for("counters", lambda d: d["viewers"] == 4, within=3)


async def test_resume_replays_missed_events_or_sends_a_fresh_snapshot(
    pair: tuple[World, str, str, list[Viewer]],
) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, snapshot = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    last_seq = snapshot["snapshot"]["seq"]
    await fan.close()
    ack = await host.call("pin", {"room_id": room, "product_id": world.ids["product"]})
    await host.call("chat", {"room_id": room, "text": "while you were away"})
    back = Viewer()
    viewers.append(back)
    await back.connect(a, world.api.tokens["viewer"])
    resumed = await back.call("join", {"room_id": room, "since": last_seq})
    assert resumed["ok"], resumed
    replay = resumed["data"]["replay"]
    assert [e["event"] for e in replay] == ["pinned", "chat"]
    assert replay[0]["seq"] == ack["data"]["seq"]
    assert [m["text"] for m in replay[1]["payload"]["messages"]] == ["while you were away"]
    stale = await back.call("join", {"room_id": room, "since": "1-0"})
    assert "snapshot" in stale["data"], "a gap older than the log gets a fresh snapshot"


async def test_a_replayed_event_is_byte_for_byte_what_arrived_live(pair: tuple[World, str, str, list[Viewer]]) -> None:
    """docs/protocol.md: replayed events arrive "exactly as they would have arrived live"."""
    world, a, b, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    live, snapshot = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    since = snapshot["snapshot"]["seq"]
    pinned = await host.call("pin", {"room_id": room, "product_id": world.ids["product"]})
    await live.wait_for("pinned", lambda d: d["seq"] == pinned["data"]["seq"], within=3)
    posted: list[str] = []
    for text in ("first", "second"):  # one at a time, so each arrives live as a batch of one
        ack = await host.call("chat", {"room_id": room, "text": text})
        posted.append(ack["data"]["message"]["id"])
        await live.wait_for("chat", lambda d: bool(d["messages"][-1]["id"] == posted[-1]), within=3)
    deleted = await host.call("moderate", {"room_id": room, "action": "delete", "message_id": posted[0]})
    assert deleted["ok"], deleted
    await live.wait_for("chat_deleted", lambda d: d["ids"] == [posted[0]], within=3)
    received = [(name, data) for name, data in live.events if name in ("pinned", "chat", "chat_deleted")]
    assert [name for name, _ in received] == ["pinned", "chat", "chat", "chat_deleted"], received
    for reader in (a, b):  # the hub that made the events and the one that heard them on the bus
        back = Viewer()
        viewers.append(back)
        await back.connect(reader, world.api.tokens["viewer"])
        resumed = await back.call("join", {"room_id": room, "since": since})
        replay = resumed["data"]["replay"]
        # The first message was deleted: gone from the log, so not replayed; the rest is exactly as live.
        expected = [received[0], received[2], received[3]]
        assert [item["event"] for item in replay] == [name for name, _ in expected]
        for item, (name, data) in zip(replay, expected, strict=True):
            assert json.dumps(item["payload"]) == json.dumps(data), (name, item, data)  # keys in the same order
            assert item["seq"] == (data["messages"][0]["id"] if name == "chat" else data["seq"])


async def test_a_chat_storm_reaches_a_viewer_as_bounded_batches(
    pair: tuple[World, str, str, list[Viewer]], settings: Settings, redis_url: str
) -> None:
    world, _, b, viewers = pair
    room = world.ids["room"]
    fan, _ = await viewer_in(viewers, b, room)
    # 2,000 messages in about a second from 200 users, posted through another hub process's store.
    source_app = create_app(settings, redis_url=redis_url)
    async with TestServer(source_app, host="127.0.0.1"):
        store = source_app[LIVE].store
        started = time.monotonic()
        for n in range(2000):
            await store.post_chat(room, 1000 + n % 200, "storm", f"m{n}", rate_per_minute=0, burst=1)
            if n % 100 == 99:  # pace to 2,000 per second
                await asyncio.sleep(max(0.0, started + (n + 1) / 2000 - time.monotonic()))
        sent_for = time.monotonic() - started

        def received() -> int:
            return sum(len(batch["messages"]) + batch["skipped"] for batch in fan.named("chat"))

        await fan.wait_for("chat", lambda _: received() >= 2000, within=5)
    batches = fan.named("chat")
    assert received() == 2000, "every message is either delivered or counted as skipped"
    assert len(batches) <= (sent_for + 1) * 25, f"{len(batches)} batches for {sent_for:.1f} s of storm"
    assert any(batch["skipped"] for batch in batches), "past the room's rate, messages are sampled and counted"


async def test_unpinning_clears_the_pin_for_viewers_and_snapshots(
    pair: tuple[World, str, str, list[Viewer]],
) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    fan, _ = await viewer_in(viewers, b, room)
    assert (await host.call("pin", {"room_id": room, "product_id": world.ids["product"]}))["ok"]
    assert (await host.call("unpin", {"room_id": room}))["ok"]
    await fan.wait_for("pinned", lambda d: d["product"] is None)
    _, snapshot = await viewer_in(viewers, b, room)
    assert snapshot["snapshot"]["pinned"] is None


async def test_viewers_still_connected_get_what_the_bus_missed_during_an_outage(
    settings: Settings, engine: AsyncEngine, redis_url: str, client: Client
) -> None:
    world = await seed_world(client, engine)
    room = world.ids["room"]
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    app_b = create_app(settings, redis_url=redis_url)
    async with TestServer(app_b, host="127.0.0.1") as server_b:
        fan = Viewer()
        await fan.connect(str(server_b.make_url("")))
        try:
            assert (await fan.call("join", {"room_id": room}))["ok"]
            bus_b = app_b[LIVE].bus
            # B stops hearing the room; meanwhile another process pins a product.
            await bus_b.unsubscribe(room)
            other = client.app[LIVE]
            await other.store.publish(room, "pinned", {"room_id": room, "product": {"id": 1}, "ts": 0},
                                      state=("pinned", {"room_id": room, "product": {"id": 1}, "ts": 0}))  # fmt: skip
            # B hears the room again, and then its bus connection is lost and comes back.
            await bus_b.subscribe(room)
            admin = Redis.from_url(redis_url)
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
            await admin.aclose()
            pinned = await fan.wait_for("pinned", lambda d: d["product"] == {"id": 1}, within=5)
            assert pinned["seq"]
        finally:
            await fan.close()
