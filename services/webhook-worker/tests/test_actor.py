"""The webhook actor against a real receiver on 127.0.0.1, real Postgres; signatures checked by standardwebhooks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import date
from decimal import Decimal

import dramatiq
import pytest
from dramatiq.errors import Retry
from standardwebhooks.webhooks import Webhook

from booking_core.webhooks import endpoints, sealing


def add_endpoint(db_conn, tenant, key, url, **fields) -> tuple[dict, str]:
    return endpoints.create(db_conn, sealing.Sealer([key]), tenant["id"], {"url": url, **fields})


def deliveries_of(db_conn, endpoint) -> list[dict]:
    return db_conn.execute(
        "SELECT d.id::text, d.tenant_id::text, d.state, d.attempts, d.last_status, d.last_error, ev.type"
        " FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id WHERE d.endpoint_id = %s"
        " ORDER BY ev.sequence, d.id", (endpoint["id"],)).fetchall()


def run(actors, delivery) -> None:
    actors.deliver_webhook.fn(delivery_id=delivery["id"], tenant_id=delivery["tenant_id"])


def test_a_delivery_is_signed_verifiable_and_recorded(load_actors, receiver, db_conn, tenant, webhooks_key,
                                                       make_booking):
    actors = load_actors()
    endpoint, secret = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    booking = make_booking(trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    [delivery] = deliveries_of(db_conn, endpoint)
    run(actors, delivery)
    [req] = receiver.requests
    event = Webhook(secret).verify(req["body"], {k.lower(): v for k, v in req["headers"].items()})
    assert event["type"] == "booking.created"
    assert event["data"]["booking_id"] == booking["id"] and event["data"]["sequence"] == 1
    assert req["headers"]["webhook-id"].startswith("msg_")
    assert req["headers"]["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert req["headers"]["Host"] == f"127.0.0.1:{receiver.port}"
    [after] = deliveries_of(db_conn, endpoint)
    assert (after["state"], after["attempts"], after["last_status"]) == ("delivered", 1, 200)
    run(actors, delivery)  # a duplicate message: the delivery is closed, nothing is sent
    assert len(receiver.requests) == 1


def test_a_retry_keeps_the_webhook_id_and_body_and_honours_retry_after(load_actors, receiver, db_conn, tenant,
                                                                      webhooks_key, make_booking):
    actors = load_actors()
    endpoint, secret = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    make_booking()
    [delivery] = deliveries_of(db_conn, endpoint)
    receiver.answers = [(503, {"Retry-After": "7"})]
    with pytest.raises(Retry) as retry:
        run(actors, delivery)
    assert retry.value.delay == 7000
    assert deliveries_of(db_conn, endpoint)[0]["state"] == "retrying"
    run(actors, delivery)
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["body"] == second["body"]
    Webhook(secret).verify(second["body"], {k.lower(): v for k, v in second["headers"].items()})
    after = deliveries_of(db_conn, endpoint)[0]
    assert (after["state"], after["attempts"]) == ("delivered", 2)


def test_a_final_answer_or_spent_schedule_is_dead(load_actors, receiver, db_conn, tenant, webhooks_key,
                                                  make_booking):
    actors = load_actors(BOOKING_WEBHOOKS_MAX_ATTEMPTS="2")
    endpoint, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    make_booking()
    make_booking()
    first, second = deliveries_of(db_conn, endpoint)
    receiver.answers = [(400, {})]
    run(actors, first)  # 400: final, no Retry
    assert deliveries_of(db_conn, endpoint)[0]["state"] == "dead"
    receiver.answers = [(500, {}), (500, {})]
    with pytest.raises(Retry):
        run(actors, second)
    run(actors, second)  # the second (last) attempt fails too
    states = {d["id"]: (d["state"], d["attempts"], d["last_status"]) for d in deliveries_of(db_conn, endpoint)}
    assert states[second["id"]] == ("dead", 2, 500)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"])
def test_without_the_allow_list_no_request_reaches_loopback(load_actors, receiver, db_conn, tenant, webhooks_key,
                                                            make_booking, host):
    actors = load_actors(BOOKING_WEBHOOKS_ALLOWED_NETWORKS="")
    # A name is only judged at delivery (an address literal is refused at creation: written directly here).
    endpoint, _ = add_endpoint(db_conn, tenant, webhooks_key, "https://placeholder.example/")
    db_conn.execute("UPDATE webhook_endpoints SET url = %s WHERE id = %s", (receiver.url(host), endpoint["id"]))
    make_booking()
    [delivery] = deliveries_of(db_conn, endpoint)
    run(actors, delivery)
    assert receiver.requests == []
    [after] = deliveries_of(db_conn, endpoint)
    assert after["state"] == "dead" and after["last_error"].startswith("refused:")


def test_during_rotation_both_secrets_verify(load_actors, receiver, db_conn, tenant, webhooks_key, make_booking):
    actors = load_actors()
    endpoint, old = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    _, new = endpoints.rotate(db_conn, sealing.Sealer([webhooks_key]), tenant["id"], endpoint["id"],
                              overlap_seconds=3600)
    make_booking()
    [delivery] = deliveries_of(db_conn, endpoint)
    run(actors, delivery)
    [req] = receiver.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert json.loads(req["body"]) == Webhook(secret).verify(req["body"], headers)


def test_a_disabled_endpoint_gets_nothing(load_actors, receiver, db_conn, tenant, webhooks_key, make_booking):
    actors = load_actors()
    endpoint, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    make_booking()
    endpoints.update(db_conn, tenant["id"], endpoint["id"], {"enabled": False})
    [delivery] = deliveries_of(db_conn, endpoint)
    run(actors, delivery)
    assert receiver.requests == []
    assert deliveries_of(db_conn, endpoint)[0]["last_error"] == "endpoint disabled"


def test_a_busy_endpoint_puts_the_delivery_back_without_an_attempt(load_actors, receiver, db_conn, tenant,
                                                                 webhooks_key, make_booking):
    actors = load_actors(BOOKING_WEBHOOKS_ENDPOINT_CONCURRENCY="1")
    endpoint, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    make_booking()
    make_booking()
    first, second = deliveries_of(db_conn, endpoint)
    receiver.hold.clear()  # the receiver holds the first request
    t = threading.Thread(target=run, args=(actors, first))
    t.start()
    try:
        from e2e_helpers import wait_until
        wait_until(lambda: len(receiver.requests) == 1, timeout=10, what="the first request to arrive")
        with pytest.raises(Retry, match="endpoint busy"):
            run(actors, second)
    finally:
        receiver.hold.set()
        t.join(10)
    assert {d["id"]: d["attempts"] for d in deliveries_of(db_conn, endpoint)} == {first["id"]: 1, second["id"]: 0}


def another_tenant_with_a_delivery(db_conn, database_url, key, url) -> tuple[dict, dict]:
    """(endpoint, delivery) of a second fresh tenant: an endpoint at `url`, then one booking's delivery."""
    from booking_core import db
    from booking_core.model import bookings, tenants
    from booking_core.webhooks import deliveries

    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    endpoint, _ = add_endpoint(db_conn, other, key, url)
    values = bookings.NewBooking("Grace Hopper", "grace@example.test", "Room 7", date(2030, 6, 1),
                                 date(2030, 6, 2), Decimal("99.00"), "EUR")
    with db.connect(database_url) as conn, conn.transaction():
        bookings.create(conn, tenant_id=other["id"], booking=values, actor="test")
    with db.connect(database_url, autocommit=True) as conn:
        for e in conn.execute("SELECT id::text FROM webhook_events WHERE tenant_id = %s", (other["id"],)):
            deliveries.fan_out(conn, e["id"], other["id"])
    return endpoint, deliveries_of(db_conn, endpoint)[0]


