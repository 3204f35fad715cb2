"""The buy benchmark's world: a private Redis, a fresh database, and a live flash sale pinned in a live room.

Everything here runs in the orchestrator (`run_buy_bench.py`), before and after the servers:

* `RedisServer`: a private `redis-server` on 127.0.0.1 with the append-only file on (`appendfsync everysec`,
  as the embedded one), pinned to a CPU, stopped with its owner (`PR_SET_PDEATHSIG`).
* `fresh_database`: a new PostgreSQL database on 127.0.0.1:5432 (dropped afterwards), or a SQLite file when
  PostgreSQL is unreachable.
* `seed`: migrates the schema, then inserts users in bulk (one multi-row INSERT per 5,000), a brand, a product,
  a live public room featuring the brand, and a flash sale through the domain layer (`create_sale`,
  `schedule_sale`, `mark_live`: the allocation comes out of the product's stock as in production), then loads
  the sale into Redis with `commerce.loading.load_sale`.
* `audit_pool`: reads the pool's stock, holds and buyers hashes and checks conservation and the cap.

Standalone, it seeds a server that is already running (for `locustfile_buyers.py`) and writes a buyers file
with each buyer's token, signed with `LIVECOMMERCE_SECRET_KEY` (which must be the server's)::

    .venv/bin/python loadtests/buy_seed.py --database-url postgresql://postgres@127.0.0.1:5432/DB \\
        --redis-url redis://127.0.0.1:6390/0 --users 2000 --out /tmp/livecommerce-buyers.json
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import os
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis
from sqlalchemy import insert, select, update

from livecommerce.auth import Principal, TokenSigner
from livecommerce.commerce import sales
from livecommerce.commerce.loading import load_sale
from livecommerce.commerce.pools import Inventory, PoolId
from livecommerce.database import open_database, session_factory
from livecommerce.models import (
    Brand,
    FlashSale,
    Product,
    Role,
    Room,
    RoomStatus,
    RoomVisibility,
    SaleAudience,
    SaleStatus,
    User,
    room_brands,
)

__all__ = [
    "PG_ADMIN_URL",
    "Audit",
    "RedisServer",
    "World",
    "audit_pool",
    "create_database",
    "drop_database",
    "free_port",
    "new_sale",
    "seed",
]

PG_ADMIN_URL = os.environ.get("BUY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# Handed to the servers as LIVECOMMERCE_SECRET_KEY (the tokens written here are signed with it).
SECRET = os.environ.get("LIVECOMMERCE_SECRET_KEY") or "buy-bench-" + "s" * 40
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class RedisServer:
    """A private redis-server on 127.0.0.1:<port>, append-only file on, pinned to `cpu` with taskset."""

    def __init__(self, directory: Path, cpu: int | None) -> None:
        self.dir = directory
        self.cpu = cpu
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"), "--protected-mode", "yes",
        ]  # fmt: skip
        if self.cpu is not None:
            command = ["taskset", "-c", str(self.cpu), *command]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"redis-server did not start (see {self.dir / 'redis.log'})")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# --- the database ---------------------------------------------------------------------------------------------


@dataclass
class Database:
    url: str  # SQLAlchemy async URL, also what LIVECOMMERCE_DATABASE_URL gets
    name: str | None  # the PostgreSQL database to drop afterwards; None for SQLite
    dsn: str | None  # asyncpg DSN of the same database (for the SQL peer); None for SQLite
    note: str = ""

    @property
    def postgres(self) -> bool:
        return self.name is not None


async def create_database(sqlite_dir: Path) -> Database:
    """A new PostgreSQL database for this run (`drop_database` it afterwards), or SQLite when PG is unreachable."""
    name = f"lc_buy_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        path = sqlite_dir / "bench.db"
        return Database(f"sqlite+aiosqlite:///{path}", None, None, f"PostgreSQL unreachable ({exc}); SQLite used")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return Database(f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1), name, f"{base}/{name}")


async def drop_database(db: Database) -> None:
    if db.name is None:
        return
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
    finally:
        await admin.close()


# --- the world ------------------------------------------------------------------------------------------------


@dataclass
class World:
    """What the generator needs: ids, the users' range and tokens."""

    room_id: int
    product_id: int
    sale_id: int
    host_id: int
    host_token: str
    first_user: int  # viewers are first_user .. first_user + users - 1
    users: int
    units: int
    cap: int
    admin_id: int = 0
    brand_id: int = 0
    seed_seconds: float = 0.0

    @property
    def pool(self) -> PoolId:
        return PoolId.sale(self.sale_id)

    def tokens(self, signer: TokenSigner | None = None) -> list[str]:
        signer = signer or TokenSigner(SECRET, 6 * 3600)
        return [signer.issue(self.first_user + i, Role.VIEWER) for i in range(self.users)]


