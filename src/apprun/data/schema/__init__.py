"""Collections as data and as tables: the definitions, their validation, DDL and migrations.

``model.py`` is a collection's definition, ``catalog.py`` keeps every
definition and applies changes, ``ddl.py`` turns a definition into tables,
indexes and row-level security, ``diff.py`` turns one definition into the
next as migration steps, ``schema_file.py`` applies a YAML file of them;
``validation.py`` (with ``validation_checks.py``) checks the values a client
writes against a collection's fields.
"""
