"""Signed URLs: a capability for one object, one method, until a time.

``POST /storage/v1/object/sign/{bucket}/{key}`` gives anyone holding the
link the right to GET that object's bytes (optionally rendered) until the
expiry; ``POST /object/upload/sign/{bucket}/{key}`` the right to PUT them
once. The token is a JWT (HS256, as Supabase Storage's) whose claims name
the method, the tenant (the scope the bytes live under: a signed link is
used anonymously, so it must carry it), the bucket, the key and the expiry;
a transform and the upload's upsert flag are signed too, so none of them can
be changed in the link.

The creator's rights are checked when the link is made (``read`` on the
bucket to sign a download, ``create``, and ``update`` for an upsert, to sign
an upload), as Supabase Storage does; the link is then a bearer capability
until it expires, bounded by `MAX_EXPIRY` (downloads) and `UPLOAD_EXPIRY`
(uploads). Revoking one early means rotating ``JWT_SECRET``.

An upload link is not one-time (Supabase's is not either): it names one key,
and without upsert a second use finds the object there and gets 409, so it
never makes a second object; with upsert it may replace that one object
until it expires.

It is signed with a key derived from ``JWT_SECRET`` for this purpose alone
(HMAC of the secret and a label): an access token never verifies as a signed
link and a signed link never as an access token, and a link for one key,
bucket, tenant or method is refused for any other.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import jwt

from apprun.kernel.context import RequestContext
from apprun.kernel.errors import BadRequest, Forbidden
from apprun.storage.buckets import bucket_object, tenant_of
from apprun.storage.images import Transform, output_format, parse_transform
from apprun.storage.keys import object_key
from apprun.storage.mime import essence
from apprun.storage.render import Renditions
from apprun.storage.rows import StoredObject, fetch_object
from apprun.storage.service import Download, Storage, Upload

__all__ = [
    "MAX_EXPIRY",
    "MAX_SIGN",
    "UPLOAD_EXPIRY",
    "Grant",
    "SignedUrls",
    "Signer",
    "acting_for",
    "expiry_seconds",
    "link_path",
]

#: The longest a signed download link may live: one year, as Supabase Storage allows.
MAX_EXPIRY = 365 * 24 * 3600
#: How long a signed upload link lives: two hours, fixed, as Supabase Storage's.
UPLOAD_EXPIRY = 2 * 3600
#: The most links one request signs (``POST /object/sign/{bucket}`` with ``paths``).
MAX_SIGN = 1000
#: Supabase Storage's words for a path it signed no link for.
_NOT_SIGNED = "Either the object does not exist or you do not have access to it"
_LABEL = b"apprun.storage.signed-url.v1"
_AUDIENCE = "apprun-storage"

Method = Literal["GET", "PUT"]


@dataclass(frozen=True, slots=True)
class Grant:
    """What one signed link allows."""

    method: Method
    scope: str
    bucket: str
    key: str
    expires: int
    #: Who made the link (None for a service key): an upload through it is theirs.
    creator: str | None = None
    upsert: bool = False
    #: `apprun.storage.images.Transform.claims` of a rendered download; empty for the bytes as stored.
    transform: Mapping[str, str] = field(default_factory=dict)


def expiry_seconds(value: object) -> int:
    """A body's ``expiresIn`` (storage3 sends it as text, supabase-js as a number): 1..`MAX_EXPIRY`, else 400."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_EXPIRY:
        raise BadRequest("storage.invalid_expiry", params={"max": MAX_EXPIRY})
    return int(text)


def link_path(route: str, bucket: str, key: str, token: str) -> str:
    """A signed link relative to ``/storage/v1`` (as Supabase answers it and its clients join it)."""
    return f"/{route}/{quote(bucket, safe='')}/{quote(key, safe='/')}?token={token}"


