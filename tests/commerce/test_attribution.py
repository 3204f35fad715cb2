"""Attribution: every hold snapshots who sells (the room's host), under which collaboration and commission rate,
and which platform fee, at the moment it is made; creators sell what they collaborate on in their own rooms.

Real Redis and both databases; buys go through REST and the host's pin through a socket. Plans, rates,
collaborations and fee rules are written as rows here (their REST is the marketplace's, tested there); after
each change the test calls `Buying.forget_offers()`, as that REST does once its change commits.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce.buying import BUYING, Buying
from livecommerce.commerce.orders import apply_holds
from livecommerce.commerce.pools import Hold, PoolId
from livecommerce.commerce.terms import DEFAULT_FEE_BPS, SaleTerms
from livecommerce.database import session_factory
from livecommerce.models import (
    Collaboration,
    CollaborationStatus,
    CommissionPlan,
    FeeBase,
    FeeRule,
    LedgerAccount,
    LedgerLine,
    Order,
    PlanKind,
    PlanRate,
    Role,
)
from tests.support.shop import outbox_entries
from tests.support.sockets import Client, Viewer, viewer_in
from tests.support.world import World

Pair = tuple[World, str, str, list[Viewer]]
LOCK = timedelta(days=30)


# --- rows the marketplace's REST would write ------------------------------------------------------------------


async def plan(engine: AsyncEngine, world: World, kind: PlanKind = PlanKind.OPEN) -> int:
    """A plan of `other_brand` (featured in no room): its creators sell its products only by collaborating."""
    brand = world.ids["other_brand"]
    async with session_factory(engine).begin() as session:
        if kind is PlanKind.OPEN:  # the world seeds other_brand's open plan: start it over without its rates
            await session.execute(delete(PlanRate).where(PlanRate.plan_id == world.ids["other_plan"]))
            return world.ids["other_plan"]
        row = CommissionPlan(
            brand_id=brand, kind=kind, name=f"{kind.value} plan", created_by=world.ids["admin"],
            open_brand_id=None,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return row.id


async def set_rate(
    engine: AsyncEngine,
    world: World,
    plan_id: int,
    rate_bps: int,
    *,
    at: datetime,
    effective_at: datetime | None = None,
) -> None:
    async with session_factory(engine).begin() as session:
        session.add(
            PlanRate(
                plan_id=plan_id, product_id=world.ids["other_product"], rate_bps=rate_bps, set_at=at,
                effective_at=effective_at or at, set_by=world.ids["admin"],
            )
        )  # fmt: skip


async def approve(engine: AsyncEngine, world: World, plan_id: int, creator: str, *, at: datetime) -> int:
    async with session_factory(engine).begin() as session:
        row = Collaboration(
            plan_id=plan_id, brand_id=world.ids["other_brand"], creator_id=world.ids[creator],
            status=CollaborationStatus.APPROVED, decided_at=at, approved_at=at,
        )  # fmt: skip
        session.add(row)
        await session.flush()
        return row.id


async def collaborating(engine: AsyncEngine, world: World, creator: str, rate_bps: int) -> int:
    """`creator` approved on other_brand's open plan, with `rate_bps` on other_product since a minute ago."""
    minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    plan_id = await plan(engine, world)
    await set_rate(engine, world, plan_id, rate_bps, at=minute_ago)
    return await approve(engine, world, plan_id, creator, at=minute_ago)


# --- buying ---------------------------------------------------------------------------------------------------


def buying(client: Client) -> Buying:
    return client.app[BUYING]


async def buy(world: World, room: str, *, expect: int = 201) -> Any:
    status, body = await world.api.call(
        "POST", f"/api/v1/rooms/{world.ids[room]}/buy", who="viewer", json={"product_id": world.ids["other_product"]}
    )
    assert status == expect, body
    return body


async def hold_of(client: Client, body: Any) -> Hold:
    """The hold as Redis keeps it (what the outbox carries to the order writer)."""
    hold = await buying(client).inventory.hold(PoolId.parse(body["id"]), body["id"])
    assert hold is not None
    return hold


def creator_terms(world: World, creator: str, collaboration: int | None, rate_bps: int) -> SaleTerms:
    return SaleTerms(world.ids[creator], collaboration, rate_bps, None, DEFAULT_FEE_BPS, FeeBase.BUYER_PAID)


