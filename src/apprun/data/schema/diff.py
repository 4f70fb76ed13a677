"""From one collection definition to the next: the migration steps.

Fields are matched by name, or by ``renamed_from`` for a rename (which keeps
the data). What needs DDL:

- a new field: a new column (a required one is added nullable, filled with
  its default, then made NOT NULL — without a default this works only on an
  empty collection);
- a dropped field: the column goes, with its data (**destructive**);
- required on/off, unique on/off, a relation's target or ``on_delete``: the
  constraint changes (SQLite rebuilds the table, in the transaction);
- searchable fields: the full-text index is rebuilt;
- indexes added or dropped.

Changing a field's type is refused: add a field of the new type, copy, and
drop the old one. Changing the scope is refused. Everything else (rules,
validation limits, enum values, defaults, hidden, descriptions) is stored
with the definition and needs no DDL.

Each step records the definition *before* it, so SQLite's table rebuilds copy
the table as it is at that point, in a real run and in a dry run alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations

from apprun.data.schema.ddl import (
    NAMING,
    Change,
    drop_fts_statements,
    field_column,
    fk_name,
    fk_ondelete,
    fts_statements,
    scoped_columns,
    table_model,
)
from apprun.data.schema.model import CollectionDef, FieldDef, IndexDef
from apprun.kernel.db.port import Dialect
from apprun.kernel.errors import BadRequest

__all__ = ["diff"]

Step = Callable[[Operations, Dialect, CollectionDef], None]


def _bound_default(field: FieldDef) -> Any:
    return json.dumps(field.default) if field.type == "json" else field.default


def _name(kind: str, table: str, cols: list[str]) -> str:
    return NAMING[kind] % {"table_name": table, "column_0_N_name": "_".join(cols)}


def _replace_field(collection: CollectionDef, old_name: str, field: FieldDef | None) -> CollectionDef:
    fields = [f for f in collection.fields if f.name != old_name]
    if field is not None:
        fields.append(field)
    return collection.model_copy(update={"fields": fields})


class _Plan:
    """Steps in order, each with the definition it starts from."""

    def __init__(self, start: CollectionDef) -> None:
        self.state = start
        self.changes: list[Change] = []
        self.rebuilds = False

    def add(self, description: str, step: Step, after: CollectionDef, *, destructive: bool = False) -> None:
        before = self.state

        def run(op: Operations, dialect: Dialect, s: Step = step, b: CollectionDef = before) -> None:
            s(op, dialect, b)

        self.changes.append(Change(description, destructive, run))
        self.state = after


def _batch(op: Operations, dialect: Dialect, before: CollectionDef) -> Any:
    return op.batch_alter_table(before.name, copy_from=table_model(before, dialect), naming_convention=NAMING)


def diff(old: CollectionDef, new: CollectionDef, role: str) -> list[Change]:
    """The steps from ``old`` to ``new``, in the order they run (each kind of change is one function below)."""
    del role  # grants and policies do not change with the fields
    if old.name != new.name:
        raise BadRequest("data.rename_collection_unsupported")
    if old.scope != new.scope:
        raise BadRequest("data.scope_change_unsupported", params={"name": new.name})
    plan = _Plan(old)
    _drop_indexes(plan, old, new)
    _rename_fields(plan, old, new)
    _add_fields(plan, new)
    _drop_fields(plan, old, new)
    _change_constraints(plan, new)
    _add_indexes(plan, old, new)
    return _with_search_index(plan, old, new)


def _index_keys(collection: CollectionDef) -> set[tuple[tuple[str, ...], bool]]:
    return {(tuple(i.fields), i.unique) for i in collection.indexes}


def _drop_indexes(plan: _Plan, old: CollectionDef, new: CollectionDef) -> None:
    """Indexes that go away go first: a rebuild must not recreate them on dropped columns."""
    name = new.name
    for fields, unique in sorted(_index_keys(old) - _index_keys(new)):
        cols = scoped_columns(old, fields)

        def drop_index(op: Operations, _dialect: Dialect, _before: CollectionDef, c: list[str] = cols) -> None:
            op.drop_index(_name("ix", name, c), table_name=name)

        remaining = [i for i in plan.state.indexes if (tuple(i.fields), i.unique) != (fields, unique)]
        plan.add(f"drop index on {', '.join(fields)}", drop_index, plan.state.model_copy(update={"indexes": remaining}))


def _rename_fields(plan: _Plan, old: CollectionDef, new: CollectionDef) -> None:
    """Fields renamed (``renamed_from``): the column keeps its data; a rename cannot change the type."""
    name = new.name
    old_fields = {f.name: f for f in old.column_fields}
    new_names = {f.name for f in new.column_fields}
    for field in new.column_fields:
        if field.name in old_fields or field.renamed_from not in old_fields or field.renamed_from in new_names:
            continue
        before_field = old_fields[field.renamed_from or ""]
        if before_field.type != field.type:
            raise BadRequest("data.type_change_unsupported", params={"field": field.name})

        def rename(
            op: Operations, _dialect: Dialect, _before: CollectionDef, a: str = before_field.name, b: str = field.name
        ) -> None:
            op.alter_column(name, a, new_column_name=b)

        renamed = before_field.model_copy(update={"name": field.name, "renamed_from": None})
        plan.add(
            f"rename field {before_field.name} to {field.name}",
            rename,
            _replace_field(plan.state, before_field.name, renamed),
        )
        plan.rebuilds = plan.rebuilds or before_field.searchable


def _add_fields(plan: _Plan, new: CollectionDef) -> None:
    """New fields, added loose (nullable, not unique) and filled with their default; constraints come later."""
    name = new.name
    current = {f.name: f for f in plan.state.column_fields}
    for field in new.column_fields:
        if field.name in current:
            continue
        loose = field.model_copy(update={"required": False, "unique": False, "renamed_from": None})

        def add(
            op: Operations, dialect: Dialect, before: CollectionDef, f: FieldDef = loose, d: Any = field.default
        ) -> None:
            if dialect == "sqlite" and f.type == "relation":  # SQLite adds a REFERENCES column only by rebuilding
                with _batch(op, dialect, before) as batch:
                    batch.add_column(field_column(f, dialect, name))
            else:
                op.add_column(name, field_column(f, dialect, name))
            if d is not None:
                op.execute(
                    sa.text(f'UPDATE "{name}" SET "{f.name}" = :d WHERE "{f.name}" IS NULL').bindparams(
                        d=_bound_default(f.model_copy(update={"default": d}))
                    )
                )

        plan.add(f"add field {field.name} ({field.type})", add, _replace_field(plan.state, field.name, loose))
        plan.rebuilds = plan.rebuilds or field.type == "relation"


def _drop_fields(plan: _Plan, old: CollectionDef, new: CollectionDef) -> None:
    """Fields gone (and not renamed): the column goes with its data (destructive)."""
    name = new.name
    new_names = {f.name for f in new.column_fields}
    for field in old.column_fields:
        if field.name in new_names or any(f.renamed_from == field.name for f in new.column_fields):
            continue

        def drop(op: Operations, dialect: Dialect, before: CollectionDef, f: str = field.name) -> None:
            if dialect == "sqlite":
                with _batch(op, dialect, before) as batch:
                    batch.drop_column(f)
            else:
                op.drop_column(name, f)

        plan.add(
            f"drop field {field.name} and its data",
            drop,
            _replace_field(plan.state, field.name, None),
            destructive=True,
        )
        plan.rebuilds = True


def _change_constraints(plan: _Plan, new: CollectionDef) -> None:
    """Constraints of fields that stay (or were just added loose): required, unique, a relation's target."""
    name = new.name
    for field in new.column_fields:
        now = {f.name: f for f in plan.state.column_fields}[field.name]
        if now.type != field.type:
            raise BadRequest("data.type_change_unsupported", params={"field": field.name})
        if now.required != field.required:
            _nullability(plan, name, field)
        if now.unique != field.unique:
            _unique(plan, name, field)
        if field.type == "relation" and (now.collection != field.collection or now.on_delete != field.on_delete):
            _foreign_key(plan, name, now, field)
        # Limits, enum values, defaults, hidden, search: no DDL here; carried into the state.
        settled = {f.name: f for f in plan.state.column_fields}[field.name]
        plan.state = _replace_field(plan.state, field.name, field.model_copy(update={"renamed_from": None}))
        if settled.searchable != field.searchable:
            plan.rebuilds = True


