"""Deliveries of webhook events: what the worker sends, what it records, the log, and replay.

A delivery is one event for one endpoint (migration 0013 creates it with the
event).  Its `attempts` count the current round; a replay starts a new round,
and `webhook_attempts` keeps every attempt of every round; every replay is
audited with who asked for it, whichever front end (API, console, CLI) asked.  Recording an
attempt is one short transaction taken after the HTTP request, never around it:
the endpoint's row (its failure streak, 7a in docs/lock-order.md), then the
delivery's (7b).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from booking_core.messaging import outbox
from booking_core.messaging.contracts import WEBHOOK
from booking_core.telemetry import tracing
from booking_core.webhooks.payload import message_id

#: What the log keeps of a receiver's answer (the worker reads at most 64 KiB of it).
MAX_STORED_RESPONSE = 1024
MAX_STORED_ERROR = 500
OPEN_STATES = ("pending", "retrying")
STATES = ("pending", "retrying", "delivered", "dead")


@dataclass(frozen=True)
class Outcome:
    """One attempt's result: an HTTP status, or an error with no status."""

    status: int | None
    latency_ms: int
    error: str | None = None
    response: str | None = None
    retry_after_ms: int | None = None
    #: Sending again cannot help (the SSRF guard refused the address, the payload is over the cap).
    permanent: bool = False
    #: The attempt ran into its total deadline: it held a worker thread for all of it.
    timed_out: bool = False


def _uuid(value) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def for_sending(conn: psycopg.Connection, delivery_id: str, tenant_id: str) -> dict | None:
    """The delivery with its event and endpoint, or None when it is not this tenant's."""
    delivery_id, tenant_id = _uuid(delivery_id), _uuid(tenant_id)
    if delivery_id is None or tenant_id is None:
        return None
    return conn.execute(
        "SELECT d.id::text AS id, d.state, d.attempts, d.endpoint_id::text AS endpoint_id,"
        " d.event_id::text AS event_id, d.tenant_id::text AS tenant_id, ev.payload, ev.type,"
        " ev.trace_id, e.url, e.secret, e.previous_secret, e.previous_secret_until, e.enabled,"
        " e.deleted_at IS NOT NULL AS deleted"
        " FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id"
        " JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.tenant_id = d.tenant_id"
        " WHERE d.id = %s AND d.tenant_id = %s",
        (delivery_id, tenant_id)).fetchone()


def _clip(text: str | None, limit: int) -> str | None:
    if text is None:
        return None
    text = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)
    return text[:limit]


def record(conn: psycopg.Connection, delivery: dict, outcome: Outcome, *, state: str, attempt: int,
           next_delay_ms: int | None, disable_after_seconds: int) -> dict:
    """Record one attempt in the caller's transaction; returns {"recorded", "disabled"}.

    A success ends the endpoint's failure streak; a failure starts or extends
    it, and a streak older than `disable_after_seconds` disables the endpoint
    (the reason and time are kept and shown).  The delivery row is written only
    while it is open, so a duplicate message's late attempt cannot reopen it.
    """
    disabled = False
    if state == "delivered":
        conn.execute("UPDATE webhook_endpoints SET failing_since = NULL"
                     " WHERE id = %s AND failing_since IS NOT NULL", (delivery["endpoint_id"],))
    else:
        row = conn.execute(
            "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, clock_timestamp()) WHERE id = %s"
            " RETURNING enabled, failing_since,"
            " failing_since <= clock_timestamp() - make_interval(secs => %s) AS expired",
            (delivery["endpoint_id"], disable_after_seconds)).fetchone()
        if row is not None and row["enabled"] and row["expired"]:
            conn.execute(
                "UPDATE webhook_endpoints SET enabled = false, disabled_at = clock_timestamp(),"
                " updated_at = clock_timestamp(), disabled_reason = %s WHERE id = %s",
                (f"failing continuously since {row['failing_since'].isoformat()}", delivery["endpoint_id"]))
            disabled = True
    updated = conn.execute(
        "UPDATE webhook_deliveries SET state = %(state)s, attempts = %(attempt)s,"
        " next_attempt_at = CASE WHEN %(delay)s::bigint IS NULL THEN NULL"
        "   ELSE clock_timestamp() + make_interval(secs => %(delay)s::bigint / 1000.0) END,"
        " last_status = %(status)s, last_error = %(error)s, last_response = %(response)s,"
        " last_latency_ms = %(latency)s, updated_at = clock_timestamp(),"
        " delivered_at = CASE WHEN %(state)s = 'delivered' THEN clock_timestamp() END"
        " WHERE id = %(id)s AND state IN ('pending', 'retrying') RETURNING next_attempt_at",
        {"state": state, "attempt": attempt, "delay": next_delay_ms, "status": outcome.status,
         "error": _clip(outcome.error, MAX_STORED_ERROR), "response": _clip(outcome.response, MAX_STORED_RESPONSE),
         "latency": outcome.latency_ms, "id": delivery["id"]}).fetchone()
    conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status, error, latency_ms, response, next_attempt_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (delivery["id"], attempt, outcome.status, _clip(outcome.error, MAX_STORED_ERROR), outcome.latency_ms,
         _clip(outcome.response, MAX_STORED_RESPONSE), updated["next_attempt_at"] if updated else None))
    return {"recorded": updated is not None, "disabled": disabled}


