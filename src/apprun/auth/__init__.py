"""auth: users, passwords, sessions, access and refresh tokens, API keys,
identity bridges (OIDC, Kratos, social login), rate limits and the audit log.

See docs/auth.md. HTTP lives in ``api.py``/``admin_api.py``/``oauth.py``; the
logic in ``service.py``, ``account.py``, ``admin.py``, ``api_keys.py``;
``module.py`` builds it all for ``app.py``.
"""
