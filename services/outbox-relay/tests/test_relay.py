"""The outbox relay: publishes committed rows to Redis once, keeps them while Redis is down."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import dramatiq
import pytest
import redis

from booking_core import db
from booking_core.config import Settings
from booking_core.worker.broker import make_broker
from booking_scaling.depth import QueueReader
from e2e_helpers import wait_until
from outbox_relay import Relay, publish_batch
from relay_helpers import create_bookings


def outbox_rows(conn, ids: list[str]) -> int:
    return conn.execute("SELECT count(*) AS n FROM outbox WHERE payload->>'booking_id' = ANY(%s)",
                        (ids,)).fetchone()["n"]


@pytest.fixture
def clean_outbox(db_conn):
    """Other tests leave rows in the shared outbox; this test's relay must not publish them."""
    db_conn.execute("DELETE FROM outbox")


def test_publish_moves_each_row_to_its_queue_and_deletes_it(settings, db_conn, tenant, clean_outbox):
    ids = create_bookings(settings.database_url, tenant["id"], 4)
    broker = make_broker(settings)
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert publish_batch(conn, broker, 100) == 12
    assert outbox_rows(db_conn, ids) == 0
    depth = {d.queue: d.ready for d in QueueReader(broker.client, settings.redis_namespace).snapshot(
        ("email", "invoice", "audit"))}
    assert depth == {"email": 4, "invoice": 4, "audit": 4}


