"""A sale survives `FUNCTION FLUSH`/`SCRIPT FLUSH` and Redis restarts mid-burst: nothing lost, nothing doubled.

A private redis-server with the append-only file fsynced on every write serves a burst of buyers, each tap with
its own idempotency key, retried with that same key while Redis does not answer. Meanwhile the pool functions
are flushed again and again, and Redis is stopped (SIGTERM, then SIGKILL) and started again on the same port
and directory. Every tap ends with an answer; the answers and the pool must then agree exactly.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecommerce.commerce.pools import (
    HoldState,
    Inventory,
    PoolConfig,
    PoolId,
    Refusal,
    Refused,
    Reserved,
    ReserveRequest,
    ReserveResult,
)
from tests.support.audit import audit_pool
from tests.support.redis_process import RedisProcess
from tests.support.waits import until

POOL = PoolId.sale(1)
STOCK = 5000  # more than the burst can take: buying must go on after each restart
CAP = 2
BUYERS = 1000  # fewer than the taps: many buyers reach the cap
TASKS = 300
BURST_SECONDS = 20.0  # the whole burst, restarts included, or the test fails


@dataclass
class Tap:
    """One tap on Buy, sent again with its key until Redis answers."""

    request: ReserveRequest
    result: ReserveResult | None = None
    failed_sends: list[str] = field(default_factory=list)  # what went wrong before the answer
    answered_at: float = 0.0


@dataclass
class Burst:
    """Buyers tapping until told to stop. A third of the taps are impatient the first time: they give up after a
    millisecond or two (redis-py then drops the connection), whether or not Redis already ran the call."""

    inventory: Inventory
    taps: list[Tap] = field(default_factory=list)
    answered: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Every loop also checks this clock: a buyer whose cancellation redis-py turned into an error it retries must
    # still stop by itself.
    deadline: float = field(default_factory=lambda: time.monotonic() + BURST_SECONDS)
    connection_errors: int = 0
    closed_transport_errors: int = 0  # uvloop's RuntimeError when Redis dies during redis-py's handshake
    missing_function_errors: int = 0  # flushed again between the Inventory's re-load and its second call

    async def buyer(self, task: int) -> None:
        rng = random.Random(task)
        while not self.done.is_set() and time.monotonic() < self.deadline:
            request = ReserveRequest(
                rng.randint(1, BUYERS), f"t{task}-{len(self.taps)}", rng.choice((1, 1, 2)), room_id=1
            )
            tap = Tap(request)
            self.taps.append(tap)
            patience = rng.uniform(0.0005, 0.002) if rng.random() < 0.3 else None
            while tap.result is None:
                assert time.monotonic() < self.deadline, f"{request} had no answer by the deadline"
                try:
                    async with asyncio.timeout(patience):
                        results, _ = await self.inventory.reserve(POOL, [request])
                    tap.result = results[0]
                except TimeoutError:
                    tap.failed_sends.append("gave up")
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    tap.failed_sends.append(type(exc).__name__)
                    self.connection_errors += 1
                except ResponseError as exc:
                    if "function not found" not in str(exc).lower():
                        raise
                    tap.failed_sends.append("function not found")
                    self.missing_function_errors += 1
                except RuntimeError as exc:
                    if "handler is closed" not in str(exc):
                        raise
                    tap.failed_sends.append("transport closed")
                    self.closed_transport_errors += 1
                patience = None
                if tap.result is None:
                    await asyncio.sleep(rng.uniform(0.002, 0.02))
            tap.answered_at = time.monotonic()
            self.answered += 1
            await asyncio.sleep(rng.uniform(0.05, 0.25))  # about 2,000 taps a second from 300 buyers

    async def more(self, taps: int) -> None:
        """Wait until `taps` more taps have been answered."""
        target = self.answered + taps

        async def reached() -> bool:
            return self.answered >= target

        await until(reached, within=BURST_SECONDS, what=f"{taps} more answers")

    async def failing(self) -> None:
        """Wait until a buyer has found Redis gone (redis-py's own re-sends gave up)."""
        seen = self.connection_errors

        async def failed() -> bool:
            return self.connection_errors > seen

        await until(failed, within=BURST_SECONDS, what="a buyer meeting the stopped Redis")


async def flush_functions(url: str, start: asyncio.Event, stop: asyncio.Event, deadline: float) -> int:
    """From `start` to `stop`, FUNCTION FLUSH and SCRIPT FLUSH every few milliseconds (Redis may be down)."""
    await start.wait()
    flushes = 0
    client = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(ExponentialBackoff(), 0))
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                await client.function_flush()
                await client.script_flush()
                flushes += 1
            except (RedisConnectionError, RedisTimeoutError):
                pass
            await asyncio.sleep(0.003)
    finally:
        await client.aclose()
    return flushes


