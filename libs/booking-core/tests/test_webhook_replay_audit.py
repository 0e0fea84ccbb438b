"""Webhook replays are audited on real Postgres: one entry per replay, in its transaction, nothing for a failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from booking_core.audit import chain
from booking_core.model import tenants
from booking_core.webhooks import deliveries, endpoints, sealing
from booking_core.webhooks.payload import message_id
from relay_helpers import create_booking, webhook_audits

ACTOR = "token:bk_test (tenant replay-audit)"


def dead_delivery(conn, tenant, endpoint_id: str | None = None) -> dict:
    """A booking's booking.created delivery to the tenant's endpoint (created unless given), marked dead."""
    if endpoint_id is None:
        endpoint_id = endpoints.create(conn, sealing.Sealer([sealing.new_key()]), tenant["id"], {
            "url": "https://hooks.example/in", "event_types": ["booking.created"]})[0]["id"]
    booking = create_booking(conn, tenant["id"])
    event = conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking,)).fetchone()["id"]
    deliveries.fan_out(conn, event, tenant["id"])
    row = conn.execute("UPDATE webhook_deliveries SET state = 'dead' WHERE event_id = %s AND endpoint_id = %s"
                       " RETURNING id::text", (event, endpoint_id)).fetchone()
    return {"id": row["id"], "endpoint_id": endpoint_id, "event_id": event, "booking_id": booking}


def state(conn, delivery_id: str) -> str:
    return conn.execute("SELECT state FROM webhook_deliveries WHERE id = %s", (delivery_id,)).fetchone()["state"]


def test_a_replay_is_audited_once_with_its_actor_and_delivery_and_the_chain_verifies(db_conn, tenant):
    d = dead_delivery(db_conn, tenant)
    assert deliveries.replay(db_conn, tenant["id"], d["id"], actor=ACTOR) == "replayed"
    [entry] = webhook_audits(db_conn, tenant["id"])
    assert (entry["kind"], entry["actor"], entry["booking_id"]) == ("webhook.replayed", ACTOR, d["booking_id"])
    assert entry["details"] == {"delivery_id": d["id"], "endpoint_id": d["endpoint_id"], "event_id": d["event_id"],
                                "webhook_id": message_id(d["event_id"]), "was": "dead"}
    # Still being tried: a second replay does nothing and audits nothing.
    assert deliveries.replay(db_conn, tenant["id"], d["id"], actor=ACTOR) == "open"
    assert len(webhook_audits(db_conn, tenant["id"])) == 1
    assert chain.append(db_conn, entry)  # what the audit worker does with it
    (report,) = chain.verify(db_conn, tenant["id"])
    assert report.ok and report.entries >= 1


def test_replay_since_is_audited_once_with_the_time_and_count_and_a_dry_run_writes_nothing(db_conn, tenant):
    first = dead_delivery(db_conn, tenant)
    dead_delivery(db_conn, tenant, first["endpoint_id"])
    since = datetime.now(UTC) - timedelta(hours=1)
    assert deliveries.replay_since(db_conn, tenant["id"], first["endpoint_id"], since, dry_run=True, actor=ACTOR) == 2
    assert webhook_audits(db_conn, tenant["id"]) == [] and state(db_conn, first["id"]) == "dead"
    assert deliveries.replay_since(db_conn, tenant["id"], first["endpoint_id"], since, dry_run=False, actor=ACTOR) == 2
    [entry] = webhook_audits(db_conn, tenant["id"])
    assert (entry["kind"], entry["actor"], entry["booking_id"]) == ("webhook.replayed_since", ACTOR, None)
    assert entry["details"] == {"endpoint_id": first["endpoint_id"], "since": since.isoformat(), "count": 2}
    # Nothing dead left: a replay of none audits nothing.
    assert deliveries.replay_since(db_conn, tenant["id"], first["endpoint_id"], since, dry_run=False, actor=ACTOR) == 0
    assert len(webhook_audits(db_conn, tenant["id"])) == 1
    assert chain.append(db_conn, entry)
    (report,) = chain.verify(db_conn, tenant["id"])
    assert report.ok


def test_a_failed_replay_writes_nothing(db_conn, tenant):
    mine = dead_delivery(db_conn, tenant)
    other = tenants.ensure_tenant(db_conn, f"t-{uuid.uuid4().hex[:12]}")
    theirs = dead_delivery(db_conn, other)
    for target in (str(uuid.uuid4()), "not-a-uuid", theirs["id"]):
        assert deliveries.replay(db_conn, tenant["id"], target, actor=ACTOR) is None
    since = datetime.now(UTC) - timedelta(hours=1)
    assert deliveries.replay_since(db_conn, tenant["id"], theirs["endpoint_id"], since, dry_run=False,
                                   actor=ACTOR) == 0
    assert webhook_audits(db_conn, tenant["id"]) == [] and webhook_audits(db_conn, other["id"]) == []
    assert state(db_conn, theirs["id"]) == "dead" and state(db_conn, mine["id"]) == "dead"


def test_the_replay_and_its_audit_entry_commit_or_fail_together(db_conn, tenant):
    d = dead_delivery(db_conn, tenant)
    before = db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'delivery_id' = %s",
                             (d["id"],)).fetchone()["n"]
    # An actor Postgres' jsonb refuses (a NUL) fails the audit insert, after the replay's own writes.
    with pytest.raises(psycopg.Error):
        deliveries.replay(db_conn, tenant["id"], d["id"], actor="cli:\x00")
    assert state(db_conn, d["id"]) == "dead"  # the replay was rolled back with it
    assert db_conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'delivery_id' = %s",
                           (d["id"],)).fetchone()["n"] == before
    assert webhook_audits(db_conn, tenant["id"]) == []