def give_up(conn: psycopg.Connection, delivery_id: str, reason: str) -> None:
    """Mark an open delivery dead without an attempt (its endpoint is disabled or deleted)."""
    conn.execute("UPDATE webhook_deliveries SET state = 'dead', last_error = %s, next_attempt_at = NULL,"
                 " updated_at = clock_timestamp() WHERE id = %s AND state IN ('pending', 'retrying')",
                 (_clip(reason, MAX_STORED_ERROR), delivery_id))


DELIVERY_COLUMNS = (
    "d.id::text AS id, d.event_id::text AS event_id, ev.type AS event_type, ev.booking_id::text AS booking_id,"
    " ev.sequence, d.state, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.last_response,"
    " d.last_latency_ms, d.created_at, d.updated_at, d.delivered_at")


def page(conn: psycopg.Connection, tenant_id: str, endpoint_id: str, *, state: str | None = None,
         limit: int = 50) -> list[dict]:
    """The endpoint's newest deliveries (the delivery log), optionally in one state."""
    return conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id"
        " WHERE d.endpoint_id = %s AND d.tenant_id = %s AND (%s::text IS NULL OR d.state = %s)"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT %s",
        (endpoint_id, tenant_id, state, state, limit)).fetchall()


def get(conn: psycopg.Connection, tenant_id: str, delivery_id: str) -> dict | None:
    """One delivery of the tenant with every attempt, or None."""
    delivery_id = _uuid(delivery_id)
    if delivery_id is None:
        return None
    row = conn.execute(
        f"SELECT {DELIVERY_COLUMNS}, d.endpoint_id::text AS endpoint_id FROM webhook_deliveries d"
        " JOIN webhook_events ev ON ev.id = d.event_id WHERE d.id = %s AND d.tenant_id = %s",
        (delivery_id, tenant_id)).fetchone()
    if row is not None:
        row["attempt_log"] = conn.execute(
            "SELECT attempt, at, status, error, latency_ms, response, next_attempt_at FROM webhook_attempts"
            " WHERE delivery_id = %s ORDER BY id", (delivery_id,)).fetchall()
    return row


def _trace_options() -> Jsonb:
    carrier = tracing.current_carrier()
    return Jsonb({tracing.OPTION: carrier} if carrier else {})


