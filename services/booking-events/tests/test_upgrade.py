"""Bookings made before the event log existed (before migration 0004) complete their streams after an upgrade.

The database is made as an earlier version left it: migrated to 0003, bookings
and their task rows written by plain SQL as that version's API and workers
wrote them, with no `booking_events`.  Then today's migrations run and the
real `booking-events` process serves their streams.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from booking_core.db.migrate import migrate, migration_files


@pytest.fixture
def old_database(database_url):
    """A new database on the session's server, migrated only to 0003 (no booking_events yet)."""
    name = f"upgrade_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(database_url, dbname=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (name text PRIMARY KEY,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for file, sql in migration_files():
            if file < "0004":
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (file,))
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def old_booking(conn, tenant_id: str, states: dict[str, str]) -> str:
    """A booking and its three task rows as the pre-0004 API and workers left them."""
    booking_id = str(uuid.uuid4())
    conn.execute("INSERT INTO bookings (id, tenant_id, customer_name, customer_email, item, check_in, check_out,"
                 " amount, currency) VALUES (%s, %s, 'Ada', 'ada@example.com', 'Room', '2027-03-01', '2027-03-04',"
                 " 360, 'EUR')", (booking_id, tenant_id))
    for task, state in states.items():
        conn.execute("INSERT INTO booking_tasks (booking_id, task, state, attempts, last_error)"
                     " VALUES (%s, %s, %s, %s, %s)",
                     (booking_id, task, state, 0 if state == "pending" else 1,
                      "SMTP 550: no such user" if state == "dead" else None))
    return booking_id


DONE = {"email": "done", "invoice": "done", "audit": "done"}


def test_streams_of_bookings_made_before_the_event_log_complete_after_the_upgrade(
        old_database, events_process, connect_stream, page_link):
    # Given bookings made by the earlier version: one finished, one dead, one still pending
    with psycopg.connect(old_database, autocommit=True) as conn:
        tenant_id = str(uuid.uuid4())
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'old-tenant')", (tenant_id,))
        finished = old_booking(conn, tenant_id, DONE)
        dead = old_booking(conn, tenant_id, {**DONE, "email": "dead"})
        pending = old_booking(conn, tenant_id, {"email": "pending", "invoice": "pending", "audit": "pending"})
    # When the database is upgraded and today's events service serves it
    migrate(old_database)
    service = events_process(DATABASE_URL=old_database, BOOKING_EVENTS_HEARTBEAT_MS="200")

    def page_stream(booking_id: str):
        return connect_stream(service.port, f"/status/{page_link(booking_id)}/events", timeout=15)

    # Then the finished booking's stream replays its three states and completes (it used to heartbeat forever)
    s = page_stream(finished)
    got = [s.next(within=5) for _ in range(4)]
    assert [(e.event, e.data.get("task"), e.data.get("state")) for e in got] == [
        ("task", "audit", "done"), ("task", "email", "done"), ("task", "invoice", "done"), ("complete", None, None)]
    assert s.next(within=5) is None
    # ... the dead one completes too
    s = page_stream(dead)
    got = [s.next(within=5) for _ in range(4)]
    assert got[-1].event == "complete" and got[1].data["state"] == "dead"
    # ... and the pending one goes on live from its backfilled state as any booking does
    s = page_stream(pending)
    assert [e.data["state"] for e in (s.next(within=5) for _ in range(3))] == ["pending"] * 3
    with psycopg.connect(old_database, autocommit=True) as conn:
        conn.execute("UPDATE booking_tasks SET state = 'done', attempts = 1 WHERE booking_id = %s", (pending,))
    got = [s.next(within=5) for _ in range(4)]
    assert [(e.event, e.data.get("state")) for e in got] == [("task", "done")] * 3 + [("complete", None)]


def test_the_backfill_gives_only_event_less_tasks_one_event_each(old_database):
    with psycopg.connect(old_database, autocommit=True) as conn:
        tenant_id = str(uuid.uuid4())
        conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 'old-tenant')", (tenant_id,))
        before = old_booking(conn, tenant_id, {**DONE, "invoice": "retrying"})
    migrate(old_database)
    with psycopg.connect(old_database, autocommit=True) as conn:
        after = old_booking(conn, tenant_id, DONE)  # made once 0004's triggers exist: its own events
        rows = conn.execute("SELECT booking_id::text, task, state FROM booking_events ORDER BY id").fetchall()
    assert [(b, t, s) for b, t, s in rows if b == before] == [
        (before, "audit", "done"), (before, "email", "done"), (before, "invoice", "retrying")]
    assert [(t, s) for b, t, s in rows if b == after] == [("email", "done"), ("invoice", "done"), ("audit", "done")]
