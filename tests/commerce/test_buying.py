"""Buying from inside a room: real Socket.IO clients on two hub instances, real Redis and database."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.loading import load_sale
from livecommerce.commerce.payments import TestModeProvider
from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.database import session_factory
from tests.support.sockets import Viewer, viewer_in
from tests.support.waits import until
from tests.support.world import World

APPROVE = "4242 4242 4242 4242"
DECLINE = "4000 0000 0000 0002"

Pair = tuple[World, str, str, list[Viewer]]


async def pinned_room(pair: Pair) -> tuple[World, int, int, Viewer, Viewer, Viewer]:
    """The room with `product` pinned; the host on A, a viewer on A and a second viewer watching on B."""
    world, a, b, viewers = pair
    room, product = world.ids["room"], world.ids["product"]
    host, _ = await viewer_in(viewers, a, room, world.api.tokens["host"])
    ack = await host.call("pin", {"room_id": room, "product_id": product})
    assert ack["ok"], ack
    buyer, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    watcher, snapshot = await viewer_in(viewers, b, room, world.api.tokens["other_host"])
    assert snapshot["snapshot"]["pinned"]["offer"]["pool"] == f"p{product}"
    assert snapshot["snapshot"]["stock"]["available"] == 10
    return world, room, product, host, buyer, watcher


async def test_a_viewer_buys_the_pinned_product_and_pays(pair: Pair) -> None:
    _, room, product, _, buyer, watcher = await pinned_room(pair)
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 2, "idempotency_key": "tap-1"})
    assert ack["ok"], ack
    hold = ack["data"]["hold"]
    assert (hold["state"], hold["quantity"], hold["total_minor"], ack["data"]["replayed"]) == ("held", 2, 3998, False)
    assert hold["expires_at_ms"] > time.time() * 1000
    # The stock counter falls for every viewer, on both instances.
    stock = await watcher.wait_for("stock", lambda d: d["available"] == 8, within=2.0)
    assert (stock["held"], stock["sold"], stock["sold_out"]) == (2, 0, False)
    # A retry of the same tap returns the same hold; the stock does not move again. (`key` is the deprecated
    # older name of `idempotency_key`: the same tap either way.)
    again = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 2, "key": "tap-1"})
    assert again["data"]["hold"]["id"] == hold["id"]
    assert again["data"]["replayed"] is True
    # A declined card leaves the hold to try another; an approving card pays it; paying again is a no-op.
    declined = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": DECLINE})
    assert declined["error"]["code"] == "payment_declined", declined
    paid = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": APPROVE})
    assert paid["ok"], paid
    assert paid["data"]["hold"]["state"] == "paid"
    repeat = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": APPROVE})
    assert repeat["data"]["hold"]["payment_ref"] == paid["data"]["hold"]["payment_ref"]
    stock = await watcher.wait_for("stock", lambda d: d["sold"] == 2, within=2.0)
    assert (stock["available"], stock["held"]) == (8, 0)


async def test_refusals_are_clear(pair: Pair) -> None:
    world, room, product, _, buyer, _ = await pinned_room(pair)
    _, a, _, viewers = pair
    anonymous, _ = await viewer_in(viewers, a, room)
    ack = await anonymous.call("buy", {"room_id": room, "product_id": product})
    assert ack["error"]["code"] == "unauthorized"
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 11})
    assert ack["error"]["code"] == "over_limit"
    assert "at most 10 per buyer" in ack["error"]["message"]
    ack = await buyer.call("buy", {"room_id": world.ids["other_room"], "product_id": product})
    assert ack["error"]["code"] == "conflict"  # not in that room
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 1, "idempotency_key": "k"})
    assert ack["ok"]
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 2, "idempotency_key": "k"})
    assert ack["error"]["code"] == "idempotency_key_reused"
    both = {"room_id": room, "product_id": product, "idempotency_key": "k", "key": "other"}
    ack = await buyer.call("buy", both)
    assert ack["error"]["code"] == "invalid_request", "two different keys for one tap"
    assert "idempotency_key" in ack["error"]["message"]
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 8})
    assert ack["ok"], ack
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 2})
    assert ack["error"]["code"] == "limit_reached"
    assert ack["error"]["message"] == "limit of 10 per buyer reached: you already have 9"
    ack = await buyer.call("checkout", {"hold_id": "s99.1", "card_number": APPROVE})
    assert ack["error"]["code"] == "not_found"
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "idempotency_key": "bad key!"})
    assert ack["error"]["code"] == "invalid_request"
    assert "a fresh one per tap" in ack["error"]["message"], "the REST field's hint, under the REST field's name"


async def test_sold_out_is_shown_at_once_and_cancelled_units_come_back(pair: Pair) -> None:
    world, room, product, _, buyer, watcher = await pinned_room(pair)
    _, a, _, viewers = pair
    other, _ = await viewer_in(viewers, a, room, world.api.tokens["staff"])
    first = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 6})
    second = await other.call("buy", {"room_id": room, "product_id": product, "quantity": 4})
    assert first["ok"]
    assert second["ok"]
    await watcher.wait_for("stock", lambda d: d["sold_out"], within=2.0)
    refused = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 1})
    assert refused["error"]["code"] == "sold_out"
    assert "sold out" in refused["error"]["message"]
    cancelled = await other.call("cancel_hold", {"hold_id": second["data"]["hold"]["id"]})
    assert cancelled["data"]["hold"]["state"] == "cancelled"
    await watcher.wait_for("stock", lambda d: d["available"] == 4, within=2.0)

    # The local sold-out flag is lifted once the stock poll sees units again.
    async def bought() -> dict[str, Any]:
        return await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 1})

    deadline = time.monotonic() + 3
    while (ack := await bought())["ok"] is False:
        assert ack["error"]["code"] == "sold_out", ack
        assert time.monotonic() < deadline, "units that came back were never sold again"
        await asyncio.sleep(0.05)


async def test_stock_updates_are_coalesced_whatever_the_purchase_rate(pair: Pair) -> None:
    """Hundreds of stock changes in a few seconds reach a viewer as at most ~10 updates a second."""
    world, room, product, _, _, watcher = await pinned_room(pair)
    _, a, _, viewers = pair
    buyers = [Viewer() for _ in range(4)]
    viewers.extend(buyers)
    for viewer, name in zip(buyers, ["viewer", "staff", "other_staff", "admin"], strict=True):
        await viewer.connect(a, world.api.tokens[name])
        assert (await viewer.call("join", {"room_id": room}))["ok"]

    async def call(viewer: Viewer, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        while (ack := await viewer.call(event, payload))["ok"] is False:
            assert ack["error"]["code"] == "rate_limited", ack  # the per-connection budget: wait
            await asyncio.sleep(0.1)
        return ack

    async def churn(viewer: Viewer) -> int:
        for _ in range(25):
            hold = (await call(viewer, "buy", {"room_id": room, "product_id": product}))["data"]["hold"]
            await call(viewer, "cancel_hold", {"hold_id": hold["id"]})
        return 50

    watcher.events.clear()
    started = time.monotonic()
    changes = sum(await asyncio.gather(*(churn(v) for v in buyers)))

    async def settled() -> bool:
        updates = watcher.named("stock")
        return bool(updates) and updates[-1]["available"] == 10

    await until(settled, within=2.0, what="the final stock update")
    elapsed = time.monotonic() - started
    updates = watcher.named("stock")
    assert changes == 200
    assert len(updates) <= 10 * elapsed + 3, (len(updates), elapsed)
    assert updates[-1]["available"] == 10


async def test_the_test_mode_provider_is_shared_by_processes(pair: Pair, redis_url: str) -> None:
    _, room, product, _, buyer, _ = await pinned_room(pair)
    hold = (await buyer.call("buy", {"room_id": room, "product_id": product}))["data"]["hold"]
    paid = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": APPROVE})
    client = Redis.from_url(redis_url)
    try:
        charge = await TestModeProvider(client, delay_s=0).lookup(hold["id"])
    finally:
        await client.aclose()
    assert charge is not None
    assert charge.ref == paid["data"]["hold"]["payment_ref"]


async def test_the_product_pool_follows_stock_edits_and_sale_allocations(pair: Pair) -> None:
    world, room, product, _, buyer, watcher = await pinned_room(pair)
    api = world.api
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "quantity": 6})
    assert ack["ok"], ack
    # 4 of 10 are free: taking 5 away is refused and changes nothing; taking 3 works and buyers see it.
    status, problem = await api.call("PATCH", f"/api/v1/products/{product}", who="staff", json={"stock": 5})
    assert status == 409, problem
    assert "only 4 are free" in problem["detail"]
    assert (await api.ok("GET", f"/api/v1/products/{product}"))["stock"] == 10
    await api.ok("PATCH", f"/api/v1/products/{product}", who="staff", json={"stock": 7})
    await watcher.wait_for("stock", lambda d: (d["available"], d["total"]) == (1, 7), within=2.0)
    # Adding stock back reaches buyers too.
    await api.ok("PATCH", f"/api/v1/products/{product}", who="staff", json={"stock": 12})
    await watcher.wait_for("stock", lambda d: (d["available"], d["total"]) == (6, 12), within=2.0)


async def test_rest_buying_and_holds_belong_to_their_buyer(pair: Pair) -> None:
    """The REST twins of the socket events, and who may see, pay or cancel a hold."""
    world, _, _, _ = pair
    api, room, product = world.api, world.ids["room"], world.ids["product"]
    body = {"product_id": product, "quantity": 1, "idempotency_key": "rest-tap-1"}
    status, answer = await api.call("POST", f"/api/v1/rooms/{room}/buy", who=None, json=body)
    assert status == 401, answer
    hold = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer", json=body, status=201)
    assert (hold["state"], hold["quantity"], hold["replayed"]) == ("held", 1, False)
    again = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer", json=body, status=201)
    assert (again["id"], again["replayed"]) == (hold["id"], True)
    path = f"/api/v1/holds/{hold['id']}"
    for who in ("staff", "host", "admin"):  # nobody but the buyer sees, pays or cancels it
        for method, sub, payload in (("GET", "", None), ("POST", "/checkout", {"card_number": APPROVE}),
                                     ("DELETE", "", None)):  # fmt: skip
            status, answer = await api.call(method, path + sub, who=who, json=payload)
            assert status == 404, (who, method, sub, answer)
    status, answer = await api.call("GET", path, who=None)
    assert status == 401, answer
    assert (await api.ok("GET", path, who="viewer"))["state"] == "held"
    status, answer = await api.call("POST", path + "/checkout", who="viewer", json={"card_number": DECLINE})
    assert (status, answer["code"]) == (402, "payment_declined"), answer
    paid = await api.ok("POST", path + "/checkout", who="viewer", json={"card_number": APPROVE})
    assert paid["state"] == "paid"
    status, answer = await api.call("DELETE", path, who="viewer")
    assert status == 409, answer
    assert "refund" in answer["detail"]
    status, answer = await api.call("GET", "/api/v1/holds/not-a-hold", who="viewer")
    assert status in (400, 404), answer
    assert answer["detail"]


async def test_a_retry_on_another_hub_gets_its_hold_even_after_that_hub_saw_sold_out(pair: Pair) -> None:
    """A tap whose answer was lost on A is retried on B with its key, after B has seen the pool sell out: the
    buyer gets the hold A took (not "sold out" from B's local flag), so it can be paid."""
    world, room, product, _, buyer, _ = await pinned_room(pair)  # stock 10; the buyer is on A
    _, _, b, viewers = pair
    lost = await buyer.call("buy", {"room_id": room, "product_id": product, "key": "lost-tap"})
    assert lost["ok"], lost
    other, _ = await viewer_in(viewers, b, room, world.api.tokens["staff"])
    assert (await other.call("buy", {"room_id": room, "product_id": product, "quantity": 9}))["ok"]
    refused = await other.call("buy", {"room_id": room, "product_id": product})
    assert refused["error"]["code"] == "sold_out"  # B now holds a local sold-out flag for the pool
    again, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    retry = await again.call("buy", {"room_id": room, "product_id": product, "key": "lost-tap"})
    assert retry["ok"], retry
    assert (retry["data"]["hold"]["id"], retry["data"]["replayed"]) == (lost["data"]["hold"]["id"], True)
    paid = await again.call("checkout", {"hold_id": retry["data"]["hold"]["id"], "card_number": APPROVE})
    assert paid["data"]["hold"]["state"] == "paid", paid


async def test_a_code_or_sale_id_for_a_sale_that_is_not_running_is_refused(
    pair: Pair, engine: AsyncEngine, redis_url: str
) -> None:
    """Ending a sale, then buying with its code: refused (`sale_ended`, then `sale_not_running` once the offer
    cache has moved on), never a hold at the product's own price."""
    world, a, _, viewers = pair
    api, room, product, sale = world.api, world.ids["room"], world.ids["sale_product"], world.ids["live_sale"]
    redis = Redis.from_url(redis_url)
    try:
        async with session_factory(engine)() as session:
            assert await load_sale(Inventory(redis), session, sale) is not None
    finally:
        await redis.aclose()
    page = await api.ok("GET", f"/api/v1/sales/{sale}/codes", who="staff")
    codes = [item["code"] for item in page["items"] if item["redeemed_hold"] is None]
    buyer, _ = await viewer_in(viewers, a, room, world.api.tokens["viewer"])
    ack = await buyer.call("buy", {"room_id": room, "product_id": product, "code": codes[0], "sale_id": sale})
    assert ack["ok"], ack
    assert (ack["data"]["hold"]["sale_id"], ack["data"]["hold"]["unit_price_minor"]) == (sale, 999)
    # Naming another sale while this one runs is refused, with the one to name instead.
    body = {"product_id": product, "sale_id": world.ids["scheduled_sale"]}
    status, problem = await api.call("POST", f"/api/v1/rooms/{room}/buy", who="staff", json=body)
    assert (status, problem["code"]) == (409, "sale_not_running"), problem
    assert f"sells from sale {sale} now: buy again with sale_id {sale}" in problem["detail"]
    await api.ok("POST", f"/api/v1/sales/{world.ids['scheduled_sale']}/cancel", who="staff")  # not next in line
    ended = await api.ok("POST", f"/api/v1/sales/{sale}/end", who="staff")
    assert (ended["status"], ended["finalised_at"]) == ("ended", None)
    assert (await api.ok("GET", f"/api/v1/sales/{sale}", who="staff"))["status"] == "ended"
    late, _ = await viewer_in(viewers, a, room, world.api.tokens["staff"])
    refusals: list[str] = []

    async def refused_as_not_running() -> bool:
        ack = await late.call("buy", {"room_id": room, "product_id": product, "code": codes[1]})
        assert not ack["ok"], ack  # never a hold at another price
        await asyncio.sleep(0.1)  # within the connection's event rate
        refusals.append(ack["error"]["code"])
        return bool(ack["error"]["code"] == "sale_not_running")

    await until(refused_as_not_running, within=8.0, what="a buy with the ended sale's code is sale_not_running")
    assert set(refusals) <= {"sale_ended", "sale_not_running"}, refusals
    ack = await late.call("buy", {"room_id": room, "product_id": product, "code": codes[1]})
    assert "regular price: buy again without the code" in ack["error"]["message"], ack
    status, problem = await api.call("POST", f"/api/v1/rooms/{room}/buy", who="staff",
                                     json={"product_id": product, "sale_id": sale})  # fmt: skip
    assert (status, problem["code"]) == (409, "sale_not_running"), problem
    assert problem["detail"].endswith("without the sale_id"), problem
    # Without the code the product sells at its own price, as the refusal says.
    ack = await late.call("buy", {"room_id": room, "product_id": product})
    assert ack["ok"], ack
    assert (ack["data"]["hold"]["sale_id"], ack["data"]["hold"]["unit_price_minor"]) == (None, 2999)


async def test_a_checkout_retry_settles_a_payment_its_dead_hub_left_paying(pair: Pair, redis_url: str) -> None:
    """A hub began a payment and died (before or after the charge): the buyer's retry asks the provider by hold
    id at once — paid, charged once — instead of `payment_in_progress` until the worker's deadline."""
    world, _, _, _ = pair
    api, room, product, buyer = world.api, world.ids["room"], world.ids["product"], world.ids["viewer"]
    redis = Redis.from_url(redis_url)
    inventory, provider = Inventory(redis), TestModeProvider(redis)
    try:
        holds = []
        for key in ("died-after-charge", "died-before-charge", "two-retries-at-once"):
            body = {"product_id": product, "idempotency_key": key}
            hold = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer", json=body, status=201)
            pool = PoolId.parse(hold["id"])
            begun = await inventory.begin_payment(pool, hold["id"], buyer, 60_000)  # ... and the hub dies
            assert begun.status == "ok", begun
            holds.append(hold["id"])
        landed = await provider.charge(holds[0], 1999, "USD", APPROVE)  # the first hub's charge had landed
        checkout = {"card_number": APPROVE}
        paid = await api.ok("POST", f"/api/v1/holds/{holds[0]}/checkout", who="viewer", json=checkout)
        assert (paid["state"], paid["payment_ref"]) == ("paid", landed.ref)
        paid = await api.ok("POST", f"/api/v1/holds/{holds[1]}/checkout", who="viewer", json=checkout)
        assert paid["state"] == "paid"  # no charge had been made: the retry charged the hold's key, once
        results = await asyncio.gather(
            *(api.call("POST", f"/api/v1/holds/{holds[2]}/checkout", who="viewer", json=checkout) for _ in range(3))
        )
        assert {(status, body["state"]) for status, body in results} == {(200, "paid")}, results
        assert len({body["payment_ref"] for _, body in results}) == 1, results
        for hold_id in holds:
            charge = await provider.lookup(hold_id)
            assert charge is not None
            assert charge.status == "charged"
            assert (await api.ok("GET", f"/api/v1/holds/{hold_id}", who="viewer"))["payment_ref"] == charge.ref
    finally:
        await redis.aclose()
