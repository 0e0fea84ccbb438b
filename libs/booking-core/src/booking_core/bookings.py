"""Bookings in Postgres: create one with its tasks and outbox rows, read them back.

`create` is the whole write of "Confirm booking": the booking, its three task
rows and its three outbox messages in the caller's one transaction, so either
all of it exists or none does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from booking_core import outbox
from booking_core.contracts import AUDIT, CONTRACTS, TASKS, audit_payload, task_payload

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


def create(
    conn: psycopg.Connection,
    *,
    tenant_id: str,
    booking: NewBooking,
    actor: str,
    message_options: dict | None = None,
    trace_id: str | None = None,
) -> dict:
    """Insert the booking, its task rows and outbox messages; return it as `get` would."""
    booking_id = str(uuid.uuid4())
    options = dict(message_options or {})
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO bookings (id, tenant_id, customer_name, customer_email, item, check_in,"
            " check_out, amount, currency, trace_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " RETURNING created_at",
            (booking_id, tenant_id, booking.customer_name, booking.customer_email, booking.item,
             booking.check_in, booking.check_out, booking.amount, booking.currency, trace_id),
        )
        created_at = cur.fetchone()["created_at"]
        cur.executemany(
            "INSERT INTO booking_tasks (booking_id, task, trace_id) VALUES (%s, %s, %s)",
            [(booking_id, task, trace_id) for task in TASKS],
        )
    messages = [
        outbox.OutboxMessage(c.queue, c.actor, task_payload(c.task, booking_id=booking_id,
                             tenant_id=tenant_id), options)
        for c in CONTRACTS.values() if c is not AUDIT
    ]
    event_id = str(uuid.uuid4())
    messages.append(outbox.OutboxMessage(
        AUDIT.queue, AUDIT.actor,
        audit_payload(event_id=event_id, kind="booking.created", tenant_id=tenant_id,
                      booking_id=booking_id, actor=actor,
                      occurred_at=created_at.astimezone(UTC).isoformat()),
        options, message_id=event_id,
    ))
    outbox.add(conn, messages)
    now = created_at
    return {
        "id": booking_id, "tenant_id": tenant_id, "customer_name": booking.customer_name,
        "customer_email": booking.customer_email, "item": booking.item,
        "check_in": booking.check_in, "check_out": booking.check_out, "amount": booking.amount,
        "currency": booking.currency, "status": "confirmed", "trace_id": trace_id,
        "created_at": created_at,
        "tasks": {t: {"state": "pending", "attempts": 0, "last_error": None, "updated_at": now,
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