def _add_indexes(plan: _Plan, old: CollectionDef, new: CollectionDef) -> None:
    """New indexes, last: every column they name exists by now."""
    name = new.name
    for fields, unique in sorted(_index_keys(new) - _index_keys(old)):
        cols = scoped_columns(new, fields)

        def add_index(
            op: Operations, _dialect: Dialect, _before: CollectionDef, c: list[str] = cols, u: bool = unique
        ) -> None:
            op.create_index(_name("ix", name, c), name, c, unique=u)

        indexes = [*plan.state.indexes, IndexDef(fields=list(fields), unique=unique)]
        plan.add(
            f"add {'unique ' if unique else ''}index on {', '.join(fields)}",
            add_index,
            plan.state.model_copy(update={"indexes": indexes}),
        )


def _with_search_index(plan: _Plan, old: CollectionDef, new: CollectionDef) -> list[Change]:
    """The plan's changes, wrapped in a rebuild of the full-text index when a step or the search fields need it."""
    searchable = any(f.searchable for f in (*old.column_fields, *new.column_fields))
    if not searchable or not (plan.rebuilds or _search_fields(old) != _search_fields(new)):
        return plan.changes

    # The old search index goes before any table rebuild, the new one after.
    def drop_search(op: Operations, dialect: Dialect, o: CollectionDef = old) -> None:
        for stmt in drop_fts_statements(o, dialect):
            op.execute(stmt)

    def build_search(op: Operations, dialect: Dialect, n: CollectionDef = new) -> None:
        for stmt in fts_statements(n, dialect):
            op.execute(stmt)

    return [
        Change("drop the full-text index", False, drop_search),
        *plan.changes,
        Change("build the full-text index", False, build_search),
    ]


