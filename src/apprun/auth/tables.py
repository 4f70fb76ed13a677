"""The auth module's tables: users, their identities elsewhere, sessions, tokens, API keys, audit, mail.

Defined on the kernel's one `metadata`; created by the migrations in
``auth/migrations/`` (branch ``auth``). Sessions, one-time tokens and API
keys refer to tenancy's tenants (the database keeps that integrity: deleting
a tenant cascades its keys), which is why auth's first revision depends on
tenancy's. No other module names these tables in SQL: they ask auth's services.
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = [
    "api_keys",
    "audit_log",
    "identities",
    "mail_outbox",
    "oauth_states",
    "one_time_tokens",
    "refresh_tokens",
    "sessions",
    "users",
]

# Emails are stored lower-cased; uniqueness is per deployment.
users = sa.Table(
    "apprun_users",
    metadata,
    id_column(primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("locale", sa.String(20), nullable=True),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("is_platform_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    timestamp("email_verified_at"),
    timestamp("disabled_at"),
    timestamp("last_login_at"),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
)

#: Links to identities at external issuers (OIDC, Kratos, social login).
identities = sa.Table(
    "apprun_identities",
    metadata,
    id_column(primary_key=True),
    id_column("user_id", nullable=False),
    sa.Column("provider", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("last_used_at"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("provider", "subject"),
    sa.Index(None, "user_id"),
)

#: A signed-in device. A session is also a refresh-token family.
sessions = sa.Table(
    "apprun_sessions",
    metadata,
    id_column(primary_key=True),
    id_column("user_id", nullable=False),
    id_column("tenant_id", nullable=True),
    sa.Column("auth_method", sa.String(20), nullable=False),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(400), nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("last_used_at", nullable=False),
    timestamp("expires_at", nullable=False),
    timestamp("revoked_at"),
    sa.Column("revoked_reason", sa.String(50), nullable=True),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="SET NULL"),
    sa.Index(None, "user_id"),
)

refresh_tokens = sa.Table(
    "apprun_refresh_tokens",
    metadata,
    id_column(primary_key=True),
    id_column("session_id", nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    id_column("parent_id", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("used_at"),
    sa.ForeignKeyConstraint(["session_id"], ["apprun_sessions.id"], ondelete="CASCADE"),
    sa.Index(None, "session_id"),
)

#: Password reset, email verification and invitation tokens (stored hashed).
one_time_tokens = sa.Table(
    "apprun_one_time_tokens",
    metadata,
    id_column(primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    id_column("user_id", nullable=True),
    sa.Column("email", sa.String(320), nullable=False),
    id_column("tenant_id", nullable=True),
    sa.Column("role", sa.String(100), nullable=True),
    id_column("created_by", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("expires_at", nullable=False),
    timestamp("used_at"),
    sa.ForeignKeyConstraint(["user_id"], ["apprun_users.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
)

api_keys = sa.Table(
    "apprun_api_keys",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("role", sa.String(100), nullable=True),
    id_column("created_by", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("last_used_at"),
    timestamp("expires_at"),
    timestamp("revoked_at"),
    sa.ForeignKeyConstraint(["tenant_id"], ["apprun_tenants.id"], ondelete="CASCADE"),
    sa.Index(None, "tenant_id"),
)

#: Security events, readable by tenant admins. No foreign keys: the record
#: outlives the user or tenant it is about.
audit_log = sa.Table(
    "apprun_audit_log",
    metadata,
    id_column(primary_key=True),
    id_column("tenant_id", nullable=True),
    id_column("actor_id", nullable=True),
    sa.Column("actor_type", sa.String(20), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.String(400), nullable=True),
    sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    timestamp("created_at", nullable=False),
    sa.Index(None, "tenant_id", "created_at"),
)

#: Mail written by the log/outbox mailer (development) — and a record of
#: what the SMTP mailer sent or failed to send.
mail_outbox = sa.Table(
    "apprun_mail_outbox",
    metadata,
    id_column(primary_key=True),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("locale", sa.String(20), nullable=False),
    sa.Column("backend", sa.String(20), nullable=False),
    timestamp("created_at", nullable=False),
    #: Set while one worker sends the row (a lease; see the mailer).
    timestamp("claimed_at"),
    timestamp("sent_at"),
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
    timestamp("created_at", nullable=False),
    timestamp("expires_at", nullable=False),
)
