"""Rebuild a booking task's message from Postgres, for a retry or the reconciler.

Postgres is the source of truth (docs/architecture.md, decision 10): when Redis has lost a
task's message and no dead-letter record holds a copy, the message can still
be written again from the booking row, because payloads carry ids only.  The
trace is kept by continuing the booking's trace id (a fresh parent span id:
the original one was never stored), so the retried work shows up in the same
trace.  Retries start afresh: the options carry no Dramatiq run state.
The audit task's `booking.created` event gets an id derived from the booking,
so two republishes of it record one entry (the first attempt never recorded
one: the audit actor marks its task done in the transaction that appends it).
"""

from __future__ import annotations

import secrets
from datetime import UTC

import psycopg

from booking_core.messaging import outbox
from booking_core.messaging.contracts import AUDIT, CONTRACTS, audit_payload, task_payload
from booking_core.telemetry import tracing

#: Options Dramatiq or our middleware add while a message is processed; a republished message starts afresh.
RUN_OPTIONS = ("retries", "max_retries", "db_outages", "redis_message_id", "eta", "traceback",
               "dead_letter_reason")


def fresh_options(options: dict) -> dict:
    """`options` without the run state, so retries start from zero; the trace context stays."""
    return {k: v for k, v in options.items() if k not in RUN_OPTIONS}


def trace_options(trace_id: str | None) -> dict:
    """Options that continue the trace `trace_id` (W3C traceparent), or none without one."""
    if not trace_id or len(trace_id) != 32:
        return {}
    return {tracing.OPTION: {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}}


def task_message(conn: psycopg.Connection, booking_id: str, task: str, *, actor: str) -> outbox.OutboxMessage:
    """The message that does `task` of booking `booking_id`, rebuilt from its rows.

    `actor` is recorded as the audit event's actor when the task is the booking's own audit entry.
    Raises LookupError when there is no such task.
    """
    row = conn.execute(
        "SELECT b.tenant_id::text AS tenant_id, coalesce(t.trace_id, b.trace_id) AS trace_id,"
        " b.created_at"
        " FROM booking_tasks t JOIN bookings b ON b.id = t.booking_id"
        " WHERE t.booking_id = %s AND t.task = %s", (booking_id, task)).fetchone()
    if row is None:
        raise LookupError(f"booking {booking_id} has no task {task!r}")
    contract = CONTRACTS[task]
    options = trace_options(row["trace_id"])
    if contract is AUDIT:
        event_id = outbox.booking_event_id(booking_id, "booking.created")
        payload = audit_payload(event_id=event_id, kind="booking.created", tenant_id=row["tenant_id"],
                                booking_id=booking_id, actor=actor,
                                occurred_at=row["created_at"].astimezone(UTC).isoformat())
        return outbox.OutboxMessage(contract.queue, contract.actor, payload, options, message_id=event_id)
    payload = task_payload(task, booking_id=booking_id, tenant_id=row["tenant_id"])
    return outbox.OutboxMessage(contract.queue, contract.actor, payload, options)
