"""The one SQLAlchemy `MetaData` registry, and the kernel's own tables.

Every module defines its tables in ``<module>/tables.py`` on this
``metadata`` (it carries the naming convention, so constraints and indexes
are named alike everywhere); the kernel keeps here only its own:
``apprun_meta`` and ``apprun_rate_limits``, plus Alembic's version table
(``apprun_schema_version``, which Alembic creates). The metadata is what
migrations are written from and checked against in the tests; request paths
never go through SQLAlchemy. Every system table is prefixed ``apprun_`` so
it cannot clash with an application's collections.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = ["id_column", "meta", "metadata", "rate_limits", "timestamp"]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def timestamp(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    """A timezone-aware timestamp column (every system table's times)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def id_column(name: str = "id", **kw: Any) -> sa.Column[Any]:
    """An id column: apprun's ids are 36 characters at most (UUIDs, time-ordered ids)."""
    return sa.Column(name, sa.String(36), **kw)


#: Facts about this deployment (installation time, instance id …) and shared counters, key → value.
meta = sa.Table(
    "apprun_meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
