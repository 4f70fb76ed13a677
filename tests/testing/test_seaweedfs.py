"""The SeaweedFS launcher gives an S3 endpoint that a stock client (boto3, path-style) can use."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from apprun.testing.engines import SeaweedFS

pytestmark = pytest.mark.slow


def s3_client(server: SeaweedFS, secret_key: str | None = None) -> object:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name=server.region,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret_key or server.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_bucket_put_get_with_the_generated_keys(seaweedfs: SeaweedFS) -> None:
    s3 = s3_client(seaweedfs)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    body = b"\x00binary\xffbody" * 1000
    s3.put_object(Bucket=bucket, Key="dir/object.bin", Body=body, ContentType="application/x-test")  # type: ignore[attr-defined]

    got = s3.get_object(Bucket=bucket, Key="dir/object.bin")  # type: ignore[attr-defined]
    assert got["Body"].read() == body
    assert got["ContentType"] == "application/x-test"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")  # type: ignore[attr-defined]
    assert [item["Key"] for item in listed["Contents"]] == ["dir/object.bin"]


def test_a_wrong_secret_is_refused(seaweedfs: SeaweedFS) -> None:
    with pytest.raises(ClientError) as refused:
        s3_client(seaweedfs, secret_key="not-the-secret").list_buckets()  # type: ignore[attr-defined]
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_stops_without_leaving_its_sockets_and_restarts_with_its_data(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path / "seaweedfs")
    server.start()
    try:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="kept-bucket")  # type: ignore[attr-defined]
        s3.put_object(Bucket="kept-bucket", Key="k", Body=b"kept")  # type: ignore[attr-defined]
        server.stop()
        leftovers = [sock for port in server.ports for sock in SeaweedFS.SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock")]
        assert leftovers == []
        server.start()  # same ports, same data, same keys
        assert s3.get_object(Bucket="kept-bucket", Key="k")["Body"].read() == b"kept"  # type: ignore[attr-defined]
    finally:
        server.stop()
    assert server.proc is None
