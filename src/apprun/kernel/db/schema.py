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
