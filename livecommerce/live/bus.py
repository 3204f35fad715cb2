"""Cross-process room events: one Redis pub/sub connection per web process (`LiveRooms` owns it).

A hub process delivers an event to its own viewers first; the Lua script that logged the event also
published it on the room's channel (`livecommerce:{room:ID}:bus`), and every other process that has viewers
in the room hears it here and delivers it to its own. A process subscribes only to the rooms it has viewers
in. Messages are msgpack arrays `[origin process id, seq, event, payload map]` (built by the scripts in
`livecommerce/lua/`); never pickle, so a message from Redis cannot run code here.

Delivery is at most once. While the connection is down, and during the reconnect backoff, messages are lost,
not queued. The gap is healed from the room's log: clients that reconnect resume from the last seq they saw
(`RoomStore.events_since`), and `run`'s `on_reconnect` tells this process which rooms may have missed events
so it can fetch them for viewers whose own connection never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from livecommerce.aio import raise_if_cancelled
from livecommerce.live import codec
from livecommerce.live.store import bus_channel

__all__ = ["Bus", "OnEvent", "OnReconnect"]

log = logging.getLogger(__name__)

OnEvent = Callable[[int, str, str, dict[str, Any]], None]  # (room, seq, event, payload)
OnReconnect = Callable[[frozenset[int]], None]  # the rooms subscribed again after a gap


class Bus:
    """This process's subscriptions to room channels, and the loop (`run`) that delivers what they carry.

    `subscribe`/`unsubscribe` are idempotent and cost nothing when nothing changes. While connected,
    `subscribe` returns once Redis has confirmed the subscription (or after `confirm_timeout`), so an event
    published after it returns is heard; a caller then reads a snapshot and drops events it already holds by
    seq. While disconnected it returns at once: `run` subscribes every current room when it reconnects.
    """

    def __init__(
        self,
        redis: Redis,
        process_id: str,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        confirm_timeout: float = 2.0,
        poll_interval: float = 1.0,
    ) -> None:
        if redis.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("Bus needs a Redis client with decode_responses=False")
        self.process_id = process_id
        self._redis = redis
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._confirm_timeout = confirm_timeout
        self._poll_interval = poll_interval
        self._own_prefix = b"\x94" + msgpack.packb(process_id)  # how our own messages start: skipped undecoded
        self._rooms: dict[bytes, int] = {}  # channel -> room: what we want to hear
        self._waiters: dict[bytes, asyncio.Future[None]] = {}  # subscriptions awaiting Redis's confirmation
        self._pubsub: PubSub | None = None  # set while connected
        self._lock = asyncio.Lock()  # commands and the connection's replacement never interleave
        self._gap = False  # run() reconnected and has not reported it yet
        self._healed = False  # redis-py reconnected by itself (a client whose connections retry)
        self._running = False

    @property
    def rooms(self) -> frozenset[int]:
        """The rooms this process listens to (or will, once connected)."""
        return frozenset(self._rooms.values())

    @property
    def connected(self) -> bool:
        return self._pubsub is not None

    async def subscribe(self, room: int) -> None:
        channel = bus_channel(room).encode()
        if channel in self._rooms:
            return
        self._rooms[channel] = room
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None or self._rooms.get(channel) != room:
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[channel] = waiter
            try:
                await pubsub.subscribe(channel)
            except (RedisError, OSError) as exc:
                del self._waiters[channel]
                log.debug("subscribing to room %d failed (%s); the bus re-subscribes when it reconnects", room, exc)
                return
        try:
            await asyncio.wait_for(waiter, self._confirm_timeout)
        except TimeoutError:
            log.warning("Redis did not confirm the subscription to room %d within %.1f s", room, self._confirm_timeout)
        finally:
            if self._waiters.get(channel) is waiter:
                del self._waiters[channel]

    async def unsubscribe(self, room: int) -> None:
        channel = bus_channel(room).encode()
        if self._rooms.pop(channel, None) is None:
            return
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None or channel in self._rooms:
                return
            try:
                await pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                log.debug("unsubscribing from room %d failed (%s); the next connection will not have it", room, exc)

    async def run(self, on_event: OnEvent, on_reconnect: OnReconnect | None = None) -> None:
        """Deliver other processes' events to `on_event(room, seq, event, payload)` until cancelled.

        On connection loss: a warning, a capped exponential backoff (with jitter, so processes do not return
        in step), a new connection subscribed to every current room, then `on_reconnect(rooms)`. Callbacks run
        on the event loop and must not block; an exception in one is logged and the bus goes on.
        """
        if self._running:
            raise RuntimeError("Bus.run is already running")
        self._running = True
        failures = 0
        try:
            while True:
                pubsub = self._redis.pubsub()
                try:
                    await self._connect(pubsub)
                    if failures:
                        log.warning(
                            "room bus reconnected after %d attempt(s); listening to %d room(s) again",
                            failures,
                            len(self._rooms),
                        )
                        self._gap = True
                    failures = 0
                    while True:
                        if self._gap or self._healed:
                            if not self._gap:
                                log.warning("room bus connection dropped and the Redis client re-established it")
                            self._gap = self._healed = False
                            self._report_gap(on_reconnect)
                        message = await pubsub.get_message(timeout=self._poll_interval)
                        raise_if_cancelled()
                        if message is not None:
                            self._handle(message, on_event)
                except (RedisError, OSError) as exc:
                    failures += 1
                    delay = min(self._max_backoff, self._min_backoff * 2 ** min(failures - 1, 30))
                    delay *= random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
                    reason = str(exc) or type(exc).__name__
                    log.warning("room bus connection lost (%s); reconnecting in %.2f s", reason, delay)
                finally:
                    await self._disconnect(pubsub)
                raise_if_cancelled()
                await asyncio.sleep(delay)
        finally:
            self._running = False

    # --- connection -----------------------------------------------------------------------------------------

    async def _connect(self, pubsub: PubSub) -> None:
        await pubsub.connect()  # type: ignore[no-untyped-call]
        assert pubsub.connection is not None
        # Clients whose connections retry heal a dropped connection inside redis-py (which re-subscribes);
        # this callback lets run() report that gap too.
        pubsub.connection.register_connect_callback(self._reconnected)
        async with self._lock:
            self._pubsub = pubsub
            if self._rooms:
                await pubsub.subscribe(*self._rooms)

    async def _disconnect(self, pubsub: PubSub) -> None:
        async with self._lock:
            if self._pubsub is pubsub:
                self._pubsub = None
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_result(None)  # stop waiting: the next connection subscribes
            if pubsub.connection is not None:
                pubsub.connection.deregister_connect_callback(self._reconnected)
            try:
                await pubsub.aclose()
            except (RedisError, OSError) as exc:  # a connection already broken: nothing more to release
                log.debug("closing the room bus connection failed: %s", exc)

    def _reconnected(self, connection: AbstractConnection) -> None:
        self._healed = True  # run() reports it

    # --- messages -------------------------------------------------------------------------------------------

    def _handle(self, message: dict[str, Any], on_event: OnEvent) -> None:
        kind, channel = message["type"], message["channel"]
        if kind == "subscribe":
            waiter = self._waiters.get(channel)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        if kind != "message":
            return
        room = self._rooms.get(channel)
        data = message["data"]
        if room is None or not isinstance(data, bytes) or data.startswith(self._own_prefix):
            return  # a room we just left, or our own event: delivered locally already
        decoded = _decode(data)
        if decoded is None:
            log.warning("room %d: a bus message is not [origin, seq, event, payload]; dropped", room)
            return
        origin, seq, event, payload = decoded
        if origin == self.process_id:
            return
        try:
            on_event(room, seq, event, payload)
        except Exception:
            log.exception("room %d: handling bus event %s (%s) failed", room, event, seq)

    def _report_gap(self, on_reconnect: OnReconnect | None) -> None:
        if on_reconnect is None:
            return
        try:
            on_reconnect(self.rooms)
        except Exception:
            log.exception("the bus's on_reconnect callback failed")


def _decode(data: bytes) -> tuple[str, str, str, dict[str, Any]] | None:
    value = codec.unpack(data)
    if not (isinstance(value, list) and len(value) == 4):
        return None
    origin, seq, event, payload = value
    if not (isinstance(origin, str) and isinstance(seq, str) and isinstance(event, str) and isinstance(payload, dict)):
        return None
    return origin, seq, event, payload
