"""auth, tenancy, rbac: users, identities, sessions, refresh tokens, one-time tokens,
API keys, audit log, mail outbox, OAuth states, tenants, memberships, roles, policies.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
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
        "apprun_audit_log",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.Column("details", sa.Text(), server_default="{}", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_audit_log")),
    )
    op.create_index(
        op.f("ix_apprun_audit_log_tenant_id_created_at"), "apprun_audit_log", ["tenant_id", "created_at"], unique=False
    )
    op.create_table(
        "apprun_mail_outbox",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("locale", sa.String(length=20), nullable=False),
        sa.Column("backend", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_mail_outbox")),
    )
    op.create_table(
        "apprun_oauth_states",
        sa.Column("state", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("code_verifier", sa.String(length=200), nullable=False),
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("redirect_to", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_apprun_oauth_states")),
    )
    op.create_table(
        "apprun_tenants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("personal", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("policy_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_tenants")),
    )
    op.create_table(
        "apprun_users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("locale", sa.String(length=20), nullable=True),
        sa.Column("data", sa.Text(), server_default="{}", nullable=False),
        sa.Column("is_platform_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_users")),
        sa.UniqueConstraint("email", name=op.f("uq_apprun_users_email")),
    )
    op.create_table(
        "apprun_api_keys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_api_keys_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_apprun_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_apprun_api_keys_tenant_id"), "apprun_api_keys", ["tenant_id"], unique=False)
    op.create_table(
        "apprun_identities",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["apprun_users.id"], name=op.f("fk_apprun_identities_user_id_apprun_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_identities")),
        sa.UniqueConstraint("provider", "subject", name=op.f("uq_apprun_identities_provider_subject")),
    )
    op.create_index(op.f("ix_apprun_identities_user_id"), "apprun_identities", ["user_id"], unique=False)
    op.create_table(
        "apprun_one_time_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("role", sa.String(length=100), nullable=True),
        sa.Column("created_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_one_time_tokens_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["apprun_users.id"],
            name=op.f("fk_apprun_one_time_tokens_user_id_apprun_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_one_time_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_apprun_one_time_tokens_token_hash")),
    )
    op.create_table(
        "apprun_roles",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("builtin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_roles_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "name", name=op.f("pk_apprun_roles")),
    )
    op.create_table(
        "apprun_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("auth_method", sa.String(length=20), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=50), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_sessions_tenant_id_apprun_tenants"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["apprun_users.id"], name=op.f("fk_apprun_sessions_user_id_apprun_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_sessions")),
    )
    op.create_index(op.f("ix_apprun_sessions_user_id"), "apprun_sessions", ["user_id"], unique=False)
    op.create_table(
        "apprun_memberships",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("added_by", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "role"],
            ["apprun_roles.tenant_id", "apprun_roles.name"],
            name=op.f("fk_apprun_memberships_tenant_id_apprun_roles"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["apprun_tenants.id"],
            name=op.f("fk_apprun_memberships_tenant_id_apprun_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["apprun_users.id"],
            name=op.f("fk_apprun_memberships_user_id_apprun_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name=op.f("pk_apprun_memberships")),
    )
    op.create_index(op.f("ix_apprun_memberships_user_id"), "apprun_memberships", ["user_id"], unique=False)
    op.create_table(
        "apprun_policies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("object", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("effect", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "role"],
            ["apprun_roles.tenant_id", "apprun_roles.name"],
            name=op.f("fk_apprun_policies_tenant_id_apprun_roles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_policies")),
        sa.UniqueConstraint(
            "tenant_id",
            "role",
            "object",
            "action",
            "effect",
            name=op.f("uq_apprun_policies_tenant_id_role_object_action_effect"),
        ),
    )
    op.create_table(
        "apprun_refresh_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["apprun_sessions.id"],
            name=op.f("fk_apprun_refresh_tokens_session_id_apprun_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apprun_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_apprun_refresh_tokens_token_hash")),
    )
    op.create_index(op.f("ix_apprun_refresh_tokens_session_id"), "apprun_refresh_tokens", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_apprun_refresh_tokens_session_id"), table_name="apprun_refresh_tokens")
    op.drop_table("apprun_refresh_tokens")
    op.drop_table("apprun_policies")
    op.drop_index(op.f("ix_apprun_memberships_user_id"), table_name="apprun_memberships")
    op.drop_table("apprun_memberships")
    op.drop_index(op.f("ix_apprun_sessions_user_id"), table_name="apprun_sessions")
    op.drop_table("apprun_sessions")
    op.drop_table("apprun_roles")
    op.drop_table("apprun_one_time_tokens")
    op.drop_index(op.f("ix_apprun_identities_user_id"), table_name="apprun_identities")
    op.drop_table("apprun_identities")
    op.drop_index(op.f("ix_apprun_api_keys_tenant_id"), table_name="apprun_api_keys")
    op.drop_table("apprun_api_keys")
    op.drop_table("apprun_users")
    op.drop_table("apprun_tenants")
    op.drop_table("apprun_oauth_states")
    op.drop_table("apprun_mail_outbox")
    op.drop_index(op.f("ix_apprun_audit_log_tenant_id_created_at"), table_name="apprun_audit_log")
    op.drop_table("apprun_audit_log")
