"""`Idempotency-Key` for POST: the header's parsing and the HTTP answers.

The storage (advisory lock, replay, expiry) is `booking_core.model.idempotency`,
shared with the relay that purges expired keys; here its refusals become
problems: a concurrent duplicate gets 409 (come back later), a key reused
with another body gets 422.
"""

from __future__ import annotations

import re

import psycopg

from booking_api.contract import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from booking_api.problems import ApiError
from booking_core.model import idempotency as storage
from booking_core.model.idempotency import request_hash, store

__all__ = ["begin", "parse_key", "request_hash", "store"]

_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


def parse_key(header: str | None) -> str | None:
    """The key from the header (a structured-field string, quotes optional), or None."""
    if header is None:
        return None
    key = header.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY.fullmatch(key):
        raise ApiError(400, "bad-idempotency-key",
                       f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters.",
                       errors=[{"field": "Idempotency-Key", "message": "invalid key"}])
    return key


def begin(conn: psycopg.Connection, tenant_id: str, key: str, fingerprint: bytes,
          ttl_seconds: int) -> dict | None:
    """`booking_core.model.idempotency.begin`, its refusals as 409 and 422 problems."""
    try:
        return storage.begin(conn, tenant_id, key, fingerprint, ttl_seconds)
    except storage.KeyInFlight:
        raise ApiError(409, "idempotency-in-flight",
                       "A request with this Idempotency-Key is still being processed; retry later.",
                       headers={"Retry-After": "1"}) from None
    except storage.KeyReused:
        raise ApiError(422, "idempotency-key-reused",
                       "This Idempotency-Key was used with a different request body.",
                       errors=[{"field": "Idempotency-Key", "message": "already used for another request"}]) from None
