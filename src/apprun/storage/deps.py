"""The storage module's handler dependencies: ``storage: StorageDep`` is the `Storage` service.

Its handlers take this one service (which holds `Buckets`): one service after
``ctx`` resolves without a task group (see `apprun.kernel.http`).
"""

from __future__ import annotations

from litestar.di import NamedDependency, Provide

from apprun.kernel.http import provide_service
from apprun.storage.service import Storage
from apprun.storage.signing import SignedUrls
from apprun.storage.uploads import Uploads

__all__ = ["SignedDep", "StorageDep", "UploadsDep", "storage_dependencies"]

StorageDep = NamedDependency[Storage]
#: The TUS routes' one service (it holds `Storage`, which commits a finished upload).
UploadsDep = NamedDependency[Uploads]
#: The signed links' and rendered images' service (which holds `Storage`).
SignedDep = NamedDependency[SignedUrls]


def storage_dependencies(storage: Storage, uploads: Uploads, signed: SignedUrls) -> dict[str, Provide]:
    """What `StorageModule.dependencies` returns: the services under their handlers' parameter names."""
    return {"storage": provide_service(storage), "uploads": provide_service(uploads), "signed": provide_service(signed)}
