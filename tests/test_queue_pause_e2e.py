"""Pausing a queue on the real platform (`bookingctl up`): bookingctl, the workers, the API, the metrics.

The email queue is paused from the command line; a booking's invoice and audit
record go on while its email waits (longer than the 5 s worker heartbeat
timeout); every surface shows the pause.  On resume from the API the email goes
out once, and both operator actions are in the platform's audit chain, which
verifies.
"""

from __future__ import annotations

import json
import time
import urllib.request

import psycopg
import pytest

from e2e_helpers import bookingctl, mails_to, wait_until

pytestmark = pytest.mark.e2e


def paused_gauge(platform) -> dict[str, float]:
    with urllib.request.urlopen(platform.metrics_urls["api"], timeout=10) as r:
        text = r.read().decode()
    return {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
            if line.startswith("booking_queue_paused{")}


def test_a_paused_email_queue_holds_the_email_and_sends_it_once_on_resume(make_platform, api_of):
    platform = make_platform()
    api = api_of(platform)
    paused = bookingctl(platform, "queues", "pause", "email", "--reason", "SMTP provider incident")
    assert paused.returncode == 0 and paused.stdout == "paused email\n", paused.stderr
    # (a worker reads the pause within BOOKING_PAUSE_POLL_MS, 1 s: wait until it says it has)
    log = platform.data_dir / "logs" / "email-worker-1.log"
    wait_until(lambda: "queue email paused" in log.read_text(errors="replace"), timeout=15,
               what="the email worker to apply the pause")
    # Given a booking made while email is paused
    booking = api.book(name="Paused Mail", email="paused@example.com")
    # Then its invoice and audit record go on, its email waits, past the heartbeat timeout
    api.wait_states(booking["id"], {"invoice": "done", "audit": "done"})
    time.sleep(7)
    assert api.tasks(booking["id"])["email"]["state"] == "pending"
    assert mails_to(platform.data_dir, "paused@example.com") == 0
    # And every surface says the queue is paused
    listed = bookingctl(platform, "queues", "--json")
    assert {q["queue"]: q["paused"] for q in json.loads(listed.stdout)} == {
        "email": True, "invoice": False, "audit": False, "webhook": False}
    status, body = api.json("GET", "/api/v1/ops/queues")
    email = next(q for q in body["queues"] if q["queue"] == "email")
    assert status == 200 and email["paused"] and email["reason"] == "SMTP provider incident"
    assert email["ready"] + email["in_flight"] == 1
    assert paused_gauge(platform) == {"email": 1.0, "invoice": 0.0, "audit": 0.0, "webhook": 0.0}
    # When resumed from the API, the email goes out, once
    status, body = api.json("POST", "/api/v1/ops/queues/email/resume")
    assert status == 200 and body["changed"] is True
    api.wait_states(booking["id"], {"email": "done"}, timeout=30)
    time.sleep(2)
    assert mails_to(platform.data_dir, "paused@example.com") == 1
    assert paused_gauge(platform)["email"] == 0.0
    # And both actions are in the platform's audit chain, intact
    with psycopg.connect(platform.urls["DATABASE_URL"]) as conn:
        wait_until(lambda: conn.execute("SELECT count(*) FROM audit_log a JOIN tenants t ON t.id = a.tenant_id"
                                        " WHERE t.name = 'platform-ops'").fetchone()[0] == 2, what="both entries")
        kinds, actors = zip(*conn.execute(
            "SELECT kind, actor FROM audit_log a JOIN tenants t ON t.id = a.tenant_id WHERE t.name = 'platform-ops'"
            " ORDER BY seq").fetchall(), strict=True)
    assert kinds == ("queue.paused", "queue.resumed")
    assert actors[0].startswith("cli:") and actors[1].startswith("token:")
    verified = bookingctl(platform, "audit", "verify", "--tenant", "platform-ops")
    assert verified.returncode == 0 and "intact" in verified.stdout
