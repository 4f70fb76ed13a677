"""S3 clients for the storage module (issue 13): obstore against aioboto3, on one SeaweedFS.

    .venv/bin/python -m benchmarks.s3_clients [--quick] [--json PATH]

Starts its own SeaweedFS (`apprun.testing.engines.SeaweedFS`), then runs each
library in a fresh Python process of its own, so that one library's imports
and buffers never count against the other, and measures:

- import time and the RSS an import costs, and the RSS once a client has made
  its first request (median of 3 fresh processes for the import);
- 10 KiB objects: put, then get, req/s with 16 requests in flight;
- 100 MiB objects streamed both ways (generated on the fly as 1 MiB chunks,
  read back chunk by chunk), MB/s; median of 3 for these and the above;
- the process's RSS growth (peak during, minus before) while a 1 GiB object,
  generated on the fly, is uploaded as a stream (the goal is < 50 MB);
- what the storage module needs of a library (`CHECKS`), each tried for real
  against the server: a check that raises or returns False is a "no".

Both libraries upload a stream of unknown size as an S3 multipart upload with
8 MiB parts and at most 4 parts in flight (obstore: ``chunk_size`` and
``max_concurrency``; aioboto3 has no streaming put, so `AioBoto3Client` does
the multipart upload itself, as the storage module would have to).
Prints a markdown table and the checklist; writes every number as JSON with
``--json``. Nothing is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import psutil

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("obstore", "aioboto3")
#: Checked for capabilities only: obstore with a hand-signed multipart client beside it.
VARIANTS = ("obstore+sigv4",)
KIB, MIB = 1024, 1024 * 1024
PART_SIZE = 8 * MIB
PARTS_IN_FLIGHT = 4
CHUNK = os.urandom(MIB)  # streamed uploads repeat this block: generating bytes is not what is measured
ENV_KEYS = ("BENCH_S3_ENDPOINT", "BENCH_S3_ACCESS_KEY", "BENCH_S3_SECRET_KEY", "BENCH_S3_REGION")


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


class RssPeak:
    """This process's peak RSS, sampled every 10 ms in a thread (obstore's Rust threads count too)."""

    def __init__(self) -> None:
        self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


async def generated(size: int) -> AsyncIterator[bytes]:
    """``size`` bytes as 1 MiB chunks, made as they are asked for: the whole never exists at once.

    Each chunk is a new object, as a network read's would be: handing out the same object again
    would let a library that keeps references instead of copies (obstore) look as if it buffered
    nothing.
    """
    sent = 0
    while sent < size:
        piece = memoryview(CHUNK)[: min(MIB, size - sent)].tobytes()
        sent += len(piece)
        yield piece


class Client(Protocol):
    """What the benchmark and the checks ask of a library; one adapter per library below."""

    async def open(self, bucket: str) -> None: ...
    async def close(self) -> None: ...
    async def create_bucket(self, bucket: str) -> None: ...
    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None: ...
    def get_stream(self, key: str) -> AsyncIterator[bytes]: ...
    async def get_range(self, key: str, start: int, end: int) -> bytes: ...
    async def head(self, key: str) -> dict[str, Any]: ...
    async def copy(self, source: str, target: str) -> None: ...
    async def delete_many(self, keys: list[str]) -> None: ...
    async def list_page(self, prefix: str, after: str | None, limit: int) -> list[str]: ...
    async def put_if_absent(self, key: str, data: bytes) -> bool: ...
    # The TUS upload's steps, each of which may run in another request or after a restart.
    async def multipart_create(self, key: str) -> str: ...
    async def multipart_part(self, key: str, upload_id: str, number: int, data: bytes) -> str: ...
    async def multipart_complete(self, key: str, upload_id: str, etags: list[str]) -> None: ...
    async def multipart_abort(self, key: str, upload_id: str) -> None: ...


def settings() -> dict[str, str]:
    return {name: os.environ[name] for name in ENV_KEYS}


class ObstoreClient:
    """obstore's S3Store: path-style, plain HTTP to the loopback endpoint."""

    def __init__(self) -> None:
        from obstore.store import S3Store

        self._cls = S3Store
        self.store: Any = None

    def _make(self, bucket: str) -> Any:
        env = settings()
        return self._cls(
            bucket,
            endpoint=env["BENCH_S3_ENDPOINT"],
            access_key_id=env["BENCH_S3_ACCESS_KEY"],
            secret_access_key=env["BENCH_S3_SECRET_KEY"],
            region=env["BENCH_S3_REGION"],
            virtual_hosted_style_request=False,
            # SeaweedFS answers If-None-Match (see the checks); enables put(mode="create").
            conditional_put="etag",
            client_options={"allow_http": True},
        )

    async def open(self, bucket: str) -> None:
        self.store = self._make(bucket)

    async def close(self) -> None:
        self.store = None

    async def create_bucket(self, bucket: str) -> None:
        # obstore has no bucket operations (it works inside one bucket): a signed PUT /bucket would
        # be needed. The benchmark creates buckets with boto3 beforehand (`create_buckets`).
        raise NotImplementedError

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        attributes = {"Content-Type": content_type} if content_type else None
        await self.store.put_async(key, data, attributes=attributes, use_multipart=False)

    async def get(self, key: str) -> bytes:
        result = await self.store.get_async(key)
        return bytes(await result.bytes_async())

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        await self.store.put_async(key, chunks, chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT)

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        result = await self.store.get_async(key)
        async for chunk in result.stream(min_chunk_size=MIB):
            yield bytes(chunk)

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        return bytes(await self.store.get_range_async(key, start=start, end=end))

    async def head(self, key: str) -> dict[str, Any]:
        # head_async gives size and ETag but no Content-Type; a GET with head=True sends a HEAD
        # and gives the attributes too.
        result = await self.store.get_async(key, options={"head": True})
        meta = result.meta
        return {"size": meta["size"], "etag": meta["e_tag"], "content_type": result.attributes.get("Content-Type")}

    async def copy(self, source: str, target: str) -> None:
        await self.store.copy_async(source, target)

    async def delete_many(self, keys: list[str]) -> None:
        await self.store.delete_async(keys)

    async def list_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        stream = self.store.list(prefix, offset=after, chunk_size=limit)
        async for page in stream:
            return [meta["path"] for meta in page]
        return []

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        from obstore.exceptions import AlreadyExistsError

        try:
            await self.store.put_async(key, data, mode="create")
        except AlreadyExistsError:
            return False
        return True

    async def multipart_create(self, key: str) -> str:
        raise NotImplementedError("obstore 0.12 exposes no CreateMultipartUpload/UploadPart/Complete")

    async def multipart_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        raise NotImplementedError

    async def multipart_complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        raise NotImplementedError

    async def multipart_abort(self, key: str, upload_id: str) -> None:
        raise NotImplementedError


