"""Delivery of room events to this process's own viewers: encode once per room per tick, write to each viewer.

python-socketio's room emit costs a task and a queue hop per recipient (~100-190 µs each, docs/benchmarks.md). Here
a tick (50 ms) collects what each room produced, encodes it once into websocket frames (`frames`), and does
one synchronous `transport.write` of those bytes per viewer — no task, no await per recipient. A write costs
about the same for one frame or twenty-five, so batching a tick into one write is the lever.

A room's output for a tick, in this order:

1. ordered events (`add_event`), in arrival order — never coalesced or dropped;
2. the latest state per key (`set_state`) — under fast changes only the newest is sent;
3. one `chat` event: `{"room_id", "messages": [...], "skipped": n}` — at most `chat_per_tick` messages, a
   uniform sample in arrival order when more came; `skipped` counts every message this viewer did not get;
4. `counters`: `{"room_id", "viewers", "likes"}` — at most every `counter_interval`, only when changed.

Slow viewers cost others nothing: writes never wait. "Unsent" is the viewer's whole output budget: the
transport's write buffer plus what engineio holds for it (acknowledgements, `transport.OutputQueue`). Above
`soft_limit` bytes unsent, a viewer's chat is withheld (its `skipped` grows and is reported in the next chat
it gets); above `hard_limit` (the same budget engineio's queue enforces) it is disconnected and
python-socketio's disconnect handling follows. Viewers not (yet) on a websocket — long-
polling, or their first delivery after connecting — get the same encoded packets through engineio's own
queue, in order, with a bounded backlog; a websocket viewer moves to direct writes once that queue has
been written out (`transport.wait_flushed`), so it never sees events out of order.

Nothing is kept for rooms without local viewers, and a viewer who joins gets no past state from here: the
caller answers a join with a snapshot. Payloads are encoded when handed over, so a payload orjson cannot
encode raises to the caller, and later changes to a payload object are not seen.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
import socketio

from livecommerce.hub import transport as hub_transport
from livecommerce.hub.frames import frames, socketio_event, socketio_event_raw, websocket_text_frame
from livecommerce.live import events as ev

__all__ = ["Fanout", "FanoutStats"]

log = logging.getLogger(__name__)

_SLOW_PATH_LIMIT = 64  # packets a queued-path viewer may have waiting before its chat is withheld
_SLOW_PATH_DROP = 1024  # ... before it is disconnected
_FLUSH_TIMEOUT = 10.0  # seconds to wait for engineio's queue to be written before moving a viewer to direct writes


@dataclass
class FanoutStats:
    """Running totals. Deliveries per CPU-second: `deliveries` over the process CPU time spent meanwhile."""

    deliveries: int = 0  # events handed to viewers: one event to one viewer counts one
    writes: int = 0  # direct `transport.write` calls
    slow_deliveries: int = 0  # of `deliveries`, those sent through engineio's queue (polling, or not yet direct)
    dropped_viewers: int = 0  # disconnected for falling too far behind
    skipped_chat: int = 0  # chat messages left out of a room's batch by sampling (once per room, not per viewer)
    withheld_chat: int = 0  # chat messages withheld from individual slow viewers
    ticks: int = 0


class _Viewer:
    """One local connection. `transport` is set once direct writes are safe; until then the queued path."""

    __slots__ = ("backlog", "dropped", "queue", "rooms", "sid", "skipped", "task", "transport")

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.rooms: set[int] = set()
        self.transport: asyncio.Transport | None = None
        self.queue: hub_transport.OutputQueue | None = None  # engineio's queue for it, counted with `transport`
        self.skipped: dict[int, int] | None = None  # room -> chat messages withheld, told in its next chat
        self.backlog: deque[bytes] | None = None  # packets for the queued path
        self.task: asyncio.Task[None] | None = None  # drains `backlog`
        self.dropped = False  # disconnected or gone: skip until `leave_all`


class _Room:
    """A room's local viewers and what it produced since the last tick."""

    __slots__ = ("chat", "counters", "counters_due", "events", "flush_due", "sent_counters", "state", "viewers")

    def __init__(self) -> None:
        self.viewers: dict[str, _Viewer] = {}
        self.events: list[bytes] = []
        self.state: dict[str, bytes] = {}
        self.chat: list[bytes] = []  # each message's JSON
        self.counters: tuple[int, int] | None = None
        self.sent_counters: tuple[int, int] | None = None
        self.counters_due = 0.0
        self.flush_due = 0.0  # large rooms: not flushed again before this