def test_a_tenant_holds_at_most_half_the_threads_however_many_endpoints_it_has(
        load_actors, receiver, db_conn, tenant, webhooks_key, make_booking, database_url):
    """On a 2-thread worker a tenant gets one thread: its second endpoint's delivery goes back without an
    attempt while its first is held, though that endpoint has a slot free; another tenant's goes at once."""
    from e2e_helpers import wait_until

    actors = load_actors()
    actors.EndpointShare().before_worker_boot(actors.broker, dramatiq.Worker(actors.broker, worker_threads=2))
    assert actors.tenant_slots.per_key == 1
    first, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    second, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url() + "/second")
    make_booking()
    theirs, their_delivery = another_tenant_with_a_delivery(db_conn, database_url, webhooks_key,
                                                            receiver.url() + "/theirs")
    receiver.hold.clear()  # every request is held until released
    threads = [threading.Thread(target=run, args=(actors, deliveries_of(db_conn, first)[0]))]
    threads[0].start()
    try:
        wait_until(lambda: len(receiver.requests) == 1, timeout=10, what="the first endpoint's request")
        later = time.monotonic() + 9  # the first endpoint's attempt has now been held for 9 s
        actors.slots._clock = actors.tenant_slots._clock = lambda: later
        with pytest.raises(Retry, match="tenant busy") as put_back:
            run(actors, deliveries_of(db_conn, second)[0])
        # Back after its own endpoint's wait (a second, jittered over one more), not the held attempt's 9 s:
        # the tenant's slot frees when any of its attempts ends.
        assert 1_000 < put_back.value.delay <= 2_001
        threads.append(threading.Thread(target=run, args=(actors, their_delivery)))
        threads[1].start()
        wait_until(lambda: len(receiver.requests) == 2, timeout=10, what="the other tenant's request")
        assert receiver.requests[1]["path"] == "/hooks/theirs"
    finally:
        receiver.hold.set()
        for t in threads:
            t.join(10)
    assert [d["attempts"] for d in deliveries_of(db_conn, first)] == [1]
    assert [(d["attempts"], d["state"]) for d in deliveries_of(db_conn, second)] == [(0, "pending")]
    assert [d["attempts"] for d in deliveries_of(db_conn, theirs)] == [1]


