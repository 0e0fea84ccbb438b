"""Nothing lost (issue 10, defects 1 and 2), on the real platform: Redis losing its data, and a dead
letter Redis no longer holds.

- FLUSHALL while 20 bookings wait in Redis (workers stopped): the relay's reconciler finds their
  unfinished tasks in Postgres and re-publishes them; every booking completes with one email.
- An email goes dead (SMTP rejecting), its Redis dead letter is deleted, SMTP comes back: the retry
  endpoint delivers it exactly once, with or without the Postgres dead-letter record.

One platform serves the module (each start costs ~10 CPU-s): every test leaves each process running
and nothing of its own dead or queued, and a test that needs SMTP rejecting sets that itself
(`rejecting`), since another test lets SMTP accept again.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
import redis

from e2e_helpers import bookingctl, mails_to, wait_until

pytestmark = pytest.mark.e2e

WORKERS = ("email-worker-1", "invoice-worker-1", "audit-worker-1")
#: Above the test heartbeat timeout (5 s, tests/conftest.py), as the settings require.
RECONCILE = {"BOOKING_RECONCILE_AFTER_MS": "6000"}
ALL_DONE = {"email": "done", "invoice": "done", "audit": "done"}
BOUNCE = r"@bounce\.test$"


@pytest.fixture(scope="module")
def platform(new_platform):
    """The module's platform: reconciling after 6 s, its SMTP sink rejecting @bounce.test for good."""
    platform = new_platform("dead-letters", RECONCILE, smtp_reject_recipients=BOUNCE)
    platform.start()
    yield platform
    platform.stop()


def rejecting(platform) -> None:
    """SMTP rejects @bounce.test again, if a test before this one let it accept."""
    smtp = platform.servers["smtp"]
    if smtp.reject_recipients != BOUNCE:
        platform.stop_component("smtp")
        smtp.reject_recipients = BOUNCE
        platform.start_component("smtp")


def accepting(platform) -> None:
    """SMTP accepts every recipient again (a restart of the sink, as an operator's fix would be)."""
    platform.stop_component("smtp")
    platform.servers["smtp"].reject_recipients = None
    platform.start_component("smtp")


