"""Orders with vouchers, end to end over REST against the app on loopback, real Redis and both databases: claim
in a live room, buy, the price after vouchers on the hold, checkout charges it, the order writer records the
voucher columns, the ledger balances with the seller's memo pair, the campaign budget moves by the true cost,
a refund reverses the right lines and returns nothing to the budget; a decline gives the claims back; a crash
between applying the vouchers and the payment is reconciled by the voucher sweeper.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import Principal
from livecommerce.commerce import vouchers
from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.orders import OrderWriter, pool_drained
from livecommerce.commerce.payments import DECLINED, TestModeProvider
from livecommerce.commerce.pools import HoldState, Inventory, PoolId
from livecommerce.commerce.voucher_live import VOUCHERS, VoucherLive
from livecommerce.commerce.voucher_price import price_after, worst_cost
from livecommerce.commerce.voucher_store import ClaimState, voucher_keys
from livecommerce.database import session_factory
from livecommerce.errors import Conflict
from livecommerce.models import LedgerAccount, LedgerLine, Order, OrderStatus, Role
from livecommerce.state import REDIS
from tests.support.sockets import Client, Viewer, viewer_in
from tests.support.waits import until
from tests.support.world import World, seed_world

CARD = "4242424242424242"
PRODUCT_PRICE = 1999  # the world's `product`


def live(client: Client) -> VoucherLive:
    return client.app[VOUCHERS]


async def drain(client: Client, engine: AsyncEngine) -> None:
    redis: Redis = client.app[REDIS]
    writer = OrderWriter(redis, session_factory(engine), Inventory(redis), consumer="t", block_ms=10,
                         claim_after_ms=30_000)  # fmt: skip

    async def drained() -> bool:
        await writer.step()
        return all([await pool_drained(redis, pool) for pool in await Inventory(redis).registered()])

    await until(drained, within=20, what="the outboxes drained")


async def setup(client: Client, engine: AsyncEngine) -> tuple[World, int]:
    """The world with `room` live, a seller voucher of 200 off `product` (created over REST) and the seeded
    co-funded `platform_voucher` (10% capped at 500, half the platform's) pinned there. Returns the seller
    voucher's id."""
    world = await seed_world(client, engine)
    api, ids = world.api, world.ids
    await api.ok("POST", f"/api/v1/rooms/{ids['room']}/live", who="host")
    now = datetime.now(UTC)
    body = await api.ok(
        "POST", f"/api/v1/brands/{ids['brand']}/vouchers", who="staff", status=201,
        json={"title": "200 off", "kind": "amount", "amount_minor": 200, "currency": "USD", "quota": 50,
              "per_buyer_limit": 2, "starts_at": (now - timedelta(minutes=1)).isoformat(),
              "ends_at": (now + timedelta(days=1)).isoformat(), "product_id": ids["product"]},
    )  # fmt: skip
    seller = int(body["id"])
    for voucher in (seller, ids["platform_voucher"]):
        await live(client).ensure_loaded(voucher)
        await live(client).mark_pinned(ids["room"], voucher)
    return world, seller


async def claim(world: World, voucher: int, key: str, who: str = "viewer", status: int = 201) -> Any:
    path = f"/api/v1/rooms/{world.ids['room']}/vouchers/{voucher}/claims"
    return await world.api.ok("POST", path, who=who, json={"idempotency_key": key}, status=status)


async def buy(world: World, who: str = "viewer") -> Any:
    path = f"/api/v1/rooms/{world.ids['room']}/buy"
    return await world.api.ok("POST", path, who=who, json={"product_id": world.ids["product"]}, status=201)


async def lines_of(engine: AsyncEngine, order_id: int) -> dict[str, dict[LedgerAccount, int]]:
    async with session_factory(engine)() as session:
        rows = (await session.scalars(select(LedgerLine).where(LedgerLine.order_id == order_id))).all()
    out: dict[str, dict[LedgerAccount, int]] = {}
    for row in rows:
        out.setdefault(row.posting, {})[row.account] = row.amount_minor
    return out


async def order_of(engine: AsyncEngine, hold_id: str) -> Order:
    async with session_factory(engine)() as session:
        order = await session.scalar(select(Order).where(Order.hold_id == hold_id))
    assert order is not None
    return order


async def test_a_voucher_order_end_to_end(client: Client, engine: AsyncEngine) -> None:
    world, seller = await setup(client, engine)
    ids, api = world.ids, world.api
    platform = ids["platform_voucher"]
    s_info, p_info = await live(client).info(seller), await live(client).info(platform)
    price = price_after(PRODUCT_PRICE, seller=s_info.terms, platform=p_info.terms)
    # 200 off, then 10% of 1799 = 179 (half the platform's: 89); the buyer pays 1999 - 290 - 89.
    assert (price.seller_funded, price.platform_funded, price.buyer_pays) == (290, 89, 1620)

    first = await claim(world, seller, "k1")
    assert (first["state"], first["voucher_id"], first["replayed"]) == ("claimed", seller, False)
    again = await claim(world, seller, "k1")
    assert (again["id"], again["replayed"]) == (first["id"], True)
    p_claim = await claim(world, platform, "k2")
    before = await live(client).store.budget(platform)
    assert (before.reserved, before.free, before.claimed) == (worst_cost(p_info.terms), 10_000 - 250, 1)

    hold = await buy(world)
    assert hold["price"] == {
        "subtotal_minor": 1999, "seller_discount_minor": 290, "platform_discount_minor": 89, "pay_minor": 1620,
        "vouchers": [
            {"voucher_id": seller, "claim_id": first["id"], "title": "200 off", "discount_minor": 200},
            {"voucher_id": platform, "claim_id": p_claim["id"], "title": "10% off", "discount_minor": 179},
        ],
    }  # fmt: skip
    paid = await api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": CARD})
    assert paid["state"] == "paid"
    assert paid["price"]["pay_minor"] == 1620
    charge = await TestModeProvider(client.app[REDIS]).lookup(hold["id"])
    assert charge is not None
    assert charge.amount_minor == 1620
    mine = {c["id"]: c for c in (await api.ok("GET", "/api/v1/me/voucher-claims", who="viewer"))["items"]}
    assert {mine[first["id"]]["state"], mine[p_claim["id"]]["state"]} == {"used"}
    after = await live(client).store.budget(platform)
    assert (after.funded, after.reserved, after.spent, after.free) == (10_000, 0, 89, 10_000 - 89)

    await drain(client, engine)
    order = await order_of(engine, hold["id"])
    assert order.status is OrderStatus.PAID
    assert (order.total_minor, order.seller_discount_minor, order.platform_discount_minor) == (1999, 290, 89)
    assert (order.seller_voucher_id, order.platform_voucher_id) == (seller, platform)
    assert (order.seller_claim_id, order.platform_claim_id) == (first["id"], p_claim["id"])
    assert order.buyer_paid_minor == 1620
    sale = (await lines_of(engine, order.id))[f"sale:{hold['id']}"]
    assert sale[LedgerAccount.BUYER_PAID] == -1620
    assert sale[LedgerAccount.PLATFORM_DISCOUNT] == -89
    assert (sale[LedgerAccount.SELLER_DISCOUNT], sale[LedgerAccount.BRAND_DISCOUNT]) == (-290, 290)
    assert sum(sale.values()) == 0
    shares = sum(sale.get(a, 0) for a in (LedgerAccount.BRAND_NET, LedgerAccount.CREATOR_COMMISSION,
                                          LedgerAccount.PLATFORM_FEE))  # fmt: skip
    assert shares == 1620 + 89

    statement = await api.ok("GET", f"/api/v1/brands/{ids['brand']}/statement", who="staff")
    usd = {t["currency"]: t for t in statement["totals"]}["USD"]
    assert (usd["platform_discount_minor"], usd["seller_discount_minor"]) == (89, 290)  # this order's alone
    assert usd["brand_net_minor"] == sale[LedgerAccount.BRAND_NET]

    refund = await api.ok("POST", f"/api/v1/orders/{order.id}/refunds", who="staff", status=201,
                          json={"idempotency_key": "r1"})  # fmt: skip
    assert (refund["amount_minor"], refund["status"]) == (1620, "done")
    assert "voucher is not returned" in refund["note"]
    posted = await lines_of(engine, order.id)
    reversal = posted[f"refund:{refund['id']}"]
    assert {a: -v for a, v in reversal.items()} == sale  # a refund in full reverses every line, the memo pair too
    assert await live(client).store.budget(platform) == after  # nothing returned to the budget
    status, body = await api.call("POST", f"/api/v1/orders/{order.id}/refunds", who="staff",
                                  json={"idempotency_key": "r2", "amount_minor": 1})  # fmt: skip
    assert (status, body["code"]) == (409, "refund_too_large")


async def test_a_partial_refund_after_a_voucher_reverses_pro_rata(client: Client, engine: AsyncEngine) -> None:
    world, seller = await setup(client, engine)
    await claim(world, seller, "k1")
    await claim(world, world.ids["platform_voucher"], "k2")
    hold = await buy(world)
    await world.api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": CARD})
    await drain(client, engine)
    order = await order_of(engine, hold["id"])
    refund = await world.api.ok("POST", f"/api/v1/orders/{order.id}/refunds", who="staff", status=201,
                                json={"idempotency_key": "half", "amount_minor": 810})  # fmt: skip
    reversal = (await lines_of(engine, order.id))[f"refund:{refund['id']}"]
    assert reversal[LedgerAccount.BUYER_PAID] == 810
    assert reversal[LedgerAccount.PLATFORM_DISCOUNT] == 89 * 810 // 1620
    assert (reversal[LedgerAccount.SELLER_DISCOUNT], reversal[LedgerAccount.BRAND_DISCOUNT]) == (145, -145)
    assert sum(reversal.values()) == 0


async def test_a_decline_gives_the_claims_back_and_a_later_checkout_uses_them(
    client: Client, engine: AsyncEngine
) -> None:
    world, seller = await setup(client, engine)
    c = await claim(world, seller, "k1")
    hold = await buy(world)
    path = f"/api/v1/holds/{hold['id']}/checkout"
    status, body = await world.api.call("POST", path, who="viewer", json={"card_number": DECLINED})
    assert status == 402, body
    got = await live(client).store.get_claim(seller, c["id"])
    assert got is not None
    assert got.state is ClaimState.CLAIMED
    redis_hold = await client.app[BUYING].inventory.hold(PoolId.parse(hold["id"]), hold["id"])
    assert redis_hold is not None
    assert redis_hold.state is HoldState.HELD
    assert redis_hold.disc is None
    await drain(client, engine)  # the order is written as held first: its voucher columns follow when paid
    assert (await order_of(engine, hold["id"])).seller_voucher_id is None
    paid = await world.api.ok("POST", path, who="viewer", json={"card_number": CARD, "claim_ids": [c["id"]]})
    assert paid["price"]["pay_minor"] == PRODUCT_PRICE - 200
    await drain(client, engine)
    order = await order_of(engine, hold["id"])
    assert (order.status, order.seller_voucher_id, order.seller_claim_id) == (OrderStatus.PAID, seller, c["id"])
    assert (order.seller_discount_minor, order.platform_discount_minor, order.buyer_paid_minor) == (200, 0, 1799)
    sale = (await lines_of(engine, order.id))[f"sale:{hold['id']}"]
    assert sale[LedgerAccount.BUYER_PAID] == -1799
    assert sum(sale.values()) == 0
    got = await live(client).store.get_claim(seller, c["id"])
    assert got is not None
    assert got.state is ClaimState.USED
    assert got.hold_id == hold["id"]


async def test_checkout_with_no_vouchers_or_a_claim_not_yours(client: Client, engine: AsyncEngine) -> None:
    world, seller = await setup(client, engine)
    theirs = await claim(world, seller, "k1", who="other_host")
    await claim(world, seller, "k2")
    hold = await buy(world)
    path = f"/api/v1/holds/{hold['id']}/checkout"
    status, body = await world.api.call("POST", path, who="viewer",
                                        json={"card_number": CARD, "claim_ids": [theirs["id"]]})  # fmt: skip
    assert (status, body["code"]) == (409, "voucher_not_usable"), body
    paid = await world.api.ok("POST", path, who="viewer", json={"card_number": CARD, "claim_ids": []})
    assert paid["price"]["pay_minor"] == PRODUCT_PRICE
    assert paid["price"]["vouchers"] == []


async def test_a_crash_between_apply_and_payment_is_reconciled_by_the_sweeper(
    client: Client, engine: AsyncEngine
) -> None:
    """A hub applies the claims and begins the payment, the card is charged and the hold paid, then the hub
    dies before redeeming; another hold's claim was applied and its hold cancelled. The claims were applied with
    an `until` already past (as if their deadline had gone by): one sweep redeems the first and releases the
    second."""
    world, seller = await setup(client, engine)
    vouchers, inventory = live(client), client.app[BUYING].inventory
    platform = world.ids["platform_voucher"]
    await claim(world, seller, "k1")
    await claim(world, platform, "k2")
    hold_body = await buy(world)
    pool = PoolId.parse(hold_body["id"])
    hold = await inventory.hold(pool, hold_body["id"])
    assert hold is not None
    quote = await vouchers.quote_hold(hold)
    for q in quote.vouchers:
        reply = await vouchers.store.apply(
            q.voucher.id, q.claim_id, buyer_id=hold.buyer_id, hold_id=hold.id, discount=q.discount_minor,
            cost=q.cost_minor, until_ms=1,
        )  # fmt: skip
        assert reply.status.value == "ok"
    begun = await inventory.begin_payment(pool, hold.id, hold.buyer_id, 60_000, quote.discount())
    assert begun.hold is not None
    assert begun.hold.pay_minor == 1620
    charge = await client.app[BUYING].provider.charge(hold.id, begun.hold.pay_minor, "USD", CARD)
    await inventory.complete_payment(pool, hold.id, charge.ref)  # ... and the hub dies here

    other_claim = await claim(world, seller, "k3", who="other_host")
    other = await buy(world, who="other_host")
    reply = await vouchers.store.apply(seller, other_claim["id"], buyer_id=world.ids["other_host"],
                                       hold_id=other["id"], discount=200, cost=0, until_ms=1)  # fmt: skip
    assert reply.status.value == "ok"
    await world.api.ok("DELETE", f"/api/v1/holds/{other['id']}", who="other_host")

    assert await vouchers.sweep() >= 3
    states: Counter[ClaimState] = Counter()
    for c in await vouchers.claims_of(world.ids["viewer"]):
        states[c.state] += 1
    assert states == Counter({ClaimState.USED: 2})
    released = await vouchers.store.get_claim(seller, other_claim["id"])
    assert released is not None
    assert released.state is ClaimState.CLAIMED
    budget = await vouchers.store.budget(platform)
    assert (budget.reserved, budget.spent) == (0, 89)
    assert budget.reserved + budget.spent + budget.free == budget.funded


async def test_every_order_balances_after_a_mixed_burst(client: Client, engine: AsyncEngine) -> None:
    """Viewers with and without vouchers buy and pay at once (some declined); every paid order's sale posting
    balances and its voucher columns agree with what the buyer was charged."""
    world, seller = await setup(client, engine)
    platform = world.ids["platform_voucher"]
    buyers = ["viewer", "other_host", "host", "staff", "other_staff"]

    async def shopper(i: int, who: str) -> None:
        if i % 3 != 2:
            await claim(world, seller, f"s{i}", who=who)
        if i % 2 == 0:
            await claim(world, platform, f"p{i}", who=who)
        hold = await buy(world, who=who)
        card = DECLINED if i % 4 == 3 else CARD
        await world.api.call("POST", f"/api/v1/holds/{hold['id']}/checkout", who=who, json={"card_number": card})

    await asyncio.gather(*(shopper(i, who) for i, who in enumerate(buyers)))
    await drain(client, engine)
    provider = TestModeProvider(client.app[REDIS])
    async with session_factory(engine)() as session:
        query = select(Order).where(Order.status == OrderStatus.PAID, Order.id != world.ids["order"])
        orders = (await session.scalars(query)).all()  # the seeded order was written without a posting
    assert len(orders) >= 4
    for order in orders:
        postings = await lines_of(engine, order.id)
        sale = postings[f"sale:{order.hold_id}"]
        assert sum(sale.values()) == 0
        assert -sale[LedgerAccount.BUYER_PAID] == order.buyer_paid_minor
        assert -sale.get(LedgerAccount.PLATFORM_DISCOUNT, 0) == order.platform_discount_minor
        assert sale.get(LedgerAccount.BRAND_DISCOUNT, 0) == order.seller_discount_minor
        charge = await provider.lookup(order.hold_id)
        assert charge is not None
        assert charge.amount_minor == order.buyer_paid_minor
    budget = await live(client).store.budget(platform)
    assert budget.reserved + budget.spent + budget.free == budget.funded
    assert budget.spent == sum(o.platform_discount_minor for o in orders if o.platform_voucher_id == platform)


async def test_a_socket_checkout_takes_claim_ids_and_acks_the_price(
    pair: tuple[World, str, str, list[Viewer]], client: Client, engine: AsyncEngine
) -> None:
    """`pair` seeds the world and starts `room`; the buyer is on hub A, the claim made over REST."""
    world, a, _, viewers = pair
    ids = world.ids
    now = datetime.now(UTC)
    body = await world.api.ok(
        "POST", f"/api/v1/brands/{ids['brand']}/vouchers", who="staff", status=201,
        json={"title": "200 off", "kind": "amount", "amount_minor": 200, "currency": "USD", "quota": 5,
              "starts_at": (now - timedelta(minutes=1)).isoformat(), "ends_at": (now + timedelta(days=1)).isoformat(),
              "product_id": ids["product"]},
    )  # fmt: skip
    seller = int(body["id"])
    await live(client).mark_pinned(ids["room"], seller)
    c = await claim(world, seller, "k1")
    buyer, _ = await viewer_in(viewers, a, ids["room"], world.api.tokens["viewer"])
    ack = await buyer.call("buy", {"room_id": ids["room"], "product_id": ids["product"], "idempotency_key": "t1"})
    assert ack["ok"], ack
    hold = ack["data"]["hold"]
    bad = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": CARD, "claim_ids": ["x"]})
    assert bad["error"]["code"] == "invalid_request", bad
    paid = await buyer.call("checkout", {"hold_id": hold["id"], "card_number": CARD, "claim_ids": [c["id"]]})
    assert paid["ok"], paid
    assert paid["data"]["hold"]["state"] == "paid"
    assert paid["data"]["hold"]["price"]["pay_minor"] == PRODUCT_PRICE - 200
    assert paid["data"]["hold"]["price"]["vouchers"][0]["claim_id"] == c["id"]


async def test_the_quote_takes_the_best_usable_claim_per_slot(client: Client, engine: AsyncEngine) -> None:
    world, seller = await setup(client, engine)
    ids, api = world.ids, world.api
    now = datetime.now(UTC)
    window = {"starts_at": (now - timedelta(minutes=1)).isoformat(), "ends_at": (now + timedelta(days=1)).isoformat()}

    async def seller_voucher(brand: str, staff: str, **terms: Any) -> int:
        body = await api.ok("POST", f"/api/v1/brands/{ids[brand]}/vouchers", who=staff, status=201,
                            json={"title": "V", "currency": "USD", "quota": 5, **window, **terms})  # fmt: skip
        await live(client).mark_pinned(ids["room"], int(body["id"]))
        return int(body["id"])

    percent = await seller_voucher("brand", "staff", kind="percent", percent_bps=1500, cap_minor=1000)
    big_spend = await seller_voucher("brand", "staff", kind="amount", amount_minor=900, min_spend_minor=5000)
    elsewhere = await seller_voucher("other_brand", "other_staff", kind="amount", amount_minor=1500)
    for voucher in (seller, percent, big_spend, elsewhere):
        await claim(world, voucher, f"k{voucher}")
    hold = await buy(world)
    # 15% of 1999 is 299: more than 200 off; the 900 off needs 5000 of goods; other_brand's is not for it.
    assert [v["voucher_id"] for v in hold["price"]["vouchers"]] == [percent]
    assert hold["price"]["pay_minor"] == 1999 - 299
    paid = await api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": CARD})
    assert paid["price"]["pay_minor"] == 1700
    states = {
        c["voucher_id"]: c["state"] for c in (await api.ok("GET", "/api/v1/me/voucher-claims", who="viewer"))["items"]
    }
    assert states == {percent: "used", seller: "claimed", big_spend: "claimed", elsewhere: "claimed"}


async def test_two_checkouts_of_one_hold_at_once_leave_each_claim_used_once(
    client: Client, engine: AsyncEngine
) -> None:
    """A double tap on Pay: both checkouts apply the buyer's claims before either begins the payment (held at a
    barrier in front of the real `begin_payment`, so the interleaving is certain). Whichever begins first
    records the claims; the other must not give them back. Then the claims are used by this hold, the budget
    spent what the order's platform discount says, and a second order gets no discount from them."""
    world, seller = await setup(client, engine)
    ids, api = world.ids, world.api
    platform = ids["platform_voucher"]
    s_claim, p_claim = await claim(world, seller, "k1"), await claim(world, platform, "k2")
    hold = await buy(world)
    inventory = client.app[BUYING].inventory
    real = inventory.begin_payment
    arrived = 0
    both = asyncio.Event()

    async def after_both_applied(*args: Any, **kwargs: Any) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 10)
        return await real(*args, **kwargs)

    inventory.begin_payment = after_both_applied  # type: ignore[method-assign]
    try:
        path = f"/api/v1/holds/{hold['id']}/checkout"
        answers = await asyncio.gather(
            *(api.call("POST", path, who="viewer", json={"card_number": CARD}) for _ in range(2))
        )
    finally:
        inventory.begin_payment = real  # type: ignore[method-assign]
    assert arrived == 2
    assert any(status == 200 and body["state"] == "paid" for status, body in answers), answers
    for voucher, mine in ((seller, s_claim), (platform, p_claim)):
        used = await live(client).store.get_claim(voucher, mine["id"])
        assert used is not None
        assert (used.state, used.hold_id) == (ClaimState.USED, hold["id"])
    await drain(client, engine)
    order = await order_of(engine, hold["id"])
    budget = await live(client).store.budget(platform)
    assert (budget.reserved, budget.spent) == (0, order.platform_discount_minor)
    again = await buy(world)
    assert again["price"]["vouchers"] == []  # the claims are spent: nothing to apply to a second order
    paid = await api.ok("POST", f"/api/v1/holds/{again['id']}/checkout", who="viewer", json={"card_number": CARD})
    assert paid["price"]["pay_minor"] == PRODUCT_PRICE


