"""The transactional outbox: messages written with the data they belong to.

Rows are inserted in the caller's transaction; the relay publishes them to
Redis and deletes them.  A writer wakes the relay with a NOTIFY only while the
relay says it sleeps (`relay_wakeup.sleeping`): NOTIFY takes a database-wide
lock at commit, and under load, when the relay never sleeps, no writer pays it.  Each row keeps a
stable Dramatiq message id, so a republish after a relay crash carries the
same id and consumers can recognise the duplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from booking_core.messaging.contracts import AUDIT, audit_payload
from booking_core.telemetry import tracing

CHANNEL = "booking_outbox"
#: Wake a sleeping relay; a no-op (no NOTIFY, no lock) while it is busy draining.
WAKE_SQL = f"SELECT pg_notify('{CHANNEL}', '') FROM relay_wakeup WHERE sleeping"


@dataclass(frozen=True)
class OutboxMessage:
    """A Dramatiq message waiting to be published."""

    queue: str
    actor: str
    payload: dict
    options: dict = field(default_factory=dict)
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _with_trace(options: dict, carrier: dict) -> dict:
    """`options` plus the current trace context, unless they already carry one."""
    if tracing.OPTION in options or not carrier:
        return options
    return {**options, tracing.OPTION: carrier}


def booking_event_id(booking_id: str, kind: str) -> str:
    """The id of a booking's one event of `kind`: derived, so a redelivered task records it once."""
    return str(uuid.uuid5(uuid.UUID(str(booking_id)), kind))


def booking_event(kind: str, *, tenant_id: str, booking_id: str, actor: str, occurred_at: datetime,
                  details: dict) -> OutboxMessage:
    """The audit message for a booking's `kind` event (email.sent, invoice.issued)."""
    event_id = booking_event_id(booking_id, kind)
    payload = audit_payload(event_id=event_id, kind=kind, tenant_id=tenant_id, booking_id=str(booking_id),
                            actor=actor, occurred_at=occurred_at.astimezone(UTC).isoformat(), details=details)
    return OutboxMessage(AUDIT.queue, AUDIT.actor, payload, message_id=event_id)


def action_event(kind: str, *, tenant_id: str, booking_id: str | None, actor: str, details: dict) -> OutboxMessage:
    """The audit message for a person's action (a requeue, a pause, a webhook replay), with a fresh event id.

    Unlike a booking's events, an action may happen many times, so each gets its own id;
    the caller adds it in the transaction of the action, so the entry exists if and only if it committed.
    """
    event_id = str(uuid.uuid4())
    payload = audit_payload(event_id=event_id, kind=kind, tenant_id=tenant_id, booking_id=booking_id, actor=actor,
                            occurred_at=datetime.now(UTC).isoformat(), details=details)
    return OutboxMessage(AUDIT.queue, AUDIT.actor, payload, message_id=event_id)


def as_rows(messages: list[OutboxMessage]) -> list[dict]:
    """`messages` as outbox rows (JSON-ready dicts), with the current trace context."""
    carrier = tracing.current_carrier()
    return [{"message_id": m.message_id, "queue": m.queue, "actor": m.actor, "payload": m.payload,
             "options": _with_trace(m.options, carrier)} for m in messages]


def add(conn: psycopg.Connection, messages: list[OutboxMessage]) -> None:
    """Insert `messages` in the current transaction and wake the relay at commit if it sleeps.

    Messages written inside a traced operation (a request, a worker's task)
    carry its context, so the work they start continues the same trace.
    """
    if not messages:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO outbox (message_id, queue, actor, payload, options) VALUES (%s, %s, %s, %s, %s)",
            [(r["message_id"], r["queue"], r["actor"], Jsonb(r["payload"]), Jsonb(r["options"]))
             for r in as_rows(messages)],
        )
        cur.execute(WAKE_SQL)


def add_delayed(conn: psycopg.Connection, message: OutboxMessage, delay_ms: int) -> None:
    """Insert `message`, to be published `delay_ms` from now (a retry's backoff), in the current transaction.

    No NOTIFY: it is not due yet, and the relay's sweep finds it once it is.
    Its options are kept as they are (the retry count, the trace context of the first attempt).
    """
    conn.execute(
        "INSERT INTO outbox (message_id, queue, actor, payload, options, available_at)"
        " VALUES (%s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))",
        (message.message_id, message.queue, message.actor, Jsonb(message.payload), Jsonb(message.options),
         max(0, delay_ms) / 1000))
