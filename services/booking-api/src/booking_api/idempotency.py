"""`Idempotency-Key` for POST, after the IETF httpapi idempotency-key draft.

Within the request's transaction: a transaction-scoped advisory lock on
(tenant, key) tells a concurrent duplicate to come back later (409); a stored
response for the key is replayed if the request is the same, refused (422)
if not.  The key row commits with the booking, so a crash stores neither.
Keys expire after `Settings.idempotency_ttl_seconds` (default 24 h).
"""

from __future__ import annotations

import hashlib
import json
import re

import psycopg
from psycopg.types.json import Jsonb

from booking_api.contract import IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_PATTERN
from booking_api.problems import ApiError

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


def request_hash(body: object) -> bytes:
    """A fingerprint of the parsed request, insensitive to key order and spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def begin(conn: psycopg.Connection, tenant_id: str, key: str, fingerprint: bytes,
          ttl_seconds: int) -> dict | None:
    """Lock the key for this transaction; return a stored response to replay, if any."""
    locked = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (f"{tenant_id}:{key}",)
    ).fetchone()
    if not list(locked.values())[0]:
        raise ApiError(409, "idempotency-in-flight",
                       "A request with this Idempotency-Key is still being processed; retry later.",
                       headers={"Retry-After": "1"})
    row = conn.execute(
        "SELECT request_hash, status, body, location, created_at > now() - make_interval(secs => %s)"
        " AS live FROM idempotency_keys WHERE tenant_id = %s AND key = %s",
        (ttl_seconds, tenant_id, key),
    ).fetchone()
    if row is None:
        return None
    if not row["live"]:
        conn.execute("DELETE FROM idempotency_keys WHERE tenant_id = %s AND key = %s", (tenant_id, key))
        return None
    if bytes(row["request_hash"]) != fingerprint:
        raise ApiError(422, "idempotency-key-reused",
                       "This Idempotency-Key was used with a different request body.",
                       errors=[{"field": "Idempotency-Key", "message": "already used for another request"}])
    return row


def store(conn: psycopg.Connection, tenant_id: str, key: str, fingerprint: bytes, status: int,
          body: dict, location: str | None) -> None:
    """Remember the response for `key`, in the same transaction as the booking."""
    conn.execute(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, location)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (tenant_id, key, fingerprint, status, Jsonb(body), location),
    )


def purge_expired(conn: psycopg.Connection, ttl_seconds: int) -> int:
    """Delete expired keys; the relay calls this now and then."""
    cur = conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)",
        (ttl_seconds,),
    )
    return cur.rowcount
