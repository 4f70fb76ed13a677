"""Nothing orphaned: an upload cut off by kill -9 leaves no row, and its staged bytes go with the next sweep.

On SQLite + local disk and on PostgreSQL + SeaweedFS (the ``settings``
fixture of this directory picks the backend by database).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from apprun.kernel.db import create_database
from apprun.storage.backends.local import LocalBackend
from apprun.storage.backends.port import Location, StorageBackend
from apprun.storage.checks import s3_backend
from tests.storage.conftest import s3_admin_for, stored_keys
from tests.support.accounts import PASSWORD
from tests.support.live import LiveServer
from tests.support.polling import eventually
from tests.support.test_app import prepare

TENANT = "0f3c2b9e-1111-4222-8333-944455556666"
MIB = 2**20


def _backend(settings: Any) -> StorageBackend:
    return s3_backend(settings) if settings.storage_backend == "s3" else LocalBackend(settings.storage_root)


def _staged(settings: Any) -> list[str]:
    return [key for key in stored_keys(settings) if key.startswith(".staging/")]


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_sweep_takes_staged_bytes_past_the_age_and_nothing_else(settings: Any) -> None:
    backend = _backend(settings)
    kept = await backend.put(Location(TENANT, "b", "kept.txt"), _chunks(b"kept"))
    await backend.publish(kept)
    await backend.put(Location(TENANT, "b", "cut-off.txt"), _chunks(b"staged, never published"))
    assert len(_staged(settings)) == 1
    assert await backend.sweep(3600) == 0  # too young: it could be an upload still waiting for its row
    assert len(_staged(settings)) == 1
    assert await backend.sweep(0) == 1
    assert _staged(settings) == []
    assert stored_keys(settings) == [f"{TENANT}/b/kept.txt"]


async def test_kill_9_mid_upload_leaves_no_row_and_the_sweep_takes_the_bytes(
    settings: Any, database_url: str, tmp_path: Path
) -> None:
    db = await prepare(settings)
    await db.close()
    env = {"DATABASE_URL": database_url, "STORAGE_BACKEND": settings.storage_backend}
    if settings.storage_backend == "s3":
        env |= {
            "S3_ENDPOINT": settings.s3_endpoint, "S3_BUCKET": settings.s3_bucket, "S3_REGION": settings.s3_region,
            "S3_ACCESS_KEY": settings.s3_access_key, "S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        }  # fmt: skip
    else:
        env["STORAGE_DIR"] = str(settings.storage_root)
    server = LiveServer(tmp_path / "server", env)
    server.start(timeout=60)
    sent_enough = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            reply = await http.post("/auth/register", json={"email": "k9@example.com", "password": PASSWORD})
            auth = {"Authorization": "Bearer " + reply.json()["access_token"]}
            assert (await http.post("/storage/v1/bucket", json={"id": "files"}, headers=auth)).status_code == 200

            async def body() -> AsyncIterator[bytes]:
                for _ in range(9):  # past one S3 part: a multipart upload is under way
                    yield b"x" * MIB
                sent_enough.set()
                await asyncio.Event().wait()  # and the rest never comes

            upload = asyncio.create_task(
                http.post("/storage/v1/object/files/big.bin", content=body(), headers={**auth, "Content-Type": "a/b"})
            )
            await asyncio.wait_for(sent_enough.wait(), 30)

            async def under_way() -> bool:
                if settings.storage_backend == "s3":
                    listed = s3_admin_for(settings).list_multipart_uploads(Bucket=settings.s3_bucket)
                    return bool(listed.get("Uploads"))
                return any(p.stat().st_size >= 8 * MIB for p in (settings.storage_root / ".staging").glob("*"))

            await eventually(under_way, "the upload to be under way in the backend")
            assert server.proc is not None
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=30)
            upload.cancel()
    finally:
        server.stop()
    conn_db = create_database(settings)
    await conn_db.open()
    try:
        async with conn_db.read() as conn:
            assert await conn.fetchval("SELECT count(*) FROM apprun_storage_objects") == 0
    finally:
        await conn_db.close()
    assert [k for k in stored_keys(settings) if not k.startswith(".staging/")] == []
    if settings.storage_backend == "local":
        assert len(_staged(settings)) == 1  # the cut-off upload's bytes, named by no row
    # (On S3 the bytes are parts of an unfinished multipart upload, which no listing of keys shows and the
    # store's AbortIncompleteMultipartUpload lifecycle rule expires: docs/storage.md, "On S3".)
    swept = subprocess.run(
        [sys.executable, "-m", "apprun", "storage", "sweep", "--older-than", "0"],
        env={**server.env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert _staged(settings) == []