class Fanout:
    """Delivers room events to this process's viewers; `run` must be running for anything to be sent."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        *,
        tick: float = 0.05,
        chat_per_tick: int = 25,
        counter_interval: float = 0.25,
        soft_limit: int = 256 * 1024,
        hard_limit: int = 1024 * 1024,
        viewers_per_tick: int = 2_000,
        max_room_interval: float = 0.25,
    ) -> None:
        if tick <= 0 or chat_per_tick < 1 or counter_interval < 0 or not 0 < soft_limit <= hard_limit:
            raise ValueError("need tick > 0, chat_per_tick >= 1, counter_interval >= 0, 0 < soft_limit <= hard_limit")
        if viewers_per_tick < 1 or max_room_interval < tick:
            raise ValueError("need viewers_per_tick >= 1 and max_room_interval >= tick")
        self.stats = FanoutStats()
        self._sio = sio
        self._tick = tick
        self._chat_per_tick = chat_per_tick
        self._counter_interval = counter_interval
        self._soft_limit = soft_limit
        self._hard_limit = hard_limit
        # A write per viewer costs the same whatever it carries: a room with many local viewers is flushed less
        # often (one more tick per `viewers_per_tick` viewers, at most every `max_room_interval`), so stock,
        # counters and chat of a hot room share one write instead of each costing one.
        self._viewers_per_tick = viewers_per_tick
        self._max_room_interval = max_room_interval
        self._rooms: dict[int, _Room] = {}
        self._viewers: dict[str, _Viewer] = {}
        self._dirty: set[int] = set()  # rooms with something to send
        self._tasks: set[asyncio.Task[Any]] = set()
        self._random = random.Random()  # noqa: S311 - sampling chat, not security

    # --- membership -------------------------------------------------------------------------------------------

    def join(self, room: int, sid: str) -> None:
        """A local viewer enters a room (a viewer may be in several)."""
        viewer = self._viewer(sid)
        viewer.rooms.add(room)
        self._rooms.setdefault(room, _Room()).viewers[sid] = viewer

    def leave(self, room: int, sid: str) -> None:
        viewer = self._viewers.get(sid)
        if viewer is not None:
            viewer.rooms.discard(room)
            if viewer.skipped:
                viewer.skipped.pop(room, None)
                viewer.skipped = viewer.skipped or None  # owing nothing puts it back on the common path
        state = self._rooms.get(room)
        if state is not None:
            state.viewers.pop(sid, None)
            if not state.viewers:
                del self._rooms[room]

    def leave_all(self, sid: str) -> list[int]:
        """The viewer disconnected: forget it everywhere. Returns the rooms it left."""
        viewer = self._viewers.pop(sid, None)
        if viewer is None:
            return []
        if viewer.task is not None:
            viewer.task.cancel()
        rooms = sorted(viewer.rooms)
        for room in rooms:
            self.leave(room, sid)
        return rooms

    def local_counts(self) -> dict[int, int]:
        """Room -> local viewers, for the viewer count other code aggregates across processes."""
        return {room: len(state.viewers) for room, state in self._rooms.items()}

    def rooms(self) -> set[int]:
        """Rooms with at least one local viewer."""
        return set(self._rooms)

    def _viewer(self, sid: str) -> _Viewer:
        viewer = self._viewers.get(sid)
        if viewer is None:
            viewer = self._viewers[sid] = _Viewer(sid)
        return viewer

    # --- input ------------------------------------------------------------------------------------------------

    def set_state(self, room: int, key: str, event: str, payload: dict[str, Any]) -> None:
        """Superseded state (`key` such as "pinned"): the latest per (room, key) in a tick is sent."""
        state = self._rooms.get(room)
        if state is not None:
            state.state.pop(key, None)  # the newest goes last, after earlier keys of this tick
            state.state[key] = socketio_event(event, payload)
            self._dirty.add(room)

    def add_event(self, room: int, event: str, payload: dict[str, Any]) -> None:
        """An ordered event (e.g. "chat_deleted", "room_status"): never coalesced or dropped."""
        state = self._rooms.get(room)
        if state is not None:
            state.events.append(socketio_event(event, payload))
            self._dirty.add(room)

    def add_chat(self, room: int, message: dict[str, Any]) -> None:
        """A chat message, sent in the room's next `chat` batch (or counted in its `skipped`)."""
        state = self._rooms.get(room)
        if state is not None:
            state.chat.append(orjson.dumps(message))
            self._dirty.add(room)

    def set_counters(self, room: int, viewers: int, likes: int) -> None:
        """The room's current totals; broadcast at most every `counter_interval`, only when changed."""
        state = self._rooms.get(room)
        if state is not None:
            state.counters = (viewers, likes)
            self._dirty.add(room)

    # --- the tick ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Flush every `tick` seconds until cancelled; a late tick is not made up for with a burst."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        try:
            while True:
                due += self._tick
                delay = due - loop.time()
                if delay < 0:
                    due, delay = loop.time(), 0.0
                await asyncio.sleep(delay)
                self._flush(loop.time())
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _flush(self, now: float) -> None:
        self.stats.ticks += 1
        dirty, self._dirty = self._dirty, set()
        for room_id in dirty:
            room = self._rooms.get(room_id)
            if room is None:
                continue
            if len(room.viewers) > self._viewers_per_tick:
                if now < room.flush_due:
                    self._dirty.add(room_id)  # a large room: its next write carries this too
                    continue
                ticks = -(-len(room.viewers) // self._viewers_per_tick)
                room.flush_due = now + min(self._max_room_interval, ticks * self._tick) - self._tick / 2
            try:
                self._flush_room(room_id, room, now)
            except Exception:  # a bug in one room must not stop delivery to every other room
                log.exception("fan-out of room %d failed; its output for this tick is lost", room_id)

    def _flush_room(self, room_id: int, room: _Room, now: float) -> None:
        head = room.events
        if room.state:
            head += room.state.values()
        room.events, room.state = [], {}
        chat, room.chat = room.chat, []
        sample, skipped = chat, 0
        if len(chat) > self._chat_per_tick:
            sample = [chat[i] for i in sorted(self._random.sample(range(len(chat)), self._chat_per_tick))]
            skipped = len(chat) - len(sample)
            self.stats.skipped_chat += skipped
        messages = b",".join(sample)
        tail: list[bytes] = []
        if room.counters is not None and room.counters != room.sent_counters:
            if now >= room.counters_due:
                viewers, likes = room.sent_counters = room.counters
                tail.append(socketio_event(ev.COUNTERS, ev.counters(room_id, viewers, likes)))
                room.counters_due = now + self._counter_interval
            else:
                self._dirty.add(room_id)  # changed, but sent too recently: a later tick sends it
        if not head and not chat and not tail:
            return
        head_bytes, tail_bytes = frames(head), frames(tail)
        chat_packet = _chat_packet(room_id, messages, skipped) if chat else b""
        buf = head_bytes + websocket_text_frame(chat_packet) + tail_bytes if chat else head_bytes + tail_bytes
        count = len(head) + len(tail) + (1 if chat else 0)
        soft_limit = self._soft_limit
        written = 0
        for viewer in room.viewers.values():
            transport = viewer.transport
            if transport is None:
                if not viewer.dropped:
                    self._deliver_queued(viewer, room_id, head, chat, messages, skipped, tail)
                continue
            if transport.is_closing():
                continue
            buffered = transport.get_write_buffer_size()
            if viewer.queue is not None:
                buffered += viewer.queue.bytes
            if viewer.skipped is None and buffered <= soft_limit:
                transport.write(buf)
                written += 1
                continue
            # Rare: behind, or owed a `skipped` count; its chat bytes differ from the room's.
            if buffered > self._hard_limit:
                self._drop(viewer, transport, buffered)
                continue
            out, sent = buf, count
            if chat and buffered > soft_limit:
                self._withhold(viewer, room_id, len(chat))
                out, sent = head_bytes + tail_bytes, count - 1
            elif chat and (owed := self._owed(viewer, room_id)):
                out = head_bytes + websocket_text_frame(_chat_packet(room_id, messages, skipped + owed)) + tail_bytes
            if out:
                transport.write(out)
                self.stats.writes += 1
                self.stats.deliveries += sent
        self.stats.writes += written
        self.stats.deliveries += written * count

    # --- per viewer, off the common path ----------------------------------------------------------------------

    def _deliver_queued(
        self,
        viewer: _Viewer,
        room_id: int,
        head: list[bytes],
        chat: list[bytes],
        messages: bytes,
        skipped: int,
        tail: list[bytes],
    ) -> None:
        """A room's tick for a viewer not on direct writes: the same packets, through engineio's queue."""
        packets = list(head)
        if chat:
            waiting = (len(viewer.backlog) if viewer.backlog else 0) + hub_transport.queued_packets(
                self._sio, viewer.sid
            )
            if waiting > _SLOW_PATH_LIMIT:
                self._withhold(viewer, room_id, len(chat))
            else:
                packets.append(_chat_packet(room_id, messages, skipped + self._owed(viewer, room_id)))
        packets += tail
        self._queue(viewer, packets)

    def _queue(self, viewer: _Viewer, packets: list[bytes]) -> None:
        if viewer.backlog is None:
            viewer.backlog = deque()
        if len(viewer.backlog) + hub_transport.queued_packets(self._sio, viewer.sid) > _SLOW_PATH_DROP:
            log.info("disconnecting viewer %s: more than %d packets queued", viewer.sid, _SLOW_PATH_DROP)
            viewer.dropped = True
            viewer.backlog.clear()
            self.stats.dropped_viewers += 1
            self._spawn(self._sio.disconnect(viewer.sid))
            return
        viewer.backlog.extend(packets)
        self.stats.deliveries += len(packets)
        self.stats.slow_deliveries += len(packets)
        if viewer.task is None:
            viewer.task = self._spawn(self._drain(viewer))

    async def _drain(self, viewer: _Viewer) -> None:
        """Hand the backlog to engineio in order; on a websocket, switch to direct writes once it is written."""
        backlog = viewer.backlog
        assert backlog is not None
        try:
            while True:
                while backlog:
                    if not await hub_transport.send_packet(self._sio, viewer.sid, backlog.popleft()):
                        backlog.clear()
                        viewer.dropped = True  # gone; its disconnect handler will call leave_all
                        return
                ws = hub_transport.websocket_transport(self._sio, viewer.sid)
                flushed = False
                if ws is not None:
                    try:
                        async with asyncio.timeout(_FLUSH_TIMEOUT):
                            flushed = await hub_transport.wait_flushed(self._sio, viewer.sid)
                    except TimeoutError:
                        pass  # its writer is stuck: stay on the queued path
                if not backlog:  # else more came meanwhile: queue it, then try again
                    if flushed:
                        viewer.transport = ws
                        viewer.queue = hub_transport.output_queue(self._sio, viewer.sid)
                    return
        finally:
            viewer.task = None

    def _withhold(self, viewer: _Viewer, room_id: int, messages: int) -> None:
        if viewer.skipped is None:
            viewer.skipped = {}
        viewer.skipped[room_id] = viewer.skipped.get(room_id, 0) + messages
        self.stats.withheld_chat += messages

    def _owed(self, viewer: _Viewer, room_id: int) -> int:
        """Chat messages withheld from this viewer in this room, now to be told; clears the debt."""
        if not viewer.skipped:
            return 0
        owed = viewer.skipped.pop(room_id, 0)
        if not viewer.skipped:
            viewer.skipped = None
        return owed

    def _drop(self, viewer: _Viewer, transport: asyncio.Transport, buffered: int) -> None:
        """Disconnect a viewer past `hard_limit`: python-socketio sees the connection close and cleans up."""
        log.info("disconnecting viewer %s: %d bytes unsent (limit %d)", viewer.sid, buffered, self._hard_limit)
        viewer.dropped = True
        self.stats.dropped_viewers += 1
        transport.abort()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _chat_packet(room_id: int, messages: bytes, skipped: int) -> bytes:
    """The `chat` event from messages already encoded as JSON and joined with commas."""
    return socketio_event_raw(ev.CHAT, ev.chat_batch_json(room_id, messages, skipped))
