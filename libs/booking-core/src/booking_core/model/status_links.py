"""Capability tokens for the customer's progress page: one booking, until an expiry.

A SaaS front end sends its customer to the page without sharing an API token,
so the URL itself is the credential.  It is an HMAC-SHA256 over a purpose tag,
the booking id and the expiry, keyed by a secret only the platform holds:

- scoped: the booking id is inside the signed text, so a token opens that booking only;
- expiring: the expiry is inside too, and checked on every use;
- revocable: rotating the secret (BOOKING_STATUS_SECRET) voids every token at once.

The expiry is the booking's creation time plus a TTL, not "now" plus a TTL, so
the link is the same every time the booking is shown (and its ETag is stable).
Pure functions; no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from datetime import datetime

_PURPOSE = b"booking-status-page/v1"

#: Exactly what `sign` writes: the booking id as `str(UUID)` (lowercase, dashed), the
#: expiry as `str(int)` (ASCII digits, no sign, no leading zero, no `_`), and the MAC as
#: unpadded URL-safe base64 of 32 bytes.  Python's own parsers (`uuid.UUID`, `int`) are
#: lenient (`urn:uuid:`, braces, uppercase, `+5`, `0_5`, Unicode digits), so a token
#: parsed with them opens its booking under many spellings: one link, many URLs, each
#: with its own cache entry and stream cap.  The regex is the parse.
_TOKEN = re.compile(r"(?P<booking>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
                    r"\.(?P<expires>0|[1-9][0-9]{0,18})"
                    r"\.(?P<mac>[A-Za-z0-9_-]{43})")


class InvalidToken(ValueError):
    """The token is malformed, forged, for another secret, or expired (the message says which)."""


def _mac(secret: str, booking_id: str, expires: int) -> str:
    text = b"|".join((_PURPOSE, booking_id.encode(), str(expires).encode()))
    digest = hmac.new(secret.encode(), text, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expiry_for(created_at: datetime, ttl_seconds: int) -> int:
    """The token's expiry (Unix seconds) for a booking created at `created_at`."""
    return int(created_at.timestamp()) + ttl_seconds


def sign(secret: str, booking_id: str, expires: int) -> str:
    """A token for `booking_id` valid until `expires` (Unix seconds)."""
    if not secret:
        raise ValueError("no status-page secret configured")
    booking_id = str(uuid.UUID(booking_id))
    return f"{booking_id}.{expires}.{_mac(secret, booking_id, expires)}"


def verify(secret: str, token: str, now: float) -> str:
    """The booking id the token opens; InvalidToken when it does not open one."""
    if not secret:
        raise InvalidToken("status pages are not configured")
    parsed = _TOKEN.fullmatch(token)
    if parsed is None:
        raise InvalidToken("malformed token")
    booking_id, expires, mac = parsed["booking"], int(parsed["expires"]), parsed["mac"]
    if not hmac.compare_digest(mac, _mac(secret, booking_id, expires)):
        raise InvalidToken("bad signature")
    if now >= expires:
        raise InvalidToken("expired")
    return booking_id
