"""The data module, as the kernel sees it: collections, the data API, and its OpenAPI paths.

It fills the events module's `EventVisibility` port (in `wire`): a record's
event reaches a reader only if the data API would show that reader the row.
The application's hooks (``create_app(hooks=...)``) arrive through the wiring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.data.api import DataFastRoute, data_routes
from apprun.data.collections_api import CollectionsController
from apprun.data.deps import data_dependencies
from apprun.data.hooks import Hooks
from apprun.data.openapi import CollectionsOpenApi
from apprun.data.schema.catalog import Catalog
from apprun.data.service import DataService
from apprun.data.settings import DataSettings
from apprun.data.visibility import RecordVisibility
from apprun.events.service import Events
from apprun.kernel.config import section
from apprun.kernel.module import Module, OpenApiExtender, Wiring
from apprun.rbac.service import Rbac

if TYPE_CHECKING:
    import typer
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.fastpath import FastRoute
    from apprun.kernel.runtime import Runtime

__all__ = ["DataModule"]


class DataModule(Module):
    name = "data"
    # Events: every write puts its record event in the events outbox, which only the events
    # module publishes and prunes.
    requires = ("rbac", "events")
    settings = DataSettings
    messages = "data"
    tables = "apprun.data.tables"
    migrations = "apprun.data.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        s = section(runtime.settings, DataSettings)
        rbac = wiring.get(Rbac)
        self.catalog = Catalog(s, runtime.db)
        self.service = DataService(s, runtime.db, self.catalog, rbac, wiring.find(Hooks))
        self.openapi = CollectionsOpenApi(self.catalog)
        settings = runtime.settings
        self.fast = DataFastRoute(
            self.service, max_body_bytes=settings.http_max_body_bytes, max_json_depth=settings.http_max_json_depth
        )
        #: Who may see a record's event (the events module's `EventVisibility` port).
        self.visibility = RecordVisibility(self.catalog, rbac)
        wiring.provide(self.catalog)
        wiring.provide(self.service)

    @override
    def wire(self, wiring: Wiring) -> None:
        wiring.get(Events).use(visibility=self.visibility)

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [*data_routes(), CollectionsController]

    @override
    def fast_routes(self) -> Sequence[FastRoute]:
        return [self.fast]

    @override
    def cors_expose_headers(self) -> Sequence[str]:
        # PostgREST's reply headers a browser client reads: the count (supabase-js's `count`), a created
        # row's address, the preferences honoured.
        return ["Content-Range", "Location", "Preference-Applied"]

    @override
    def openapi_extenders(self) -> Sequence[OpenApiExtender]:
        return [self.openapi]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return data_dependencies(self.service, self.catalog)

    @override
    async def start(self, runtime: Runtime) -> None:
        await self.catalog.ensure_data_role()

    @override
    async def stop(self, runtime: Runtime) -> None:
        await self.catalog.close()

    @classmethod
    @override
    def cli(cls) -> Mapping[str, typer.Typer]:
        from apprun.data.cli import collections_app

        return {"collections": collections_app}
