"""The storage module's settings section: which backend holds the bytes, and where.

The names are the environment variables the seed architecture gives them
(``STORAGE_BACKEND``, ``STORAGE_DIR``, ``S3_*``); see docs/configuration.md,
"Storage", and docs/storage.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr

from apprun.kernel.config import ConfigError, KernelSettings

__all__ = ["StorageSettings"]


class StorageSettings(KernelSettings):
    """The storage module's section of the settings."""

    storage_backend: Literal["local", "s3"] = Field(
        "local", description="where object bytes live: local disk, or one bucket of an S3 store"
    )
    storage_dir: Path | None = Field(None, description="the local backend's root (default: APPRUN_DATA_DIR/storage)")
    storage_max_file_size: int = Field(
        50 * 1024 * 1024, ge=1, description="bytes an object may have when its bucket sets no file_size_limit"
    )
    storage_tenant_quota_bytes: int = Field(
        0, ge=0, description="bytes a tenant's objects may weigh together (0: no quota)"
    )
    storage_sweep_age_seconds: float = Field(
        3600.0, gt=0, description="staged bytes untouched this long are an upload a crash cut off: removed"
    )
    storage_sweep_interval_seconds: float = Field(
        600.0, ge=0, description="how often each worker sweeps staged bytes (0: never; `apprun storage sweep`)"
    )
    storage_upload_expiry: int = Field(
        86400, ge=60, description="seconds a resumable (TUS) upload may take before it expires and is removed"
    )
    s3_endpoint: str | None = Field(None, description="the S3 endpoint URL (STORAGE_BACKEND=s3; unset: AWS)")
    s3_bucket: str | None = Field(None, description="the one S3 bucket apprun keeps every object in")
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_force_path_style: bool = Field(True, description="path-style URLs (MinIO, SeaweedFS); false for AWS")

    @property
    def storage_root(self) -> Path:
        """The local backend's root: ``STORAGE_DIR``, else ``storage`` in the data dir."""
        return (self.storage_dir or self.data_dir / "storage").expanduser().resolve()

    def s3_arguments(self) -> dict[str, Any]:
        """`S3Backend.connect`'s arguments; a `ConfigError` naming every missing one, or a file size S3 cannot copy."""
        # Imported here: the settings section is read by the CLI and doctor without loading obstore.
        from apprun.storage.backends.s3 import MAX_OBJECT_SIZE

        missing = [
            name
            for name, value in (
                ("S3_BUCKET", self.s3_bucket),
                ("S3_ACCESS_KEY", self.s3_access_key),
                ("S3_SECRET_KEY", self.s3_secret_key and self.s3_secret_key.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"STORAGE_BACKEND=s3 needs {', '.join(missing)} (and S3_ENDPOINT unless the store is AWS)"
            )
        if self.storage_max_file_size > MAX_OBJECT_SIZE:
            raise ConfigError(
                f"STORAGE_MAX_FILE_SIZE={self.storage_max_file_size} is past what the S3 backend can publish "
                f"(S3 copies at most {MAX_OBJECT_SIZE} bytes, 5 GiB, in one request): lower it"
            )
        assert self.s3_secret_key is not None  # noqa: S101 - checked just above
        return {
            "endpoint": self.s3_endpoint or None,
            "bucket": self.s3_bucket,
            "access_key": self.s3_access_key,
            "secret_key": self.s3_secret_key.get_secret_value(),
            "region": self.s3_region,
            "path_style": self.s3_force_path_style,
        }
