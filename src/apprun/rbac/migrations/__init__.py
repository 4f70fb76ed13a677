"""The rbac module's Alembic revisions: the ``rbac`` branch (see docs/development.md, "Adding a migration")."""
