"""The ops console's own helpers: sessions, activity (bulk jobs are booking_core's: test_bulkjobs.py).

Real Postgres and Redis; the worker counts read what Dramatiq's own consumers write.
"""

from __future__ import annotations

import time
import uuid

import dramatiq
import pytest

from booking_core.model import tenants
from booking_core.queues import presence
from booking_core.worker.broker import make_broker
from booking_events import activity, ops_sessions
from e2e_helpers import wait_until
from relay_helpers import create_booking


@pytest.fixture
def admin(db_conn, tenant) -> dict:
    return tenants.create_token(db_conn, tenant["id"], admin=True, label="  Ada\n on call  ")


def test_a_session_stores_only_a_hash_and_names_the_operator(db_conn, admin, tenant):
    session_id, session = ops_sessions.sign_in(db_conn, admin["token"], max_seconds=3600)
    assert session.operator == f"ops:Ada on call (tenant {tenant['name']})"
    stored = db_conn.execute("SELECT id_hash FROM ops_sessions WHERE token_id = %s", (admin["id"],)).fetchone()
    assert bytes(stored["id_hash"]) != session_id.encode() and len(bytes(stored["id_hash"])) == 32
    assert ops_sessions.lookup(db_conn, session_id, idle_seconds=60) == session
    assert ops_sessions.lookup(db_conn, session_id + "x", idle_seconds=60) is None
    assert session.csrf_ok(session.csrf_secret) and not session.csrf_ok("") and not session.csrf_ok(None)


def test_client_unknown_and_revoked_tokens_get_no_session(db_conn, tenant, admin):
    client = tenants.create_token(db_conn, tenant["id"])
    with pytest.raises(ops_sessions.SignInRefused, match="client token"):
        ops_sessions.sign_in(db_conn, client["token"], max_seconds=60)
    with pytest.raises(ops_sessions.SignInRefused, match="unknown or revoked"):
        ops_sessions.sign_in(db_conn, "bk_" + "x" * 43, max_seconds=60)
    session_id, _ = ops_sessions.sign_in(db_conn, admin["token"], max_seconds=60)
    tenants.revoke_token(db_conn, admin["id"])
    assert ops_sessions.lookup(db_conn, session_id, idle_seconds=60) is None
    with pytest.raises(ops_sessions.SignInRefused):
        ops_sessions.sign_in(db_conn, admin["token"], max_seconds=60)


def test_sessions_end_at_the_absolute_and_the_idle_limit(db_conn, admin):
    short, _ = ops_sessions.sign_in(db_conn, admin["token"], max_seconds=1)
    idle, _ = ops_sessions.sign_in(db_conn, admin["token"], max_seconds=3600)
    db_conn.execute("UPDATE ops_sessions SET last_seen_at = last_seen_at - interval '2 minutes'"
                    " WHERE id_hash = %s", (ops_sessions._hash(idle),))
    time.sleep(1.1)
    assert ops_sessions.lookup(db_conn, short, idle_seconds=3600) is None
    assert ops_sessions.lookup(db_conn, idle, idle_seconds=60) is None
    assert ops_sessions.lookup(db_conn, idle, idle_seconds=3600) is not None, "within the idle limit"
    # That use renewed it: a purge takes the expired session and keeps the one just used.
    assert ops_sessions.purge_expired(db_conn, idle_seconds=60) >= 1
    left = db_conn.execute("SELECT id_hash FROM ops_sessions WHERE token_id = %s", (admin["id"],)).fetchall()
    assert [bytes(r["id_hash"]) for r in left] == [ops_sessions._hash(idle)]


