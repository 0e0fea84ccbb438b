"""The reconciler on real Postgres and Redis: it re-publishes a stale unfinished task only when no
message for it exists anywhere, and only the holder of the leader lock does so.

Only this test's tasks are aged (ten days) and the threshold is nine days, so tasks that other tests
left unfinished in the shared database are never candidates.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import date
from decimal import Decimal

import dramatiq
import pytest
import redis

from booking_core import db
from booking_core.messaging.contracts import task_payload
from booking_core.model import bookings
from booking_core.tasks import deadletters
from booking_core.worker.broker import make_broker
from e2e_helpers import wait_until
from outbox_relay.metrics import RECONCILED
from outbox_relay.reconcile import LOCK_KEY, Reconciler, held_in_redis, reconcile_once
from relay_helpers import booking_without_relay

NINE_DAYS = 9 * 24 * 3600.0


def stale_booking(conn, tenant: dict, *, state: str = "pending") -> str:
    """A booking whose three tasks made no progress for ten days and whose outbox rows are gone."""
    booking_id, _ = booking_without_relay(conn, tenant["id"], bookings.NewBooking(
        "Lost", "lost@example.com", "Room", date(2030, 1, 1), date(2030, 1, 2), Decimal("10.00"), "EUR"))
    conn.execute("UPDATE booking_tasks SET state = %s, updated_at = now() - interval '10 days',"
                 " trace_id = %s WHERE booking_id = %s", (state, "ab" * 16, booking_id))
    return booking_id


def outbox_for(conn, booking_id: str) -> list[dict]:
    return conn.execute("SELECT queue, actor, payload, options FROM outbox WHERE payload->>'booking_id' = %s"
                        " ORDER BY queue", (booking_id,)).fetchall()


def tasks_of(conn, booking_id: str) -> dict[str, dict]:
    return {r["task"]: r for r in conn.execute(
        "SELECT task, state, updated_at > now() - interval '1 minute' AS fresh FROM booking_tasks"
        " WHERE booking_id = %s", (booking_id,))}


@pytest.mark.parametrize("state", ["pending", "running", "retrying"])
def test_a_stale_task_with_no_message_anywhere_is_republished(settings, db_conn, tenant, state):
    booking_id = stale_booking(db_conn, tenant, state=state)
    before = RECONCILED.labels("email")._value.get()
    client = redis.Redis.from_url(settings.redis_url)
    assert reconcile_once(db_conn, client, settings.redis_namespace, NINE_DAYS) >= 3
    rows = outbox_for(db_conn, booking_id)
    assert sorted(r["payload"]["task"] for r in rows) == ["audit", "email", "invoice"]
    email = next(r for r in rows if r["payload"]["task"] == "email")
    assert email["payload"] == task_payload("email", booking_id=booking_id, tenant_id=tenant["id"])
    assert email["options"]["trace_context"]["traceparent"].startswith("00-" + "ab" * 16 + "-")
    audit = next(r for r in rows if r["payload"]["task"] == "audit")
    assert audit["payload"]["kind"] == "booking.created" and audit["payload"]["booking_id"] == booking_id
    assert all(t["state"] == "pending" and t["fresh"] for t in tasks_of(db_conn, booking_id).values())
    assert RECONCILED.labels("email")._value.get() >= before + 1
    # And a second pass finds nothing: the outbox row (and the fresh updated_at) say it is on its way
    assert reconcile_once(db_conn, client, settings.redis_namespace, NINE_DAYS) == 0
    assert len(outbox_for(db_conn, booking_id)) == 3


def test_a_task_whose_message_redis_holds_is_not_republished(settings, db_conn, tenant):
    # Given a stale booking whose email message waits in Redis (ready) and invoice message is dead there
    booking_id = stale_booking(db_conn, tenant, state="running")
    broker = make_broker(settings)
    try:
        for task in ("email", "invoice"):
            broker.enqueue(dramatiq.Message(queue_name=task, actor_name="x", args=(), options={},
                                            kwargs=task_payload(task, booking_id=booking_id, tenant_id=tenant["id"])))
    finally:
        broker.close()
    client = redis.Redis.from_url(settings.redis_url)
    ns = settings.redis_namespace
    [(rid, body)] = client.hgetall(f"{ns}:invoice.msgs").items()
    client.delete(f"{ns}:invoice", f"{ns}:invoice.msgs")
    client.hset(f"{ns}:invoice.XQ.msgs", rid, body)
    client.zadd(f"{ns}:invoice.XQ", {rid: time.time() * 1000})
    assert {(booking_id, "email"), (booking_id, "invoice")} <= held_in_redis(client, ns, {"email", "invoice"})
    # When the reconciler runs, then only the audit task (no message anywhere) is re-published
    reconcile_once(db_conn, client, ns, NINE_DAYS)
    assert [r["payload"]["task"] for r in outbox_for(db_conn, booking_id)] == ["audit"]
    tasks = tasks_of(db_conn, booking_id)
    assert tasks["email"]["state"] == "running"
    # And the invoice task, whose `dead` write was lost, is recorded dead from Redis' letter
    assert tasks["invoice"]["state"] == "dead"
    [letter] = deadletters.list_dead(db_conn, deadletters.Filter(booking_id=booking_id))
    assert (letter.queue, letter.task) == ("invoice", "invoice")


def test_done_dead_and_recent_tasks_are_left_alone(settings, db_conn, tenant):
    booking_id = stale_booking(db_conn, tenant)
    db_conn.execute("UPDATE booking_tasks SET state = 'done' WHERE booking_id = %s AND task = 'email'", (booking_id,))
    db_conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'invoice'",
                    (booking_id,))
    db_conn.execute("UPDATE booking_tasks SET updated_at = now() WHERE booking_id = %s AND task = 'audit'",
                    (booking_id,))
    reconcile_once(db_conn, redis.Redis.from_url(settings.redis_url), settings.redis_namespace, NINE_DAYS)
    assert outbox_for(db_conn, booking_id) == []


def test_unreachable_redis_republishes_nothing(settings, db_conn, tenant):
    from booking_embedded import free_port

    booking_id = stale_booking(db_conn, tenant)
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    with pytest.raises(redis.RedisError):
        reconcile_once(db_conn, dead, settings.redis_namespace, NINE_DAYS)
    assert outbox_for(db_conn, booking_id) == []


def test_only_the_leader_lock_holder_reconciles(settings, db_conn, tenant):
    # Given another replica holding the leader lock
    booking_id = stale_booking(db_conn, tenant)
    s = dataclasses.replace(settings, reconcile_after_ms=int(NINE_DAYS * 1000))
    with db.connect(settings.database_url, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s) AS ok", (LOCK_KEY,)).fetchone()["ok"]
        reconciler = Reconciler(s, interval=0.2)
        thread = threading.Thread(target=reconciler.run)
        thread.start()
        try:
            time.sleep(1.5)
            # Then this one republishes nothing while the other leads
            assert outbox_for(db_conn, booking_id) == []
            # When the other replica goes away (its session ends), this one takes over
            other.close()
            deadline = time.monotonic() + 10
            while len(outbox_for(db_conn, booking_id)) < 3 and time.monotonic() < deadline:  # one commit each
                time.sleep(0.1)
            assert len(outbox_for(db_conn, booking_id)) == 3
        finally:
            reconciler.stop()
            thread.join(5)
    assert not thread.is_alive()


def test_the_threshold_must_exceed_the_heartbeat_timeout():
    from booking_core.config import Settings

    env = {"DATABASE_URL": "postgresql://x", "REDIS_URL": "redis://x"}
    assert Settings.from_env(env).reconcile_after_seconds == 120.0
    assert Settings.from_env({**env, "BOOKING_HEARTBEAT_TIMEOUT_MS": "90000"}).reconcile_after_seconds == 180.0
    assert Settings.from_env({**env, "BOOKING_RECONCILE_AFTER_MS": "6000",
                              "BOOKING_HEARTBEAT_TIMEOUT_MS": "5000"}).reconcile_after_seconds == 6.0
    with pytest.raises(ValueError, match="must exceed BOOKING_HEARTBEAT_TIMEOUT_MS"):
        Settings.from_env({**env, "BOOKING_RECONCILE_AFTER_MS": "5000", "BOOKING_HEARTBEAT_TIMEOUT_MS": "5000"})


def test_the_leader_compacts_the_event_log_after_its_pass(settings, db_conn, tenant):
    """A finished booking's month-old events shrink to each task's final state (the walk itself: test_event_history)."""
    from outbox_relay.metrics import EVENTS_COMPACTED

    old = stale_booking(db_conn, tenant, state="done")
    db_conn.execute("UPDATE booking_tasks SET state = 'running' WHERE booking_id = %s", (old,))
    db_conn.execute("UPDATE booking_tasks SET state = 'done' WHERE booking_id = %s", (old,))
    db_conn.execute("UPDATE booking_events SET at = at - interval '31 days' WHERE booking_id = %s", (old,))
    first = db_conn.execute("SELECT min(id) AS id FROM booking_events WHERE booking_id = %s", (old,)).fetchone()["id"]
    db_conn.execute("UPDATE booking_events_compaction SET last_id = %s", (first - 1,))

    def states(booking_id):
        return [(r["task"], r["state"]) for r in db_conn.execute(
            "SELECT task, state FROM booking_events WHERE booking_id = %s ORDER BY id", (booking_id,))]

    assert len(states(old)) == 12  # per task: pending (the insert), done (stale_booking), running, done
    before = EVENTS_COMPACTED._value.get()
    # Nine days: other tests' unfinished tasks in the shared database are never reconciled here.
    s = dataclasses.replace(settings, event_history_days=30, reconcile_after_ms=int(NINE_DAYS * 1000))
    reconciler = Reconciler(s, interval=0.1)
    thread = threading.Thread(target=reconciler.run)
    thread.start()
    try:
        wait_until(lambda: len(states(old)) == 3, timeout=10, interval=0.05, what="the old booking compacted")
    finally:
        reconciler.stop()
        thread.join(5)
    assert not thread.is_alive()
    assert sorted(states(old)) == [("audit", "done"), ("email", "done"), ("invoice", "done")]
    assert EVENTS_COMPACTED._value.get() - before == 9


def test_a_lost_webhook_delivery_is_republished_unless_redis_holds_it(settings, db_conn, tenant):
    from booking_core.messaging.contracts import WEBHOOK
    from booking_core.webhooks import endpoints, sealing
    from outbox_relay.reconcile import reconcile_webhooks_once

    endpoints.create(db_conn, sealing.Sealer([sealing.new_key()]), tenant["id"], {"url": "https://hooks.example/"})
    lost, _ = booking_without_relay(db_conn, tenant["id"], bookings.NewBooking(
        "Lost", "lost@example.com", "Room", date(2030, 1, 1), date(2030, 1, 2), Decimal("10.00"), "EUR"))
    held, _ = booking_without_relay(db_conn, tenant["id"], bookings.NewBooking(
        "Held", "held@example.com", "Room", date(2030, 1, 1), date(2030, 1, 2), Decimal("10.00"), "EUR"))
    # Both events' fan-out messages were lost too: their events are old and not fanned out.
    db_conn.execute("UPDATE webhook_events SET occurred_at = now() - interval '10 days'"
                    " WHERE booking_id = ANY(%s::uuid[])", ([lost, held],))
    client = redis.Redis.from_url(settings.redis_url)
    assert reconcile_webhooks_once(db_conn, client, settings.redis_namespace, NINE_DAYS) == 2
    rows = {r["booking_id"]: r["id"] for r in db_conn.execute(
        "SELECT d.id::text AS id, ev.booking_id::text AS booking_id FROM webhook_deliveries d"
        " JOIN webhook_events ev ON ev.id = d.event_id WHERE ev.booking_id = ANY(%s::uuid[])", ([lost, held],))}
    db_conn.execute("DELETE FROM outbox WHERE payload->>'delivery_id' = ANY(%s)", (list(rows.values()),))
    db_conn.execute("UPDATE webhook_deliveries SET state = 'retrying', attempts = 2, updated_at = now() - interval"
                    " '10 days', next_attempt_at = now() - interval '10 days' WHERE id = ANY(%s::uuid[])",
                    (list(rows.values()),))
    broker = make_broker(settings)
    broker.declare_queue(WEBHOOK.queue)
    broker.enqueue(dramatiq.Message(queue_name=WEBHOOK.queue, actor_name=WEBHOOK.actor, args=(),
                                    kwargs={"delivery_id": rows[held], "tenant_id": tenant["id"]}, options={}),
                   delay=3600_000)
    assert reconcile_webhooks_once(db_conn, client, settings.redis_namespace, NINE_DAYS) == 1
    republished = db_conn.execute("SELECT payload->>'delivery_id' AS d FROM outbox WHERE queue = 'webhook'"
                                  " AND payload->>'delivery_id' = ANY(%s)", (list(rows.values()),)).fetchall()
    assert [r["d"] for r in republished] == [rows[lost]]
    again = db_conn.execute("SELECT attempts, state FROM webhook_deliveries WHERE id = %s", (rows[lost],)).fetchone()
    assert (again["state"], again["attempts"]) == ("retrying", 2)  # the same round goes on
    assert reconcile_webhooks_once(db_conn, client, settings.redis_namespace, NINE_DAYS) == 0  # fresh now
    broker.close()