async def seed(database_url: str, redis_url: str, *, users: int, units: int, cap: int) -> World:
    """Migrate, insert the users, a brand, a host and a live room, then a product on sale (`new_sale`)."""
    started = time.perf_counter()
    engine = await open_database(database_url)
    try:
        sessions = session_factory(engine)
        now = datetime.now(UTC)
        async with sessions.begin() as session:
            brand = Brand(name="Bench Brand", name_key="bench brand", description="", created_at=now)
            session.add(brand)
            await session.flush()
            host = User(email="host@bench.dev", display_name="Bench Host", role=Role.HOST, created_at=now)
            admin = User(email="admin@bench.dev", display_name="Bench Admin", role=Role.ADMIN, created_at=now)
            session.add_all([host, admin])
            await session.flush()
            room = Room(
                title="Bench burst", host_id=host.id, visibility=RoomVisibility.PUBLIC, status=RoomStatus.LIVE,
                scheduled_start=now, started_at=now, created_at=now,
            )  # fmt: skip
            session.add(room)
            await session.flush()
            await session.execute(insert(room_brands).values(room_id=room.id, brand_id=brand.id))
            host_id, room_id, admin_id, brand_id = host.id, room.id, admin.id, brand.id
        chunk = 5000
        for start in range(0, users, chunk):
            rows = [
                {"email": f"buyer{n}@bench.dev", "display_name": f"Buyer {n}", "role": Role.VIEWER, "created_at": now}
                for n in range(start, min(users, start + chunk))
            ]
            async with sessions.begin() as session:
                await session.execute(insert(User), rows)
        async with sessions() as session:
            first_user = await session.scalar(select(User.id).where(User.email == "buyer0@bench.dev"))
            last_user = await session.scalar(select(User.id).where(User.email == f"buyer{users - 1}@bench.dev"))
        assert first_user is not None, "no buyers inserted"
        assert last_user == first_user + users - 1, "user ids are not contiguous"
    finally:
        await engine.dispose()
    signer = TokenSigner(SECRET, 6 * 3600)
    world = World(
        room_id=room_id, product_id=0, sale_id=0, host_id=host_id, host_token=signer.issue(host_id, Role.HOST),
        first_user=first_user, users=users, units=units, cap=cap, admin_id=admin_id, brand_id=brand_id,
    )  # fmt: skip
    world = await new_sale(database_url, redis_url, world)
    world.seed_seconds = time.perf_counter() - started
    return world