def _letter(db_conn, tenant, error: str) -> str:
    booking_id = create_booking(db_conn, tenant["id"])
    db_conn.execute("UPDATE booking_tasks SET state = 'dead' WHERE booking_id = %s AND task = 'email'", (booking_id,))
    return db_conn.execute(
        "INSERT INTO dead_letters (message_id, queue, actor, task, tenant_id, booking_id, kwargs, error, attempts)"
        " VALUES (%s, 'email', 'send_confirmation_email', 'email', %s, %s, '{}', %s, 3) RETURNING id::text",
        (str(uuid.uuid4()), tenant["id"], booking_id, error)).fetchone()["id"]


def test_throughput_counts_tasks_done_in_the_last_minutes(db_conn, tenant):
    before = activity.throughput(db_conn)
    for _ in range(3):
        db_conn.execute("UPDATE booking_tasks SET state = 'done' WHERE booking_id = %s AND task = 'invoice'",
                        (create_booking(db_conn, tenant["id"]),))
    after = activity.throughput(db_conn)
    assert round((after["invoice"]["per_min_5m"] - before["invoice"]["per_min_5m"]) * 5) == 3
    assert round((after["invoice"]["per_min_15m"] - before["invoice"]["per_min_15m"]) * 15) == 3
    assert set(after) == {"email", "invoice", "audit", "webhook"}


def test_throughput_counts_webhook_deliveries_delivered_in_the_last_minutes(db_conn, tenant):
    before = activity.throughput(db_conn)["webhook"]
    booking = create_booking(db_conn, tenant["id"])
    event = db_conn.execute(
        "INSERT INTO webhook_events (tenant_id, booking_id, sequence, type, payload) VALUES (%s, %s, 1,"
        " 'booking.created', '{}') RETURNING id", (tenant["id"], booking)).fetchone()["id"]
    for state in ("delivered", "delivered", "dead"):
        db_conn.execute("INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, state, delivered_at)"
                        " VALUES (%s, gen_random_uuid(), %s, %s, CASE WHEN %s = 'delivered' THEN now() END)",
                        (event, tenant["id"], state, state))
    after = activity.throughput(db_conn)["webhook"]
    assert round((after["per_min_5m"] - before["per_min_5m"]) * 5) == 2
    assert round((after["per_min_15m"] - before["per_min_15m"]) * 15) == 2


def test_workers_are_counted_from_dramatiqs_heartbeats_and_acks(settings):
    broker = make_broker(settings)
    broker.add_middleware(presence.PresenceMiddleware(interval_seconds=0.1))
    release = __import__("threading").Event()

    @dramatiq.actor(broker=broker, queue_name="invoice", actor_name=f"hold_{uuid.uuid4().hex[:6]}")
    def hold():
        release.wait(10)

    assert activity.workers(broker.client, settings.redis_namespace, ["email", "invoice"], 60_000) == \
        activity.Workers(live=0, busy={"email": 0, "invoice": 0}, consuming={"email": 0, "invoice": 0})
    def first_reading(done) -> activity.Workers:
        """The first reading for which `done` holds (within 10 s)."""
        def read():
            seen = activity.workers(broker.client, settings.redis_namespace, ["email", "invoice"], 60_000)
            return seen if done(seen) else None
        return wait_until(read, timeout=10, interval=0.05, what="the worker counted")

    worker = dramatiq.Worker(broker, queues={"invoice"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        # An idle worker counts as consuming its queue (not the others), before it holds any message
        idle = first_reading(lambda w: w.consuming["invoice"])
        assert idle.consuming == {"email": 0, "invoice": 1} and idle.busy == {"email": 0, "invoice": 0}
        hold.send()
        seen = first_reading(lambda w: w.busy["invoice"])
        assert seen.live >= 1 and seen.busy == {"email": 0, "invoice": 1}
    finally:
        release.set()
        worker.stop()
    # A stopped worker leaves at once
    assert activity.workers(broker.client, settings.redis_namespace, ["invoice"], 60_000).consuming == {"invoice": 0}
    # A worker not heard from within the timeout is not live.
    time.sleep(0.05)
    assert activity.workers(broker.client, settings.redis_namespace, ["invoice"], 1).live == 0
