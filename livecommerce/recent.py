"""A per-process cache of recent lookups that turns a burst of identical misses into one load, and keeps
serving through an outage of whatever it loads from.

A flash sale opens and thousands of taps arrive in the same millisecond, all needing the same room and offer.
A plain TTL cache lets every one of them miss together and query SQL (a stampede that measured 766 taps/s
through one hub). Here one load per key runs at a time and every caller waits for it; once a value ages
past `fresh_seconds` it is still served (up to `stale_seconds`) while a single refresh runs behind it.

When a refresh fails because the source is unreachable (the database is down), the last good value is kept
and served, without waiting, for up to `keep_seconds` after it was loaded; a refresh is retried in the
background at most once per `fresh_seconds`, and the failure is logged once per key per outage. A refusal
that is an answer (a `ClientError` that retrying cannot change, like `NotFound`) is never served from the
cache: it drops the old value and reaches the caller. Failures are never cached as values: the callers
waiting on that load get the error (or the kept value), and the next caller loads again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from livecommerce.errors import ClientError

__all__ = ["RecentCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)

_KEEP_SECONDS = 300.0  # a value older than this is too old to sell from, outage or not


class RecentCache(Generic[K, V]):
    """Values by key, loaded at most once at a time per key; `drop` forgets a key after a known change."""

    def __init__(
        self,
        fresh_seconds: float,
        stale_seconds: float,
        size: int = 10_000,
        *,
        keep_seconds: float | None = None,
        name: str = "value",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        keep = max(stale_seconds, _KEEP_SECONDS) if keep_seconds is None else keep_seconds
        if not fresh_seconds <= stale_seconds <= keep:
            raise ValueError("need fresh_seconds <= stale_seconds <= keep_seconds")
        self._fresh = fresh_seconds
        self._stale = stale_seconds
        self._keep = keep
        self._size = size
        self._name = name
        self._clock = clock
        self._items: dict[K, tuple[float, V]] = {}  # key -> (loaded at, value)
        self._loading: dict[K, asyncio.Task[V]] = {}
        self._failing: dict[K, float] = {}  # key -> when its last refresh failed (its value is kept meanwhile)

    async def get(self, key: K, load: Callable[[], Awaitable[V]], *, fresh: bool = False) -> V:
        """The value for `key`: cached, or from the load already running, or from `load()`.

        `fresh` waits for a load that starts now or later (a caller that must see current data), and gets its
        error when it fails."""
        now = self._clock()
        item = self._items.get(key)
        if item is not None and not fresh:
            age = now - item[0]
            if age < self._fresh:
                return item[1]
            failed_at = self._failing.get(key)
            if age < self._stale or (failed_at is not None and age < self._keep):
                retry = failed_at is None or now - failed_at >= self._fresh
                if key not in self._loading and retry:
                    self._start(key, load).add_done_callback(_quiet)
                return item[1]
        task = self._loading.get(key) if not fresh else None
        if task is None:
            task = self._start(key, load)
        try:
            return await asyncio.shield(task)
        except Exception:
            kept = None if fresh else self._kept(key)
            if kept is None:
                raise
            return kept[1]

    def drop(self, key: K) -> None:
        """Forget `key` (a load already running may still store what it read)."""
        self._items.pop(key, None)
        self._failing.pop(key, None)

    def clear(self) -> None:
        """Forget every key (a change that may touch any of them, e.g. a commission rate)."""
        self._items.clear()
        self._failing.clear()

    def _kept(self, key: K) -> tuple[float, V] | None:
        """The value kept through a failed refresh, while it is young enough to serve."""
        item = self._items.get(key)
        if item is None or key not in self._failing or self._clock() - item[0] >= self._keep:
            return None
        return item

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        async def run() -> V:
            try:
                value = await load()
            except Exception as exc:
                self._failed(key, exc)
                raise
            finally:
                if self._loading.get(key) is task:
                    del self._loading[key]
            if len(self._items) >= self._size and key not in self._items:
                self._items.clear()
                self._failing.clear()
            self._items[key] = (self._clock(), value)
            if self._failing.pop(key, None) is not None:
                log.info("%s %r loads again; serving current values", self._name, key)
            return value

        task = asyncio.ensure_future(run())
        self._loading[key] = task
        return task

    def _failed(self, key: K, exc: Exception) -> None:
        """Keep the last good value through an outage; an answer (not found, forbidden) replaces it."""
        item = self._items.get(key)
        now = self._clock()
        if (isinstance(exc, ClientError) and not exc.retryable) or item is None or now - item[0] >= self._keep:
            self._items.pop(key, None)
            self._failing.pop(key, None)
            return
        if key not in self._failing:
            log.warning(
                "refreshing %s %r failed (%s: %s); serving the value from %.0f s ago for up to %.0f s more",
                self._name, key, type(exc).__name__, exc, now - item[0], self._keep - (now - item[0]),
            )  # fmt: skip
        self._failing[key] = now


def _quiet(task: asyncio.Task[object]) -> None:
    """A background refresh's error is logged by the cache (once per outage); retrieve it here."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.debug("background refresh failed: %s", error)
