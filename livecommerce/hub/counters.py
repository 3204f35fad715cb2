"""Likes and viewer counts: never events, folded into Redis a few times a second and broadcast as totals.

A `like` only adds to this process's pending count; every `interval` the loop folds each room's pending
likes and this process's viewer count into Redis (`RoomStore.counters`, one script per room) and hands the
room's totals across every process to the fan-out, which sends `counters` only when they changed.
"""

from __future__ import annotations

import asyncio
import logging

from livecommerce.hub.fanout import Fanout
from livecommerce.live.store import RoomStore

__all__ = ["Counters"]

log = logging.getLogger(__name__)


class Counters:
    def __init__(self, fanout: Fanout, store: RoomStore, *, interval: float = 0.25) -> None:
        self._fanout = fanout
        self._store = store
        self._interval = interval
        self._pending_likes: dict[int, int] = {}
        self._counted_rooms: set[int] = set()  # rooms with local viewers at the last fold (0 withdraws them)

    def like(self, room: int, count: int) -> None:
        self._pending_likes[room] = self._pending_likes.get(room, 0) + count

    async def run(self) -> None:
        """Fold likes and local viewer counts into Redis and broadcast the totals, until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self._fold()

    async def _fold(self) -> None:
        counts = self._fanout.local_counts()
        rooms = set(counts) | set(self._pending_likes) | self._counted_rooms
        self._counted_rooms = set(counts)
        for room in rooms:
            likes = self._pending_likes.pop(room, 0)
            try:
                total_likes, viewers = await self._store.counters(room, likes, counts.get(room, 0))
            except Exception:
                self._pending_likes[room] = self._pending_likes.get(room, 0) + likes  # keep them for later
                log.exception("updating the counters of room %d failed; retrying", room)
                continue
            if room in counts:
                self._fanout.set_counters(room, viewers, total_likes)
