"""Bulk dead-letter jobs on real Postgres: started queued, claimed by one runner, progress per batch,
taken over when their runner goes quiet, never acted on twice."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from booking_core import db
from booking_core.model import bookings
from booking_core.ops import bulkjobs, filters
from booking_core.tasks import deadletters


def _letter(conn, tenant, error: str) -> str:
    nb = bookings.NewBooking("Ada", "ada@example.com", "Room", date(2027, 3, 1), date(2027, 3, 2),
                             Decimal("10.00"), "EUR")
    booking_id = bookings.create(conn, tenant_id=tenant["id"], booking=nb, actor="test")["id"]
    conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'email'", (booking_id,))
    return conn.execute(
        "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, kwargs, error, attempts)"
        " VALUES (%s, 'email', 'send_confirmation_email', 'email', %s, %s, '{}', %s, 3) RETURNING id::text",
        (str(uuid.uuid4()), tenant["id"], booking_id, error)).fetchone()["id"]


@pytest.fixture
def job_filter(db_conn, tenant):
    """Factory: `n` dead letters of this test's own and the filter that selects exactly them."""

    def make(n: int) -> tuple[list[str], deadletters.Filter]:
        marker = uuid.uuid4().hex
        ids = [_letter(db_conn, tenant, f"boom {marker}") for _ in range(n)]
        return ids, deadletters.Filter(queue="email", tenant_id=tenant["id"], error=marker)

    return make


@pytest.fixture(autouse=True)
def _no_other_open_jobs(db_conn):
    """Claims take the oldest open job: jobs other tests left open must not be claimed here."""
    db_conn.execute("UPDATE ops_bulk_jobs SET state = 'failed', finished_at = now()"
                    " WHERE state IN ('queued', 'running')")


def test_a_job_is_queued_then_claimed_once_and_done_in_batches(db_conn, job_filter, settings):
    ids, f = job_filter(5)
    job_id = bulkjobs.start(db_conn, "discard", f, actor="ops:Ada (tenant t)")
    job = bulkjobs.get(db_conn, job_id)
    assert (job.state, job.done, job.matched, job.percent, filters.from_json(job.filter)) == ("queued", 0, 5, 0, f)
    job_id2, token = bulkjobs.claim(db_conn, stale_seconds=60)
    assert job_id2 == job_id and bulkjobs.get(db_conn, job_id).state == "running"
    assert bulkjobs.claim(db_conn, stale_seconds=60) is None, "a running job with a live runner is not claimed"
    bulkjobs.run(db_conn, None, settings.redis_namespace, job_id, token, batch_size=2)
    done = bulkjobs.get(db_conn, job_id)
    assert (done.state, done.done, done.matched, done.percent, done.stalled) == ("finished", 5, 5, 100, False)
    assert done.as_dict()["counts"] == {"done": 5, "total": 5} and done.as_dict()["errors"] == []
    rows = db_conn.execute("SELECT resolution, resolved_by FROM dead_letters WHERE id = ANY(%s)", (ids,)).fetchall()
    assert {(r["resolution"], r["resolved_by"]) for r in rows} == {("discarded", "ops:Ada (tenant t)")}
    assert bulkjobs.get(db_conn, "not-a-uuid") is None and bulkjobs.get(db_conn, str(uuid.uuid4())) is None


def test_a_quiet_runners_job_is_taken_over_and_the_old_runner_undoes_its_batch(db_conn, database_url,
                                                                               job_filter, settings):
    ids, f = job_filter(3)
    job_id = bulkjobs.start(db_conn, "requeue", f, actor="ops:x")
    _, old_token = bulkjobs.claim(db_conn, stale_seconds=60)
    db_conn.execute("UPDATE ops_bulk_jobs SET heartbeat_at = now() - interval '2 minutes' WHERE id = %s", (job_id,))
    assert bulkjobs.get(db_conn, job_id).stalled
    taken = bulkjobs.claim(db_conn, stale_seconds=60)
    assert taken is not None and taken[0] == job_id and taken[1] != old_token
    # The old runner wakes up and does a batch: its progress update finds the claim gone, so the
    # batch's transaction (the letters' requeue included) rolls back and it stops.
    with db.connect(database_url, autocommit=True) as old:
        bulkjobs.run(old, None, settings.redis_namespace, job_id, old_token, batch_size=2)
    assert db_conn.execute("SELECT count(*) AS n FROM dead_letters WHERE id = ANY(%s) AND resolved_at IS NULL",
                           (ids,)).fetchone()["n"] == 3
    assert bulkjobs.get(db_conn, job_id).done == 0
    bulkjobs.run(db_conn, None, settings.redis_namespace, job_id, taken[1], batch_size=2)
    job = bulkjobs.get(db_conn, job_id)
    assert (job.state, job.done) == ("finished", 3)
    audited = db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'kind' = 'deadletter.requeued'"
                              " AND payload->>'booking_id' IN (SELECT booking_id::text FROM dead_letters"
                              " WHERE id = ANY(%s))", (ids,)).fetchone()["n"]
    assert audited == 3, "each letter audited once, not once per runner"


def test_a_job_whose_runners_keep_dying_is_failed_not_claimed_for_ever(db_conn, job_filter):
    _, f = job_filter(1)
    job_id = bulkjobs.start(db_conn, "requeue", f, actor="ops:x")
    for _ in range(bulkjobs.MAX_CLAIMS):
        assert bulkjobs.claim(db_conn, stale_seconds=60)[0] == job_id
        db_conn.execute("UPDATE ops_bulk_jobs SET heartbeat_at = now() - interval '2 minutes' WHERE id = %s",
                        (job_id,))
    assert bulkjobs.claim(db_conn, stale_seconds=60) is None
    job = bulkjobs.get(db_conn, job_id)
    assert job.state == "failed" and "stopped 5 times" in job.error


def test_start_refuses_an_unknown_action(db_conn):
    with pytest.raises(ValueError, match="action"):
        bulkjobs.start(db_conn, "delete", deadletters.Filter(), actor="x")


def test_the_runner_continues_the_trace_of_the_request_that_started_the_job(db_conn, job_filter, settings):
    """Tracing off here (no SDK): the runner's work still runs in the starting request's trace context."""
    from opentelemetry import context, propagate

    from booking_core.telemetry.tracing import current_trace_id

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    _, f = job_filter(2)
    token = context.attach(propagate.extract({"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}))
    try:
        job_id = bulkjobs.start(db_conn, "discard", f, actor="ops:x")
    finally:
        context.detach(token)
    assert current_trace_id() is None
    seen = []
    _, claim = bulkjobs.claim(db_conn, stale_seconds=60)
    bulkjobs.run(db_conn, None, settings.redis_namespace, job_id, claim, on_letter=lambda _d: seen.append(
        current_trace_id()))
    assert seen == [trace_id, trace_id]
