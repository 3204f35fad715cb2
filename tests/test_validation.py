"""Bad input on every route gets a 4xx problem that says what to fix, and changes nothing.

The routes come from the same declarations that build the API, so a new route is covered automatically.
Calls are made as an admin, so validation, not authorisation, is what answers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.api.routes import ENDPOINTS
from livecommerce.api.routing import Endpoint
from livecommerce.settings import Settings
from tests.support.databases import snapshot
from tests.support.world import World, seed_world

BODY_ROUTES = [e for e in ENDPOINTS if e.body is not None]
LIST_ROUTES = [e for e in ENDPOINTS if e.query is not None]
PLACEHOLDERS = {
    "brand_id": "brand",
    "product_id": "product",
    "room_id": "room",
    "user_id": "viewer",
    "sale_id": "sale",
    "order_id": "order",
    "plan_id": "plan",
    "collaboration_id": "application",
    "campaign_id": "campaign",
    "voucher_id": "seller_voucher",
}


def concrete(endpoint: Endpoint, world: World) -> str:
    def value(name: str) -> str:
        if name == "hold_id":  # holds live in Redis: a well-formed id is enough to reach validation
            return f"s{world.ids['live_sale']}.1"
        return str(world.ids[PLACEHOLDERS[name]])

    return re.sub(r"\{(\w+)\}", lambda m: value(m.group(1)), endpoint.path)


async def send_raw(
    world: World, method: str, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, Any, str]:
    headers = {"Authorization": f"Bearer {world.api.tokens['admin']}", "Content-Type": content_type}
    async with world.api.client.request(method, path, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.content_type


BAD_BODIES: list[tuple[str, bytes, str, int, str]] = [
    # (name, body, content type, status, text the detail must contain)
    ("malformed json", b'{"name": ', "application/json", 400, "not valid JSON"),
    ("not an object", b"[1, 2]", "application/json", 400, "JSON object"),
    ("empty body", b"", "application/json", 400, "empty"),
    ("unknown field", b'{"surely_not_a_field": 1}', "application/json", 422, "surely_not_a_field"),
    ("wrong content type", b"name=x", "application/x-www-form-urlencoded", 415, "application/json"),
]


@pytest.mark.parametrize("endpoint", BODY_ROUTES, ids=lambda e: f"{e.method} {e.path}")
@pytest.mark.parametrize("bad", BAD_BODIES, ids=lambda b: b[0])
async def test_bad_bodies_are_refused_with_a_reason_and_change_nothing(
    endpoint: Endpoint,
    bad: tuple[str, bytes, str, int, str],
    client: TestClient[Request, Application],
    engine: AsyncEngine,
) -> None:
    world = await seed_world(client, engine)
    _, body, content_type, expected, reason = bad
    before = await snapshot(engine)
    status, problem, media = await send_raw(world, endpoint.method, concrete(endpoint, world), body, content_type)
    assert status == expected, problem
    assert media == "application/problem+json"
    assert problem["status"] == expected
    assert reason in problem["detail"], problem["detail"]
    if expected == 422:
        assert any(error["field"].startswith("body.") for error in problem["errors"])
    assert await snapshot(engine) == before


@pytest.mark.parametrize("endpoint", BODY_ROUTES, ids=lambda e: f"{e.method} {e.path}")
async def test_oversized_bodies_are_refused_before_reading_them(
    endpoint: Endpoint, client: TestClient[Request, Application], engine: AsyncEngine, settings: Settings
) -> None:
    world = await seed_world(client, engine)
    before = await snapshot(engine)
    padding = b" " * settings.max_body_bytes
    status, problem, _ = await send_raw(world, endpoint.method, concrete(endpoint, world), b"{}" + padding)
    assert status == 413, problem
    assert str(settings.max_body_bytes) in problem["detail"]
    assert await snapshot(engine) == before


WRONG_TYPES = {
    "POST /api/v1/brands": ({"name": 42}, "body.name"),
    "PATCH /api/v1/brands/{brand_id}": ({"description": ["x"]}, "body.description"),
    "POST /api/v1/brands/{brand_id}/products": (
        {"sku": "A-1", "title": "T", "price_minor": "12.50", "currency": "USD", "stock": 1},
        "body.price_minor",
    ),
    "PATCH /api/v1/products/{product_id}": ({"stock": -1}, "body.stock"),
    "POST /api/v1/rooms": ({"title": "T", "scheduled_start": "tomorrow"}, "body.scheduled_start"),
    "PATCH /api/v1/rooms/{room_id}": ({"brand_ids": [0]}, "body.brand_ids.0"),
    "POST /api/v1/users": ({"email": "nope", "display_name": "N", "role": "viewer"}, "body.email"),
    "POST /api/v1/auth/demo-login": ({"email": 7}, "body.email"),
    "PUT /api/v1/users/{user_id}/role": ({"role": "owner"}, "body.role"),
    "POST /api/v1/sales": (
        {
            "product_id": 1,
            "price_minor": 1,
            "quantity": 0,
            "per_buyer_limit": 1,
            "starts_at": "2030-01-01T10:00:00Z",
            "ends_at": "2030-01-01T11:00:00Z",
        },
        "body.quantity",
    ),
    "PATCH /api/v1/sales/{sale_id}": ({"hold_seconds": 29}, "body.hold_seconds"),
    "POST /api/v1/sales/{sale_id}/countdown": ({"room_id": 1, "seconds": 301}, "body.seconds"),
    "POST /api/v1/rooms/{room_id}/buy": ({"product_id": 1, "quantity": "two"}, "body.quantity"),
    "POST /api/v1/holds/{hold_id}/checkout": ({"card_number": 4242424242424242}, "body.card_number"),
    # (a second checkout case, for `claim_ids`, is in test_checkout_claim_ids_are_checked below)
    "POST /api/v1/orders/{order_id}/refunds": ({"idempotency_key": "k", "amount_minor": "1.00"}, "body.amount_minor"),
    # marketplace
    "POST /api/v1/brands/{brand_id}/plans": ({"kind": "closed", "name": "P"}, "body.kind"),
    "PUT /api/v1/plans/{plan_id}/rates/{product_id}": ({"rate_bps": 8001}, "body.rate_bps"),
    "POST /api/v1/plans/{plan_id}/applications": ({"message": 5}, "body.message"),
    "POST /api/v1/collaborations/{collaboration_id}/reject": ({"reason": ["no"]}, "body.reason"),
    "POST /api/v1/collaborations/{collaboration_id}/decline": ({"reason": 1}, "body.reason"),
    "POST /api/v1/collaborations/{collaboration_id}/end": ({"reason": 1}, "body.reason"),
    "POST /api/v1/fee-rules": (
        {"bps": 2001, "base": "buyer_paid", "effective_from": "2030-01-01T00:00:00Z"},
        "body.bps",
    ),
    # vouchers
    "POST /api/v1/campaigns": (
        {
            "name": "C",
            "currency": "usd",
            "budget_minor": 1,
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "2030-01-02T00:00:00Z",
        },
        "body.currency",
    ),
    "PATCH /api/v1/campaigns/{campaign_id}": ({"budget_minor": -1}, "body.budget_minor"),
    "POST /api/v1/campaigns/{campaign_id}/vouchers": (
        {
            "title": "T",
            "kind": "percent",
            "percent_bps": 10001,
            "cap_minor": 1,
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "2030-01-02T00:00:00Z",
            "quota": 1,
            "funding": "platform",
            "budget_minor": 1,
        },
        "body.percent_bps",
    ),
    "POST /api/v1/brands/{brand_id}/vouchers": (
        {
            "title": "T",
            "kind": "amount",
            "amount_minor": "1.00",
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "2030-01-02T00:00:00Z",
            "quota": 1,
        },
        "body.amount_minor",
    ),
    "PATCH /api/v1/vouchers/{voucher_id}": ({"quota": 0}, "body.quota"),
    # voucher claims
    "POST /api/v1/rooms/{room_id}/vouchers/{voucher_id}/claims": ({"idempotency_key": "a b"}, "body.idempotency_key"),
}


def test_every_body_route_has_a_wrong_type_case() -> None:
    assert {f"{e.method} {e.path}" for e in BODY_ROUTES} == set(WRONG_TYPES)


@pytest.mark.parametrize("endpoint", BODY_ROUTES, ids=lambda e: f"{e.method} {e.path}")
async def test_wrong_types_name_the_field(
    endpoint: Endpoint, client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    payload, field = WRONG_TYPES[f"{endpoint.method} {endpoint.path}"]
    before = await snapshot(engine)
    status, problem = await world.api.call(endpoint.method, concrete(endpoint, world), who="admin", json=payload)
    assert status == 422, problem
    assert [error["field"] for error in problem["errors"]] == [field]
    assert field in problem["detail"]
    assert await snapshot(engine) == before


BAD_QUERIES = [
    ("limit=0", "query.limit"),
    ("limit=101", "query.limit"),
    ("limit=ten", "query.limit"),
    ("after=-1", "query.after"),
    ("after=99999999999", "query.after"),
    ("limit=5&limit=6", "given 2 times"),
    ("colour=red", "query.colour"),
]


# rankings: the leaderboards' own query parameters
BAD_RANKING_QUERIES = [
    ("period=year", "query.period"),
    ("by=units", "query.by"),
    ("limit=0", "query.limit"),
    ("limit=101", "query.limit"),
    ("limit=ten", "query.limit"),
    ("date=yesterday", "query.date"),
    ("date=2026-02-30", "query.date"),
]


@pytest.mark.parametrize("board", ["creators", "brands"])
@pytest.mark.parametrize(("query", "mentions"), BAD_RANKING_QUERIES)
async def test_bad_ranking_queries_name_the_parameter(
    board: str, query: str, mentions: str, client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    status, problem = await world.api.call("GET", f"/api/v1/rankings/{board}?{query}", who="viewer")
    assert status == 422, problem
    assert mentions in problem["detail"], problem["detail"]


@pytest.mark.parametrize("endpoint", LIST_ROUTES, ids=lambda e: e.path)
@pytest.mark.parametrize(("query", "mentions"), BAD_QUERIES)
async def test_bad_pagination_is_refused_with_the_parameter_named(
    endpoint: Endpoint, query: str, mentions: str, client: TestClient[Request, Application]
) -> None:
    path = re.sub(r"\{\w+\}", "1", endpoint.path)  # the query is refused before the path's id is looked up
    async with client.get(f"{path}?{query}") as response:
        problem = await response.json(content_type=None)
        assert response.status == 422, problem
    assert mentions in problem["detail"], problem["detail"]


async def test_pages_cover_every_item_once(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    brand = world.ids["brand"]
    for n in range(23):
        await world.api.ok(
            "POST", f"/api/v1/brands/{brand}/products", who="staff", status=201,
            json={"sku": f"P-{n}", "title": f"Product {n}", "price_minor": n, "currency": "USD", "stock": n},
        )  # fmt: skip
    seen: list[int] = []
    cursor: int | None = None
    pages = 0
    while True:
        query = f"/api/v1/products?brand_id={brand}&limit=10" + (f"&after={cursor}" if cursor is not None else "")
        page = await world.api.ok("GET", query)
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25  # the seeded product and sale_product, and the 23 new ones
    assert seen == sorted(seen)


async def test_unknown_routes_and_methods_answer_problem_json(client: TestClient[Request, Application]) -> None:
    async with client.get("/api/v1/nothing-here") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"
    async with client.put("/api/v1/brands") as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]
        assert "GET" in (await response.json(content_type=None))["detail"]
    async with client.get("/api/v1/products/99999999999") as response:
        assert response.status == 404  # beyond the id range: not found, never a database error


FAR_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00", "1969-12-31T23:59:59Z"]


@pytest.mark.parametrize("when", FAR_TIMES)
async def test_times_out_of_range_are_refused_with_the_field_named(
    when: str, client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    """A time no computation can handle (a year before 1970 or after 8999, one that overflows when turned into
    UTC) is a 422, in a query and in a body, never an overflow."""
    world = await seed_world(client, engine)
    before = await snapshot(engine)
    statement = f"/api/v1/creators/{world.ids['host']}/statement"
    for path, field in ((f"{statement}?from={when}", "query.from"), (f"{statement}?to={when}", "query.to")):
        status, problem = await world.api.call("GET", path.replace("+", "%2B"), who="admin")
        assert (status, field in problem["detail"]) == (422, True), problem
    status, problem = await world.api.call(
        "POST", "/api/v1/fee-rules", who="admin", json={"bps": 100, "base": "buyer_paid", "effective_from": when}
    )
    assert (status, "body.effective_from" in problem["detail"]) == (422, True), problem
    assert await snapshot(engine) == before


async def test_checkout_claim_ids_are_checked(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    path = f"/api/v1/holds/s{world.ids['live_sale']}.1/checkout"
    for claim_ids, field in ((["nope"], "body.claim_ids.0"), (["v1.1", "v2.1", "v3.1"], "body.claim_ids")):
        payload = {"card_number": "4242424242424242", "claim_ids": claim_ids}
        status, problem = await world.api.call("POST", path, who="viewer", json=payload)
        assert status == 422, problem
        assert [error["field"] for error in problem["errors"]] == [field]