#: A replay starts a new round; a republished lost message goes on with the round it belongs to.
_NEW_ROUND = "state = 'pending', attempts = 0, next_attempt_at = NULL"
_SAME_ROUND = "next_attempt_at = NULL"
_REPLAY = """
WITH r AS (
    UPDATE webhook_deliveries d SET {sets}, updated_at = clock_timestamp()
    WHERE d.id IN (SELECT id FROM webhook_deliveries WHERE {where} ORDER BY id FOR UPDATE)
    RETURNING d.id, d.tenant_id
)
INSERT INTO outbox (message_id, queue, actor, payload, options)
SELECT gen_random_uuid(), %(queue)s, %(actor)s,
       jsonb_build_object('delivery_id', r.id::text, 'tenant_id', r.tenant_id::text), %(options)s
FROM r RETURNING 1
"""


def replay(conn: psycopg.Connection, tenant_id: str, delivery_id: str, *, actor: str) -> str | None:
    """Send a finished (dead or delivered) delivery again, as a new round with the same webhook-id.

    Returns "replayed", "open" (it is still being tried: nothing to do), or None when not found.
    A replay is audited (`webhook.replayed`, in the tenant's chain, as `actor`) in its own
    transaction, so the entry exists exactly when the replay does; "open" and None write nothing.
    """
    delivery_id = _uuid(delivery_id)
    if delivery_id is None:
        return None
    with conn.transaction():
        found = conn.execute(
            "SELECT d.state, d.endpoint_id::text AS endpoint_id, d.event_id::text AS event_id,"
            " ev.booking_id::text AS booking_id FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id"
            " WHERE d.id = %s AND d.tenant_id = %s", (delivery_id, tenant_id)).fetchone()
        if found is None:
            return None
        rows = conn.execute(
            _REPLAY.format(sets=_NEW_ROUND,
                           where="id = %(id)s AND tenant_id = %(tenant)s AND state IN ('dead', 'delivered')"),
            {"id": delivery_id, "tenant": tenant_id, "queue": WEBHOOK.queue, "actor": WEBHOOK.actor,
             "options": _trace_options()}).fetchall()
        if not rows:
            return "open"
        outbox.add(conn, [outbox.action_event(
            "webhook.replayed", tenant_id=tenant_id, booking_id=found["booking_id"], actor=actor,
            details={"delivery_id": delivery_id, "endpoint_id": found["endpoint_id"], "event_id": found["event_id"],
                     "webhook_id": message_id(found["event_id"]), "was": found["state"]})])
        conn.execute(outbox.WAKE_SQL)
    return "replayed"


def replay_since(conn: psycopg.Connection, tenant_id: str, endpoint_id: str, since: datetime, *,
                 dry_run: bool, actor: str) -> int:
    """Replay every dead delivery of the endpoint created at or after `since`; the count (only counted if dry).

    A replay of at least one delivery is audited once (`webhook.replayed_since`, with the
    endpoint, `since` and the count) in the replay's transaction; a dry run or one that
    matched nothing writes nothing.
    """
    endpoint_id = _uuid(endpoint_id)
    if endpoint_id is None:
        return 0
    params = {"endpoint": endpoint_id, "tenant": tenant_id, "since": since, "queue": WEBHOOK.queue,
              "actor": WEBHOOK.actor, "options": _trace_options()}
    where = "endpoint_id = %(endpoint)s AND tenant_id = %(tenant)s AND state = 'dead' AND created_at >= %(since)s"
    if dry_run:
        return conn.execute(f"SELECT count(*) AS n FROM webhook_deliveries WHERE {where}", params).fetchone()["n"]
    with conn.transaction():
        n = len(conn.execute(_REPLAY.format(sets=_NEW_ROUND, where=where), params).fetchall())
        if n:
            outbox.add(conn, [outbox.action_event(
                "webhook.replayed_since", tenant_id=tenant_id, booking_id=None, actor=actor,
                details={"endpoint_id": endpoint_id, "since": since.isoformat(), "count": n})])
            conn.execute(outbox.WAKE_SQL)
    return n


