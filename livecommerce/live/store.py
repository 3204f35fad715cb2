"""The live rooms' Redis layer: room state, the per-room event log, chat moderation and the live counters.

Every hub process serves viewers of the same rooms, so what a room is (status, pinned product, slow mode),
what happened in it (the log clients resume from) and who may speak is one truth in Redis. Each write that
others must hear is one Lua script that checks, appends to the room's log and publishes on the room's bus in
one atomic step, so the log, the state and what other processes hear never disagree. Times come from Redis
TIME, one clock for every process.

Keys of room ID share the hash tag ``{room:ID}``, so a room lives in one Redis Cluster slot:

    livecommerce:{room:ID}:state      hash: status, slow_mode (plain text); pinned and other payloads (msgpack)
    livecommerce:{room:ID}:events     stream, trimmed to ~history: the room's log; a stream id is an event's seq
    livecommerce:{room:ID}:likes      counter
    livecommerce:{room:ID}:viewers    hash: hub process id -> "<count>:<expires_at_ms>"
    livecommerce:{room:ID}:mutes      hash: user id -> muted until (ms)
    livecommerce:{room:ID}:bans, :mods, :blocked       sets: user ids, user ids, casefolded words and phrases
    livecommerce:{room:ID}:last_msg   hash: user id -> ms of the user's last message (slow mode)
    livecommerce:{room:ID}:rl:<user>  GCRA bucket of the user's chat budget
    livecommerce:{room:ID}:once:<id>  remembers a chat post or a likes fold for a minute, so a retry is not a second one
    livecommerce:{room:ID}:bus        pub/sub channel: msgpack [origin process id, seq, event, payload]

Payloads are msgpack maps in Redis and on the bus (never pickle), plain dicts here. The scripts document
their KEYS/ARGV contracts in `livecommerce/lua/`; redis-py re-loads them on NOSCRIPT, so a Redis restart or a
SCRIPT FLUSH is survived.
"""

from __future__ import annotations

import logging
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from livecommerce.clock import redis_time_ms
from livecommerce.errors import ClientError, InvalidRequest
from livecommerce.live import codec
from livecommerce.live import events as ev
from livecommerce.live.events import CHAT, CHAT_DELETED, ROOM_STATUS, Event, Payload, ServerEvent
from livecommerce.scripts import script as _script

__all__ = [
    "ChatBanned",
    "ChatBlockedWord",
    "ChatMuted",
    "ChatRateLimited",
    "ChatRefused",
    "ChatRoomNotLive",
    "ChatSlowMode",
    "RoomSnapshot",
    "RoomStore",
    "bus_channel",
    "room_key",
]

log = logging.getLogger(__name__)

MAX_CHAT_BYTES: Final = 4096  # a sanity bound; the protocol's own limit is lower
_ONCE_TTL_MS = 60_000  # far longer than any client retry of one call
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_WORD = re.compile(r"\w+")
_PLAIN_FIELDS = frozenset({"status", "slow_mode"})  # read by chat_post.lua, so stored as text
_OWN_EVENTS = frozenset({CHAT, CHAT_DELETED, ROOM_STATUS})  # written only by their own methods


def room_key(room: int, part: str) -> str:
    """The key of one part of a room's data (see the module docstring)."""
    return f"livecommerce:{{room:{room}}}:{part}"


def bus_channel(room: int) -> str:
    """The room's pub/sub channel; it shares the room's hash tag."""
    return room_key(room, "bus")


# --- values ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomSnapshot:
    """A room's live state, read atomically: apply events with a greater seq on top of it."""

    seq: str  # the newest event included; "0-0" when the room has none
    status: str | None  # None until the room's status is first written to Redis
    slow_mode: int  # seconds between one user's messages; 0 = off
    state: Mapping[str, Payload]  # payload-valued state fields, e.g. "pinned"
    chat: tuple[Event, ...]  # the last messages, oldest first; deleted ones are gone
    likes: int
    viewers: int

    @property
    def pinned(self) -> Payload | None:
        return self.state.get("pinned")

    def as_wire(self) -> Payload:
        """The room-state part of a join's `snapshot` (the SQL part, `room`, is the caller's)."""
        return {
            "pinned": self.pinned,
            "video": self.state.get("video"),  # written by livecommerce/media: {"room_id", "state", "ts"}
            "chat": [message.payload for message in self.chat],
            "slow_mode": self.slow_mode,
            "viewers": self.viewers,
            "likes": self.likes,
            "seq": self.seq,
        }


