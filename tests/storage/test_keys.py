"""Object keys and bucket names: the one function every key passes, and the disk it cannot leave."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apprun.kernel.errors import BadRequest
from apprun.storage.backends.local import LocalBackend
from apprun.storage.backends.port import BackendError, Location
from apprun.storage.keys import bucket_name, folder_prefix, object_key

pytestmark = pytest.mark.checklist(20)

REFUSED = [
    "", "..", ".", "../x", "a/..", "a/../b", "a/./b", "./a", "/a", "/etc/passwd", "a//b", "a/", "a\\b",
    "..\\..\\windows", "C:\\Windows\\win.ini", "\\\\server\\share", "a\x00b", "a\nb", "a\rb", "a\x1bb", "a\x7fb",
    "k" * 1025, "é" * 513, "x" * 256 + "/y",
]  # fmt: skip
ACCEPTED = [
    "a",
    "a.txt",
    "folder/sub/file.png",
    "..a",
    "a..",
    "a..b/c",
    "日本語/ファイル.txt",
    "k" * 255 + "/" + "j" * 255,
]


@pytest.mark.parametrize("key", REFUSED, ids=repr)
def test_a_key_that_could_name_something_else_is_refused(key: str) -> None:
    with pytest.raises(BadRequest) as refused:
        object_key(key)
    assert refused.value.code == "storage.invalid_key"
    # The key itself is never echoed back (it may hold control characters).
    assert key not in repr(refused.value.details) or key == ""


@pytest.mark.parametrize("key", ACCEPTED)
def test_ordinary_keys_pass(key: str) -> None:
    assert object_key(key) == key


def test_keys_are_compared_in_one_unicode_form() -> None:
    assert object_key("cafe\u0301.txt") == object_key("caf\u00e9.txt") == "caf\u00e9.txt"


@pytest.mark.parametrize("name", ["", "A", "-a", "a/b", "..", "a..b", "public", "list", "x" * 64, "a b"])
def test_bad_bucket_names(name: str) -> None:
    with pytest.raises(BadRequest):
        bucket_name(name)


def test_folder_prefixes() -> None:
    assert (folder_prefix(""), folder_prefix("/"), folder_prefix("a"), folder_prefix("a/b/")) == ("", "", "a/", "a/b/")
    with pytest.raises(BadRequest):
        folder_prefix("a/../b")


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_local_backend_never_leaves_its_root(tmp_path: Path) -> None:
    """Even a location that skipped `object_key` (a bug elsewhere) cannot write outside the root."""
    backend = LocalBackend(tmp_path / "root")
    for scope, bucket, key in [
        ("t", "b", "../../../escape"),
        ("t", "b", "../other-bucket/x"),
        ("..", "b", "x"),
        ("t", "..", "other-tenant/b/x"),
        ("t", "b", "/abs"),
        ("t/../u", "b", "x"),
        ("t", "b", ""),
    ]:
        with pytest.raises(BackendError):
            await backend.put(Location(scope, bucket, key), _chunks(b"x"))
    with pytest.raises(BackendError):
        await backend.put(Location(".staging", "b", "x"), _chunks(b"x"))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_staged_bytes_are_invisible_until_published(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    where = Location("t", "b", "dir/file.bin")
    staged = await backend.put(where, _chunks(b"ab", b"cd"))
    assert (staged.size, staged.etag) == (4, "e2fc714c4727ee9395f324cd2e7f331f")
    assert await backend.head(where) is None
    await backend.publish(staged)
    assert b"".join([c async for c in backend.get(where)]) == b"abcd"
    assert b"".join([c async for c in backend.get(where, 1, 2)]) == b"bc"
    await backend.delete(where)
    assert await backend.head(where) is None
    assert not (tmp_path / "t" / "b" / "dir").exists()  # emptied folders go with their last object


async def test_a_failed_upload_leaves_nothing(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await backend.put(Location("t", "b", "k"), broken())
    assert list((tmp_path / ".staging").iterdir()) == []


def test_s3_without_its_settings_is_refused_at_start_naming_them(make_settings: Any) -> None:
    from apprun.app import create_app
    from apprun.kernel.config import ConfigError

    with pytest.raises(ConfigError, match="STORAGE_BACKEND=s3 needs S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY"):
        create_app(make_settings(storage_backend="s3"), configure_logs=False)


async def test_the_doctor_checks_the_storage_dir(tmp_path: Path) -> None:
    from apprun.storage.checks import doctor_check

    assert (await doctor_check(tmp_path / "storage")).ok
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    result = await doctor_check(blocked / "storage")
    assert (result.ok, result.fix) == (False, "make STORAGE_DIR writable")