class SigV4Multipart:
    """The four S3 multipart calls obstore does not expose, signed by hand (AWS Signature V4) over httpx.

    A prototype, to show what obstore needs beside it for TUS; not the storage module's code.
    Path-style only; the payload is hashed (parts are in memory when they are sent anyway).
    """

    def __init__(self, bucket: str) -> None:
        import httpx

        env = settings()
        self.endpoint = env["BENCH_S3_ENDPOINT"].rstrip("/")
        self.access_key, self.secret_key = env["BENCH_S3_ACCESS_KEY"], env["BENCH_S3_SECRET_KEY"]
        self.region, self.bucket = env["BENCH_S3_REGION"], bucket
        self.http = httpx.AsyncClient(timeout=60)

    def _headers(self, method: str, path: str, query: dict[str, str], body: bytes) -> dict[str, str]:
        import datetime as dt
        import hmac
        from urllib.parse import quote, urlsplit

        now = dt.datetime.now(dt.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        host = urlsplit(self.endpoint).netloc
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        signed = ";".join(sorted(headers))
        canonical = "\n".join([
            method, quote(path, safe="/-_.~"), canonical_query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload,
        ])  # fmt: skip
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = f"AWS4{self.secret_key}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        del headers["host"]  # httpx sends it
        return headers

    async def _call(self, method: str, key: str, query: dict[str, str], body: bytes = b"") -> Any:
        from urllib.parse import quote

        path = f"/{self.bucket}/{key}"
        reply = await self.http.request(
            method,
            self.endpoint + quote(path, safe="/-_.~"),
            params=query,
            content=body,
            headers=self._headers(method, path, query, body),
        )
        # CompleteMultipartUpload may answer 200 with an <Error> body: check both.
        if reply.status_code >= 300 or b"<Error>" in reply.content[:200]:
            raise RuntimeError(f"{method} {path}?{query}: {reply.status_code} {reply.text[:300]}")
        return reply

    async def create(self, key: str) -> str:
        import re

        reply = await self._call("POST", key, {"uploads": ""})
        found = re.search(rb"<UploadId>([^<]+)</UploadId>", reply.content)
        if not found:
            raise RuntimeError(f"no UploadId in {reply.text[:300]}")
        return found.group(1).decode()

    async def part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        reply = await self._call("PUT", key, {"partNumber": str(number), "uploadId": upload_id}, data)
        return str(reply.headers["etag"])

    async def complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        from xml.sax.saxutils import escape

        parts = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        await self._call("POST", key, {"uploadId": upload_id}, body)

    async def abort(self, key: str, upload_id: str) -> None:
        await self._call("DELETE", key, {"uploadId": upload_id})

    async def close(self) -> None:
        await self.http.aclose()


class ObstoreSigV4Client(ObstoreClient):
    """obstore for everything, `SigV4Multipart` for the multipart calls obstore does not expose."""

    async def open(self, bucket: str) -> None:
        await super().open(bucket)
        self.multipart = SigV4Multipart(bucket)

    async def close(self) -> None:
        await self.multipart.close()
        await super().close()

    async def multipart_create(self, key: str) -> str:
        return await self.multipart.create(key)

    async def multipart_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        return await self.multipart.part(key, upload_id, number, data)

    async def multipart_complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        await self.multipart.complete(key, upload_id, etags)

    async def multipart_abort(self, key: str, upload_id: str) -> None:
        await self.multipart.abort(key, upload_id)


class AioBoto3Client:
    """aioboto3's S3 client: path-style, its default checksums and retries."""

    def __init__(self) -> None:
        import aioboto3
        from botocore.config import Config

        self.session = aioboto3.Session()
        self.config = Config(s3={"addressing_style": "path"}, max_pool_connections=32)
        self.client: Any = None
        self._context: Any = None
        self.bucket = ""

    async def open(self, bucket: str) -> None:
        env = settings()
        self.bucket = bucket
        self._context = self.session.client(
            "s3",
            endpoint_url=env["BENCH_S3_ENDPOINT"],
            aws_access_key_id=env["BENCH_S3_ACCESS_KEY"],
            aws_secret_access_key=env["BENCH_S3_SECRET_KEY"],
            region_name=env["BENCH_S3_REGION"],
            config=self.config,
        )
        self.client = await self._context.__aenter__()

    async def close(self) -> None:
        await self._context.__aexit__(None, None, None)

    async def create_bucket(self, bucket: str) -> None:
        await self.client.create_bucket(Bucket=bucket)

    async def put(self, key: str, data: bytes, content_type: str | None = None) -> None:
        extra = {"ContentType": content_type} if content_type else {}
        await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)

    async def get(self, key: str) -> bytes:
        reply = await self.client.get_object(Bucket=self.bucket, Key=key)
        async with reply["Body"] as body:
            return bytes(await body.read())

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """A multipart upload of parts cut from the stream, up to PARTS_IN_FLIGHT at once."""
        upload_id = await self.multipart_create(key)
        etags: dict[int, str] = {}
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)
        tasks: list[asyncio.Task[None]] = []

        async def send(number: int, data: bytes) -> None:
            try:
                etags[number] = await self.multipart_part(key, upload_id, number, data)
            finally:
                slots.release()

        try:
            buffer = bytearray()
            number = 0
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    await slots.acquire()
                    number += 1
                    tasks.append(asyncio.create_task(send(number, bytes(buffer))))
                    buffer = bytearray()
            if buffer or number == 0:
                await slots.acquire()
                number += 1
                tasks.append(asyncio.create_task(send(number, bytes(buffer))))
            await asyncio.gather(*tasks)
            await self.multipart_complete(key, upload_id, [etags[n] for n in sorted(etags)])
        except BaseException:
            for task in tasks:
                task.cancel()
            await self.multipart_abort(key, upload_id)
            raise

    async def get_stream(self, key: str) -> AsyncIterator[bytes]:
        reply = await self.client.get_object(Bucket=self.bucket, Key=key)
        body = reply["Body"]  # its `async with` gives the bare aiohttp response, without iter_chunks
        try:
            async for chunk in body.iter_chunks(MIB):
                yield chunk
        finally:
            body.close()

    async def get_range(self, key: str, start: int, end: int) -> bytes:
        reply = await self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        async with reply["Body"] as body:
            return bytes(await body.read())

    async def head(self, key: str) -> dict[str, Any]:
        reply = await self.client.head_object(Bucket=self.bucket, Key=key)
        return {"size": reply["ContentLength"], "etag": reply["ETag"], "content_type": reply.get("ContentType")}

    async def copy(self, source: str, target: str) -> None:
        await self.client.copy_object(Bucket=self.bucket, Key=target, CopySource={"Bucket": self.bucket, "Key": source})

    async def delete_many(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys (obstore batches itself)
            batch = keys[start : start + 1000]
            reply = await self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
            if reply.get("Errors"):
                raise RuntimeError(reply["Errors"])

    async def list_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        extra = {"StartAfter": after} if after else {}
        reply = await self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=limit, **extra)
        return [item["Key"] for item in reply.get("Contents", [])]

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    async def multipart_create(self, key: str) -> str:
        reply = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        return str(reply["UploadId"])

    async def multipart_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        reply = await self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return str(reply["ETag"])

    async def multipart_complete(self, key: str, upload_id: str, etags: list[str]) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
        await self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    async def multipart_abort(self, key: str, upload_id: str) -> None:
        await self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)


