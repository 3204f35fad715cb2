"""Campaigns and vouchers (`commerce.vouchers`): budget use, the allotment invariant under concurrent creates,
the rules of each kind of voucher and their refusals, who sees what, ending, and the CHECK constraints.

The seeded world (tests/support/voucher_world.py) has `campaign` (budget 100 000, USD), `seller_voucher`
(brand's, 200 off sale_product), `platform_voucher` (co-funded, allotted 10 000) and `ended_voucher`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.voucher_price import VoucherTerms
from livecommerce.commerce.vouchers import VoucherDraft
from livecommerce.database import session_factory
from livecommerce.errors import Conflict, InvalidRequest
from livecommerce.models import Funding, Order, Role, Voucher, VoucherKind, VoucherStatus
from tests.support.world import World, later, seed_world

Client = TestClient[Request, Application]


def _amount_body(**extra: Any) -> dict[str, Any]:
    return {"title": "1 off", "kind": "amount", "amount_minor": 100, "starts_at": later(1), "ends_at": later(600),
            "quota": 10, **extra}  # fmt: skip


def _percent_body(**extra: Any) -> dict[str, Any]:
    return {"title": "5% off", "kind": "percent", "percent_bps": 500, "cap_minor": 300, "starts_at": later(1),
            "ends_at": later(600), "quota": 10, "funding": "platform", "budget_minor": 3000, **extra}  # fmt: skip


async def _campaign(w: World, budget: int) -> int:
    body = {"name": "Days", "currency": "USD", "budget_minor": budget, "starts_at": later(-1), "ends_at": later(6000)}
    created = await w.api.ok("POST", "/api/v1/campaigns", who="admin", json=body, status=201)
    return int(created["id"])


async def _problem(w: World, method: str, path: str, body: Any, status: int, *, who: str = "admin") -> str:
    got, problem = await w.api.call(method, path, who=who, json=body)
    assert got == status, problem
    return str(problem["detail"])


async def test_a_campaign_shows_its_budget_use_and_refuses_over_allotting(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    campaign = await _campaign(w, 10_000)
    path = f"/api/v1/campaigns/{campaign}"
    assert (await w.api.ok("GET", path, who="admin"))["unallotted_minor"] == 10_000
    first = await w.api.ok("POST", f"{path}/vouchers", who="admin", json=_percent_body(budget_minor=6000), status=201)
    assert (first["budget_minor"], first["worst_cost_minor"], first["brand_id"]) == (6000, 300, None)
    view = await w.api.ok("GET", path, who="admin")
    assert (view["allotted_minor"], view["unallotted_minor"]) == (6000, 4000)
    detail = await _problem(w, "POST", f"{path}/vouchers", _percent_body(budget_minor=4001), 409)
    assert "4000 of its budget 10000 unallotted" in detail
    await w.api.ok("POST", f"{path}/vouchers", who="admin", json=_percent_body(budget_minor=4000), status=201)
    # The budget cannot fall below what is allotted; an allotment rises only as far as the campaign has free.
    assert "10000 allotted" in await _problem(w, "PATCH", path, {"budget_minor": 9999}, 409)
    voucher = f"/api/v1/vouchers/{first['id']}"
    assert "at most 6000 of its budget 10000" in await _problem(w, "PATCH", voucher, {"budget_minor": 6001}, 409)
    await w.api.ok("PATCH", path, json={"budget_minor": 12_000}, who="admin")
    assert "must still hold them" in await _problem(w, "PATCH", path, {"ends_at": later(300)}, 409)
    assert (await w.api.ok("PATCH", voucher, json={"budget_minor": 8000}, who="admin"))["budget_minor"] == 8000
    assert (await w.api.ok("GET", path, who="admin"))["unallotted_minor"] == 0
    # Down only within the unused part: what the claims hold (from Redis once claims are wired).
    admin = Principal(w.ids["admin"], Role.ADMIN)
    async with session_factory(engine)() as session:
        with pytest.raises(Conflict, match="to 5000 at the least"):
            await vouchers.update_voucher(session, admin, first["id"], {"budget_minor": 4999}, used_minor=5000)
    assert (await w.api.ok("PATCH", voucher, json={"budget_minor": 300}, who="admin"))["budget_minor"] == 300
    assert (await w.api.ok("GET", path, who="admin"))["unallotted_minor"] == 7700


async def test_concurrent_creates_never_allot_more_than_the_campaign_budget(
    client: Client, engine: AsyncEngine
) -> None:
    w = await seed_world(client, engine)
    campaign = await _campaign(w, 10 * 1000)
    admin = Principal(w.ids["admin"], Role.ADMIN)
    now = datetime.now(UTC)
    draft = VoucherDraft(title="Burst", kind=VoucherKind.AMOUNT, amount_minor=100, starts_at=now,
                         ends_at=now + timedelta(hours=1), quota=10)  # fmt: skip

    async def create() -> bool:
        try:
            async with session_factory(engine).begin() as session:
                await vouchers.create_campaign_voucher(
                    session, admin, campaign, draft, funding=Funding.PLATFORM, budget_minor=1000
                )
        except Conflict:
            return False
        return True

    results = await asyncio.gather(*(create() for _ in range(25)))
    assert results.count(True) == 10
    async with session_factory(engine)() as session:
        query = select(func.count(), func.sum(Voucher.budget_minor)).where(Voucher.campaign_id == campaign)
        assert tuple((await session.execute(query)).one()) == (10, 10_000)


async def test_concurrent_allotment_raises_never_exceed_the_campaign_budget(
    client: Client, engine: AsyncEngine
) -> None:
    w = await seed_world(client, engine)
    campaign = await _campaign(w, 15_000)
    made = [
        await w.api.ok("POST", f"/api/v1/campaigns/{campaign}/vouchers", who="admin", status=201,
                       json=_percent_body(budget_minor=1000))
        for _ in range(8)
    ]  # fmt: skip
    admin = Principal(w.ids["admin"], Role.ADMIN)

    async def raise_to(voucher_id: int, budget: int) -> bool:
        try:
            async with session_factory(engine).begin() as session:
                await vouchers.update_voucher(session, admin, voucher_id, {"budget_minor": budget})
        except Conflict:
            return False
        return True

    # Each raise alone fits (8000 + the seven others' 7000); no two together do.
    results = await asyncio.gather(*(raise_to(v["id"], 8000) for v in made))
    assert results.count(True) == 1
    view = await w.api.ok("GET", f"/api/v1/campaigns/{campaign}", who="admin")
    assert (view["allotted_minor"], view["unallotted_minor"]) == (15_000, 0)


async def test_seller_vouchers_are_for_the_brands_own_products(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    path = f"/api/v1/brands/{w.ids['brand']}/vouchers"
    made = await w.api.ok("POST", path, who="staff", json=_amount_body(product_id=w.ids["product"]), status=201)
    assert (made["funding"], made["currency"], made["platform_share_bps"], made["budget_minor"]) == (
        "seller", "USD", 0, 0,
    )  # fmt: skip
    refusals = [
        (_amount_body(product_id=w.ids["other_product"]), "belongs to brand"),
        (_amount_body(), "names a currency"),
        (_amount_body(product_id=w.ids["product"], currency="EUR"), "priced in USD"),
        (_amount_body(percent_bps=100), "for percent vouchers"),
        ({**_amount_body(), "kind": "percent", "amount_minor": None, "percent_bps": 100}, "needs percent_bps and cap"),
        (_amount_body(currency="USD", quota=2, per_buyer_limit=3), "per_buyer_limit is 3"),
        (_amount_body(currency="USD", ends_at=later(-5), starts_at=later(-10)), "in the past"),
        (_amount_body(currency="USD", ends_at=later(1), starts_at=later(2)), "after starts_at"),
    ]
    for body, reason in refusals:
        assert reason in await _problem(w, "POST", path, body, 422, who="staff"), body
    brand_wide = await w.api.ok("POST", path, who="staff", json=_amount_body(currency="USD"), status=201)
    assert brand_wide["product_id"] is None
    assert await _problem(w, "POST", path, _amount_body(currency="USD"), 403, who="other_staff")


async def test_campaign_vouchers_follow_their_funding_and_their_campaign(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    path = f"/api/v1/campaigns/{w.ids['campaign']}/vouchers"
    refusals = [
        (_percent_body(funding="co", platform_share_bps=4000), "names the brand"),
        (_percent_body(funding="seller"), "created under its brand"),
        (_percent_body(platform_share_bps=5000), "100% the platform's"),
        (_percent_body(funding="co", platform_share_bps=10_000, brand_id=w.ids["brand"]), "platform_share_bps is"),
        (_percent_body(ends_at=later(60 * 24 * 8)), "must lie within it"),
        (_percent_body(budget_minor=299), "worst cost, 300"),
        (_percent_body(brand_id=w.ids["brand"], product_id=w.ids["other_product"]), "belongs to brand"),
    ]
    for body, reason in refusals:
        assert reason in await _problem(w, "POST", path, body, 422), body
    # A platform voucher for a product is that product's brand's; a co-funded one splits its worst cost.
    made = await w.api.ok("POST", path, who="admin", json=_percent_body(product_id=w.ids["product"]), status=201)
    assert made["brand_id"] == w.ids["brand"]
    co = await w.api.ok(
        "POST", path, who="admin", status=201,
        json=_percent_body(funding="co", platform_share_bps=2500, brand_id=w.ids["other_brand"]),
    )  # fmt: skip
    assert (co["worst_cost_minor"], co["platform_share_bps"]) == (75, 2500)
    # Ending the campaign ends its vouchers, and it takes no new ones.
    ended = await w.api.ok("POST", f"/api/v1/campaigns/{w.ids['campaign']}/end", who="admin")
    assert ended["status"] == "ended"
    listed = await w.api.ok("GET", f"/api/v1/campaigns/{w.ids['campaign']}/vouchers", who="admin")
    assert [v["status"] for v in listed["items"]] == ["ended"] * 3
    assert "has ended" in await _problem(w, "POST", path, _percent_body(), 409)
    assert "already ended" in await _problem(w, "POST", f"/api/v1/campaigns/{w.ids['campaign']}/end", None, 409)


async def test_public_terms_for_everyone_budget_for_managers(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    co = f"/api/v1/vouchers/{w.ids['platform_voucher']}"
    public = await w.api.ok("GET", co)
    assert (public["percent_bps"], public["cap_minor"], public["budget_minor"], public["campaign_id"]) == (
        1000, 500, None, None,
    )  # fmt: skip
    assert (await w.api.ok("GET", co, who="staff"))["budget_minor"] is None  # a co voucher is the platform's
    managed = await w.api.ok("GET", co, who="admin")
    assert (managed["budget_minor"], managed["worst_cost_minor"], managed["campaign_id"]) == (
        10_000, 250, w.ids["campaign"],
    )  # fmt: skip
    listing = f"/api/v1/brands/{w.ids['brand']}/vouchers"
    seen = {v["id"] for v in (await w.api.ok("GET", listing))["items"]}
    assert seen == {w.ids["seller_voucher"], w.ids["platform_voucher"]}
    seen = {v["id"] for v in (await w.api.ok("GET", listing, who="staff"))["items"]}
    assert seen == {w.ids["seller_voucher"], w.ids["platform_voucher"], w.ids["ended_voucher"]}
    assert (await w.api.call("GET", f"/api/v1/brands/{w.ids['other_brand']}/vouchers"))[1]["items"] == []


async def test_only_the_window_quota_and_limits_change_and_ending_is_final(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    path = f"/api/v1/vouchers/{w.ids['seller_voucher']}"
    changed = await w.api.ok("PATCH", path, who="staff", json={"quota": 5, "per_buyer_limit": 2, "title": "New"})
    assert (changed["quota"], changed["per_buyer_limit"], changed["title"], changed["amount_minor"]) == (
        5,
        2,
        "New",
        200,
    )
    assert "per_buyer_limit is 6" in await _problem(w, "PATCH", path, {"per_buyer_limit": 6}, 422, who="staff")
    assert "amount_minor" in await _problem(w, "PATCH", path, {"amount_minor": 1}, 422)  # not a field of the update
    assert "no campaign budget" in await _problem(w, "PATCH", path, {"budget_minor": 5}, 422)
    staff = Principal(w.ids["staff"], Role.BRAND_STAFF, w.ids["brand"])
    async with session_factory(engine)() as session:
        with pytest.raises(InvalidRequest, match="cap_minor never changes"):
            await vouchers.update_voucher(session, staff, w.ids["seller_voucher"], {"cap_minor": 1})
    ended = await w.api.ok("POST", f"{path}/end", who="staff")
    assert ended["status"] == "ended"
    assert "has ended" in await _problem(w, "PATCH", path, {"quota": 9}, 409, who="staff")
    assert "already ended" in await _problem(w, "POST", f"{path}/end", None, 409, who="staff")
    assert (await w.api.call("GET", path, who="viewer"))[0] == 404  # ended: only its managers see it


async def test_voucher_terms_and_the_orders_buyer_paid(client: Client, engine: AsyncEngine) -> None:
    w = await seed_world(client, engine)
    async with session_factory(engine)() as session:
        voucher = await session.get(Voucher, w.ids["platform_voucher"])
        assert voucher is not None
        assert vouchers.voucher_terms(voucher) == VoucherTerms(
            voucher.id, VoucherKind.PERCENT, 0, 1000, 500, 0, 5000, "USD"
        )
        order = await session.get(Order, w.ids["order"])
        assert order is not None
        assert (order.seller_discount_minor, order.buyer_paid_minor) == (0, 999)
        order.seller_discount_minor, order.platform_discount_minor = 200, 100
        assert order.buyer_paid_minor == 699


_BAD_ROWS = [
    {"funding": Funding.SELLER, "platform_share_bps": 0, "campaign": True},  # a seller voucher has no campaign
    {"funding": Funding.PLATFORM, "platform_share_bps": 10_000, "campaign": False},  # a platform one needs one
    {"funding": Funding.CO, "platform_share_bps": 10_000, "campaign": True},  # co: 1-9999
    {"funding": Funding.SELLER, "platform_share_bps": 0, "percent_bps": 5},  # amount with a percent
    {"funding": Funding.SELLER, "platform_share_bps": 0, "quota": 0},
    {"funding": Funding.SELLER, "platform_share_bps": 0, "ends_at": -1},
]


@pytest.mark.parametrize("bad", _BAD_ROWS, ids=str)
async def test_the_database_refuses_inconsistent_vouchers(
    bad: dict[str, Any], client: Client, engine: AsyncEngine
) -> None:
    w = await seed_world(client, engine)
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "title": "Raw", "kind": VoucherKind.AMOUNT, "amount_minor": 100, "percent_bps": 0, "cap_minor": 100,
        "min_spend_minor": 0, "currency": "USD", "starts_at": now, "ends_at": now + timedelta(hours=1), "quota": 1,
        "per_buyer_limit": 1, "min_account_age_days": 0, "brand_id": w.ids["brand"], "budget_minor": 0,
        "status": VoucherStatus.ACTIVE, "created_by": w.ids["admin"],
    }  # fmt: skip
    async with session_factory(engine).begin() as session:  # the control: these fields alone are a valid row
        session.add(Voucher(**fields, funding=Funding.SELLER, platform_share_bps=0))
    row = dict(bad)
    if row.pop("campaign", False):
        fields["campaign_id"] = w.ids["campaign"]
    if row.get("ends_at") == -1:
        row["ends_at"] = now - timedelta(seconds=1)
    with pytest.raises(IntegrityError):
        async with session_factory(engine).begin() as session:
            session.add(Voucher(**{**fields, **row}))