def test_another_tenants_delivery_id_is_not_found(load_actors, receiver, db_conn, tenant, webhooks_key,
                                                  make_booking):
    actors = load_actors()
    endpoint, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    make_booking()
    [delivery] = deliveries_of(db_conn, endpoint)
    actors.deliver_webhook.fn(delivery_id=delivery["id"], tenant_id=str(uuid.uuid4()))
    assert receiver.requests == [] and deliveries_of(db_conn, endpoint)[0]["state"] == "pending"


def test_the_fan_out_actor_writes_one_delivery_per_live_endpoint(load_actors, receiver, db_conn, tenant,
                                                                  webhooks_key, database_url):
    from datetime import date
    from decimal import Decimal

    from booking_core.model import bookings

    actors = load_actors()
    live, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    off, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url())
    other, _ = add_endpoint(db_conn, tenant, webhooks_key, receiver.url(), event_types=["booking.completed"])
    booking = bookings.create(db_conn, tenant_id=tenant["id"], actor="test", booking=bookings.NewBooking(
        "Ada", "ada@example.test", "Room", date(2030, 5, 1), date(2030, 5, 4), Decimal("10.00"), "EUR"))
    endpoints.update(db_conn, tenant["id"], off["id"], {"enabled": False})
    [event] = db_conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking["id"],))
    actors.fan_out_webhook_event.fn(event_id=event["id"], tenant_id=tenant["id"])
    actors.fan_out_webhook_event.fn(event_id=event["id"], tenant_id=tenant["id"])  # a duplicate
    assert [len(deliveries_of(db_conn, e)) for e in (live, off, other)] == [1, 0, 0]
