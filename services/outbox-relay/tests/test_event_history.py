"""Compaction of the booking event log (outbox_relay/compaction.py) on real Postgres.

Only this test's events are aged; the cursor is placed just before them, so
other tests' (young) events in the shared database stop every walk.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from booking_core.config import Settings
from booking_core.model import bookings
from outbox_relay.compaction import compact, compact_next


def lived_booking(conn, tenant) -> str:
    """A booking whose tasks went pending → running → done, the email with one retry: 11 events."""
    booking = bookings.NewBooking("Ada", "ada@example.com", "Room", date(2027, 3, 1), date(2027, 3, 4),
                                  Decimal("360.00"), "EUR")
    booking_id = bookings.create(conn, tenant_id=tenant["id"], booking=booking, actor="test")["id"]
    steps = [("email", "running", 1, None), ("email", "retrying", 1, "SMTP down"), ("email", "running", 2, None),
             ("email", "done", 2, None), ("invoice", "running", 1, None), ("invoice", "done", 1, None),
             ("audit", "running", 1, None), ("audit", "done", 1, None)]
    for task, state, attempts, error in steps:
        conn.execute("UPDATE booking_tasks SET state = %s, attempts = %s, last_error = %s"
                     " WHERE booking_id = %s AND task = %s", (state, attempts, error, booking_id, task))
    return booking_id


def age(conn, booking_id: str, days: int) -> None:
    conn.execute("UPDATE booking_events SET at = at - make_interval(days => %s) WHERE booking_id = %s",
                 (days, booking_id))


def events(conn, booking_id: str) -> list[tuple]:
    return [(r["task"], r["state"], r["attempts"]) for r in conn.execute(
        "SELECT task, state, attempts FROM booking_events WHERE booking_id = %s ORDER BY id", (booking_id,))]


def first_id(conn, booking_id: str) -> int:
    return conn.execute("SELECT min(id) AS id FROM booking_events WHERE booking_id = %s",
                        (booking_id,)).fetchone()["id"]


def last_id(conn, booking_id: str) -> int:
    return conn.execute("SELECT max(id) AS id FROM booking_events WHERE booking_id = %s",
                        (booking_id,)).fetchone()["id"]


def test_old_events_keep_each_tasks_final_state(db_conn, tenant):
    booking_id = lived_booking(db_conn, tenant)
    assert len(events(db_conn, booking_id)) == 11
    age(db_conn, booking_id, 31)
    done = compact(db_conn, keep_days=30, after_id=first_id(db_conn, booking_id) - 1, limit=1000)
    assert done.deleted == 8 and done.settled == 11
    assert done.last_id == last_id(db_conn, booking_id)
    assert events(db_conn, booking_id) == [("email", "done", 2), ("invoice", "done", 1), ("audit", "done", 1)]


def test_events_younger_than_the_history_are_kept_and_stop_the_walk(db_conn, tenant):
    old, young, later_old = (lived_booking(db_conn, tenant) for _ in range(3))
    age(db_conn, old, 31)
    age(db_conn, young, 29)
    age(db_conn, later_old, 31)
    done = compact(db_conn, keep_days=30, after_id=first_id(db_conn, old) - 1, limit=1000)
    assert done.deleted == 8 and done.last_id == last_id(db_conn, old)
    assert len(events(db_conn, young)) == 11
    # Behind a young event the walk waits, even for old ones: the cursor never passes what it kept for age.
    assert len(events(db_conn, later_old)) == 11


def test_a_batch_stops_at_its_limit_and_the_next_goes_on_from_there(db_conn, tenant):
    booking_id = lived_booking(db_conn, tenant)
    age(db_conn, booking_id, 31)
    start = first_id(db_conn, booking_id) - 1
    first = compact(db_conn, keep_days=30, after_id=start, limit=4)
    assert first.settled == 4 and first.deleted == 4  # the 3 pending events and email's first running
    second = compact(db_conn, keep_days=30, after_id=first.last_id, limit=1000)
    assert first.deleted + second.deleted == 8
    assert events(db_conn, booking_id) == [("email", "done", 2), ("invoice", "done", 1), ("audit", "done", 1)]


def test_the_stored_cursor_moves_and_a_second_pass_reads_nothing_again(db_conn, tenant):
    booking_id = lived_booking(db_conn, tenant)
    age(db_conn, booking_id, 31)
    db_conn.execute("UPDATE booking_events_compaction SET last_id = %s", (first_id(db_conn, booking_id) - 1,))
    first = compact_next(db_conn, keep_days=30)
    assert first.deleted == 8
    stored = db_conn.execute("SELECT last_id FROM booking_events_compaction").fetchone()["last_id"]
    assert stored == last_id(db_conn, booking_id) == first.last_id
    again = compact_next(db_conn, keep_days=30)
    assert again.settled == 0 and again.deleted == 0 and again.last_id == stored


@pytest.mark.parametrize("raw", ["-1", "thirty"])
def test_the_history_setting_refuses_what_is_not_a_day_count(raw):
    with pytest.raises(ValueError, match="BOOKING_EVENT_HISTORY_DAYS"):
        Settings.from_env({"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x",
                           "BOOKING_EVENT_HISTORY_DAYS": raw})


def test_the_history_setting_defaults_to_thirty_days_and_zero_keeps_everything():
    base = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    assert Settings.from_env(base).event_history_days == 30
    assert Settings.from_env({**base, "BOOKING_EVENT_HISTORY_DAYS": "0"}).event_history_days == 0
