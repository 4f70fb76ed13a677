"""events: the outbox and event history, processed markers, webhooks, deliveries, attempts.

The events branch's first revision; webhooks belong to a tenant, so it depends
on tenancy's first. A database carried over from the legacy chain (0001-0005)
is stamped here.

Revision ID: events_0001
Revises:
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "events_0001"
down_revision = None
branch_labels = ("events",)
depends_on = "tenancy_0001"
#: Creates what the legacy chain created (see apprun.kernel.db.migrate).
legacy_baseline = True


def upgrade() -> None:
    op.create_table(
        "apprun_event_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_event_outbox")),
    )
    op.create_index(
        op.f("ix_apprun_event_outbox_published_at_id"), "apprun_event_outbox", ["published_at", "id"], unique=False
    )
    op.create_index(
        op.f("ix_apprun_event_outbox_tenant_id_id"), "apprun_event_outbox", ["tenant_id", "id"], unique=False
    )
    op.create_table(
        "apprun_event_processed",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_apprun_event_processed")),
    )
    op.create_index(
        op.f("ix_apprun_event_processed_processed_at"), "apprun_event_processed", ["processed_at"], unique=False
    )
    op.create_table(
        "apprun_webhooks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", sa.Text(), server_default="[]", nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_webhooks_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_webhooks")),
    )
    op.create_index(op.f("ix_apprun_webhooks_tenant_id"), "apprun_webhooks", ["tenant_id"], unique=False)
    op.create_table(
        "apprun_webhook_deliveries",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("webhook_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["apprun_webhooks.id"],
            name=op.f("fk_apprun_webhook_deliveries_webhook_id_apprun_webhooks"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("webhook_id", "event_id", name=op.f("uq_apprun_webhook_deliveries_webhook_id_event_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_webhook_deliveries")),
    )
    op.create_index(
        op.f("ix_apprun_webhook_deliveries_status_next_attempt_at"),
        "apprun_webhook_deliveries",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_apprun_webhook_deliveries_webhook_id_created_at"),
        "apprun_webhook_deliveries",
        ["webhook_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "apprun_webhook_attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["apprun_webhook_deliveries.id"],
            name=op.f("fk_apprun_webhook_attempts_delivery_id_apprun_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_webhook_attempts")),
    )
    op.create_index(
        op.f("ix_apprun_webhook_attempts_delivery_id"), "apprun_webhook_attempts", ["delivery_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_apprun_webhook_attempts_delivery_id"), table_name="apprun_webhook_attempts")
    op.drop_table("apprun_webhook_attempts")
    op.drop_index(op.f("ix_apprun_webhook_deliveries_webhook_id_created_at"), table_name="apprun_webhook_deliveries")
    op.drop_index(op.f("ix_apprun_webhook_deliveries_status_next_attempt_at"), table_name="apprun_webhook_deliveries")
    op.drop_table("apprun_webhook_deliveries")
    op.drop_index(op.f("ix_apprun_webhooks_tenant_id"), table_name="apprun_webhooks")
    op.drop_table("apprun_webhooks")
    op.drop_index(op.f("ix_apprun_event_processed_processed_at"), table_name="apprun_event_processed")
    op.drop_table("apprun_event_processed")
    op.drop_index(op.f("ix_apprun_event_outbox_tenant_id_id"), table_name="apprun_event_outbox")
    op.drop_index(op.f("ix_apprun_event_outbox_published_at_id"), table_name="apprun_event_outbox")
    op.drop_table("apprun_event_outbox")
