"""Idempotency-Key storage, after the IETF httpapi idempotency-key draft.

Within the request's transaction: a transaction-scoped advisory lock on
(tenant, key) tells a concurrent duplicate to come back later; a stored
response for the key is replayed if the request is the same, refused if not.
The key row commits with the booking, so a crash stores neither.  Keys expire
after `Settings.idempotency_ttl_seconds` (default 24 h); the outbox relay
purges expired ones now and then.

This is the SQL half only, shared by the API (which maps the exceptions below
to HTTP problems) and the relay (which purges): it imports no web framework.
"""

from __future__ import annotations

import hashlib
import json

import psycopg
from psycopg.types.json import Jsonb


class IdempotencyError(Exception):
    """The key cannot be used for this request now."""


class KeyInFlight(IdempotencyError):
    """Another request with the same key holds its lock: retry later."""


class KeyReused(IdempotencyError):
    """The key was already used with a different request body."""


def request_hash(body: object) -> bytes:
    """A fingerprint of the parsed request, insensitive to key order and spacing."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def begin(conn: psycopg.Connection, tenant_id: str, key: str, fingerprint: bytes,
          ttl_seconds: int) -> dict | None:
    """Lock the key for this transaction; return a stored response to replay, if any.

    Raises `KeyInFlight` when another transaction holds the key and `KeyReused`
    when the stored request differs; an expired key is deleted and treated as new.
    """
    # Rank 1 of docs/lock-order.md, and a try: it never waits, so it can close no cycle.
    locked = conn.execute(
        "SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (f"{tenant_id}:{key}",)
    ).fetchone()
    if not list(locked.values())[0]:
        raise KeyInFlight(key)
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
        raise KeyReused(key)
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
    """Delete expired keys; return how many.  The relay calls this now and then."""
    cur = conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)",
        (ttl_seconds,),
    )
    return cur.rowcount
