"""Signed links: one object, one method, one tenant, until a time; never an access token (checklist 22)."""

from __future__ import annotations

import time

import jwt
import pytest

from apprun.kernel.errors import Forbidden
from apprun.storage.signing import Grant, Signer

pytestmark = pytest.mark.checklist(22)

SECRET = "s" * 64
TENANT = "0192f2f4-5b8e-7c3a-9d1e-000000000001"


def _grant(**changes: object) -> Grant:
    fields: dict[str, object] = {
        "method": "GET", "scope": TENANT, "bucket": "photos", "key": "a/b.png", "expires": int(time.time()) + 60,
    }  # fmt: skip
    fields.update(changes)
    return Grant(**fields)  # type: ignore[arg-type]


def test_a_signed_link_gives_what_it_names() -> None:
    signer = Signer(SECRET)
    grant = _grant(transform={"width": "100"}, method="PUT", upsert=True)
    token = signer.sign(grant)
    assert signer.verify(token, method="PUT", bucket="photos", key="a/b.png") == grant


@pytest.mark.parametrize(
    ("method", "bucket", "key"),
    [("PUT", "photos", "a/b.png"), ("GET", "other", "a/b.png"), ("GET", "photos", "a/c.png")],
)
def test_a_signed_link_is_refused_for_anything_else(method: str, bucket: str, key: str) -> None:
    signer = Signer(SECRET)
    token = signer.sign(_grant())
    with pytest.raises(Forbidden) as refused:
        signer.verify(token, method=method, bucket=bucket, key=key)  # type: ignore[arg-type]
    assert refused.value.code == "storage.signature_invalid"


def test_a_signed_link_expires() -> None:
    signer = Signer(SECRET)
    token = signer.sign(_grant(expires=1_000))
    with pytest.raises(Forbidden) as refused:
        signer.verify(token, method="GET", bucket="photos", key="a/b.png", now=1_000)
    assert refused.value.code == "storage.signature_expired"
    assert signer.verify(token, method="GET", bucket="photos", key="a/b.png", now=999).expires == 1_000


def test_neither_another_deployment_nor_the_access_token_key_signs_a_link() -> None:
    claims = {"aud": "apprun-storage", "m": "GET", "s": TENANT, "b": "photos", "k": "a/b.png", "exp": 2**40}
    for forged in (
        Signer("t" * 64).sign(_grant()),  # another deployment's secret
        jwt.encode(claims, SECRET, algorithm="HS256"),  # the raw secret access tokens are signed with
        jwt.encode(claims, None, algorithm="none"),
    ):
        with pytest.raises(Forbidden):
            Signer(SECRET).verify(forged, method="GET", bucket="photos", key="a/b.png")


def test_the_transform_cannot_be_changed_in_the_link() -> None:
    signer = Signer(SECRET)
    header, payload, signature = signer.sign(_grant(transform={"width": "100"})).split(".")
    other = Signer(SECRET).sign(_grant(transform={"width": "2500"})).split(".")[1]
    with pytest.raises(Forbidden):
        signer.verify(f"{header}.{other}.{signature}", method="GET", bucket="photos", key="a/b.png")
    assert payload != other
