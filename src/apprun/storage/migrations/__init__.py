"""The storage module's Alembic revisions: the ``storage`` branch.

See docs/development.md, "Adding a migration".
"""