# --- chat refusals --------------------------------------------------------------------------------------------


class ChatRefused(ClientError):
    """A chat message Redis refused. Subclasses name the reason (`code`); `retry_after` (s) when waiting helps."""

    status = 403
    code = "chat_refused"
    title = "Message not posted"


class ChatBanned(ChatRefused):
    code = "banned"
    title = "Banned from this room's chat"


class ChatMuted(ChatRefused):
    code = "muted"
    title = "Muted in this room"


class ChatRoomNotLive(ChatRefused):
    status = 409
    code = "room_not_live"
    title = "The room is not live"


class ChatSlowMode(ChatRefused):
    status = 429
    code = "slow_mode"
    title = "Slow mode"
    retryable = True


class ChatRateLimited(ChatRefused):
    status = 429
    code = "rate_limited"
    title = "Too many messages"
    retryable = True


class ChatBlockedWord(ChatRefused):
    """The block-list refused the text; the protocol reports it as `invalid_request`, like other bad text."""

    status = 422
    code = "invalid_request"
    title = "The request is not valid"


def _refusal(code: str, data: list[Any]) -> ChatRefused:
    if code == "banned":
        return ChatBanned("you are banned from this room's chat")
    if code == "muted":
        ms = int(data[0])
        return ChatMuted(f"you are muted in this room for {_remaining(ms)}", retry_after=ms / 1000)
    if code == "room_not_live":
        status = codec.text(data[0])
        if status == "scheduled":
            return ChatRoomNotLive("the room is not live yet; chat opens when the show starts")
        if status == "ended":
            return ChatRoomNotLive("the room is not live any more; the show has ended")
        return ChatRoomNotLive("the room is not live")
    if code == "blocked_word":
        return ChatBlockedWord(
            f"your message contains “{codec.text(data[0])}”, which this room does not allow; rephrase it"
        )
    if code == "slow_mode":
        ms, interval = int(data[0]), int(data[1])
        return ChatSlowMode(
            f"slow mode is on: one message every {interval} s; wait {_seconds(ms)} s", retry_after=ms / 1000
        )
    if code == "rate_limited":
        ms = int(data[0])
        return ChatRateLimited(f"you are sending messages too fast; wait {_seconds(ms)} s", retry_after=ms / 1000)
    raise RuntimeError(f"chat_post.lua answered {code!r}, which this version does not know")


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


def _remaining(ms: int) -> str:
    """'45 more seconds', '4 more minutes', '3 more hours', '2 more days' (rounded up)."""
    seconds = _seconds(ms)
    for unit, size, below in (("second", 1, 120), ("minute", 60, 7200), ("hour", 3600, 172800)):
        if seconds < below:
            n = math.ceil(seconds / size)
            return f"{n} more {unit}{'' if n == 1 else 's'}"
    n = math.ceil(seconds / 86400)
    return f"{n} more days"


# --- the store ------------------------------------------------------------------------------------------------


