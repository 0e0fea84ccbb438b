"""A tenant's webhook endpoints: validated, stored with sealed secrets, rotated, never hard-deleted.

Every function takes the tenant's id and touches only that tenant's rows, as
the bookings do.  Input is untrusted: `check` names the field it refuses.  An
endpoint is marked deleted rather than deleted, so its delivery log stays and
the fan-out (which reads endpoints without locking them) never waits on a
delete (docs/lock-order.md, 7a).
"""

from __future__ import annotations

import ipaddress
import uuid
from datetime import UTC, datetime

import psycopg

from booking_core.webhooks import addresses, signing
from booking_core.webhooks.payload import EVENT_TYPES
from booking_core.webhooks.sealing import Sealer

MAX_URL = 2048
MAX_DESCRIPTION = 500
FIELDS = ("url", "description", "event_types", "enabled")

COLUMNS = ("id::text AS id, url, description, event_types, enabled, disabled_reason, disabled_at,"
           " failing_since, previous_secret_until, created_at, updated_at")


class FieldError(ValueError):
    """A field of an endpoint the client sent is not acceptable."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check(fields: dict, *, partial: bool, allowed: tuple = ()) -> dict:
    """The endpoint fields in `fields`, checked; FieldError names the first bad one.

    A URL whose host is an address literal is judged by the SSRF guard now;
    a name is judged at each delivery, when it is resolved.
    """
    if not isinstance(fields, dict):
        raise FieldError("body", "must be a JSON object")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise FieldError(unknown[0], "is not a field of an endpoint")
    if not partial and "url" not in fields:
        raise FieldError("url", "is required")
    out: dict = {}
    if "url" in fields:
        url = fields["url"]
        if not isinstance(url, str) or not url or len(url) > MAX_URL:
            raise FieldError("url", f"must be a URL of at most {MAX_URL} characters")
        try:
            _, host, _ = addresses.check_url(url)
            try:
                literal = ipaddress.ip_address(host.strip("[]"))
            except ValueError:
                literal = None
            if literal is not None:
                addresses.check(literal, allowed)
        except addresses.Refused as exc:
            raise FieldError("url", str(exc)) from None
        out["url"] = url
    if "description" in fields:
        d = fields["description"]
        if not isinstance(d, str) or len(d) > MAX_DESCRIPTION:
            raise FieldError("description", f"must be text of at most {MAX_DESCRIPTION} characters")
        out["description"] = d
    if "event_types" in fields:
        types = fields["event_types"]
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise FieldError("event_types", "must be a list of event types")
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad:
            raise FieldError("event_types", f"unknown event type {bad[0][:60]!r}; known: {', '.join(EVENT_TYPES)}")
        out["event_types"] = sorted(set(types))
    if "enabled" in fields:
        if not isinstance(fields["enabled"], bool):
            raise FieldError("enabled", "must be true or false")
        out["enabled"] = fields["enabled"]
    return out


def create(conn: psycopg.Connection, sealer: Sealer, tenant_id: str, fields: dict) -> tuple[dict, str]:
    """A new endpoint of the tenant from checked `fields`; returns it and its secret (shown once)."""
    secret = signing.new_secret()
    row = conn.execute(
        f"INSERT INTO webhook_endpoints (id, tenant_id, url, description, event_types, enabled, secret)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}",
        (str(uuid.uuid4()), tenant_id, fields["url"], fields.get("description", ""),
         fields.get("event_types", []), fields.get("enabled", True), sealer.seal(secret)),
    ).fetchone()
    return row, secret


def list_(conn: psycopg.Connection, tenant_id: str) -> list[dict]:
    return conn.execute(
        f"SELECT {COLUMNS} FROM webhook_endpoints WHERE tenant_id = %s AND deleted_at IS NULL"
        " ORDER BY created_at, id", (tenant_id,)).fetchall()


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def get(conn: psycopg.Connection, tenant_id: str, endpoint_id: str) -> dict | None:
    """The tenant's live endpoint, or None (another tenant's endpoint is as absent as a missing one)."""
    endpoint_id = _uuid(endpoint_id)
    if endpoint_id is None:
        return None
    return conn.execute(
        f"SELECT {COLUMNS} FROM webhook_endpoints WHERE id = %s AND tenant_id = %s AND deleted_at IS NULL",
        (endpoint_id, tenant_id)).fetchone()


def update(conn: psycopg.Connection, tenant_id: str, endpoint_id: str, fields: dict) -> dict | None:
    """Apply checked `fields`; enabling an endpoint forgets why and since when it was failing."""
    endpoint_id = _uuid(endpoint_id)
    if endpoint_id is None:
        return None
    sets = [f"{k} = %({k})s" for k in fields]
    if fields.get("enabled") is True:
        sets += ["disabled_reason = NULL", "disabled_at = NULL", "failing_since = NULL"]
    sets.append("updated_at = clock_timestamp()")
    return conn.execute(
        f"UPDATE webhook_endpoints SET {', '.join(sets)}"
        f" WHERE id = %(id)s AND tenant_id = %(tenant)s AND deleted_at IS NULL RETURNING {COLUMNS}",
        {**fields, "id": endpoint_id, "tenant": tenant_id}).fetchone()


def delete(conn: psycopg.Connection, tenant_id: str, endpoint_id: str) -> bool:
    """Mark the endpoint deleted (and disabled): no new deliveries; its log stays."""
    endpoint_id = _uuid(endpoint_id)
    if endpoint_id is None:
        return False
    row = conn.execute(
        "UPDATE webhook_endpoints SET deleted_at = clock_timestamp(), enabled = false,"
        " updated_at = clock_timestamp() WHERE id = %s AND tenant_id = %s AND deleted_at IS NULL RETURNING id",
        (endpoint_id, tenant_id)).fetchone()
    return row is not None


def rotate(conn: psycopg.Connection, sealer: Sealer, tenant_id: str, endpoint_id: str, *,
           overlap_seconds: int) -> tuple[dict, str] | None:
    """A new secret; the current one keeps signing for `overlap_seconds` (0: retired at once)."""
    endpoint_id = _uuid(endpoint_id)
    if endpoint_id is None:
        return None
    secret = signing.new_secret()
    row = conn.execute(
        "UPDATE webhook_endpoints SET previous_secret = CASE WHEN %(overlap)s > 0 THEN secret END,"
        " previous_secret_until = CASE WHEN %(overlap)s > 0"
        "   THEN clock_timestamp() + make_interval(secs => %(overlap)s) END,"
        f" secret = %(secret)s, updated_at = clock_timestamp()"
        f" WHERE id = %(id)s AND tenant_id = %(tenant)s AND deleted_at IS NULL RETURNING {COLUMNS}",
        {"overlap": overlap_seconds, "secret": sealer.seal(secret), "id": endpoint_id, "tenant": tenant_id},
    ).fetchone()
    return (row, secret) if row else None


def live_secrets(sealer: Sealer, secret: str, previous: str | None, previous_until: datetime | None,
                 *, now: datetime | None = None) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during its overlap."""
    now = now or datetime.now(UTC)
    out = [sealer.open(secret)]
    if previous and previous_until and now < previous_until:
        out.append(sealer.open(previous))
    return out


