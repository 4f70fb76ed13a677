"""``apprun doctor``'s storage check: the local backend's directory can be created and written."""

from __future__ import annotations

from pathlib import Path

from apprun.kernel.doctor import DoctorResult
from apprun.storage.backends.local import LocalBackend

__all__ = ["doctor_check"]


async def doctor_check(root: Path) -> DoctorResult:
    name = "storage dir"
    try:
        detail = await LocalBackend(root).check()
    except OSError as exc:
        return DoctorResult(name, False, f"{root}: {exc.strerror}", "make STORAGE_DIR writable", required=True)
    return DoctorResult(name, True, detail, "", required=True)
