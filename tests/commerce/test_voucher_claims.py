"""Claiming vouchers in a LIVE through the domain (`VoucherLive.claim`) against real Redis and both databases:
conservation under a burst of thousands of concurrent claims from many users, retries with the same key
included, checked while the burst runs; and the claim rules (pinned in this show, live room, account age),
each refusal with its code.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.voucher_live import VOUCHERS, VoucherLive
from livecommerce.commerce.voucher_price import worst_cost
from livecommerce.commerce.voucher_store import Claim, voucher_keys
from livecommerce.commerce.vouchers import VoucherDraft
from livecommerce.database import session_factory
from livecommerce.errors import ClientError
from livecommerce.models import Funding, Role, User, VoucherKind
from livecommerce.state import REDIS
from tests.support.sockets import Client
from tests.support.world import World, seed_world

BUYERS = 400
KEYS_PER_BUYER = 4  # distinct taps; each sent twice (a retry with the same key)
IN_FLIGHT = 400  # claims under way at once (one process's Redis connections are bounded)


def live(client: Client) -> VoucherLive:
    return client.app[VOUCHERS]


async def many_buyers(engine: AsyncEngine, n: int, *, age: timedelta = timedelta(days=30)) -> list[int]:
    joined = datetime.now(UTC) - age
    rows = [{"email": f"burst{i}@t.dev", "display_name": f"Burst {i}", "role": Role.VIEWER, "created_at": joined}
            for i in range(n)]  # fmt: skip
    async with session_factory(engine).begin() as session:
        await session.execute(insert(User), rows)
        return list((await session.scalars(select(User.id).where(User.email.like("burst%")))).all())


async def new_voucher(
    engine: AsyncEngine, world: World, *, quota: int, limit: int, budget: int | None, age_days: int = 0
) -> int:
    """A co-funded campaign voucher (10% capped at 500, half the platform's: worst cost 250) when `budget` is
    given, else a seller voucher of 200 off the brand's `product`."""
    now = datetime.now(UTC)
    ids = world.ids
    async with session_factory(engine).begin() as session:
        if budget is None:
            draft = VoucherDraft(title="200 off", kind=VoucherKind.AMOUNT, amount_minor=200, quota=quota,
                                 per_buyer_limit=limit, starts_at=now - timedelta(minutes=1),
                                 ends_at=now + timedelta(days=1), min_account_age_days=age_days)  # fmt: skip
            staff = Principal(ids["staff"], Role.BRAND_STAFF, ids["brand"])
            return (await vouchers.create_seller_voucher(session, staff, ids["brand"], draft, currency="USD")).id
        draft = VoucherDraft(title="10% off", kind=VoucherKind.PERCENT, percent_bps=1000, cap_minor=500,
                             quota=quota, per_buyer_limit=limit, starts_at=now - timedelta(minutes=1),
                             ends_at=now + timedelta(days=1), min_account_age_days=age_days)  # fmt: skip
        admin = Principal(ids["admin"], Role.ADMIN)
        voucher = await vouchers.create_campaign_voucher(
            session, admin, ids["campaign"], draft, funding=Funding.CO, budget_minor=budget, platform_share_bps=5000,
            brand_id=ids["brand"],
        )  # fmt: skip
        return voucher.id


async def live_room_with(client: Client, world: World, *voucher_ids: int) -> int:
    room = world.ids["room"]
    await world.api.ok("POST", f"/api/v1/rooms/{room}/live", who="host")
    for voucher in voucher_ids:
        await live(client).mark_pinned(room, voucher)
    return room


@pytest.mark.parametrize("seed", [14])
async def test_a_burst_of_claims_conserves_quota_limits_and_budget(
    client: Client, engine: AsyncEngine, seed: int
) -> None:
    world = await seed_world(client, engine)
    buyers = await many_buyers(engine, BUYERS)
    # The budget runs out first on one (300 claims of worst cost 250), the quota on the other.
    funded = await new_voucher(engine, world, quota=1000, limit=2, budget=75_000)
    quota_bound = await new_voucher(engine, world, quota=500, limit=3, budget=None)
    room = await live_room_with(client, world, funded, quota_bound)
    service = live(client)
    limits = {funded: (1000, 2), quota_bound: (500, 3)}
    worst = worst_cost((await service.info(funded)).terms)
    store = service.store
    redis = store.redis

    taps = [(v, b, f"k{k}") for v in limits for b in buyers for k in range(KEYS_PER_BUYER)]
    taps = taps + taps  # every tap retried with its key
    random.Random(seed).shuffle(taps)
    answers: dict[tuple[int, int, str], set[str]] = {}
    refusals: Counter[str] = Counter()
    done = asyncio.Event()
    checks = 0

    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(voucher: int, buyer: int, key: str) -> None:
        try:
            async with gate:
                claim, _ = await service.claim(Principal(buyer, Role.VIEWER), room, voucher, key)
        except ClientError as exc:
            refusals[exc.code] += 1
            return
        answers.setdefault((voucher, buyer, key), set()).add(claim.id)

    async def check() -> None:
        nonlocal checks
        while not done.is_set():
            for voucher, (quota, limit) in limits.items():
                b = await store.budget(voucher)
                assert min(b.funded, b.reserved, b.spent, b.free) >= 0
                assert b.reserved + b.spent + b.free == b.funded
                assert b.claimed <= quota
                counts = await redis.hvals(voucher_keys(voucher).buyers)
                assert all(int(c) <= limit for c in counts)
            checks += 1
            await asyncio.sleep(0)

    checker = asyncio.create_task(check())
    await asyncio.gather(*(one(*tap) for tap in taps))
    done.set()
    await checker
    assert checks > 1  # the invariants were checked while claims ran, not only after

    assert all(len(ids) == 1 for ids in answers.values()), "a retry got a different claim"
    for voucher, (quota, limit) in limits.items():
        raw = await redis.hvals(voucher_keys(voucher).claims)
        claims = [Claim.from_json(r) for r in raw]
        per_buyer = Counter(c.buyer_id for c in claims)
        assert max(per_buyer.values()) <= limit
        assert len(claims) <= quota
        b = await store.budget(voucher)
        distinct = {claim_id for (v, _, _), got in answers.items() if v == voucher for claim_id in got}
        assert b.claimed == len(claims) == len(distinct)
        assert b.reserved + b.spent + b.free == b.funded
        if voucher == funded:
            assert b.funded == 75_000
            assert b.reserved == len(claims) * worst == 75_000  # spent to the last claim, never beyond
            assert b.free == 0
    assert (await store.budget(quota_bound)).claimed == 500
    assert refusals["voucher_budget_spent"] > 0
    assert refusals["voucher_claimed_out"] > 0
    assert refusals["voucher_limit_reached"] > 0
    assert set(refusals) <= {"voucher_budget_spent", "voucher_claimed_out", "voucher_limit_reached"}


async def test_the_claim_rules_and_their_codes(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    ids, api = world.ids, world.api
    old = await new_voucher(engine, world, quota=10, limit=1, budget=None, age_days=7)
    pinned_later = await new_voucher(engine, world, quota=10, limit=1, budget=None)
    path = f"/api/v1/rooms/{ids['room']}/vouchers/{old}/claims"
    status, body = await api.call("POST", path, json={"idempotency_key": "a"})
    assert (status, body["code"]) == (401, "unauthorized"), body
    status, body = await api.call("POST", path, who="viewer", json={"idempotency_key": "a"})
    assert (status, body["code"]) == (409, "room_not_live"), body
    room = await live_room_with(client, world, old)
    status, body = await api.call("POST", path, who="viewer", json={"idempotency_key": "a"})
    assert (status, body["code"]) == (403, "account_too_new"), body
    assert "7 days" in body["detail"]
    async with session_factory(engine).begin() as session:
        await session.execute(
            update(User).where(User.id == ids["viewer"]).values(created_at=datetime.now(UTC) - timedelta(days=8))
        )
    live(client)._joined.drop(ids["viewer"])
    first = await api.ok("POST", path, who="viewer", json={"idempotency_key": "a"}, status=201)
    assert first["state"] == "claimed"
    status, body = await api.call("POST", path, who="viewer", json={"idempotency_key": "b"})
    assert (status, body["code"]) == (409, "voucher_limit_reached"), body
    other = f"/api/v1/rooms/{room}/vouchers/{pinned_later}/claims"
    status, body = await api.call("POST", other, who="viewer", json={"idempotency_key": "c"})
    assert (status, body["code"]) == (409, "voucher_not_in_room"), body
    status, body = await api.call("POST", other, who="viewer", json={"idempotency_key": "bad key!"})
    assert status == 422, body
    ended = f"/api/v1/rooms/{room}/vouchers/{ids['ended_voucher']}/claims"
    await live(client).mark_pinned(room, ids["ended_voucher"])
    status, body = await api.call("POST", ended, who="viewer", json={"idempotency_key": "d"})
    assert (status, body["code"]) == (409, "voucher_ended"), body
    mine = await api.ok("GET", "/api/v1/me/voucher-claims", who="viewer")
    assert [c["id"] for c in mine["items"]] == [first["id"]]
    assert mine["items"][0]["voucher"]["id"] == old
    assert (await api.ok("GET", "/api/v1/me/voucher-claims", who="host"))["items"] == []
    status, _ = await api.call("GET", "/api/v1/me/voucher-claims")
    assert status == 401


async def test_ending_a_voucher_closes_it_in_redis_and_budgets_show_live(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    ids, api = world.ids, world.api
    voucher = ids["platform_voucher"]
    room = await live_room_with(client, world, voucher)
    await api.ok("POST", f"/api/v1/rooms/{room}/vouchers/{voucher}/claims", who="viewer", status=201,
                 json={"idempotency_key": "a"})  # fmt: skip
    got = await api.ok("GET", f"/api/v1/vouchers/{voucher}", who="admin")
    assert got["live"] == {"funded_minor": 10_000, "reserved_minor": 250, "spent_minor": 0, "free_minor": 9_750,
                           "claimed": 1}  # fmt: skip
    assert (await api.ok("GET", f"/api/v1/vouchers/{voucher}", who="viewer"))["live"] is None
    campaign = await api.ok("GET", f"/api/v1/campaigns/{ids['campaign']}", who="admin")
    assert campaign["live"]["reserved_minor"] == 250
    await api.ok("POST", f"/api/v1/vouchers/{voucher}/end", who="admin")
    status, body = await api.call("POST", f"/api/v1/rooms/{room}/vouchers/{voucher}/claims", who="host",
                                  json={"idempotency_key": "b"})  # fmt: skip
    assert (status, body["code"]) == (409, "voucher_ended"), body
    assert voucher in await live(client).store.registered()
    assert await live(client).sweep() >= 1  # the unused claim expired: its reservation went back
    budget = await live(client).store.budget(voucher)
    assert (budget.reserved, budget.free) == (0, 10_000)
    # Ended with nothing reserved: it leaves the sweep's round, its keys kept a week.
    assert voucher not in await live(client).store.registered()
    redis = client.app[REDIS]
    assert 0 < await redis.ttl(voucher_keys(voucher).budget) <= 7 * 86400
    other = ids["seller_voucher"]
    await live(client).ensure_loaded(other)
    await live(client).sweep()
    assert other in await live(client).store.registered()  # still running: stays
