"""ledger lines refer to their order without a foreign key

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:35:00.000000

The order writer posts four lines per paid order in the transaction that inserts the order, from the ids that
INSERT returned: the foreign key's check (one lookup and row lock per line) cost the writer more than a
third of its throughput (docs/benchmarks.md, "Order writer") and could never refuse a line. Orders are never
deleted (`ondelete=RESTRICT` everywhere else), so nothing can leave a line without its order. On SQLite the
table is copied without the constraint, and the append-only trigger, which goes with the old table, is created
again.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FK = "fk_ledger_lines_order_id_orders"
_NO_UPDATE = "ledger lines are never updated: post a correcting line instead"


def _sqlite_guard() -> None:
    op.execute(
        "CREATE TRIGGER ledger_lines_append_only BEFORE UPDATE ON ledger_lines "
        f"BEGIN SELECT RAISE(ABORT, '{_NO_UPDATE}'); END"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ledger_lines_append_only")
        with op.batch_alter_table("ledger_lines", schema=None) as batch_op:
            batch_op.drop_constraint(_FK, type_="foreignkey")
        _sqlite_guard()
        return
    op.drop_constraint(_FK, "ledger_lines", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER ledger_lines_append_only")
        with op.batch_alter_table("ledger_lines", schema=None) as batch_op:
            batch_op.create_foreign_key(_FK, "orders", ["order_id"], ["id"], ondelete="RESTRICT")
        _sqlite_guard()
        return
    op.create_foreign_key(_FK, "ledger_lines", "orders", ["order_id"], ["id"], ondelete="RESTRICT")