class RoomStore:
    """Typed access to the rooms' live state in Redis, for one hub process (`process_id` tags what it writes).

    `history` bounds each room's log (approximately: Redis trims whole nodes); `viewer_ttl_ms` is how long a
    process's viewer count stands without a refresh, so call `counters` for each room at least that often.
    The client must not decode responses (payloads are msgpack bytes).
    """

    def __init__(self, redis: Redis, process_id: str, *, history: int = 1000, viewer_ttl_ms: int = 5000) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RoomStore needs a Redis client with decode_responses=False")
        if not process_id:
            raise ValueError("process_id must be non-empty")
        if history < 1 or viewer_ttl_ms < 1:
            raise ValueError("history and viewer_ttl_ms must be >= 1")
        self.process_id = process_id
        self.history = history
        self.viewer_ttl_ms = viewer_ttl_ms
        self._redis = redis
        self._room_publish = _script(redis, "room_publish.lua")
        self._chat_post = _script(redis, "chat_post.lua")
        self._chat_delete = _script(redis, "chat_delete.lua")
        self._room_counters = _script(redis, "room_counters.lua")

    # --- events and state -------------------------------------------------------------------------------------

    async def publish(
        self, room: int, event: str, payload: Payload, *, state: tuple[str, Payload | None] | None = None
    ) -> str:
        """Log `event` and publish it to every hub process; with `state=(field, value)`, also set that state
        field to `value` (None removes it) in the same step. Returns the event's seq."""
        if event in _OWN_EVENTS:
            raise ValueError(f"{event!r} events are written by their own RoomStore methods")
        op, field, value = "", "", b""
        if state is not None:
            field, new = state
            if field in _PLAIN_FIELDS:
                raise ValueError(f"the {field!r} state field has its own RoomStore method")
            op, value = ("del", b"") if new is None else ("set", codec.pack(new))
        seq = await self._publish(room, event, payload, op, field, value)
        assert seq is not None  # only 'change' can skip
        return seq

    async def publish_status(self, room: int, event: ServerEvent, *, only_if_changed: bool = False) -> str | None:
        """Set the room's status to a `room_status` event's and publish it, exactly as built; returns its seq.
        With `only_if_changed`, make Redis agree with the system of record: when the stored status differs (or is
        missing) set it and publish, else change nothing and return None."""
        if event.name != ROOM_STATUS:
            raise ValueError(f"publish_status publishes room_status events, not {event.name!r}")
        status = str(event.payload["status"]).encode()
        return await self._publish(
            room, ROOM_STATUS, event.payload, "change" if only_if_changed else "set", "status", status
        )

    async def snapshot(self, room: int, chat_limit: int = 50) -> RoomSnapshot:
        """The room's state, its last `chat_limit` messages, its counters and the seq they correspond to."""
        page = max(2 * chat_limit, 20)
        events = room_key(room, "events")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(room_key(room, "state"))
            pipe.get(room_key(room, "likes"))
            pipe.hgetall(room_key(room, "viewers"))
            pipe.time()
            pipe.xrevrange(events, count=page)
            fields, likes, viewer_fields, redis_now, entries = await pipe.execute()
        seq = entries[0][0].decode() if entries else "0-0"
        chat: list[Event] = []
        while True:
            for entry_id, entry in entries:
                if entry.get(b"event") == CHAT.encode() and len(chat) < chat_limit:
                    message = _decode_entry(entry_id, entry)
                    if message is not None:
                        chat.append(message)
            if len(chat) >= chat_limit or len(entries) < page:
                break
            # Older pages are outside the transaction: only a trim (older messages gone) or a deletion (whose
            # chat_deleted event is newer than `seq`) can change them meanwhile.
            entries = await self._redis.xrevrange(events, max=f"({entries[-1][0].decode()}", count=page)
        chat.reverse()
        status = fields.pop(b"status", None)
        slow_mode = fields.pop(b"slow_mode", b"0")
        state: dict[str, Payload] = {}
        for name, raw in fields.items():
            value = codec.unpack(raw)
            if isinstance(value, dict):
                state[name.decode()] = value
            else:
                log.warning("room %d: state field %r is not a msgpack map; ignored", room, name)
        now_ms = redis_time_ms(redis_now)
        return RoomSnapshot(
            seq=seq,
            status=status.decode() if status is not None else None,
            slow_mode=int(slow_mode),
            state=state,
            chat=tuple(chat),
            likes=int(likes or 0),
            viewers=_live_viewers(viewer_fields, now_ms),
        )

    async def events_since(self, room: int, seq: str) -> list[Event] | None:
        """The events after `seq`, oldest first; None when they cannot all be given — `seq` is older than the
        retained log, unknown to it, or malformed — and the caller must send a fresh snapshot instead.

        Conservative: a seq older than the oldest retained event is refused even when what lies between was
        deleted chat rather than trimmed history (and "0-0", a snapshot of an empty room, once events exist)."""
        after = codec.seq_key(seq)
        if after is None:
            return None
        events = room_key(room, "events")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrange(events, count=1)
            pipe.xrevrange(events, count=1)
            pipe.xrange(events, min=f"({seq}")
            first, last, entries = await pipe.execute()
        if not first:
            return [] if after == (0, 0) else None
        oldest, newest = codec.seq_key(first[0][0]), codec.seq_key(last[0][0])
        assert oldest is not None  # stream ids
        assert newest is not None
        if after < oldest or after > newest:
            return None
        return [event for event in (_decode_entry(i, fields) for i, fields in entries) if event is not None]

    # --- chat -------------------------------------------------------------------------------------------------

    async def post_chat(
        self,
        room: int,
        user_id: int,
        display_name: str,
        text: str,
        *,
        rate_per_minute: int,
        burst: int,
        client_msg_id: str | None = None,
    ) -> Event:
        """Post a chat message, or raise `ChatRefused` saying why not (ban, mute, room not live, block-list,
        slow mode — moderators are exempt — or the user's budget of `rate_per_minute`, 0 = none, with `burst`).

        A repeat with the same `client_msg_id` (per user and room, within a minute) returns the first post
        instead of posting again; without one, a fresh id still makes redis-py's own retries safe."""
        encoded = text.encode()
        if not text.strip() or len(encoded) > MAX_CHAT_BYTES:
            raise InvalidRequest(f"a chat message needs 1 to {MAX_CHAT_BYTES} bytes of text")
        if not display_name or len(display_name.encode()) > 256:
            raise ValueError("display_name must be 1-256 bytes")
        if user_id < 0 or rate_per_minute < 0 or burst < 1:
            raise ValueError("user_id and rate_per_minute must be >= 0 and burst >= 1")
        if client_msg_id is None:
            client_msg_id = uuid.uuid4().hex
        elif not _CLIENT_ID.fullmatch(client_msg_id):
            raise InvalidRequest("a client message id is 1-64 characters of A-Z, a-z, 0-9, '_' and '-'")
        folded = " ".join(text.casefold().split())  # phrases match across any run of whitespace
        keys = [
            room_key(room, part)
            for part in ("state", "events", "bans", "mutes", "mods", "last_msg", f"rl:{user_id}", "blocked")
        ]
        keys += [room_key(room, f"once:{user_id}:{client_msg_id}"), bus_channel(room)]
        interval = 60_000_000 // rate_per_minute if rate_per_minute else 0
        args: list[str | int | bytes] = [self.process_id, user_id, display_name, encoded, folded]
        args.append(" ".join(set(_WORD.findall(folded))))
        args += [interval, burst, self.history, _ONCE_TTL_MS]
        reply = await self._chat_post(keys=keys, args=args)
        code = codec.text(reply[0])
        if code != "ok":
            raise _refusal(code, reply[1:])
        seq = codec.text(reply[1])
        fields = {"user_id": user_id, "display_name": display_name, "text": text, "ts": int(reply[2])}
        return Event(seq, CHAT, ev.chat_message(seq, fields))

    async def delete_chat(self, room: int, message_seq: str) -> str | None:
        """Remove a chat message from the log and publish `chat_deleted`; returns that event's seq, or None when
        there is no such message."""
        if codec.seq_key(message_seq) is None:
            return None
        seq = await self._chat_delete(
            keys=[room_key(room, "events"), bus_channel(room)],
            args=[self.process_id, codec.pack(ev.chat_deleted(room, [message_seq])), message_seq, self.history],
        )
        return None if seq is None else codec.text(seq)

    # --- moderation -------------------------------------------------------------------------------------------

    async def mute(self, room: int, user_id: int, seconds: int) -> None:
        """Keep `user_id` from chatting in the room for `seconds` (by Redis's clock)."""
        if seconds < 1:
            raise ValueError("a mute lasts at least 1 second")
        until = redis_time_ms(await self._redis.time()) + seconds * 1000
        await self._redis.hset(room_key(room, "mutes"), str(user_id), str(until))

    async def unmute(self, room: int, user_id: int) -> None:
        await self._redis.hdel(room_key(room, "mutes"), str(user_id))

    async def ban(self, room: int, user_id: int) -> None:
        await self._redis.sadd(room_key(room, "bans"), str(user_id))

    async def unban(self, room: int, user_id: int) -> None:
        await self._redis.srem(room_key(room, "bans"), str(user_id))

    async def set_slow_mode(self, room: int, seconds: int) -> None:
        """One message per user every `seconds` (0 = off). Not announced: the caller publishes its own event."""
        if seconds < 0:
            raise ValueError("slow mode seconds must be >= 0")
        await self._redis.hset(room_key(room, "state"), "slow_mode", str(seconds))

    async def set_blocked_words(self, room: int, words: list[str]) -> None:
        """Replace the room's block-list. Entries are casefolded; one with a space or punctuation is a phrase
        (found anywhere in the text), any other a word (matched against whole words)."""
        entries = {" ".join(word.casefold().split()) for word in words} - {""}
        key = room_key(room, "blocked")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if entries:
                pipe.sadd(key, *entries)
            await pipe.execute()

    async def add_moderator(self, room: int, user_id: int) -> None:
        await self._redis.sadd(room_key(room, "mods"), str(user_id))

    async def remove_moderator(self, room: int, user_id: int) -> None:
        await self._redis.srem(room_key(room, "mods"), str(user_id))

    async def is_moderator(self, room: int, user_id: int) -> bool:
        return bool(await self._redis.sismember(room_key(room, "mods"), str(user_id)))

    # --- counters ---------------------------------------------------------------------------------------------

    async def counters(self, room: int, likes_delta: int, local_viewers: int) -> tuple[int, int]:
        """Add this process's new likes, refresh its viewer count (0 withdraws it) and return the room's
        (likes, viewers) across every live process. On an error the likes may or may not have been added."""
        if likes_delta < 0 or local_viewers < 0:
            raise ValueError("likes_delta and local_viewers must be >= 0")
        keys = [room_key(room, "likes"), room_key(room, "viewers")]
        if likes_delta:
            keys.append(room_key(room, f"once:{uuid.uuid4().hex}"))
        args: list[str | int] = [self.process_id, likes_delta, local_viewers, self.viewer_ttl_ms, _ONCE_TTL_MS]
        likes, viewers = await self._room_counters(keys=keys, args=args)
        return int(likes), int(viewers)

    # --- helpers ----------------------------------------------------------------------------------------------

    async def _publish(self, room: int, event: str, payload: Payload, op: str, field: str, value: bytes) -> str | None:
        seq = await self._room_publish(
            keys=[room_key(room, "events"), room_key(room, "state"), bus_channel(room)],
            args=[self.process_id, event, codec.pack(payload), self.history, op, field, value],
        )
        return None if seq is None else codec.text(seq)


def _decode_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> Event | None:
    """An event from its stream entry (see the scripts' headers); None, with a warning, when it is not one."""
    seq = entry_id.decode()
    try:
        event = fields[b"event"].decode()
        if event == CHAT:
            logged = {name: fields[name.encode()].decode() for name in ("user_id", "display_name", "text", "ts")}
            return Event(seq, event, ev.chat_message(seq, logged))
        payload = codec.unpack(fields[b"payload"])
        if isinstance(payload, dict):
            return Event(seq, event, payload)
    except (KeyError, ValueError):
        pass
    log.warning("event log entry %s is not an event this version can read; skipped", seq)
    return None


def _live_viewers(fields: dict[bytes, bytes], now_ms: int) -> int:
    total = 0
    for value in fields.values():
        count, _, expires = value.partition(b":")
        if count.isdigit() and expires.isdigit() and int(expires) > now_ms:
            total += int(count)
    return total
