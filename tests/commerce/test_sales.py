"""Flash sales in SQL: stock allocated once, given back once, edits only in draft, countdowns, who sees what.

Every test runs on SQLite and PostgreSQL. The seeded world (tests/support/world.py) has `sale_product` with 10 units,
4 of them allocated to `scheduled_sale` and `live_sale`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce import sales
from livecommerce.database import session_factory
from livecommerce.live.store import room_key
from livecommerce.models import FlashSale, Order, OrderStatus, Product
from tests.support.databases import snapshot
from tests.support.world import World, later, seed_world

Client = TestClient[Request, Application]
SALES = "/api/v1/sales"


async def _stock(engine: AsyncEngine, product_id: int) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(Product.stock).where(Product.id == product_id)) or 0)


async def _product(world: World, stock: int, sku: str = "SKU-x") -> int:
    body = await world.api.ok(
        "POST", f"/api/v1/brands/{world.ids['brand']}/products", who="staff", status=201,
        json={"sku": sku, "title": "X", "price_minor": 100, "currency": "EUR", "stock": stock},
    )  # fmt: skip
    return int(body["id"])


def _plan(world: World, product_id: int, **fields: Any) -> dict[str, Any]:
    plan = {"product_id": product_id, "price_minor": 50, "quantity": 4, "per_buyer_limit": 2,
            "starts_at": later(30), "ends_at": later(90), "room_ids": [world.ids["room"]]}  # fmt: skip
    return {**plan, **fields}


async def _draft(world: World, product_id: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = await world.api.ok("POST", SALES, who="staff", json=_plan(world, product_id, **fields),
                                              status=201)  # fmt: skip
    return body


async def test_a_draft_copies_the_currency_and_takes_no_stock(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 5)
    sale = await _draft(world, product, hold_seconds=60)
    assert (sale["status"], sale["currency"], sale["version"], sale["hold_seconds"]) == ("draft", "EUR", 1, 60)
    assert (sale["room_ids"], sale["invite_count"], sale["code_count"]) == ([world.ids["room"]], 0, 0)
    assert await _stock(engine, product) == 5


async def test_concurrent_schedules_cannot_allocate_the_same_units(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 5)
    first, second = (await _draft(world, product), await _draft(world, product))
    results = await asyncio.gather(
        *(world.api.call("POST", f"{SALES}/{sale['id']}/schedule", who="staff") for sale in (first, second))
    )
    assert sorted(status for status, _ in results) == [200, 409]
    refusal = next(body for status, body in results if status == 409)
    assert "only 1 in stock" in refusal["detail"]
    assert await _stock(engine, product) == 1
    # The refused one is still a draft and can be scheduled once stock is added.
    loser = next(sale["id"] for sale, (status, _) in zip((first, second), results, strict=True) if status == 409)
    assert (await world.api.ok("GET", f"{SALES}/{loser}", who="staff"))["status"] == "draft"


async def test_scheduling_one_sale_concurrently_takes_its_stock_once(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 10)
    sale = await _draft(world, product)
    results = await asyncio.gather(
        *(world.api.call("POST", f"{SALES}/{sale['id']}/schedule", who="staff") for _ in range(4))
    )
    assert sorted(status for status, _ in results) == [200, 409, 409, 409]
    assert await _stock(engine, product) == 6
    body = await world.api.ok("GET", f"{SALES}/{sale['id']}", who="staff")
    assert (body["status"], body["version"]) == ("scheduled", 2)


async def test_overlapping_sales_of_a_product_in_a_shared_room_are_refused(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 40)
    first = await _draft(world, product)  # room, 30..90 minutes from now
    await world.api.ok("POST", f"{SALES}/{first['id']}/schedule", who="staff")
    overlapping = await _draft(world, product, starts_at=later(60), ends_at=later(120))
    before = await snapshot(engine)
    status, problem = await world.api.call("POST", f"{SALES}/{overlapping['id']}/schedule", who="staff")
    assert (status, problem["code"]) == (409, "conflict"), problem
    assert f"sale {first['id']} (scheduled, {first['starts_at']}" in problem["detail"], problem
    assert f"room {world.ids['room']}" in problem["detail"], problem
    assert await snapshot(engine) == before  # still a draft, its stock not taken
    # Another room, or a window that only touches, does not hide the first sale.
    elsewhere = await _draft(world, product, room_ids=[world.ids["private_room"]])
    await world.api.ok("POST", f"{SALES}/{elsewhere['id']}/schedule", who="staff")
    after = await _draft(world, product, starts_at=first["ends_at"], ends_at=later(150))
    await world.api.ok("POST", f"{SALES}/{after['id']}/schedule", who="staff")
    # Two overlapping schedules at once: the product's row lock lets exactly one through.
    racing = [await _draft(world, product, starts_at=later(200), ends_at=later(260)) for _ in range(2)]
    results = await asyncio.gather(
        *(world.api.call("POST", f"{SALES}/{sale['id']}/schedule", who="staff") for sale in racing)
    )
    assert sorted(status for status, _ in results) == [200, 409], results
    winner = next(sale for sale, (status, _) in zip(racing, results, strict=True) if status == 200)
    refusal = next(body for status, body in results if status == 409)
    assert f"sale {winner['id']} (scheduled" in refusal["detail"], refusal
    assert await _stock(engine, product) == 40 - 4 * 4


async def test_a_countdown_cannot_pull_a_sale_into_another_sales_window(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 40)
    first = await _draft(world, product)  # room, 30..90 minutes from now
    second = await _draft(world, product, starts_at=later(120), ends_at=later(180))
    for sale in (first, second):
        await world.api.ok("POST", f"{SALES}/{sale['id']}/schedule", who="staff")
    countdown = {"room_id": world.ids["room"], "seconds": 30}
    status, problem = await world.api.call("POST", f"{SALES}/{second['id']}/countdown", who="host", json=countdown)
    assert (status, problem["code"]) == (409, "conflict"), problem
    assert f"sale {first['id']} (scheduled" in problem["detail"], problem
    unchanged = await world.api.ok("GET", f"{SALES}/{second['id']}", who="staff")
    assert unchanged["starts_at"] == second["starts_at"]
    await world.api.ok("POST", f"{SALES}/{first['id']}/countdown", who="host", json=countdown)  # stays before


async def test_cancel_gives_the_allocation_back_once(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 5)
    sale = await _draft(world, product)
    await world.api.ok("POST", f"{SALES}/{sale['id']}/schedule", who="staff")
    assert await _stock(engine, product) == 1
    results = await asyncio.gather(
        *(world.api.call("POST", f"{SALES}/{sale['id']}/cancel", who="staff") for _ in range(3))
    )
    assert sorted(status for status, _ in results) == [200, 409, 409]
    assert await _stock(engine, product) == 5
    # Cancelling a draft touches no stock; a started sale must be ended instead.
    draft = await _draft(world, product)
    assert (await world.api.ok("POST", f"{SALES}/{draft['id']}/cancel", who="staff"))["status"] == "cancelled"
    assert await _stock(engine, product) == 5
    status, problem = await world.api.call("POST", f"{SALES}/{world.ids['live_sale']}/cancel", who="staff")
    assert (status, "end it instead" in problem["detail"]) == (409, True)


async def test_schedule_refuses_what_cannot_sell(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 100)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"room_ids": []}, "shows in no room"),
        ({"audience": "invite_list"}, "no invitees"),
        ({"audience": "invite_codes"}, "no codes"),
        ({"quantity": 101, "per_buyer_limit": 1}, "only 100 in stock"),
    ]
    for fields, reason in cases:
        sale = await _draft(world, product, **fields)
        before = await snapshot(engine)
        status, problem = await world.api.call("POST", f"{SALES}/{sale['id']}/schedule", who="staff")
        assert (status, reason in problem["detail"]) == (409, True), problem
        assert await snapshot(engine) == before
    ended = await world.api.ok("POST", f"/api/v1/rooms/{world.ids['room']}/end", who="host")
    assert ended["status"] == "ended"
    sale = await _draft(world, product)
    status, problem = await world.api.call("POST", f"{SALES}/{sale['id']}/schedule", who="staff")
    assert (status, "has ended" in problem["detail"]) == (409, True)


async def test_planning_is_validated_with_reasons(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 5)
    unbranded = await world.api.ok("POST", "/api/v1/rooms", who="host", json={"title": "T", "scheduled_start": later()},
                                   status=201)  # fmt: skip
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"per_buyer_limit": 5}, "body.per_buyer_limit", "more than the sale's quantity"),
        ({"ends_at": later(20)}, "body.ends_at", "after starts_at"),
        ({"starts_at": later(-60)}, "body.starts_at", "in the past"),
        ({"ends_at": later(60 * 24 * 40)}, "body.ends_at", "31 days"),
        ({"room_ids": [unbranded["id"]]}, "body.room_ids", "does not feature the sale's brand"),
        ({"room_ids": [world.ids["room"], world.ids["room"]]}, "body.room_ids", "twice"),
        ({"invitee_ids": [world.ids["viewer"]]}, "body.invitee_ids", "invite_list"),
        ({"audience": "invite_list", "invitee_ids": [99999]}, "body.invitee_ids", "no user with id 99999"),
        ({"code_count": 3}, "body.code_count", "invite_codes"),
        ({"product_id": 99999}, "body.product_id", "no product with id 99999"),
    ]
    for fields, field, reason in cases:
        status, problem = await world.api.call("POST", SALES, who="staff", json={**_plan(world, product), **fields})
        assert status == 422, (fields, problem)
        assert [e["field"] for e in problem["errors"]] == [field]
        assert reason in problem["detail"], problem["detail"]
    status, problem = await world.api.call("POST", SALES, who="other_staff", json=_plan(world, product, room_ids=[]))
    assert (status, "the product's brand staff" in problem["detail"]) == (403, True)


async def test_only_a_draft_can_be_edited_and_each_edit_is_a_version(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    path = f"{SALES}/{world.ids['sale']}"
    body = await world.api.ok("PATCH", path, who="staff", json={"price_minor": 777, "audience": "invite_codes",
                                                                "add_codes": 2})  # fmt: skip
    assert (body["price_minor"], body["version"], body["code_count"], body["quantity"]) == (777, 2, 2, 3)
    body = await world.api.ok("PATCH", path, who="staff", json={"quantity": 1, "per_buyer_limit": 1, "room_ids": []})
    assert (body["version"], body["room_ids"]) == (3, [])
    status, problem = await world.api.call("PATCH", path, who="staff", json={"per_buyer_limit": 2})
    assert (status, problem["errors"][0]["field"]) == (422, "body.per_buyer_limit")
    for sale in ("scheduled_sale", "live_sale"):
        status, problem = await world.api.call("PATCH", f"{SALES}/{world.ids[sale]}", who="staff",
                                               json={"price_minor": 1})  # fmt: skip
        assert (status, "only a draft can be edited" in problem["detail"]) == (409, True)


async def test_countdown_moves_the_start_and_reaches_the_room(
    client: Client, engine: AsyncEngine, redis_url: str
) -> None:
    world = await seed_world(client, engine)
    path = f"{SALES}/{world.ids['scheduled_sale']}/countdown"
    room = world.ids["room"]
    await world.api.ok("POST", f"{SALES}/{world.ids['live_sale']}/end", who="staff")  # else its window overlaps
    before = datetime.now(UTC)
    body = await world.api.ok("POST", path, who="host", json={"room_id": room, "seconds": 30})
    starts_at = datetime.fromisoformat(body["starts_at"])
    assert before + timedelta(seconds=29) < starts_at < datetime.now(UTC) + timedelta(seconds=31)
    assert (body["room_id"], body["version"]) == (room, 3)  # created 1, scheduled 2, counted down 3
    sale = await world.api.ok("GET", f"{SALES}/{world.ids['scheduled_sale']}", who="viewer")
    assert datetime.fromisoformat(sale["starts_at"]) == starts_at
    redis = Redis.from_url(redis_url)
    try:
        logged = list(await redis.xrange(room_key(room, "events")) or [])
    finally:
        await redis.aclose()
    assert any(b"countdown" in repr(entry).encode() for entry in logged), logged
    # Again, shorter: still not started, so allowed.
    await world.api.ok("POST", path, who="staff", json={"room_id": room, "seconds": 10})
    for payload, expected, reason in (
        ({"room_id": world.ids["other_room"], "seconds": 30}, 422, "does not show in room"),
        ({"room_id": 99999, "seconds": 30}, 422, "no room with id 99999"),
        ({"room_id": room, "seconds": 9}, 422, "body.seconds"),
        ({"room_id": room, "seconds": 301}, 422, "body.seconds"),
    ):
        status, problem = await world.api.call("POST", path, who="staff", json=payload)
        assert (status, reason in problem["detail"]) == (expected, True), problem
    status, problem = await world.api.call(
        "POST", f"{SALES}/{world.ids['live_sale']}/countdown", who="host", json={"room_id": room, "seconds": 30}
    )
    assert (status, "only a scheduled sale that has not started" in problem["detail"]) == (409, True)


async def test_a_countdown_cannot_start_the_sale_after_it_ends(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = await _product(world, 5)
    sale = await _draft(world, product, starts_at=later(1), ends_at=later(3))
    await world.api.ok("POST", f"{SALES}/{sale['id']}/schedule", who="staff")
    status, problem = await world.api.call(
        "POST", f"{SALES}/{sale['id']}/countdown", who="host", json={"room_id": world.ids["room"], "seconds": 300}
    )
    assert (status, "after it ends" in problem["detail"]) == (409, True)


async def test_ending_early_closes_the_window_once(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    path = f"{SALES}/{world.ids['live_sale']}/end"
    body = await world.api.ok("POST", path, who="staff")
    assert datetime.fromisoformat(body["ends_at"]) <= datetime.now(UTC)
    assert (body["status"], body["version"], body["finalised_at"]) == ("ended", 3, None)  # the worker finalises it
    status, problem = await world.api.call("POST", path, who="staff")
    assert (status, "already closed" in problem["detail"]) == (409, True)
    status, problem = await world.api.call("POST", f"{SALES}/{world.ids['scheduled_sale']}/end", who="staff")
    assert (status, "cancel it instead" in problem["detail"]) == (409, True)


async def test_finalise_returns_unpaid_units_once(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product, sale_id = world.ids["sale_product"], world.ids["live_sale"]
    assert await _stock(engine, product) == 6
    factory = session_factory(engine)

    async def finalise() -> bool:
        async with factory.begin() as session:
            return await sales.finalise(session, sale_id, 1)

    assert sorted(await asyncio.gather(finalise(), finalise())) == [False, True]
    assert await finalise() is False
    assert await _stock(engine, product) == 7  # 2 allocated, 1 paid: 1 back, once
    async with factory() as session:
        sale = await session.get(FlashSale, sale_id)
        assert sale is not None
        assert (sale.status, sale.units_paid, sale.returned_units) == ("ended", 1, 1)
        assert sale.finalised_at is not None
    async with factory.begin() as session:
        assert await sales.finalise(session, world.ids["sale"], 0) is False  # a draft allocated nothing
        with pytest.raises(ValueError, match="outside"):
            await sales.finalise(session, world.ids["scheduled_sale"], 3)
    assert await _stock(engine, product) == 7


async def test_mark_live_moves_only_a_scheduled_sale(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    async with session_factory(engine).begin() as session:
        assert await sales.mark_live(session, world.ids["scheduled_sale"]) is True
        assert await sales.mark_live(session, world.ids["scheduled_sale"]) is False
        assert await sales.mark_live(session, world.ids["sale"]) is False


async def test_who_sees_which_sale_and_which_rooms(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    scheduled, draft = world.ids["scheduled_sale"], world.ids["sale"]
    rooms = sorted([world.ids["room"], world.ids["private_room"]])
    for caller, room_ids, counts in (
        (None, [world.ids["room"]], (None, None)),
        ("viewer", [world.ids["room"]], (None, None)),
        ("other_staff", [world.ids["room"]], (None, None)),
        ("host", rooms, (None, None)),  # the private room's host
        ("staff", rooms, (1, 0)),
        ("admin", rooms, (1, 0)),
    ):
        body = await world.api.ok("GET", f"{SALES}/{scheduled}", who=caller)
        assert (body["room_ids"], (body["invite_count"], body["code_count"])) == (room_ids, counts), caller
        listed = {sale["id"] for sale in (await world.api.ok("GET", f"{SALES}?limit=100", who=caller))["items"]}
        assert (draft in listed) == (caller in {"staff", "admin"}), caller
        assert scheduled in listed
    # Shown only in a private room: only those who can see that room can see the sale.
    await world.api.ok("PATCH", f"{SALES}/{draft}", who="staff", json={"room_ids": [world.ids["private_room"]]})
    await world.api.ok("POST", f"{SALES}/{draft}/schedule", who="staff")
    for caller, expected in (("viewer", 404), ("other_host", 404), ("host", 200), ("staff", 200)):
        status, _ = await world.api.call("GET", f"{SALES}/{draft}", who=caller)
        assert status == expected, caller
    # Filters.
    page = await world.api.ok("GET", f"{SALES}?room_id={world.ids['private_room']}&status=scheduled", who="admin")
    assert sorted(sale["id"] for sale in page["items"]) == sorted([draft, scheduled])
    page = await world.api.ok("GET", f"{SALES}?brand_id={world.ids['other_brand']}", who="admin")
    assert page["items"] == []


async def test_invites_and_codes_are_listed_to_the_brand(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    invites = await world.api.ok("GET", f"{SALES}/{world.ids['scheduled_sale']}/invites", who="staff")
    assert invites["items"] == [{"id": world.ids["viewer"], "display_name": "Viewer"}]
    codes = await world.api.ok("GET", f"{SALES}/{world.ids['live_sale']}/codes?limit=2", who="staff")
    assert len(codes["items"]) == 2
    rest = await world.api.ok("GET", f"{SALES}/{world.ids['live_sale']}/codes?after={codes['next']}", who="staff")
    every = codes["items"] + rest["items"]
    assert len({code["code"] for code in every}) == 3
    assert all(len(c["code"]) == 10 and c["code"].isalnum() and not set(c["code"]) & set("01OIL") for c in every)
    redeemed = [code for code in every if code["redeemed_hold"] is not None]
    assert [code["redeemed_by"] for code in redeemed] == [world.ids["viewer"]]
    sale = await _draft(world, world.ids["sale_product"], audience="invite_codes", code_count=250)
    assert sale["code_count"] == 250


async def test_orders_are_listed_newest_first_to_their_buyer_and_brand(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        for n in range(2, 6):
            session.add(Order(
                hold_id=f"p{world.ids['product']}.{n}", pool=f"p{world.ids['product']}", sale_id=None,
                product_id=world.ids["product"], brand_id=world.ids["brand"], room_id=None,
                buyer_id=world.ids["viewer"], quantity=1, unit_price_minor=1999, total_minor=1999, currency="USD",
                status=OrderStatus.HELD, held_at=now, expires_at=now + timedelta(minutes=5), updated_at=now,
            ))  # fmt: skip
    seen: list[int] = []
    cursor = None
    while True:
        query = "?limit=2" + (f"&after={cursor}" if cursor is not None else "")
        page = await world.api.ok("GET", f"/api/v1/orders{query}", who="viewer")
        seen += [order["id"] for order in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
    assert (await world.api.ok("GET", "/api/v1/orders", who="host"))["items"] == []
    paid = await world.api.ok("GET", "/api/v1/orders?status=paid", who="viewer")
    assert [order["id"] for order in paid["items"]] == [world.ids["order"]]
    brand = f"/api/v1/brands/{world.ids['brand']}/orders"
    by_sale = await world.api.ok("GET", f"{brand}?sale_id={world.ids['live_sale']}", who="staff")
    assert [order["hold_id"] for order in by_sale["items"]] == [f"s{world.ids['live_sale']}.1"]
    assert [order["buyer_name"] for order in by_sale["items"]] == ["Viewer"]  # the brand sees who bought
    one = await world.api.ok("GET", f"/api/v1/orders/{world.ids['order']}", who="staff")
    assert (one["buyer_id"], one["buyer_name"]) == (world.ids["viewer"], "Viewer")
    status, _ = await world.api.call("GET", f"/api/v1/orders/{world.ids['order']}", who="other_staff")
    assert status == 404
    status, _ = await world.api.call("GET", "/api/v1/brands/99999/orders", who="admin")
    assert status == 404


async def test_a_product_with_sales_cannot_be_deleted(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    status, problem = await world.api.call("DELETE", f"/api/v1/products/{world.ids['sale_product']}", who="staff")
    assert (status, "flash sales or orders refer to this product" in problem["detail"]) == (409, True)


async def test_the_sql_guards_hold_without_the_rules(client: Client, engine: AsyncEngine) -> None:
    """The CHECK constraints refuse what the rules would have refused, should a bug ever skip them."""
    world = await seed_world(client, engine)
    for values in ({"per_buyer_limit": 99}, {"hold_seconds": 5}, {"units_paid": 99}):
        with pytest.raises(Exception, match=r"(?i)check|constraint"):
            async with engine.begin() as connection:
                await connection.execute(update(FlashSale).where(FlashSale.id == world.ids["sale"]).values(values))