@pytest.mark.durable_redis  # append-only with an fsync per write: a restart loses nothing
async def test_buying_survives_function_flushes_and_redis_restarts(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="livecommerce.commerce.pools")
    redis = Redis.from_url(
        private_redis.url,
        socket_timeout=2,
        socket_connect_timeout=1,
        # redis-py re-sends a call whose connection broke, Redis may have run it already: the key makes it safe.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 2),
        max_connections=TASKS + 20,
    )
    try:
        inventory = Inventory(redis)
        await inventory.load_library()
        seconds, _ = await redis.time()
        now = int(seconds) * 1000
        config = PoolConfig(
            version=1, product_id=7, brand_id=3, sale_id=1, price_minor=1999, currency="USD", quantity=STOCK,
            per_buyer_limit=CAP, starts_at_ms=now - 1000, ends_at_ms=now + 3_600_000, hold_ms=3_600_000,
        )  # fmt: skip
        assert await inventory.load(POOL, config) == ("loaded", 1, True)

        burst = Burst(inventory)
        start_flushing, stop_flushing = asyncio.Event(), asyncio.Event()
        restarted_at = 0.0
        began = time.monotonic()
        timeline: list[str] = []

        def mark(what: str) -> None:
            timeline.append(f"{time.monotonic() - began:.2f}s {burst.answered} answered: {what}")

        async def restart(how: signal.Signals) -> None:
            await asyncio.to_thread(private_redis.stop, how)
            await burst.failing()
            await asyncio.to_thread(private_redis.start)

        async def chaos() -> None:
            nonlocal restarted_at
            try:
                await burst.more(200)
                mark("flushing starts")
                start_flushing.set()
                await burst.more(200)
                mark("SIGTERM")
                await restart(signal.SIGTERM)  # an operator's restart
                mark("restarted")
                await burst.more(300)
                mark("SIGKILL")
                await restart(signal.SIGKILL)  # a crash
                restarted_at = time.monotonic()
                mark("restarted")
                await burst.more(300)
                stop_flushing.set()
                mark("flushing stops")
                await burst.more(100)
            finally:
                start_flushing.set()
                stop_flushing.set()
                burst.done.set()

        async with asyncio.timeout(BURST_SECONDS + 5), asyncio.TaskGroup() as group:  # a backstop
            group.create_task(chaos())
            flushing = group.create_task(
                flush_functions(private_redis.url, start_flushing, stop_flushing, burst.deadline)
            )
            for task in range(TASKS):
                group.create_task(burst.buyer(task))
        flushes = flushing.result()
        mark("all answered")
        logging.getLogger(__name__).info("timeline: %s", "; ".join(timeline))

        # What the buyers were told.
        assert private_redis.starts == 3
        reloads = [r for r in caplog.records if "missing from Redis" in r.getMessage()]
        assert reloads, "the pool functions were never found missing: the flushes did not bite"
        wins = [(tap, tap.result) for tap in burst.taps if isinstance(tap.result, Reserved)]
        won = {result.hold.id: tap for tap, result in wins}
        assert len(won) == len(wins), "two taps got one hold"
        assert flushes >= 3  # each flush costs Redis a re-load per caller in flight: they are not many
        replayed = [tap for tap, result in wins if result.replayed]  # every key is sent by one tap only
        assert replayed, "no reply was lost after Redis ran the call (the impatient taps should see to that)"
        assert any(tap.answered_at > restarted_at and not result.replayed for tap, result in wins), (
            "nothing was bought after Redis came back"
        )

        # What Redis kept: exactly those holds, each once, in stock, counters and outbox.
        audit = await audit_pool(redis, POOL, limit=CAP)
        assert {hold.id for hold in audit.holds} == set(won), "holds without a buyer, or buyers without a hold"
        for hold in audit.holds:
            request = won[hold.id].request
            assert (hold.buyer_id, hold.key, hold.quantity, hold.state) == (
                request.buyer_id, request.key, request.quantity, HoldState.HELD,
            )  # fmt: skip
        assert max(Counter((h.buyer_id, h.key) for h in audit.holds).values()) == 1
        sold = sum(hold.quantity for hold in audit.holds)
        assert (audit.stock.held, audit.stock.available, audit.stock.total) == (sold, STOCK - sold, STOCK)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(POOL.outbox)  # type: ignore[assignment]
        assert {fields[b"type"] for _, fields in entries} == {b"reserved"}
        outboxed = [orjson.loads(fields[b"data"])["id"] for _, fields in entries]
        assert sorted(outboxed) == sorted(won), "the outbox should hold one `reserved` per hold"

        # Every tap sent again with its key: the same hold for a winner, still nothing for the others.
        for start in range(0, len(burst.taps), 500):
            chunk = burst.taps[start : start + 500]
            results, _ = await inventory.reserve(POOL, [tap.request for tap in chunk])
            for tap, again in zip(chunk, results, strict=True):
                if isinstance(tap.result, Reserved):
                    assert isinstance(again, Reserved), (tap, again)
                    assert (again.replayed, again.hold.id) == (True, tap.result.hold.id)
                else:
                    assert isinstance(again, Refused), (tap, again)
        assert await redis.xlen(POOL.outbox) == len(won)

        # A refusal was deserved: stock never ran out, so only a buyer at the cap was turned away.
        for tap in burst.taps:
            if isinstance(tap.result, Refused):
                assert tap.result.refusal is Refusal.LIMIT, tap
                assert audit.per_buyer.get(tap.request.buyer_id, 0) + tap.request.quantity > CAP, tap

        lost = [tap for tap in burst.taps if tap.failed_sends]
        logging.getLogger(__name__).info(
            "%d taps, %d holds (%d units), %d taps lost a reply (%d connection errors, %d closed transports), "
            "%d holds were answered by a replay, %d flushes, %d re-loads, %d missing-function errors surfaced",
            len(burst.taps), len(won), sold, len(lost), burst.connection_errors, burst.closed_transport_errors,
            len(replayed), flushes, len(reloads), burst.missing_function_errors,
        )  # fmt: skip
    finally:
        await redis.aclose()
