"""The storage module, as the kernel sees it: buckets and objects, Supabase Storage's API and the seed's paths.

It builds the backend named by ``STORAGE_BACKEND`` (local disk; S3 is issue
13's part 2 and refused at start until then), the `Buckets` and `Storage`
services, and their routes. Its health check is the backend's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.kernel.config import ConfigError, KernelSettings, section
from apprun.kernel.module import DoctorCheck, HealthCheck, Module, Wiring
from apprun.rbac.service import Rbac
from apprun.storage.api import storage_router
from apprun.storage.backends.local import LocalBackend
from apprun.storage.buckets import Buckets
from apprun.storage.checks import doctor_check
from apprun.storage.deps import storage_dependencies
from apprun.storage.render import Renditions
from apprun.storage.seed_api import seed_routes
from apprun.storage.service import Storage
from apprun.storage.settings import StorageSettings
from apprun.storage.signed_api import render_routes, signed_routes
from apprun.storage.signing import SignedUrls, Signer
from apprun.storage.upload_body import FORM_OVERHEAD

if TYPE_CHECKING:
    from litestar.di import Provide
    from litestar.types import ControllerRouterHandler

    from apprun.kernel.runtime import Runtime

__all__ = ["StorageModule"]


class StorageModule(Module):
    name = "storage"
    # Rbac decides every request on ``bucket:<name>``; events: uploads and deletions write their events to
    # the events outbox, which only the events module publishes and prunes. Data is below storage in the
    # import layers (collections' file fields, part 2) but not yet required.
    requires = ("rbac", "events")
    settings = StorageSettings
    messages = "storage"
    tables = "apprun.storage.tables"
    migrations = "apprun.storage.migrations"

    def __init__(self, runtime: Runtime, wiring: Wiring) -> None:
        s = section(runtime.settings, StorageSettings)
        if s.storage_backend == "s3":
            raise ConfigError(
                "STORAGE_BACKEND=s3 is not built yet (issue 13, part 2): use STORAGE_BACKEND=local (the default)"
            )
        self.backend = LocalBackend(s.storage_root)
        self.max_file_size = s.storage_max_file_size
        rbac = wiring.get(Rbac)
        self.buckets = Buckets(runtime.db, rbac, max_file_size=s.storage_max_file_size)
        self.storage = Storage(runtime.db, rbac, self.backend, self.buckets)
        wiring.provide(self.storage)
        signer = Signer(runtime.settings.jwt_secret_value())
        self.signed = SignedUrls(self.storage, signer, Renditions(self.backend))

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [storage_router(*signed_routes(), *render_routes()), *seed_routes()]

    @override
    def body_limits(self) -> Mapping[str, int | None]:
        # Uploads stream past HTTP_MAX_BODY_BYTES: the kernel lets a declared length through up to the
        # largest object and a form's other fields; the upload routes count the bytes themselves.
        largest = self.max_file_size + FORM_OVERHEAD
        return {"/storage/v1/object/": largest, "/api/v1/storage/upload": largest}

    @override
    def cors_expose_headers(self) -> Sequence[str]:
        # What a browser's script reads of a download: its version, the range served, the file name.
        return ["ETag", "Content-Range", "Accept-Ranges", "Content-Disposition"]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return storage_dependencies(self.storage, self.signed)

    @override
    def health_checks(self) -> Mapping[str, HealthCheck]:
        # Required: without its backend the module cannot answer a single object request.
        return {"storage": (self.backend.check, True)}

    @classmethod
    @override
    def doctor_checks(cls, settings: KernelSettings) -> Sequence[DoctorCheck]:
        s = section(settings, StorageSettings)
        # The S3 store's check arrives with its adapter (part 2); until then s3 is refused at start.
        return [functools.partial(doctor_check, s.storage_root)] if s.storage_backend == "local" else []