def stats(conn: psycopg.Connection) -> dict:
    """Platform-wide figures for the metrics: open and dead deliveries, how late the latest-due one is,
    endpoints by state, and the longest failure streak of an enabled endpoint (it is disabled at the limit)."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM webhook_deliveries WHERE state IN ('pending', 'retrying')) AS open,"
        " (SELECT count(*) FROM webhook_deliveries WHERE state = 'dead') AS dead,"
        " COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(coalesce(next_attempt_at, created_at)))"
        "   FROM webhook_deliveries WHERE state IN ('pending', 'retrying')"
        "   AND coalesce(next_attempt_at, created_at) <= now()), 0)::float AS overdue_seconds,"
        " count(*) FILTER (WHERE e.enabled AND e.failing_since IS NULL) AS healthy,"
        " count(*) FILTER (WHERE e.enabled AND e.failing_since IS NOT NULL) AS failing,"
        " count(*) FILTER (WHERE NOT e.enabled AND e.disabled_reason IS NOT NULL) AS auto_disabled,"
        " count(*) FILTER (WHERE NOT e.enabled AND e.disabled_reason IS NULL) AS disabled,"
        " COALESCE(EXTRACT(EPOCH FROM now() - min(e.failing_since) FILTER (WHERE e.enabled)), 0)::float"
        "   AS longest_failing_seconds"
        " FROM webhook_endpoints e WHERE e.deleted_at IS NULL").fetchone()


_STALE = """
SELECT d.id::text AS id FROM webhook_deliveries d
WHERE d.state IN ('pending', 'retrying')
  AND greatest(d.updated_at, coalesce(d.next_attempt_at, d.updated_at))
      < clock_timestamp() - make_interval(secs => %(after)s)
  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.payload->>'delivery_id' = d.id::text)
ORDER BY d.updated_at LIMIT %(limit)s
"""


def stale(conn: psycopg.Connection, after_seconds: float, *, limit: int = 500) -> list[str]:
    """Open deliveries with no progress and no outbox row for `after_seconds` past their due time.

    Their message may still be in Redis (the caller checks): only a lost one is republished.
    """
    return [r["id"] for r in conn.execute(_STALE, {"after": after_seconds, "limit": limit}).fetchall()]


def republish(conn: psycopg.Connection, delivery_id: str, after_seconds: float) -> bool:
    """Write a lost delivery's message to the outbox again, if it is still stale (the same round goes on)."""
    where = ("id = %(id)s AND state IN ('pending', 'retrying') AND greatest(updated_at, coalesce(next_attempt_at,"
             " updated_at)) < clock_timestamp() - make_interval(secs => %(after)s)")
    with conn.transaction():
        rows = conn.execute(_REPLAY.format(sets=_SAME_ROUND, where=where),
            {"id": delivery_id, "after": after_seconds, "queue": WEBHOOK.queue, "actor": WEBHOOK.actor,
             "options": Jsonb({})}).fetchall()
        if rows:
            conn.execute(outbox.WAKE_SQL)
    return bool(rows)


def fan_out(conn: psycopg.Connection, event_id: str, tenant_id: str) -> int:
    """Write the deliveries (and their messages) of the tenant's event; idempotent; how many were written."""
    event_id, tenant_id = _uuid(event_id), _uuid(tenant_id)
    if event_id is None or tenant_id is None:
        return 0
    row = conn.execute("SELECT webhook_fan_out(id) AS n FROM webhook_events WHERE id = %s AND tenant_id = %s",
                       (event_id, tenant_id)).fetchone()
    return row["n"] if row else 0


def fan_out_stale(conn: psycopg.Connection, after_seconds: float, *, limit: int = 500) -> int:
    """Fan out the events still waiting `after_seconds` after they occurred (their message was lost)."""
    rows = conn.execute(
        "SELECT id::text FROM webhook_events WHERE fanned_out_at IS NULL"
        " AND occurred_at < clock_timestamp() - make_interval(secs => %s) ORDER BY occurred_at LIMIT %s",
        (after_seconds, limit)).fetchall()
    done = 0
    for r in rows:
        with conn.transaction():
            conn.execute("SELECT webhook_fan_out(%s)", (r["id"],))
        done += 1
    return done
