"""Tenants and their bearer tokens.

A token is shown once and only its SHA-256 is stored: tokens are 256 random
bits, so a fast hash is enough and lets each request authenticate with one
indexed lookup.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

import psycopg

TOKEN_PREFIX = "bk_"  # noqa: S105 - a public prefix, not a secret

#: The tenant-name rule: the CHECK on tenants.name (migration 0001), said again here so that a
#: bad name is one clear error before the insert; the database's refusal is a CheckViolation
#: traceback to a person at a terminal.  test_admin_tokens.py checks that the two agree.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TENANT_NAME_RULE = ("1 to 63 characters, lowercase letters a-z, digits, '-' and '_', "
                    "starting with a letter or a digit")


class InvalidTenantName(ValueError):
    """A tenant name against the tenant-name rule; the message names the rule."""


def check_tenant_name(name: str) -> str:
    """`name` if it follows the tenant-name rule, else InvalidTenantName (showing at most 80 characters of it)."""
    if not TENANT_NAME.fullmatch(name):
        raise InvalidTenantName(f"tenant name {repr(name)[:80]} breaks the tenant-name rule: {TENANT_NAME_RULE}")
    return name


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def ensure_tenant(conn: psycopg.Connection, name: str) -> dict:
    """The tenant called `name`, created if missing: {'id', 'name'}; InvalidTenantName against the rule."""
    check_tenant_name(name)
    row = conn.execute(
        "INSERT INTO tenants (id, name) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
        " RETURNING id::text, name",
        (uuid.uuid4(), name),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT id::text, name FROM tenants WHERE name = %s", (name,)).fetchone()
    return dict(row)


def create_token(conn: psycopg.Connection, tenant_id: str, *, admin: bool = False, label: str = "") -> dict:
    """Create a token; the returned dict holds the plain token, the only time it exists."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO api_tokens (id, tenant_id, token_hash, prefix, is_admin, label)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id::text, created_at",
        (uuid.uuid4(), tenant_id, hash_token(token), token[:10], admin, label),
    ).fetchone()
    return {"id": row["id"], "token": token, "tenant_id": tenant_id, "admin": admin, "label": label}


def list_tokens(conn: psycopg.Connection, tenant_name: str | None = None) -> list[dict]:
    """Every token (never its secret), newest first, optionally for one tenant."""
    return conn.execute(
        "SELECT k.id::text, t.name AS tenant, k.prefix, k.is_admin AS admin, k.label,"
        " k.created_at, k.revoked_at FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE %(tenant)s::text IS NULL OR t.name = %(tenant)s ORDER BY k.created_at DESC",
        {"tenant": tenant_name},
    ).fetchall()


def revoke_token(conn: psycopg.Connection, token_id: str) -> bool:
    """Revoke a token by id; False when no live token has that id."""
    try:
        uuid.UUID(token_id)
    except ValueError:
        return False
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
    )
    return cur.rowcount == 1


def authenticate(conn: psycopg.Connection, token: str) -> dict | None:
    """The live token's identity {'token_id','tenant_id','tenant','admin'}, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return conn.execute(
        "SELECT k.id::text AS token_id, k.tenant_id::text, t.name AS tenant, k.is_admin AS admin,"
        " k.prefix FROM api_tokens k JOIN tenants t ON t.id = k.tenant_id"
        " WHERE k.token_hash = %s AND k.revoked_at IS NULL",
        (hash_token(token),),
    ).fetchone()


def live_token_ids(conn: psycopg.Connection, token_ids: list[str]) -> set[str]:
    """Those of `token_ids` that are still live (not revoked): one query however many are asked.

    For a service that holds streams open under tokens it authenticated once:
    it rechecks them all together, and ends the streams of the ones missing.
    """
    rows = conn.execute("SELECT id::text FROM api_tokens WHERE id = ANY(%s::uuid[]) AND revoked_at IS NULL",
                        (token_ids,)).fetchall()
    return {r["id"] for r in rows}


def list_tenants(conn: psycopg.Connection) -> list[dict]:
    """Every tenant, by name: [{'id', 'name'}]."""
    return conn.execute("SELECT id::text, name FROM tenants ORDER BY name").fetchall()


def find_tenant(conn: psycopg.Connection, name: str) -> dict | None:
    """The tenant called `name`, or None."""
    return conn.execute("SELECT id::text, name FROM tenants WHERE name = %s", (name,)).fetchone()
