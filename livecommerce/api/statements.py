"""The statement routes: a creator's earnings and a brand's sales for a period, as JSON and as CSV.

Its router is listed with the others in `api/routes.py`; the rules (who may read, the period, what each total
sums) are `commerce.statements`'. The CSVs stream like the orders export (`reports.csv_chunks`): one row per
posting, every cell through `reports.csv_cell`, the header with the first page.
"""

from __future__ import annotations

from dataclasses import asdict

from livecommerce.api import schemas as s
from livecommerce.api.reports import csv_cell, csv_chunks
from livecommerce.api.routing import Call, Router, Stream
from livecommerce.commerce import statements
from livecommerce.commerce.statements import Party, PostingRow, Statement
from livecommerce.state import SESSIONS

__all__ = ["CSV_COLUMNS", "ROUTER"]

ROUTER = Router(prefix="/api/v1")
route = ROUTER.route

CSV_COLUMNS = (
    "posted_at", "posting", "kind", "order_id", "room_id", "brand_id", "creator_id", "product_id", "currency",
    "buyer_paid_minor", "platform_discount_minor", "platform_fee_minor", "creator_commission_minor",
    "brand_net_minor",
)  # fmt: skip
_PERIOD = "`from` and `to` are ISO datetimes with a time zone; each left out is this calendar month's (UTC). "
_CSV_NOTES = (
    _PERIOD + "One row per ledger posting (`sale:<hold id>` or `refund:<refund id>`), oldest first, amounts "
    "signed as posted (funding lines negative, shares positive; a refund's turned). 503 `unavailable` when the "
    "first page cannot be read; a failure after that cuts the download short."
)


def _out(statement: Statement) -> s.StatementOut:
    party = statement.party
    by_creator = None
    if statement.by_creator is not None:
        by_creator = [s.CreatorSalesOut(**asdict(sales)) for sales in statement.by_creator]
    return s.StatementOut.model_validate(
        {
            "party": s.StatementParty(kind=party.kind.value, id=party.id, name=party.name),
            "from": statement.period.start,
            "to": statement.period.end,
            "totals": [s.StatementTotals(**asdict(totals)) for totals in statement.totals],
            "by_creator": by_creator,
        }
    )


def _row(row: PostingRow) -> list[str]:
    values = (
        row.posted_at, row.posting, row.kind.value, row.order_id, row.room_id, row.brand_id, row.creator_id,
        row.product_id, row.currency, row.buyer_paid_minor, row.platform_discount_minor, row.platform_fee_minor,
        row.creator_commission_minor, row.brand_net_minor,
    )  # fmt: skip
    return [csv_cell(v) for v in values]


def _csv(call: Call, party: Party, query: s.StatementQuery, filename: str) -> Stream:
    span = statements.period(query.from_, query.to)
    pages = statements.posting_rows(call.request.app[SESSIONS], party, span)
    return Stream(csv_chunks(CSV_COLUMNS, pages, _row), filename=filename)


@route("GET", "/creators/{user_id}/statement", summary="A creator's earnings in a period, per currency",
       access="the creator themself (a host), admins", tag="statements", query=s.StatementQuery,
       response=s.StatementOut, errors=(401, 403, 404),
       notes=_PERIOD + "Every total is the SUM of the creator's ledger lines in `[from, to)`; `net_minor` is the "
             "commission after refunds. Anyone else signed in gets 403 whether or not the user exists.")  # fmt: skip
async def get_creator_statement(call: Call, user_id: int, query: s.StatementQuery) -> s.StatementOut:
    party = await statements.creator_party(call.session, call.who, user_id)
    span = statements.period(query.from_, query.to)
    return _out(await statements.statement(call.session, party, span))


@route("GET", "/creators/{user_id}/statement.csv", summary="A creator's ledger postings in a period, as CSV",
       access="the creator themself (a host), admins", tag="statements", query=s.StatementQuery,
       content_type="text/csv", errors=(401, 403, 404, 503), notes=_CSV_NOTES)  # fmt: skip
async def export_creator_statement(call: Call, user_id: int, query: s.StatementQuery) -> Stream:
    party = await statements.creator_party(call.session, call.who, user_id)
    return _csv(call, party, query, f"creator-{user_id}-statement.csv")


@route("GET", "/brands/{brand_id}/statement", summary="A brand's sales, fees and net in a period, per currency",
       access="the brand's staff, admins", tag="statements", query=s.StatementQuery, response=s.StatementOut,
       errors=(401, 403, 404),
       notes=_PERIOD + "Every total is the SUM of the brand's ledger lines in `[from, to)`; `net_minor` is the "
             "brand net after refunds; `by_creator` splits the sales by the creator who made them.")  # fmt: skip
async def get_brand_statement(call: Call, brand_id: int, query: s.StatementQuery) -> s.StatementOut:
    party = await statements.brand_party(call.session, call.who, brand_id)
    span = statements.period(query.from_, query.to)
    return _out(await statements.statement(call.session, party, span))


@route("GET", "/brands/{brand_id}/statement.csv", summary="A brand's ledger postings in a period, as CSV",
       access="the brand's staff, admins", tag="statements", query=s.StatementQuery, content_type="text/csv",
       errors=(401, 403, 404, 503), notes=_CSV_NOTES)  # fmt: skip
async def export_brand_statement(call: Call, brand_id: int, query: s.StatementQuery) -> Stream:
    party = await statements.brand_party(call.session, call.who, brand_id)
    return _csv(call, party, query, f"brand-{brand_id}-statement.csv")