def scalar(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_flushall_while_20_bookings_are_queued_loses_nothing(platform, api_of):
    api = api_of(platform)
    db = platform.urls["DATABASE_URL"]
    r = redis.Redis.from_url(platform.urls["REDIS_URL"])
    # Given 20 bookings, with no worker running: the relay fills each queue's publish-ahead in Redis
    # (BOOKING_RELAY_AHEAD, 16) and keeps the rest in the outbox (the fair order)
    for name in WORKERS:
        platform.stop_component(name)
    ids = [api.book(name=f"Flush {i}", email=f"flush{i}@example.com")["id"] for i in range(20)]
    wait_until(lambda: all(r.llen(f"dramatiq:{q}") >= 16 for q in ("email", "invoice", "audit")),
               what="the relay filling each queue's publish-ahead")

    def in_redis() -> int:
        return sum(r.llen(f"dramatiq:{q}") for q in ("email", "invoice", "audit"))

    # The relay publishes, then deletes its rows in a transaction of its own: until that commits a
    # message is in both, so the split is read once the two add up (a loaded machine widened that gap).
    wait_until(lambda: scalar(db, "SELECT count(*) FROM outbox WHERE payload->>'booking_id' = ANY(%s)", ids)
               == 60 - in_redis(), timeout=30, what="each message either in Redis or in the outbox, not both")
    lost = in_redis()
    # When Redis loses everything it held
    r.flushall()
    assert r.dbsize() == 0
    lost_at = time.monotonic()
    for name in WORKERS:
        platform.start_component(name)
    # Then every booking still completes, each with exactly one email, one invoice, one audit entry
    for booking_id in ids:
        api.wait_states(booking_id, ALL_DONE, timeout=120)
    elapsed = time.monotonic() - lost_at
    print(f"reconciler: 20 bookings lost to FLUSHALL completed {elapsed:.1f}s later (threshold 6 s)")
    assert all(mails_to(platform.data_dir, f"flush{i}@example.com") == 1 for i in range(20))
    assert scalar(db, "SELECT count(*) FROM email_sends WHERE booking_id::text = ANY(%s)", ids) == 20
    assert scalar(db, "SELECT count(*) FROM invoices WHERE booking_id::text = ANY(%s) AND pdf IS NOT NULL",
                  ids) == 20
    assert scalar(db, "SELECT count(DISTINCT booking_id) FROM audit_log WHERE kind = 'booking.created'"
                      " AND booking_id::text = ANY(%s)", ids) == 20
    assert scalar(db, "SELECT count(*) FROM audit_log WHERE kind = 'booking.created'"
                      " AND booking_id::text = ANY(%s)", ids) == 20
    # And the relay says what it did
    log = (platform.log_dir / "relay.log").read_text(errors="replace")
    assert log.count("re-published as message") >= lost


def test_a_dead_email_redis_forgot_is_delivered_once_by_the_retry_endpoint(platform, api_of):
    rejecting(platform)
    api = api_of(platform)
    db = platform.urls["DATABASE_URL"]
    r = redis.Redis.from_url(platform.urls["REDIS_URL"])
    # Given two emails rejected for good (dead), recorded in Postgres
    kept = api.book(name="Kept Record", email="kept@bounce.test")["id"]
    lost = api.book(name="Lost Record", email="lost@bounce.test")["id"]
    for booking_id in (kept, lost):
        api.wait_states(booking_id, {"email": "dead", "invoice": "done", "audit": "done"})
    status, body = api.json("GET", "/api/v1/ops/dead-letters?queue=email&error=550")
    assert status == 200 and {d["booking_id"] for d in body["items"]} == {kept, lost}
    # And Redis loses both dead letters, and one of the Postgres records is missing too
    assert r.zcard("dramatiq:email.XQ") == 2
    r.delete("dramatiq:email.XQ", "dramatiq:email.XQ.msgs")
    scalar(db, "WITH d AS (DELETE FROM dead_letters WHERE booking_id = %s RETURNING 1) SELECT count(*) FROM d",
           lost)
    listed = bookingctl(platform, "dlq", "list", "--json", "--queue", "email")
    assert listed.returncode == 0, listed.stderr
    assert [d["booking_id"] for d in json.loads(listed.stdout)] == [kept]
    # When SMTP accepts again and an admin retries each task
    accepting(platform)
    for booking_id in (kept, lost):
        status, got = api.json("POST", f"/api/v1/ops/bookings/{booking_id}/tasks/email/retry")
        assert status == 202, got
    # Then each email is delivered exactly once
    for booking_id in (kept, lost):
        api.wait_states(booking_id, {"email": "done"}, timeout=60)
    time.sleep(2)  # a duplicate delivery would land within this
    assert (mails_to(platform.data_dir, "kept@bounce.test"), mails_to(platform.data_dir, "lost@bounce.test")) == (1, 1)
    assert scalar(db, "SELECT count(*) FROM email_sends WHERE booking_id::text = ANY(%s)", [kept, lost]) == 2
    # And nothing is left dead, each retry is audited naming the token, and a second retry is refused
    status, body = api.json("GET", "/api/v1/ops/dead-letters?queue=email")
    assert all(d["booking_id"] not in (kept, lost) for d in body["items"])
    wait_until(lambda: scalar(db, "SELECT count(*) FROM audit_log WHERE kind = 'deadletter.requeued'"
                                  " AND actor LIKE 'token:%%' AND booking_id::text = ANY(%s)", [kept, lost]) == 2,
               what="an audit entry per retry")
    status, got = api.json("POST", f"/api/v1/ops/bookings/{kept}/tasks/email/retry")
    assert status == 409 and got["status"] == 409


def test_bulk_requeue_from_the_cli_counts_then_delivers(platform, api_of):
    rejecting(platform)
    api = api_of(platform)
    ids = [api.book(name=f"Bulk {i}", email=f"bulk{i}@bounce.test")["id"] for i in range(3)]
    for booking_id in ids:
        api.wait_states(booking_id, {"email": "dead"})
    dry = bookingctl(platform, "dlq", "requeue", "--all", "--dry-run", "--error", "user unknown")
    assert (dry.returncode, dry.stdout.strip()) == (0, "would have requeued 3 dead letter(s)")
    accepting(platform)
    done = bookingctl(platform, "dlq", "requeue", "--all", "--error", "user unknown")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    for i, booking_id in enumerate(ids):
        api.wait_states(booking_id, {"email": "done"}, timeout=60)
        assert mails_to(platform.data_dir, f"bulk{i}@bounce.test") == 1
