"""The storage module's handler dependencies: ``storage: StorageDep`` is the `Storage` service.

Its handlers take this one service (which holds `Buckets`): one service after
``ctx`` resolves without a task group (see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.storage.service import Storage

__all__ = ["StorageDep", "storage_dependencies"]

StorageDep = NamedDependency[Storage]


def storage_dependencies(storage: Storage) -> dict[str, Provide]:
    """What `StorageModule.dependencies` returns: the service under its handlers' parameter name."""
    return {"storage": provide_service(storage)}
