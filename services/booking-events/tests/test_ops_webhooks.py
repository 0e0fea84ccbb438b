"""The console's webhooks pages over real HTTP, on real Postgres: endpoints, a delivery log, a replay."""

from __future__ import annotations

import html

from booking_core.webhooks import endpoints
from booking_core.webhooks.sealing import Sealer, new_key
from relay_helpers import webhook_audits


def dead_delivery(db_conn, tenant, make_booking) -> tuple[dict, str, str]:
    """An endpoint of the tenant with one dead delivery: (endpoint, its plain secret, the delivery's id)."""
    endpoint, secret = endpoints.create(db_conn, Sealer([new_key()]), tenant["id"], {
        "url": "https://hooks.example/receive?tenant=<b>x</b>", "event_types": ["booking.created"]})
    booking = make_booking()  # its booking.created event is recorded by the trigger, with the booking
    event = db_conn.execute("SELECT id FROM webhook_events WHERE booking_id = %s AND type = 'booking.created'",
                            (booking,)).fetchone()["id"]
    delivery = db_conn.execute(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, state, attempts, last_status, last_error)"
        " VALUES (%s, %s, %s, 'dead', 3, 410, 'gone') RETURNING id::text", (event, endpoint["id"], tenant["id"])
    ).fetchone()["id"]
    return endpoint, secret, delivery


def test_an_operator_sees_endpoints_and_replays_a_dead_delivery(console, db_conn, tenant, make_booking):
    endpoint, secret, delivery = dead_delivery(db_conn, tenant, make_booking)
    status, _, listing = console.get("/ops/webhooks")
    assert status == 200
    assert f'href="/ops/webhooks/endpoints/{endpoint["id"]}"' in listing
    assert html.escape(endpoint["url"]) in listing and "<b>x</b>" not in listing  # escaped, never markup
    path = f"/ops/webhooks/endpoints/{endpoint['id']}"
    status, _, log = console.get(path)
    assert status == 200 and f'data-delivery="{delivery}"' in log and "gone" in log
    assert f'action="/ops/webhooks/deliveries/{delivery}/replay"' in log
    for page in (listing, log):
        assert secret not in page and "whsec_" not in page  # no page shows a signing secret

    status, headers, _ = console.post(f"/ops/webhooks/deliveries/{delivery}/replay", {"csrf": console.csrf(path)})
    assert status == 303 and headers["location"] == path
    row = db_conn.execute("SELECT state, attempts FROM webhook_deliveries WHERE id = %s", (delivery,)).fetchone()
    assert (row["state"], row["attempts"]) == ("pending", 0)
    sent = db_conn.execute("SELECT count(*) AS n FROM outbox WHERE queue = 'webhook' AND payload->>'delivery_id' = %s",
                           (delivery,)).fetchone()["n"]
    assert sent == 1
    # Still being tried: a second replay changes nothing.
    status, _, page = console.post(f"/ops/webhooks/deliveries/{delivery}/replay", {"csrf": console.csrf(path)})
    assert status == 409 and "still being tried" in page
    assert db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'delivery_id' = %s",
                           (delivery,)).fetchone()["n"] == 1


def test_a_replay_without_the_csrf_token_or_of_no_delivery_changes_nothing(console, db_conn, tenant, make_booking):
    _, _, delivery = dead_delivery(db_conn, tenant, make_booking)
    status, _, _ = console.post(f"/ops/webhooks/deliveries/{delivery}/replay", {"csrf": "forged"})
    assert status == 403
    assert db_conn.execute("SELECT state FROM webhook_deliveries WHERE id = %s", (delivery,)).fetchone()["state"] == \
        "dead"
    missing = "00000000-0000-4000-8000-000000000000"
    status, _, _ = console.post(f"/ops/webhooks/deliveries/{missing}/replay", {"csrf": console.csrf()})
    assert status == 404
    status, _, page = console.get(f"/ops/webhooks/endpoints/{missing}")
    assert status == 404


def test_the_delivery_log_filters_by_state_and_refuses_an_unknown_one(console, db_conn, tenant, make_booking):
    endpoint, _, delivery = dead_delivery(db_conn, tenant, make_booking)
    path = f"/ops/webhooks/endpoints/{endpoint['id']}"
    assert f'data-delivery="{delivery}"' in console.get(path + "?state=dead")[2]
    assert f'data-delivery="{delivery}"' not in console.get(path + "?state=delivered")[2]
    status, _, page = console.get(path + "?state=<script>")
    assert status == 400 and "<script>" not in page


def test_a_console_replay_is_audited_once_as_the_signed_in_operator(console, db_conn, tenant, make_booking):
    endpoint, _, delivery = dead_delivery(db_conn, tenant, make_booking)
    path = f"/ops/webhooks/endpoints/{endpoint['id']}"
    missing = "00000000-0000-4000-8000-000000000000"
    assert console.post(f"/ops/webhooks/deliveries/{missing}/replay", {"csrf": console.csrf()})[0] == 404
    assert webhook_audits(db_conn, tenant["id"]) == []
    status, _, _ = console.post(f"/ops/webhooks/deliveries/{delivery}/replay", {"csrf": console.csrf(path)})
    assert status == 303
    [entry] = webhook_audits(db_conn, tenant["id"])
    assert entry["kind"] == "webhook.replayed"
    assert entry["actor"] == f"ops:Grace <on call> (tenant {tenant['name']})"
    assert (entry["details"]["delivery_id"], entry["details"]["endpoint_id"]) == (delivery, endpoint["id"])
    # Still being tried: refused, nothing more written.
    assert console.post(f"/ops/webhooks/deliveries/{delivery}/replay", {"csrf": console.csrf(path)})[0] == 409
    assert len(webhook_audits(db_conn, tenant["id"])) == 1
