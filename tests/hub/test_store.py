"""The hub's Redis layer against a real Redis: the event log, snapshots, chat moderation enforced inside the
Lua scripts themselves, counters that heal after a process dies, and survival of SCRIPT FLUSH and restarts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from livecommerce.errors import ClientError, InvalidRequest
from livecommerce.live import events as ev
from livecommerce.live.events import Event
from livecommerce.live.store import (
    ChatBanned,
    ChatBlockedWord,
    ChatMuted,
    ChatRateLimited,
    ChatRefused,
    ChatRoomNotLive,
    ChatSlowMode,
    RoomStore,
    bus_channel,
    room_key,
)
from livecommerce.scripts import script
from tests.support.redis_process import RedisProcess
from tests.support.waits import eventually

ROOM = 11


@pytest.fixture
async def store(redis: Redis) -> RoomStore:
    store = RoomStore(redis, "proc-a")
    await store.publish_status(ROOM, ev.room_status(ROOM, "live"))
    return store


async def everything(redis: Redis) -> dict[bytes, bytes | None]:
    """Every key's serialized value: equal before and after means nothing changed."""
    return {key: await redis.dump(key) async for key in redis.scan_iter()}


async def post(store: RoomStore, user: int = 1, text: str = "hello", **options: Any) -> Event:
    options.setdefault("rate_per_minute", 0)
    options.setdefault("burst", 1)
    return await store.post_chat(ROOM, user, f"user{user}", text, **options)


async def refused(store: RoomStore, user: int = 1, text: str = "hello", **options: Any) -> ChatRefused:
    with pytest.raises(ChatRefused) as caught:
        await post(store, user, text, **options)
    return caught.value


# --- the event log ----------------------------------------------------------------------------------------------


async def test_events_since_returns_exactly_the_missed_events(store: RoomStore) -> None:
    seqs = [await store.publish(ROOM, "pinned", {"n": n}, state=("pinned", {"n": n})) for n in range(6)]
    missed = await store.events_since(ROOM, seqs[2])
    assert missed == [Event(seq, "pinned", {"n": n}) for n, seq in enumerate(seqs) if n > 2]
    assert missed[0].as_wire(ROOM) == {"event": "pinned", "seq": seqs[3], "payload": {"n": 3, "seq": seqs[3]}}
    assert await store.events_since(ROOM, seqs[-1]) == []  # up to date
    for unusable in ("", "12", "abc-1", "1-2-3", "99999999999999999999-0", "9" * 30 + "-0"):
        assert await store.events_since(ROOM, unusable) is None, unusable
    future = f"{int(seqs[-1].split('-')[0]) + 60_000}-0"
    assert await store.events_since(ROOM, future) is None  # not from this log
    assert await store.events_since(999, "0-0") == []  # a room with no events: nothing missed
    assert await store.events_since(999, seqs[0]) is None  # a seq this room's (empty) log never had


async def test_events_since_is_none_when_the_log_no_longer_holds_the_gap(redis: Redis) -> None:
    store = RoomStore(redis, "proc-a", history=10)
    seqs = [await store.publish(ROOM, "tick", {"n": n}) for n in range(400)]
    length = await redis.xlen(room_key(ROOM, "events"))
    assert 10 <= length < 400  # trimmed (approximately: Redis drops whole nodes)
    assert await store.events_since(ROOM, seqs[0]) is None
    kept = seqs[-length]
    assert [event.seq for event in await store.events_since(ROOM, kept) or []] == seqs[-length + 1 :]


async def test_publish_keeps_the_state_field_in_step(store: RoomStore, redis: Redis) -> None:
    await store.publish(ROOM, "pinned", {"product": {"id": 3}}, state=("pinned", {"product": {"id": 3}}))
    assert (await store.snapshot(ROOM)).pinned == {"product": {"id": 3}}
    await store.publish(ROOM, "unpinned", {}, state=("pinned", None))
    assert (await store.snapshot(ROOM)).pinned is None
    with pytest.raises(ValueError, match="own RoomStore method"):
        await store.publish(ROOM, "x", {}, state=("status", {"live": True}))
    with pytest.raises(ValueError, match="written by their own"):
        await store.publish(ROOM, "chat", {"text": "forged"})
    with pytest.raises(ValueError, match="unknown room status"):
        await store.publish_status(ROOM, ev.room_status(ROOM, "paused"))


