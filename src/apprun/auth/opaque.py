"""Opaque secrets handed to clients: refresh tokens, one-time tokens, API keys.

They carry 256 bits of randomness, so a plain SHA-256 is the right way to
store them (a slow password hash buys nothing for values nobody can guess)
and lets the database find a token by its hash with an index.

Refresh tokens after the first of a session are *derived* from their parent
with an HMAC under a server key: a client that retries a refresh within the
grace window gets the very same child token back, so two concurrent
refreshes of one token both succeed without minting two live branches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["derive_child", "hash_token", "new_token"]


def new_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def derive_child(parent: str, key: bytes) -> str:
    digest = hmac.new(key, b"apprun refresh v1\x00" + parent.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def refresh_key(secret: str) -> bytes:
    """The derivation key: bound to the signing secret, separate from it."""
    return hmac.new(secret.encode(), b"apprun refresh-token derivation key", hashlib.sha256).digest()
