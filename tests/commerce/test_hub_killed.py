"""Killing a hub mid-burst (issue 4): every paid order is in SQL exactly once after the buyers resume elsewhere.

Two real `livecommerce serve` processes (A and B) share one Redis and one database, and a real `livecommerce
worker` writes orders. Buyers on A tap Buy (a key per tap) and pay; A is killed with SIGKILL while their
calls are in flight. Each buyer then connects to B and carries on: it asks again exactly what A never
answered, with the same key (buy) or the same hold id (checkout), then does what it had not started.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import socketio
from redis.asyncio import Redis
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.auth import TokenSigner
from livecommerce.commerce.orders import DEAD_LETTERS, pool_drained
from livecommerce.commerce.payments import LEDGER, Charge, ChargeStatus
from livecommerce.commerce.pools import HoldState, PoolId
from livecommerce.models import Order, OrderStatus, Role, Room, room_brands
from tests.support.audit import audit_pool
from tests.support.databases import Database
from tests.support.processes import Launcher, cli_env, http, start_worker
from tests.support.shop import product_row, seed_shop
from tests.support.sockets import Viewer
from tests.support.waits import until
from tests.support.world import SECRET

pytestmark = pytest.mark.slow

STOCK = 60
BUYERS = 40
TAPS = 2  # per buyer: 80 units wanted of 60, so the pool sells out around the kill
LIMIT = 10  # PRODUCT_POOL_LIMIT: a product's own pool
APPROVE = "4242 4242 4242 4242"


@dataclass
class Buyer:
    """One person's plan (TAPS taps, each paid for at once) and every answer it got, on whichever hub."""

    user_id: int
    token: str
    keys: list[str]
    taps: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> the buy ack
    checkouts: dict[str, dict[str, Any]] = field(default_factory=dict)  # hold id -> the checkout ack
    in_flight: tuple[str, str] | None = None  # ("buy", key) or ("checkout", hold id): asked, no answer yet
    lost: set[tuple[str, str]] = field(default_factory=set)  # asked of A, never answered
    retried: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # B's answer to each lost call

    def hold_of(self, key: str) -> str | None:
        ack = self.taps.get(key)
        return ack["data"]["hold"]["id"] if ack is not None and ack["ok"] else None


@dataclass
class Answers:
    count: int = 0


async def ask(buyer: Buyer, viewer: Viewer, what: tuple[str, str], payload: dict[str, Any], answers: Answers) -> Any:
    buyer.in_flight = what
    ack = await viewer.call(what[0], payload)
    buyer.in_flight = None
    answers.count += 1
    if what in buyer.lost:
        buyer.retried[what] = ack
    return ack


async def shop(buyer: Buyer, viewer: Viewer, room: int, product: int, answers: Answers) -> None:
    """Tap, pay, tap, pay — skipping every step already answered (so on B it resumes where A left off)."""
    for key in buyer.keys:
        if key not in buyer.taps:
            buy = {"room_id": room, "product_id": product, "key": key}
            buyer.taps[key] = await ask(buyer, viewer, ("buy", key), buy, answers)
        hold = buyer.hold_of(key)
        if hold is not None and hold not in buyer.checkouts:
            pay = {"hold_id": hold, "card_number": APPROVE}
            buyer.checkouts[hold] = await ask(buyer, viewer, ("checkout", hold), pay, answers)


