"""DDL for collections: tables, constraints, indexes, search, row-level security.

A collection becomes one table named like the collection. The SQL comes from
SQLAlchemy's table model and Alembic's operations, so the same definition
gives correct DDL on SQLite and PostgreSQL, and can be printed instead of run
(``--dry-run``). SQLite cannot alter most things in place; Alembic's batch
mode rebuilds the table there (copy, drop, rename), inside the transaction.

Column types per dialect (chosen so both databases can return identical JSON):

| field | PostgreSQL | SQLite |
|---|---|---|
| text, email, url, enum, uuid, relation | text | TEXT |
| integer | bigint | INTEGER |
| number | double precision | REAL |
| boolean | boolean | INTEGER (0/1) |
| datetime | timestamptz | TEXT, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` |
| date | date | TEXT, ``YYYY-MM-DD`` |
| json | jsonb | TEXT (JSON) |

Tenant isolation on PostgreSQL: every tenant-scoped table has row-level
security enabled and *forced*, with one policy admitting rows whose
``tenant_id`` equals the transaction's ``apprun.tenant_id`` setting; data
requests run as the role ``DB_DATA_ROLE`` (not the tables' owner, not a
superuser), switched to inside the request's transaction.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from apprun.data.schema.model import CollectionDef, FieldDef
from apprun.kernel.db.port import Dialect

__all__ = [
    "NAMING",
    "Change",
    "apply_changes",
    "column_type",
    "drop_fts_statements",
    "field_column",
    "fk_name",
    "fk_ondelete",
    "fts_statements",
    "plan_create",
    "plan_drop",
    "render_sql",
    "scoped_columns",
    "security_statements",
    "table_model",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def column_type(field_type: str, dialect: Dialect) -> sa.types.TypeEngine[Any]:
    if field_type == "integer":
        return sa.BigInteger() if dialect == "postgres" else sa.Integer()
    if field_type == "number":
        return sa.Double() if dialect == "postgres" else sa.REAL()
    if field_type == "boolean":
        return sa.Boolean() if dialect == "postgres" else sa.Integer()
    if field_type == "datetime":
        return sa.DateTime(timezone=True) if dialect == "postgres" else sa.Text()
    if field_type == "date":
        return sa.Date() if dialect == "postgres" else sa.Text()
    if field_type == "json":
        from sqlalchemy.dialects.postgresql import JSONB

        return JSONB() if dialect == "postgres" else sa.Text()
    return sa.Text()


def scoped_columns(collection: CollectionDef, columns: Iterable[str]) -> list[str]:
    """``columns`` as an index or a unique constraint of ``collection`` names them.

    A tenant-scoped collection's start with ``tenant_id``: a value is unique within a tenant.
    """
    return (["tenant_id"] if collection.scope == "tenant" else []) + list(columns)


def fk_ondelete(field: FieldDef) -> str:
    """A relation's ``on_delete`` as SQL's ``ON DELETE`` action."""
    return {"cascade": "CASCADE", "set_null": "SET NULL", "restrict": "RESTRICT"}[field.on_delete]


def fk_name(table: str, field: FieldDef) -> str:
    """The name of a relation's foreign key (the one NAMING gives it), so a migration can find it again."""
    return NAMING["fk"] % {"table_name": table, "column_0_name": field.name, "referred_table_name": field.collection}


def field_column(field: FieldDef, dialect: Dialect, table: str) -> sa.Column[Any]:
    """The column of one field of ``table`` (constraints other than NOT NULL and FK are separate).

    The foreign key is named here, not by the metadata's convention: a column
    added by a migration is not in that metadata, and SQLite's table rebuild
    refuses an unnamed constraint.
    """
    args: list[Any] = []
    if field.type == "relation":
        args.append(sa.ForeignKey(f"{field.collection}.id", ondelete=fk_ondelete(field), name=fk_name(table, field)))
    return sa.Column(field.name, column_type(field.type, dialect), *args, nullable=not field.required)


def table_model(collection: CollectionDef, dialect: Dialect, metadata: sa.MetaData | None = None) -> sa.Table:
    """The SQLAlchemy table of a collection (for DDL and dry runs; never for queries)."""
    meta = metadata or sa.MetaData(naming_convention=NAMING)
    tenant_scoped = collection.scope == "tenant"
    ts = column_type("datetime", dialect)
    items: list[Any] = [
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=not tenant_scoped),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=True),
    ]
    for field in collection.column_fields:
        items.append(field_column(field, dialect, collection.name))
        if field.unique:
            items.append(sa.UniqueConstraint(*scoped_columns(collection, [field.name])))
    if tenant_scoped:
        items.append(sa.Index(None, "tenant_id", "id"))
    for index in collection.indexes:
        items.append(sa.Index(None, *scoped_columns(collection, index.fields), unique=index.unique))
    # Relation targets must be known to the metadata for the FK to render (a
    # relation to the collection itself — replies, a tree — is to this table).
    for field in collection.column_fields:
        if (
            field.type == "relation"
            and field.collection
            and field.collection != collection.name
            and field.collection not in meta.tables
        ):
            sa.Table(field.collection, meta, sa.Column("id", sa.Text(), primary_key=True))
    return sa.Table(collection.name, meta, *items)


@dataclass(frozen=True)
class Change:
    """One step of a collection migration, as said to a user and as DDL."""

    description: str
    destructive: bool
    run: Callable[[Operations, Dialect], None]