def test_concurrent_relays_publish_every_row_exactly_once(settings, db_conn, tenant, clean_outbox):
    ids = create_bookings(settings.database_url, tenant["id"], 30)
    broker = make_broker(settings)
    published: list[int] = []

    def relay():
        with db.connect(settings.database_url, autocommit=True) as conn:
            while n := publish_batch(conn, broker, 7):
                published.append(n)

    threads = [threading.Thread(target=relay) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(published) == 90
    total = sum(d.ready for d in QueueReader(broker.client, settings.redis_namespace).snapshot(
        ("email", "invoice", "audit")))
    assert total == 90 and outbox_rows(db_conn, ids) == 0


def test_rows_stay_in_the_outbox_while_redis_is_unreachable(settings, db_conn, tenant, clean_outbox):
    ids = create_bookings(settings.database_url, tenant["id"], 2)
    down = Settings(**{**settings.__dict__, "redis_url": "redis://127.0.0.1:1/0"})
    broker = make_broker(down)
    with db.connect(settings.database_url, autocommit=True) as conn, pytest.raises(redis.ConnectionError):
        publish_batch(conn, broker, 100)
    assert outbox_rows(db_conn, ids) == 6


class CountingConnection(redis.Connection):
    """A real Redis connection that counts what it sends: one count per round trip."""

    sends = 0

    def send_packed_command(self, command, check_health=True):
        type(self).sends += 1
        return super().send_packed_command(command, check_health)


def test_a_batch_is_one_round_trip_and_every_message_arrives_intact(settings, db_conn, tenant, clean_outbox):
    ids = create_bookings(settings.database_url, tenant["id"], 5)
    expected = {r["message_id"]: r for r in db_conn.execute(
        "SELECT message_id::text, queue, payload FROM outbox WHERE payload->>'booking_id' = ANY(%s)",
        (ids,)).fetchall()}
    broker = make_broker(settings)
    broker.client.connection_pool.connection_class = CountingConnection  # before its first connection
    broker.client.ping()  # connect first: the handshake is not the batch's
    CountingConnection.sends = 0
    with db.connect(settings.database_url, autocommit=True) as conn:
        assert publish_batch(conn, broker, 100) == 15
    # One pipeline (plus, at most, the pipeline's own check that the script is loaded).
    assert CountingConnection.sends <= 2, f"{CountingConnection.sends} round trips for one batch of 15"
    arrived = {}
    for queue in ("email", "invoice", "audit"):
        for raw in broker.client.hvals(f"{settings.redis_namespace}:{queue}.msgs"):
            message = dramatiq.Message.decode(raw)
            if message.message_id in expected:
                arrived[message.message_id] = (message.queue_name, message.kwargs)
    assert arrived == {m: (r["queue"], r["payload"]) for m, r in expected.items()}


def test_a_batch_redis_partly_refuses_stays_whole_in_the_outbox(settings, db_conn, tenant, clean_outbox):
    """One queue's writes fail inside the pipeline: the others' succeed, yet every row stays to be sent again."""
    namespace = "relay-partial-failure"
    broker = make_broker(Settings(**{**settings.__dict__, "redis_namespace": namespace}))
    broker.client.delete(f"{namespace}:email.msgs")
    broker.client.set(f"{namespace}:email.msgs", "not a hash")  # the email enqueue's HSET now fails
    try:
        ids = create_bookings(settings.database_url, tenant["id"], 2)
        with db.connect(settings.database_url, autocommit=True) as conn, pytest.raises(redis.ResponseError):
            publish_batch(conn, broker, 100)
        assert outbox_rows(db_conn, ids) == 6
        assert broker.client.llen(f"{namespace}:invoice") == 2  # sent, and will be sent again: consumers dedupe
        broker.client.delete(f"{namespace}:email.msgs")
        with db.connect(settings.database_url, autocommit=True) as conn:
            assert publish_batch(conn, broker, 100) == 6
        assert outbox_rows(db_conn, ids) == 0 and broker.client.llen(f"{namespace}:email") == 2
    finally:
        broker.client.delete(*broker.client.keys(f"{namespace}:*") or ["-"])


def test_relay_loop_wakes_on_notify_and_stops_on_request(settings, db_conn, tenant, clean_outbox):
    relay = Relay(Settings(**{**settings.__dict__, "relay_sweep_seconds": 30.0}))
    thread = threading.Thread(target=relay.run)
    thread.start()
    try:
        ids = create_bookings(settings.database_url, tenant["id"], 1)
        # The sweep is 30 s away: only the NOTIFY can make this happen quickly.
        wait_until(lambda: outbox_rows(db_conn, ids) == 0, timeout=10, interval=0.05, what="the booking published")
    finally:
        relay.stop()
        thread.join(5)
    assert not thread.is_alive()


def _notified(listen, seconds: float) -> bool:
    return any(True for _ in listen.notifies(timeout=seconds, stop_after=1))


def test_writers_notify_only_while_the_relay_sleeps(settings, db_conn, tenant, clean_outbox):
    """A busy relay is not notified (no database-wide NOTIFY lock per booking); a sleeping one is."""
    from booking_core.messaging.outbox import CHANNEL

    with db.connect(settings.database_url, autocommit=True) as listen:
        listen.execute(f"LISTEN {CHANNEL}")
        try:
            db_conn.execute("UPDATE relay_wakeup SET sleeping = false")
            create_bookings(settings.database_url, tenant["id"], 1)
            assert not _notified(listen, 0.5)
            db_conn.execute("UPDATE relay_wakeup SET sleeping = true")
            create_bookings(settings.database_url, tenant["id"], 1)
            assert _notified(listen, 5)
        finally:
            db_conn.execute("UPDATE relay_wakeup SET sleeping = true")


def test_an_idle_relay_says_it_sleeps_and_wakes_for_the_next_booking(settings, db_conn, tenant, clean_outbox):
    relay = Relay(Settings(**{**settings.__dict__, "relay_sweep_seconds": 30.0}))
    thread = threading.Thread(target=relay.run)
    db_conn.execute("UPDATE relay_wakeup SET sleeping = false")
    thread.start()
    try:
        wait_until(lambda: db_conn.execute("SELECT sleeping FROM relay_wakeup").fetchone()["sleeping"],
                   timeout=10, interval=0.05, what="the relay asleep")
        for _ in range(3):  # each booking wakes it; it drains, lingers and sleeps again
            ids = create_bookings(settings.database_url, tenant["id"], 1)
            wait_until(lambda ids=ids: outbox_rows(db_conn, ids) == 0, timeout=5, interval=0.02,
                       what="the booking published")
    finally:
        relay.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_a_lost_wakeup_row_is_written_back_by_the_sweep(settings, db_conn, tenant, clean_outbox):
    """After a crash the UNLOGGED flag table is empty; the relay's sweep still publishes and restores it."""
    relay = Relay(Settings(**{**settings.__dict__, "relay_sweep_seconds": 0.5}))
    db_conn.execute("DELETE FROM relay_wakeup")
    ids = create_bookings(settings.database_url, tenant["id"], 1)
    thread = threading.Thread(target=relay.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
                outbox_rows(db_conn, ids) or not db_conn.execute("SELECT count(*) AS n FROM relay_wakeup")
                .fetchone()["n"]):
            time.sleep(0.05)
        assert outbox_rows(db_conn, ids) == 0
        assert db_conn.execute("SELECT count(*) AS n FROM relay_wakeup").fetchone()["n"] == 1
    finally:
        relay.stop()
        thread.join(5)
        db_conn.execute("INSERT INTO relay_wakeup (id, sleeping) VALUES (1, true)"
                        " ON CONFLICT (id) DO UPDATE SET sleeping = true")


def test_the_relay_loads_no_web_framework():
    """The relay is its own service: importing it (and its entry point) must not pull in Flask or the API."""
    code = ("import sys, outbox_relay, outbox_relay.main; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'booking_api')); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_the_loop_purges_expired_idempotency_keys(settings, db_conn, tenant, clean_outbox):
    """Expired keys go at the loop's first pass; live ones stay."""
    for key, age in (("old", "25 hours"), ("new", "1 hour")):
        db_conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body, created_at)"
            " VALUES (%s, %s, %s, 201, '{}', now() - %s::interval)", (tenant["id"], key, b"\0", age))
    relay = Relay(settings)
    thread = threading.Thread(target=relay.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        keys = ["old", "new"]
        while "old" in keys and time.monotonic() < deadline:
            time.sleep(0.05)
            keys = [r["key"] for r in db_conn.execute(
                "SELECT key FROM idempotency_keys WHERE tenant_id = %s ORDER BY key", (tenant["id"],))]
        assert keys == ["new"]
    finally:
        relay.stop()
        thread.join(5)
