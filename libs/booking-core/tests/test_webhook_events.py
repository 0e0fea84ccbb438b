"""Webhook events (migration 0013): recorded with the change, numbered per booking, fanned out per endpoint."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from booking_core.model import bookings, tenants
from booking_core.tasks import taskstate
from booking_core.webhooks import deliveries, endpoints, sealing
from relay_helpers import create_booking

#: The amount is asserted in the booking.created event.
BOOKING = bookings.NewBooking("Ada", "ada@example.com", "Room 7", date(2027, 3, 1), date(2027, 3, 4),
                              Decimal("360.00"), "EUR")


@pytest.fixture
def sealer():
    return sealing.Sealer([sealing.new_key()])


def new_booking(conn, tenant, *, fan_out: bool = True) -> str:
    """A booking; with `fan_out`, its booking.created event fanned out as the webhook worker would."""
    booking_id = create_booking(conn, tenant["id"], BOOKING)
    if fan_out:
        for e in conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking_id,)).fetchall():
            deliveries.fan_out(conn, e["id"], tenant["id"])
    return booking_id


def events(conn, booking_id) -> list[tuple]:
    rows = conn.execute("SELECT sequence, type, payload FROM webhook_events WHERE booking_id = %s"
                        " ORDER BY sequence", (booking_id,)).fetchall()
    return [(r["sequence"], r["type"], r["payload"]) for r in rows]


def webhook_outbox(conn, tenant) -> list[dict]:
    return [r["payload"] for r in conn.execute(
        "SELECT payload FROM outbox WHERE actor = 'deliver_webhook' AND payload->>'tenant_id' = %s ORDER BY id",
        (tenant["id"],)).fetchall()]


def done(conn, booking_id, task):
    with conn.transaction():
        taskstate.mark_done(conn, booking_id, task)


def test_no_endpoint_no_event(db_conn, tenant):
    booking_id = new_booking(db_conn, tenant)
    done(db_conn, booking_id, "email")
    assert events(db_conn, booking_id) == []
    assert webhook_outbox(db_conn, tenant) == []


def test_each_change_records_its_event_in_order_and_fans_out(db_conn, tenant, sealer):
    a, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook"})
    b, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://b.example/hook",
                                                            "event_types": ["booking.completed"]})
    booking_id = new_booking(db_conn, tenant)
    db_conn.execute("INSERT INTO email_sends (booking_id, message_id, recipient) VALUES (%s, 'm', 'ada@example.com')",
                    (booking_id,))
    done(db_conn, booking_id, "email")
    db_conn.execute("INSERT INTO invoices (booking_id, tenant_id, number, issued_at) VALUES (%s, %s, 'INV-7', now())",
                    (booking_id, tenant["id"]))
    done(db_conn, booking_id, "invoice")
    done(db_conn, booking_id, "audit")
    done(db_conn, booking_id, "audit")  # a redelivery changes nothing
    got = events(db_conn, booking_id)
    assert [(s, t) for s, t, _ in got] == [(1, "booking.created"), (2, "booking.email_sent"),
                                           (3, "booking.invoice_issued"), (4, "booking.completed")]
    created, emailed, invoiced, completed = (p for _, _, p in got)
    assert created["type"] == "booking.created" and created["timestamp"].endswith("Z")
    assert created["data"]["booking_id"] == booking_id and created["data"]["amount"] == "360.00"
    assert created["data"]["sequence"] == 1
    assert emailed["data"]["recipient"] == "ada@example.com"
    assert invoiced["data"]["invoice_number"] == "INV-7"
    assert invoiced["data"]["invoice_url"] == f"/api/v1/bookings/{booking_id}/invoice"
    assert completed["data"]["tasks"] == ["audit", "email", "invoice"]
    # Endpoint a wants every type, b only completion: five deliveries, one outbox message each.
    rows = db_conn.execute("SELECT d.endpoint_id::text AS e, ev.type FROM webhook_deliveries d"
                           " JOIN webhook_events ev ON ev.id = d.event_id WHERE ev.booking_id = %s",
                           (booking_id,)).fetchall()
    assert sorted((r["e"] == a["id"], r["type"]) for r in rows) == sorted(
        [(True, t) for _, t, _ in got] + [(False, "booking.completed")])
    assert len(webhook_outbox(db_conn, tenant)) == 5


def test_the_confirm_writes_the_event_and_one_message_and_the_fan_out_the_deliveries(db_conn, tenant, sealer):
    for i in range(10):
        endpoints.create(db_conn, sealer, tenant["id"], {"url": f"https://h{i}.example/hook"})
    booking_id = new_booking(db_conn, tenant, fan_out=False)
    [event] = db_conn.execute("SELECT id::text, fanned_out_at FROM webhook_events WHERE booking_id = %s",
                              (booking_id,)).fetchall()
    assert event["fanned_out_at"] is None
    msgs = db_conn.execute("SELECT actor, payload FROM outbox WHERE queue = 'webhook' AND payload->>'tenant_id' = %s",
                           (tenant["id"],)).fetchall()
    assert msgs == [{"actor": "fan_out_webhook_event", "payload": {"event_id": event["id"], "tenant_id": tenant["id"]}}]
    assert deliveries.fan_out(db_conn, event["id"], str(uuid.uuid4())) == 0  # another tenant's: nothing
    assert deliveries.fan_out(db_conn, event["id"], tenant["id"]) == 10
    assert deliveries.fan_out(db_conn, event["id"], tenant["id"]) == 0  # a duplicate message: nothing more
    assert len(webhook_outbox(db_conn, tenant)) == 10


def test_a_dead_task_is_an_event(db_conn, tenant, sealer):
    endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook"})
    booking_id = new_booking(db_conn, tenant)
    db_conn.execute("UPDATE booking_tasks SET state = 'dead', attempts = 3 WHERE booking_id = %s AND task = 'invoice'",
                    (booking_id,))
    assert [(t, p["data"].get("task"), p["data"].get("attempts")) for _, t, p in events(db_conn, booking_id)] == [
        ("booking.created", None, None), ("booking.task_dead", "invoice", 3)]


def test_the_event_rolls_back_with_its_change(database_url, db_conn, tenant, sealer):
    endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook"})
    booking_id = new_booking(db_conn, tenant)
    with psycopg.connect(database_url) as conn:
        taskstate.mark_done(conn, booking_id, "email")
        conn.rollback()
    assert [t for _, t, _ in events(db_conn, booking_id)] == ["booking.created"]
    assert len(webhook_outbox(db_conn, tenant)) == 1


def test_another_tenants_endpoint_hears_nothing(db_conn, tenant, sealer):
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    endpoints.create(db_conn, sealer, other["id"], {"url": "https://other.example/hook"})
    booking_id = new_booking(db_conn, tenant)
    done(db_conn, booking_id, "email")
    assert events(db_conn, booking_id) == []
    assert webhook_outbox(db_conn, other) == []


def calls_completing_all_tasks(database_url, booking_id) -> dict[str, int]:
    """Complete the booking's three tasks in one transaction, as the workers' commits do, and
    return how often each PL/pgSQL function ran in it (Postgres's own per-transaction counts).

    A new connection each time: a backend keeps these counts until it reports them, at most
    once a second, so an older connection's could include earlier transactions'.
    """
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("SET LOCAL track_functions = 'pl'")
        for task in ("email", "invoice", "audit"):
            taskstate.mark_done(conn, booking_id, task)
        rows = conn.execute("SELECT funcname, calls FROM pg_stat_xact_user_functions").fetchall()
    return {r["funcname"]: r["calls"] for r in rows}


def test_a_tenant_without_a_live_endpoint_costs_the_task_trigger_no_emit(database_url, db_conn, tenant, sealer):
    # Most tenants have no webhook: their task completions must not pay for the events'
    # payloads (email_sends, invoices, the completion check) only for webhook_emit to drop them.
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    endpoints.create(db_conn, sealer, other["id"], {"url": "https://other.example/hook"})
    endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://off.example/hook", "enabled": False})
    gone, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://gone.example/hook"})
    assert endpoints.delete(db_conn, tenant["id"], gone["id"])
    booking_id = new_booking(db_conn, tenant)
    calls = calls_completing_all_tasks(database_url, booking_id)
    assert calls.get("webhook_events_from_tasks") == 3  # the trigger ran, once per statement
    assert "webhook_emit" not in calls
    assert events(db_conn, booking_id) == []
    # The same completions of a tenant with a live endpoint emit their three events.
    theirs = new_booking(db_conn, other)
    calls = calls_completing_all_tasks(database_url, theirs)
    assert calls.get("webhook_emit") == 3
    assert [t for _, t, _ in events(db_conn, theirs)] == [
        "booking.created", "booking.email_sent", "booking.invoice_issued", "booking.completed"]


def test_disabled_and_deleted_endpoints_hear_nothing(db_conn, tenant, sealer):
    a, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook", "enabled": False})
    b, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://b.example/hook"})
    assert endpoints.delete(db_conn, tenant["id"], b["id"])
    new_booking(db_conn, tenant)
    assert webhook_outbox(db_conn, tenant) == []
    assert [e["id"] for e in endpoints.list_(db_conn, tenant["id"])] == [a["id"]]


def test_rotation_signs_with_both_secrets_until_the_overlap_ends(db_conn, tenant, sealer):
    row, first = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook"})
    stored = db_conn.execute("SELECT secret FROM webhook_endpoints WHERE id = %s", (row["id"],)).fetchone()
    assert first not in stored["secret"]  # sealed at rest
    _, second = endpoints.rotate(db_conn, sealer, tenant["id"], row["id"], overlap_seconds=3600)
    r = db_conn.execute("SELECT secret, previous_secret, previous_secret_until FROM webhook_endpoints WHERE id = %s",
                        (row["id"],)).fetchone()
    now = datetime.now(UTC)
    assert endpoints.live_secrets(sealer, r["secret"], r["previous_secret"], r["previous_secret_until"],
                                  now=now) == [second, first]
    assert endpoints.live_secrets(sealer, r["secret"], r["previous_secret"], r["previous_secret_until"],
                                  now=now + timedelta(hours=2)) == [second]
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    assert endpoints.rotate(db_conn, sealer, other["id"], row["id"], overlap_seconds=0) is None


@pytest.mark.parametrize(("fields", "field"), [
    ({}, "url"), ({"url": "ftp://x.example/"}, "url"), ({"url": "http://127.0.0.1/"}, "url"),
    ({"url": "http://[::ffff:10.0.0.1]/"}, "url"), ({"url": 7}, "url"),
    ({"url": "https://a.example/", "event_types": ["booking.nope"]}, "event_types"),
    ({"url": "https://a.example/", "event_types": "booking.created"}, "event_types"),
    ({"url": "https://a.example/", "enabled": "yes"}, "enabled"),
    ({"url": "https://a.example/", "description": "x" * 501}, "description"),
    ({"url": "https://a.example/", "secret": "whsec_mine"}, "secret"),
])
def test_bad_fields_are_named(fields, field):
    with pytest.raises(endpoints.FieldError) as err:
        endpoints.check(fields, partial=False)
    assert err.value.field == field


def test_attempts_failure_streak_disable_and_replay(db_conn, tenant, sealer):
    row, _ = endpoints.create(db_conn, sealer, tenant["id"], {"url": "https://a.example/hook"})
    new_booking(db_conn, tenant)
    d = db_conn.execute("SELECT id::text FROM webhook_deliveries WHERE endpoint_id = %s", (row["id"],)).fetchone()
    delivery = deliveries.for_sending(db_conn, d["id"], tenant["id"])
    assert delivery["state"] == "pending" and delivery["type"] == "booking.created"
    assert deliveries.for_sending(db_conn, d["id"], str(uuid.uuid4())) is None
    fail = deliveries.Outcome(status=503, latency_ms=12, response="busy\x00")
    with db_conn.transaction():
        r = deliveries.record(db_conn, delivery, fail, state="retrying", attempt=1, next_delay_ms=5000,
                              disable_after_seconds=3600)
    assert r == {"recorded": True, "disabled": False}
    # Failing for longer than the limit: the endpoint is disabled, and says why.
    db_conn.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours' WHERE id = %s",
                    (row["id"],))
    with db_conn.transaction():
        r = deliveries.record(db_conn, delivery, fail, state="dead", attempt=2, next_delay_ms=None,
                              disable_after_seconds=3600)
    assert r["disabled"]
    ep = endpoints.get(db_conn, tenant["id"], row["id"])
    assert not ep["enabled"] and ep["disabled_reason"].startswith("failing continuously since")
    log = deliveries.get(db_conn, tenant["id"], d["id"])
    assert (log["state"], log["attempts"], log["last_status"]) == ("dead", 2, 503)
    assert [(a["attempt"], a["status"], a["response"]) for a in log["attempt_log"]] == [
        (1, 503, "busy\ufffd"), (2, 503, "busy\ufffd")]
    since = datetime.now(UTC) - timedelta(hours=1)
    assert deliveries.replay_since(db_conn, tenant["id"], row["id"], since, dry_run=True, actor="test") == 1
    assert deliveries.get(db_conn, tenant["id"], d["id"])["state"] == "dead"  # a dry run changes nothing
    before = len(webhook_outbox(db_conn, tenant))
    assert deliveries.replay(db_conn, tenant["id"], d["id"], actor="test") == "replayed"
    assert deliveries.replay(db_conn, tenant["id"], d["id"], actor="test") == "open"
    assert len(webhook_outbox(db_conn, tenant)) == before + 1
    assert deliveries.get(db_conn, tenant["id"], d["id"])["attempts"] == 0
    # Re-enabling forgets the streak.
    ep = endpoints.update(db_conn, tenant["id"], row["id"], {"enabled": True})
    assert ep["enabled"] and ep["disabled_reason"] is None and ep["failing_since"] is None

