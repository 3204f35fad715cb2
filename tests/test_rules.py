"""Domain rules behind the REST API: uniqueness, delete-if-unsold, and the room life cycle."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.databases import snapshot
from tests.support.world import later, seed_world

Client = TestClient[Request, Application]


async def test_sku_is_unique_per_brand_not_globally(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    product = {"sku": "SKU-product", "title": "Again", "price_minor": 1, "currency": "USD", "stock": 1}
    status, problem = await world.api.call(
        "POST", f"/api/v1/brands/{world.ids['brand']}/products", who="staff", json=product
    )
    assert status == 409
    assert "SKU-product" in problem["detail"]
    # The other brand may use the same SKU as the first brand's other product.
    product["sku"] = "SKU-product"
    await world.api.ok(
        "POST", f"/api/v1/brands/{world.ids['other_brand']}/products", who="other_staff", json=product, status=201
    )
    # Renaming a SKU onto a sibling's is a conflict too.
    status, _ = await world.api.call(
        "PATCH", f"/api/v1/products/{world.ids['other_product']}", who="other_staff", json={"sku": "SKU-product"}
    )
    assert status == 409


async def test_brand_names_are_unique_ignoring_case(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    status, problem = await world.api.call("POST", "/api/v1/brands", who="admin", json={"name": "BRAND"})
    assert status == 409
    assert "already exists" in problem["detail"]


async def test_a_product_that_has_sold_cannot_be_deleted(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE products SET units_sold = 3 WHERE id = :id"), {"id": world.ids["product"]}
        )
    before = await snapshot(engine)
    status, problem = await world.api.call("DELETE", f"/api/v1/products/{world.ids['product']}", who="staff")
    assert status == 409
    assert "sold 3" in problem["detail"]
    assert await snapshot(engine) == before
    # An unsold one can, and is gone afterwards.
    await world.api.ok("DELETE", f"/api/v1/products/{world.ids['other_product']}", who="other_staff", status=204)
    status, _ = await world.api.call("GET", f"/api/v1/products/{world.ids['other_product']}")
    assert status == 404


async def test_patch_changes_only_what_is_given_and_null_clears_the_image(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    path = f"/api/v1/products/{world.ids['product']}"
    await world.api.ok("PATCH", path, who="staff", json={"image_url": "https://cdn.example/p.png"})
    body = await world.api.ok("PATCH", path, who="staff", json={"price_minor": 2500})
    assert body["price_minor"] == 2500
    assert body["image_url"] == "https://cdn.example/p.png"
    assert body["title"] == "Product"
    body = await world.api.ok("PATCH", path, who="staff", json={"image_url": None})
    assert body["image_url"] is None


async def test_room_life_cycle(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    room = f"/api/v1/rooms/{world.ids['room']}"
    body = await world.api.ok("PATCH", room, who="host", json={"scheduled_start": later(120)})
    assert body["status"] == "scheduled"
    body = await world.api.ok("POST", f"{room}/live", who="host")
    assert body["status"] == "live"
    assert body["started_at"] is not None
    status, problem = await world.api.call("POST", f"{room}/live", who="host")
    assert (status, "already live" in problem["detail"]) == (409, True)
    status, problem = await world.api.call("PATCH", room, who="host", json={"scheduled_start": later(30)})
    assert status == 409
    assert "rescheduled" in problem["detail"]
    body = await world.api.ok("PATCH", room, who="host", json={"title": "Still live"})
    assert body["title"] == "Still live"
    body = await world.api.ok("POST", f"{room}/end", who="host")
    assert body["status"] == "ended"
    assert body["ended_at"] is not None
    for method, path, payload in (("POST", f"{room}/end", None), ("POST", f"{room}/live", None),
                                  ("PATCH", room, {"title": "x"})):  # fmt: skip
        status, problem = await world.api.call(method, path, who="host", json=payload)
        assert status == 409, (method, path)
        assert "ended" in problem["detail"]


async def test_a_scheduled_room_can_be_cancelled(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    body = await world.api.ok("POST", f"/api/v1/rooms/{world.ids['room']}/end", who="host")
    assert body["status"] == "ended"
    assert body["started_at"] is None


async def test_concurrent_go_live_calls_have_exactly_one_winner(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    path = f"/api/v1/rooms/{world.ids['room']}/live"
    results = await asyncio.gather(*(world.api.call("POST", path, who="host") for _ in range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [409] * 7


async def test_schedule_must_be_ahead_and_within_a_year(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    for when, reason in ((later(-60), "in the past"), (later(60 * 24 * 400), "more than a year")):
        status, problem = await world.api.call(
            "POST", "/api/v1/rooms", who="host", json={"title": "T", "scheduled_start": when}
        )
        assert status == 422
        assert reason in problem["detail"]
    status, problem = await world.api.call(
        "POST", "/api/v1/rooms", who="host", json={"title": "T", "scheduled_start": "2030-01-01T10:00:00"}
    )
    assert status == 422, "a time without a zone is ambiguous and must be refused"


async def test_featured_brands_must_exist_and_be_distinct(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    brand = world.ids["brand"]
    for brand_ids, reason in (([brand, brand], "twice"), ([brand, 999], "no brand with id 999")):
        status, problem = await world.api.call(
            "POST", "/api/v1/rooms", who="host", json={"title": "T", "scheduled_start": later(), "brand_ids": brand_ids}
        )
        assert status == 422
        assert reason in problem["detail"]


async def test_only_hosts_can_be_given_rooms_and_staff_need_a_brand(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    status, problem = await world.api.call(
        "POST", "/api/v1/rooms", who="admin",
        json={"title": "T", "scheduled_start": later(), "host_id": world.ids["viewer"]},
    )  # fmt: skip
    assert status == 422
    assert "not a host" in problem["detail"]
    body = await world.api.ok(
        "POST", "/api/v1/rooms", who="admin", status=201,
        json={"title": "T", "scheduled_start": later(), "host_id": world.ids["other_host"]},
    )  # fmt: skip
    assert body["host"]["id"] == world.ids["other_host"]
    status, problem = await world.api.call(
        "POST", "/api/v1/users", who="admin", json={"email": "s@t.dev", "display_name": "S", "role": "brand_staff"}
    )
    assert status == 422
    assert "brand_id" in problem["detail"]
    status, _ = await world.api.call(
        "POST", "/api/v1/users", who="admin", json={"email": "ADMIN@t.dev", "display_name": "A", "role": "viewer"}
    )
    assert status == 409, "emails are unique ignoring case"


async def test_uniqueness_ignores_case_beyond_ascii_on_every_backend(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    await world.api.ok("POST", "/api/v1/brands", who="admin", json={"name": "Émile Straße"}, status=201)
    status, _ = await world.api.call("POST", "/api/v1/brands", who="admin", json={"name": "émile STRASSE"})
    assert status == 409
    await world.api.ok(
        "POST", "/api/v1/users", who="admin", status=201,
        json={"email": "Zoë@Example.dev", "display_name": "Z", "role": "viewer"},
    )  # fmt: skip
    status, _ = await world.api.call(
        "POST", "/api/v1/users", who="admin", json={"email": "ZOË@example.dev", "display_name": "Z", "role": "viewer"}
    )
    assert status == 409