async def test_sync_status_changes_and_announces_only_a_difference(store: RoomStore, redis: Redis) -> None:
    before = (await store.snapshot(ROOM)).seq
    # Already live: nothing written, nothing announced.
    assert await store.publish_status(ROOM, ev.room_status(ROOM, "live"), only_if_changed=True) is None
    assert await store.events_since(ROOM, before) == []
    seq = await store.publish_status(ROOM, ev.room_status(ROOM, "ended"), only_if_changed=True)
    assert seq is not None
    [announced] = await store.events_since(ROOM, before) or []
    assert (announced.seq, announced.event) == (seq, "room_status")
    assert {k: v for k, v in announced.payload.items() if k != "ts"} == {"room_id": ROOM, "status": "ended"}
    assert (await store.snapshot(ROOM)).status == "ended"


async def test_snapshot_holds_state_last_chat_counters_and_seq(store: RoomStore, redis: Redis) -> None:
    await store.publish(ROOM, "pinned", {"product": {"id": 5}}, state=("pinned", {"product": {"id": 5}}))
    await store.set_slow_mode(ROOM, 0)
    messages = [await post(store, user, f"message {user}") for user in range(1, 6)]
    assert await store.delete_chat(ROOM, messages[1].seq)
    for n in range(60):  # enough other events that the last three messages are beyond the first page
        await store.publish(ROOM, "tick", {"n": n})
    await store.set_slow_mode(ROOM, 7)
    await store.counters(ROOM, 4, 2)
    await RoomStore(redis, "proc-b").counters(ROOM, 1, 3)
    snapshot = await store.snapshot(ROOM, chat_limit=3)
    assert snapshot.status == "live"
    assert snapshot.slow_mode == 7
    assert snapshot.pinned == {"product": {"id": 5}}
    assert snapshot.chat == (messages[2], messages[3], messages[4])  # oldest first, deleted one gone
    assert (snapshot.likes, snapshot.viewers) == (5, 5)
    last: Any = await redis.xrevrange(room_key(ROOM, "events"), count=1)
    assert snapshot.seq == last[0][0].decode()
    assert await store.events_since(ROOM, snapshot.seq) == []
    wire = snapshot.as_wire()
    assert wire["chat"][0] == {"id": messages[2].seq, "user": {"id": 3, "name": "user3"}, "text": "message 3",
                               "ts": messages[2].payload["ts"]}  # fmt: skip
    assert set(wire) == {"pinned", "chat", "slow_mode", "viewers", "likes", "seq", "video"}
    assert wire["video"] is None  # nobody has published in this room
    assert (await store.snapshot(ROOM, chat_limit=50)).chat == (messages[0], *messages[2:])
    empty = await store.snapshot(404)
    assert (empty.seq, empty.status, empty.chat, empty.likes, empty.viewers, empty.pinned) == (
        "0-0", None, (), 0, 0, None
    )  # fmt: skip


# --- chat -------------------------------------------------------------------------------------------------------


async def test_a_posted_message_is_logged_with_the_server_time(store: RoomStore, redis: Redis) -> None:
    async def server_ms() -> int:
        seconds, micros = await redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    before = await server_ms()
    message = await post(store, 42, "Grüße, world")
    after = await server_ms()
    assert message.event == "chat"
    ts = message.payload["ts"]
    user = {"id": 42, "name": "user42"}
    assert message.payload == {"id": message.seq, "user": user, "text": "Grüße, world", "ts": ts}
    assert before <= ts <= after  # Redis's clock, not this process's
    entries: Any = await redis.xrange(room_key(ROOM, "events"), min=message.seq, max=message.seq)
    [(_, fields)] = entries
    assert fields == {b"event": b"chat", b"user_id": b"42", b"display_name": b"user42",
                      b"text": "Grüße, world".encode(), b"ts": str(ts).encode()}  # fmt: skip
    assert await redis.hget(room_key(ROOM, "last_msg"), "42") == str(ts).encode()