def make_client(library: str) -> Client:
    clients: dict[str, Callable[[], Client]] = {
        "obstore": ObstoreClient,
        "obstore+sigv4": ObstoreSigV4Client,
        "aioboto3": AioBoto3Client,
    }
    return clients[library]()


# -- the capability checks: each returns True, or False / raises for "no" ----------------------------


async def check_stream_put(c: Client, p: str) -> bool:
    """Streaming upload from an async iterator of chunks, total size unknown beforehand."""
    size = 2 * PART_SIZE + 12_345
    await c.put_stream(f"{p}stream", generated(size))
    return (await c.head(f"{p}stream"))["size"] == size


async def check_stream_get(c: Client, p: str) -> bool:
    """Streaming download as an async iterator of chunks (hash compared)."""
    size = PART_SIZE + 12_345
    await c.put_stream(f"{p}stream", generated(size))
    expected = hashlib.sha256()
    async for chunk in generated(size):
        expected.update(chunk)
    got, pieces = hashlib.sha256(), 0
    async for chunk in c.get_stream(f"{p}stream"):
        got.update(chunk)
        pieces += 1
    return got.digest() == expected.digest() and pieces > 1


async def check_range(c: Client, p: str) -> bool:
    """Ranged get (bytes 100..199)."""
    await c.put(f"{p}range", bytes(range(256)) * 4)
    return await c.get_range(f"{p}range", 100, 200) == (bytes(range(256)) * 4)[100:200]


