"""A per-process cache of recent lookups that turns a burst of identical misses into one load.

A flash sale opens and thousands of taps arrive in the same millisecond, all needing the same room and offer.
A plain TTL cache lets every one of them miss together and query SQL (a stampede that measured 766 taps/s
through one hub). Here one load per key runs at a time and every caller waits for it; once a value ages
past `fresh_seconds` it is still served (up to `stale_seconds`) while a single refresh runs behind it.
Failures are never cached: the callers waiting on that load get the error, and the next caller loads again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["RecentCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)


class RecentCache(Generic[K, V]):
    """Values by key, loaded at most once at a time per key; `drop` forgets a key after a known change."""

    def __init__(self, fresh_seconds: float, stale_seconds: float, size: int = 10_000) -> None:
        if stale_seconds < fresh_seconds:
            raise ValueError("stale_seconds must be at least fresh_seconds")
        self._fresh = fresh_seconds
        self._stale = stale_seconds
        self._size = size
        self._items: dict[K, tuple[float, V]] = {}  # key -> (loaded at, value)
        self._loading: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        """The value for `key`: cached, or from the load already running, or from `load()`.

        `fresh` waits for a load that starts now or later (a caller that must see current data)."""
        item = self._items.get(key)
        if item is not None and not fresh:
            age = time.monotonic() - item[0]
            if age < self._fresh:
                return item[1]
            if age < self._stale:
                if key not in self._loading:
                    self._start(key, load).add_done_callback(_quiet)
                return item[1]
        task = self._loading.get(key) if not fresh else None
        if task is None:
            task = self._start(key, load)
        return await asyncio.shield(task)

    def drop(self, key: K) -> None:
        """Forget `key` (a load already running may still store what it read)."""
        self._items.pop(key, None)

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        async def run() -> V:
            try:
                value = await load()
            except BaseException:
                self._items.pop(key, None)  # a stale value must not outlive a failed refresh
                raise
            finally:
                if self._loading.get(key) is task:
                    del self._loading[key]
            if len(self._items) >= self._size and key not in self._items:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)
            return value

        task = asyncio.ensure_future(run())
        self._loading[key] = task
        return task


def _quiet(task: asyncio.Task[object]) -> None:
    """A background refresh's error reaches the next caller through a new load; log it here only."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.debug("background refresh failed: %s", error)