async def test_each_refusal_is_enforced_inside_redis(redis: Redis) -> None:
    """The script alone, given crafted state, refuses; and a refusal writes nothing."""
    chat = script(redis, "chat_post.lua")
    keys = [room_key(ROOM, part) for part in ("state", "events", "bans", "mutes", "mods", "last_msg", "rl:5")]
    keys += [room_key(ROOM, "blocked"), room_key(ROOM, "once:5:x"), bus_channel(ROOM)]

    async def call(text: str = "hi there", interval: int = 0, burst: int = 1) -> list[Any]:
        folded = text.casefold()
        args: list[str | int] = ["proc", 5, "Eve", text, folded, " ".join(folded.split()), interval, burst, 100]
        return list(await chat(keys=keys, args=[*args, 60_000]))

    async def refused_unchanged(*args: Any, **options: Any) -> list[Any]:
        before = await everything(redis)
        answer = await call(*args, **options)
        assert await everything(redis) == before, answer
        return answer

    now_s, _ = await redis.time()
    now_ms = now_s * 1000
    assert await refused_unchanged() == [b"room_not_live", b""]
    await redis.hset(keys[0], "status", "scheduled")
    assert await refused_unchanged() == [b"room_not_live", b"scheduled"]
    await redis.hset(keys[0], "status", "live")
    await redis.sadd(keys[2], "5")
    assert await refused_unchanged() == [b"banned"]
    await redis.srem(keys[2], "5")
    await redis.hset(keys[3], "5", str(now_ms + 60_000))
    code, remaining = await refused_unchanged()
    assert code == b"muted"
    assert 55_000 < remaining <= 60_000
    await redis.hset(keys[3], "5", str(now_ms - 1))  # expired
    await redis.sadd(keys[7], "darn", "no way")
    assert await refused_unchanged("oh DARN it") == [b"blocked_word", b"darn"]
    assert await refused_unchanged("no  way? no way!") == [b"blocked_word", b"no way"]
    await redis.hset(keys[0], "slow_mode", "30")
    await redis.hset(keys[5], "5", str(now_ms))
    code, wait, interval = await refused_unchanged()
    assert (code, interval) == (b"slow_mode", 30)
    assert 25_000 < wait <= 30_000
    await redis.hdel(keys[0], "slow_mode")
    await redis.set(keys[6], str(now_ms * 1000 + 50_000_000))  # the user's budget is spent for 50 s
    code, wait = await refused_unchanged(interval=1_000_000, burst=1)
    assert code == b"rate_limited"
    assert 45_000 < wait <= 50_000
    assert await redis.xlen(keys[1]) == 0
    posted = await call(interval=1_000_000, burst=60)  # a bigger burst: allowed
    assert posted[0] == b"ok"
    assert await refused_unchanged(interval=1_000_000, burst=60) == posted  # the once key: the same answer
    assert await redis.xlen(keys[1]) == 1
    assert await redis.hget(keys[3], "5") is None  # the expired mute was cleaned up by the post


