"""Builds the data module (catalog, service, HTTP) for app.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from apprun.data.api import data_routes
from apprun.data.catalog import Catalog
from apprun.data.collections_api import CollectionsController
from apprun.data.hooks import Hooks
from apprun.data.openapi import CollectionsOpenApi
from apprun.data.service import DataService
from apprun.data.visibility import RecordVisibility
from apprun.kernel.runtime import Runtime
from apprun.rbac.service import Rbac

__all__ = ["DataModule", "build_data"]


@dataclass(eq=False)
class DataModule:
    catalog: Catalog
    service: DataService
    openapi: CollectionsOpenApi
    #: Who may see a record's event (the events module's `EventVisibility` port; app.py wires it).
    visibility: RecordVisibility

    def routes(self) -> list[Any]:
        return [*data_routes(), CollectionsController]

    def state(self) -> dict[str, Any]:
        return {"data": self.service, "catalog": self.catalog}

    async def start(self, runtime: Runtime) -> None:
        await self.catalog.ensure_data_role()

    async def stop(self, runtime: Runtime) -> None:
        await self.catalog.close()


def build_data(runtime: Runtime, rbac: Rbac, hooks: Hooks | None = None) -> DataModule:
    catalog = Catalog(runtime.settings, runtime.db)
    service = DataService(runtime.settings, runtime.db, catalog, rbac, hooks)
    return DataModule(catalog, service, CollectionsOpenApi(catalog), RecordVisibility(catalog, rbac))
