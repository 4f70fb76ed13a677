"""The auth module's Alembic revisions: the ``auth`` branch (see docs/development.md, "Adding a migration")."""