async def test_refusals_carry_a_code_a_reason_and_when_to_retry(store: RoomStore, redis: Redis) -> None:
    await store.ban(ROOM, 2)
    assert await redis.sismember(room_key(ROOM, "bans"), "2")
    banned = await refused(store, 2)
    assert isinstance(banned, ChatBanned)
    assert (banned.code, banned.detail, banned.retry_after) == ("banned", "you are banned from this room's chat", None)
    assert isinstance(banned, ClientError)
    assert banned.to_problem()["code"] == "banned"
    await store.unban(ROOM, 2)
    assert not await redis.sismember(room_key(ROOM, "bans"), "2")
    await post(store, 2)

    await store.mute(ROOM, 3, 240)
    muted = await refused(store, 3)
    assert isinstance(muted, ChatMuted)
    assert muted.detail == "you are muted in this room for 4 more minutes"
    assert muted.retry_after is not None
    assert 235 < muted.retry_after <= 240
    assert muted.headers == {"Retry-After": "240"}
    await store.unmute(ROOM, 3)
    await post(store, 3)

    await store.set_blocked_words(ROOM, ["  Straße ", "Free Money", ""])
    assert await redis.smembers(room_key(ROOM, "blocked")) == {b"strasse", b"free money"}
    blocked = await refused(store, 4, "meet me at the STRASSE!")
    assert isinstance(blocked, ChatBlockedWord)
    assert blocked.code == "invalid_request"
    assert "strasse" in blocked.detail
    assert isinstance(await refused(store, 4, "get FREE \n money"), ChatBlockedWord)  # any whitespace
    await post(store, 4, "strassenbahn is fine")
    await store.set_blocked_words(ROOM, [])
    await post(store, 4, "strasse")

    for status, detail in (("scheduled", "not live yet"), ("ended", "has ended")):
        await store.publish_status(ROOM, ev.room_status(ROOM, status))
        not_live = await refused(store, 5)
        assert isinstance(not_live, ChatRoomNotLive)
        assert not_live.code == "room_not_live"
        assert detail in not_live.detail
    await store.publish_status(ROOM, ev.room_status(ROOM, "live"))

    with pytest.raises(InvalidRequest):
        await post(store, 5, "   ")
    with pytest.raises(InvalidRequest):
        await post(store, 5, "x" * 5000)
    with pytest.raises(InvalidRequest):
        await post(store, 5, client_msg_id="not valid!")


async def test_slow_mode_says_how_long_to_wait_and_spares_moderators(store: RoomStore) -> None:
    await store.set_slow_mode(ROOM, 1)
    await post(store, 6)
    slow = await refused(store, 6)
    assert isinstance(slow, ChatSlowMode)
    assert slow.code == "slow_mode"
    assert slow.retry_after is not None
    assert 0 < slow.retry_after <= 1
    assert slow.detail == "slow mode is on: one message every 1 s; wait 1 s"
    await post(store, 7)  # another user is not held back
    await asyncio.sleep(slow.retry_after + 0.01)  # exactly as long as Redis said
    await post(store, 6)
    await store.add_moderator(ROOM, 8)
    assert await store.is_moderator(ROOM, 8)
    for n in range(3):
        await post(store, 8, f"moderator {n}")
    await store.remove_moderator(ROOM, 8)
    assert not await store.is_moderator(ROOM, 8)
    assert isinstance(await refused(store, 8), ChatSlowMode)
    await store.set_slow_mode(ROOM, 0)
    await post(store, 6)
    await post(store, 6)


async def test_the_per_user_rate_limit_allows_a_burst_then_says_when(store: RoomStore) -> None:
    for n in range(3):
        await post(store, 9, f"burst {n}", rate_per_minute=60, burst=3)
    limited = await refused(store, 9, rate_per_minute=60, burst=3)
    assert isinstance(limited, ChatRateLimited)
    assert limited.code == "rate_limited"
    assert limited.retry_after is not None
    assert 0 < limited.retry_after <= 1
    assert limited.detail == "you are sending messages too fast; wait 1 s"
    await post(store, 10, rate_per_minute=60, burst=3)  # budgets are per user
    await asyncio.sleep(limited.retry_after + 0.01)
    await post(store, 9, rate_per_minute=60, burst=3)


async def test_a_mute_ends_by_itself(store: RoomStore) -> None:
    await store.mute(ROOM, 12, 1)
    muted = await refused(store, 12)
    assert isinstance(muted, ChatMuted)
    assert muted.detail == "you are muted in this room for 1 more second"
    assert muted.retry_after is not None
    await asyncio.sleep(muted.retry_after + 0.01)
    await post(store, 12)
    with pytest.raises(ValueError, match="at least 1 second"):
        await store.mute(ROOM, 12, 0)


