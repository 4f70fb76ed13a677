"""What the storage tests share: people in one tenant with each built-in role, and an outsider; and both backends.

Every storage test that takes ``settings`` runs twice, as everywhere, but
the PostgreSQL run keeps its bytes in S3 (the session's SeaweedFS, a bucket
of its own) and the SQLite run on local disk: both backends and both
databases are covered without running the four pairs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from apprun.kernel.db import Database
from apprun.modules import Settings
from apprun.testing.engines import SeaweedFS
from tests.support.accounts import bearer, join, register


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str, request: pytest.FixtureRequest) -> Settings:
    if database_url.startswith("sqlite"):
        return make_settings(database_url=database_url)
    seaweedfs: SeaweedFS = request.getfixturevalue("seaweedfs")
    return make_settings(database_url=database_url, **s3_settings(seaweedfs, s3_bucket(seaweedfs)))


def s3_settings(seaweedfs: SeaweedFS, bucket: str) -> dict[str, Any]:
    return {
        "storage_backend": "s3",
        "s3_endpoint": seaweedfs.endpoint,
        "s3_bucket": bucket,
        "s3_access_key": seaweedfs.access_key,
        "s3_secret_key": seaweedfs.secret_key,
        "s3_region": seaweedfs.region,
    }


def s3_admin(seaweedfs: SeaweedFS) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=seaweedfs.endpoint,
        aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key,
        region_name=seaweedfs.region,
    )


def s3_bucket(seaweedfs: SeaweedFS) -> str:
    """A fresh bucket on the endpoint (bucket names are global to it)."""
    name = f"t-{secrets.token_hex(6)}"
    s3_admin(seaweedfs).create_bucket(Bucket=name)
    return name


def stored_keys(settings: Any) -> list[str]:
    """Every key the backend holds, staged ones included (``.staging/...``), as ``<scope>/<bucket>/<key>``."""
    if settings.storage_backend == "s3":
        listed = s3_admin_for(settings).list_objects_v2(Bucket=settings.s3_bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))
    root = settings.storage_root
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def read_stored(settings: Any, key: str) -> bytes:
    """The bytes the backend holds under ``key`` (as `stored_keys` names it)."""
    if settings.storage_backend == "s3":
        body: bytes = s3_admin_for(settings).get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
        return body
    data: bytes = (settings.storage_root / key).read_bytes()
    return data


def write_stored(settings: Any, key: str, data: bytes) -> None:
    """Put ``data`` under ``key`` behind apprun's back (to tell a cached copy from a fresh one)."""
    if settings.storage_backend == "s3":
        s3_admin_for(settings).put_object(Bucket=settings.s3_bucket, Key=key, Body=data)
    else:
        (settings.storage_root / key).write_bytes(data)


def s3_admin_for(settings: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
    )


async def switch(client: Any, tokens: dict[str, Any], tenant_id: str) -> dict[str, Any]:
    """``tokens``' session moved to ``tenant_id`` (a tenant they belong to)."""
    reply = await client.post("/auth/tenant", json={"tenant_id": tenant_id}, headers=bearer(tokens))
    assert reply.status_code == 200, reply.text
    switched: dict[str, Any] = reply.json()
    return switched


async def people(client: Any, db: Database) -> dict[str, dict[str, Any]]:
    """An owner, an admin, a member and a viewer of the owner's tenant, and an outsider with a tenant of their own."""
    owner = await register(client)
    crowd = {"owner": owner, "outsider": await register(client)}
    for role in ("admin", "member", "viewer"):
        person = await register(client)
        await join(client, db, owner, person, role)
        crowd[role] = await switch(client, person, owner["tenant_id"])
    return crowd
