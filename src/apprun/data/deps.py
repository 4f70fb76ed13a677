"""The data module's handler dependencies: the parameter names its handlers take, and their types.

``data_service: DataServiceDep`` in a handler is the `DataService`,
``catalog: CatalogDep`` the `Catalog` (see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.data.schema.catalog import Catalog
from apprun.data.service import DataService
from apprun.kernel.http import provide_service

__all__ = ["CatalogDep", "DataServiceDep", "data_dependencies"]

DataServiceDep = NamedDependency[DataService]
CatalogDep = NamedDependency[Catalog]


def data_dependencies(service: DataService, catalog: Catalog) -> dict[str, Provide]:
    """What `DataModule.dependencies` returns: each service under its handlers' parameter name."""
    return {"data_service": provide_service(service), "catalog": provide_service(catalog)}
