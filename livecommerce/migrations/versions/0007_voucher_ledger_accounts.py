"""ledger accounts for seller-funded voucher discounts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 20:00:00.000000

A sale with a seller-funded voucher posts a memo pair (`commerce.ledger`): `seller_discount` (the part of the
price the brand's vouchers took off, a funding line) and `brand_discount` (the brand's cost of it). The
`ledger_account` CHECK constraint gains the two names. On SQLite the table is copied with the new constraint,
and the append-only trigger, which goes with the old table, is created again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CK = "ck_ledger_lines_ledger_account"
_OLD = ("buyer_paid", "platform_discount", "brand_net", "creator_commission", "platform_fee")
_NEW = (*_OLD, "seller_discount", "brand_discount")
_NO_UPDATE = "ledger lines are never updated: post a correcting line instead"


def _condition(names: tuple[str, ...]) -> str:
    return "account IN (" + ", ".join(f"'{n}'" for n in names) + ")"


def _swap(names: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ledger_lines_append_only")
        with op.batch_alter_table("ledger_lines", schema=None) as batch_op:
            batch_op.drop_constraint(op.f(_CK), type_="check")
            batch_op.create_check_constraint("ledger_account", sa.text(_condition(names)))
        op.execute(
            "CREATE TRIGGER ledger_lines_append_only BEFORE UPDATE ON ledger_lines "
            f"BEGIN SELECT RAISE(ABORT, '{_NO_UPDATE}'); END"
        )
        return
    op.drop_constraint(op.f(_CK), "ledger_lines", type_="check")
    op.create_check_constraint("ledger_account", "ledger_lines", _condition(names))


def upgrade() -> None:
    _swap(_NEW)


def downgrade() -> None:
    # Fails while seller-discount lines exist: the ledger is append-only, and its lines are never dropped.
    _swap(_OLD)