async def test_a_repeated_post_with_the_same_client_id_posts_once(store: RoomStore, redis: Redis) -> None:
    first = await post(store, 13, "once", client_msg_id="abc-1", rate_per_minute=60, burst=1)
    again = await post(store, 13, "once", client_msg_id="abc-1", rate_per_minute=60, burst=1)
    assert again == first  # not a second message, and not refused by the budget it already used
    other = await refused(store, 13, "twice", client_msg_id="abc-2", rate_per_minute=60, burst=1)
    assert isinstance(other, ChatRateLimited)
    snapshot = await store.snapshot(ROOM)
    assert snapshot.chat == (first,)


async def test_deleting_a_message_removes_it_from_history_and_announces_it(store: RoomStore, redis: Redis) -> None:
    keep, gone = await post(store, 1, "keep"), await post(store, 2, "gone")
    pubsub = redis.pubsub()
    await pubsub.subscribe(bus_channel(ROOM))
    assert not await store.delete_chat(ROOM, "1-0")  # never existed
    assert not await store.delete_chat(ROOM, "garbage")
    assert await store.delete_chat(ROOM, gone.seq)
    assert not await store.delete_chat(ROOM, gone.seq)  # already gone
    message = None
    deadline = time.monotonic() + 5
    while message is None or message["type"] != "message":
        assert time.monotonic() < deadline
        message = await pubsub.get_message(timeout=1)
    origin, seq, event, payload = msgpack.unpackb(message["data"], raw=False)
    assert (origin, event, payload) == ("proc-a", "chat_deleted", {"room_id": ROOM, "ids": [gone.seq]})
    assert await store.events_since(ROOM, keep.seq) == [Event(seq, "chat_deleted", payload)]
    assert (await store.snapshot(ROOM)).chat == (keep,)
    await pubsub.aclose()


async def test_only_chat_messages_can_be_deleted(store: RoomStore, redis: Redis) -> None:
    seq = await store.publish(ROOM, "pinned", {"n": 1})
    assert not await store.delete_chat(ROOM, seq)
    assert await store.events_since(ROOM, seq) == []
    assert await redis.xrange(room_key(ROOM, "events"), min=seq, max=seq)


# --- bad arguments and wrong-typed keys -------------------------------------------------------------------------


async def test_scripts_refuse_bad_arguments_before_writing_anything(store: RoomStore, redis: Redis) -> None:
    await post(store)
    publish, chat = script(redis, "room_publish.lua"), script(redis, "chat_post.lua")
    counters, delete = script(redis, "room_counters.lua"), script(redis, "chat_delete.lua")
    events, state, bus = room_key(ROOM, "events"), room_key(ROOM, "state"), bus_channel(ROOM)
    chat_keys = [room_key(ROOM, part) for part in ("state", "events", "bans", "mutes", "mods", "last_msg", "rl:1")]
    chat_keys += [room_key(ROOM, "blocked"), room_key(ROOM, "once:1:z"), bus]
    chat_args: list[Any] = ["p", 1, "Ann", "hi", "hi", "hi", 0, 1, 100, 60_000]
    good_map = msgpack.packb({"a": 1})
    calls: list[tuple[AsyncScript, list[str], list[Any], str]] = [
        (publish, [events, state, bus], ["p", "ev", good_map, 100, "", ""], "expected 3 keys"),
        (publish, [events, state, bus], ["", "ev", good_map, 100, "", "", ""], "origin"),
        (publish, [events, state, bus], ["p", "bad event!", good_map, 100, "", "", ""], "event must be"),
        (publish, [events, state, bus], ["p", "ev", msgpack.packb([1]), 100, "", "", ""], "msgpack map"),
        (publish, [events, state, bus], ["p", "ev", b"", 100, "", "", ""], "msgpack map"),
        (publish, [events, state, bus], ["p", "ev", good_map, 0, "", "", ""], "history"),
        (publish, [events, state, bus], ["p", "ev", good_map, "1.5", "", "", ""], "history"),
        (publish, [events, state, bus], ["p", "ev", good_map, 100, "upsert", "f", "v"], "state change"),
        (publish, [events, state, bus], ["p", "ev", good_map, 100, "set", "", "v"], "needs a field"),
        (chat, chat_keys, ["p", "one", *chat_args[2:]], "user id"),
        (chat, chat_keys, ["p", "-1", *chat_args[2:]], "user id"),
        (chat, chat_keys, [*chat_args[:2], "", *chat_args[3:]], "display name"),
        (chat, chat_keys, [*chat_args[:3], "", *chat_args[4:]], "text"),
        (chat, chat_keys, [*chat_args[:6], -1, *chat_args[7:]], "interval"),
        (chat, chat_keys, [*chat_args[:7], 0, *chat_args[8:]], "burst"),
        (chat, chat_keys, [*chat_args[:8], "x", 60_000], "history"),
        (chat, chat_keys[:9], chat_args, "expected 10 keys"),
        (counters, [room_key(ROOM, "likes"), room_key(ROOM, "viewers")], ["p", -1, 1, 100, 100], "likes >= 0"),
        (counters, [room_key(ROOM, "likes"), room_key(ROOM, "viewers")], ["p", 1, "2.5", 100, 100], "viewers >= 0"),
        (counters, [room_key(ROOM, "likes"), room_key(ROOM, "viewers")], ["p", 1, 1, 0, 100], "ttl >= 1"),
        (counters, [room_key(ROOM, "likes"), room_key(ROOM, "viewers")], ["", 1, 1, 100, 100], "process id"),
        (counters, [room_key(ROOM, "likes")], ["p", 1, 1, 100, 100], "expected 2 or 3 keys"),
        (delete, [events, bus], ["p", good_map, "not-an-id", 100], "message id"),
        (delete, [events, bus], ["p", msgpack.packb([1]), "1-0", 100], "msgpack map"),
        (delete, [events, bus], ["", good_map, "1-0", 100], "origin"),
    ]
    before = await everything(redis)
    for lua, keys, args, reason in calls:
        with pytest.raises(ResponseError, match=reason):
            await lua(keys=keys, args=args)
    assert await everything(redis) == before


