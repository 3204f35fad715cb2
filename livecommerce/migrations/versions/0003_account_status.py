"""account status: users are active, suspended or deleted (anonymised, the row kept for its orders)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 14:52:23.985085
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sa.Enum(
                    "active",
                    "suspended",
                    "deleted",
                    name="account_status",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                server_default="active",
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_users_deleted_has_time"), "(status = 'deleted') = (deleted_at IS NOT NULL)"
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_users_deleted_has_time"), type_="check")
        batch_op.drop_constraint(op.f("ck_users_account_status"), type_="check")
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("status")
