"""The data module's tables: collection definitions and their history.

Defined on the kernel's one `metadata`; created by the migrations in
``data/migrations/`` (branch ``data``). The application's collection tables
are not here: the data module creates and alters them at run time (``data/schema``).
"""

from __future__ import annotations

import sqlalchemy as sa

from apprun.kernel.db.schema import id_column, metadata, timestamp

__all__ = ["collection_history", "collections"]

#: Application collections: their definitions (JSON), one row each.
collections = sa.Table(
    "apprun_collections",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    id_column("updated_by", nullable=True),
    timestamp("created_at", nullable=False),
    timestamp("updated_at", nullable=False),
)

#: Every change ever applied to a collection, with the SQL it ran.
collection_history = sa.Table(
    "apprun_collection_history",
    metadata,
    id_column(primary_key=True),
    sa.Column("collection", sa.String(63), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("operation", sa.String(20), nullable=False),
    sa.Column("changes", sa.Text, nullable=False),
    sa.Column("definition", sa.Text, nullable=True),
    id_column("applied_by", nullable=True),
    timestamp("applied_at", nullable=False),
    sa.Index(None, "collection", "version"),
)
