"""`S3Backend` against SeaweedFS: the port's promises, checked by listing the bucket itself.

Each test has a bucket of its own on the session's SeaweedFS. What a client
never sees is asserted here: staged keys, what a refused or failed upload
leaves (nothing), and that a live `apprun serve` on S3 exits cleanly.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from apprun.kernel.config import ConfigError
from apprun.storage.backends.port import BackendError, Location
from apprun.storage.backends.s3 import PART_SIZE, S3Backend
from apprun.storage.settings import StorageSettings
from apprun.testing.engines import SeaweedFS
from tests.storage.conftest import s3_admin, s3_bucket, s3_settings
from tests.support.live import LiveServer

TENANT = "0f3c2b9e-1111-4222-8333-944455556666"


def bucket_keys(seaweedfs: SeaweedFS, bucket: str) -> list[str]:
    listed = _admin(seaweedfs).list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


_admin = s3_admin


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    return s3_bucket(seaweedfs)


@pytest.fixture
async def backend(seaweedfs: SeaweedFS, bucket: str) -> AsyncIterator[S3Backend]:
    made = S3Backend.connect(
        endpoint=seaweedfs.endpoint,
        bucket=bucket,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        region=seaweedfs.region,
        path_style=True,
    )
    yield made
    await made.close()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def at(key: str, bucket: str = "files") -> Location:
    return Location(TENANT, bucket, key)


async def read(backend: S3Backend, location: Location, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([c async for c in backend.get(location, start, end)])


async def test_staged_bytes_are_invisible_until_published(
    backend: S3Backend, seaweedfs: SeaweedFS, bucket: str
) -> None:
    staged = await backend.put(at("a/b.txt"), chunks(b"hello ", b"world"))
    assert (staged.size, staged.etag) == (11, hashlib.md5(b"hello world").hexdigest())  # noqa: S324
    assert await backend.head(at("a/b.txt")) is None
    assert bucket_keys(seaweedfs, bucket) == [f".staging/{staged.token}"]
    await backend.publish(staged)
    assert bucket_keys(seaweedfs, bucket) == [f"{TENANT}/files/a/b.txt"]
    assert await read(backend, at("a/b.txt")) == b"hello world"
    head = await backend.head(at("a/b.txt"))
    assert head is not None and head.size == 11


async def test_discard_leaves_nothing_and_is_idempotent(backend: S3Backend, seaweedfs: SeaweedFS, bucket: str) -> None:
    staged = await backend.put(at("x"), chunks(b"abc"))
    await backend.discard(staged)
    await backend.discard(staged)
    assert bucket_keys(seaweedfs, bucket) == []


async def test_a_failing_iterator_leaves_nothing(backend: S3Backend, seaweedfs: SeaweedFS, bucket: str) -> None:
    class Refused(Exception):
        pass

    async def failing(total: int) -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            yield b"z" * 65536
            sent += 65536
        raise Refused

    # Within one part (a single PUT that never starts) and past it (a multipart upload, aborted).
    for total in (65536, PART_SIZE * 2 + 65536):
        with pytest.raises(Refused):
            await backend.put(at("big.bin"), failing(total))
    assert bucket_keys(seaweedfs, bucket) == []
    assert _admin(seaweedfs).list_multipart_uploads(Bucket=bucket).get("Uploads") in (None, [])


async def test_a_multipart_upload_counts_size_and_md5(backend: S3Backend) -> None:
    part = bytes(range(256)) * 4096  # 1 MiB
    count = PART_SIZE // len(part) * 2 + 3
    staged = await backend.put(at("big.bin"), chunks(*[part] * count))
    digest = hashlib.md5(part * count).hexdigest()  # noqa: S324
    assert (staged.size, staged.etag) == (len(part) * count, digest)
    await backend.publish(staged)
    assert hashlib.md5(await read(backend, at("big.bin"))).hexdigest() == digest  # noqa: S324


async def test_ranges(backend: S3Backend) -> None:
    await backend.publish(await backend.put(at("r.txt"), chunks(b"0123456789")))
    assert await read(backend, at("r.txt"), 2, 5) == b"2345"
    assert await read(backend, at("r.txt"), 7) == b"789"
    assert await read(backend, at("r.txt"), 0, 0) == b"0"
    assert await read(backend, at("r.txt"), 9, 9) == b"9"
    with pytest.raises(FileNotFoundError):
        await read(backend, at("missing.txt"))


async def test_copy_replace_and_delete(backend: S3Backend, seaweedfs: SeaweedFS, bucket: str) -> None:
    await backend.publish(await backend.put(at("src.txt"), chunks(b"source")))
    copied = await backend.copy(at("src.txt"), at("dst.txt"))
    assert (copied.size, copied.etag) == (6, hashlib.md5(b"source").hexdigest())  # noqa: S324
    await backend.publish(copied)
    await backend.publish(await backend.put(at("src.txt"), chunks(b"replaced")))
    assert (await read(backend, at("src.txt")), await read(backend, at("dst.txt"))) == (b"replaced", b"source")
    with pytest.raises(FileNotFoundError):
        await backend.copy(at("missing.txt"), at("other.txt"))
    await backend.delete(at("src.txt"))
    await backend.delete(at("src.txt"))  # missing: not an error
    assert bucket_keys(seaweedfs, bucket) == [f"{TENANT}/files/dst.txt"]


async def test_keys_stay_under_their_scope(backend: S3Backend) -> None:
    for bad in (Location(".staging", "files", "x"), Location(TENANT, "..", "x"), at("a/../b"), at("a//b")):
        with pytest.raises(BackendError):
            await backend.put(bad, chunks(b"x"))


async def test_check_reaches_the_store(backend: S3Backend, seaweedfs: SeaweedFS, bucket: str) -> None:
    assert "is writable" in await backend.check()
    assert bucket_keys(seaweedfs, bucket) == []
    # (SeaweedFS makes a missing bucket on a write by its admin, so a wrong key is what is refused here.)
    refused = S3Backend.connect(
        endpoint=seaweedfs.endpoint, bucket=bucket, access_key=seaweedfs.access_key,
        secret_key="not-the-secret", region=seaweedfs.region, path_style=True,
    )  # fmt: skip
    with pytest.raises(BackendError, match=f"s3://{bucket} at {seaweedfs.endpoint}"):
        await refused.check()
    await refused.close()
    with pytest.raises(BackendError, match="closed"):
        await refused.check()


def test_missing_s3_settings_are_named() -> None:
    settings = StorageSettings(storage_backend="s3", s3_endpoint="http://x", s3_bucket="b", _env_file=None)
    with pytest.raises(ConfigError, match="S3_ACCESS_KEY, S3_SECRET_KEY"):
        settings.s3_arguments()
    too_big = StorageSettings(
        storage_backend="s3", s3_bucket="b", s3_access_key="k", s3_secret_key="s",
        storage_max_file_size=6 * 1024**3, _env_file=None,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="STORAGE_MAX_FILE_SIZE"):
        too_big.s3_arguments()


def test_apprun_serve_on_s3_exits_cleanly_after_uploads(seaweedfs: SeaweedFS, tmp_path: Path) -> None:
    """obstore's runtime threads can abort a process at exit (benchmarks/RESULTS.md): SIGTERM must give 0."""
    bucket = s3_bucket(seaweedfs)
    env = {name.upper(): str(value) for name, value in s3_settings(seaweedfs, bucket).items()}
    env["LOG_LEVEL"] = "warning"
    for run in range(3):
        server = LiveServer(tmp_path / f"run{run}", env)
        server.start(timeout=60)
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                reply = http.post(
                    "/auth/register",
                    json={"email": f"u{secrets.token_hex(4)}@example.com", "password": "correct horse battery staple"},
                )
                assert reply.status_code == 201, reply.text
                auth = {"Authorization": "Bearer " + reply.json()["access_token"]}
                assert http.post("/storage/v1/bucket", json={"id": "files"}, headers=auth).status_code == 200
                for size in (1000, PART_SIZE + 1):
                    reply = http.post(
                        f"/storage/v1/object/files/f{size}.bin", content=b"x" * size, headers={**auth, **_BINARY}
                    )
                    assert reply.status_code == 200, reply.text
                assert http.get("/storage/v1/object/files/f1000.bin", headers=auth).content == b"x" * 1000
                assert http.get("/.well-known/health-check").status_code == 200
        finally:
            code = server.stop()
        assert code == 0, server.output()[-3000:]


_BINARY = {"Content-Type": "application/octet-stream"}


async def test_the_doctor_reaches_the_store(seaweedfs: SeaweedFS, bucket: str) -> None:
    from apprun.storage.checks import s3_doctor_check

    ok = await s3_doctor_check(StorageSettings(_env_file=None, **s3_settings(seaweedfs, bucket)))
    assert (ok.name, ok.ok) == ("storage s3", True), ok
    wrong = await s3_doctor_check(
        StorageSettings(_env_file=None, **{**s3_settings(seaweedfs, bucket), "s3_secret_key": "wrong"})
    )
    assert (wrong.ok, wrong.required) == (False, True)
    unset = await s3_doctor_check(StorageSettings(storage_backend="s3", _env_file=None))
    assert not unset.ok and "S3_BUCKET" in unset.detail
