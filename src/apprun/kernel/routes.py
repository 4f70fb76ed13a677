"""The kernel's own endpoints: health, liveness, metrics, system info, OpenAPI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler

from apprun import __version__
from apprun.kernel.db import revision
from apprun.kernel.metrics import CONTENT_TYPE_LATEST
from apprun.kernel.module import OpenApiExtender
from apprun.kernel.runtime import Runtime

__all__ = ["kernel_routes"]


def _runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


@get(
    "/.well-known/health-check",
    tags=["system"],
    summary="Health of apprun and each configured dependency",
    description="UP when every dependency answers, DEGRADED when an optional one does not, "
    "DOWN (503) when a required one does not.",
)
async def health_check(state: State) -> Response[dict[str, Any]]:
    report = await _runtime(state).health.run()
    return Response(report.to_dict(), status_code=report.http_status, headers={"Cache-Control": "no-store"})


@get("/.well-known/alive", tags=["system"], summary="Liveness: 200 while the process runs")
async def alive() -> dict[str, str]:
    return {"status": "UP"}


@get("/metrics", tags=["system"], summary="Prometheus metrics", include_in_schema=True)
async def metrics(state: State) -> Response[bytes]:
    # Litestar adds the charset itself.
    return Response(_runtime(state).metrics.render(), media_type=CONTENT_TYPE_LATEST.split("; charset")[0])


def _system_info(modules: Sequence[str]) -> HTTPRouteHandler:
    enabled = list(modules)

    @get("/api/v1/system/info", tags=["system"], summary="Version, mode, schema revision and enabled modules")
    async def system_info(state: State) -> dict[str, Any]:
        runtime = _runtime(state)
        async with runtime.db.read() as conn:
            rows = await conn.fetch("SELECT key, value FROM apprun_meta WHERE key IN ('installed_at', 'instance_id')")
            stored = [row["version_num"] for row in await conn.fetch("SELECT version_num FROM apprun_schema_version")]
        facts = {row["key"]: row["value"] for row in rows}
        # One revision per branch (the kernel's and each module's), as `apprun migrate --status` shows them.
        schema = revision.state_for(stored, runtime.migrations)
        if schema is None:  # not the schema `apprun serve` checked: Alembic reads it (imported only then)
            from apprun.kernel.db.migrate import state_of

            schema = state_of(stored, runtime.migrations)
        return {
            "name": "apprun",
            "version": __version__,
            "env": runtime.settings.apprun_env,
            "database": {"dialect": runtime.db.dialect, "schema_revision": schema.current_text},
            "installed_at": facts.get("installed_at"),
            "instance_id": facts.get("instance_id"),
            "modules": enabled,
        }

    return system_info


def _openapi_json(extenders: Sequence[OpenApiExtender]) -> HTTPRouteHandler:
    extend_all = tuple(extenders)

    @get("/openapi.json", tags=["system"], summary="The OpenAPI document", include_in_schema=False)
    async def openapi_json(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """The application's document, extended by modules whose endpoints are data (collections)."""
        document = request.app.openapi_schema.to_schema()
        for extend in extend_all:
            document = await extend(document)
        return Response(document, media_type="application/vnd.oai.openapi+json")

    return openapi_json


def kernel_routes(
    *,
    metrics_enabled: bool = True,
    modules: Sequence[str] = (),
    openapi_extenders: Sequence[OpenApiExtender] = (),
) -> list[Any]:
    """The kernel's handlers (``/metrics`` only when metrics are enabled).

    ``modules`` are the enabled modules' names (system info lists them);
    ``openapi_extenders`` rewrite ``/openapi.json`` in order.
    """
    routes: list[Any] = [health_check, alive, _system_info(modules), _openapi_json(openapi_extenders)]
    if metrics_enabled:
        routes.append(metrics)
    return routes