async def test_a_wrong_typed_key_fails_the_call_and_changes_nothing(store: RoomStore, redis: Redis) -> None:
    message = await post(store, 1, "first")
    await store.counters(ROOM, 1, 1)
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("last_msg", lambda: post(store, 1, "second")),
        ("rl:1", lambda: post(store, 1, "second", rate_per_minute=60, burst=2)),
        ("blocked", lambda: post(store, 1, "second")),
        ("mods", lambda: post(store, 1, "second")),
        ("likes", lambda: store.counters(ROOM, 5, 1)),
        ("viewers", lambda: store.counters(ROOM, 5, 1)),
        ("state", lambda: store.publish(ROOM, "pinned", {"n": 1}, state=("pinned", {"n": 1}))),
    ]
    for part, call in cases:
        key = room_key(ROOM, part)
        saved = await redis.dump(key)
        await redis.delete(key)
        await redis.rpush(key, "a list, not what the script expects")
        before = await everything(redis)
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await call()
        assert await everything(redis) == before, part
        await redis.delete(key)
        if saved is not None:
            await redis.restore(key, 0, saved)
    events = room_key(ROOM, "events")
    await redis.rename(events, "saved-events")
    await redis.set(events, "not a stream")
    before = await everything(redis)
    for call in (
        lambda: post(store, 1, "x"),
        lambda: store.publish(ROOM, "e", {}),
        lambda: store.delete_chat(ROOM, message.seq),
    ):
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await call()
    assert await everything(redis) == before
    await redis.set(room_key(ROOM, "likes"), "1.5")
    with pytest.raises(ResponseError, match="does not hold an integer"):
        await store.counters(ROOM, 1, 1)


# --- counters ---------------------------------------------------------------------------------------------------


