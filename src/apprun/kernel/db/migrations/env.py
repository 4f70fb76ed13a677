"""Alembic environment for apprun's system tables: the kernel's and every module's branch.

apprun runs Alembic programmatically (`apprun.kernel.db.migrate`), handing it
an open connection in ``config.attributes["connection"]`` and the version
locations (the kernel's, then each module's ``migrations`` package) in the
config; offline mode (``--sql``) renders the SQL for the configured dialect.
``config.attributes["metadata"]``, when given, is the metadata an
autogenerate compares with (every module's tables loaded on it).
"""

from __future__ import annotations

from alembic import context

from apprun.kernel.db.schema import metadata

VERSION_TABLE = "apprun_schema_version"


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    target = config.attributes.get("metadata", metadata)
    if connection is None:
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target,
            version_table=VERSION_TABLE,
            literal_binds=True,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    context.configure(
        connection=connection,
        target_metadata=target,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