# --- statements that SQLAlchemy does not model ------------------------------
def fts_statements(collection: CollectionDef, dialect: Dialect) -> list[str]:
    fields = [f.name for f in collection.column_fields if f.searchable]
    name = collection.name
    if not fields:
        return []
    if dialect == "postgres":
        return [
            f'CREATE INDEX "ix_{name}_fts_{f}" ON "{name}" USING gin (to_tsvector(\'simple\', coalesce("{f}", \'\')))'
            for f in fields
        ]
    cols = ", ".join(f'"{f}"' for f in fields)
    new_vals = ", ".join(f'new."{f}"' for f in fields)
    old_vals = ", ".join(f'old."{f}"' for f in fields)
    fts = f"{name}__fts"
    return [
        f"CREATE VIRTUAL TABLE \"{fts}\" USING fts5({cols}, content='{name}', content_rowid='rowid')",
        f'CREATE TRIGGER "{fts}_ai" AFTER INSERT ON "{name}" BEGIN '
        f'INSERT INTO "{fts}"(rowid, {cols}) VALUES (new.rowid, {new_vals}); END',
        f'CREATE TRIGGER "{fts}_ad" AFTER DELETE ON "{name}" BEGIN '
        f'INSERT INTO "{fts}"("{fts}", rowid, {cols}) VALUES (\'delete\', old.rowid, {old_vals}); END',
        f'CREATE TRIGGER "{fts}_au" AFTER UPDATE ON "{name}" BEGIN '
        f'INSERT INTO "{fts}"("{fts}", rowid, {cols}) VALUES (\'delete\', old.rowid, {old_vals}); '
        f'INSERT INTO "{fts}"(rowid, {cols}) VALUES (new.rowid, {new_vals}); END',
        f'INSERT INTO "{fts}"("{fts}") VALUES (\'rebuild\')',
    ]


def drop_fts_statements(collection: CollectionDef, dialect: Dialect) -> list[str]:
    fields = [f.name for f in collection.column_fields if f.searchable]
    name = collection.name
    if not fields:
        return []
    if dialect == "postgres":
        return [f'DROP INDEX IF EXISTS "ix_{name}_fts_{f}"' for f in fields]
    fts = f"{name}__fts"
    return [
        f'DROP TRIGGER IF EXISTS "{fts}_ai"',
        f'DROP TRIGGER IF EXISTS "{fts}_ad"',
        f'DROP TRIGGER IF EXISTS "{fts}_au"',
        f'DROP TABLE IF EXISTS "{fts}"',
    ]


def security_statements(collection: CollectionDef, dialect: Dialect, role: str) -> list[str]:
    """Row-level security and grants (PostgreSQL only)."""
    if dialect != "postgres":
        return []
    name = collection.name
    stmts = [f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{name}" TO "{role}"']
    if collection.scope == "tenant":
        check = "tenant_id = current_setting('apprun.tenant_id', true)"
        stmts += [
            f'ALTER TABLE "{name}" ENABLE ROW LEVEL SECURITY',
            f'ALTER TABLE "{name}" FORCE ROW LEVEL SECURITY',
            f'CREATE POLICY tenant_isolation ON "{name}" USING ({check}) WITH CHECK ({check})',
        ]
    return stmts


# --- plans ------------------------------------------------------------------
def plan_create(collection: CollectionDef, role: str) -> list[Change]:
    def run(op: Operations, dialect: Dialect) -> None:
        table = table_model(collection, dialect)
        op.create_table(collection.name, *[_detached(c) for c in table.columns], *_table_constraints(table))
        for index in table.indexes:
            op.create_index(index.name, collection.name, [c.name for c in index.columns], unique=index.unique)
        for stmt in [*fts_statements(collection, dialect), *security_statements(collection, dialect, role)]:
            op.execute(stmt)

    return [Change(f"create collection {collection.name}", destructive=False, run=run)]


def _detached(column: sa.Column[Any]) -> sa.Column[Any]:
    """A fresh copy of a model column for Alembic's create_table (``Column.copy`` is deprecated)."""
    fks = [sa.ForeignKey(fk.target_fullname, ondelete=fk.ondelete) for fk in column.foreign_keys]
    return sa.Column(column.name, column.type, *fks, primary_key=column.primary_key, nullable=column.nullable)


def _table_constraints(table: sa.Table) -> list[Any]:
    out: list[Any] = []
    for constraint in table.constraints:
        if isinstance(constraint, sa.PrimaryKeyConstraint):
            continue
        if isinstance(constraint, sa.UniqueConstraint):
            out.append(sa.UniqueConstraint(*[c.name for c in constraint.columns], name=constraint.name))
    return out


def plan_drop(collection: CollectionDef) -> list[Change]:
    def run(op: Operations, dialect: Dialect) -> None:
        for stmt in drop_fts_statements(collection, dialect):
            op.execute(stmt)
        op.drop_table(collection.name)

    return [Change(f"drop collection {collection.name} and all its rows", destructive=True, run=run)]


# --- running ------------------------------------------------------------------
def apply_changes(sync_conn: sa.Connection, changes: Sequence[Change], dialect: Dialect) -> None:
    """Run the changes on a SQLAlchemy (sync) connection, inside its transaction."""
    ctx = MigrationContext.configure(sync_conn, opts={"render_as_batch": dialect == "sqlite"})
    op = Operations(ctx)
    for change in changes:
        change.run(op, dialect)


def render_sql(changes: Sequence[Change], dialect: Dialect) -> str:
    """The SQL the changes would run, without a database (``--dry-run``)."""
    buffer = io.StringIO()
    ctx = MigrationContext.configure(
        dialect_name="postgresql" if dialect == "postgres" else "sqlite",
        opts={"as_sql": True, "output_buffer": buffer, "literal_binds": True},
    )
    op = Operations(ctx)
    for change in changes:
        buffer.write(f"-- {change.description}{' (destructive)' if change.destructive else ''}\n")
        change.run(op, dialect)
    return buffer.getvalue()
