"""The tenancy module's Alembic revisions: the ``tenancy`` branch (see docs/development.md, "Adding a migration")."""
