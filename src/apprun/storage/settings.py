"""The storage module's settings section: which backend holds the bytes, and where.

The names are the environment variables the seed architecture gives them
(``STORAGE_BACKEND``, ``STORAGE_DIR``, ``S3_*``); see docs/configuration.md,
"Storage", and docs/storage.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from apprun.kernel.config import KernelSettings

__all__ = ["StorageSettings"]


class StorageSettings(KernelSettings):
    """The storage module's section of the settings."""

    storage_backend: Literal["local", "s3"] = Field(
        "local", description="where object bytes live: local disk, or an S3 store (not built yet)"
    )
    storage_dir: Path | None = Field(None, description="the local backend's root (default: APPRUN_DATA_DIR/storage)")
    storage_max_file_size: int = Field(
        50 * 1024 * 1024, ge=1, description="bytes an object may have when its bucket sets no file_size_limit"
    )
    storage_upload_expiry: int = Field(
        86400, ge=60, description="seconds a resumable (TUS) upload may take before it expires and is removed"
    )
    # The S3 adapter is part 2 of issue 13; the fields are declared so configurations can be written now.
    s3_endpoint: str | None = Field(None, description="the S3 endpoint URL (STORAGE_BACKEND=s3)")
    s3_bucket: str | None = Field(None, description="the one S3 bucket apprun keeps every object in")
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_force_path_style: bool = Field(True, description="path-style URLs (MinIO, SeaweedFS); false for AWS")

    @property
    def storage_root(self) -> Path:
        """The local backend's root: ``STORAGE_DIR``, else ``storage`` in the data dir."""
        return (self.storage_dir or self.data_dir / "storage").expanduser().resolve()