async def check_head(c: Client, p: str) -> bool:
    """Head: size, ETag and Content-Type."""
    await c.put(f"{p}head.png", b"\x89PNG....", content_type="image/png")
    info = await c.head(f"{p}head.png")
    return info["size"] == 8 and bool(info["etag"]) and info["content_type"] == "image/png"


async def check_copy(c: Client, p: str) -> bool:
    """Server-side copy."""
    await c.put(f"{p}copy-src", b"copied")
    await c.copy(f"{p}copy-src", f"{p}copy-dst")
    return await c.get(f"{p}copy-dst") == b"copied"


async def check_delete_many(c: Client, p: str) -> bool:
    """Delete many keys in one call."""
    keys = [f"{p}del/{i}" for i in range(5)]
    for key in keys:
        await c.put(key, b"x")
    await c.delete_many(keys)
    return await c.list_page(f"{p}del/", None, 100) == []


async def check_list_pages(c: Client, p: str) -> bool:
    """List by prefix, a page at a time, resuming after the last key seen (the cursor an API hands out)."""
    keys = sorted(f"{p}list/{i:03d}" for i in range(25))
    for key in keys:
        await c.put(key, b"x")
    await c.put(f"{p}other/000", b"x")
    seen: list[str] = []
    after: str | None = None
    while page := await c.list_page(f"{p}list/", after, 10):
        assert len(page) <= 10
        seen += page
        after = page[-1]
    return seen == keys


