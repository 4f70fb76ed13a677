"""Parsed queries compiled to SQL, and the cache of compiled reads.

``select.py`` compiles reads (one statement whose value is the JSON reply),
``write.py`` inserts, updates, deletes and the rows they target,
``filters.py`` the horizontal filters both share, ``expressions.py`` the
building blocks (quoting, parameters, casts, JSON paths), and
``plan_cache.py`` keeps compiled reads by the query's shape. The access rules'
output (`apprun.data.access.Access`) is ANDed into every statement ahead of
the client's filters.
"""