async def test_a_hub_killed_mid_burst_loses_and_doubles_no_order(
    launcher: Launcher,
    tmp_path: Path,
    redis_url: str,
    database: Database,
    engine: AsyncEngine,
) -> None:
    shop_ = await seed_shop(engine, stock=STOCK, buyers=BUYERS)
    async with engine.begin() as connection:
        await connection.execute(insert(room_brands).values(room_id=shop_.room_id, brand_id=shop_.brand_id))
        host_id = await connection.scalar(select(Room.host_id).where(Room.id == shop_.room_id))
    assert host_id is not None
    signer = TokenSigner(SECRET, 3600)
    env = cli_env(
        LIVECOMMERCE_SECRET_KEY=SECRET,
        LIVECOMMERCE_REDIS_URL=redis_url,
        LIVECOMMERCE_DATABASE_URL=database.url,
        LIVECOMMERCE_LOG_LEVEL="WARNING",
    )
    a = launcher.serve(cwd=tmp_path / "a", env=env, name="a")
    b = launcher.serve(cwd=tmp_path / "b", env=env, name="b")
    worker = start_worker(launcher, tmp_path / "w", redis_url, database.url, "worker")
    a.wait_ready()
    b.wait_ready()
    room, product, pool = shop_.room_id, shop_.product_id, PoolId.product(shop_.product_id)
    status, _, body = http("POST", f"{a.base}/api/v1/rooms/{room}/live", token=signer.issue(host_id, Role.HOST))
    assert status == 200, body

    buyers = [
        Buyer(user_id, signer.issue(user_id, Role.VIEWER), [f"u{user_id}-tap{n}" for n in range(TAPS)])
        for user_id in shop_.buyer_ids
    ]
    viewers: list[Viewer] = []
    redis = Redis.from_url(redis_url)

    async def join(buyer: Buyer, url: str) -> Viewer:
        viewer = Viewer()
        viewers.append(viewer)
        # 40 buyers connect at once (each a name lookup in SQL): a loaded test machine needs more than 1 s.
        await viewer.sio.connect(url, auth={"token": buyer.token}, transports=["websocket"], wait_timeout=10)
        ack = await viewer.call("join", {"room_id": room})
        assert ack["ok"], ack
        return viewer

    try:
        # --- on A: the burst, and the kill in the middle of it ------------------------------------------------
        on_a = await asyncio.gather(*(join(buyer, a.base) for buyer in buyers))
        answers = Answers()
        burst = [
            asyncio.create_task(shop(buyer, v, room, product, answers)) for buyer, v in zip(buyers, on_a, strict=True)
        ]
        # Kill A the moment Redis has taken someone's second tap (a condition, polled without sleeping): A has
        # answered many calls by then, has others in flight, and holds answers it has not sent yet.
        deadline = time.monotonic() + 10
        while await redis.hlen(pool.keys[2]) <= BUYERS:
            assert time.monotonic() < deadline, "the burst never reached the second taps"
        a.popen.kill()
        await asyncio.wait_for(asyncio.gather(*(viewer.disconnected.wait() for viewer in on_a)), 10)
        assert a.popen.wait(5) == -signal.SIGKILL
        for task in burst:  # a call A never answered would only time out: stop waiting for it
            task.cancel()
        outcomes = await asyncio.gather(*burst, return_exceptions=True)
        for outcome in outcomes:  # cancelled mid-call, or the socket was gone before the call was sent
            if isinstance(outcome, BaseException):
                assert isinstance(outcome, asyncio.CancelledError | socketio.exceptions.SocketIOError), outcome
        for buyer in buyers:
            if buyer.in_flight is not None:
                buyer.lost.add(buyer.in_flight)
                buyer.in_flight = None
        lost = [what for buyer in buyers for what in buyer.lost]
        assert answers.count > 0, "A answered nothing before it died"
        assert lost, "no call was in flight when A died: the test proved nothing"
        # What Redis had taken from each tap before A died (its own commands end with its connections).
        taken = {(h.buyer_id, h.key): h.id for h in (await audit_pool(redis, pool, limit=LIMIT)).holds}

        # --- on B: every buyer resumes, retrying what A never answered with the same key or hold id ------------
        on_b = await asyncio.gather(*(join(buyer, b.base) for buyer in buyers))
        resumed = Answers()
        resume = [shop(buyer, viewer, room, product, resumed) for buyer, viewer in zip(buyers, on_b, strict=True)]
        await asyncio.wait_for(asyncio.gather(*resume), 15)

        # --- every buyer has exactly the holds its keys produced ----------------------------------------------
        audit = await audit_pool(redis, pool, limit=LIMIT)
        assert audit.stock.total == STOCK
        holds = {h.id: h for h in audit.holds}
        told = {
            (buyer.user_id, key): hold
            for buyer in buyers
            for key in buyer.keys
            if (hold := buyer.hold_of(key)) is not None
        }
        assert {(h.buyer_id, h.key): h.id for h in audit.holds} == told, "a hold its buyer was never told of"
        for buyer in buyers:
            for key in buyer.keys:
                ack = buyer.taps[key]
                if not ack["ok"]:
                    assert ack["error"]["code"] == "sold_out", ack
                    continue
                was_taken = (buyer.user_id, key) in taken
                if ("buy", key) in buyer.lost:  # the retry on B: the same hold when A had taken the tap
                    assert ack["data"]["replayed"] is was_taken, (key, ack, was_taken)
                    if was_taken:
                        assert ack["data"]["hold"]["id"] == taken[buyer.user_id, key]
                else:
                    assert ack["data"]["replayed"] is False, (key, ack)
        for buyer in buyers:
            assert set(buyer.retried) == buyer.lost, "every call A never answered was asked again on B"

        # --- every hold paid once: a checkout retried on B returns the payment A made, or makes it -------------
        # Where A died between asking the provider and recording its answer, the hold was left "paying": the
        # retry on B asked the provider by hold id at once (A's charge if it landed, else B charged the key).
        paid_ids: set[str] = set()
        for buyer in buyers:
            for hold_id, ack in buyer.checkouts.items():
                assert ack["ok"], (hold_id, ("checkout", hold_id) in buyer.lost, ack)
                assert ack["data"]["hold"]["state"] == "paid", ack
                assert holds[hold_id].payment_ref == ack["data"]["hold"]["payment_ref"]
                paid_ids.add(hold_id)
        assert {h.id for h in audit.holds if h.state is HoldState.PAID} == paid_ids
        assert {h.id for h in audit.holds} == paid_ids, "every hold was paid for"
        assert audit.stock.paid == audit.paid_units == len(paid_ids)
        assert audit.stock.available + audit.stock.held + audit.stock.paid == STOCK
        ledger: dict[bytes, bytes] = await redis.hgetall(LEDGER)  # type: ignore[assignment]
        charges = {key.decode(): Charge.from_json(raw) for key, raw in ledger.items()}
        assert {k: c.ref for k, c in charges.items() if k in paid_ids} == {h: holds[h].payment_ref for h in paid_ids}
        assert set(charges) <= paid_ids, "a charge for no hold"
        assert all(c.status is ChargeStatus.CHARGED for c in charges.values())

        # --- and in SQL: every paid hold is one paid order, written by the worker ---------------------------
        async def written() -> bool:
            worker.check_running("every order was written")
            async with engine.connect() as connection:
                paid = await connection.scalar(select(func.count()).where(Order.status == OrderStatus.PAID))
            return paid == len(paid_ids) and await pool_drained(redis, pool)

        await until(written, within=10, what=f"{len(paid_ids)} paid orders in SQL")
        async with engine.connect() as connection:
            rows = (
                await connection.execute(select(Order.hold_id, Order.status, Order.quantity, Order.payment_ref))
            ).all()
        assert len(rows) == len({row.hold_id for row in rows}), "an order written twice for one hold"
        assert {row.hold_id for row in rows} == set(holds), "an order for every hold, and for no other"
        paid_rows = {row.hold_id: row.payment_ref for row in rows if row.status is OrderStatus.PAID}
        assert paid_rows == {h: holds[h].payment_ref for h in paid_ids}
        assert sum(row.quantity for row in rows if row.status is OrderStatus.PAID) == audit.stock.paid
        assert await product_row(engine, product) == (STOCK - audit.stock.paid, audit.stock.paid)
        assert await redis.xlen(DEAD_LETTERS) == 0
    finally:
        for viewer in viewers:
            if viewer.sio.connected:
                with contextlib.suppress(Exception):
                    await viewer.close()
        await redis.aclose()
    assert b.stop() == 0
    assert worker.stop() == 0
    assert "Traceback" not in b.stderr + worker.stderr, b.stderr + worker.stderr
