"""The authorisation matrix: every route x every role (and anonymous), as documented in the API.

Each row names an operation and the status each caller gets. Cross-brand and cross-host cases are their own
callers (`other_staff`, `other_host`). Every refused call must leave the database exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.api.routes import ENDPOINTS
from tests.support.databases import reset, snapshot
from tests.support.world import World, later, seed_world

CALLERS = ("anonymous", "viewer", "host", "other_host", "staff", "other_staff", "admin")


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # with {placeholders} naming World ids
    body: Callable[[World], Any] | None
    expected: dict[str, int]  # caller -> status
    mutates: bool = True

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def only(allowed: dict[str, int], *, others: int = 403, anonymous: int = 401) -> dict[str, int]:
    """Callers in `allowed` get their status; other signed-in callers `others`; anonymous `anonymous`."""
    return {caller: allowed.get(caller, anonymous if caller == "anonymous" else others) for caller in CALLERS}


def everyone(status: int = 200) -> dict[str, int]:
    return dict.fromkeys(CALLERS, status)


CASES = [
    # brands
    Case("GET", "/api/v1/brands", None, everyone(), mutates=False),
    Case("POST", "/api/v1/brands", lambda w: {"name": "Newco"}, only({"admin": 201})),
    Case("GET", "/api/v1/brands/{brand}", None, everyone(), mutates=False),
    Case("PATCH", "/api/v1/brands/{brand}", lambda w: {"description": "new"}, only({"admin": 200, "staff": 200})),
    # products
    Case("GET", "/api/v1/products", None, everyone(), mutates=False),
    Case("GET", "/api/v1/products/{product}", None, everyone(), mutates=False),
    Case(
        "POST",
        "/api/v1/brands/{brand}/products",
        lambda w: {"sku": "NEW-1", "title": "New", "price_minor": 100, "currency": "EUR", "stock": 1},
        only({"admin": 201, "staff": 201}),
    ),
    Case("PATCH", "/api/v1/products/{product}", lambda w: {"stock": 3}, only({"admin": 200, "staff": 200})),
    Case("DELETE", "/api/v1/products/{product}", None, only({"admin": 204, "staff": 204})),
    # rooms
    Case("GET", "/api/v1/rooms", None, everyone(), mutates=False),
    Case("GET", "/api/v1/rooms/{room}", None, everyone(), mutates=False),
    Case(
        "GET",
        "/api/v1/rooms/{private_room}",
        None,
        only({"admin": 200, "host": 200, "staff": 200}, others=404, anonymous=404),
        mutates=False,
    ),
    Case(
        "POST",
        "/api/v1/rooms",
        lambda w: {"title": "Mine", "scheduled_start": later()},
        only({"admin": 201, "host": 201, "other_host": 201}),
    ),
    Case("PATCH", "/api/v1/rooms/{room}", lambda w: {"title": "Renamed"}, only({"admin": 200, "host": 200})),
    Case(
        "PATCH",
        "/api/v1/rooms/{private_room}",
        lambda w: {"title": "Renamed"},
        # Staff of a featured brand can see the private room but not run it; to others it does not exist.
        only({"admin": 200, "host": 200, "staff": 403}, others=404, anonymous=404),
    ),
    Case("POST", "/api/v1/rooms/{room}/live", None, only({"admin": 200, "host": 200})),
    Case("POST", "/api/v1/rooms/{room}/end", None, only({"admin": 200, "host": 200})),
    Case("POST", "/api/v1/rooms/{other_room}/live", None, only({"admin": 200, "other_host": 200})),
    # flash sales: sale is a draft; scheduled_sale (invite list) and live_sale (codes) show in public rooms
    Case("GET", "/api/v1/sales", None, everyone(), mutates=False),
    Case(
        "GET",
        "/api/v1/sales/{sale}",
        None,
        only({"admin": 200, "staff": 200}, others=404, anonymous=404),
        mutates=False,
    ),
    Case("GET", "/api/v1/sales/{scheduled_sale}", None, everyone(), mutates=False),
    Case(
        "POST",
        "/api/v1/sales",
        lambda w: {
            "product_id": w.ids["sale_product"],
            "price_minor": 500,
            "quantity": 2,
            "per_buyer_limit": 1,
            "starts_at": later(30),
            "ends_at": later(90),
            "room_ids": [w.ids["room"]],
        },
        only({"admin": 201, "staff": 201}),
    ),
    Case(
        "PATCH",
        "/api/v1/sales/{sale}",
        lambda w: {"price_minor": 500},
        only({"admin": 200, "staff": 200}, others=404, anonymous=404),
    ),
    Case("POST", "/api/v1/sales/{sale}/schedule", None, only({"admin": 200, "staff": 200}, others=404, anonymous=404)),
    Case("POST", "/api/v1/sales/{sale}/cancel", None, only({"admin": 200, "staff": 200}, others=404, anonymous=404)),
    Case("POST", "/api/v1/sales/{scheduled_sale}/cancel", None, only({"admin": 200, "staff": 200})),
    Case("POST", "/api/v1/sales/{live_sale}/end", None, only({"admin": 200, "staff": 200})),
    Case(
        "POST",
        "/api/v1/sales/{scheduled_sale}/countdown",
        lambda w: {"room_id": w.ids["room"], "seconds": 30},
        # The room's host, not another host; those allowed get past the check to the rule that live_sale runs
        # in the room until after the countdown would end (a countdown cannot pull a sale into another's window).
        only({"admin": 409, "staff": 409, "host": 409}),
    ),
    Case("GET", "/api/v1/sales/{scheduled_sale}/invites", None, only({"admin": 200, "staff": 200}), mutates=False),
    Case("GET", "/api/v1/sales/{live_sale}/codes", None, only({"admin": 200, "staff": 200}), mutates=False),
    Case(
        "GET",
        "/api/v1/sales/{live_sale}/stats",
        None,
        only({"admin": 200, "staff": 200, "host": 200}),  # the host of a room showing it, not another host
        mutates=False,
    ),
    # orders: order is viewer's, of brand
    Case("GET", "/api/v1/orders", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case(
        "GET",
        "/api/v1/orders/{order}",
        None,
        only({"admin": 200, "staff": 200, "viewer": 200}, others=404),
        mutates=False,
    ),
    Case(
        "POST",
        "/api/v1/orders/{order}/refunds",
        lambda w: {"idempotency_key": "r-1", "amount_minor": 100},
        only({"admin": 201, "staff": 201, "viewer": 403}, others=404),
    ),
    Case(
        "GET",
        "/api/v1/orders/{order}/refunds",
        None,
        only({"admin": 200, "staff": 200, "viewer": 200}, others=404),
        mutates=False,
    ),
    Case("GET", "/api/v1/brands/{brand}/orders", None, only({"admin": 200, "staff": 200}), mutates=False),
    Case("GET", "/api/v1/brands/{brand}/orders.csv", None, only({"admin": 200, "staff": 200}), mutates=False),
    # statements: a creator's earnings only to that creator (and admins), a brand's to its staff (and admins)
    Case("GET", "/api/v1/creators/{host}/statement", None, only({"admin": 200, "host": 200}), mutates=False),
    Case("GET", "/api/v1/creators/{host}/statement.csv", None, only({"admin": 200, "host": 200}), mutates=False),
    Case("GET", "/api/v1/brands/{brand}/statement", None, only({"admin": 200, "staff": 200}), mutates=False),
    Case("GET", "/api/v1/brands/{brand}/statement.csv", None, only({"admin": 200, "staff": 200}), mutates=False),
    # buying: room is not live yet, so those who may see it are told so; holds live in Redis (none here)
    Case(
        "POST",
        "/api/v1/rooms/{room}/buy",
        lambda w: {"product_id": w.ids["sale_product"]},
        only({c: 409 for c in CALLERS if c != "anonymous"}),
    ),
    Case(
        "POST",
        "/api/v1/rooms/{private_room}/buy",
        lambda w: {"product_id": w.ids["product"]},
        only({"admin": 409, "host": 409, "staff": 409}, others=404),
    ),
    Case("GET", "/api/v1/holds/s{live_sale}.1", None, only({}, others=404), mutates=False),
    Case(
        "POST",
        "/api/v1/holds/s{live_sale}.1/checkout",
        lambda w: {"card_number": "4242424242424242"},
        only({}, others=404),
    ),
    Case("DELETE", "/api/v1/holds/s{live_sale}.1", None, only({}, others=404)),
    # marketplace: plan (brand's open plan; host applied, other_host approved), other_plan (other_brand's open
    # plan), targeted_plan (brand's, offered to other_host); application, partnership and offer are collaborations
    Case("GET", "/api/v1/plans", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case("GET", "/api/v1/plans/{plan}", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case(
        "GET",
        "/api/v1/plans/{targeted_plan}",
        None,
        only({"admin": 200, "staff": 200, "other_host": 200}, others=404),
        mutates=False,
    ),
    Case(
        "GET",
        "/api/v1/brands/{brand}/plans",
        None,
        only({c: 200 for c in CALLERS if c != "anonymous"}),
        mutates=False,
    ),
    Case(
        "POST",
        "/api/v1/brands/{brand}/plans",
        lambda w: {"kind": "open", "name": "Second"},
        only({"admin": 409, "staff": 409}),  # the brand already has its one open plan
    ),
    Case(
        "POST",
        "/api/v1/brands/{brand}/plans",
        lambda w: {
            "kind": "targeted",
            "name": "For host",
            "rates": [{"product_id": w.ids["product"], "rate_bps": 2000}],
            "creator_ids": [w.ids["host"]],
        },
        only({"admin": 201, "staff": 201}),
    ),
    Case(
        "PUT",
        "/api/v1/plans/{plan}/rates/{product}",
        lambda w: {"rate_bps": 2000},
        only({"admin": 200, "staff": 200}),
    ),
    Case(
        "PUT",
        "/api/v1/plans/{targeted_plan}/rates/{product}",
        lambda w: {"rate_bps": 500},
        only({"admin": 200, "staff": 200, "other_host": 403}, others=404),
    ),
    Case(
        "POST",
        "/api/v1/plans/{other_plan}/applications",
        lambda w: {"message": "I sell shoes"},
        only({"host": 201, "other_host": 201}),
    ),
    Case(
        "POST",
        "/api/v1/plans/{plan}/applications",
        lambda w: {},
        only({"host": 409, "other_host": 409}),  # already applied, already approved
    ),
    Case("GET", "/api/v1/collaborations", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case(
        "GET",
        "/api/v1/collaborations/{application}",
        None,
        only({"admin": 200, "staff": 200, "host": 200}, others=404),
        mutates=False,
    ),
    Case(
        "POST",
        "/api/v1/collaborations/{application}/approve",
        None,
        only({"admin": 200, "staff": 200, "host": 403}, others=404),
    ),
    Case(
        "POST",
        "/api/v1/collaborations/{application}/reject",
        lambda w: {"reason": "Not our style"},
        only({"admin": 200, "staff": 200, "host": 403}, others=404),
    ),
    Case(
        "POST",
        "/api/v1/collaborations/{offer}/accept",
        None,
        only({"other_host": 200, "admin": 403, "staff": 403}, others=404),
    ),
    Case(
        "POST",
        "/api/v1/collaborations/{offer}/decline",
        lambda w: {},
        only({"other_host": 200, "admin": 403, "staff": 403}, others=404),
    ),
    Case(
        "POST",
        "/api/v1/collaborations/{partnership}/end",
        lambda w: {"reason": "Season over"},
        only({"other_host": 200, "admin": 200, "staff": 200}, others=404),
    ),
    Case("GET", "/api/v1/fee-rules", None, only({"admin": 200}), mutates=False),
    Case(
        "POST",
        "/api/v1/fee-rules",
        lambda w: {"bps": 600, "base": "buyer_paid_plus_discount", "effective_from": later(10)},
        only({"admin": 201}),
    ),
    # vouchers: campaign (admin's), seller_voucher (brand's, on product), platform_voucher (co-funded under
    # campaign for brand), ended_voucher (brand's, ended: only its managers see it)
    Case("GET", "/api/v1/campaigns", None, only({"admin": 200}), mutates=False),
    Case(
        "POST",
        "/api/v1/campaigns",
        lambda w: {
            "name": "Sale days",
            "currency": "USD",
            "budget_minor": 5000,
            "starts_at": later(1),
            "ends_at": later(600),
        },
        only({"admin": 201}),
    ),
    Case("GET", "/api/v1/campaigns/{campaign}", None, only({"admin": 200}), mutates=False),
    Case("PATCH", "/api/v1/campaigns/{campaign}", lambda w: {"name": "Renamed"}, only({"admin": 200})),
    Case("POST", "/api/v1/campaigns/{campaign}/end", None, only({"admin": 200})),
    Case("GET", "/api/v1/campaigns/{campaign}/vouchers", None, only({"admin": 200}), mutates=False),
    Case(
        "POST",
        "/api/v1/campaigns/{campaign}/vouchers",
        lambda w: {
            "title": "5% off",
            "kind": "percent",
            "percent_bps": 500,
            "cap_minor": 300,
            "starts_at": later(1),
            "ends_at": later(600),
            "quota": 10,
            "funding": "platform",
            "budget_minor": 3000,
        },
        only({"admin": 201}),
    ),
    Case(
        "POST",
        "/api/v1/brands/{brand}/vouchers",
        lambda w: {
            "title": "1 off",
            "kind": "amount",
            "amount_minor": 100,
            "starts_at": later(1),
            "ends_at": later(600),
            "quota": 10,
            "product_id": w.ids["product"],
        },
        only({"admin": 201, "staff": 201}),
    ),
    Case(
        "POST",
        "/api/v1/brands/{brand}/vouchers",
        lambda w: {
            "title": "1 off",
            "kind": "amount",
            "amount_minor": 100,
            "starts_at": later(1),
            "ends_at": later(600),
            "quota": 10,
            "product_id": w.ids["other_product"],
        },
        only({"admin": 422, "staff": 422}),  # seller vouchers only for the brand's own products
    ),
    Case("GET", "/api/v1/brands/{brand}/vouchers", None, everyone(), mutates=False),
    Case("GET", "/api/v1/vouchers/{seller_voucher}", None, everyone(), mutates=False),
    Case("GET", "/api/v1/vouchers/{platform_voucher}", None, everyone(), mutates=False),
    Case(
        "GET",
        "/api/v1/vouchers/{ended_voucher}",
        None,
        only({"admin": 200, "staff": 200}, others=404, anonymous=404),
        mutates=False,
    ),
    Case("PATCH", "/api/v1/vouchers/{seller_voucher}", lambda w: {"quota": 50}, only({"admin": 200, "staff": 200})),
    Case("PATCH", "/api/v1/vouchers/{platform_voucher}", lambda w: {"quota": 50}, only({"admin": 200})),
    Case("POST", "/api/v1/vouchers/{seller_voucher}/end", None, only({"admin": 200, "staff": 200})),
    Case("POST", "/api/v1/vouchers/{platform_voucher}/end", None, only({"admin": 200})),
    # users
    Case("GET", "/api/v1/me", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case(
        "POST",
        "/api/v1/users",
        lambda w: {"email": "new@t.dev", "display_name": "New", "role": "viewer"},
        only({"admin": 201}),
    ),
    Case("POST", "/api/v1/users/{viewer}/token", None, only({"admin": 201}), mutates=False),
    Case("PUT", "/api/v1/users/{viewer}/role", lambda w: {"role": "host"}, only({"admin": 200})),
    Case(
        "PUT",
        "/api/v1/users/{viewer}/role",
        lambda w: {"role": "brand_staff", "brand_id": w.ids["other_brand"]},
        only({"admin": 200}),
    ),
    # An admin cannot lock themselves out (the seeded admin is also the only one: the last admin stays).
    Case("PUT", "/api/v1/users/{admin}/role", lambda w: {"role": "viewer"}, only({"admin": 409})),
    Case("POST", "/api/v1/users/{staff}/suspend", None, only({"admin": 200})),
    Case("POST", "/api/v1/users/{admin}/suspend", None, only({"admin": 409})),
    Case("POST", "/api/v1/users/{host}/reinstate", None, only({"admin": 200})),
    Case("DELETE", "/api/v1/users/{viewer}", None, only({"admin": 204})),
    Case("DELETE", "/api/v1/users/{admin}", None, only({"admin": 409})),
    # demo login exists only in demo mode
    Case("POST", "/api/v1/auth/demo-login", lambda w: {"email": "admin@t.dev"}, everyone(404), mutates=False),
    # voucher claims: room is not live yet, so those who may see it are told so (a claim needs the show on);
    # private_room does not exist to those who cannot see it; one's own claims to anyone signed in
    Case(
        "POST",
        "/api/v1/rooms/{room}/vouchers/{seller_voucher}/claims",
        lambda w: {"idempotency_key": "k1"},
        only({c: 409 for c in CALLERS if c != "anonymous"}),
    ),
    Case(
        "POST",
        "/api/v1/rooms/{private_room}/vouchers/{platform_voucher}/claims",
        lambda w: {"idempotency_key": "k1"},
        only({"admin": 409, "host": 409, "staff": 409}, others=404),
    ),
    Case("GET", "/api/v1/me/voucher-claims", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    # rankings: leaderboards to anyone signed in; a room's dashboard to its host, its brands' staff and admins
    # (every seeded room features brand); a brand's to its staff; a creator's to that creator (and admins)
    Case("GET", "/api/v1/rankings/creators", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case("GET", "/api/v1/rankings/brands", None, only({c: 200 for c in CALLERS if c != "anonymous"}), mutates=False),
    Case("GET", "/api/v1/rooms/{room}/dashboard", None, only({"admin": 200, "host": 200, "staff": 200}), mutates=False),
    Case(
        "GET",
        "/api/v1/rooms/{other_room}/dashboard",
        None,
        only({"admin": 200, "other_host": 200, "staff": 200}),
        mutates=False,
    ),
    Case(
        "GET",
        "/api/v1/rooms/{private_room}/dashboard",
        None,
        only({"admin": 200, "host": 200, "staff": 200}, others=404),
        mutates=False,
    ),
    Case("GET", "/api/v1/brands/{brand}/dashboard", None, only({"admin": 200, "staff": 200}), mutates=False),
    Case(
        "GET", "/api/v1/brands/{other_brand}/dashboard", None, only({"admin": 200, "other_staff": 200}), mutates=False
    ),
    Case("GET", "/api/v1/creators/{host}/dashboard", None, only({"admin": 200, "host": 200}), mutates=False),
    Case("GET", "/api/v1/creators/{viewer}/dashboard", None, only({"admin": 404, "viewer": 404}), mutates=False),
]


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_authorization_matrix(case: Case, client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world: World | None = None
    changed = False  # a refused call is proven below to change nothing: reseed only after one that succeeded
    failures = []
    for caller in CALLERS:
        if world is None or changed:
            await reset(engine)
            world = await seed_world(client, engine)
        before = await snapshot(engine)
        path = case.path.format(**world.ids)
        body = case.body(world) if case.body else None
        who = None if caller == "anonymous" else caller
        status, payload = await world.api.call(case.method, path, who=who, json=body)
        expected = case.expected[caller]
        changed = case.mutates and status < 400
        if status != expected:
            failures.append(f"{caller}: expected {expected}, got {status}: {payload}")
            continue
        if status >= 400:
            assert payload["status"] == status
            assert payload["detail"], "a refusal must say why"
            assert await snapshot(engine) == before, f"{caller}'s refused {case} changed the database"
    assert not failures, f"{case}:\n  " + "\n  ".join(failures)


async def test_private_rooms_are_listed_only_to_those_who_may_see_them(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    private = world.ids["private_room"]
    for caller in CALLERS:
        who = None if caller == "anonymous" else caller
        page = await world.api.ok("GET", "/api/v1/rooms?limit=100", who=who)
        listed = private in {room["id"] for room in page["items"]}
        assert listed == (caller in {"admin", "host", "staff"}), caller


async def test_a_token_for_a_deleted_identity_or_tampered_token_is_refused(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    token = world.api.tokens["viewer"]
    header, _, signature = token.split(".")
    # Re-sign nothing: swap the payload for the admin's, keeping the viewer's signature.
    admin_payload = world.api.tokens["admin"].split(".")[1]
    world.api.tokens["forged"] = f"{header}.{admin_payload}.{signature}"
    status, body = await world.api.call("POST", "/api/v1/brands", who="forged", json={"name": "Evil"})
    assert status == 401
    assert "signature" in body["detail"]
    world.api.tokens["garbage"] = "not-a-token"
    status, body = await world.api.call("GET", "/api/v1/brands", who="garbage")
    assert status == 401
    status, body = await world.api.call("GET", "/api/v1/brands", headers={"Authorization": "Basic abc"})
    assert status == 401
    assert "Bearer" in body["detail"]


def test_every_route_is_in_the_matrix() -> None:
    """A new route cannot ship without its row: each documented route matches at least one case."""
    covered = {(case.method, case.path) for case in CASES}
    missing = []
    for endpoint in ENDPOINTS:
        pattern = re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(endpoint.path)))
        if not any(method == endpoint.method and pattern.fullmatch(path) for method, path in covered):
            missing.append(f"{endpoint.method} {endpoint.path}")
    assert not missing, "routes without an authorisation case: " + ", ".join(missing)