async def check_conditional_put(c: Client, p: str) -> bool:
    """Create-only put (If-None-Match: *), for x-upsert: false without a race."""
    return await c.put_if_absent(f"{p}once", b"1") and not await c.put_if_absent(f"{p}once", b"2")


async def check_resumable_multipart(c: Client, p: str, library: str = "") -> bool:
    """TUS on S3: create, part 1, then a new client (a restart) given only the persisted upload id
    and part ETags (through JSON) uploads part 2 and completes."""
    key = f"{p}tus"
    upload_id = await c.multipart_create(key)
    state = json.dumps({"upload_id": upload_id, "etags": [await c.multipart_part(key, upload_id, 1, CHUNK * 5)]})
    await c.close()
    restarted = make_client(library)
    await restarted.open(os.environ["BENCH_S3_BUCKET"])
    try:
        saved = json.loads(state)
        saved["etags"].append(await restarted.multipart_part(key, saved["upload_id"], 2, b"tail"))
        await restarted.multipart_complete(key, saved["upload_id"], saved["etags"])
        return (await restarted.head(key))["size"] == 5 * MIB + 4
    finally:
        await restarted.close()


async def check_abort_multipart(c: Client, p: str) -> bool:
    """Abort a multipart upload (TUS termination, the sweeper)."""
    upload_id = await c.multipart_create(f"{p}aborted")
    await c.multipart_part(f"{p}aborted", upload_id, 1, b"x")
    await c.multipart_abort(f"{p}aborted", upload_id)
    return await c.list_page(f"{p}aborted", None, 10) == []


CHECKS: dict[str, Callable[[Client, str], Awaitable[bool]]] = {
    "stream_put_unknown_size": check_stream_put,
    "stream_get_async_iterator": check_stream_get,
    "ranged_get": check_range,
    "head_size_etag_content_type": check_head,
    "copy": check_copy,
    "delete_many": check_delete_many,
    "list_prefix_paginated": check_list_pages,
    "conditional_create_put": check_conditional_put,
    "multipart_abort": check_abort_multipart,
}


async def capabilities(library: str, bucket: str) -> dict[str, str]:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        c = make_client(library)
        await c.open(bucket)
        try:
            results[name] = "yes" if await check(c, f"{name}/") else "no (wrong result)"
        except Exception as exc:  # noqa: BLE001 - a check that raises is a "no", with the reason
            results[name] = f"no ({type(exc).__name__}: {str(exc)[:120]})"
        finally:
            await c.close()
    c = make_client(library)
    await c.open(bucket)
    try:
        ok = await check_resumable_multipart(c, "resumable/", library)
        results["multipart_resumable_across_restart"] = "yes" if ok else "no (wrong result)"
    except Exception as exc:  # noqa: BLE001 - as above
        results["multipart_resumable_across_restart"] = f"no ({type(exc).__name__}: {str(exc)[:120]})"
    return results


# -- the measurements ---------------------------------------------------------------------------------


async def small_objects(c: Client, count: int) -> tuple[float, float]:
    """``count`` 10 KiB puts, then the same gets, 16 in flight: req/s of each."""
    data = os.urandom(10 * KIB)
    prefix = f"small/{uuid.uuid4().hex}/"
    keys = [f"{prefix}{i}" for i in range(count)]

    async def run(op: Callable[[str], Awaitable[Any]]) -> float:
        queue = iter(keys)

        async def worker() -> None:
            for key in queue:
                await op(key)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        return count / (time.perf_counter() - start)

    put_rate = await run(lambda key: c.put(key, data))
    get_rate = await run(c.get)
    await c.delete_many(keys)
    return put_rate, get_rate


async def big_object(c: Client, size: int) -> tuple[float, float]:
    """One ``size`` object streamed up, then down: MB/s each way."""
    key = f"big/{uuid.uuid4().hex}"
    start = time.perf_counter()
    await c.put_stream(key, generated(size))
    put_s = time.perf_counter() - start
    start, got = time.perf_counter(), 0
    async for chunk in c.get_stream(key):
        got += len(chunk)
    get_s = time.perf_counter() - start
    assert got == size, (got, size)
    await c.delete_many([key])
    return size / MIB / put_s, size / MIB / get_s