async def test_redis_has_the_last_word_on_a_cut_of_a_voucher(client: Client, engine: AsyncEngine) -> None:
    """A change checked against figures read a moment earlier (claims landed since): Redis refuses a cut below
    what claims now reserve, so the transaction is not committed and SQL never allots less than Redis funds; a
    raise reaches Redis only after it commits."""
    world, _ = await setup(client, engine)
    ids = world.ids
    platform = ids["platform_voucher"]
    for key in ("k1", "k2"):
        await claim(world, platform, key, who="viewer" if key == "k1" else "other_host")
    budget = await live(client).store.budget(platform)
    assert budget is not None
    admin = Principal(ids["admin"], Role.ADMIN)
    async with session_factory(engine)() as session:
        voucher = await vouchers.update_voucher(
            session, admin, platform, {"budget_minor": budget.reserved - 1}, used_minor=0
        )  # the domain's check passes on a stale figure
        with pytest.raises(Conflict, match=f"cut to {budget.reserved} at the least"):
            await live(client).apply_before_commit(voucher, funded_before=budget.funded)
        await session.rollback()
    assert await live(client).store.budget(platform) == budget
    async with session_factory(engine)() as session:
        raised = await vouchers.update_voucher(session, admin, platform, {"budget_minor": budget.funded + 100})
        await live(client).apply_before_commit(raised, funded_before=budget.funded)
        assert (await live(client).store.budget(platform)) == budget  # not before the commit
        await session.commit()
    await live(client).reload(platform)
    after = await live(client).store.budget(platform)
    assert (after.funded, after.free) == (budget.funded + 100, budget.free + 100)


