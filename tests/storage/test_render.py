"""Rendered images over HTTP: storage3's transform options, the derivative cache, and what is refused."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlparse

from PIL import Image
from storage3 import AsyncStorageClient

from apprun.kernel.db import Database
from tests.storage.conftest import people, read_stored, stored_keys, write_stored
from tests.support.accounts import bearer, register
from tests.support.scenarios import Case, run_all

V1 = "/storage/v1"
PNG = {"Content-Type": "image/png"}


def _png(width: int, height: int, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def _image(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def _storage(client: Any, tokens: dict[str, Any]) -> AsyncStorageClient:
    return AsyncStorageClient(f"{client.base_url}/storage/v1/", bearer(tokens), http_client=client)


async def test_transforms_through_the_client(client: Any) -> None:
    owner = await register(client)
    storage = _storage(client, owner)
    await storage.create_bucket("site", options={"public": True})
    await storage.create_bucket("photos")
    await storage.from_("site").upload("logo.png", _png(400, 300), {"content-type": "image/png"})
    await storage.from_("photos").upload("me.png", _png(400, 300), {"content-type": "image/png"})

    url = await storage.from_("site").get_public_url("logo.png", {"transform": {"width": 100, "height": 100}})
    assert urlparse(url).path == "/storage/v1/render/image/public/site/logo.png"
    reply = await client.get(url, headers={"X-Tenant-Id": owner["tenant_id"]})
    assert (reply.status_code, reply.headers["content-type"]) == (200, "image/png"), reply.text
    assert _image(reply.content) == ("PNG", (100, 100))
    assert reply.headers["cache-control"] == "max-age=3600"

    photos = storage.from_("photos")
    thumb = await photos.download("me.png", {"transform": {"width": 200, "resize": "contain", "format": "avif"}})
    assert _image(thumb) == ("AVIF", (200, 150))

    signed = await photos.create_signed_url("me.png", 60, {"transform": {"width": 40, "height": 30, "resize": "fill"}})
    assert urlparse(signed["signedURL"]).path == "/storage/v1/render/image/sign/photos/me.png"
    # The transform is the signed one: a width added to the link changes nothing.
    for link in (signed["signedURL"], signed["signedURL"] + "&width=2000&height=2000"):
        reply = await client.get(link)
        assert reply.status_code == 200, reply.text
        assert _image(reply.content) == ("PNG", (40, 30))


async def test_a_render_is_cached_by_the_objects_version(client: Any, settings: Any) -> None:
    owner = await register(client)
    headers = bearer(owner)
    await client.post(f"{V1}/bucket", json={"id": "photos"}, headers=headers)
    await client.post(f"{V1}/object/photos/a/pic.png", content=_png(400, 300), headers={**headers, **PNG})
    url = f"{V1}/render/image/authenticated/photos/a/pic.png?width=100"
    first = await client.get(url, headers=headers)
    assert _image(first.content) == ("PNG", (100, 75))
    etag = first.headers["etag"]

    area = f"{owner['tenant_id']}/.render/photos/"
    cached = [key for key in stored_keys(settings) if key.startswith(area)]
    assert [tuple(key.removeprefix(area).split("/")[1:]) for key in cached] == [
        ("w100-h0-cover-q80-png", "a", "pic.png")
    ]
    assert read_stored(settings, cached[0]) == first.content
    # A second request is a plain download of the derivative: ETag, 304, ranges.
    again = await client.get(url, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    part = await client.get(url, headers={**headers, "Range": "bytes=0-7"})
    assert (part.status_code, part.content) == (206, first.content[:8])
    write_stored(settings, cached[0], b"from the cache")  # what is served now comes from the cache, not a new render
    assert (await client.get(url, headers=headers)).content == b"from the cache"

    # A new version of the object (a new ETag) renders anew.
    await client.post(
        f"{V1}/object/photos/a/pic.png", content=_png(200, 400), headers={**headers, **PNG, "x-upsert": "true"}
    )
    fresh = await client.get(url, headers=headers)
    assert (_image(fresh.content), fresh.headers["etag"] != etag) == (("PNG", (100, 200)), True)


def _cases() -> list[Case]:
    auth = f"{V1}/render/image/authenticated/photos"
    return [
        Case("anonymous", "GET", f"{auth}/a.png", (("width", "10"),), status=401, code="auth.unauthorized"),
        Case("outsider", "GET", f"{auth}/a.png", (("width", "10"),), actor="outsider", status=404,
             code="storage.bucket_not_found"),
        Case("a private bucket by the public path", "GET", f"{V1}/render/image/public/photos/a.png",
             headers={"X-Tenant-Id": "$tenant"}, status=404, code="storage.bucket_not_found"),
        Case("missing", "GET", f"{auth}/none.png", actor="viewer", status=404, code="storage.object_not_found"),
        Case("a text file", "GET", f"{auth}/notes.txt", (("width", "10"),), actor="viewer", status=400,
             code="storage.not_an_image"),
        Case("a text file typed as an image", "GET", f"{auth}/fake.png", (("width", "10"),), actor="viewer",
             status=400, code="storage.not_an_image"),
        Case("width 0", "GET", f"{auth}/a.png", (("width", "0"),), actor="viewer", status=400,
             code="storage.invalid_transform", json={"statusCode": "400"}),
        Case("height too large", "GET", f"{auth}/a.png", (("height", "2501"),), actor="viewer", status=400,
             code="storage.invalid_transform"),
        Case("an unknown resize", "GET", f"{auth}/a.png", (("resize", "zoom"),), actor="viewer", status=400,
             code="storage.invalid_transform_option"),
        Case("viewer renders", "GET", f"{auth}/a.png", (("width", "10"), ("format", "webp")), actor="viewer",
             response_headers={"Content-Type": "image/webp", "Cache-Control": "private, max-age=3600"}),
        Case("as a file", "GET", f"{auth}/a.png", (("width", "10"), ("download", "")), actor="viewer",
             response_headers={"Content-Disposition": "attachment; filename=\"a.png\"; filename*=UTF-8''a.png"}),
        Case("signing a render of a text file", "POST", f"{V1}/object/sign/photos/notes.txt", actor="viewer",
             body={"expiresIn": 60, "transform": {"width": 10}}, status=400, code="storage.not_an_image"),
        Case("signing a bad transform", "POST", f"{V1}/object/sign/photos/a.png", actor="viewer",
             body={"expiresIn": 60, "transform": {"width": 9000}}, status=400, code="storage.invalid_transform"),
    ]  # fmt: skip


async def test_refusals(client: Any, db: Database) -> None:
    crowd = await people(client, db)
    owner = bearer(crowd["owner"])
    await client.post(f"{V1}/bucket", json={"id": "photos"}, headers=owner)
    for key, content, kind in (
        ("a.png", _png(40, 20), "image/png"),
        ("notes.txt", b"hello", "text/plain"),
        ("fake.png", b"<svg onload=alert(1)>", "image/png"),
    ):
        reply = await client.post(f"{V1}/object/photos/{key}", content=content, headers={**owner, "Content-Type": kind})
        assert reply.status_code == 200, reply.text
    headers = {name: bearer(tokens) for name, tokens in crowd.items()}
    values = {"tenant": crowd["owner"]["tenant_id"]}

    def prepare(case: Case) -> Case:
        filled = case.filled(values)
        return filled.with_credentials(headers[case.actor]) if case.actor else filled

    await run_all(client, _cases(), db, prepare=prepare)
