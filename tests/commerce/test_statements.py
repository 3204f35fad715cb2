"""Statements against both databases: every total is the sum of the party's ledger lines in the period, the
period cuts at its bounds, the CSV has every posting once (injection safe), and each party reads only its own."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from livecommerce.api.statements import CSV_COLUMNS
from livecommerce.commerce import statements
from livecommerce.commerce.statements import Party, PartyKind, Period
from livecommerce.database import session_factory
from livecommerce.models import FeeBase, LedgerAccount, LedgerLine, PostingKind
from tests.support.postings import refund, sell
from tests.support.world import World, seed_world

START = datetime(2030, 3, 1, tzinfo=UTC)
END = datetime(2030, 4, 1, tzinfo=UTC)
HOSTILE = '=HYPERLINK("http://evil.test","x")'


def _q(start: datetime = START, end: datetime = END) -> str:
    return f"?from={quote(start.isoformat())}&to={quote(end.isoformat())}"


async def _book(engine: AsyncEngine, world: World) -> None:
    """A mixed month for `brand`: two creators (open and targeted rates), two currencies, a sale with no
    creator, partial and full refunds, and postings just outside the period on both sides."""
    ids = world.ids
    common: dict[str, Any] = {"product_id": ids["product"], "brand_id": ids["brand"], "buyer_id": ids["viewer"]}
    host: dict[str, Any] = {"creator_id": ids["host"], "room_id": ids["room"]}
    other: dict[str, Any] = {"creator_id": ids["other_host"], "room_id": ids["other_room"]}
    day = timedelta(days=1)
    async with session_factory(engine).begin() as session:
        a = await sell(session, hold_id="p1.1", at=START, unit_price=1999, quantity=3, commission_bps=1500, **common,
                       **host)  # fmt: skip
        await refund(session, a, 1000, at=START + day, requested_by=ids["staff"])
        await refund(session, a, 4997, at=START + 2 * day, requested_by=ids["staff"])  # the rest: all reversed
        b = await sell(session, hold_id="p1.2", at=START + day, unit_price=777, commission_bps=2250, fee_bps=600,
                       fee_base=FeeBase.BUYER_PAID_PLUS_DISCOUNT, **common, **other)  # fmt: skip
        await refund(session, b, 333, at=END + day, requested_by=ids["staff"])  # next month's
        await sell(session, hold_id="p1.3", at=START + 3 * day, unit_price=12345, commission_bps=800, currency="EUR",
                   **common, **host)  # fmt: skip
        await sell(session, hold_id="p1.4", at=START + 4 * day, unit_price=500, **common)  # no creator
        await sell(session, hold_id="p1.5", at=START - timedelta(microseconds=1), unit_price=999, commission_bps=1000,
                   **common, **host)  # fmt: skip
        c = await sell(session, hold_id="p1.6", at=END - timedelta(seconds=1), unit_price=4321, commission_bps=1000,
                       **common, **host)  # fmt: skip
        await refund(session, c, 21, at=END, requested_by=ids["staff"])  # `to` is not in the period
        await sell(
            session,
            hold_id="p2.1",
            at=START + day,
            unit_price=999,
            commission_bps=3000,
            product_id=ids["other_product"],
            brand_id=ids["other_brand"],
            buyer_id=ids["viewer"],
            **host,
        )


async def _expected(engine: AsyncEngine, column: str, party_id: int) -> dict[str, dict[str, int | None]]:
    """The totals summed in Python from the ledger lines themselves (not from the splits)."""
    async with session_factory(engine)() as session:
        lines = (await session.scalars(select(LedgerLine))).all()
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    postings: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        if getattr(line, column) != party_id or not START <= line.posted_at < END:
            continue
        key = f"{line.kind.value}.{line.account.value}"
        sums[line.currency][key] += line.amount_minor
        if line.kind is PostingKind.SALE:
            postings[line.currency].add(line.posting)
    out: dict[str, dict[str, int | None]] = {}
    for currency, s in sums.items():
        out[currency] = {
            "orders": len(postings[currency]),
            "gmv_minor": -s["sale.buyer_paid"],
            "refunds_minor": s["refund.buyer_paid"],
            "commission_minor": s["sale.creator_commission"],
            "commission_reversed_minor": -s["refund.creator_commission"],
            "fees_minor": s["sale.platform_fee"],
            "fees_reversed_minor": -s["refund.platform_fee"],
            "brand_net_minor": s["sale.brand_net"] + s["refund.brand_net"],
            "platform_discount_minor": -(s["sale.platform_discount"] + s["refund.platform_discount"]),
            "seller_discount_minor": s["sale.brand_discount"] + s["refund.brand_discount"],
        }
        own = "creator_commission" if column == "creator_id" else "brand_net"
        out[currency]["net_minor"] = s[f"sale.{own}"] + s[f"refund.{own}"]
        if column == "creator_id":  # the brand's share is not shown to the creator
            out[currency]["brand_net_minor"] = None
            out[currency]["seller_discount_minor"] = None
    return out


def _totals(body: dict[str, object]) -> dict[str, dict[str, int]]:
    items = body["totals"]
    assert isinstance(items, list)
    return {t["currency"]: {k: v for k, v in t.items() if k != "currency"} for t in items}


async def test_statements_equal_the_sums_of_their_lines_in_the_period(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    await _book(engine, world)
    ids = world.ids
    creator = await world.api.ok("GET", f"/api/v1/creators/{ids['host']}/statement{_q()}", who="host")
    assert creator["party"] == {"kind": "creator", "id": ids["host"], "name": "Host"}
    assert (creator["from"], creator["by_creator"]) == ("2030-03-01T00:00:00Z", None)
    assert _totals(creator) == await _expected(engine, "creator_id", ids["host"])
    usd = _totals(creator)["USD"]
    # p1.1 (3 x 1999 at 15 %, refunded in full), p1.6 (4321 at 10 %), p2.1 (999 at 30 %, the other brand's)
    assert (usd["orders"], usd["gmv_minor"], usd["refunds_minor"]) == (3, 5997 + 4321 + 999, 5997)
    assert (usd["commission_minor"], usd["commission_reversed_minor"]) == (899 + 432 + 299, 899)
    assert usd["net_minor"] == 432 + 299
    assert _totals(creator)["EUR"]["commission_minor"] == 987

    brand = await world.api.ok("GET", f"/api/v1/brands/{ids['brand']}/statement{_q()}", who="staff")
    assert brand["party"] == {"kind": "brand", "id": ids["brand"], "name": "Brand"}
    assert _totals(brand) == await _expected(engine, "brand_id", ids["brand"])
    totals = _totals(brand)["USD"]
    assert totals["orders"] == 4  # p1.1, p1.2, p1.4, p1.6
    assert totals["fees_minor"] == 119 + 46 + 10 + 86  # 2 % except p1.2's 6 %
    assert totals["net_minor"] == totals["brand_net_minor"]
    # Every line balances, so the brand's net is what buyers kept paying less commission and fees.
    assert totals["brand_net_minor"] == (
        totals["gmv_minor"] - totals["refunds_minor"] - totals["commission_minor"]
        + totals["commission_reversed_minor"] - totals["fees_minor"] + totals["fees_reversed_minor"]
    )  # fmt: skip
    by_creator = {(row["creator_id"], row["currency"]): row for row in brand["by_creator"]}
    assert set(by_creator) == {(ids["host"], "USD"), (ids["host"], "EUR"), (ids["other_host"], "USD")}
    assert by_creator[(ids["host"], "USD")] == {
        "creator_id": ids["host"], "creator_name": "Host", "currency": "USD", "orders": 2,
        "gmv_minor": 5997 + 4321, "commission_minor": 899 + 432,
    }  # fmt: skip
    assert by_creator[(ids["other_host"], "USD")]["commission_minor"] == 174
    assert sum(r["gmv_minor"] for r in brand["by_creator"] if r["currency"] == "USD") == totals["gmv_minor"] - 500

    # The next month holds only what was posted from END on: the bound is in one period, never two.
    after = await world.api.ok("GET", f"/api/v1/brands/{ids['brand']}/statement{_q(END, END + timedelta(days=30))}",
                               who="admin")  # fmt: skip
    assert {k: _totals(after)["USD"][k] for k in ("orders", "refunds_minor")} == {"orders": 0, "refunds_minor": 354}
    empty = await world.api.ok("GET", f"/api/v1/creators/{ids['other_host']}/statement", who="other_host")
    assert empty["totals"] == []  # this month (the default): nothing posted


async def test_the_default_period_is_this_calendar_month_in_utc() -> None:
    now = datetime(2030, 12, 31, 23, 30, tzinfo=UTC)
    span = statements.period(None, None, now=now)
    assert (span.start, span.end) == (datetime(2030, 12, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC))
    start = datetime(2030, 12, 5, tzinfo=UTC)
    assert statements.period(start, None, now=now) == Period(start, datetime(2031, 1, 1, tzinfo=UTC))


async def test_periods_are_checked(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    base = f"/api/v1/brands/{world.ids['brand']}/statement"
    for query, field, words in (
        (_q(END, START), "query.to", "after"),
        (_q(START, START), "query.to", "after"),
        (_q(START, START + timedelta(days=367)), "query.to", "366 days"),
        ("?from=2030-03-01T00:00:00", "query.from", "timezone"),
        ("?since=2030-03-01T00:00:00Z", "query.since", ""),
    ):
        status, problem = await world.api.call("GET", base + query, who="staff")
        assert status == 422, (query, problem)
        assert problem["errors"][0]["field"] == field, problem
        assert words in (problem["detail"] + problem["errors"][0]["message"]).lower(), problem
    assert await world.api.ok("GET", base + _q(START, START + timedelta(days=366)), who="staff")


async def test_each_party_reads_only_its_own(client: TestClient[Request, Application], engine: AsyncEngine) -> None:
    world = await seed_world(client, engine)
    ids = world.ids
    for path, allowed in (
        (f"/api/v1/creators/{ids['host']}/statement", {"host", "admin"}),
        (f"/api/v1/creators/{ids['host']}/statement.csv", {"host", "admin"}),
        (f"/api/v1/creators/{ids['viewer']}/statement", {"admin"}),  # a viewer has no earnings page
        (f"/api/v1/brands/{ids['brand']}/statement", {"staff", "admin"}),
        (f"/api/v1/brands/{ids['other_brand']}/statement.csv", {"other_staff", "admin"}),
    ):
        for who in ("viewer", "host", "other_host", "staff", "other_staff", "admin", None):
            status, _ = await world.api.call("GET", path, who=who)
            expected = 200 if who in allowed else 401 if who is None else 403
            assert status == expected, (path, who, status)
    # A creator id that does not exist: 403 to others (ids leak nothing), 404 to an admin.
    assert (await world.api.call("GET", "/api/v1/creators/999999/statement", who="host"))[0] == 403
    assert (await world.api.call("GET", "/api/v1/creators/999999/statement", who="admin"))[0] == 404
    assert (await world.api.call("GET", "/api/v1/brands/999999/statement", who="staff"))[0] == 404


async def _csv(world: World, path: str, who: str) -> list[dict[str, str]]:
    headers = {"Authorization": f"Bearer {world.api.tokens[who]}"}
    async with world.api.client.get(path, headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        body = await response.text()
    assert body.split("\r\n")[0] == ",".join(CSV_COLUMNS)
    return list(csv.DictReader(io.StringIO(body)))


async def test_the_csv_has_every_posting_once_and_adds_up_to_the_statement(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    await _book(engine, world)
    ids = world.ids
    rows = await _csv(world, f"/api/v1/brands/{ids['brand']}/statement.csv{_q()}", "staff")
    # Not p1.5 (before), p1.2's and p1.6's refunds (after), p2.1 (the other brand's).
    # by time: p1.1, its first refund and p1.2 (a day later), the second refund, p1.3, p1.4, p1.6
    assert [row["posting"].split(":")[0] for row in rows] == [
        "sale",
        "refund",
        "sale",
        "refund",
        "sale",
        "sale",
        "sale",
    ]
    assert len({row["posting"] for row in rows}) == len(rows)
    first = rows[0]
    assert first["posting"] == "sale:p1.1"
    assert (first["kind"], first["posted_at"], first["product_id"]) == ("sale", "2030-03-01T00:00:00Z",
                                                                         str(ids["product"]))  # fmt: skip
    assert (first["buyer_paid_minor"], first["creator_commission_minor"]) == ("-5997", "899")  # numbers, unquoted
    brand = await world.api.ok("GET", f"/api/v1/brands/{ids['brand']}/statement{_q()}", who="staff")
    usd = _totals(brand)["USD"]
    usd_rows = [row for row in rows if row["currency"] == "USD"]
    assert sum(int(r["brand_net_minor"]) for r in usd_rows) == usd["brand_net_minor"]
    assert -sum(int(r["buyer_paid_minor"]) for r in usd_rows if r["kind"] == "sale") == usd["gmv_minor"]
    mine = await _csv(world, f"/api/v1/creators/{ids['host']}/statement.csv{_q()}", "host")
    assert mine
    assert {r["brand_net_minor"] for r in mine} == {""}  # the brand's share is not the creator's to see
    for row in rows:  # each posting balances
        assert sum(int(row[c]) for c in CSV_COLUMNS if c.endswith("_minor")) == 0, row
    mine = await _csv(world, f"/api/v1/creators/{ids['host']}/statement.csv{_q()}", "host")
    assert {row["creator_id"] for row in mine} == {str(ids["host"])}
    assert {row["brand_id"] for row in mine} == {str(ids["brand"]), str(ids["other_brand"])}


async def test_the_export_reads_in_pages_and_writes_hostile_text_as_text(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    await _book(engine, world)
    ids = world.ids
    async with session_factory(engine).begin() as session:
        order_id = (await session.scalars(select(LedgerLine.order_id).limit(1))).one()
        session.add(LedgerLine(posting=HOSTILE, kind=PostingKind.SALE, account=LedgerAccount.BRAND_NET,
                               order_id=order_id, brand_id=ids["brand"], amount_minor=0, currency="USD",
                               posted_at=START + timedelta(days=9)))  # fmt: skip
    party = Party(PartyKind.BRAND, ids["brand"], "Brand")
    pages = [page async for page in statements.posting_rows(session_factory(engine), party, Period(START, END),
                                                            page_size=3)]  # fmt: skip
    assert [len(page) for page in pages] == [3, 3, 2]
    postings = [row.posting for page in pages for row in page]
    assert len(set(postings)) == len(postings) == 8
    rows = await _csv(world, f"/api/v1/brands/{ids['brand']}/statement.csv{_q()}", "admin")
    assert "'" + HOSTILE in {row["posting"] for row in rows}


async def test_a_statement_export_whose_first_page_fails_is_not_an_empty_csv(
    client: TestClient[Request, Application], engine: AsyncEngine
) -> None:
    world = await seed_world(client, engine)
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE ledger_lines RENAME TO ledger_lines_away"))
    try:
        path = f"/api/v1/creators/{world.ids['host']}/statement.csv"
        async with world.api.client.get(path, headers={"Authorization": f"Bearer {world.api.tokens['host']}"}) as r:
            body = await r.json(content_type=None)
            assert r.content_type == "application/problem+json", body
            assert (r.status, body["code"]) in ((503, "unavailable"), (500, "internal")), body
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE ledger_lines_away RENAME TO ledger_lines"))
