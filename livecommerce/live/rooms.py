"""`LiveRooms`: the one way anything in a web process publishes to a room, and hears what a room publishes.

`publish(room, event)` logs the event and publishes it on the room's bus channel (one Lua script,
`RoomStore`), then hands it to this process's listeners at once (the hub's fan-out, the media service);
every other process hears it through its one `Bus` connection and hands it to its own listeners. Chat posts
and deletions, and the status correction a join makes, go the same way. A listener gets each event once:
its own publishes are skipped on the bus, and events fetched again after a bus outage (`_catch_up`) are
dropped when already delivered.

One `LiveRooms` per process (the app's `LIVE` key), so one bus connection, whatever holds rooms open: the hub
`watch`es a room while it has local viewers, media while it has a publisher or viewers there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web
from redis.asyncio import Redis

from livecommerce.aio import cancel_and_wait
from livecommerce.live import codec
from livecommerce.live import events as ev
from livecommerce.live.bus import Bus
from livecommerce.live.events import Event, Payload, ServerEvent
from livecommerce.live.store import RoomSnapshot, RoomStore
from livecommerce.models import Room
from livecommerce.state import REDIS

__all__ = ["LIVE", "Listener", "LiveRooms", "context"]

log = logging.getLogger(__name__)

Listener = Callable[[int, Event], None]  # (room, event): called on the event loop, must not block

_REMEMBERED_SEQS = 2048  # per room: enough to cover a catch-up overlapping live delivery


class LiveRooms:
    """This process's live rooms: the store (`store`, for reads and moderation lists) and the bus."""

    def __init__(self, redis: Redis, process_id: str, *, history: int = 1000) -> None:
        self.process_id = process_id
        self.store = RoomStore(redis, process_id, history=history)
        self.bus = Bus(redis, process_id)
        self._listeners: list[Listener] = []
        self._holders: dict[int, set[str]] = {}  # room -> what holds it open here ("hub", "media")
        # Catch-up after a bus outage: where each room's bus stream was (bus events arrive in log order), and
        # the seqs recently delivered here (own events are delivered first, so others' may arrive after them).
        self._bus_seq: dict[int, str] = {}
        self._delivered: dict[int, OrderedDict[str, None]] = {}
        self._catching_up: set[asyncio.Task[None]] = set()

    def listen(self, listener: Listener) -> None:
        """Hand every event of a watched room to `listener` (a resync notice is an `Event` with seq "")."""
        self._listeners.append(listener)

    async def run(self) -> None:
        """Deliver other processes' events until cancelled."""
        await self.bus.run(self._on_bus_event, self._on_bus_reconnect)

    # --- rooms held open ------------------------------------------------------------------------------------

    async def watch(self, room: int, holder: str) -> None:
        """Hear the room's events while `holder` holds it (idempotent)."""
        self._holders.setdefault(room, set()).add(holder)
        await self.bus.subscribe(room)

    async def unwatch(self, room: int, holder: str) -> None:
        holders = self._holders.get(room)
        if holders is None:
            return
        holders.discard(holder)
        if not holders:
            del self._holders[room]
            self._bus_seq.pop(room, None)
            self._delivered.pop(room, None)
            await self.bus.unsubscribe(room)

    # --- writes -----------------------------------------------------------------------------------------------

    async def publish(self, room: int, event: ServerEvent) -> Event:
        """Log `event`, publish it to every process and deliver it to this one's listeners; the logged event."""
        if event.name == ev.ROOM_STATUS:
            seq = await self.store.publish_status(room, event)
            assert seq is not None
            return self._deliver(room, Event(seq, event.name, event.payload))
        state = None if event.state is None else (event.state, None if event.clears else event.payload)
        seq = await self.store.publish(room, event.name, event.payload, state=state)
        return self._deliver(room, Event(seq, event.name, event.payload))

    async def sync_status(self, room: int, status: str) -> Event | None:
        """Make Redis agree with the system of record (see `RoomStore.publish_status`); the event if it changed."""
        event = ev.room_status(room, status)
        seq = await self.store.publish_status(room, event, only_if_changed=True)
        return None if seq is None else self._deliver(room, Event(seq, ev.ROOM_STATUS, event.payload))

    async def post_chat(
        self, room: int, user_id: int, display_name: str, text: str, *, rate_per_minute: int, burst: int
    ) -> Event:
        """Post a chat message (or raise `ChatRefused`) and deliver it."""
        posted = await self.store.post_chat(
            room, user_id, display_name, text, rate_per_minute=rate_per_minute, burst=burst
        )
        return self._deliver(room, posted)

    async def delete_chat(self, room: int, message_seq: str) -> Event | None:
        """Remove a chat message and deliver `chat_deleted`; None when there is no such message."""
        seq = await self.store.delete_chat(room, message_seq)
        if seq is None:
            return None
        return self._deliver(room, Event(seq, ev.CHAT_DELETED, ev.chat_deleted(room, [message_seq])))

    # --- what the domain announces (`rooms.RoomNotices`) ------------------------------------------------------

    async def room_status_changed(self, room: Room) -> None:
        """After a go-live or end has committed: every viewer of the room hears it."""
        await self.publish(room.id, ev.room_status(room.id, room.status.value))

    async def announce_countdown(self, room_id: int, sale_id: int, starts_at_ms: int) -> None:
        """After a countdown has committed: the room's viewers see when the sale starts."""
        await self.publish(room_id, ev.countdown(room_id, sale_id, starts_at_ms))

    # --- reads a join makes -----------------------------------------------------------------------------------

    async def snapshot(self, room: int) -> RoomSnapshot:
        """The room's state now; a watched room's catch-up starts from its seq."""
        snapshot = await self.store.snapshot(room)
        self._resume_from(room, snapshot.seq)
        return snapshot

    async def events_since(self, room: int, since: str) -> list[Event] | None:
        """What the room logged after `since` (None: send a snapshot instead, see `RoomStore.events_since`)."""
        missed = await self.store.events_since(room, since)
        if missed is not None:
            self._resume_from(room, missed[-1].seq if missed else since)
        return missed

    def _resume_from(self, room: int, seq: str) -> None:
        if room in self._holders:
            self._bus_seq.setdefault(room, seq)

    # --- delivery ---------------------------------------------------------------------------------------------

    def _deliver(self, room: int, event: Event) -> Event:
        # Seqs are remembered only for watched rooms (the bus may bring them again); a room no one here holds
        # (a REST notice) hears nothing from the bus and must not grow the memory.
        if room not in self._holders or self._seen(room, event.seq):
            self._hand(room, event)
        return event

    def _hand(self, room: int, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(room, event)
            except Exception:
                log.exception("room %d: a listener failed on %s (%s)", room, event.event, event.seq)

    def _seen(self, room: int, seq: str) -> bool:
        """Remember `seq` as delivered here; False if it already was."""
        recent = self._delivered.setdefault(room, OrderedDict())
        if seq in recent:
            return False
        recent[seq] = None
        if len(recent) > _REMEMBERED_SEQS:
            recent.popitem(last=False)
        return True

    def _on_bus_event(self, room: int, seq: str, event: str, payload: Payload) -> None:
        if event == ev.CHAT:  # chat_post.lua's bus message: the logged fields
            payload = ev.chat_message(seq, payload)
        self._heard(room, Event(seq, event, payload))

    def _heard(self, room: int, event: Event) -> None:
        """Another process's event, from the bus or from the log after a bus outage."""
        key, last = codec.seq_key(event.seq), self._bus_seq.get(room)
        if last is not None and key is not None and key > (codec.seq_key(last) or (0, 0)):
            self._bus_seq[room] = event.seq
        self._deliver(room, event)

    def _on_bus_reconnect(self, rooms: frozenset[int]) -> None:
        """The bus was down: fetch what each room logged meanwhile, so viewers who stayed connected miss nothing."""
        for room in rooms:
            task = asyncio.create_task(self._catch_up(room), name=f"live-catch-up-{room}")
            self._catching_up.add(task)
            task.add_done_callback(self._catching_up.discard)

    async def _catch_up(self, room: int) -> None:
        since = self._bus_seq.get(room)
        if since is None:
            return
        try:
            missed = await self.store.events_since(room, since)
        except Exception:
            log.exception("catching up room %d after a bus outage failed", room)
            return
        if missed is None:  # too old to replay: tell viewers to take a fresh snapshot
            self._hand(room, Event("", ev.RESYNC, ev.resync(room)))
            return
        for event in missed:
            self._heard(room, event)


LIVE: Final = web.AppKey("live", LiveRooms)


def context(process_id: str | None = None) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's `LiveRooms` as a `cleanup_ctx` (after Redis, before the hub, media and services that use it).

    `process_id` names this process on the bus (its own events are skipped there): host, pid and a random part,
    so a restarted process with a reused pid is still another process."""
    process_id = process_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def live(app: web.Application) -> AsyncIterator[None]:
        rooms = app[LIVE] = LiveRooms(app[REDIS], process_id)
        task = asyncio.create_task(rooms.run(), name="live-bus")
        task.add_done_callback(_report_stop)
        yield
        await cancel_and_wait([task])  # bounded: a shutdown completes even if the loop swallowed its cancel

    return live


def _report_stop(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("the live rooms' bus stopped: rooms get no other process's events", exc_info=task.exception())