async def test_a_redis_that_lost_a_voucher_loads_it_again_from_what_sql_says_was_used(
    client: Client, engine: AsyncEngine
) -> None:
    """Redis loses the voucher's keys (its data, not a restart with the append-only file): loading it again
    starts from the paid orders in SQL — the budget already spent, the claims used and by whom — never from
    zero, so the budget cannot be spent twice and a buyer at the limit stays there."""
    world, _ = await setup(client, engine)
    platform = world.ids["platform_voucher"]
    mine = await claim(world, platform, "k1")
    hold = await buy(world)
    await world.api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": CARD})
    await drain(client, engine)
    order = await order_of(engine, hold["id"])
    assert (order.platform_claim_id, order.platform_discount_minor > 0) == (mine["id"], True)
    before = await live(client).store.budget(platform)
    redis = client.app[REDIS]
    await redis.delete(*voucher_keys(platform))  # the data is gone
    await live(client).reload(platform)
    after = await live(client).store.budget(platform)
    assert (after.funded, after.spent, after.reserved, after.claimed) == (
        before.funded, order.platform_discount_minor, 0, 1
    )  # fmt: skip
    assert after.free == before.funded - order.platform_discount_minor
    limit = (await live(client).info(platform)).per_buyer_limit
    for n in range(limit - 1):  # what the buyer has left of their limit, and then no more
        await claim(world, platform, f"again{n}")
    status, body = await world.api.call(
        "POST", f"/api/v1/rooms/{world.ids['room']}/vouchers/{platform}/claims", who="viewer",
        json={"idempotency_key": "over"},
    )  # fmt: skip
    assert (status, body["code"]) == (409, "voucher_limit_reached"), body