async def upload_rss_growth(library: str, bucket: str, size: int) -> dict[str, float]:
    """RSS growth (MB) while a ``size`` stream is uploaded, and the MB/s, in a process that has done
    nothing else but one small request: an allocator keeps what earlier transfers grew, which
    would hide the growth."""
    c = make_client(library)
    await c.open(bucket)
    try:
        await c.put("warm-up", b"x")
        key = f"huge/{uuid.uuid4().hex}"
        before = rss()
        start = time.perf_counter()
        with RssPeak() as peak:
            await c.put_stream(key, generated(size))
        elapsed = time.perf_counter() - start
        await c.delete_many([key])
    finally:
        await c.close()
    return {"huge_upload_rss_growth_mb": (peak.peak - before) / MIB, "huge_upload_mbps": size / MIB / elapsed}


async def measure(library: str, bucket: str, small_count: int, big: int) -> dict[str, float]:
    """One run of the throughput workloads, in a fresh process."""
    c = make_client(library)
    await c.open(bucket)
    try:
        await c.put("warm-up", b"x")  # the connection pool, credentials, the runtime's threads
        first_request_rss = rss()
        small_put, small_get = await small_objects(c, small_count)
        big_put, big_get = await big_object(c, big)
    finally:
        await c.close()
    return {
        "rss_after_first_request_mb": first_request_rss / MIB,
        "small_put_rps": small_put,
        "small_get_rps": small_get,
        "big_put_mbps": big_put,
        "big_get_mbps": big_get,
    }


def import_cost(library: str) -> dict[str, float]:
    """Import time (ms) and RSS cost (MB) of the library and a client, in a process that has nothing else."""
    before = rss()
    start = time.perf_counter()
    make_client(library)
    elapsed = time.perf_counter() - start
    return {"import_ms": elapsed * 1000, "import_rss_mb": (rss() - before) / MIB}


# -- the orchestration --------------------------------------------------------------------------------


def create_buckets(server: Any, names: list[str]) -> None:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        config=Config(s3={"addressing_style": "path"}),
    )
    for name in names:
        s3.create_bucket(Bucket=name)


#: Exit statuses of the worker processes, by library: obstore's can abort (SIGABRT) as the
#: interpreter finalizes, after its work is done and printed; that is counted, not hidden.
EXITS: dict[str, list[int]] = {}


def in_subprocess(args: list[str], env: dict[str, str]) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.s3_clients", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        check=False,
    )
    EXITS.setdefault(args[1], []).append(out.returncode)
    lines = out.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        raise RuntimeError(f"{args} exited with {out.returncode}:\n{out.stderr[-3000:]}\n{out.stdout[-1000:]}")
    return json.loads(lines[-1])


def run_all(quick: bool) -> dict[str, Any]:
    from apprun.testing.engines import SeaweedFS
    from benchmarks.harness.shutdown import stopped_on_exit

    runs, small_count, big, huge = (1, 300, 20 * MIB, 256 * MIB) if quick else (3, 2000, 100 * MIB, 1024 * MIB)
    work = Path(tempfile.mkdtemp(prefix="apprun-bench-s3-"))
    results: dict[str, Any] = {"params": {"runs": runs, "small_count": small_count, "big": big, "huge": huge}}
    try:
        with stopped_on_exit() as engines, engines.running(SeaweedFS(work / "seaweedfs")) as server:
            base = {
                "BENCH_S3_ENDPOINT": server.endpoint,
                "BENCH_S3_ACCESS_KEY": server.access_key,
                "BENCH_S3_SECRET_KEY": server.secret_key,
                "BENCH_S3_REGION": server.region,
            }
            buckets = {name: f"bench-{name.replace('+', '-')}-{uuid.uuid4().hex[:8]}" for name in LIBRARIES + VARIANTS}
            create_buckets(server, list(buckets.values()))
            envs = {name: {**base, "BENCH_S3_BUCKET": bucket} for name, bucket in buckets.items()}
            params = json.dumps(results["params"])
            # The machine is shared and its load drifts: the libraries take turns, each run in a fresh
            # process, and the one that goes first alternates.
            samples: dict[str, list[dict[str, float]]] = {library: [] for library in LIBRARIES}
            for run in range(runs):
                for library in LIBRARIES if run % 2 == 0 else LIBRARIES[::-1]:
                    print(f"run {run + 1}/{runs}: {library} …", file=sys.stderr)
                    samples[library].append(in_subprocess(["--worker", library, "--params", params], envs[library]))
                    samples[library][-1].update(in_subprocess(["--import-cost", library], base))
            for library in LIBRARIES:
                figures: dict[str, Any] = {
                    key: statistics.median(s[key] for s in samples[library]) for key in samples[library][0]
                }
                figures["runs"] = samples[library]
                print(f"{library}: {huge // MIB} MiB upload, RSS …", file=sys.stderr)
                figures.update(in_subprocess(["--rss", library, "--params", params], envs[library]))
                figures["capabilities"] = in_subprocess(["--checks", library], envs[library])
                results[library] = figures
            for variant in VARIANTS:
                results[variant] = {"capabilities": in_subprocess(["--checks", variant], envs[variant])}
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the objects written: a few GiB in full mode
    results["exits"] = EXITS
    return results


