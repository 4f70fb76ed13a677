"""The storage module, as the kernel sees it: buckets and objects, Supabase Storage's API and the seed's paths.

It builds the backend named by ``STORAGE_BACKEND`` (local disk, or one S3
bucket), the `Buckets` and `Storage` services, and their routes. Its health
check is the backend's; its stop lets go of an S3 store.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from apprun.events.service import Events
from apprun.kernel.config import KernelSettings, section
from apprun.kernel.module import DoctorCheck, HealthCheck, Module, Wiring
from apprun.kernel.runtime import stop_step
from apprun.rbac.service import Rbac
from apprun.storage.api import storage_router
from apprun.storage.backends.instrumented import InstrumentedBackend, StorageMetrics
from apprun.storage.backends.local import LocalBackend
from apprun.storage.backends.s3 import S3Backend
from apprun.storage.buckets import Buckets
from apprun.storage.checks import doctor_check, s3_backend, s3_doctor_check
from apprun.storage.deps import storage_dependencies
from apprun.storage.quota import Quota
from apprun.storage.render import Renditions
from apprun.storage.seed_api import seed_routes
from apprun.storage.service import Storage
from apprun.storage.settings import StorageSettings
from apprun.storage.signed_api import render_routes, signed_routes
from apprun.storage.signing import SignedUrls, Signer
from apprun.storage.sweeper import Sweeper
from apprun.storage.tus_api import RESUMABLE, tus_routes
from apprun.storage.upload_body import FORM_OVERHEAD
from apprun.storage.uploads import Uploads
from apprun.storage.visibility import OBJECT_EVENT_PREFIX, ObjectVisibility

if TYPE_CHECKING:
    import typer
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
        self.inner: LocalBackend | S3Backend = (
            s3_backend(s) if s.storage_backend == "s3" else LocalBackend(s.storage_root)
        )
        self.backend = InstrumentedBackend(self.inner, StorageMetrics(runtime.metrics.registry))
        self.max_file_size = s.storage_max_file_size
        rbac = wiring.get(Rbac)
        self.buckets = Buckets(runtime.db, rbac, max_file_size=s.storage_max_file_size)
        quota = Quota(runtime.db, s.storage_tenant_quota_bytes)
        self.storage = Storage(runtime.db, rbac, self.backend, self.buckets, quota)
        self.sweeper = Sweeper(self.backend, age=s.storage_sweep_age_seconds, interval=s.storage_sweep_interval_seconds)
        wiring.provide(self.storage)
        expiry = dt.timedelta(seconds=s.storage_upload_expiry)
        self.uploads = Uploads(self.storage, s.storage_root, expiry=expiry)
        # Expired uploads linger at most a tenth of their lifetime (and never more than 10 minutes).
        self._sweep_interval = min(s.storage_upload_expiry / 10, 600.0)
        self._tasks: list[asyncio.Task[None]] = []
        wiring.provide(self.sweeper)
        signer = Signer(runtime.settings.jwt_secret_value())
        self.signed = SignedUrls(self.storage, signer, Renditions(self.backend))

    @override
    def wire(self, wiring: Wiring) -> None:
        # Object events reach a reader of the tenant's events only if they may read the bucket.
        wiring.get(Events).decide(OBJECT_EVENT_PREFIX, ObjectVisibility(wiring.get(Rbac)))

    @override
    def routes(self) -> Sequence[ControllerRouterHandler]:
        return [storage_router([*tus_routes(), *signed_routes(), *render_routes()]), *seed_routes()]

    @override
    def body_limits(self) -> Mapping[str, int | None]:
        # Uploads stream past HTTP_MAX_BODY_BYTES: the kernel lets a declared length through up to the
        # largest object and a form's other fields; the upload routes count the bytes themselves.
        largest = self.max_file_size + FORM_OVERHEAD
        # A TUS PATCH is a chunk of one object: never more than the largest object (the upload's remaining
        # length is counted while it streams).
        return {
            "/storage/v1/object/": largest,
            "/api/v1/storage/upload": largest,
            "/storage/v1" + RESUMABLE: self.max_file_size,
        }

    @override
    def cors_expose_headers(self) -> Sequence[str]:
        # What a browser's script reads of a download: its version, the range served, the file name.
        # TUS clients in a browser read the upload's progress and place from these (tus-js-client, Uppy).
        tus = ["Upload-Offset", "Upload-Length", "Location", "Tus-Resumable", "Tus-Version", "Tus-Extension"]
        tus += ["Tus-Max-Size", "Upload-Expires", "Upload-Metadata"]
        return ["ETag", "Content-Range", "Accept-Ranges", "Content-Disposition", *tus]

    @override
    def dependencies(self) -> Mapping[str, Provide]:
        return storage_dependencies(self.storage, self.uploads, self.signed)

    @override
    def health_checks(self) -> Mapping[str, HealthCheck]:
        # Required: without its backend the module cannot answer a single object request.
        return {"storage": (self.backend.check, True)}

    @override
    async def start(self, runtime: Runtime) -> None:
        # Two cleaners: staged bytes of uploads a crash cut off, and resumable uploads past their expiry.
        self.sweeper.start()
        self._tasks.append(
            asyncio.create_task(self.uploads.run_sweeper(self._sweep_interval), name="apprun-storage-uploads-sweep")
        )

    @override
    async def stop(self, runtime: Runtime) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await stop_step(self.sweeper.close(), "storage.sweeper")
        if isinstance(self.inner, S3Backend):
            await self.inner.close()

    @classmethod
    @override
    def cli(cls) -> Mapping[str, typer.Typer]:
        from apprun.storage.cli import storage_app

        return {"storage": storage_app}

    @classmethod
    @override
    def doctor_checks(cls, settings: KernelSettings) -> Sequence[DoctorCheck]:
        s = section(settings, StorageSettings)
        if s.storage_backend == "s3":
            return [functools.partial(s3_doctor_check, s)]
        return [functools.partial(doctor_check, s.storage_root)]
