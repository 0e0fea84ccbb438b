"""Bookings in Postgres: create one with its tasks and outbox rows, read them back.

`create` is the whole write of "Confirm booking": the booking, its three task
rows and its three outbox messages in the caller's one transaction, so either
all of it exists or none does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from booking_core.messaging import outbox
from booking_core.messaging.contracts import AUDIT, CONTRACTS, TASKS, audit_payload, task_payload

BOOKING_COLUMNS = (
    "b.id::text AS id, b.tenant_id::text AS tenant_id, b.customer_name, b.customer_email, b.item,"
    " b.check_in, b.check_out, b.amount, b.currency, b.status, b.trace_id, b.created_at"
)


@dataclass(frozen=True)
class NewBooking:
    """A validated booking request."""

    customer_name: str
    customer_email: str
    item: str
    check_in: date
    check_out: date
    amount: Decimal
    currency: str


#: The whole write of "Confirm booking" as one statement: one round trip, atomic on its own.
_CREATE_SQL = f"""
WITH b AS (
    INSERT INTO bookings (id, tenant_id, customer_name, customer_email, item, check_in, check_out,
                          amount, currency, trace_id)
    VALUES (%(id)s, %(tenant)s, %(name)s, %(email)s, %(item)s, %(check_in)s, %(check_out)s,
            %(amount)s, %(currency)s, %(trace)s)
    RETURNING id, created_at
), t AS (
    INSERT INTO booking_tasks (booking_id, task, trace_id, updated_at)
    SELECT b.id, x.task, %(trace)s, b.created_at FROM b, unnest(%(tasks)s::text[]) AS x(task)
), o AS (
    INSERT INTO outbox (message_id, queue, actor, payload, options)
    SELECT m.message_id, m.queue, m.actor,
           CASE WHEN m.payload ? 'occurred_at'
                THEN jsonb_set(m.payload, '{{occurred_at}}', to_jsonb(b.created_at)) ELSE m.payload END,
           m.options
    FROM b, jsonb_to_recordset(%(messages)s) AS m(message_id uuid, queue text, actor text, payload jsonb,
                                                  options jsonb)
), n AS ({outbox.WAKE_SQL})
SELECT b.created_at, (SELECT count(*) FROM n) AS woke FROM b
"""


def create(
    conn: psycopg.Connection,
    *,
    tenant_id: str,
    booking: NewBooking,
    actor: str,
    trace_id: str | None = None,
) -> dict:
    """Insert the booking, its task rows and outbox messages; return it as `get` would.

    One statement, so it is atomic even on an autocommit connection, and one
    round trip on the API's hot path.  The audit event's `occurred_at` is the
    booking's own `created_at`; the outbox rows carry the current trace context.
    """
    booking_id = str(uuid.uuid4())
    messages = [
        outbox.OutboxMessage(c.queue, c.actor, task_payload(c.task, booking_id=booking_id, tenant_id=tenant_id))
        for c in CONTRACTS.values() if c is not AUDIT
    ]
    event_id = str(uuid.uuid4())
    messages.append(outbox.OutboxMessage(
        AUDIT.queue, AUDIT.actor,
        audit_payload(event_id=event_id, kind="booking.created", tenant_id=tenant_id,
                      booking_id=booking_id, actor=actor, occurred_at=""),
        message_id=event_id,
    ))
    created_at = conn.execute(_CREATE_SQL, {
        "id": booking_id, "tenant": tenant_id, "name": booking.customer_name, "email": booking.customer_email,
        "item": booking.item, "check_in": booking.check_in, "check_out": booking.check_out,
        "amount": booking.amount, "currency": booking.currency, "trace": trace_id, "tasks": list(TASKS),
        "messages": Jsonb(outbox.as_rows(messages)),
    }).fetchone()["created_at"]
    return {
        "id": booking_id, "tenant_id": tenant_id, "customer_name": booking.customer_name,
        "customer_email": booking.customer_email, "item": booking.item,
        "check_in": booking.check_in, "check_out": booking.check_out, "amount": booking.amount,
        "currency": booking.currency, "status": "confirmed", "trace_id": trace_id,
        "created_at": created_at,
        "tasks": {t: {"state": "pending", "attempts": 0, "last_error": None, "updated_at": created_at,
                      "trace_id": trace_id} for t in TASKS},
    }


def _tasks_for(conn: psycopg.Connection, ids: list[str]) -> dict[str, dict]:
    rows = conn.execute(
        "SELECT booking_id::text, task, state, attempts, last_error, trace_id, updated_at"
        " FROM booking_tasks WHERE booking_id = ANY(%s::uuid[])",
        (ids,),
    ).fetchall()
    out: dict[str, dict] = {i: {} for i in ids}
    for r in rows:
        out[r.pop("booking_id")][r.pop("task")] = r
    return out


def get(conn: psycopg.Connection, tenant_id: str | None, booking_id: str) -> dict | None:
    """One booking with its tasks; None if missing or (with `tenant_id`) another tenant's."""
    try:
        booking_id = str(uuid.UUID(booking_id))
    except ValueError:
        return None
    row = conn.execute(
        f"SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.id = %s"
        " AND (%s::uuid IS NULL OR b.tenant_id = %s::uuid)",
        (booking_id, tenant_id, tenant_id),
    ).fetchone()
    if row is None:
        return None
    row["tasks"] = _tasks_for(conn, [row["id"]])[row["id"]]
    return row


def page(
    conn: psycopg.Connection,
    tenant_id: str,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    task_state: str | None = None,
    task: str | None = None,
) -> list[dict]:
    """Up to `limit` bookings, newest first, strictly after the keyset cursor `after`."""
    where = ["b.tenant_id = %(tenant)s"]
    params: dict = {"tenant": tenant_id, "limit": limit}
    if after is not None:
        where.append("(b.created_at, b.id) < (%(after_ts)s, %(after_id)s::uuid)")
        params.update(after_ts=after[0], after_id=after[1])
    if task_state is not None:
        where.append(
            "EXISTS (SELECT 1 FROM booking_tasks t WHERE t.booking_id = b.id AND t.state = %(state)s"
            " AND (%(task)s::text IS NULL OR t.task = %(task)s))"
        )
        params.update(state=task_state, task=task)
    rows = conn.execute(
        f"SELECT {BOOKING_COLUMNS} FROM bookings b WHERE {' AND '.join(where)}"
        " ORDER BY b.created_at DESC, b.id DESC LIMIT %(limit)s",
        params,
    ).fetchall()
    tasks = _tasks_for(conn, [r["id"] for r in rows])
    for r in rows:
        r["tasks"] = tasks[r["id"]]
    return rows
