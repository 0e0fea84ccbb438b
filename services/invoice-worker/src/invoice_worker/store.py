"""Invoice rows in Postgres: one invoice and one gapless number per booking, PDF first-writer-wins.

The number is allocated before the slow render and committed on its own, so a
crash after allocation keeps the number (no gap, no second number on retry),
and the PDF, its "invoice.issued" audit event and the task's `done` state
commit together.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg.rows import dict_row

from booking_core.audit import booking_audit
from booking_core.messaging import outbox
from booking_core.messaging.contracts import INVOICE
from booking_core.messaging.errors import UnknownBooking
from booking_core.messaging.ids import parse_uuid
from booking_core.tasks import taskstate
from invoice_worker.render import InvoiceData

ACTOR = "invoice-worker"
ISSUED = "invoice.issued"
COUNTER = "invoice"


def format_number(value: int) -> str:
    """The human invoice number for counter `value`, e.g. INV-000001."""
    return f"INV-{value:06d}"


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    """`value` as a UUID; a malformed id names no booking (`UnknownBooking`, permanent)."""
    return None if value is None else parse_uuid(value, field, error=UnknownBooking)


def allocate_number(
    conn: psycopg.Connection, booking_id: str, *, tenant_id: str | None = None
) -> tuple[str, bool]:
    """The booking's invoice number, allocated on first call; and whether its PDF exists.

    The booking row lock serialises allocators of one booking; the counter row's
    UPSERT serialises a tenant's bookings, and rolls back with the transaction, so
    numbers have no gaps.  With `tenant_id`, another tenant's booking is unknown.
    Lock order (docs/lock-order.md): the booking row (rank 3), then the tenant's
    counter (rank 4); a caller marks the task done only after both.
    """
    bid = _uuid(booking_id, "booking_id")
    tid = _uuid(tenant_id, "tenant_id")
    cur = conn.cursor(row_factory=dict_row)
    with conn.transaction():
        # NO KEY UPDATE: serialises allocators of this booking like FOR UPDATE, but does
        # not block other workers inserting rows that reference it (email_sends, ...).
        booking = cur.execute(
            "SELECT tenant_id FROM bookings WHERE id = %s"
            " AND (%s::uuid IS NULL OR tenant_id = %s::uuid) FOR NO KEY UPDATE",
            (bid, tid, tid),
        ).fetchone()
        if booking is None:
            raise UnknownBooking(f"no booking {booking_id!r}")
        found = cur.execute(
            "SELECT number, pdf IS NOT NULL AS has_pdf FROM invoices WHERE booking_id = %s",
            (bid,),
        ).fetchone()
        if found is not None:
            return found["number"], found["has_pdf"]
        value = cur.execute(
            "INSERT INTO tenant_counters (tenant_id, name, value) VALUES (%s, %s, 1)"
            " ON CONFLICT (tenant_id, name) DO UPDATE SET value = tenant_counters.value + 1"
            " RETURNING value",
            (booking["tenant_id"], COUNTER),
        ).fetchone()["value"]
        number = format_number(value)
        cur.execute(
            "INSERT INTO invoices (booking_id, tenant_id, number) VALUES (%s, %s, %s)",
            (bid, booking["tenant_id"], number),
        )
    return number, False


def load_invoice_data(conn: psycopg.Connection, booking_id: str) -> InvoiceData | None:
    """What the invoice shows, or None when the booking or its invoice number is missing."""
    bid = _uuid(booking_id, "booking_id")
    row = conn.cursor(row_factory=dict_row).execute(
        "SELECT i.number, (i.created_at AT TIME ZONE 'UTC')::date AS issue_date,"
        " t.name AS tenant_name, b.id::text AS booking_id, b.customer_name, b.customer_email,"
        " b.item, b.check_in, b.check_out, b.amount, b.currency"
        " FROM bookings b JOIN tenants t ON t.id = b.tenant_id"
        " JOIN invoices i ON i.booking_id = b.id WHERE b.id = %s",
        (bid,),
    ).fetchone()
    return None if row is None else InvoiceData(**row)


def save_pdf(conn: psycopg.Connection, booking_id: str, pdf: bytes) -> bool:
    """Store the PDF unless one exists (first writer wins) and, with it, its audit event.

    Returns whether this call stored it; only then is "invoice.issued" written.
    The task is marked done in the same transaction either way: once a PDF is
    stored, a database error can no longer leave the task `running`.  Lock order
    (docs/lock-order.md): the invoice row, the tenant's audit chain, then the task
    row and its event numbering, last.
    """
    bid = _uuid(booking_id, "booking_id")
    cur = conn.cursor(row_factory=dict_row)
    with conn.transaction():
        row = cur.execute(
            "UPDATE invoices SET pdf = %s, issued_at = clock_timestamp()"
            " WHERE booking_id = %s AND pdf IS NULL"
            " RETURNING tenant_id::text AS tenant_id, number, issued_at",
            (pdf, bid),
        ).fetchone()
        if row is not None:
            event = outbox.booking_event(ISSUED, tenant_id=row["tenant_id"], booking_id=str(bid), actor=ACTOR,
                                         occurred_at=row["issued_at"], details={"invoice_number": row["number"]})
            booking_audit.record(conn, event)
        taskstate.mark_done(conn, str(bid), INVOICE.task)
    return row is not None
