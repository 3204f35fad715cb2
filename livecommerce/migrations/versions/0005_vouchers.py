"""vouchers: campaigns, vouchers, and the orders' voucher snapshot columns

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:15:00.000000

The orders' new columns are added in place (as in 0003): refunds and ledger lines refer to `orders`, so a
SQLite batch copy of the table would be refused. They have no CHECK and no foreign key (snapshots, see
`models.Order`), so a plain ADD COLUMN is all each needs on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ORDER_COLUMNS = (
    "platform_claim_id", "seller_claim_id", "platform_voucher_id", "seller_voucher_id", "seller_discount_minor",
)  # fmt: skip
_VOUCHER_KIND = (
    "(kind = 'amount' AND amount_minor >= 1 AND percent_bps = 0 AND cap_minor = amount_minor) OR "
    "(kind = 'percent' AND amount_minor = 0 AND percent_bps >= 1 AND percent_bps <= 10000 AND cap_minor >= 1)"
)
_VOUCHER_FUNDING = (
    "(funding = 'seller' AND platform_share_bps = 0 AND campaign_id IS NULL AND budget_minor = 0 "
    "AND brand_id IS NOT NULL) OR "
    "(funding = 'platform' AND platform_share_bps = 10000 AND campaign_id IS NOT NULL) OR "
    "(funding = 'co' AND platform_share_bps >= 1 AND platform_share_bps <= 9999 AND campaign_id IS NOT NULL "
    "AND brand_id IS NOT NULL)"
)


def _status(name: str) -> sa.Enum:
    return sa.Enum("active", "ended", name=name, native_enum=False, create_constraint=True, length=16)


def _campaigns() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("budget_minor", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("status", _status("campaign_status"), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("length(name) >= 1", name=op.f("ck_campaigns_name_not_empty")),
        sa.CheckConstraint("budget_minor >= 0", name=op.f("ck_campaigns_budget_not_negative")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_campaigns_ends_after_start")),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_campaigns_created_by_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )


def _vouchers() -> None:
    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("amount", "percent", name="voucher_kind", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("percent_bps", sa.Integer(), nullable=False),
        sa.Column("cap_minor", sa.BigInteger(), nullable=False),
        sa.Column("min_spend_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("quota", sa.Integer(), nullable=False),
        sa.Column("per_buyer_limit", sa.Integer(), nullable=False),
        sa.Column("min_account_age_days", sa.Integer(), nullable=False),
        sa.Column(
            "funding",
            sa.Enum("seller", "platform", "co", name="funding", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("platform_share_bps", sa.Integer(), nullable=False),
        sa.Column("brand_id", sa.Integer(), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("budget_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", _status("voucher_status"), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("length(title) >= 1", name=op.f("ck_vouchers_title_not_empty")),
        sa.CheckConstraint(_VOUCHER_KIND, name=op.f("ck_vouchers_kind_terms")),
        sa.CheckConstraint("min_spend_minor >= 0", name=op.f("ck_vouchers_min_spend_not_negative")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_vouchers_ends_after_start")),
        sa.CheckConstraint("quota >= 1", name=op.f("ck_vouchers_quota_positive")),
        sa.CheckConstraint("per_buyer_limit >= 1", name=op.f("ck_vouchers_per_buyer_limit_positive")),
        sa.CheckConstraint("min_account_age_days >= 0", name=op.f("ck_vouchers_account_age_not_negative")),
        sa.CheckConstraint(_VOUCHER_FUNDING, name=op.f("ck_vouchers_funding_terms")),
        sa.CheckConstraint("budget_minor >= 0", name=op.f("ck_vouchers_budget_not_negative")),
        sa.CheckConstraint("product_id IS NULL OR brand_id IS NOT NULL", name=op.f("ck_vouchers_product_has_brand")),
        sa.ForeignKeyConstraint(
            ["brand_id"], ["brands.id"], name=op.f("fk_vouchers_brand_id_brands"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_vouchers_product_id_products"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_vouchers_campaign_id_campaigns"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_vouchers_created_by_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
    )
    for column in ("brand_id", "product_id", "campaign_id"):
        op.create_index(op.f(f"ix_vouchers_{column}"), "vouchers", [column], unique=False)


def upgrade() -> None:
    _campaigns()
    _vouchers()
    op.add_column("orders", sa.Column("seller_discount_minor", sa.BigInteger(), server_default="0", nullable=False))
    op.add_column("orders", sa.Column("seller_voucher_id", sa.Integer(), nullable=True))
    op.add_column("orders", sa.Column("platform_voucher_id", sa.Integer(), nullable=True))
    op.add_column("orders", sa.Column("seller_claim_id", sa.String(length=40), nullable=True))
    op.add_column("orders", sa.Column("platform_claim_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in _ORDER_COLUMNS:
        if sqlite:
            op.execute(f"ALTER TABLE orders DROP COLUMN {name}")
        else:
            op.drop_column("orders", name)
    for column in ("campaign_id", "product_id", "brand_id"):
        op.drop_index(op.f(f"ix_vouchers_{column}"), table_name="vouchers")
    op.drop_table("vouchers")
    op.drop_table("campaigns")
