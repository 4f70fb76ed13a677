"""data: collections (typed tables with relations, constraints and access rules),
their online migrations, and the PostgREST-compatible API at ``/data/{collection}``.
See docs/data.md.

Layers: ``api.py`` / ``collections_api.py`` (HTTP) → ``service.py`` (reads),
``writes.py`` (writes), ``rows.py`` (shared plumbing), ``access.py`` (rules) →
``query_grammar.py`` (URL → ``query_ast``; with ``query_lexer.py``,
``query_select.py``, ``query_filters.py``) and the SQL compilers
``sql_select.py``, ``sql_filters.py``, ``sql_write.py``, ``sql_expr.py``;
``catalog.py`` / ``ddl.py`` / ``diff.py`` own the tables; ``hooks.py`` is the
extension point (``from apprun.data import hooks``).
"""
