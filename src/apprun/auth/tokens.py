"""Access tokens: short-lived JWTs, signed with one configured algorithm.

HS256 with ``JWT_SECRET`` by default. With ``AUTH_JWT_ALGORITHM=EdDSA`` or
``RS256`` and a PEM private key (``AUTH_JWT_PRIVATE_KEY_FILE``), tokens are
signed with that key and its public half is published at
``/.well-known/jwks.json`` so other services can verify them.

Verification accepts exactly the configured algorithm (``alg=none`` and the
HS256/RS256 confusion are refused by construction), requires every claim
apprun issues, checks issuer and audience, and allows at most 30 s of clock
leeway. A token whose lifetime (``exp - iat``) exceeds ``AUTH_ACCESS_TTL``
plus the leeway, or whose ``iat`` lies in the future past the leeway, is
refused even with a good signature. Every failure is a 401 with ``WWW-Authenticate: Bearer
error="invalid_token"``, never a 500.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from apprun.kernel.errors import Unauthorized

__all__ = ["AccessClaims", "TokenKeys", "invalid_token"]

MAX_LEEWAY = 30
#: Verified tokens remembered per worker (a few hundred bytes each).
VERIFIED_CACHE = 10_000
_REQUIRED = ["exp", "iat", "sub", "sid", "iss", "aud"]


def invalid_token(code: str = "auth.invalid_token", description: str = "the access token is not valid") -> Unauthorized:
    """401 with the RFC 6750 challenge."""
    return Unauthorized(
        code,
        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
    )


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    sid: str
    tenant_id: str | None
    roles: tuple[str, ...]
    exp: int
    iat: int
    email: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256), used as the key id."""
    members = {k: jwk[k] for k in sorted(jwk) if k in ("crv", "e", "kty", "n", "x")}
    return _b64(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


class TokenKeys:
    """Signs and verifies apprun's access tokens."""

    def __init__(
        self,
        *,
        algorithm: str,
        secret: str,
        private_key_file: Path | None,
        issuer: str,
        audience: str,
        ttl: int,
        leeway: int,
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = min(max(leeway, 0), MAX_LEEWAY)
        #: Tokens whose signature and claims checked out, by their exact text (see `verify`).
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()
        self.kid: str | None = None
        self._public_jwk: dict[str, Any] | None = None
        if algorithm == "HS256":
            self._signing_key: Any = secret.encode()
            self._verify_key: Any = secret.encode()
            return
        if private_key_file is None:
            raise ValueError(f"AUTH_JWT_ALGORITHM={algorithm} needs AUTH_JWT_PRIVATE_KEY_FILE (a PEM private key)")
        private = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
        if algorithm == "EdDSA" and not isinstance(private, ed25519.Ed25519PrivateKey):
            raise ValueError("AUTH_JWT_ALGORITHM=EdDSA needs an Ed25519 private key")
        if algorithm == "RS256" and not isinstance(private, rsa.RSAPrivateKey):
            raise ValueError("AUTH_JWT_ALGORITHM=RS256 needs an RSA private key")
        if isinstance(private, rsa.RSAPrivateKey) and private.key_size < 2048:
            raise ValueError("RS256 keys must have at least 2048 bits")
        public: Any = private.public_key()
        jwk_json = (
            jwt.algorithms.OKPAlgorithm.to_jwk(public)
            if algorithm == "EdDSA"
            else jwt.algorithms.RSAAlgorithm.to_jwk(public)
        )
        jwk: dict[str, Any] = json.loads(jwk_json)
        self.kid = _thumbprint(jwk)
        jwk.update({"kid": self.kid, "alg": algorithm, "use": "sig"})
        self._public_jwk = jwk
        self._signing_key = private
        self._verify_key = public

    def jwks(self) -> dict[str, Any]:
        """The public keys (none for HS256: a shared secret is never published)."""
        return {"keys": [self._public_jwk] if self._public_jwk else []}

    def issue(
        self,
        *,
        user_id: str,
        session_id: str,
        tenant_id: str | None,
        roles: list[str],
        email: str | None,
        now: int | None = None,
    ) -> tuple[str, int]:
        """A signed access token and its expiry (Unix seconds)."""
        iat = int(now if now is not None else time.time())
        exp = iat + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "sid": session_id,
            "tenant_id": tenant_id,
            "roles": roles,
            "email": email,
            # Supabase/PostgREST clients read `role`; everyone signed in is "authenticated".
            "role": "authenticated",
            "iat": iat,
            "exp": exp,
        }
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self._signing_key, algorithm=self.algorithm, headers=headers), exp

    def verify(self, token: str) -> AccessClaims:
        """The token's claims, or `invalid_token` (401).

        A token that verified once is remembered by its exact text until it
        expires (at most `VERIFIED_CACHE` tokens, least recently used out
        first): the same bytes carry the same signature, so checking it again
        would give the same answer, and it costs ~0.25 ms a request (PyJWT
        validates every base64 character in Python). Expiry is still checked
        on every use; revocation is the session check's job, as before.
        """
        known = self._verified.get(token)
        if known is not None:
            if known.exp + self.leeway < time.time():
                self._verified.pop(token, None)
                raise invalid_token("auth.token_expired", "the access token has expired")
            self._verified.move_to_end(token)
            return known
        claims = self._decode(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError:
            raise invalid_token("auth.token_expired", "the access token has expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise invalid_token() from None
        sub, sid = claims.get("sub"), claims.get("sid")
        roles = claims.get("roles") or []
        tenant = claims.get("tenant_id")
        if not isinstance(sub, str) or not isinstance(sid, str) or not isinstance(roles, list):
            raise invalid_token()
        if tenant is not None and not isinstance(tenant, str):
            raise invalid_token()
        exp, iat = int(claims["exp"]), int(claims["iat"])
        # apprun never mints a token living longer than its TTL, nor one issued in the future: such a
        # token was forged with the key (or minted under another config) and would outlive any
        # rotation of the TTL, so it is refused whatever its signature says.
        if exp - iat > self.ttl + self.leeway:
            raise invalid_token(description="the token lives longer than this server issues tokens for")
        if iat > time.time() + self.leeway:
            raise invalid_token(description="the token was issued in the future")
        return AccessClaims(
            sub=sub,
            sid=sid,
            tenant_id=tenant,
            roles=tuple(str(r) for r in roles),
            exp=exp,
            iat=iat,
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        )
