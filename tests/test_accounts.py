"""Access follows the account: a changed, suspended or deleted account's old tokens can do no more than the
account now may, within a second, on REST and on open sockets, on another process than the one that changed
it; and no charge ends without an order when its buyer is deleted meanwhile.

Real parts throughout: the app on loopback (two more instances standing for other web processes), real
python-socketio clients, real Redis and both databases.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import socketio
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce import users
from livecommerce.accounts import Accounts
from livecommerce.auth import Principal
from livecommerce.commerce.jobs import ORPHANS, ChargeAudit
from livecommerce.commerce.orders import DEAD_LETTERS, OrderWriter, pool_drained
from livecommerce.commerce.payments import TestModeProvider
from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.database import session_factory
from livecommerce.errors import Conflict
from livecommerce.models import AccountStatus, Order, OrderStatus, Role, User
from tests.support.sockets import Viewer, viewer_in
from tests.support.waits import until
from tests.support.world import World, seed_world

Pair = tuple[World, str, str, list[Viewer]]
Client = TestClient[Request, Application]
APPROVE = "4242 4242 4242 4242"
WITHIN = 1.0  # seconds: what the issue promises


async def refused_within(world: World, call: tuple[str, str, Any], who: str, status: int) -> dict[str, Any]:
    """Repeat `call` as `who` until it answers `status`; fail past the deadline."""
    method, path, body = call
    seen: list[Any] = []

    async def refused() -> bool:
        got, answer = await world.api.call(method, path, who=who, json=body)
        seen.append(answer)
        return got == status

    await until(refused, within=WITHIN, what=f"{method} {path} as {who} answering {status} (last: {seen[-1:]})")
    last: dict[str, Any] = seen[-1]
    return last


async def add_admin(world: World, name: str) -> int:
    body = await world.api.ok(
        "POST", "/api/v1/users", who="admin", status=201,
        json={"email": f"{name}@t.dev", "display_name": name.title(), "role": "admin"},
    )  # fmt: skip
    token = await world.api.ok("POST", f"/api/v1/users/{body['id']}/token", who="admin", status=201)
    world.api.tokens[name] = token["token"]
    return int(body["id"])


# --- REST ---------------------------------------------------------------------------------------------------


async def test_a_demoted_admin_can_no_longer_create_brands_users_or_tokens(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    deputy = await add_admin(world, "deputy")
    await world.api.ok("POST", "/api/v1/brands", who="deputy", json={"name": "Before"}, status=201)  # cached now
    await world.api.ok("PUT", f"/api/v1/users/{deputy}/role", who="admin", json={"role": "viewer"})
    await refused_within(world, ("POST", "/api/v1/brands", {"name": "After"}), "deputy", 403)
    new_user = {"email": "sneaky@t.dev", "display_name": "Sneaky", "role": "admin"}
    status, _ = await world.api.call("POST", "/api/v1/users", who="deputy", json=new_user)
    assert status == 403
    status, _ = await world.api.call("POST", f"/api/v1/users/{deputy}/token", who="deputy")
    assert status == 403
    me = await world.api.ok("GET", "/api/v1/me", who="deputy")
    assert (me["role"], me["status"]) == ("viewer", "active")
    # What a viewer may do, the old token still may.
    await world.api.ok("GET", "/api/v1/orders", who="deputy")


async def test_suspended_and_deleted_accounts_are_refused_with_a_reason(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    viewer, staff = world.ids["viewer"], world.ids["staff"]
    await world.api.ok("GET", "/api/v1/me", who="viewer")
    suspended = await world.api.ok("POST", f"/api/v1/users/{viewer}/suspend", who="admin")
    assert suspended["status"] == "suspended"
    problem = await refused_within(world, ("GET", "/api/v1/me", None), "viewer", 401)
    assert problem["code"] == "account_suspended"
    assert "administrator" in problem["detail"]
    status, problem = await world.api.call("POST", f"/api/v1/users/{viewer}/token", who="admin")
    assert (status, problem["code"]) == (409, "conflict"), "no fresh token for a suspended account"
    await world.api.ok("POST", f"/api/v1/users/{viewer}/reinstate", who="admin")
    await refused_within(world, ("GET", "/api/v1/me", None), "viewer", 200)

    await world.api.ok("DELETE", f"/api/v1/users/{staff}", who="admin", status=204)
    problem = await refused_within(world, ("GET", "/api/v1/brands", None), "staff", 401)
    assert problem["code"] == "account_deleted"
    async with session_factory(engine)() as session:
        row = await session.get(User, staff)
        assert row is not None
        assert (row.email, row.display_name, row.role, row.brand_id, row.status) == (
            f"deleted-{staff}@invalid", "Deleted user", Role.VIEWER, None, AccountStatus.DELETED,
        )  # fmt: skip
    status, problem = await world.api.call("POST", f"/api/v1/users/{staff}/reinstate", who="admin")
    assert status == 409, "a delete is final"
    # The email is free again.
    await world.api.ok("POST", "/api/v1/users", who="admin", status=201,
                       json={"email": "staff@t.dev", "display_name": "Staff again", "role": "viewer"})  # fmt: skip


async def test_an_admin_cannot_lock_out_themselves_or_the_last_admin(client: Client, engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    admin = world.ids["admin"]
    for method, path, body in (
        ("PUT", f"/api/v1/users/{admin}/role", {"role": "host"}),
        ("POST", f"/api/v1/users/{admin}/suspend", None),
        ("DELETE", f"/api/v1/users/{admin}", None),
    ):
        status, problem = await world.api.call(method, path, who="admin", json=body)
        assert status == 409, problem
        assert "another admin" in problem["detail"]
    # A second admin can demote the first; the last one standing is kept even from a request that was already
    # in flight with the first's admin rights (two admins demoting each other at once).
    deputy = await add_admin(world, "deputy")
    await world.api.ok("PUT", f"/api/v1/users/{admin}/role", who="deputy", json={"role": "host"})
    in_flight = Principal(admin, Role.ADMIN)
    async with session_factory(engine).begin() as session:
        with pytest.raises(Conflict, match="last active admin"):
            await users.suspend_user(session, in_flight, deputy)
    status, problem = await world.api.call(
        "PUT", f"/api/v1/users/{world.ids['viewer']}/role", who="deputy", json={"role": "brand_staff"}
    )
    assert status == 422, "brand_staff needs a brand, as when creating a user"


async def test_a_change_reaches_another_process_through_redis(
    engine: AsyncEngine, redis_url: str, client: Client
) -> None:
    """With a cache that would hold for an hour, only the announcement can make the other process see it."""
    world = await seed_world(client, engine)
    redis = Redis.from_url(redis_url)
    here = Accounts(session_factory(engine), redis, fresh_seconds=3600)
    there = Accounts(session_factory(engine), redis, fresh_seconds=3600)
    heard: list[frozenset[int] | None] = []
    there.subscribe(heard.append)
    listener = asyncio.create_task(there.run())
    try:
        viewer = world.ids["viewer"]
        account = await there.get(viewer)
        assert account is not None
        assert account.role is Role.VIEWER
        async with session_factory(engine).begin() as session:
            await session.execute(update(User).where(User.id == viewer).values(role=Role.HOST))

        async def changed() -> bool:
            await here.announce(viewer)  # published until the listener has subscribed and hears one
            account = await there.get(viewer)
            return account is not None and account.role is Role.HOST

        await until(changed, within=5.0, what="the other process seeing the new role")
        assert frozenset({viewer}) in heard
    finally:
        listener.cancel()
        with pytest.raises(asyncio.CancelledError):
            await listener
        await redis.aclose()


# --- sockets --------------------------------------------------------------------------------------------------


async def _refusal(url: str, token: str) -> dict[str, Any]:
    """Connect with `token`, expecting a refusal; what `connect_error` carried."""
    sio = socketio.AsyncClient(reconnection=False)
    got: list[Any] = []
    sio.on("connect_error", lambda data: got.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(url, auth={"token": token}, transports=["websocket"])
    assert got, "no connect_error"
    refusal: dict[str, Any] = got[0]
    return refusal


async def test_connect_error_carries_code_and_message(pair: Pair) -> None:
    _, a, _, _ = pair
    refusal = await _refusal(a, "not-a-token")
    assert refusal["message"] == "the bearer token is malformed; sign in again to get a new one"
    assert refusal["data"] == {"code": "unauthorized", "message": refusal["message"], "retryable": False}


async def _revoked(viewer: Viewer) -> dict[str, Any]:
    await asyncio.wait_for(viewer.disconnected.wait(), WITHIN)
    (revoked,) = viewer.named("access_revoked")
    assert isinstance(revoked, dict)
    return revoked


async def test_suspended_and_deleted_users_are_disconnected_at_once(pair: Pair) -> None:
    world, a, b, viewers = pair
    room = world.ids["room"]
    viewer, _ = await viewer_in(viewers, b, room, world.api.tokens["viewer"])
    staff, _ = await viewer_in(viewers, b, room, world.api.tokens["staff"])
    bystander, _ = await viewer_in(viewers, b, room, world.api.tokens["host"])
    await world.api.ok("POST", f"/api/v1/users/{world.ids['viewer']}/suspend", who="admin")  # on another process
    revoked = await _revoked(viewer)
    assert revoked["code"] == "account_suspended"
    assert "reinstate" in revoked["message"]
    refusal = await _refusal(a, world.api.tokens["viewer"])
    assert refusal["data"]["code"] == "account_suspended"

    await world.api.ok("DELETE", f"/api/v1/users/{world.ids['staff']}", who="admin", status=204)
    assert (await _revoked(staff))["code"] == "account_deleted"
    assert (await _refusal(b, world.api.tokens["staff"]))["data"]["code"] == "account_deleted"
    assert bystander.sio.connected, "other users' sockets stay"
    ack = await bystander.call("chat", {"room_id": room, "text": "still here"})
    assert ack["ok"], ack


async def test_a_demoted_admin_socket_loses_admin_actions_and_rooms_it_may_no_longer_see(pair: Pair) -> None:
    world, _, b, viewers = pair
    room, private = world.ids["room"], world.ids["private_room"]
    await add_admin(world, "deputy")
    admin, _ = await viewer_in(viewers, b, room, world.api.tokens["admin"])
    ack = await admin.call("pin", {"room_id": room, "product_id": world.ids["product"]})
    assert ack["ok"], "an admin may pin in any live room"
    await world.api.ok("PUT", f"/api/v1/users/{world.ids['admin']}/role", who="deputy", json={"role": "viewer"})

    async def pin_refused() -> bool:
        ack = await admin.call("pin", {"room_id": room, "product_id": world.ids["product"]})
        return not ack["ok"] and ack["error"]["code"] == "forbidden"

    await until(pin_refused, within=WITHIN, what="the demoted admin's pin being refused")
    assert admin.sio.connected, "a role change re-authorises the socket; it stays connected"
    ack = await admin.call("chat", {"room_id": room, "text": "a viewer may chat"})
    assert ack["ok"], ack
    # Brand staff watching a private room (their brand is featured) lose it when they are no longer staff.
    staff, _ = await viewer_in(viewers, b, private, world.api.tokens["staff"])
    await world.api.ok("PUT", f"/api/v1/users/{world.ids['staff']}/role", who="deputy", json={"role": "viewer"})
    revoked = await _revoked(staff)
    assert revoked["code"] == "forbidden"
    assert str(private) in revoked["message"]


# --- no charge without an order -------------------------------------------------------------------------------


async def test_a_buyer_deleted_before_the_order_writer_runs_still_gets_the_order(
    pair: Pair, engine: AsyncEngine, redis_url: str
) -> None:
    world, _, _, _ = pair
    api, room, product = world.api, world.ids["room"], world.ids["product"]
    hold = await api.ok("POST", f"/api/v1/rooms/{room}/buy", who="viewer", json={"product_id": product}, status=201)
    paid = await api.ok("POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": APPROVE})
    assert paid["state"] == "paid"
    await api.ok("DELETE", f"/api/v1/users/{world.ids['viewer']}", who="admin", status=204)
    redis = Redis.from_url(redis_url)
    try:
        inventory = Inventory(redis)
        writer = OrderWriter(redis, session_factory(engine), inventory, consumer="test", block_ms=10)
        pool = PoolId.product(product)

        async def drained() -> bool:
            await writer.step()
            return await pool_drained(redis, pool)

        await until(drained, within=10.0, what="the outbox drained")
        async with session_factory(engine)() as session:
            order = await session.scalar(select(Order).where(Order.hold_id == hold["id"]))
        assert order is not None
        assert (order.buyer_id, order.status, order.payment_ref) == (
            world.ids["viewer"], OrderStatus.PAID, paid["payment_ref"],
        )  # fmt: skip
        assert await redis.xlen(DEAD_LETTERS) == 0
        audit = ChargeAudit(redis, session_factory(engine), TestModeProvider(redis), grace_seconds=0)
        while await audit.step():
            pass
        assert await redis.smembers(ORPHANS) == set(), "every charge has its order"
    finally:
        await redis.aclose()