def _search_fields(collection: CollectionDef) -> list[str]:
    return [f.name for f in collection.column_fields if f.searchable]


def _nullability(plan: _Plan, name: str, field: FieldDef) -> None:
    def run(op: Operations, dialect: Dialect, before: CollectionDef, f: FieldDef = field) -> None:
        if dialect == "sqlite":
            with _batch(op, dialect, before) as batch:
                batch.alter_column(f.name, nullable=not f.required)
        else:
            op.alter_column(name, f.name, nullable=not f.required)

    current = {f.name: f for f in plan.state.column_fields}[field.name]
    after = _replace_field(plan.state, field.name, current.model_copy(update={"required": field.required}))
    plan.add(f"make field {field.name} {'required' if field.required else 'optional'}", run, after)
    plan.rebuilds = True


def _unique(plan: _Plan, name: str, field: FieldDef) -> None:
    cols = scoped_columns(plan.state, [field.name])
    constraint = _name("uq", name, cols)

    def run(op: Operations, dialect: Dialect, before: CollectionDef, add_it: bool = field.unique) -> None:
        if dialect == "sqlite":
            with _batch(op, dialect, before) as batch:
                if add_it:
                    batch.create_unique_constraint(constraint, cols)
                else:
                    batch.drop_constraint(constraint, type_="unique")
        elif add_it:
            op.create_unique_constraint(constraint, name, cols)
        else:
            op.drop_constraint(constraint, name, type_="unique")

    current = {f.name: f for f in plan.state.column_fields}[field.name]
    after = _replace_field(plan.state, field.name, current.model_copy(update={"unique": field.unique}))
    plan.add(f"{'add' if field.unique else 'drop'} unique constraint on {field.name}", run, after)
    plan.rebuilds = True


def _foreign_key(plan: _Plan, name: str, before_field: FieldDef, after_field: FieldDef) -> None:
    old_fk = fk_name(name, before_field)
    new_fk = fk_name(name, after_field)
    ondelete = fk_ondelete(after_field)
    target = after_field.collection or ""

    def run(op: Operations, dialect: Dialect, before: CollectionDef) -> None:
        if dialect == "sqlite":
            with _batch(op, dialect, before) as batch:
                batch.drop_constraint(old_fk, type_="foreignkey")
                batch.create_foreign_key(new_fk, target, [after_field.name], ["id"], ondelete=ondelete)
        else:
            op.drop_constraint(old_fk, name, type_="foreignkey")
            op.create_foreign_key(new_fk, name, target, [after_field.name], ["id"], ondelete=ondelete)

    updated = before_field.model_copy(update={"collection": after_field.collection, "on_delete": after_field.on_delete})
    plan.add(
        f"change the relation {after_field.name} (to {target}, on delete {after_field.on_delete})",
        run,
        _replace_field(plan.state, after_field.name, updated),
    )
    plan.rebuilds = True