class Signer:
    """Signs and checks `Grant` tokens with a key of its own, derived from the deployment's secret."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()

    def sign(self, grant: Grant) -> str:
        claims: dict[str, Any] = {
            "aud": _AUDIENCE,
            "m": grant.method,
            "s": grant.scope,
            "b": grant.bucket,
            "k": grant.key,
            "exp": grant.expires,
        }
        if grant.creator is not None:
            claims["c"] = grant.creator
        if grant.upsert:
            claims["u"] = True
        if grant.transform:
            claims["t"] = dict(grant.transform)
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, token: str, *, method: Method, bucket: str, key: str, now: float | None = None) -> Grant:
        """The grant ``token`` carries, if it is for ``method`` on ``bucket``/``key`` and not expired; else 403."""
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["HS256"],
                audience=_AUDIENCE,
                options={"require": ["exp", "aud"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            raise Forbidden("storage.signature_invalid") from None
        if (claims.get("m"), claims.get("b"), claims.get("k")) != (method, bucket, key) or not isinstance(
            claims.get("s"), str
        ):
            raise Forbidden("storage.signature_invalid")
        expires = claims["exp"]
        if not isinstance(expires, int) or expires <= (time.time() if now is None else now):
            raise Forbidden("storage.signature_expired")
        transform = claims.get("t") or {}
        creator = claims.get("c")
        if not isinstance(transform, dict) or not isinstance(creator, str | None):
            raise Forbidden("storage.signature_invalid")
        return Grant(method, claims["s"], bucket, key, expires, creator, claims.get("u") is True, transform)


class SignedUrls:
    """Makes signed links for a signed-in caller and serves them to whoever holds one."""

    def __init__(self, storage: Storage, signer: Signer, renditions: Renditions) -> None:
        self.storage = storage
        self.signer = signer
        #: The render routes' cache too: one dependency per handler keeps Litestar's resolution sequential.
        self.renditions = renditions

    async def sign_download(
        self, ctx: RequestContext, bucket_id: str, key: str, expires_in: int, transform: Transform | None
    ) -> str:
        """A link to GET an object the caller may read (404 if there is none), rendered if ``transform``."""
        found = await self.storage.open(ctx, bucket_id, key)
        if transform is not None:
            output_format(transform, essence(found.object.mime_type))  # 400 now, not when the link is used
        route = "render/image/sign" if transform is not None else "object/sign"
        grant = Grant(
            "GET",
            tenant_of(ctx),
            found.bucket.id,
            found.object.name,
            int(time.time()) + expires_in,
            ctx.user_id,
            transform=transform.claims() if transform is not None else {},
        )
        return link_path(route, grant.bucket, grant.key, self.signer.sign(grant))

    async def sign_downloads(
        self, ctx: RequestContext, bucket_id: str, keys: list[str], expires_in: int
    ) -> list[dict[str, Any]]:
        """A link per key, or an error in its place for a key that is invalid or names no object."""
        if len(keys) > MAX_SIGN:
            raise BadRequest("storage.too_many_paths", params={"max": MAX_SIGN})
        await self.storage.rbac.require(ctx, "read", bucket_object(bucket_id))
        bucket = await self.storage.buckets.find(tenant_of(ctx), bucket_id)
        expires = int(time.time()) + expires_in
        signed: list[dict[str, Any]] = []
        async with self.storage.db.read() as conn:
            for asked in keys:
                try:
                    name = object_key(asked)
                except BadRequest:
                    name = None
                if name is None or await fetch_object(conn, bucket.tenant_id, bucket.id, name) is None:
                    signed.append({"error": _NOT_SIGNED, "path": asked, "signedURL": None})
                    continue
                grant = Grant("GET", tenant_of(ctx), bucket.id, name, expires, ctx.user_id)
                url = link_path("object/sign", bucket.id, name, self.signer.sign(grant))
                signed.append({"error": None, "path": asked, "signedURL": url})
        return signed

    async def sign_upload(self, ctx: RequestContext, bucket_id: str, key: str, *, upsert: bool) -> tuple[str, str]:
        """A link to PUT ``key`` once (or, with ``upsert``, to replace it) for `UPLOAD_EXPIRY`: its path and token."""
        name = object_key(key)
        await self.storage.rbac.require(ctx, "create", bucket_object(bucket_id))
        if upsert:
            await self.storage.rbac.require(ctx, "update", bucket_object(bucket_id))
        bucket = await self.storage.buckets.find(tenant_of(ctx), bucket_id)
        grant = Grant("PUT", tenant_of(ctx), bucket.id, name, int(time.time()) + UPLOAD_EXPIRY, ctx.user_id, upsert)
        token = self.signer.sign(grant)
        return link_path("object/upload/sign", bucket.id, name, token), token

    def grant(self, token: str, method: Method, bucket_id: str, key: str) -> Grant:
        """The grant of a link used for ``method`` on ``bucket_id``/``key``; 403 for any other or expired."""
        return self.signer.verify(token, method=method, bucket=bucket_id, key=object_key(key))

    async def open(self, ctx: RequestContext, grant: Grant) -> Download:
        """The object a GET grant names, rendered if it carries a transform."""
        found = await self.storage.open(acting_for(ctx, grant), grant.bucket, grant.key)
        if not grant.transform:
            return found
        return await self.renditions.open(found, parse_transform(grant.transform))

    async def upload(self, ctx: RequestContext, grant: Grant, body: Upload) -> StoredObject:
        """An upload through a PUT grant: the normal upload, as its creator, with the upsert it was signed with."""
        return await self.storage.upload(acting_for(ctx, grant), grant.bucket, grant.key, body, upsert=grant.upsert)


def acting_for(ctx: RequestContext, grant: Grant) -> RequestContext:
    """The context a link's holder acts in: the grant's tenant, as its creator, allowed what the grant names.

    The holder is anonymous (or signed in elsewhere: ignored); the creator's rights were checked when the
    link was made, and the grant is the capability since (Supabase Storage's model). The ``service``
    method makes RBAC allow; every call made with this context is for the grant's one bucket and key.
    """
    return RequestContext(
        request_id=ctx.request_id,
        locale=ctx.locale,
        trace_id=ctx.trace_id,
        user_id=grant.creator,
        tenant_id=grant.scope,
        auth_method="service",
        client_ip=ctx.client_ip,
    )
