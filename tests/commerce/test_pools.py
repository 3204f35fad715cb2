"""The pool functions (`lua/pools.lua`) against a real Redis: every rule enforced inside Redis."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livecommerce.commerce.batcher import ReservationBatcher
from livecommerce.commerce.pools import (
    ADJUST_ONCE_MS,
    Hold,
    HoldDiscount,
    HoldState,
    Inventory,
    PoolConfig,
    PoolId,
    Refusal,
    Refused,
    Reserved,
    ReserveRequest,
)
from livecommerce.commerce.product_stock import give_units
from livecommerce.commerce.terms import SaleTerms
from livecommerce.models import FeeBase
from tests.support.audit import audit_pool
from tests.support.shop import redis_ms
from tests.support.waits import until

POOL = PoolId.sale(1)


async def open_config(redis: Redis, **changes: object) -> PoolConfig:
    now = await redis_ms(redis)
    base = PoolConfig(
        version=1, product_id=7, brand_id=3, sale_id=1, price_minor=1999, currency="USD", quantity=10,
        per_buyer_limit=2, starts_at_ms=now - 1000, ends_at_ms=now + 3_600_000, hold_ms=300_000,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


async def past(redis: Redis, ms: int) -> bool:
    return await redis_ms(redis) >= ms


async def outbox_types(redis: Redis, pool: PoolId = POOL) -> list[bytes]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(pool.outbox)  # type: ignore[assignment]
    return [fields[b"type"] for _, fields in entries]


async def reserve_one(inventory: Inventory, request: ReserveRequest, pool: PoolId = POOL) -> Reserved | Refused:
    results, _ = await inventory.reserve(pool, [request])
    return results[0]


async def test_reserve_takes_stock_and_records_the_hold(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    result = await reserve_one(inventory, ReserveRequest(buyer_id=5, key="tap-1", quantity=2, room_id=9))
    assert isinstance(result, Reserved)
    assert not result.replayed
    hold = result.hold
    assert (hold.buyer_id, hold.quantity, hold.state, hold.room_id, hold.sale_id) == (5, 2, HoldState.HELD, 9, 1)
    assert hold.id.startswith("s1.")
    assert hold.total_minor == 3998
    assert hold.expires_at_ms - hold.created_at_ms == 300_000
    audit = await audit_pool(redis, POOL, limit=2)
    assert (audit.stock.available, audit.stock.held) == (8, 2)
    assert await outbox_types(redis) == [b"reserved"]


async def test_a_retry_returns_the_same_hold_and_a_reused_key_is_refused(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    first = await reserve_one(inventory, ReserveRequest(5, "k", 1))
    again = await reserve_one(inventory, ReserveRequest(5, "k", 1))
    assert isinstance(first, Reserved)
    assert isinstance(again, Reserved)
    assert again.replayed
    assert again.hold.id == first.hold.id
    reused = await reserve_one(inventory, ReserveRequest(5, "k", 2))
    assert reused == Refused(Refusal.KEY_REUSED, hold_id=first.hold.id)
    other_buyer = await reserve_one(inventory, ReserveRequest(6, "k", 1))  # keys are per buyer
    assert isinstance(other_buyer, Reserved)
    assert other_buyer.hold.id != first.hold.id
    assert (await audit_pool(redis, POOL)).stock.held == 2


async def test_a_hold_keeps_the_terms_it_was_made_with(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    terms = SaleTerms(creator_id=4, collaboration_id=12, commission_bps=1500, fee_rule_id=3, fee_bps=600,
                      fee_base=FeeBase.BUYER_PAID_PLUS_DISCOUNT)  # fmt: skip
    first = await reserve_one(inventory, ReserveRequest(5, "k", 1, room_id=9, terms=terms.encode()))
    assert isinstance(first, Reserved)
    assert first.hold.terms == terms
    assert (await inventory.hold(POOL, first.hold.id)) == first.hold
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(POOL.outbox)  # type: ignore[assignment]
    assert Hold.from_json(entries[-1][1][b"data"]).terms == terms, "the outbox carries the snapshot to SQL"
    # A retry under the same key is the same tap, whatever terms it sends (the rate may have changed since):
    # the hold comes back as it was made, never rewritten.
    changed = replace(terms, commission_bps=900, fee_rule_id=4)
    for retry in (changed.encode(), ""):
        again = await reserve_one(inventory, ReserveRequest(5, "k", 1, room_id=9, terms=retry))
        assert isinstance(again, Reserved)
        assert (again.replayed, again.hold.id, again.hold.terms) == (True, first.hold.id, terms)
    # No terms: nothing stored, read as the default (no creator, the built-in fee).
    plain = await reserve_one(inventory, ReserveRequest(6, "k", 1))
    assert isinstance(plain, Reserved)
    raw = await redis.hget(POOL.keys.holds, plain.hold.id)
    assert raw is not None
    assert b"terms" not in raw
    assert plain.hold.terms == SaleTerms.default()


async def test_window_is_checked_by_redis_time(redis: Redis, inventory: Inventory) -> None:
    now = await redis_ms(redis)
    early, late = PoolId.sale(2), PoolId.sale(3)
    await inventory.load(early, await open_config(redis, sale_id=2, starts_at_ms=now + 60_000))
    await inventory.load(late, await open_config(redis, sale_id=3, starts_at_ms=now - 60_000, ends_at_ms=now))
    assert await reserve_one(inventory, ReserveRequest(5, "a"), early) == Refused(
        Refusal.NOT_STARTED, starts_at_ms=now + 60_000
    )
    assert await reserve_one(inventory, ReserveRequest(5, "a"), late) == Refused(Refusal.ENDED)
    assert await reserve_one(inventory, ReserveRequest(5, "a"), PoolId.sale(4)) == Refused(Refusal.NOT_LOADED)


async def test_per_buyer_cap_counts_held_and_paid_units(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    assert await reserve_one(inventory, ReserveRequest(5, "a", 3)) == Refused(Refusal.OVER_LIMIT, limit=2)
    first = await reserve_one(inventory, ReserveRequest(5, "b", 1))
    assert isinstance(first, Reserved)
    await inventory.begin_payment(POOL, first.hold.id, 5, 60_000)
    await inventory.complete_payment(POOL, first.hold.id, "pay-1")
    assert isinstance(await reserve_one(inventory, ReserveRequest(5, "c", 1)), Reserved)
    assert await reserve_one(inventory, ReserveRequest(5, "d", 1)) == Refused(Refusal.LIMIT, limit=2, have=2)
    await audit_pool(redis, POOL, limit=2)


async def test_invite_list(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis, audience="list"), invitees=[5, 6])
    assert await reserve_one(inventory, ReserveRequest(7, "a")) == Refused(Refusal.NOT_INVITED)
    assert isinstance(await reserve_one(inventory, ReserveRequest(5, "a")), Reserved)


async def test_single_use_codes(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis, audience="codes"), codes=["GOLD-1", "GOLD-2"])
    assert await reserve_one(inventory, ReserveRequest(5, "a")) == Refused(Refusal.CODE_REQUIRED)
    assert await reserve_one(inventory, ReserveRequest(5, "b", code="NOPE")) == Refused(Refusal.CODE_INVALID)
    used = await reserve_one(inventory, ReserveRequest(5, "c", code="GOLD-1"))
    assert isinstance(used, Reserved)
    assert await reserve_one(inventory, ReserveRequest(6, "a", code="GOLD-1")) == Refused(Refusal.CODE_USED)
    assert await reserve_one(inventory, ReserveRequest(5, "d", code="GOLD-1")) == Refused(Refusal.CODE_USED)
    # A cancelled hold gives its code back.
    assert (await inventory.cancel(POOL, used.hold.id, 5)).status == "ok"
    assert isinstance(await reserve_one(inventory, ReserveRequest(6, "b", code="GOLD-1")), Reserved)


async def test_sold_out_and_not_enough(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis, quantity=3))
    results, stock = await inventory.reserve(
        POOL, [ReserveRequest(1, "a", 2), ReserveRequest(2, "a", 2), ReserveRequest(3, "a", 1), ReserveRequest(4, "a")]
    )
    assert isinstance(results[0], Reserved)
    assert results[1] == Refused(Refusal.NOT_ENOUGH, available=1)
    assert isinstance(results[2], Reserved)
    assert results[3] == Refused(Refusal.SOLD_OUT)
    assert (stock.available, stock.held, stock.sold_out) == (0, 3, True)


async def test_loading_again_never_replaces_live_stock(redis: Redis, inventory: Inventory) -> None:
    config = await open_config(redis)
    assert await inventory.load(POOL, config) == ("loaded", 1, True)
    assert isinstance(await reserve_one(inventory, ReserveRequest(5, "a", 2)), Reserved)
    assert await inventory.load(POOL, config) == ("loaded", 1, False)
    assert await inventory.load(POOL, replace(config, version=2, quantity=100, price_minor=5)) == ("loaded", 2, False)
    assert await inventory.load(POOL, config) == ("stale", 2, False)
    audit = await audit_pool(redis, POOL)
    assert (audit.stock.available, audit.stock.total) == (8, 10)
    assert (await inventory.config(POOL))["price"] == "5"


async def test_payment_states(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    hold = await reserve_one(inventory, ReserveRequest(5, "a", 1))
    assert isinstance(hold, Reserved)
    hold_id = hold.hold.id
    assert (await inventory.begin_payment(POOL, hold_id, 6, 60_000)).status == "not_found"  # not theirs
    begun = await inventory.begin_payment(POOL, hold_id, 5, 60_000)
    assert begun.status == "ok"
    assert begun.hold is not None
    assert begun.hold.state is HoldState.PAYING
    assert (await inventory.begin_payment(POOL, hold_id, 5, 60_000)).status == "paying"
    assert (await inventory.cancel(POOL, hold_id, 5)).status == "paying"
    assert (await inventory.abort_payment(POOL, hold_id)).status == "held"
    await inventory.begin_payment(POOL, hold_id, 5, 60_000)
    done = await inventory.complete_payment(POOL, hold_id, "ref-1")
    assert done.status == "ok"
    assert done.hold is not None
    assert done.hold.payment_ref == "ref-1"
    assert (await inventory.complete_payment(POOL, hold_id, "ref-1")).status == "paid"  # a retry
    assert (await inventory.complete_payment(POOL, hold_id, "ref-2")).status == "paid"
    audit = await audit_pool(redis, POOL)
    assert (audit.stock.paid, audit.stock.held) == (1, 0)
    types = await outbox_types(redis)
    assert types == [b"reserved", b"paid"]


async def test_begin_payment_records_the_vouchers_once_and_a_decline_clears_them(
    redis: Redis, inventory: Inventory
) -> None:
    await inventory.load(POOL, await open_config(redis))
    hold = await reserve_one(inventory, ReserveRequest(5, "a", 2))  # 2 x 1999
    assert isinstance(hold, Reserved)
    hold_id = hold.hold.id
    assert hold.hold.disc is None
    assert hold.hold.pay_minor == 3998
    both = HoldDiscount(seller_voucher_id=4, seller_claim_id="v4.1", platform_voucher_id=9, platform_claim_id="v9.2",
                        seller_funded=290, platform_funded=89)  # fmt: skip
    begun = await inventory.begin_payment(POOL, hold_id, 5, 60_000, both)
    assert begun.status == "ok"
    assert begun.hold is not None
    assert begun.hold.disc == both
    assert begun.hold.pay_minor == 3998 - 290 - 89
    other = HoldDiscount(seller_voucher_id=4, seller_claim_id="v4.7", seller_funded=200)
    again = await inventory.begin_payment(POOL, hold_id, 5, 60_000, other)  # a retry keeps the first
    assert again.status == "paying"
    assert again.hold is not None
    assert again.hold.disc == both
    declined = await inventory.abort_payment(POOL, hold_id)
    assert declined.hold is not None
    assert declined.hold.disc is None
    assert declined.hold.pay_minor == 3998
    plain = await inventory.begin_payment(POOL, hold_id, 5, 60_000)  # and then without vouchers
    assert plain.hold is not None
    assert plain.hold.disc is None
    await inventory.abort_payment(POOL, hold_id)
    await inventory.begin_payment(POOL, hold_id, 5, 60_000, other)
    done = await inventory.complete_payment(POOL, hold_id, "ref-1")
    assert done.hold is not None
    assert done.hold.disc == other
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(POOL.outbox)  # type: ignore[assignment]
    assert Hold.from_json(entries[-1][1][b"data"]).disc == other  # the order writer reads it from the outbox


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["0", "", "0", "", "0", "0"], "at least one voucher"),
        (["4", "", "0", "", "1", "0"], "each voucher needs its claim"),
        (["4", "v4.1", "0", "", "3998", "0"], "at least 1 to pay"),
        (["4", "v4.1", "0", "", "-1", "0"], "seller_funded"),
        (["4", "v 4", "0", "", "1", "0"], "seller claim"),
    ],
)
async def test_begin_payment_refuses_bad_discounts_before_any_write(
    redis: Redis, inventory: Inventory, args: list[str], message: str
) -> None:
    await inventory.load(POOL, await open_config(redis))
    hold = await reserve_one(inventory, ReserveRequest(5, "a", 2))
    assert isinstance(hold, Reserved)
    before = await redis.hget(POOL.keys.holds, hold.hold.id)
    with pytest.raises(ResponseError, match=message):
        await redis.fcall("pool_begin_payment", len(POOL.keys), *POOL.keys, hold.hold.id, 5, 60_000, *args)
    assert await redis.hget(POOL.keys.holds, hold.hold.id) == before
    with pytest.raises(ResponseError, match="9 with a discount"):
        await redis.fcall("pool_begin_payment", len(POOL.keys), *POOL.keys, hold.hold.id, 5, 60_000, "4")


async def test_expired_holds_return_to_stock_and_cannot_be_paid(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis, hold_ms=50))
    results, _ = await inventory.reserve(POOL, [ReserveRequest(5, "a", 2), ReserveRequest(6, "a", 1)])
    first, second = results
    assert isinstance(first, Reserved)
    assert isinstance(second, Reserved)
    expires = first.hold.expires_at_ms
    await until(lambda: past(redis, expires), what="the holds' expiry")
    paying = await inventory.begin_payment(POOL, first.hold.id, 5, 60_000)
    assert paying.status == "expired"
    assert paying.hold is not None
    assert paying.hold.state is HoldState.EXPIRED
    swept = await inventory.sweep(POOL)
    assert swept.expired == [second.hold.id]
    assert swept.stale_paying == []
    assert (swept.stock.available, swept.stock.held) == (10, 0)
    audit = await audit_pool(redis, POOL)
    assert audit.per_buyer == {}
    types = await outbox_types(redis)
    assert types == [b"reserved", b"reserved", b"expired", b"expired"]


async def test_stale_paying_holds_wait_for_reconciliation(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis, hold_ms=30))
    hold = await reserve_one(inventory, ReserveRequest(5, "a", 1))
    assert isinstance(hold, Reserved)
    await inventory.begin_payment(POOL, hold.hold.id, 5, 40)
    assert (await inventory.expire(POOL, hold.hold.id)).status == "not_due"
    deadline = (await inventory.hold(POOL, hold.hold.id)).deadline_ms  # type: ignore[union-attr]
    assert deadline is not None
    await until(lambda: past(redis, deadline), what="the payment deadline")
    swept = await inventory.sweep(POOL)
    assert swept.stale_paying == [hold.hold.id]
    assert swept.stock.held == 1
    assert (await inventory.expire(POOL, hold.hold.id)).status == "ok"
    assert (await audit_pool(redis, POOL)).stock.available == 10


async def test_close_releases_everything_held_at_the_next_sweep(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    await inventory.reserve(POOL, [ReserveRequest(5, "a", 1), ReserveRequest(6, "a", 2)])
    stock, open_holds = await inventory.close(POOL)
    assert (stock.held, open_holds) == (3, 2)
    assert await reserve_one(inventory, ReserveRequest(7, "a")) == Refused(Refusal.CLOSED)
    swept = await inventory.sweep(POOL)
    assert len(swept.expired) == 2
    assert swept.stock.available == 10
    assert await inventory.load(POOL, await open_config(redis, version=9)) == ("closed", 0, False)


async def test_adjust(redis: Redis, inventory: Inventory) -> None:
    product = PoolId.product(7)
    await inventory.load(product, await open_config(redis, sale_id=None, quantity=3))
    await reserve_one(inventory, ReserveRequest(5, "a", 2), product)
    status, stock = await inventory.adjust(product, -2)
    assert status == "short"
    assert stock is not None
    assert stock.available == 1
    status, stock = await inventory.adjust(product, 5)
    assert status == "ok"
    assert stock is not None
    assert (stock.available, stock.total) == (6, 8)
    await audit_pool(redis, product)


async def test_an_adjustment_applies_once_per_operation(redis: Redis, inventory: Inventory) -> None:
    """A retried call (its answer lost) with the same operation id moves the stock once."""
    product = PoolId.product(7)
    await inventory.load(product, await open_config(redis, sale_id=None, quantity=3))
    await reserve_one(inventory, ReserveRequest(5, "a", 2), product)
    assert (await inventory.adjust(product, -2, "edit-1"))[0] == "short"  # refused: the id is not used up
    status, stock = await inventory.adjust(product, 4, "edit-1")
    assert (status, stock.available if stock else None) == ("ok", 5)
    for _ in range(2):
        status, stock = await inventory.adjust(product, 4, "edit-1")
        assert (status, stock.available if stock else None, stock.total if stock else None) == ("replayed", 5, 7)
    status, stock = await inventory.adjust(product, -1, "edit-2")
    assert (status, stock.available if stock else None) == ("ok", 4)
    once = "livecommerce:{product:7}:adjust:edit-1"
    assert 0 < await redis.pttl(once) <= ADJUST_ONCE_MS  # forgotten in time
    await audit_pool(redis, product)
    # The once key must be the pool's own (same hash tag, so one Cluster slot): anything else changes nothing.
    before = await snapshot(redis)
    for foreign in ("livecommerce:{product:8}:adjust:x", "livecommerce:{product:7}:adjust:", "elsewhere"):
        with pytest.raises(ResponseError, match="once key"):
            await redis.fcall("pool_adjust", 10, *product.keys, foreign, 1, 1000)
    assert await snapshot(redis) == before
    with pytest.raises(ValueError, match="operation id"):
        await inventory.adjust(product, 1, "no spaces")
    # Giving back a finalised sale's units is one such operation: a repeat gives nothing.
    await give_units(inventory, 7, 3, op="finalised:s1")
    await give_units(inventory, 7, 3, op="finalised:s1")
    assert (await inventory.stock([product]))[product].available == 7


async def snapshot(redis: Redis) -> dict[bytes, object]:
    out: dict[bytes, object] = {}
    keys: list[bytes] = await redis.keys("*")  # type: ignore[assignment]
    for key in keys:
        out[key] = await redis.dump(key)
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["2", "5", "k", "1", "", "", ""],  # n says two requests, one given
        ["1", "5", "k", "1", "", ""],  # a group of five: the request before terms existed
        ["1", "five", "k", "1", "", "", ""],
        ["1", "5", "bad key!", "1", "", "", ""],
        ["1", "5", "k", "0", "", "", ""],
        ["1", "5", "k", "1.5", "", "", ""],
        ["1", "5", "k", "1", "", "room", ""],
        ["1", "5", "k", "1", "x" * 33, "", ""],
        ["1", "5", "k", "1", "", "", "h1.c0.r0.f0.p200.b_"],  # terms: letters, digits and dots only
        ["1", "5", "k", "1", "", "", "h1:c0"],
        ["1", "5", "k", "1", "", "", "x" * 65],
        ["2", "5", "k", "1", "", "", "h1.c0.r0.f0.p200.bp", "6", "k", "1", "", "", "bad terms"],  # the 2nd is bad
        ["0"],
        ["501"],
    ],
)
async def test_a_bad_argument_changes_nothing(redis: Redis, inventory: Inventory, args: list[str]) -> None:
    await inventory.load(POOL, await open_config(redis))
    before = await snapshot(redis)
    with pytest.raises(ResponseError, match="pool_reserve"):
        await redis.fcall("pool_reserve", 9, *POOL.keys, *args)
    assert await snapshot(redis) == before


@pytest.mark.parametrize("part", range(9))
async def test_a_wrong_typed_key_changes_nothing(redis: Redis, inventory: Inventory, part: int) -> None:
    await inventory.load(POOL, await open_config(redis))
    await reserve_one(inventory, ReserveRequest(5, "a", 1))
    key = POOL.keys[part]
    await redis.delete(key)
    await redis.rpush(key, "not what the pool expects")
    before = await snapshot(redis)
    for call in (
        inventory.reserve(POOL, [ReserveRequest(6, "b", 1)]),
        inventory.sweep(POOL),
        inventory.cancel(POOL, "s1.1", 0),
        inventory.close(POOL),
    ):
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await call
    assert await snapshot(redis) == before


async def test_buying_goes_on_after_the_functions_are_flushed(redis: Redis, inventory: Inventory) -> None:
    await inventory.load(POOL, await open_config(redis))
    await reserve_one(inventory, ReserveRequest(5, "a", 1))
    await redis.function_flush()
    assert isinstance(await reserve_one(inventory, ReserveRequest(6, "a", 1)), Reserved)
    await redis.function_flush()
    grouped = await inventory.reserve_groups({POOL: [ReserveRequest(7, "a", 1)]})
    outcome = grouped[POOL]
    assert not isinstance(outcome, BaseException)
    assert isinstance(outcome[0][0], Reserved)
    assert (await audit_pool(redis, POOL)).stock.held == 3


class SlowReplies:
    """A loopback TCP proxy in front of Redis that forwards calls at once and delays the replies to function
    calls: Redis runs the call, the caller times out waiting for the answer. A real network fault, not a mock."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_writer, server_writer]
        calls = asyncio.Event()  # the connection's hand-shake is answered at once, calls late

        async def forward_calls() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await client_reader.read(65536):
                    if b"FCALL" in data.upper():
                        calls.set()
                    server_writer.write(data)
                    await server_writer.drain()
            server_writer.close()

        async def delay_replies() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await server_reader.read(65536):
                    if calls.is_set():
                        await asyncio.sleep(self.delay)
                    client_writer.write(data)
                    await client_writer.drain()
            client_writer.close()

        await asyncio.gather(forward_calls(), delay_replies())

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            await self.server.wait_closed()


