"""Groups concurrent reservations into few Redis round trips.

redis-py costs ~180 µs of this process's CPU per call (docs/benchmarks.md): one call per tap would make Python, not
Redis, the limit of a burst. So taps wait here while a call is in flight and go together in the next: one
`pool_reserve` call per pool (up to `MAX_BATCH` taps), every pool's call in one pipeline. An idle batcher
sends a lone tap at once, so a quiet room pays no added latency.

Once a pool answers sold out, further taps on it are refused here for `sold_out_for` seconds without a round
trip (holds that expire or are cancelled put units back, so the flag is short-lived) — but only taps whose
idempotency key was made here for them. A tap with the buyer's own key may be a retry of one another process
(or this one before a restart) reserved: it must reach Redis to get its hold back, so it goes in the next
batched call like any tap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from livecommerce.commerce.pools import (
    MAX_BATCH,
    Inventory,
    PoolId,
    Refusal,
    Refused,
    ReserveRequest,
    ReserveResult,
    Stock,
)

__all__ = ["ReservationBatcher"]

log = logging.getLogger(__name__)

_SOLD_OUT = Refused(Refusal.SOLD_OUT)


@dataclass(slots=True)
class _Tap:
    request: ReserveRequest
    future: asyncio.Future[ReserveResult]


class ReservationBatcher:
    """One per process. `reserve` is safe to call from any number of tasks; `on_stock` hears every pool's
    stock as Redis reported it after a call (the hub pushes sold-out to viewers from it at once)."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        max_in_flight: int = 2,
        sold_out_for: float = 1.0,
        on_stock: Callable[[PoolId, Stock], None] | None = None,
    ) -> None:
        self._inventory = inventory
        self._max_in_flight = max_in_flight
        self._sold_out_for = sold_out_for
        self.on_stock = on_stock
        self._queue: dict[PoolId, list[_Tap]] = {}
        self._in_flight = 0
        self._sold_out: dict[PoolId, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # round trips made (for benchmarks and tests)
        self.refused_locally = 0

    async def reserve(self, pool: PoolId, request: ReserveRequest, *, new_key: bool = False) -> ReserveResult:
        """The pool's answer to one tap (a Redis error propagates: retrying with the same key is safe).

        `new_key`: the request's key was made for this tap (the buyer sent none), so it cannot name an earlier
        hold and a recent sold-out answer may refuse it here."""
        until = self._sold_out.get(pool)
        if until is not None:
            if time.monotonic() >= until:
                del self._sold_out[pool]
            elif new_key:
                self.refused_locally += 1
                return _SOLD_OUT
        future: asyncio.Future[ReserveResult] = asyncio.get_running_loop().create_future()
        self._queue.setdefault(pool, []).append(_Tap(request, future))
        self._send()
        return await future

    def stock_changed(self, pool: PoolId, stock: Stock) -> None:
        """Stock seen elsewhere (e.g. the hub's stock poll): units came back, so lift the sold-out flag."""
        if not stock.sold_out:
            self._sold_out.pop(pool, None)

    def _send(self) -> None:
        while self._queue and self._in_flight < self._max_in_flight:
            groups: dict[PoolId, list[_Tap]] = {}
            for pool in list(self._queue):
                taps = self._queue[pool]
                groups[pool], rest = taps[:MAX_BATCH], taps[MAX_BATCH:]
                if rest:
                    self._queue[pool] = rest
                else:
                    del self._queue[pool]
            self._in_flight += 1
            task = asyncio.create_task(self._call(groups), name="reservation-batch")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, groups: dict[PoolId, list[_Tap]]) -> None:
        try:
            self.calls += 1
            try:
                outcomes = await self._inventory.reserve_groups(
                    {pool: [tap.request for tap in taps] for pool, taps in groups.items()}
                )
            except Exception as exc:  # noqa: BLE001 - the whole round trip failed: every tap hears why
                outcomes = dict.fromkeys(groups, exc)
            for pool, taps in groups.items():
                outcome = outcomes[pool]
                if isinstance(outcome, BaseException):
                    for tap in taps:
                        if not tap.future.done():
                            tap.future.set_exception(outcome)
                    continue
                results, stock = outcome
                for tap, result in zip(taps, results, strict=True):
                    if not tap.future.done():
                        tap.future.set_result(result)
                if stock.sold_out:
                    self._sold_out[pool] = time.monotonic() + self._sold_out_for
                if self.on_stock is not None:
                    try:
                        self.on_stock(pool, stock)
                    except Exception:
                        log.exception("the stock listener failed")
        finally:
            self._in_flight -= 1
            self._send()

    async def close(self) -> None:
        """Wait for calls in flight (their taps get answers)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
