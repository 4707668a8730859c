"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per
secret, separated by spaces, so receivers can rotate keys. The ``standardwebhooks``
package verifies these in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_…`` secret; ``ValueError`` (without the secret) if invalid."""
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not a Standard Webhooks secret (expected whsec_ followed by base64)"
        ) from None
    if not key:
        raise ValueError("empty webhook secret")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` under ``secret``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The ``webhook-*`` headers for one attempt; unsigned (no signature header) without secrets."""
    out = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secrets:
        out["webhook-signature"] = " ".join(sign(s, msg_id, timestamp, body) for s in secrets)
    return out
