"""orders: partial indexes on the vouchers they used

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 21:00:00.000000

A voucher's history (the paid orders that used it, and the platform discounts they record) is read when Redis
must load the voucher with no budget for it — never loaded, or a Redis that lost its data — so its claims and
budget start from what SQL knows rather than from zero. Partial: only orders that used a voucher have entries.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_orders_seller_voucher_id", "seller_voucher_id"),
    ("ix_orders_platform_voucher_id", "platform_voucher_id"),
)


def upgrade() -> None:
    for name, column in _INDEXES:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "orders", [column], unique=False, postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, _ in _INDEXES:
        op.drop_index(name, table_name="orders")