async def test_viewers_are_summed_across_processes_and_a_dead_process_drops_out(redis: Redis) -> None:
    a = RoomStore(redis, "proc-a", viewer_ttl_ms=300)
    b = RoomStore(redis, "proc-b", viewer_ttl_ms=300)
    assert await a.counters(ROOM, 0, 3) == (0, 3)
    assert await b.counters(ROOM, 2, 4) == (2, 7)
    assert await a.counters(ROOM, 1, 3) == (3, 7)
    assert (await a.snapshot(ROOM)).viewers == 7
    # b "crashes": it never refreshes nor withdraws. Its 4 viewers leave the total within one ttl.
    started = time.monotonic()

    async def b_is_gone() -> bool:
        return await a.counters(ROOM, 0, 3) == (3, 3)

    await eventually(b_is_gone, "proc-b's viewers to expire", within=5)
    assert time.monotonic() - started < 2
    assert await redis.hkeys(room_key(ROOM, "viewers")) == [b"proc-a"]  # the dead field was deleted
    assert (await a.snapshot(ROOM)).viewers == 3
    assert await a.counters(ROOM, 0, 0) == (3, 0)  # withdrawing leaves nothing behind
    assert not await redis.exists(room_key(ROOM, "viewers"))
    await a.counters(ROOM, 0, 1)
    assert 0 < await redis.pttl(room_key(ROOM, "viewers")) <= 300  # an abandoned room's hash expires

    async def hash_expired() -> bool:
        return not await redis.exists(room_key(ROOM, "viewers"))

    await eventually(hash_expired, "the abandoned viewers hash to expire", within=5)


async def test_likes_from_many_processes_add_up_exactly(redis_url: str) -> None:
    clients = [Redis.from_url(redis_url) for _ in range(5)]
    stores = [RoomStore(client, f"proc-{n}") for n, client in enumerate(clients)]

    async def liker(n: int) -> None:
        store = stores[n % len(stores)]
        for _ in range(20):
            await store.counters(ROOM, 3, 1)

    await asyncio.gather(*(liker(n) for n in range(50)))
    likes, viewers = await stores[0].counters(ROOM, 0, 1)
    assert likes == 50 * 20 * 3
    assert viewers == 5  # one field per process, not per call
    for client in clients:
        await client.aclose()


async def test_a_repeated_counters_call_adds_its_likes_once(redis: Redis) -> None:
    counters = script(redis, "room_counters.lua")
    keys = [room_key(ROOM, "likes"), room_key(ROOM, "viewers"), room_key(ROOM, "once:t1")]
    for _ in range(3):  # as redis-py would, retrying a call whose reply was lost
        assert await counters(keys=keys, args=["p", 10, 1, 5000, 60_000]) == [10, 1]
    assert await counters(keys=[*keys[:2], room_key(ROOM, "once:t2")], args=["p", 1, 1, 5000, 60_000]) == [11, 1]
    with pytest.raises(ValueError, match=">= 0"):
        await RoomStore(redis, "p").counters(ROOM, -1, 0)


# --- surviving Redis --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["from_url", "retrying"])
async def test_calls_survive_script_flush_and_a_redis_restart(tmp_path: Path, client: str) -> None:
    with RedisProcess(tmp_path) as server:
        if client == "from_url":
            redis = Redis.from_url(server.url)
        else:
            redis = Redis(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 3))
        store = RoomStore(redis, "proc-a")

        async def every_script() -> None:
            await store.publish_status(ROOM, ev.room_status(ROOM, "live"), only_if_changed=True)
            message = await post(store, 1, "still here", rate_per_minute=600, burst=100)
            await store.publish(ROOM, "pinned", {"n": 1})
            assert await store.delete_chat(ROOM, message.seq)
            await store.counters(ROOM, 1, 1)

        await every_script()
        await redis.script_flush()
        await every_script()  # redis-py loads each script again on NOSCRIPT
        server.stop()
        server.start()  # empty: no data, no scripts, and the client's connection is dead
        if client == "from_url":
            # from_url builds a client that does not retry: its first command on the dead connection fails
            # (and drops it). A retrying client recovers by itself, and the once keys make that retry safe.
            with pytest.raises(RedisConnectionError):
                await redis.ping()
        await every_script()
        assert (await store.snapshot(ROOM)).likes == 1
        await redis.aclose()


def test_a_client_that_decodes_responses_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="decode_responses=False"):
        RoomStore(Redis.from_url(redis_url, decode_responses=True), "p")
