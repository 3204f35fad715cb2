"""Selling through a PostgreSQL outage: a throwaway cluster is stopped during a live flash sale while buyers
reserve and pay over REST and the socket; afterwards every paid hold is exactly one order.

The stock, the holds and the payments live in Redis; what the buy path reads from SQL (the room, the offer)
is cached and kept through failed refreshes. Routes that truly need SQL answer 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.app import create_app
from livecommerce.auth import TokenSigner
from livecommerce.commerce.jobs import OutboxWriter, SaleLoader
from livecommerce.commerce.orders import OrderWriter, pool_drained
from livecommerce.commerce.pools import HoldState, Inventory, PoolId
from livecommerce.database import create_engine, migrate, session_factory
from livecommerce.models import Order, OrderStatus, Role, Room, RoomStatus, room_brands, sale_rooms, utcnow
from livecommerce.settings import Settings
from tests.support.audit import audit_pool
from tests.support.postgres_cluster import PostgresCluster, postgres_cluster
from tests.support.shop import Shop, add_sale, seed_shop
from tests.support.sockets import Viewer
from tests.support.waits import until
from tests.support.world import SECRET

APPROVE = "4242 4242 4242 4242"
REST_BUYERS = 6
SOCKET_BUYERS = 3

Client = TestClient[Request, Application]


@pytest.fixture
async def cluster() -> AsyncIterator[PostgresCluster]:
    async with postgres_cluster() as running:
        yield running


@dataclass
class Sale:
    client: Client
    engine: AsyncEngine
    shop: Shop
    pool: PoolId
    tokens: list[str]
    host_token: str


@asynccontextmanager
async def open_sale(cluster: PostgresCluster, redis_url: str, tmp_path: Path) -> AsyncIterator[Sale]:
    """A live room on the cluster, its flash sale loaded into Redis, and the app serving it."""
    engine = create_engine(cluster.url)
    await migrate(engine)
    shop = await seed_shop(engine, stock=5000, buyers=REST_BUYERS + SOCKET_BUYERS)
    now = utcnow()
    sale_id = await add_sale(engine, shop, quantity=4500, per_buyer_limit=500, starts_at=now - timedelta(seconds=1),
                             ends_at=now + timedelta(hours=1))  # fmt: skip
    async with session_factory(engine).begin() as session:
        await session.execute(room_brands.insert().values(room_id=shop.room_id, brand_id=shop.brand_id))
        await session.execute(sale_rooms.insert().values(sale_id=sale_id, room_id=shop.room_id))
        await session.execute(
            update(Room).where(Room.id == shop.room_id).values(status=RoomStatus.LIVE, started_at=now)
        )
        host_id = (await session.get(Room, shop.room_id)).host_id  # type: ignore[union-attr]
    redis = Redis.from_url(redis_url)
    inventory = Inventory(redis)
    await inventory.load_library()
    await SaleLoader(session_factory(engine), inventory).step()  # the worker loads the sale into Redis
    await redis.aclose()
    settings = Settings(database_url=cluster.url, data_dir=tmp_path, secret_key=SECRET, demo=False,
                        rate_limit_writes=0, rate_limit_reads=0)  # fmt: skip
    signer = TokenSigner(SECRET, 3600)
    tokens = [signer.issue(buyer, Role.VIEWER) for buyer in shop.buyer_ids]
    try:
        async with TestClient(TestServer(create_app(settings, redis_url=redis_url), host="127.0.0.1")) as client:
            yield Sale(client, engine, shop, PoolId.sale(sale_id), tokens, signer.issue(host_id, Role.HOST))
    finally:
        await engine.dispose()


async def rest(
    client: Client, method: str, path: str, token: str | None = None, json: Any = None
) -> tuple[int, Any, str | None]:
    """(status, JSON body, Retry-After)"""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client.request(method, path, headers=headers, json=json) as response:
        body = await response.json(content_type=None)
        return response.status, body, response.headers.get("Retry-After")


class Buyers:
    """REST and socket buyers that reserve one unit and pay for it, per round, all at once."""

    def __init__(self, sale: Sale, sockets: list[Viewer]) -> None:
        self.sale = sale
        self.sockets = sockets
        self.paid: set[str] = set()
        self.taps = 0

    async def rest_buyer(self, token: str) -> None:
        sale, room, product = self.sale, self.sale.shop.room_id, self.sale.shop.product_id
        self.taps += 1
        key = f"tap-{self.taps}"
        status, body, _ = await rest(sale.client, "POST", f"/api/v1/rooms/{room}/buy", token,
                                     {"product_id": product, "idempotency_key": key})  # fmt: skip
        assert status == 201, (status, body)
        hold = body["id"]
        status, body, _ = await rest(sale.client, "POST", f"/api/v1/holds/{hold}/checkout", token,
                                     {"card_number": APPROVE})  # fmt: skip
        assert (status, body["state"]) == (200, "paid"), (status, body)
        self.paid.add(hold)

    @staticmethod
    async def call(viewer: Viewer, event: str, data: dict[str, object]) -> dict[str, Any]:
        """As a well-behaved client does: a `rate_limited` refusal (the rounds run back to back, faster than a
        socket's event budget on a quick machine) is retried unchanged after its `retry_after`; the request
        is idempotent, so a retry cannot buy twice."""
        for _ in range(3):  # a hub that refused more than that would be refusing too much: fail
            ack = await viewer.call(event, data)
            error = ack.get("error") or {}
            if error.get("code") != "rate_limited":
                return ack
            assert (error["retryable"], error["retry_after"]) == (True, 1), ack
            await asyncio.sleep(error["retry_after"])
        raise AssertionError(f"{event} still rate-limited after three waits: {ack}")

    async def socket_buyer(self, viewer: Viewer) -> None:
        room, product = self.sale.shop.room_id, self.sale.shop.product_id
        self.taps += 1
        ack = await self.call(
            viewer, "buy", {"room_id": room, "product_id": product, "idempotency_key": f"tap-{self.taps}"}
        )
        assert ack["ok"], ack
        hold = ack["data"]["hold"]["id"]
        ack = await self.call(viewer, "checkout", {"hold_id": hold, "card_number": APPROVE})
        assert ack["ok"], ack
        assert ack["data"]["hold"]["state"] == "paid", ack
        self.paid.add(hold)

    async def round(self) -> None:
        await asyncio.gather(
            *(self.rest_buyer(token) for token in self.sale.tokens[:REST_BUYERS]),
            *(self.socket_buyer(viewer) for viewer in self.sockets),
        )


async def test_buying_and_paying_go_on_while_postgresql_is_down(
    cluster: PostgresCluster, redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with open_sale(cluster, redis_url, tmp_path) as sale:
        await _sell_through_an_outage(sale, cluster, redis_url, caplog)


async def _sell_through_an_outage(
    sale: Sale, cluster: PostgresCluster, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client, room = sale.client, sale.shop.room_id
    sockets: list[Viewer] = []
    redis = Redis.from_url(redis_url)
    writer_task: asyncio.Task[None] | None = None
    try:
        for token in sale.tokens[REST_BUYERS:]:
            viewer = Viewer()
            sockets.append(viewer)
            await viewer.connect(str(client.make_url("")), token)
            ack = await viewer.call("join", {"room_id": room})
            assert ack["ok"], ack
        host = Viewer()
        sockets.append(host)
        await host.connect(str(client.make_url("")), sale.host_token)
        assert (await host.call("join", {"room_id": room}))["ok"]
        buyers = Buyers(sale, sockets[:SOCKET_BUYERS])
        await buyers.round()  # warm: the room and the offer are cached
        assert (await rest(client, "GET", "/api/v1/orders", sale.tokens[0]))[0] == 200

        # The worker's order writer runs throughout, retrying quickly while the database is down.
        inventory = Inventory(redis)
        job = OutboxWriter(OrderWriter(redis, session_factory(sale.engine), inventory, consumer="t", block_ms=20))
        job.backoff_max = 0.2
        writer_task = asyncio.create_task(job.run())

        await cluster.stop("fast")
        stopped = time.monotonic()

        # Buying and paying go on, past the caches' fresh and stale windows: until each cached lookup has
        # failed to refresh (and kept its value), and one round more.
        def refresh_failed(what: str) -> bool:
            return any(r.name == "livecommerce.recent" and what in r.getMessage() for r in caplog.records)

        while not (refresh_failed("refreshing room") and refresh_failed("refreshing offer")):
            assert time.monotonic() - stopped < 15, "the cached lookups were never refreshed during the outage"
            await buyers.round()
        await buyers.round()

        # What truly needs SQL says so: 503 `unavailable`, when to retry, and never a 500.
        status, body, retry_after = await rest(client, "GET", "/api/v1/orders", sale.tokens[0])
        assert (status, body["code"], body["retryable"]) == (503, "unavailable", True), body
        assert retry_after is not None
        assert int(retry_after) >= 1
        assert body["retry_after"] == int(retry_after)
        assert "database" in body["detail"], body
        assert f"retry in {retry_after} s" in body["detail"], body
        status, body, _ = await rest(client, "GET", f"/api/v1/rooms/{room}")
        assert (status, body["code"]) == (503, "unavailable"), body
        status, body, _ = await rest(client, "GET", "/ready")
        assert (status, body["checks"]["redis"]) == (503, "ok"), body
        assert body["checks"]["database"] != "ok", body
        ack = await host.call("pin", {"room_id": room, "product_id": sale.shop.product_id})
        assert ack["error"]["code"] == "unavailable", ack
        assert ack["error"]["retry_after"] >= 1
        assert ack["error"]["retryable"] is True
        # A viewer who drops out re-joins the live room from the kept room and Redis.
        viewer = sockets[0]
        assert (await Buyers.call(viewer, "leave", {"room_id": room}))["ok"]
        ack = await Buyers.call(viewer, "join", {"room_id": room})
        assert ack["ok"], ack
        assert ack["data"]["snapshot"]["room"]["status"] == "live"
        assert ack["data"]["snapshot"]["room"]["brands"] == [{"id": sale.shop.brand_id, "name": "Shop"}]
        await buyers.round()  # and buys again
        faults = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(
            ("livecommerce.api", "livecommerce.hub", "livecommerce.commerce.buying"))]  # fmt: skip
        assert not faults, f"an outage is not a fault: {faults}"

        await cluster.start()

        # The order writer catches up: every paid hold is exactly one order.
        async def drained() -> bool:
            return await pool_drained(redis, sale.pool)

        await until(drained, within=15, what="the outbox drained into SQL")
        audit = await audit_pool(redis, sale.pool)
        paid = {hold.id for hold in audit.holds if hold.state is HoldState.PAID}
        assert paid == buyers.paid
        async with sale.engine.connect() as connection:
            rows = (await connection.execute(select(Order.hold_id, Order.status))).all()
        assert Counter(hold for hold, _ in rows) == Counter(paid), "not exactly one order per paid hold"
        assert {status for _, status in rows} == {OrderStatus.PAID}

        # And the server recovers on its own: SQL routes answer again.
        async def orders_answer() -> bool:
            return (await rest(client, "GET", "/api/v1/orders", sale.tokens[0]))[0] == 200

        await until(orders_answer, within=10, what="GET /orders answering again")
    finally:
        if writer_task is not None:
            writer_task.cancel()
            await asyncio.gather(writer_task, return_exceptions=True)
        for viewer in sockets:
            await viewer.close()
        await redis.aclose()
