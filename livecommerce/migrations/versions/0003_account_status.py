"""account status: users are active, suspended or deleted (anonymised, the row kept for its orders)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:52:23.985085

Written by hand, without batch mode: on SQLite a batch operation copies `users` into a new table and drops
the old one, which its foreign keys refuse once orders refer to users. Columns are added in place instead
(SQLite takes a column's CHECK in ADD COLUMN, and drops it with DROP COLUMN).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUS_CHECK = "status IN ('active', 'suspended', 'deleted')"
_DELETED_CHECK = "(status = 'deleted') = (deleted_at IS NOT NULL)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE users ADD COLUMN status VARCHAR(16) DEFAULT 'active' NOT NULL "
            f"CONSTRAINT ck_users_account_status CHECK ({_STATUS_CHECK})"
        )
        op.execute(
            "ALTER TABLE users ADD COLUMN deleted_at DATETIME "
            f"CONSTRAINT ck_users_deleted_has_time CHECK ({_DELETED_CHECK})"
        )
        return
    op.add_column("users", sa.Column("status", sa.String(length=16), server_default="active", nullable=False))
    op.add_column("users", sa.Column("deleted_at", sa.DateTime(), nullable=True))
    op.create_check_constraint(op.f("ck_users_account_status"), "users", _STATUS_CHECK)
    op.create_check_constraint(op.f("ck_users_deleted_has_time"), "users", _DELETED_CHECK)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE users DROP COLUMN deleted_at")
        op.execute("ALTER TABLE users DROP COLUMN status")
        return
    op.drop_constraint(op.f("ck_users_deleted_has_time"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_account_status"), "users", type_="check")
    op.drop_column("users", "deleted_at")
    op.drop_column("users", "status")