async def test_a_timed_out_call_retried_by_redis_py_takes_one_unit(redis_url: str, redis: Redis) -> None:
    """redis-py re-sends a call whose answer timed out, though Redis already ran it: both sends execute. The
    idempotency key inside the function makes the second return the first's hold, not a second unit."""
    inventory = Inventory(redis)
    await inventory.load_library()
    await inventory.load(POOL, await open_config(redis))
    proxy = SlowReplies(int(redis_url.rsplit(":", 1)[1].split("/")[0]), delay=0.5)
    port = await proxy.start()
    retrying = Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), retries=1),
        retry_on_error=[RedisTimeoutError],
        driver_info=None,  # no CLIENT SETINFO on connect: nothing but the call crosses the proxy
    )
    try:
        await redis.config_resetstat()
        with pytest.raises(RedisTimeoutError):  # the send and redis-py's re-send both time out
            await Inventory(retrying).reserve(POOL, [ReserveRequest(5, "tap-1", 1)])
        stats = await redis.info("commandstats")
        assert stats.get("cmdstat_fcall", {}).get("calls") == 2, f"both sends ran in Redis: {stats}"
        audit = await audit_pool(redis, POOL)
        assert (audit.stock.held, len(audit.holds)) == (1, 1)
        assert await outbox_types(redis) == [b"reserved"]
        result = await reserve_one(inventory, ReserveRequest(5, "tap-1", 1))  # the app's own retry
        assert isinstance(result, Reserved)
        assert result.replayed
    finally:
        await retrying.aclose()
        await proxy.close()


