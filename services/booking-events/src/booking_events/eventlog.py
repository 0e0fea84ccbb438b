"""Reads of the booking event log (migration 0004) and of what the page shows.

Blocking psycopg calls on booking_core's pool; the async handlers run them
with `asyncio.to_thread`, so auth and booking lookups are booking_core's own
functions, not a second async implementation.
"""

from __future__ import annotations

from booking_core import db

_COLUMNS = "id, booking_id::text, task, state, attempts, last_error, at"


def history(url: str, booking_id: str) -> list[dict]:
    """Every event of one booking, oldest first (dozens at most)."""
    with db.pool(url).connection() as conn:
        return conn.execute(f"SELECT {_COLUMNS} FROM booking_events WHERE booking_id = %s ORDER BY id",
                            (booking_id,)).fetchall()


def since(url: str, last_id: int, gaps: list[int], limit: int = 1000) -> list[dict]:
    """Events after `last_id`, plus those of `gaps` that have committed since: the poller's one query."""
    with db.pool(url).connection() as conn:
        return conn.execute(f"SELECT {_COLUMNS} FROM booking_events WHERE id > %s OR id = ANY(%s)"
                            " ORDER BY id LIMIT %s", (last_id, gaps, limit)).fetchall()


def newest_id(url: str) -> int:
    with db.pool(url).connection() as conn:
        return conn.execute("SELECT coalesce(max(id), 0) AS id FROM booking_events").fetchone()["id"]


def invoice_pdf(url: str, booking_id: str) -> dict | None:
    """{'number', 'pdf'} once the invoice PDF exists, else None."""
    with db.pool(url).connection() as conn:
        return conn.execute("SELECT number, pdf FROM invoices WHERE booking_id = %s AND pdf IS NOT NULL",
                            (booking_id,)).fetchone()