async def live(world: World, room: str, host: str) -> None:
    if room != "room":  # `pair` started `room`
        await world.api.ok("POST", f"/api/v1/rooms/{world.ids[room]}/live", who=host)


async def paid_and_written(client: Client, engine: AsyncEngine, *bodies: Any) -> dict[str, tuple[int, int]]:
    """Pay the holds, run the order writer over their pool's outbox; returns each order's (commission_bps, creator
    commission posted) by hold id, as SQL has them."""
    shop = buying(client)
    pools = set()
    for body in bodies:
        hold = await hold_of(client, body)
        await shop.checkout(Principal(hold.buyer_id, Role.VIEWER, None), hold.id, "4242 4242 4242 4242")
        pools.add(hold.pool)
    async with session_factory(engine).begin() as session:
        for pool in sorted(pools, key=lambda p: p.name):
            records = [Hold.from_json(fields[b"data"]) for fields in await outbox_entries(shop.inventory.redis, pool)]
            await apply_holds(session, records)
    async with session_factory(engine)() as session:
        orders = {o.hold_id: o for o in (await session.scalars(select(Order))).all()}
        lines = (
            await session.scalars(select(LedgerLine).where(LedgerLine.account == LedgerAccount.CREATOR_COMMISSION))
        ).all()
    earned = {line.order_id: line.amount_minor for line in lines}
    return {body["id"]: (orders[body["id"]].commission_bps, earned.get(orders[body["id"]].id, 0)) for body in bodies}


# --- the tests ------------------------------------------------------------------------------------------------


async def test_a_collaborating_creator_pins_and_sells_a_brand_their_room_does_not_feature(
    pair: Pair, client: Client, engine: AsyncEngine
) -> None:
    world, a, _, viewers = pair
    await live(world, "other_room", "other_host")
    collaboration = await collaborating(engine, world, "host", 1500)
    product = world.ids["other_product"]
    host, _ = await viewer_in(viewers, a, world.ids["room"], world.api.tokens["host"])
    pinned = await host.call("pin", {"room_id": world.ids["room"], "product_id": product})
    assert pinned["ok"], pinned
    hold = await hold_of(client, await buy(world, "room"))
    assert (hold.room_id, hold.brand_id) == (world.ids["room"], world.ids["other_brand"])
    assert hold.terms == creator_terms(world, "host", collaboration, 1500)
    # The other host has no collaboration with that brand, and their room does not feature it: no pin, no sale.
    other, _ = await viewer_in(viewers, a, world.ids["other_room"], world.api.tokens["other_host"])
    refused = await other.call("pin", {"room_id": world.ids["other_room"], "product_id": product})
    assert refused["error"]["code"] == "forbidden", refused
    body = await buy(world, "other_room", expect=403)
    assert "apply to the brand's open plan" in body["detail"], body
    assert "feature the brand" in body["detail"], body
    # A featured brand's product still sells without a collaboration (the host only applied to the brand's
    # plan), attributed to the host at no commission.
    status, featured = await world.api.call(
        "POST", f"/api/v1/rooms/{world.ids['room']}/buy", who="viewer", json={"product_id": world.ids["product"]}
    )
    assert status == 201, featured
    assert (await hold_of(client, featured)).terms == creator_terms(world, "host", None, 0)


async def test_two_creators_selling_one_product_at_once_each_earn_on_their_own_room(
    pair: Pair, client: Client, engine: AsyncEngine
) -> None:
    world, *_ = pair
    await live(world, "other_room", "other_host")
    minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    open_plan = await plan(engine, world)
    await set_rate(engine, world, open_plan, 1500, at=minute_ago)
    ours = await approve(engine, world, open_plan, "host", at=minute_ago)
    await approve(engine, world, open_plan, "other_host", at=minute_ago)
    targeted = await plan(engine, world, PlanKind.TARGETED)  # the other host's own offer overrides the open rate
    await set_rate(engine, world, targeted, 2500, at=minute_ago)
    theirs = await approve(engine, world, targeted, "other_host", at=minute_ago)
    bodies = await asyncio.gather(*(buy(world, room) for room in ("room", "other_room") * 3))
    holds = [await hold_of(client, body) for body in bodies]
    assert len({hold.id for hold in holds}) == 6, "one pool (the product's), six holds"
    for hold in holds:
        if hold.room_id == world.ids["room"]:
            assert hold.terms == creator_terms(world, "host", ours, 1500), hold
        else:
            assert hold.room_id == world.ids["other_room"], hold
            assert hold.terms == creator_terms(world, "other_host", theirs, 2500), hold