def markdown(results: dict[str, Any]) -> str:
    p = results["params"]
    rows = [
        ("10 KiB put, req/s (16 in flight)", "small_put_rps", "{:,.0f}"),
        ("10 KiB get, req/s (16 in flight)", "small_get_rps", "{:,.0f}"),
        (f"{p['big'] // MIB} MiB streamed put, MB/s", "big_put_mbps", "{:,.0f}"),
        (f"{p['big'] // MIB} MiB streamed get, MB/s", "big_get_mbps", "{:,.0f}"),
        (f"RSS growth during a {p['huge'] // MIB} MiB streamed upload, MB (goal < 50)",
         "huge_upload_rss_growth_mb", "{:.0f}"),
        (f"{p['huge'] // MIB} MiB streamed upload, MB/s", "huge_upload_mbps", "{:,.0f}"),
        ("import time, ms (library + client object)", "import_ms", "{:,.0f}"),
        ("RSS cost of the import, MB", "import_rss_mb", "{:.0f}"),
        ("process RSS after the first request, MB", "rss_after_first_request_mb", "{:.0f}"),
    ]  # fmt: skip
    lines = [f"| measure (median of {p['runs']}) | obstore | aioboto3 | obstore ÷ aioboto3 |", "|---|---:|---:|---:|"]
    for label, key, fmt in rows:
        a, b = results["obstore"][key], results["aioboto3"][key]
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} |")
    aborts = {lib: sum(1 for rc in results["exits"].get(lib, []) if rc != 0) for lib in LIBRARIES}
    runs = {lib: len(results["exits"].get(lib, [])) for lib in LIBRARIES}
    lines.append(
        f"| worker processes that died at exit (SIGABRT) after finishing | {aborts['obstore']} of {runs['obstore']} "
        f"| {aborts['aioboto3']} of {runs['aioboto3']} | |"
    )
    columns = [*LIBRARIES, *VARIANTS]
    lines += ["", f"| capability (tried against SeaweedFS) | {' | '.join(columns)} |", "|---|" + "---|" * len(columns)]
    for name in results["obstore"]["capabilities"]:
        lines.append(f"| {name} | {' | '.join(results[c]['capabilities'][name] for c in columns)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run, 300 small objects, 20 MiB and 256 MiB")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--worker", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--rss", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--checks", choices=LIBRARIES + VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--import-cost", choices=LIBRARIES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.checks:
        print(json.dumps(asyncio.run(capabilities(args.checks, os.environ["BENCH_S3_BUCKET"]))))
        return
    if args.import_cost:
        print(json.dumps(import_cost(args.import_cost)))
        return
    if args.worker or args.rss:
        params = json.loads(args.params)
        bucket = os.environ["BENCH_S3_BUCKET"]
        if args.rss:
            figures = asyncio.run(upload_rss_growth(args.rss, bucket, params["huge"]))
        else:
            figures = asyncio.run(measure(args.worker, bucket, params["small_count"], params["big"]))
        print(json.dumps(figures))
        return
    results = run_all(args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
