"""Signed webhooks on the real platform: API, relay, webhook worker and a receiver on 127.0.0.1.

- Each event of a booking reaches its tenant's endpoint once in effect: a receiver that answers
  503 first gets the same webhook-id again, and processes it once.
- Every signature verifies with the standardwebhooks reference library.
- A second tenant's endpoint never sees the first tenant's data.
- A black-holed endpoint (it never answers while the test runs) delays neither the email,
  invoice and audit workers nor the deliveries to another endpoint.
"""

from __future__ import annotations

import uuid

import pytest
from webhook_receiver import VerifyingReceiver, add_endpoint

from booking_core import db
from booking_core.model import tenants
from e2e_helpers import Api, scrape_metrics, wait_until

pytestmark = pytest.mark.e2e

ALL_DONE = {"email": "done", "invoice": "done", "audit": "done"}
TYPES = ["booking.created", "booking.email_sent", "booking.invoice_issued", "booking.completed"]


@pytest.fixture
def receivers():
    made = []

    def make(**kw) -> VerifyingReceiver:
        made.append(VerifyingReceiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_each_event_once_signed_per_tenant_and_isolated(make_platform, api_of, receivers):
    platform = make_platform({"BOOKING_WEBHOOKS_RETRY_FIRST_MS": "300", "BOOKING_WEBHOOKS_MAX_ATTEMPTS": "5"})
    first = api_of(platform)
    with db.connect(platform.urls["DATABASE_URL"], autocommit=True) as conn:
        other_tenant = tenants.ensure_tenant(conn, f"other-{uuid.uuid4().hex[:8]}")
        second = Api(platform.api_url, tenants.create_token(conn, other_tenant["id"])["token"])

    healthy = receivers(fail_first=1)  # answers 503 to the first request, then 200
    black_hole = receivers(hold=True)  # never answers while the test runs
    add_endpoint(first, healthy)
    add_endpoint(second, black_hole)

    mine = first.book()
    theirs = second.book(name="Grace Hopper", email="grace@example.com")
    # The black hole holds the second tenant's deliveries; the first tenant's work goes on.
    first.wait_states(mine["id"], ALL_DONE, timeout=90)
    wait_until(lambda: len(healthy.events()) == len(TYPES), timeout=90,
               what="the healthy receiver to process every event of the booking")
    assert black_hole.requests == []  # still held: no request has finished there
    events = sorted(healthy.events(), key=lambda e: e["data"]["sequence"])
    assert [e["type"] for e in events] == TYPES
    assert [e["data"]["sequence"] for e in events] == [1, 2, 3, 4]
    assert {e["data"]["booking_id"] for e in events} == {mine["id"]}
    assert events[2]["data"]["invoice_url"] == f"/api/v1/bookings/{mine['id']}/invoice"
    assert healthy.bad_signatures == 0
    # The 503 was retried with the same webhook-id, which was then processed once.
    assert healthy.requests[0]["status"] == 503
    retried = healthy.requests[0]["id"]
    assert [r["status"] for r in healthy.requests if r["id"] == retried] == [503, 200]
    # The delivery log says the same, once the worker has recorded the last answer (the receiver has it first).
    status, endpoints_ = first.json("GET", "/api/v1/webhooks/endpoints")
    assert status == 200

    def all_delivered() -> dict | None:
        status, log = first.json("GET", f"/api/v1/webhooks/endpoints/{endpoints_['items'][0]['id']}/deliveries")
        assert status == 200, log
        return log if {d["state"] for d in log["items"]} == {"delivered"} else None
    log = wait_until(all_delivered, timeout=30, what="every delivery of the booking recorded as delivered")
    assert sorted(d["attempts"] for d in log["items"]) == [1, 1, 1, 2]

    worker = scrape_metrics(platform.metrics_urls["webhook-worker-1"])
    assert worker.get(("booking_webhook_attempts_total", (("outcome", "delivered"),)), 0) >= len(TYPES)
    assert worker.get(("booking_webhook_attempts_total", (("outcome", "retrying"),)), 0) >= 1

    black_hole.released.set()
    wait_until(lambda: black_hole.events(), timeout=60, what="the released receiver to get its events")
    assert {e["data"]["booking_id"] for e in black_hole.events()} == {theirs["id"]}
    assert black_hole.bad_signatures == 0
