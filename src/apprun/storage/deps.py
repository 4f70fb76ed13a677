"""The storage module's handler dependencies: ``storage: StorageDep`` is the `Storage` service.

Its handlers take this one service (which holds `Buckets`): one service after
``ctx`` resolves without a task group (see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.storage.service import Storage
from apprun.storage.signing import SignedUrls

__all__ = ["SignedDep", "StorageDep", "storage_dependencies"]

StorageDep = NamedDependency[Storage]
#: The signed links' and rendered images' service (which holds `Storage`).
SignedDep = NamedDependency[SignedUrls]


def storage_dependencies(storage: Storage, signed: SignedUrls) -> dict[str, Provide]:
    """What `StorageModule.dependencies` returns: the services under their handlers' parameter names."""
    return {"storage": provide_service(storage), "signed": provide_service(signed)}
