"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.

A secret is `whsec_` followed by the base64 of its key bytes.  The receiver
verifies with the same secret; during a rotation's overlap each delivery carries
one signature per live secret, space-separated, so a receiver still holding the
old secret and one already holding the new one both accept it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
#: 24 random bytes, as Svix and the Standard Webhooks libraries generate.
KEY_BYTES = 24


def new_secret() -> str:
    """A fresh signing secret, shown to the tenant once."""
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_of(secret: str) -> bytes:
    """The HMAC key a `whsec_` secret stands for; ValueError when it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError("a signing secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(PREFIX):], validate=True)
    except ValueError:
        raise ValueError("a signing secret is whsec_ and base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature of `body` sent as message `msg_id` at `timestamp` (Unix seconds)."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key_of(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per live secret, newest first."""
    if not secrets_:
        raise ValueError("no secret to sign with")
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
    }