async def test_a_rate_change_mid_show_reaches_only_later_holds(pair: Pair, client: Client, engine: AsyncEngine) -> None:
    world, *_ = pair
    collaboration = await collaborating(engine, world, "host", 1500)
    plan_id = (await _collaboration(engine, collaboration)).plan_id
    before = await buy(world, "room")
    now = datetime.now(UTC)
    await set_rate(engine, world, plan_id, 2000, at=now)  # a raise: at once
    buying(client).forget_offers()
    raised = await buy(world, "room")
    await set_rate(engine, world, plan_id, 1000, at=datetime.now(UTC), effective_at=now + LOCK)  # a cut: locked
    buying(client).forget_offers()
    during_lock = await buy(world, "room")
    expected = creator_terms(world, "host", collaboration, 1500)
    assert (await hold_of(client, before)).terms == expected, "the earlier hold keeps its rate"
    assert (await hold_of(client, raised)).terms == replace(expected, commission_bps=2000)
    assert (await hold_of(client, during_lock)).terms == replace(expected, commission_bps=2000), "cut not yet due"
    # The order writer records what each hold carried: each order keeps its own rate, and the commission posted
    # is that rate of what its buyer paid.
    price = (await hold_of(client, before)).total_minor
    written = await paid_and_written(client, engine, before, raised, during_lock)
    assert written == {
        before["id"]: (1500, price * 1500 // 10_000),
        raised["id"]: (2000, price * 2000 // 10_000),
        during_lock["id"]: (2000, price * 2000 // 10_000),
    }


async def test_an_ended_collaboration_stops_new_sales_and_leaves_old_holds_as_they_were(
    pair: Pair, client: Client, engine: AsyncEngine
) -> None:
    world, *_ = pair
    collaboration = await collaborating(engine, world, "host", 1500)
    first = await buy(world, "room")
    async with session_factory(engine).begin() as session:
        await session.execute(
            update(Collaboration)
            .where(Collaboration.id == collaboration)
            .values(status=CollaborationStatus.ENDED, ended_at=datetime.now(UTC))
        )
    buying(client).forget_offers()
    await buy(world, "room", expect=403)
    paid = await world.api.ok(
        "POST", f"/api/v1/holds/{first['id']}/checkout", who="viewer", json={"card_number": "4242 4242 4242 4242"}
    )
    assert paid["state"] == "paid", "a hold made before the end is still bought"
    assert (await hold_of(client, first)).terms == creator_terms(world, "host", collaboration, 1500)


async def test_a_new_fee_rule_applies_to_holds_made_after_it(pair: Pair, client: Client, engine: AsyncEngine) -> None:
    world, *_ = pair
    collaboration = await collaborating(engine, world, "host", 1500)
    before = await buy(world, "room")
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        rule = FeeRule(bps=600, base=FeeBase.BUYER_PAID_PLUS_DISCOUNT, effective_from=now - timedelta(seconds=1))
        later = FeeRule(bps=900, base=FeeBase.BUYER_PAID, effective_from=now + timedelta(days=1))  # not yet
        session.add_all([rule, later])
        await session.flush()
        rule_id = rule.id
    buying(client).forget_offers()
    after = await buy(world, "room")
    expected = creator_terms(world, "host", collaboration, 1500)
    assert (await hold_of(client, before)).terms == expected
    assert (await hold_of(client, after)).terms == replace(
        expected, fee_rule_id=rule_id, fee_bps=600, fee_base=FeeBase.BUYER_PAID_PLUS_DISCOUNT
    )


async def _collaboration(engine: AsyncEngine, collaboration_id: int) -> Collaboration:
    async with session_factory(engine)() as session:
        row = await session.get(Collaboration, collaboration_id)
        assert row is not None
        return row
