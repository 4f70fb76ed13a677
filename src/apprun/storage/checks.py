"""``apprun doctor``'s storage checks: the local backend's directory, or the S3 store, can be written."""

from __future__ import annotations

from pathlib import Path

from apprun.kernel.config import ConfigError
from apprun.kernel.doctor import DoctorResult
from apprun.storage.backends.local import LocalBackend
from apprun.storage.backends.port import BackendError
from apprun.storage.backends.s3 import S3Backend
from apprun.storage.settings import StorageSettings

__all__ = ["doctor_check", "s3_backend", "s3_doctor_check"]


def s3_backend(settings: StorageSettings) -> S3Backend:
    """The S3 backend the settings name, or a `ConfigError` saying which ``S3_*`` setting is missing."""
    return S3Backend.connect(**settings.s3_arguments())


async def s3_doctor_check(settings: StorageSettings) -> DoctorResult:
    name = "storage s3"
    try:
        backend = s3_backend(settings)
    except ConfigError as exc:
        return DoctorResult(name, False, str(exc), "set the S3_* settings (docs/storage.md, Settings)", required=True)
    try:
        detail = await backend.check()
    except BackendError as exc:
        return DoctorResult(
            name, False, str(exc), "check S3_ENDPOINT, S3_BUCKET (it must exist) and the keys", required=True
        )
    finally:
        await backend.close()
    return DoctorResult(name, True, detail, "", required=True)


async def doctor_check(root: Path) -> DoctorResult:
    name = "storage dir"
    try:
        detail = await LocalBackend(root).check()
    except OSError as exc:
        return DoctorResult(name, False, f"{root}: {exc.strerror}", "make STORAGE_DIR writable", required=True)
    return DoctorResult(name, True, detail, "", required=True)
