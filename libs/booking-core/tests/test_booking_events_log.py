"""The booking event log (migration 0004): every visible task change appends one row, in its transaction."""

from __future__ import annotations

import threading
from datetime import date

import psycopg
import pytest

from booking_core import db
from e2e_helpers import wait_until
from relay_helpers import create_booking


def events(conn, booking_id: str) -> list[tuple]:
    rows = conn.execute("SELECT task, state, attempts, last_error FROM booking_events"
                        " WHERE booking_id = %s ORDER BY id", (booking_id,)).fetchall()
    return [(r["task"], r["state"], r["attempts"], r["last_error"]) for r in rows]


def update(conn, booking_id: str, task: str, **values) -> None:
    sets = ", ".join(f"{k} = %({k})s" for k in values)
    conn.execute(f"UPDATE booking_tasks SET {sets} WHERE booking_id = %(b)s AND task = %(t)s",
                 {**values, "b": booking_id, "t": task})


def test_a_new_booking_logs_its_three_pending_tasks(db_conn, tenant):
    booking_id = create_booking(db_conn, tenant["id"])
    assert events(db_conn, booking_id) == [("audit", "pending", 0, None), ("email", "pending", 0, None),
                                           ("invoice", "pending", 0, None)]


def test_each_visible_change_appends_one_event_and_an_unchanged_write_none(db_conn, tenant):
    booking_id = create_booking(db_conn, tenant["id"])
    update(db_conn, booking_id, "email", state="running", attempts=1)
    update(db_conn, booking_id, "email", state="retrying", last_error="SMTP down")
    update(db_conn, booking_id, "email", state="retrying", last_error="SMTP down")  # nothing visible changed
    update(db_conn, booking_id, "email", updated_at=date(2027, 1, 1))  # not visible either
    update(db_conn, booking_id, "email", state="done", last_error=None)
    assert events(db_conn, booking_id)[3:] == [("email", "running", 1, None), ("email", "retrying", 1, "SMTP down"),
                                               ("email", "done", 1, None)]


def test_a_rolled_back_change_leaves_no_event(db_conn, tenant):
    booking_id = create_booking(db_conn, tenant["id"])
    with pytest.raises(RuntimeError), db_conn.transaction():
        update(db_conn, booking_id, "invoice", state="running", attempts=1)
        raise RuntimeError("worker crashed before commit")
    assert len(events(db_conn, booking_id)) == 3


def test_one_bookings_events_are_numbered_in_commit_order(database_url, db_conn, tenant):
    """A writer that draws its id first but commits last would let `id > Last-Event-ID` skip it."""
    booking_id = create_booking(db_conn, tenant["id"])
    first = psycopg.connect(database_url)
    update(first, booking_id, "email", state="running", attempts=1)  # holds the booking's lock, uncommitted

    def second_writer():
        with db.connect(database_url, autocommit=True) as conn:
            update(conn, booking_id, "invoice", state="running", attempts=1)

    t = threading.Thread(target=second_writer)
    t.start()
    # The second writer is waiting on a lock in this database (not merely not started yet)
    wait_until(lambda: db_conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
                                       " AND wait_event_type = 'Lock'").fetchone()["n"] == 1,
               timeout=10, what="the second writer to wait for the first one's lock")
    assert t.is_alive(), "the second writer must wait for the first one's commit"
    first.commit()
    first.close()
    t.join(5)
    rows = db_conn.execute("SELECT task FROM booking_events"
                           " WHERE booking_id = %s AND state = 'running' ORDER BY id", (booking_id,)).fetchall()
    assert [r["task"] for r in rows] == ["email", "invoice"]
