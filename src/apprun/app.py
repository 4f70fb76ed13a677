"""Builds the ASGI application from the module list (apprun/modules.py).

`create_app(settings)` returns a Litestar application wrapped by the kernel
middleware: the kernel's routes plus every enabled module's routes,
middleware and dependencies, its start and stop on the runtime. `asgi()` is
the factory granian calls in each worker: it reads the settings from the
environment.

Handlers get their services injected (``kernel/http.py``); ``app.state``
holds only the kernel's `Runtime` and the modules' `Wiring`, which tests and
tools read with `runtime_of` and `wiring_of` (``wiring_of(app).get(Webhooks)``).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.routes import ASGIRoute, WebSocketRoute
from litestar.types import ControllerRouterHandler, Middleware

from apprun import __version__
from apprun.data.hooks import Hooks
from apprun.events.module import Subscriptions
from apprun.events.subscriptions import Registry
from apprun.kernel.config import ConfigError
from apprun.kernel.docs_page import DocsPage
from apprun.kernel.fastpath import FastPath, RequestLayers, shadowed_routes
from apprun.kernel.http import SKIP_COMPRESSION
from apprun.kernel.http_errors import exception_handlers, json_request_class
from apprun.kernel.i18n import translator
from apprun.kernel.logging import configure_logging, get_logger
from apprun.kernel.middleware import KernelMiddleware
from apprun.kernel.module import Wiring
from apprun.kernel.modules import Assembly, assemble
from apprun.kernel.routes import kernel_routes
from apprun.kernel.runtime import Runtime
from apprun.modules import MODULES, Settings, load_settings

__all__ = ["asgi", "create_app", "runtime_of", "wiring_of"]

_log = get_logger("apprun.app")


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
    wiring = Wiring()
    if hooks is not None:
        wiring.provide(hooks)
    modules = assemble(MODULES, runtime, wiring)
    # The application's event handlers; none run when the events module is switched off.
    subscriptions = modules.wiring.find(Subscriptions)
    if subscriptions is not None:
        for registry in subscribers:
            subscriptions.add(registry)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = _litestar(settings, modules, [lifespan], extra_routes)
    # The kernel's routes read the runtime here; handlers get services by injection, never from app.state.
    app.state.runtime = runtime
    app.state.wiring = modules.wiring
    # Outermost layer (inside Litestar's entry point, outside its router and
    # exception handling), so 404s and framework errors are counted and logged.
    app.asgi_handler = KernelMiddleware(
        app.asgi_handler, runtime, _fast_path(settings, modules, app), body_limits=modules.body_limits()
    )
    return app


def _fast_path(settings: Settings, modules: Assembly, app: Litestar) -> FastPath | None:
    """The modules' fast routes (kernel/fastpath.py), unless switched off or a module's middleware forbids it."""
    routes = modules.fast_routes()
    if not settings.http_fast_path or not routes:
        return None
    if modules.middleware():
        _log.info("fast_path_off", reason="a module declares framework middleware, which the fast path cannot run")
        return None
    shadowed = shadowed_routes(routes, _framework_routes(app))
    if shadowed:
        _log.warning("fast_path_off", reason="a fast route would take these routes from the framework", routes=shadowed)
        return None
    return FastPath(routes, modules.request_layers(), cors=app.cors_config, compression=app.compression_config)


def _litestar(
    settings: Settings,
    modules: Assembly,
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[None]]],
    extra_routes: Sequence[ControllerRouterHandler],
) -> Litestar:
    """The Litestar application: the kernel's routes, the modules' routes, middleware and dependencies."""
    cors = (
        CORSConfig(allow_origins=settings.http_cors_origins, expose_headers=_exposed_headers(modules))
        if settings.http_cors_origins
        else None
    )
    return Litestar(
        route_handlers=[
            *kernel_routes(
                metrics_enabled=settings.metrics_enabled,
                modules=modules.names,
                openapi_extenders=modules.openapi_extenders(),
            ),
            *modules.routes(),
            *extra_routes,
        ],
        middleware=_middleware(modules),
        dependencies=modules.dependencies(),
        lifespan=lifespan,
        exception_handlers=exception_handlers(),
        request_class=json_request_class(settings.http_max_json_depth),
        request_max_body_size=settings.http_max_body_bytes,
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, exclude_opt_key=SKIP_COMPRESSION),
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


def _exposed_headers(modules: Assembly) -> list[str]:
    """What a browser's script may read on a cross-origin reply: the kernel's headers, and what the modules name."""
    kernel = ["X-Request-Id", "Retry-After"]
    return [*kernel, *(h for h in modules.cors_expose_headers() if h.lower() not in {k.lower() for k in kernel})]


def _framework_routes(app: Litestar) -> Iterator[tuple[str, set[str]]]:
    """Each HTTP route of the app as ``(template, methods)``.

    A raw ASGI route takes every method, and a mount its whole subtree.
    """
    for route in app.routes:
        if isinstance(route, WebSocketRoute):
            continue  # the fast path serves HTTP only
        methods = {str(method) for method in route.methods} or {"GET", "POST"}
        yield route.path_format, methods
        if isinstance(route, ASGIRoute) and route.route_handler.is_mount:
            yield route.path_format.rstrip("/") + "/*", methods  # everything below it


def _middleware(modules: Assembly) -> list[Middleware]:
    """The modules' request layers as one middleware, then their own middleware."""
    layers = modules.request_layers()
    return [*([DefineMiddleware(RequestLayers, layers=layers)] if layers else []), *modules.middleware()]


def runtime_of(app: Litestar) -> Runtime:
    """The application's runtime (settings, database, metrics, health)."""
    runtime: Runtime = app.state.runtime
    return runtime


def wiring_of(app: Litestar) -> Wiring:
    """The services the application's modules published, by class: ``wiring_of(app).get(Webhooks)``."""
    wiring: Wiring = app.state.wiring
    return wiring


def asgi() -> Any:
    """granian's factory: the app for the settings in the environment."""
    try:
        return create_app()
    except ConfigError as exc:
        print(f"apprun: configuration error: {exc}", file=sys.stderr)  # noqa: T201 - nothing else is set up yet
        raise SystemExit(2) from None
