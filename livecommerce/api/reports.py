"""The reporting routes: a brand's orders as CSV, and a flash sale's live figures.

Its router is listed with the others in `api/routes.py`. The CSV is RFC 4180 (UTF-8, CRLF, a header row), written
page by page as the database is read. Cells a person typed (titles, SKUs, payment references) could start with
`=`, `+`, `-`, `@`, tab or carriage return, which a spreadsheet runs as a formula ("CSV injection"); such a
cell is written with a leading `'`, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from livecommerce.api import schemas as s
from livecommerce.api.routing import Call, Router, Stream
from livecommerce.clock import now_ms
from livecommerce.commerce import order_queries
from livecommerce.commerce.buying import BUYING
from livecommerce.commerce.order_queries import OrderLine
from livecommerce.commerce.sale_stats import sale_stats
from livecommerce.models import OrderStatus
from livecommerce.state import SESSIONS

__all__ = ["CSV_COLUMNS", "ROUTER", "csv_cell", "csv_chunks"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

CSV_COLUMNS = (
    "order_id", "hold_id", "status", "held_at", "paid_at", "buyer_id", "product_id", "sku", "title", "sale_id",
    "room_id", "quantity", "unit_price_minor", "total_minor", "currency", "payment_ref",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_T = TypeVar("_T")


def csv_cell(value: object) -> str:
    """One CSV cell: text that a spreadsheet would run as a formula is quoted with `'` (integers are written as
    they are, a minus sign included); None is empty."""
    if value is None:
        return ""
    if isinstance(value, int):  # a number, never a formula: `-5` stays a number a spreadsheet can add up
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _row(line: OrderLine) -> list[str]:
    o = line.order
    values = (
        o.id, o.hold_id, o.status.value, o.held_at, o.paid_at, o.buyer_id, o.product_id, line.sku, line.title,
        o.sale_id, o.room_id, o.quantity, o.unit_price_minor, o.total_minor, o.currency, o.payment_ref,
    )  # fmt: skip
    return [csv_cell(v) for v in values]


def _encode(rows: Iterable[Iterable[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


async def csv_chunks(
    columns: Sequence[str], pages: AsyncIterator[list[_T]], row: Callable[[_T], list[str]]
) -> AsyncIterator[bytes]:
    """A CSV body, one chunk per page: `columns` as the header, then `row(item)` (cells made by `csv_cell`)."""
    # The header goes with the first page: if that page cannot be read, nothing has been sent and the caller
    # gets a 503 problem (`Stream`), not a CSV that looks like "nothing here".
    first: list[_T] = await anext(pages, [])
    yield _encode([columns, *(row(item) for item in first)])
    async for page in pages:
        yield _encode(row(item) for item in page)


@route("GET", "/brands/{brand_id}/orders.csv", summary="A brand's orders as CSV, oldest first",
       access="the brand's staff, admins", tag="orders", query=s.OrderExportQuery, content_type="text/csv",
       errors=(401, 403, 404, 503),
       notes="503 `unavailable` (with Retry-After) when the first page cannot be read; a failure after that "
             "cuts the download short (no final chunk), so a part is not taken for the whole.")  # fmt: skip
async def export_brand_orders(call: Call, brand_id: int, query: s.OrderExportQuery) -> Stream:
    await order_queries.check_brand_orders_reader(call.session, call.who, brand_id)
    status: OrderStatus | None = query.status
    pages = order_queries.brand_order_lines(call.request.app[SESSIONS], brand_id, status=status, sale_id=query.sale_id)
    return Stream(csv_chunks(CSV_COLUMNS, pages, _row), filename=f"brand-{brand_id}-orders.csv")


@route("GET", "/sales/{sale_id}/stats", summary="A flash sale's live figures: units left, held, paid, GMV",
       access="the sale's brand staff, the host of a room showing it, admins", tag="sales",
       response=s.SaleStatsOut, errors=(401, 403, 404))  # fmt: skip
async def get_sale_stats(call: Call, sale_id: int) -> s.SaleStatsOut:
    stats = await sale_stats(call.session, call.request.app[BUYING].inventory, call.who, sale_id)
    return s.SaleStatsOut(
        sale_id=stats.sale.id, status=stats.sale.status, live=stats.live, available=stats.available,
        held=stats.held, paid=stats.paid, total=stats.total, sold_out=stats.sold_out, gmv_minor=stats.gmv_minor,
        currency=stats.sale.currency, orders_paid=stats.orders_paid, ts_ms=now_ms(),
    )  # fmt: skip
