"""What the relay reports of the backlog: per queue to Redis and /metrics, the top tenants by label."""

from __future__ import annotations

import uuid
from dataclasses import replace

from prometheus_client import generate_latest

from booking_core import db
from booking_core.model import tenants
from booking_scaling import outboxmirror
from outbox_relay import Relay
from outbox_relay.backlog import OTHER, queue_totals, tenant_label, top_tenants
from relay_helpers import create_bookings


def row(queue, tenant, waiting, later=0, oldest=0):
    return {"queue": queue, "tenant_id": tenant, "waiting": waiting, "later": later, "oldest_ms": oldest}


def test_a_tenant_label_is_its_name_made_safe():
    assert tenant_label("hotel-42.example", "id") == "hotel-42.example"
    assert tenant_label('evil"} 1\n# HELP x', "id") == "evil___1___HELP_x"
    assert tenant_label("ünïcode", "id") == "_n_code"
    assert tenant_label("", "4f0c") == "4f0c"
    assert len(tenant_label("x" * 500, "id")) == 64


def test_top_tenants_names_the_biggest_and_sums_the_rest_as_other():
    rows = [row("email", f"t{i}", waiting=i, oldest=1000 + i) for i in range(1, 6)]
    top = top_tenants(rows, {f"t{i}": f"tenant {i}" for i in range(1, 6)}, n=2)
    assert [(t.tenant, t.messages, t.oldest_ms) for t in top] == [
        ("tenant_5", 5, 1005), ("tenant_4", 4, 1004), (OTHER, 1 + 2 + 3, 1001)]


def test_names_that_reduce_alike_or_to_other_stay_apart():
    rows = [row("audit", "a" * 36, 3), row("audit", "b" * 36, 2), row("audit", "c" * 36, 1)]
    top = top_tenants(rows, {"a" * 36: "x!", "b" * 36: "x?", "c" * 36: "other"}, n=3)
    assert [t.tenant for t in top] == ["x_", "x_~bbbbbbbb", "other~cccccccc"]


def test_queue_totals_keep_every_queue_and_the_oldest_due_row():
    rows = [row("email", "a", 3, 1, oldest=500), row("email", "b", 2, 0, oldest=200), row("invoice", "a", 0, 4)]
    totals = {b.queue: b for b in queue_totals(rows, ("email", "invoice", "audit"))}
    assert (totals["email"].waiting, totals["email"].later, totals["email"].oldest_ms) == (5, 1, 200)
    assert (totals["invoice"].waiting, totals["invoice"].later, totals["audit"].waiting) == (0, 4, 0)


def test_the_relay_reports_the_outbox_backlog_to_redis_and_metrics(settings, db_conn, tenant, fair_start):
    quiet = tenants.ensure_tenant(db_conn, f"quiet-{uuid.uuid4().hex[:6]}")
    create_bookings(settings.database_url, tenant["id"], 30)
    create_bookings(settings.database_url, quiet["id"], 1)
    relay = Relay(replace(settings, relay_ahead=10))
    with db.connect(settings.database_url, autocommit=True) as conn:
        relay.drain(conn)
        db_conn.execute("UPDATE outbox SET created_at = created_at - interval '60 seconds'")
        report = relay.report(conn).report
    copy = outboxmirror.read(relay.broker.client, settings.redis_namespace, ["email"])["email"]
    assert copy.waiting == 31 - 10 and copy.later == 0
    assert report.oldest_age_ms["email"] >= 60_000
    text = generate_latest().decode()
    assert 'booking_outbox_queue_messages{queue="email",state="waiting"} 21.0' in text
    assert f'booking_tenant_backlog_messages{{queue="email",tenant="{tenant["name"]}"}} 21.0' in text
    assert 'booking_queue_oldest_waiting_age_seconds{queue="email"}' in text
