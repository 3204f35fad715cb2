"""The populated system most tests start from: an API client that signs requests as any seeded user, and the
seeded world (every role, two brands, two hosts, products, rooms and flash sales)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce import catalog, users
from livecommerce.auth import Principal, TokenSigner
from livecommerce.commerce import collaborations, sales
from livecommerce.commerce.payments import TestModeProvider
from livecommerce.database import session_factory
from livecommerce.models import CollaborationStatus, Order, OrderStatus, PlanKind, Role, SaleAudience, SaleCode
from livecommerce.state import REDIS
from tests.support.voucher_world import seed_vouchers

SECRET = "test-secret-" + "x" * 40


def later(minutes: int = 60) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


@dataclass
class Api:
    """Calls the API as some user (or anonymously) and returns (status, JSON body)."""

    client: TestClient[Any, Any]
    tokens: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, *, who: str | None = None, json: Any = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        async with self.client.request(method, path, headers=headers, json=json, **kwargs) as response:
            body: Any = None
            if response.content_length == 0:
                pass
            elif "json" in response.content_type:
                body = await response.json(content_type=None)
            else:  # a CSV export
                body = await response.text()
            return response.status, body

    async def ok(self, method: str, path: str, *, who: str | None = None, json: Any = None, status: int = 200) -> Any:
        got, body = await self.call(method, path, who=who, json=json)
        assert got == status, f"{method} {path} as {who}: expected {status}, got {got}: {body}"
        return body


@dataclass
class World:
    """A populated system: every role, two brands, two hosts, products and rooms. Names index `ids`."""

    api: Api
    ids: dict[str, int]


async def seed_world(client: TestClient[Any, Any], engine: AsyncEngine) -> World:
    """Users: admin, host, other_host, staff (of brand), other_staff (of other_brand), viewer.

    Products: product (of brand), other_product (of other_brand). Rooms: room (host's, public, featuring
    brand), private_room (host's, private, featuring brand), other_room (other_host's, public).
    Flash sales of sale_product (brand's, stock 10): sale (draft, open, in room, starts in two hours, after
    scheduled_sale ends), scheduled_sale (invite_list of viewer, in room and private_room, starts in an hour),
    live_sale (invite_codes, in room, started a minute ago); order: viewer's paid order of one unit of
    live_sale, which redeemed one of its codes, charged by the test-mode provider (so it can be refunded).
    Marketplace: plan (brand's open plan, sale_product at 10%), other_plan (other_brand's open plan, other_product),
    targeted_plan (brand's, sale_product at 15%, offered to other_host); collaborations: application (host applied
    to plan), partnership (other_host approved on plan), offer (other_host's offer of targeted_plan).
    """
    signer = TokenSigner(SECRET, 3600)
    api = Api(client)
    ids: dict[str, int] = {}
    async with session_factory(engine).begin() as session:
        admin = await users.create_user(session, None, email="admin@t.dev", display_name="Admin", role=Role.ADMIN,
                                        brand_id=None)  # fmt: skip
    ids["admin"] = admin.id
    api.tokens["admin"] = signer.issue(admin.id, Role.ADMIN)
    for name in ("brand", "other_brand"):
        body = await api.ok("POST", "/api/v1/brands", who="admin", json={"name": name.title()}, status=201)
        ids[name] = body["id"]
    people = [
        ("host", Role.HOST, None),
        ("other_host", Role.HOST, None),
        ("staff", Role.BRAND_STAFF, "brand"),
        ("other_staff", Role.BRAND_STAFF, "other_brand"),
        ("viewer", Role.VIEWER, None),
    ]
    for name, role, brand in people:
        payload: dict[str, Any] = {"email": f"{name}@t.dev", "display_name": name.title(), "role": role.value}
        if brand is not None:
            payload["brand_id"] = ids[brand]
        body = await api.ok("POST", "/api/v1/users", who="admin", json=payload, status=201)
        ids[name] = body["id"]
        api.tokens[name] = signer.issue(body["id"], role, ids[brand] if brand else None)
    for name, brand in (("product", "brand"), ("other_product", "other_brand")):
        body = await api.ok(
            "POST", f"/api/v1/brands/{ids[brand]}/products", who="admin", status=201,
            json={"sku": f"SKU-{name}", "title": name.title(), "price_minor": 1999, "currency": "USD", "stock": 10},
        )  # fmt: skip
        ids[name] = body["id"]
    rooms = [("room", "host", "public"), ("private_room", "host", "private"), ("other_room", "other_host", "public")]
    for name, host, visibility in rooms:
        body = await api.ok(
            "POST", "/api/v1/rooms", who=host, status=201,
            json={"title": name, "scheduled_start": later(), "brand_ids": [ids["brand"]], "visibility": visibility},
        )  # fmt: skip
        ids[name] = body["id"]
    await _seed_sales(api, engine, ids)
    await _seed_marketplace(engine, ids)
    await seed_vouchers(engine, ids)  # campaign, seller_voucher, platform_voucher, ended_voucher
    await TestModeProvider(client.app[REDIS]).charge(f"s{ids['live_sale']}.1", 999, "USD", "4242424242424242")
    return World(api, ids)


async def _seed_sales(api: Api, engine: AsyncEngine, ids: dict[str, int]) -> None:
    """Through the domain layer in one transaction: the world is seeded for most tests, so it must be quick."""
    staff = Principal(ids["staff"], Role.BRAND_STAFF, ids["brand"])
    now = datetime.now(UTC)
    hour = timedelta(hours=1)
    async with session_factory(engine).begin() as session:
        product = await catalog.create_product(
            session, staff, ids["brand"],
            {"sku": "SKU-sale", "title": "On sale", "price_minor": 2999, "currency": "USD", "stock": 10},
        )  # fmt: skip
        ids["sale_product"] = product.id
        plans: list[tuple[str, dict[str, Any]]] = [
            ("sale", {"quantity": 3, "starts_at": now + 2 * hour, "room_ids": [ids["room"]]}),  # after scheduled_sale
            ("scheduled_sale", {"quantity": 2, "starts_at": now + hour, "audience": SaleAudience.INVITE_LIST,
                                "room_ids": [ids["room"], ids["private_room"]], "invitee_ids": [ids["viewer"]]}),
            ("live_sale", {"quantity": 2, "starts_at": now - timedelta(minutes=1),
                           "audience": SaleAudience.INVITE_CODES, "room_ids": [ids["room"]], "code_count": 3}),
        ]  # fmt: skip
        for name, plan in plans:
            fields: dict[str, Any] = {
                "product_id": product.id, "price_minor": 999, "per_buyer_limit": 1, "ends_at": plan["starts_at"] + hour,
                "hold_seconds": 300, "audience": SaleAudience.OPEN, "invitee_ids": [], "code_count": 0, **plan,
            }  # fmt: skip
            view = await sales.create_sale(session, staff, **fields)
            ids[name] = view.id
            if name != "sale":
                await sales.schedule_sale(session, staff, view.id)
        assert await sales.mark_live(session, ids["live_sale"])
        order = Order(
            hold_id=f"s{ids['live_sale']}.1", pool=f"s{ids['live_sale']}", sale_id=ids["live_sale"],
            product_id=product.id, brand_id=ids["brand"], room_id=ids["room"], buyer_id=ids["viewer"],
            quantity=1, unit_price_minor=999, total_minor=999, currency="USD", status=OrderStatus.PAID,
            payment_ref="test_1", held_at=now, expires_at=now + timedelta(minutes=5), paid_at=now, updated_at=now,
        )  # fmt: skip
        session.add(order)
        code = await session.scalar(select(SaleCode).where(SaleCode.sale_id == ids["live_sale"]).limit(1))
        assert code is not None
        code.redeemed_hold = order.hold_id
        await session.flush()
        ids["order"] = order.id


async def _seed_marketplace(engine: AsyncEngine, ids: dict[str, int]) -> None:
    """Plans and collaborations through the domain layer, in one transaction."""
    staff = Principal(ids["staff"], Role.BRAND_STAFF, ids["brand"])
    other_staff = Principal(ids["other_staff"], Role.BRAND_STAFF, ids["other_brand"])
    host = Principal(ids["host"], Role.HOST)
    other_host = Principal(ids["other_host"], Role.HOST)
    async with session_factory(engine).begin() as session:
        plans = [
            ("plan", staff, "brand", PlanKind.OPEN, [(ids["sale_product"], 1000)], []),
            ("other_plan", other_staff, "other_brand", PlanKind.OPEN, [(ids["other_product"], 500)], []),
            ("targeted_plan", staff, "brand", PlanKind.TARGETED, [(ids["sale_product"], 1500)], [ids["other_host"]]),
        ]
        for name, who, brand, kind, rates, creators in plans:
            view = await collaborations.create_plan(
                session, who, ids[brand], kind=kind, name=name, rates=rates, creator_ids=creators
            )
            ids[name] = view.plan.id
        ids["application"] = (await collaborations.apply(session, host, ids["plan"], "")).collaboration.id
        partnership = await collaborations.apply(session, other_host, ids["plan"], "")
        ids["partnership"] = partnership.collaboration.id
        await collaborations.approve(session, staff, ids["partnership"])
        offers = await collaborations.list_collaborations(session, other_host, status=CollaborationStatus.OFFERED)
        ids["offer"] = offers[0].collaboration.id
