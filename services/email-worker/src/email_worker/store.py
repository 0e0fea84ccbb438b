"""The worker's Postgres side: read the booking, and remember each sent email exactly once.

`email_sends` has one row per booking (its primary key), so however often a
message is redelivered, the email is recorded, and audited, once.
"""

from __future__ import annotations

import psycopg

from booking_core.audit import booking_audit
from booking_core.messaging import outbox
from booking_core.messaging.contracts import EMAIL
from booking_core.model import bookings
from booking_core.tasks import taskstate

ACTOR = "email-worker"
EVENT_KIND = "email.sent"


def load_booking(
    conn: psycopg.Connection, booking_id: str, tenant_id: str | None = None
) -> dict | None:
    """The booking row, or None if missing (or, given `tenant_id`, another tenant's)."""
    return bookings.get(conn, tenant_id, str(booking_id))


def lock_booking(conn: psycopg.Connection, booking_id: str) -> None:
    """Serialise senders of one booking until this transaction ends (needs autocommit off).

    Two deliveries of one message running at once would otherwise both see
    "not sent yet" and both send.  Rank 3 of docs/lock-order.md: taken first, held
    across the send, before the audit chain and the task row.
    """
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('email_sends:' || %s::uuid::text, 0))",
        (str(booking_id),),
    )


def already_sent(conn: psycopg.Connection, booking_id: str) -> bool:
    """True once the confirmation of `booking_id` has been recorded."""
    row = conn.execute(
        "SELECT 1 FROM email_sends WHERE booking_id = %s", (str(booking_id),)
    ).fetchone()
    return row is not None


def record_sent(conn: psycopg.Connection, booking_id: str, message_id: str, recipient: str) -> bool:
    """Record the send, append its audit event (audit.booking_audit) and mark the task done, in one transaction.

    Returns False (and changes nothing but the task's state) if the send was already
    recorded.  The `done` state commits with the record, so a database error can
    never leave a sent and recorded email's task `running`.  The state is written
    last, after the audit append (docs/lock-order.md: chain before task rows).
    """
    with conn.transaction():
        row = conn.execute(
            "WITH ins AS ("
            " INSERT INTO email_sends (booking_id, message_id, recipient) VALUES (%s, %s, %s)"
            " ON CONFLICT (booking_id) DO NOTHING RETURNING booking_id, sent_at)"
            " SELECT b.tenant_id::text AS tenant_id, ins.sent_at"
            " FROM ins JOIN bookings b ON b.id = ins.booking_id",
            (str(booking_id), message_id, recipient),
        ).fetchone()
        if row is not None:
            event = outbox.booking_event(EVENT_KIND, tenant_id=row["tenant_id"], booking_id=booking_id,
                                         actor=ACTOR, occurred_at=row["sent_at"],
                                         details={"message_id": message_id})
            booking_audit.record(conn, event)
        taskstate.mark_done(conn, booking_id, EMAIL.task)
        return row is not None
