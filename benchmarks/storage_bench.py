"""Object storage: 10 KiB uploads and downloads against PocketBase and a raw S3 client, big-file throughput.

Issue 13's benchmarks, as one command (``make bench`` does not run it yet):

- **small objects**, req/s with wrk (64 connections): an upload (``POST`` of
  10 KiB, replacing the same key: apprun ``x-upsert``; PocketBase a new
  record with a file field) and a download of a 10 KiB object, apprun
  against PocketBase's file fields, with a raw S3 client (obstore, the
  library apprun's S3 backend uses, 16 requests in flight) on the same
  SeaweedFS as the ceiling;
- **big objects**, MB/s: one 100 MiB upload and download streamed through
  apprun against obstore straight to SeaweedFS, and how much apprun's
  processes grow (PSS) during the upload.

    python -m benchmarks.storage_bench [--seconds 4] [--backend local|s3] [--big-mib 100]

``--backend`` is apprun's ``STORAGE_BACKEND``: ``local`` (disk, the default)
or ``s3`` (the same SeaweedFS as the ceiling). Prints a JSON summary and
writes it to ``benchmarks/results/<time>-storage.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from apprun.testing.engines import SeaweedFS
from benchmarks.harness.apprun_system import EMAIL, PASSWORD, Apprun
from benchmarks.harness.common import Request, stop_group, tree_pss
from benchmarks.harness.load import run_wrk
from benchmarks.harness.pocketbase import PocketBase

SMALL = os.urandom(10 * 1024)
_BOUNDARY = "apprunbenchboundary7e3f"


def _form(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file part, and its Content-Type."""
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{_BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={_BOUNDARY}"


class ApprunFiles(Apprun):
    """``apprun serve`` (SQLite) with a bucket holding one 10 KiB object."""

    def __init__(self, workdir: Path, workers: int, nats_url: str, storage_env: dict[str, str]) -> None:
        super().__init__(workdir, "sqlite", workers, nats_url)
        self._env.update(storage_env)
        self.name = f"apprun_{storage_env.get('STORAGE_BACKEND', 'local')}"

    def seed(self, records: int) -> None:  # noqa: ARG002 - the System signature
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            self._call(client, "POST", "/auth/register", json={"email": EMAIL, "password": PASSWORD})
            self.token = self._login(client, EMAIL, PASSWORD)
            self._call(client, "POST", "/storage/v1/bucket", self.token, json={"id": "bench"})
            self._call(
                client,
                "POST",
                "/storage/v1/object/bench/small.bin",
                self.token,
                content=SMALL,
                headers={"Content-Type": "application/octet-stream"},
            )

    def requests(self) -> dict[str, Request]:
        auth = {"Authorization": f"Bearer {self.token}"}
        return {
            "upload": Request(
                "POST",
                "/storage/v1/object/bench/upload.bin",
                headers={**auth, "Content-Type": "application/octet-stream", "x-upsert": "true"},
                body=SMALL,
            ),
            "download": Request("GET", "/storage/v1/object/bench/small.bin", headers=auth),
        }


class PocketBaseFiles(PocketBase):
    """PocketBase with a ``files`` collection (one file field) holding one 10 KiB file."""

    def seed(self, records: int) -> None:  # noqa: ARG002 - the System signature
        self._call(
            "POST",
            "/api/collections",
            {
                "name": "files",
                "type": "base",
                "listRule": "",
                "viewRule": "",
                "createRule": "",
                "fields": [{"name": "document", "type": "file", "maxSelect": 1, "maxSize": 50 * 2**20}],
            },
        )
        body, content_type = _form("document", "small.bin", SMALL)
        assert self._client is not None
        reply = self._client.post(
            "/api/collections/files/records", content=body, headers={"Content-Type": content_type}
        )
        reply.raise_for_status()
        created = reply.json()
        self._download = f"/api/files/{created['collectionId']}/{created['id']}/{created['document']}"

    def requests(self) -> dict[str, Request]:
        body, content_type = _form("document", "upload.bin", SMALL)
        return {
            "upload": Request(
                "POST", "/api/collections/files/records", headers={"Content-Type": content_type}, body=body
            ),
            "download": Request("GET", self._download),
        }


def _wrk(system: Any, seconds: float, runs: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for workload, request in system.requests().items():
        run_wrk(system.base_url, request, 1)  # warm-up
        results = [run_wrk(system.base_url, request, seconds) for _ in range(runs)]
        best = sorted(results, key=lambda r: r.rps)[len(results) // 2]
        out[workload] = asdict(best)
        print(f"  {system.name:<16} {workload:<9} {best.rps:>8,.0f} req/s  P99 {best.p99_ms:.1f} ms  "
              f"errors {best.errors}", file=sys.stderr)  # fmt: skip
    return out


def _store(s3: SeaweedFS, bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        endpoint=s3.endpoint,
        access_key_id=s3.access_key,
        secret_access_key=s3.secret_key,
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )


async def _raw_small(store: Any, seconds: float, concurrency: int = 16) -> dict[str, float]:
    await store.put_async("small.bin", SMALL, use_multipart=False)
    rates: dict[str, float] = {}
    for name in ("upload", "download"):
        done = 0
        stop = time.perf_counter() + seconds

        async def worker(i: int, op: str = name, until: float = stop) -> None:
            nonlocal done
            while time.perf_counter() < until:
                if op == "upload":
                    await store.put_async(f"up-{i}.bin", SMALL, use_multipart=False)
                else:
                    await (await store.get_async("small.bin")).bytes_async()
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        rates[name] = done / (time.perf_counter() - start)
    return rates


def _chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    block = os.urandom(size)
    for _ in range(total // size):
        yield block


async def _achunks(total: int) -> AsyncIterator[bytes]:
    for chunk in _chunks(total):
        yield chunk


async def _raw_big(store: Any, total: int) -> dict[str, float]:
    start = time.perf_counter()
    await store.put_async("big.bin", _achunks(total), chunk_size=8 * 2**20, max_concurrency=4)
    put = total / (time.perf_counter() - start) / 1e6
    start, got = time.perf_counter(), 0
    async for chunk in (await store.get_async("big.bin")).stream(min_chunk_size=2**20):
        got += len(chunk)
    return {"upload_mb_s": put, "download_mb_s": got / (time.perf_counter() - start) / 1e6}


def _apprun_big(system: ApprunFiles, total: int) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {system.token}", "Content-Type": "application/octet-stream"}
    peak = [0]
    idle = tree_pss(system.pids())
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], tree_pss(system.pids()))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with httpx.Client(base_url=system.base_url, timeout=600) as client:
        start = time.perf_counter()
        reply = client.post("/storage/v1/object/bench/big.bin", content=_chunks(total), headers=auth)
        put = time.perf_counter() - start
        sampling.set()
        sampler.join()
        reply.raise_for_status()
        start, got = time.perf_counter(), 0
        with client.stream("GET", "/storage/v1/object/bench/big.bin", headers=auth) as stream:
            for chunk in stream.iter_bytes():
                got += len(chunk)
        get = time.perf_counter() - start
    return {
        "upload_mb_s": total / put / 1e6,
        "download_mb_s": got / get / 1e6,
        "pss_growth_mb": (peak[0] - idle) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=("local", "s3"), default="local")
    parser.add_argument("--big-mib", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    big = args.big_mib * 2**20
    result: dict[str, Any] = {"args": vars(args), "http": {}}
    with tempfile.TemporaryDirectory(prefix="apprun-storage-bench-") as tmp:
        work = Path(tmp)
        s3 = SeaweedFS(work / "seaweedfs")
        s3.start()
        try:
            import boto3  # type: ignore[import-untyped]

            boto3.client(
                "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                aws_secret_access_key=s3.secret_key, region_name="us-east-1",
            ).create_bucket(Bucket="ceiling")  # fmt: skip
            store = _store(s3, "ceiling")
            result["ceiling"] = asyncio.run(_raw_small(store, args.seconds))
            result["ceiling_big"] = asyncio.run(_raw_big(store, big))
            print(f"  raw S3 (obstore) {result['ceiling']}  {result['ceiling_big']}", file=sys.stderr)
            pb = PocketBaseFiles(work / "pocketbase")
            pb.start()
            try:
                pb.seed(0)
                result["http"]["pocketbase"] = _wrk(pb, args.seconds, args.runs)
            finally:
                pb.stop()
            storage_env = {"STORAGE_BACKEND": args.backend}
            if args.backend == "s3":
                storage_env.update(
                    S3_ENDPOINT=s3.endpoint, S3_BUCKET="apprun", S3_ACCESS_KEY=s3.access_key,
                    S3_SECRET_KEY=s3.secret_key, S3_REGION="us-east-1", S3_FORCE_PATH_STYLE="true",
                )  # fmt: skip
                boto3.client(
                    "s3", endpoint_url=s3.endpoint, aws_access_key_id=s3.access_key,
                    aws_secret_access_key=s3.secret_key, region_name="us-east-1",
                ).create_bucket(Bucket="apprun")  # fmt: skip
            system = ApprunFiles(work / "apprun", args.workers, "", storage_env)
            system._env["PUBSUB_BACKEND"] = "memory"
            system.start()
            try:
                system.seed(0)
                result["http"][system.name] = _wrk(system, args.seconds, args.runs)
                result["apprun_big"] = _apprun_big(system, big)
            finally:
                if system.proc is not None:
                    stop_group(system.proc, grace=30)
        finally:
            s3.stop()
    ours, peer, ceiling = result["http"][system.name], result["http"]["pocketbase"], result["ceiling"]
    result["ratios"] = (
        {f"{w}_vs_pocketbase": ours[w]["rps"] / peer[w]["rps"] for w in ("upload", "download")}
        | {f"{w}_vs_raw_s3": ours[w]["rps"] / ceiling[w] for w in ("upload", "download")}
        | {
            "big_upload_vs_raw_s3": result["apprun_big"]["upload_mb_s"] / result["ceiling_big"]["upload_mb_s"],
            "big_download_vs_raw_s3": result["apprun_big"]["download_mb_s"] / result["ceiling_big"]["download_mb_s"],
        }
    )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%S")
    out = Path(__file__).parent / "results" / f"{stamp}-storage.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({"ratios": result["ratios"], "apprun_big": result["apprun_big"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