async def test_the_sold_out_flag_refuses_only_taps_that_cannot_be_retries(redis: Redis, inventory: Inventory) -> None:
    """A keyless tap (the server made its key) after a sold-out answer is refused without a round trip; a tap
    with the buyer's own key may be a retry of a hold another process took, so it still reaches Redis."""
    await inventory.load(POOL, await open_config(redis, quantity=1))
    elsewhere = await reserve_one(inventory, ReserveRequest(7, "tap-1"))  # taken by "another process"
    assert isinstance(elsewhere, Reserved)
    batcher = ReservationBatcher(inventory, sold_out_for=60)
    try:
        assert await batcher.reserve(POOL, ReserveRequest(8, "x")) == Refused(Refusal.SOLD_OUT)  # sets the flag
        calls = batcher.calls
        assert await batcher.reserve(POOL, ReserveRequest(9, "fresh"), new_key=True) == Refused(Refusal.SOLD_OUT)
        assert (batcher.calls, batcher.refused_locally) == (calls, 1)
        retry = await batcher.reserve(POOL, ReserveRequest(7, "tap-1"))
        assert isinstance(retry, Reserved), retry
        assert (retry.hold.id, retry.replayed) == (elsewhere.hold.id, True)
        assert batcher.calls == calls + 1
    finally:
        await batcher.close()
