"""The events module's tables: the outbox, processed markers, webhooks and their deliveries.

Defined on the kernel's one `metadata`; created by the migrations in
``events/migrations/`` (branch ``events``). Webhooks belong to a tenant (a
foreign key to tenancy's tenants), so events' first revision depends on
tenancy's. Other modules emit events with ``events.outbox.emit``.
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = ["event_outbox", "event_processed", "webhook_attempts", "webhook_deliveries", "webhooks"]

#: The transactional outbox, and the tenant's event history until pruned.
event_outbox = sa.Table(
    "apprun_event_outbox",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(500), nullable=True),
    #: The whole CloudEvent, JSON structured mode.
    sa.Column("payload", sa.Text, nullable=False),
    timestamp("created_at", nullable=False),
    timestamp("published_at"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Index(None, "published_at", "id"),
    sa.Index(None, "tenant_id", "id"),
)

#: Which consumer handled which event: the de-duplication of at-least-once delivery.
event_processed = sa.Table(
    "apprun_event_processed",
    metadata,
    sa.Column("consumer", sa.String(200), primary_key=True),
    id_column("event_id", primary_key=True),
    timestamp("processed_at", nullable=False),
    sa.Index(None, "processed_at"),
)

webhooks = sa.Table(
    "apprun_webhooks",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    #: JSON list of event types; empty means every type.
    sa.Column("event_types", sa.Text, nullable=False, server_default="[]"),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    timestamp("disabled_at"),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    id_column("created_by", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.Index(None, "tenant_id"),
)

webhook_deliveries = sa.Table(
    "apprun_webhook_deliveries",
    metadata,
    id_column(primary_key=True),
    id_column("webhook_id", nullable=False),
    id_column("tenant_id", nullable=False),
    id_column("event_id", nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    #: pending, succeeded or abandoned.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    timestamp("next_attempt_at", nullable=False),
    timestamp("first_attempt_at"),
    timestamp("claimed_at"),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["webhook_id"], ["apprun_webhooks.id"], ondelete="CASCADE"),
    #: One delivery per event per webhook, whatever replays the event.
    sa.UniqueConstraint("webhook_id", "event_id"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "webhook_id", "created_at"),
)

webhook_attempts = sa.Table(
    "apprun_webhook_attempts",
    metadata,
    id_column(primary_key=True),
    id_column("delivery_id", nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    timestamp("created_at", nullable=False),
    sa.ForeignKeyConstraint(["delivery_id"], ["apprun_webhook_deliveries.id"], ondelete="CASCADE"),
    sa.Index(None, "delivery_id"),
)
