"""apprun's system tables, as SQLAlchemy Core metadata.

This metadata is the source Alembic migrations are written from (and checked
against in the tests); request paths never go through SQLAlchemy. Every
system table is prefixed ``apprun_`` so it cannot clash with an
application's collections. Modules add their tables here in later issues,
each with a migration.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["meta", "metadata"]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Facts about this deployment (installation time, instance id …), key → value.
meta = sa.Table(
    "apprun_meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


def _ts(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str = "id", **kw: object) -> sa.Column[object]:
    return sa.Column(name, sa.String(36), **kw)  # type: ignore[arg-type]


# --- auth ---------------------------------------------------------------
# Emails are stored lower-cased; uniqueness is per deployment.
users = sa.Table(
    "apprun_users",
    metadata,
    _id(primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("locale", sa.String(20), nullable=True),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("is_platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("email_verified_at"),
    _ts("disabled_at"),
    _ts("last_login_at"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

#: Links to identities at external issuers (OIDC, Kratos, social login).
identities = sa.Table(
    "apprun_identities",
    metadata,
    _id(primary_key=True),
    _id("user_id", nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    _ts("created_at", nullable=False),
    _ts("last_used_at"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("provider", "subject"),
    sa.Index(None, "user_id"),
)

#: A signed-in device. A session is also a refresh-token family.
sessions = sa.Table(
    "apprun_sessions",
    metadata,
    _id(primary_key=True),
    _id("user_id", nullable=False),
    _id("tenant_id", nullable=True),
    sa.Column("auth_method", sa.String(20), nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(400), nullable=True),
    _ts("created_at", nullable=False),
    _ts("last_used_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("revoked_at"),
    sa.Column("revoked_reason", sa.String(50), nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="SET NULL"),
    sa.Index(None, "user_id"),
)

refresh_tokens = sa.Table(
    "apprun_refresh_tokens",
    metadata,
    _id(primary_key=True),
    _id("session_id", nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    _id("parent_id", nullable=True),
    _ts("created_at", nullable=False),
    _ts("used_at"),
    sa.ForeignKeyConstraint(["session_id"], ["apprun_sessions.id"], ondelete="CASCADE"),
    sa.Index(None, "session_id"),
)

#: Password reset, email verification and invitation tokens (stored hashed).
one_time_tokens = sa.Table(
    "apprun_one_time_tokens",
    metadata,
    _id(primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    _id("user_id", nullable=True),
    sa.Column("email", sa.String(320), nullable=False),
    _id("tenant_id", nullable=True),
    sa.Column("role", sa.String(100), nullable=True),
    _id("created_by", nullable=True),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
    _ts("used_at"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
)

api_keys = sa.Table(
    "apprun_api_keys",
    metadata,
    _id(primary_key=True),
    _id("tenant_id", nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("role", sa.String(100), nullable=True),
    _id("created_by", nullable=True),
    _ts("created_at", nullable=False),
    _ts("last_used_at"),
    _ts("expires_at"),
    _ts("revoked_at"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.Index(None, "tenant_id"),
)

#: Security events, readable by tenant admins. No foreign keys: the record
#: outlives the user or tenant it is about.
audit_log = sa.Table(
    "apprun_audit_log",
    metadata,
    _id(primary_key=True),
    _id("tenant_id", nullable=True),
    _id("actor_id", nullable=True),
    sa.Column("actor_type", sa.String(20), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(400), nullable=True),
    sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    _ts("created_at", nullable=False),
    sa.Index(None, "tenant_id", "created_at"),
)

#: Mail written by the log/outbox mailer (development) — and a record of
#: what the SMTP mailer sent or failed to send.
mail_outbox = sa.Table(
    "apprun_mail_outbox",
    metadata,
    _id(primary_key=True),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("locale", sa.String(20), nullable=False),
    sa.Column("backend", sa.String(20), nullable=False),
    _ts("created_at", nullable=False),
    #: Set while one worker sends the row (a lease; see the mailer).
    _ts("claimed_at"),
    _ts("sent_at"),
    sa.Column("error", sa.Text, nullable=True),
)

#: In-flight OAuth2 authorization-code logins (state → PKCE verifier).
oauth_states = sa.Table(
    "apprun_oauth_states",
    metadata,
    sa.Column("state", sa.String(100), primary_key=True),
    sa.Column("provider", sa.String(100), nullable=False),
    sa.Column("code_verifier", sa.String(200), nullable=False),
    sa.Column("nonce", sa.String(100), nullable=False),
    sa.Column("redirect_to", sa.Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("expires_at", nullable=False),
)

#: Rate-limit counters (fixed windows) shared by every worker and instance on
#: one database; the default limiter store when no Redis is configured.
rate_limits = sa.Table(
    "apprun_rate_limits",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    #: Unix seconds at which the key's current window began.
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index(None, "window_start"),
)

# --- tenancy ------------------------------------------------------------
tenants = sa.Table(
    "apprun_tenants",
    metadata,
    _id(primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("personal", sa.Boolean, nullable=False, server_default=sa.false()),
    _id("created_by", nullable=True),
    #: Bumped in the same transaction as any change to the tenant's roles,
    #: policies or memberships; authorization caches key on it.
    sa.Column("policy_version", sa.Integer, nullable=False, server_default="1"),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    #: Set while the tenant is deactivated: its members' tokens stop working there.
    _ts("disabled_at"),
)

memberships = sa.Table(
    "apprun_memberships",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("user_id", primary_key=True),
    sa.Column("role", sa.String(100), nullable=False),
    _id("added_by", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    # A role in use cannot be deleted (RESTRICT); it must be reassigned first.
    sa.ForeignKeyConstraint(["tenant_id", "role"], ["apprun_roles.tenant_id", "apprun_roles.name"]),
    sa.Index(None, "user_id"),
)

# --- rbac ---------------------------------------------------------------
roles = sa.Table(
    "apprun_roles",
    metadata,
    _id("tenant_id", primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("builtin", sa.Boolean, nullable=False, server_default=sa.false()),
    _ts("created_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
)

#: Casbin ``p`` rules of the RBAC-with-domains model: (role, tenant, object, action, effect).
policies = sa.Table(
    "apprun_policies",
    metadata,
    _id(primary_key=True),
    _id("tenant_id", nullable=False),
    sa.Column("role", sa.String(100), nullable=False),
    sa.Column("object", sa.String(300), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("effect", sa.String(10), nullable=False),
    _ts("created_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id", "role"], ["apprun_roles.tenant_id", "apprun_roles.name"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "role", "object", "action", "effect"),
)

# --- events -------------------------------------------------------------
#: The transactional outbox, and the tenant's event history until pruned.
event_outbox = sa.Table(
    "apprun_event_outbox",
    metadata,
    _id(primary_key=True),
    _id("tenant_id", nullable=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(500), nullable=True),
    #: The whole CloudEvent, JSON structured mode.
    sa.Column("payload", sa.Text, nullable=False),
    _ts("created_at", nullable=False),
    _ts("published_at"),
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
    _id("event_id", primary_key=True),
    _ts("processed_at", nullable=False),
    sa.Index(None, "processed_at"),
)

webhooks = sa.Table(
    "apprun_webhooks",
    metadata,
    _id(primary_key=True),
    _id("tenant_id", nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=True),
    #: JSON list of event types; empty means every type.
    sa.Column("event_types", sa.Text, nullable=False, server_default="[]"),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    _ts("disabled_at"),
    sa.Column("disabled_reason", sa.Text, nullable=True),
    _id("created_by", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.Index(None, "tenant_id"),
)

webhook_deliveries = sa.Table(
    "apprun_webhook_deliveries",
    metadata,
    _id(primary_key=True),
    _id("webhook_id", nullable=False),
    _id("tenant_id", nullable=False),
    _id("event_id", nullable=False),
    sa.Column("event_type", sa.String(200), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    #: pending, succeeded or abandoned.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=False),
    _ts("first_attempt_at"),
    _ts("claimed_at"),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
    sa.ForeignKeyConstraint(["webhook_id"], ["apprun_webhooks.id"], ondelete="CASCADE"),
    #: One delivery per event per webhook, whatever replays the event.
    sa.UniqueConstraint("webhook_id", "event_id"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "webhook_id", "created_at"),
)

webhook_attempts = sa.Table(
    "apprun_webhook_attempts",
    metadata,
    _id(primary_key=True),
    _id("delivery_id", nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    _ts("created_at", nullable=False),
    sa.ForeignKeyConstraint(["delivery_id"], ["apprun_webhook_deliveries.id"], ondelete="CASCADE"),
    sa.Index(None, "delivery_id"),
)

# --- data ---------------------------------------------------------------
#: Application collections: their definitions (JSON), one row each.
collections = sa.Table(
    "apprun_collections",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    _id("updated_by", nullable=True),
    _ts("created_at", nullable=False),
    _ts("updated_at", nullable=False),
)

#: Every change ever applied to a collection, with the SQL it ran.
collection_history = sa.Table(
    "apprun_collection_history",
    metadata,
    _id(primary_key=True),
    sa.Column("collection", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("operation", sa.String(20), nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("definition", sa.Text, nullable=True),
    _id("applied_by", nullable=True),
    _ts("applied_at", nullable=False),
    sa.Index(None, "collection", "version"),
)
