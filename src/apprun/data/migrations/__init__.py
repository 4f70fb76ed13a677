"""The data module's Alembic revisions: the ``data`` branch (see docs/development.md, "Adding a migration")."""