async def new_sale(database_url: str, redis_url: str, world: World) -> World:
    """A new product in the world's room with a live flash sale of it, loaded into the Redis at `redis_url`.

    Each hub part gets its own product, sale and pool: the room's earlier sale is ended first, so the offer
    lookup finds only the new one."""
    engine = await open_database(database_url)
    try:
        sessions = session_factory(engine)
        staff = Principal(world.admin_id, Role.ADMIN)
        now = datetime.now(UTC)
        async with sessions.begin() as session:
            if world.sale_id:
                await session.execute(
                    update(FlashSale).where(FlashSale.id == world.sale_id).values(status=SaleStatus.ENDED)
                )
            n = world.product_id + 1
            product = Product(
                brand_id=world.brand_id, sku=f"BENCH-{now.timestamp():.0f}-{n}", title=f"Bench Sneaker {n}",
                description="", image_url=None, price_minor=9900, currency="USD", stock=world.units * 10,
                units_sold=0, created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(product)
            await session.flush()
            view = await sales.create_sale(
                session, staff, product_id=product.id, price_minor=4900, quantity=world.units,
                per_buyer_limit=world.cap, starts_at=datetime.now(UTC), ends_at=datetime.now(UTC) + timedelta(hours=2),
                hold_seconds=600, audience=SaleAudience.OPEN, room_ids=[world.room_id], invitee_ids=[], code_count=0,
            )  # fmt: skip
            await sales.schedule_sale(session, staff, view.id)
            assert await sales.mark_live(session, view.id)
            product_id, sale_id = product.id, view.id
        redis = Redis.from_url(redis_url)
        try:
            inventory = Inventory(redis)
            await inventory.load_library()
            async with sessions() as session:
                loaded = await load_sale(inventory, session, sale_id)
            assert loaded is not None, "the sale is not loadable"
            assert loaded[0] == "loaded", loaded
        finally:
            await redis.aclose()
    finally:
        await engine.dispose()
    return dataclasses.replace(world, product_id=product_id, sale_id=sale_id)


# --- the audit ------------------------------------------------------------------------------------------------


@dataclass
class Audit:
    total: int = 0
    available: int = 0
    held: int = 0
    paid: int = 0
    holds: int = 0  # hold records in Redis
    units_in_holds: int = 0  # units of held, paying or paid holds
    buyers: int = 0  # distinct buyers with units
    max_per_buyer: int = 0
    over_cap: int = 0  # buyers above the cap (from the holds themselves)
    buyers_hash_mismatch: int = 0  # buyers whose `buyers` counter differs from their holds
    outbox: int = 0  # entries in the pool's outbox stream ("reserved" events)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        verdict = "**conservation held**" if self.ok else "**VIOLATED: " + "; ".join(self.problems) + "**"
        return (
            f"available {self.available:,} + held {self.held:,} + paid {self.paid:,} = "
            f"{self.available + self.held + self.paid:,} of total {self.total:,}; {self.holds:,} holds carrying "
            f"{self.units_in_holds:,} units over {self.buyers:,} buyers, at most {self.max_per_buyer} per buyer; "
            f"{self.outbox:,} outbox entries — {verdict}"
        )


async def audit_pool(redis_url: str, pool: PoolId, units: int, cap: int) -> Audit:
    """Read the pool's stock, holds and buyers hashes and check what must hold after a burst."""
    redis = Redis.from_url(redis_url)
    try:
        keys = pool.keys
        stock = {k.decode(): int(v) for k, v in (await redis.hgetall(keys.stock)).items()}
        holds = await redis.hgetall(keys.holds)
        buyers = {int(k): int(v) for k, v in (await redis.hgetall(keys.buyers)).items()}
        outbox = int(await redis.xlen(keys.outbox))
    finally:
        await redis.aclose()
    audit = Audit(
        total=stock.get("total", 0), available=stock.get("available", 0), held=stock.get("held", 0),
        paid=stock.get("paid", 0), holds=len(holds), outbox=outbox,
    )  # fmt: skip
    per_buyer: Counter[int] = Counter()
    for raw in holds.values():
        hold: dict[str, Any] = orjson.loads(raw)
        if hold["state"] in ("held", "paying", "paid"):
            per_buyer[int(hold["buyer"])] += int(hold["qty"])
            audit.units_in_holds += int(hold["qty"])
    audit.buyers = len(per_buyer)
    audit.max_per_buyer = max(per_buyer.values(), default=0)
    audit.over_cap = sum(1 for units_ in per_buyer.values() if units_ > cap)
    audit.buyers_hash_mismatch = sum(1 for b in set(per_buyer) | set(buyers) if per_buyer[b] != buyers.get(b, 0))
    if audit.available + audit.held + audit.paid != audit.total:
        audit.problems.append("available + held + paid != total")
    if audit.total != units:
        audit.problems.append(f"total {audit.total} != {units} loaded")
    if audit.units_in_holds != audit.held + audit.paid:
        audit.problems.append(f"units in holds {audit.units_in_holds} != held + paid {audit.held + audit.paid}")
    if audit.units_in_holds > units:
        audit.problems.append(f"OVERSOLD: {audit.units_in_holds} units held or paid of {units}")
    if audit.over_cap:
        audit.problems.append(f"{audit.over_cap} buyers above the cap of {cap}")
    if audit.buyers_hash_mismatch:
        audit.problems.append(f"{audit.buyers_hash_mismatch} buyers' counters differ from their holds")
    return audit


def main(argv: list[str] | None = None) -> int:
    """Seed a running server's database and Redis for `locustfile_buyers.py`; write the buyers file."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Seed buyers, a live room and a flash sale; write a buyers file.")
    parser.add_argument("--database-url", required=True, help="the server's LIVECOMMERCE_DATABASE_URL")
    parser.add_argument("--redis-url", required=True, help="the server's LIVECOMMERCE_REDIS_URL")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--cap", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/livecommerce-buyers.json"))  # noqa: S108
    args = parser.parse_args(argv)
    url = args.database_url
    for plain, driver in (("postgresql://", "postgresql+asyncpg://"), ("sqlite://", "sqlite+aiosqlite://")):
        if url.startswith(plain):
            url = driver + url[len(plain) :]
    world = asyncio.run(seed(url, args.redis_url, users=args.users, units=args.units, cap=args.cap))
    args.out.write_text(json.dumps({
        "room_id": world.room_id, "product_id": world.product_id, "sale_id": world.sale_id,
        "first_user": world.first_user, "users": world.users, "tokens": world.tokens(),
    }))  # fmt: skip
    print(f"seeded {world.users} buyers (ids {world.first_user}..{world.first_user + world.users - 1}), room "
          f"{world.room_id}, product {world.product_id}, sale {world.sale_id} ({world.units} units, cap {world.cap}) "
          f"in {world.seed_seconds:.1f} s; tokens (signed with the bench secret) in {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
