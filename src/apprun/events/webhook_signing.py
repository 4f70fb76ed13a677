"""The Standard Webhooks scheme: a webhook's secret and the signature of a request.

The signature is ``v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``,
where the key is the base64 part of the ``whsec_…`` secret (see
https://www.standardwebhooks.com/), so receivers can verify it with the
scheme's own libraries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["new_secret", "sign"]


def new_secret() -> str:
    """A fresh ``whsec_…`` secret: 24 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of the Standard Webhooks scheme."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
