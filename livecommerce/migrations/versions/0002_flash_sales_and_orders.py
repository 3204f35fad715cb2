"""flash sales and orders

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 16:36:48.515634
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flash_sales",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("per_buyer_limit", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("hold_seconds", sa.Integer(), nullable=False),
        sa.Column(
            "audience",
            sa.Enum(
                "open",
                "invite_list",
                "invite_codes",
                name="sale_audience",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "live",
                "ended",
                "cancelled",
                name="sale_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("units_paid", sa.Integer(), nullable=False),
        sa.Column("returned_units", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finalised_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_flash_sales_ends_after_start")),
        sa.CheckConstraint(
            "hold_seconds >= 30 AND hold_seconds <= 3600", name=op.f("ck_flash_sales_hold_seconds_in_range")
        ),
        sa.CheckConstraint(
            "per_buyer_limit >= 1 AND per_buyer_limit <= quantity", name=op.f("ck_flash_sales_per_buyer_limit_in_range")
        ),
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_flash_sales_price_not_negative")),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_flash_sales_quantity_positive")),
        sa.CheckConstraint(
            "units_paid >= 0 AND units_paid <= quantity", name=op.f("ck_flash_sales_units_paid_in_range")
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_flash_sales_version_positive")),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brands.id"], name=op.f("fk_flash_sales_brand_id_brands"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_flash_sales_created_by_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_flash_sales_product_id_products"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flash_sales")),
    )
    with op.batch_alter_table("flash_sales", schema=None) as batch_op:
        batch_op.create_index("ix_flash_sales_brand_id_id", ["brand_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_flash_sales_created_by"), ["created_by"], unique=False)
        batch_op.create_index(batch_op.f("ix_flash_sales_product_id"), ["product_id"], unique=False)
        batch_op.create_index("ix_flash_sales_status_starts_at", ["status", "starts_at"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.String(length=40), nullable=False),
        sa.Column("pool", sa.String(length=24), nullable=False),
        sa.Column("sale_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=True),
        sa.Column("buyer_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "held",
                "paid",
                "cancelled",
                "expired",
                name="order_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("payment_ref", sa.String(length=64), nullable=True),
        sa.Column("held_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("paid_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_orders_quantity_positive")),
        sa.CheckConstraint("total_minor >= 0", name=op.f("ck_orders_total_not_negative")),
        sa.CheckConstraint("unit_price_minor >= 0", name=op.f("ck_orders_unit_price_not_negative")),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brands.id"], name=op.f("fk_orders_brand_id_brands"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["buyer_id"], ["users.id"], name=op.f("fk_orders_buyer_id_users"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_orders_product_id_products"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(["room_id"], ["rooms.id"], name=op.f("fk_orders_room_id_rooms"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["flash_sales.id"], name=op.f("fk_orders_sale_id_flash_sales"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("hold_id", name=op.f("uq_orders_hold_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_brand_id_id", ["brand_id", "id"], unique=False)
        batch_op.create_index("ix_orders_buyer_id_id", ["buyer_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_product_id"), ["product_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_sale_id"), ["sale_id"], unique=False)

    op.create_table(
        "sale_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sale_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("redeemed_hold", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["flash_sales.id"], name=op.f("fk_sale_codes_sale_id_flash_sales"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sale_codes")),
        sa.UniqueConstraint("sale_id", "code", name="uq_sale_codes_sale_code"),
    )
    op.create_table(
        "sale_invites",
        sa.Column("sale_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["flash_sales.id"], name=op.f("fk_sale_invites_sale_id_flash_sales"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sale_invites_user_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("sale_id", "user_id", name=op.f("pk_sale_invites")),
    )
    with op.batch_alter_table("sale_invites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sale_invites_user_id"), ["user_id"], unique=False)

    op.create_table(
        "sale_rooms",
        sa.Column("sale_id", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.id"], name=op.f("fk_sale_rooms_room_id_rooms"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["sale_id"], ["flash_sales.id"], name=op.f("fk_sale_rooms_sale_id_flash_sales"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sale_id", "room_id", name=op.f("pk_sale_rooms")),
    )
    with op.batch_alter_table("sale_rooms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sale_rooms_room_id"), ["room_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sale_rooms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sale_rooms_room_id"))

    op.drop_table("sale_rooms")
    with op.batch_alter_table("sale_invites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sale_invites_user_id"))

    op.drop_table("sale_invites")
    op.drop_table("sale_codes")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_sale_id"))
        batch_op.drop_index(batch_op.f("ix_orders_product_id"))
        batch_op.drop_index("ix_orders_buyer_id_id")
        batch_op.drop_index("ix_orders_brand_id_id")

    op.drop_table("orders")
    with op.batch_alter_table("flash_sales", schema=None) as batch_op:
        batch_op.drop_index("ix_flash_sales_status_starts_at")
        batch_op.drop_index(batch_op.f("ix_flash_sales_product_id"))
        batch_op.drop_index(batch_op.f("ix_flash_sales_created_by"))
        batch_op.drop_index("ix_flash_sales_brand_id_id")

    op.drop_table("flash_sales")
