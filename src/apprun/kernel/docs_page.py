"""The Swagger UI page at ``/docs``, reading the document ``/openapi.json`` serves.

Litestar's Swagger plugin embeds the framework's own schema in the page, so
the page would miss what modules add to ``/openapi.json`` at request time
(the data module's collections). This page loads ``/openapi.json`` itself:
one document, the same for the page and for code generators.
"""

from __future__ import annotations

import html
import json
from typing import Any

from litestar import Request
from litestar.openapi.plugins import SwaggerRenderPlugin
from typing_extensions import override

__all__ = ["DocsPage"]

#: Where the whole document is served (`apprun.kernel.routes.openapi_json`).
DOCUMENT_URL = "/openapi.json"


class DocsPage(SwaggerRenderPlugin):
    """Swagger UI over ``/openapi.json`` (scripts from the plugin's CDN URLs)."""

    @override
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        options = json.dumps({"url": DOCUMENT_URL, "dom_id": "#swagger-ui", "deepLinking": True})
        page = f"""<!DOCTYPE html>
<html>
  <head>
    <title>{title}</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <link href="{html.escape(self.css_url)}" rel="stylesheet">
    <script src="{html.escape(self.js_url)}" crossorigin></script>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script>window.ui = SwaggerUIBundle({options});</script>
  </body>
</html>
"""
        return page.encode()
