"""A brand's orders as CSV and a flash sale's live figures, against the app on loopback, real Redis and SQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.api.reports import CSV_COLUMNS, csv_cell
from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.loading import load_sale
from livecommerce.commerce.order_queries import brand_order_lines
from livecommerce.database import session_factory
from livecommerce.models import Order, OrderStatus
from tests.support.world import World, seed_world

HOSTILE_TITLE = '=HYPERLINK("http://evil.test","click")'


async def _add_orders(engine: AsyncEngine, world: World, count: int, *, payment_ref: str = "-2+3") -> list[int]:
    """Paid orders of `product`, bought outside any sale."""
    ids = world.ids
    now = datetime.now(UTC).replace(microsecond=0)
    async with session_factory(engine).begin() as session:
        orders = [
            Order(
                hold_id=f"p{ids['product']}.{n + 1}",
                pool=f"p{ids['product']}",
                sale_id=None,
                product_id=ids["product"],
                brand_id=ids["brand"],
                room_id=ids["room"],
                buyer_id=ids["viewer"],
                quantity=2,
                unit_price_minor=1999,
                total_minor=3998,
                currency="USD",
                status=OrderStatus.PAID,
                payment_ref=payment_ref,
                held_at=now,
                expires_at=now + timedelta(minutes=5),
                paid_at=now,
                updated_at=now,
            )
            for n in range(count)
        ]
        session.add_all(orders)
        await session.flush()
        return [order.id for order in orders]


async def _csv(world: World, query: str = "", who: str = "staff") -> list[dict[str, str]]:
    path = f"/api/v1/brands/{world.ids['brand']}/orders.csv{query}"
    async with world.api.client.get(path, headers={"Authorization": f"Bearer {world.api.tokens[who]}"}) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        assert response.charset == "utf-8"
        assert "attachment" in response.headers["Content-Disposition"]
        text = await response.text()
    assert text.endswith("\r\n")
    lines = text.split("\r\n")
    assert lines[0] == ",".join(CSV_COLUMNS)
    return list(csv.DictReader(io.StringIO(text)))


async def test_csv_lists_every_order_of_the_brand_oldest_first(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    await world.api.ok("PATCH", f"/api/v1/products/{world.ids['product']}", who="staff", json={"title": HOSTILE_TITLE})
    added = await _add_orders(engine, world, 3)
    rows = await _csv(world)
    assert [int(row["order_id"]) for row in rows] == [world.ids["order"], *added]
    seeded = rows[0]
    assert seeded["hold_id"] == f"s{world.ids['live_sale']}.1"
    assert seeded["status"] == "paid"
    assert seeded["sku"] == "SKU-sale"
    assert seeded["title"] == "On sale"
    assert seeded["sale_id"] == str(world.ids["live_sale"])
    assert seeded["room_id"] == str(world.ids["room"])
    assert (seeded["quantity"], seeded["unit_price_minor"], seeded["total_minor"]) == ("1", "999", "999")
    assert seeded["currency"] == "USD"
    assert seeded["payment_ref"] == "test_1"
    assert seeded["buyer_id"] == str(world.ids["viewer"])
    paid_at = datetime.fromisoformat(seeded["paid_at"])
    assert seeded["paid_at"].endswith("Z")
    assert abs(paid_at - datetime.now(UTC)) < timedelta(minutes=5)
    # A formula in a product title or payment reference is written as text, never as a formula.
    hostile = rows[1]
    assert hostile["title"] == "'" + HOSTILE_TITLE
    assert hostile["payment_ref"] == "'-2+3"
    assert hostile["sale_id"] == ""  # bought outside a flash sale


async def test_csv_filters_by_sale_and_status_and_answers_a_header_when_empty(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    await _add_orders(engine, world, 2)
    assert [row["sale_id"] for row in await _csv(world, f"?sale_id={world.ids['live_sale']}")] == [
        str(world.ids["live_sale"])
    ]
    assert len(await _csv(world, "?status=paid", who="admin")) == 3
    assert await _csv(world, "?status=expired") == []
    status, problem = await world.api.call("GET", f"/api/v1/brands/{world.ids['brand']}/orders.csv?status=lost")
    assert status == 422
    assert "query.status" in problem["detail"]


async def test_the_export_reads_in_pages(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    added = await _add_orders(engine, world, 6)
    sessions = session_factory(engine)
    pages = [page async for page in brand_order_lines(sessions, world.ids["brand"], page_size=3)]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [line.order.id for page in pages for line in page] == [world.ids["order"], *added]
    other = [page async for page in brand_order_lines(sessions, world.ids["other_brand"], page_size=3)]
    assert other == []


async def test_an_export_whose_first_page_fails_is_a_503_not_an_empty_csv(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    """The orders table cannot be read (here: renamed away after the access check passes), so the export must not
    answer 200 with only a header row, which reads as "no orders": the first page is read before the status."""
    world = await seed_world(client, engine)
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE orders RENAME TO orders_away"))
    try:
        path = f"/api/v1/brands/{world.ids['brand']}/orders.csv"
        headers = {"Authorization": f"Bearer {world.api.tokens['staff']}"}
        async with world.api.client.get(path, headers=headers) as response:
            body = await response.json(content_type=None)
            # SQLite says "no such table" as an OperationalError (read as the database being down: 503),
            # PostgreSQL as a ProgrammingError (a fault: 500); either way a problem, not a CSV.
            assert response.content_type == "application/problem+json", body
            assert (response.status, body["code"]) in ((503, "unavailable"), (500, "internal")), body
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE orders_away RENAME TO orders"))
    assert len(await _csv(world)) == 1  # and with the table back, the seeded order


def test_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    for hostile in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_cell(hostile) == "'" + hostile
    for harmless in ("Shoes", "1+1", "a=b", "", "'quoted"):
        assert csv_cell(harmless) == harmless
    assert csv_cell(None) == ""
    assert csv_cell(7) == "7"
    assert csv_cell(-5) == "-5"  # a number (a statement's turned sign), never a formula
    assert csv_cell(datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == "2030-01-02T03:04:05Z"


async def test_stats_before_the_pool_is_loaded_come_from_sql(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    stats = await world.api.ok("GET", f"/api/v1/sales/{world.ids['live_sale']}/stats", who="host")
    assert stats["live"] is False
    # live_sale: 2 units at 999, one paid order of one unit recorded in SQL.
    assert {k: stats[k] for k in ("available", "held", "paid", "total", "sold_out", "gmv_minor", "orders_paid")} == {
        "available": 1, "held": 0, "paid": 1, "total": 2, "sold_out": False, "gmv_minor": 999, "orders_paid": 1,
    }  # fmt: skip
    assert stats["currency"] == "USD"
    assert stats["status"] == "live"
    assert abs(stats["ts_ms"] / 1000 - datetime.now(UTC).timestamp()) < 60
    draft = await world.api.ok("GET", f"/api/v1/sales/{world.ids['sale']}/stats", who="staff")
    assert (draft["available"], draft["total"], draft["sold_out"]) == (0, 3, False)


async def test_stats_follow_holds_and_payments_live(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    sale = world.ids["live_sale"]
    async with session_factory(engine)() as session:
        assert await load_sale(client.app[BUYING].inventory, session, sale) is not None
    await world.api.ok("POST", f"/api/v1/rooms/{world.ids['room']}/live", who="host")
    codes = await world.api.ok("GET", f"/api/v1/sales/{sale}/codes", who="staff")
    unused = [c["code"] for c in codes["items"] if c["redeemed_hold"] is None]

    async def stats() -> dict[str, object]:
        body: dict[str, object] = await world.api.ok("GET", f"/api/v1/sales/{sale}/stats", who="staff")
        return {k: body[k] for k in ("live", "available", "held", "paid", "total", "sold_out", "gmv_minor")}

    assert await stats() == {"live": True, "available": 2, "held": 0, "paid": 0, "total": 2, "sold_out": False,
                             "gmv_minor": 0}  # fmt: skip
    hold = await world.api.ok(
        "POST", f"/api/v1/rooms/{world.ids['room']}/buy", who="viewer", status=201,
        json={"product_id": world.ids["sale_product"], "code": unused[0]},
    )  # fmt: skip
    assert await stats() == {"live": True, "available": 1, "held": 1, "paid": 0, "total": 2, "sold_out": False,
                             "gmv_minor": 0}  # fmt: skip
    await world.api.ok(
        "POST", f"/api/v1/holds/{hold['id']}/checkout", who="viewer", json={"card_number": "4242 4242 4242 4242"}
    )
    assert await stats() == {"live": True, "available": 1, "held": 0, "paid": 1, "total": 2, "sold_out": False,
                             "gmv_minor": 999}  # fmt: skip
    await world.api.ok(
        "POST", f"/api/v1/rooms/{world.ids['room']}/buy", who="admin", status=201,
        json={"product_id": world.ids["sale_product"], "code": unused[1]},
    )  # fmt: skip
    assert await stats() == {"live": True, "available": 0, "held": 1, "paid": 1, "total": 2, "sold_out": True,
                             "gmv_minor": 999}  # fmt: skip
