"""Builds the ASGI application. The only place that knows every module.

`create_app(settings)` returns a Litestar application wrapped by the kernel
middleware. `asgi()` is the factory granian calls in each worker: it reads the
settings from the environment.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler

from apprun import __version__
from apprun.auth.module import build_auth
from apprun.data.hooks import Hooks
from apprun.data.module import build_data
from apprun.events.module import build_events
from apprun.events.subscriptions import Registry
from apprun.kernel.config import ConfigError, Settings, load_settings
from apprun.kernel.docs_page import DocsPage
from apprun.kernel.http_errors import exception_handlers, json_request_class
from apprun.kernel.i18n import translator
from apprun.kernel.logging import configure_logging
from apprun.kernel.middleware import KernelMiddleware
from apprun.kernel.routes import kernel_routes
from apprun.kernel.runtime import Runtime
from apprun.rbac.api import RbacController
from apprun.rbac.service import Rbac
from apprun.tenancy.api import TenantsController
from apprun.tenancy.service import Tenancy

__all__ = ["asgi", "create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    extra_routes: Sequence[ControllerRouterHandler] = (),
    subscribers: Sequence[Registry] = (),
    hooks: Hooks | None = None,
    configure_logs: bool = True,
) -> Litestar:
    """The apprun application for ``settings`` (read from the environment if None).

    Resources open in the lifespan startup and close at shutdown, so building
    the app is cheap and does no I/O.
    """
    settings = settings or load_settings()
    if configure_logs:
        configure_logging(settings.log_level, settings.log_format)
    if settings.apprun_locales_dir is not None:
        # The application's own messages (error codes its hooks raise), process-wide like apprun's.
        translator().merge(settings.apprun_locales_dir)
    runtime = Runtime(settings)

    # Modules, lowest layer first: rbac <- events <- tenancy <- auth.
    rbac = Rbac(runtime.db)
    events = build_events(runtime, rbac, list(subscribers))
    tenancy = Tenancy(runtime.db, rbac)
    rbac.add_source(tenancy)
    auth = build_auth(runtime, tenancy, rbac)
    data = build_data(runtime, rbac, hooks)
    # Events sit below data and auth: a record's event reaches a reader only if the data API
    # would show it the row, and a live stream ends with the session that opened it.
    events.wire(visibility=data.visibility, sessions=auth.authenticator)
    runtime.on_start(events.start)
    runtime.on_start(auth.start)
    runtime.on_start(data.start)
    runtime.on_stop(data.stop)
    runtime.on_stop(events.stop)
    runtime.on_stop(auth.stop)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    cors = CORSConfig(allow_origins=settings.http_cors_origins) if settings.http_cors_origins else None
    app = Litestar(
        route_handlers=[
            *kernel_routes(metrics_enabled=settings.metrics_enabled),
            *auth.routes(),
            *events.routes(),
            *data.routes(),
            TenantsController,
            RbacController,
            *extra_routes,
        ],
        middleware=[auth.middleware()],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
        request_class=json_request_class(settings.http_max_json_depth),
        request_max_body_size=settings.http_max_body_bytes,
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024),
        cors_config=cors,
        openapi_config=OpenAPIConfig(
            title="apprun",
            version=__version__,
            description="The apprun HTTP API. Errors share one shape: {code, message, details, hint, request_id}.",
            path="/docs",
            render_plugins=[DocsPage(path="/")],
        ),
        logging_config=None,
        debug=False,
    )
    app.state.runtime = runtime
    app.state.rbac = rbac
    app.state.tenancy = tenancy
    for name, service in (auth.state() | events.state() | data.state()).items():
        setattr(app.state, name, service)
    app.state.openapi_extenders = [data.openapi]
    # Outermost layer (inside Litestar's entry point, outside its router and
    # exception handling), so 404s and framework errors are counted and logged.
    app.asgi_handler = KernelMiddleware(app.asgi_handler, runtime)
    return app


def asgi() -> Any:
    """granian's factory: the app for the settings in the environment."""
    try:
        return create_app()
    except ConfigError as exc:
        print(f"apprun: configuration error: {exc}", file=sys.stderr)  # noqa: T201 - nothing else is set up yet
        raise SystemExit(2) from None
