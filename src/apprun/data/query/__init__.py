"""PostgREST's URL query grammar: a query string parsed into `apprun.data.query.ast`.

``grammar.py`` is the entry point (`parse_read`); ``lexer.py`` is its low
level, ``select.py`` parses ``select=``, ``filters.py`` the horizontal
filters and their ``and``/``or`` trees. Nothing here knows a collection: the
SQL compiler (`apprun.data.sql`) checks every name against the schema.
"""
