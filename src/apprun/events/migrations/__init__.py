"""The events module's Alembic revisions: the ``events`` branch (see docs/development.md, "Adding a migration")."""
