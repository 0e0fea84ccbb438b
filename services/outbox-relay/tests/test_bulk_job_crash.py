"""A bulk dead-letter job survives the death of the process running it (real `booking-relay` processes).

The first relay claims the job and commits its first batch; the test holds the
task row of a letter of the second batch, so that batch waits, its letters
claimed, uncommitted.  The relay is then killed (SIGKILL, as the kernel's OOM
killer or a node loss would).  Its Postgres backend notices the dead client
and rolls the batch back, so nothing of it is half done; a second relay,
started afterwards, finds the job stale, claims it and does the rest: every
letter exactly once, and the job's count goes on from the first batch's.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from psycopg.types.json import Jsonb

from booking_core import db
from booking_core.model import bookings
from booking_core.ops import bulkjobs
from booking_core.tasks import deadletters
from e2e_helpers import wait_until
from relay_helpers import ADA

LETTERS = 120  # more than two batches of bulkjobs.BATCH_SIZE


@pytest.fixture(autouse=True)
def _no_other_open_jobs(db_conn):
    """The relays claim the oldest open job: jobs other tests left open must not be claimed here."""
    db_conn.execute("UPDATE ops_bulk_jobs SET state = 'failed', finished_at = now()"
                    " WHERE state IN ('queued', 'running')")


@pytest.fixture
def relay(settings, tmp_path):
    """Factory: a real `booking-relay` process whose bulk jobs go stale after 2 s; all killed after the test."""
    from booking_embedded import Child, free_port

    started = []

    def start(name: str):
        child = Child(name, [str(Path(sys.executable).parent / "booking-relay")], log_path=tmp_path / f"{name}.log",
                      env={"PATH": os.environ.get("PATH", ""), "DATABASE_URL": settings.database_url,
                           "REDIS_URL": settings.redis_url, "BOOKING_REDIS_NAMESPACE": settings.redis_namespace,
                           "BOOKING_METRICS_HOST": "127.0.0.1", "BOOKING_METRICS_PORT": str(free_port()),
                           "BOOKING_BULK_JOB_STALE_MS": "2000"})
        child.start()
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def _open(db_conn, ids: list[str]) -> int:
    return db_conn.execute("SELECT count(*) AS n FROM dead_letters WHERE id = ANY(%s) AND resolved_at IS NULL",
                           (ids,)).fetchone()["n"]


def test_a_bulk_job_whose_relay_is_killed_mid_batch_is_resumed_by_another_and_done_once(
        db_conn, database_url, tenant, relay, tmp_path):
    marker = uuid.uuid4().hex
    ids = []
    for _ in range(LETTERS):
        booking_id = bookings.create(db_conn, tenant_id=tenant["id"], booking=ADA, actor="test")["id"]
        db_conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'email'",
                        (booking_id,))
        ids.append(db_conn.execute(
            "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, kwargs, error, attempts)"
            " VALUES (gen_random_uuid(), 'email', 'send_confirmation_email', 'email', %s, %s, %s, %s, 3)"
            " RETURNING id::text", (tenant["id"], booking_id, Jsonb({"task": "email", "booking_id": booking_id}),
                                    f"boom {marker}")).fetchone()["id"])
    f = deadletters.Filter(tenant_id=tenant["id"], error=marker)
    job_id = bulkjobs.start(db_conn, "discard", f, actor="ops:Ada (tenant t)")

    batch = bulkjobs.BATCH_SIZE
    # The runner takes letters in (dead_at, id) order: this one is in its second batch.
    in_second = db_conn.execute("SELECT booking_id::text FROM dead_letters WHERE id = ANY(%s) ORDER BY dead_at, id"
                                " OFFSET %s LIMIT 1", (ids, batch + 10)).fetchone()["booking_id"]
    with db.connect(database_url) as holder:  # not autocommit: the row stays locked until the rollback
        holder.execute("SELECT 1 FROM booking_tasks WHERE booking_id = %s AND task = 'email' FOR UPDATE",
                       (in_second,))
        first = relay("relay-1")

        def blocked_backend() -> int | None:
            row = db_conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE 'SELECT 1 FROM booking_tasks WHERE (booking_id, task) IN%%'").fetchone()
            return row["pid"] if row else None

        pid = wait_until(blocked_backend, timeout=60, what="the first relay's second batch waiting")
        assert bulkjobs.get(db_conn, job_id).done == batch and _open(db_conn, ids) == LETTERS - batch
        first.kill()
        wait_until(lambda: db_conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s",
                                           (pid,)).fetchone()["n"] == 0,
                   timeout=30, what="the killed relay's backend to roll back and end")
        assert _open(db_conn, ids) == LETTERS - batch, "the killed relay's uncommitted batch resolved nothing"
        job = bulkjobs.get(db_conn, job_id)
        assert (job.state, job.done) == ("running", batch)
        holder.rollback()

    relay("relay-2")
    done = wait_until(lambda: (j := bulkjobs.get(db_conn, job_id)).state == "finished" and j, timeout=60,
                      what="the second relay to resume and finish the job")
    assert (done.done, done.matched, done.error) == (LETTERS, LETTERS, None)
    assert _open(db_conn, ids) == 0
    resolved = db_conn.execute("SELECT resolution, resolved_by, count(*) AS n FROM dead_letters WHERE id = ANY(%s)"
                               " GROUP BY 1, 2", (ids,)).fetchall()
    assert [(r["resolution"], r["resolved_by"], r["n"]) for r in resolved] == [
        ("discarded", "ops:Ada (tenant t)", LETTERS)]
    claims = db_conn.execute("SELECT claims FROM ops_bulk_jobs WHERE id = %s", (job_id,)).fetchone()["claims"]
    assert claims == 2, "claimed by the first relay, then once by the second"
    assert "resuming it" in (tmp_path / "relay-2.log").read_text()
