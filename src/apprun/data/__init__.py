"""data: collections (typed tables with relations, constraints and access rules),
their online migrations, and the PostgREST-compatible API at ``/data/{collection}``.
See docs/data.md.

Layers, the way a request flows:

- HTTP: ``api.py`` (the data API, with ``http_prefs.py`` for PostgREST's
  headers), ``collections_api.py`` (defining collections), ``openapi.py``;
- the service: ``service.py`` (`DataService`), which holds the reads
  (``reads.py``) and the writes (``writes.py``, with ``cascades.py``) over one
  ``rows.py`` `RowStore` (the transaction, rows as JSON, events);
- the rules: ``access.py`` (who may do what; its `Access` is what the SQL
  compiler limits rows to) and ``visibility.py`` (the same rules on a row in
  memory, for events);
- ``query/``: PostgREST's URL grammar, parsed into ``query/ast.py``;
- ``sql/``: the parsed query compiled to SQL, and the cache of compiled reads;
- ``schema/``: the collections themselves (model, catalog, DDL, migrations,
  schema files, validation of values).

``hooks.py`` is the extension point (``from apprun.data import hooks``);
``module.py`` builds the module for app.py.
"""
