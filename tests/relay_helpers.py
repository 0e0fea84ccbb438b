"""Bookings for tests, written as the API writes them: committed ones (`create_booking`, `create_bookings`)
and, for tests that play the relay, one whose outbox messages the test takes itself; and the audit
messages a test's action left in the outbox (`webhook_audits`), and a backlog of rows (`fill_outbox`)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from psycopg.types.json import Jsonb

from booking_core.model import bookings

#: A valid booking request, for tests that do not care about its fields.
ADA = bookings.NewBooking("Ada", "ada@example.com", "Room 1", date(2030, 1, 1), date(2030, 1, 3),
                          Decimal("120.00"), "EUR")


def create_booking(conn, tenant_id: str, booking: bookings.NewBooking = ADA, *, actor: str = "test") -> str:
    """A booking of `tenant_id` with its tasks and outbox rows, on `conn` (committed if it autocommits); its id."""
    return bookings.create(conn, tenant_id=tenant_id, actor=actor, booking=booking)["id"]


def create_bookings(database_url: str, tenant_id: str, n: int, booking: bookings.NewBooking = ADA) -> list[str]:
    """`n` bookings of `tenant_id` (3 outbox rows each), committed at once; their ids."""
    from booking_core import db

    with db.connect(database_url) as conn:
        ids = [create_booking(conn, tenant_id, booking) for _ in range(n)]
        conn.commit()
    return ids


def booking_without_relay(conn, tenant_id: str, booking: bookings.NewBooking = ADA, *,
                          actor: str = "test") -> tuple[str, dict[str, dict]]:
    """Commit a booking and take its outbox rows away in the same transaction, as a relay would publish them.

    No relay runs in these tests, and none may publish these messages: the test
    sends them itself.  Returns the booking id and its messages by queue
    (`message_id`, `queue`, `payload`).
    """
    with conn.transaction():
        made = bookings.create(conn, tenant_id=tenant_id, actor=actor, booking=booking)
        rows = conn.execute("DELETE FROM outbox WHERE payload->>'booking_id' = %s"
                            " RETURNING message_id::text, queue, payload", (made["id"],)).fetchall()
    return made["id"], {r["queue"]: r for r in rows}


def webhook_audits(conn, tenant_id: str) -> list[dict]:
    """The tenant's webhook audit messages (replays), oldest first: still in the outbox, as no relay runs."""
    return [r["payload"] for r in conn.execute(
        "SELECT payload FROM outbox WHERE queue = 'audit' AND payload->>'tenant_id' = %s"
        " AND payload->>'kind' LIKE 'webhook.%%' ORDER BY id", (tenant_id,))]


def fill_outbox(conn, tenant_id: str, queue: str, n: int) -> None:
    """`n` due outbox rows on `queue` whose payload names `tenant_id` (any text: it is not checked), as a backlog."""
    conn.execute("INSERT INTO outbox (message_id, queue, actor, payload) SELECT gen_random_uuid(), %s, 'x', %s"
                 " FROM generate_series(1, %s)", (queue, Jsonb({"tenant_id": tenant_id}), n))
