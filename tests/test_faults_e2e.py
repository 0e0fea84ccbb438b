"""Faults on the real platform: Redis down, SMTP refusing.

Nothing is lost: every booking still ends with exactly one email, one
invoice and one audit entry for its creation.  Killed workers (their Dramatiq
parents SIGKILLed mid-task) and killed servers are in test_supervision_e2e.py.

The SMTP tests share one platform (each start costs ~10 CPU-s): each leaves the sink running and
looks only at its own bookings.  The Redis outage counts what the API logged and counted across the
whole platform, so it has its own.
"""

from __future__ import annotations

import json
import re
import urllib.request

import psycopg
import pytest

from e2e_helpers import bookingctl, wait_until

pytestmark = pytest.mark.e2e


def scalar(url: str, sql: str, *params):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_bookings_are_accepted_while_redis_is_down_and_finish_after(make_platform, api_of):
    platform = make_platform()
    api = api_of(platform)
    db = platform.urls["DATABASE_URL"]
    platform.stop_component("redis")
    ids = [api.book(name=f"Guest {i}", email=f"guest{i}@example.com")["id"] for i in range(5)]
    assert scalar(db, "SELECT count(*) FROM outbox WHERE payload->>'booking_id' = ANY(%s)", ids) == 15
    # The admission limiter could not ask Redis: it admitted all five (fail open), counted them, said so once.
    with urllib.request.urlopen(platform.metrics_urls["api"], timeout=10) as r:
        assert re.search(r"^booking_api_limiter_fail_open_total 5\.0$", r.read().decode(), re.M)
    assert (platform.log_dir / "api.log").read_text().count("rate limiter store unreachable") == 1
    platform.start_component("redis")
    for booking_id in ids:
        api.wait_states(booking_id, {"email": "done", "invoice": "done", "audit": "done"}, timeout=90)
    assert scalar(db, "SELECT count(*) FROM email_sends WHERE booking_id::text = ANY(%s)", ids) == 5


#: Email retries for the SMTP outage: three, 2-8 s apart (Dramatiq doubles them, jitter up to 2x), so
#: at least 12 s pass between the first retry and the last, time enough to restart the SMTP sink on a
#: loaded machine.  With FAST_ENV's 0.3-1 s they were over in about 2 s, and a restart that took
#: longer left the short outage's email dead (seen once under load), not done.
PATIENT_EMAIL = {"BOOKING_RETRY_EMAIL_MIN_BACKOFF_MS": "2000", "BOOKING_RETRY_EMAIL_MAX_BACKOFF_MS": "8000"}


@pytest.fixture(scope="module")
def smtp_platform(new_platform):
    """The SMTP tests' platform: patient email retries, and a sink that rejects @bounce.test for good
    (a permanent rejection is never retried, so the backoff does not touch that test)."""
    platform = new_platform("faults-smtp", PATIENT_EMAIL, smtp_reject_recipients=r"@bounce\.test$")
    platform.start()
    yield platform
    platform.stop()


def test_smtp_outage_retries_then_dead_letters_and_requeue_finishes(smtp_platform, api_of):
    platform = smtp_platform
    api = api_of(platform)
    platform.stop_component("smtp")

    # A short outage: retrying, then done once SMTP is back.
    first = api.book(name="Retry Me", email="retry@example.com")
    tasks = api.wait_states(first["id"], {"email": "retrying"})
    assert "refused" in tasks["email"]["last_error"].lower()
    platform.start_component("smtp")
    api.wait_states(first["id"], {"email": "done"})

    # A long outage: retries exhausted, dead, listed by the CLI and the API, requeued.
    platform.stop_component("smtp")
    second = api.book(name="Dead Letter", email="dead@example.com")
    tasks = api.wait_states(second["id"], {"email": "dead"}, timeout=90)
    assert tasks["email"]["attempts"] == 4  # the first try and three retries
    listed = bookingctl(platform, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [d for d in json.loads(listed.stdout) if d["booking_id"] == second["id"]]
    assert len(letters) == 1 and letters[0]["queue"] == "email"
    status, body = api.json("GET", "/api/v1/ops/dead-letters?queue=email")
    assert status == 200 and [d["id"] for d in body["items"] if d["booking_id"] == second["id"]] == [letters[0]["id"]]

    platform.start_component("smtp")
    status, _ = api.json("POST", f"/api/v1/ops/dead-letters/{letters[0]['id']}/requeue")
    assert status == 200
    api.wait_states(second["id"], {"email": "done"})
    status, body = api.json("GET", "/api/v1/ops/dead-letters")
    assert all(d["booking_id"] != second["id"] for d in body["items"])
    db = platform.urls["DATABASE_URL"]
    wait_until(lambda: scalar(db, "SELECT count(*) FROM audit_log WHERE booking_id = %s"
                              " AND kind = 'deadletter.requeued' AND actor LIKE 'token:%%'", second["id"]) == 1,
               what="an audit entry for the requeue naming the token")


def test_permanent_smtp_rejection_goes_straight_to_dead(smtp_platform, api_of):
    api = api_of(smtp_platform)
    booking = api.book(name="No Such User", email="nobody@bounce.test")
    tasks = api.wait_states(booking["id"], {"email": "dead", "invoice": "done", "audit": "done"})
    assert tasks["email"]["attempts"] == 1
    assert "550" in tasks["email"]["last_error"]
