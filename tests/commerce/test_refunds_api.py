"""Refunds over REST against the app on loopback, real Redis (the test-mode provider) and both databases:
replays answer the same refund, nothing is given back twice or beyond what was paid, and only the brand's
staff and admins refund."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.jobs import RefundFinisher
from livecommerce.commerce.payments import ChargeStatus
from livecommerce.database import session_factory
from livecommerce.models import LedgerAccount, LedgerLine, Order, OrderStatus, Refund, RefundStatus, utcnow
from tests.support.databases import snapshot
from tests.support.world import World, seed_world


def path(world: World) -> str:
    return f"/api/v1/orders/{world.ids['order']}/refunds"


async def ledger(engine: AsyncEngine) -> dict[str, dict[LedgerAccount, int]]:
    async with session_factory(engine)() as session:
        rows = (await session.scalars(select(LedgerLine))).all()
    out: dict[str, dict[LedgerAccount, int]] = {}
    for row in rows:
        out.setdefault(row.posting, {})[row.account] = row.amount_minor
    return out


async def test_partial_refunds_a_replay_and_the_rest(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    api = world.api
    ask = {"idempotency_key": "r1", "amount_minor": 300, "reason": "one arrived broken"}
    first = await api.ok("POST", path(world), who="staff", json=ask, status=201)
    assert (first["amount_minor"], first["status"], first["currency"], first["reason"]) == (
        300, "done", "USD", "one arrived broken"
    )  # fmt: skip
    assert first["completed_at"] is not None
    again = await api.ok("POST", path(world), who="staff", json={"idempotency_key": "r1", "amount_minor": 300})
    assert again == first  # 200: the same refund, nothing more given back
    status, body = await api.call("POST", path(world), who="admin", json={"idempotency_key": "r1", "amount_minor": 5})
    assert (status, body["code"]) == (409, "conflict")
    assert "new idempotency_key" in body["detail"]
    status, body = await api.call("POST", path(world), who="admin", json={"idempotency_key": "r2", "amount_minor": 700})
    assert (status, body["code"]) == (409, "refund_too_large")
    assert "at most 699 USD" in body["detail"]
    rest = await api.ok("POST", path(world), who="admin", json={"idempotency_key": "r3"}, status=201)
    assert rest["amount_minor"] == 699
    status, body = await api.call("POST", path(world), who="staff", json={"idempotency_key": "r4"})
    assert (status, body["code"]) == (409, "refund_too_large")
    assert "refunded in full" in body["detail"]

    listed = await api.ok("GET", path(world), who="viewer")  # the buyer reads them
    assert [r["id"] for r in listed["items"]] == [first["id"], rest["id"]]
    order = await api.ok("GET", f"/api/v1/orders/{world.ids['order']}", who="viewer")
    assert (order["status"], order["refunded_minor"], order["creator_id"]) == ("paid", 999, None)
    # The sale's terms are the brand's, the creator's and the platform's business, not the buyer's.
    assert [order[k] for k in ("collaboration_id", "commission_bps", "fee_bps", "fee_base")] == [None] * 4
    staff = await api.ok("GET", f"/api/v1/orders/{world.ids['order']}", who="staff")
    assert (staff["commission_bps"], staff["fee_bps"], staff["fee_base"]) == (0, 0, "buyer_paid")  # as seeded
    charge = await client.app[BUYING].provider.lookup(f"s{world.ids['live_sale']}.1")
    assert charge is not None
    assert (charge.refunded_minor, charge.status) == (999, ChargeStatus.REFUNDED)
    assert await ledger(engine) == {
        f"refund:{first['id']}": {LedgerAccount.BUYER_PAID: 300, LedgerAccount.BRAND_NET: -300},
        f"refund:{rest['id']}": {LedgerAccount.BUYER_PAID: 699, LedgerAccount.BRAND_NET: -699},
    }


async def test_only_the_brand_refunds_and_only_paid_orders(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    api = world.api
    before = await snapshot(engine)
    refusals = {"viewer": 403, "host": 404, "other_staff": 404}
    for who, expected in refusals.items():
        status, body = await api.call("POST", path(world), who=who, json={"idempotency_key": "x"})
        assert status == expected, (who, body)
    status, body = await api.call("POST", path(world), json={"idempotency_key": "x"})
    assert status == 401
    for bad in ({"idempotency_key": "x", "amount_minor": 0}, {"amount_minor": 5}, {"idempotency_key": "a b"}):
        status, body = await api.call("POST", path(world), who="staff", json=bad)
        assert status == 422, (bad, body)
    assert (await api.call("GET", path(world), who="other_staff"))[0] == 404
    assert await snapshot(engine) == before

    unpaid = await add_order(engine, world, OrderStatus.CANCELLED)
    status, body = await api.call("POST", f"/api/v1/orders/{unpaid}/refunds", who="staff",
                                  json={"idempotency_key": "x"})  # fmt: skip
    assert (status, body["code"]) == (409, "order_not_paid")
    assert "cancelled" in body["detail"]
    assert (await api.call("POST", "/api/v1/orders/999999/refunds", who="admin", json={"idempotency_key": "x"}))[
        0
    ] == 404


async def test_a_refund_left_pending_is_finished_by_a_retry_or_the_worker(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    """A crash between recording a refund and posting it: the same key resumes it; the worker finishes one
    nobody retries (past a minute), asking the provider under the refund's own key, once."""
    world = await seed_world(client, engine)
    sessions = session_factory(engine)
    old = utcnow() - timedelta(minutes=5)
    async with sessions.begin() as session:
        pending = [
            Refund(order_id=world.ids["order"], key=key, amount_minor=amount, currency="USD",
                   status=RefundStatus.PENDING, requested_by=world.ids["staff"], created_at=created)
            for key, amount, created in (("retried", 100, utcnow()), ("crashed", 200, old), ("young", 50, utcnow()))
        ]  # fmt: skip
        session.add_all(pending)
        await session.flush()
        retried, crashed, young = (r.id for r in pending)
    # What is being refunded counts: only 999 - 350 is left.
    status, body = await world.api.call(
        "POST", path(world), who="staff", json={"idempotency_key": "n", "amount_minor": 650}
    )
    assert (status, body["code"]) == (409, "refund_too_large")
    body = await world.api.ok("POST", path(world), who="staff", json={"idempotency_key": "retried"})
    assert (body["id"], body["status"], body["amount_minor"]) == (retried, "done", 100)

    provider = client.app[BUYING].provider
    finisher = RefundFinisher(sessions, provider)
    await finisher.step()
    await finisher.step()  # again: nothing more
    async with sessions() as session:
        refunds: dict[int, Any] = {r.id: r for r in (await session.scalars(select(Refund))).all()}
        order = await session.get(Order, world.ids["order"])
    assert (refunds[crashed].status, refunds[young].status) == (RefundStatus.DONE, RefundStatus.PENDING)
    assert order is not None
    assert order.refunded_minor == 300
    charge = await provider.lookup(order.hold_id)
    assert charge is not None
    assert (charge.refunded_minor, charge.status) == (300, ChargeStatus.CHARGED)
    postings = await ledger(engine)
    assert set(postings) == {f"refund:{retried}", f"refund:{crashed}"}
    assert postings[f"refund:{crashed}"] == {LedgerAccount.BUYER_PAID: 200, LedgerAccount.BRAND_NET: -200}


async def add_order(engine: AsyncEngine, world: World, status: OrderStatus) -> int:
    now = utcnow()
    async with session_factory(engine).begin() as session:
        order = Order(
            hold_id=f"p{world.ids['product']}.1", pool=f"p{world.ids['product']}", sale_id=None,
            product_id=world.ids["product"], brand_id=world.ids["brand"], room_id=world.ids["room"],
            buyer_id=world.ids["viewer"], quantity=1, unit_price_minor=1999, total_minor=1999, currency="USD",
            status=status, payment_ref=None, held_at=now, expires_at=now, paid_at=None, updated_at=now,
        )  # fmt: skip
        session.add(order)
        await session.flush()
        return order.id
