"""The storage module's handler dependencies: ``storage: StorageDep`` is the `Storage` service.

Its handlers take this one service (which holds `Buckets`): one service after
``ctx`` resolves without a task group (see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.storage.service import Storage
from apprun.storage.uploads import Uploads

__all__ = ["StorageDep", "UploadsDep", "storage_dependencies"]

StorageDep = NamedDependency[Storage]
#: The TUS routes' one service (it holds `Storage`, which commits a finished upload).
UploadsDep = NamedDependency[Uploads]


def storage_dependencies(storage: Storage, uploads: Uploads) -> dict[str, Provide]:
    """What `StorageModule.dependencies` returns: the services under their handlers' parameter names."""
    return {"storage": provide_service(storage), "uploads": provide_service(uploads)}
