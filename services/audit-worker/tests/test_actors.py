"""The audit actor on real Postgres and Redis: redeliveries are no-ops, bad payloads dead-letter."""

from __future__ import annotations

import importlib
import sys
import uuid
from datetime import UTC, datetime

import dramatiq
import pytest

from booking_core import db
from booking_core.audit import chain
from booking_core.messaging.contracts import AUDIT, audit_payload
from booking_core.messaging.errors import PermanentTaskError
from relay_helpers import booking_without_relay


@pytest.fixture(scope="module")
def actors(database_url, redis_url):
    """`audit_worker.actors` imported as `dramatiq` would, with this module's environment."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", database_url)
        mp.setenv("REDIS_URL", redis_url)
        mp.setenv("BOOKING_REDIS_NAMESPACE", f"audit-test-{uuid.uuid4().hex[:8]}")
        mp.setenv("BOOKING_RETRY_AUDIT_MIN_BACKOFF_MS", "50")
        mp.setenv("BOOKING_RETRY_AUDIT_MAX_BACKOFF_MS", "200")
        for name in ("audit_worker.actors", "audit_worker.broker"):
            sys.modules.pop(name, None)
        module = importlib.import_module("audit_worker.actors")
    yield module
    module.broker.flush_all()


def payload(tenant: dict, **overrides) -> dict:
    fields = {
        "event_id": str(uuid.uuid4()), "kind": "email.sent", "tenant_id": tenant["id"],
        "booking_id": str(uuid.uuid4()), "actor": "email-worker",
        "occurred_at": datetime.now(UTC).isoformat(), "details": {"to": "a@example.com"},
    }
    return audit_payload(**{**fields, **overrides})


def rows(conn, tenant: dict) -> list[dict]:
    return conn.execute(
        "SELECT seq, event_id::text, kind FROM audit_log WHERE tenant_id = %s ORDER BY seq",
        (tenant["id"],),
    ).fetchall()


def test_actor_follows_the_contract_and_settings(actors):
    a = actors.record_audit_event
    assert (a.actor_name, a.queue_name) == (AUDIT.actor, AUDIT.queue)
    assert a.options["throws"] == (PermanentTaskError,)
    assert issubclass(chain.InvalidAuditEvent, PermanentTaskError)
    assert (a.options["min_backoff"], a.options["max_backoff"]) == (50, 200)
    assert a.options["max_retries"] == actors.settings.retry["audit"].max_retries
    assert dramatiq.get_broker() is actors.broker is a.broker


def test_the_same_event_twice_records_one_row(actors, db_conn, tenant):
    event = payload(tenant)
    actors.record_audit_event.fn(**event)
    actors.record_audit_event.fn(**event)
    assert [r["event_id"] for r in rows(db_conn, tenant)] == [event["event_id"]]
    (report,) = chain.verify(db_conn, tenant["id"])
    assert report.ok and report.entries == 1


@pytest.mark.parametrize(
    "change",
    [{"kind": "booking.exploded"}, {"tenant_id": "tenant-1"}, {"event_id": None},
     {"surprise": 1}, {"tenant_id": str(uuid.uuid4())}],
)
def test_malformed_payloads_raise_the_permanent_error(actors, db_conn, tenant, change):
    with pytest.raises(chain.InvalidAuditEvent):
        actors.record_audit_event.fn(**{**payload(tenant), **change})
    assert rows(db_conn, tenant) == []


def test_missing_fields_and_positional_args_are_permanent_too(actors, tenant):
    event = payload(tenant)
    del event["occurred_at"]
    with pytest.raises(chain.InvalidAuditEvent, match="occurred_at"):
        actors.record_audit_event.fn(**event)
    with pytest.raises(chain.InvalidAuditEvent, match="keyword"):
        actors.record_audit_event.fn(payload(tenant))


def test_the_entry_and_the_booking_audit_task_commit_together(actors, db_conn, tenant):
    """The actor alone (no middleware) finishes the booking's `audit` task with its entry."""
    booking_id, messages = booking_without_relay(db_conn, tenant["id"], actor="token:test")
    out = messages["audit"]

    def state() -> str:
        return db_conn.execute("SELECT state FROM booking_tasks WHERE booking_id = %s"
                               " AND task = 'audit'", (booking_id,)).fetchone()["state"]

    with pytest.raises(chain.InvalidAuditEvent, match="'audit' task only"):
        actors.record_audit_event.fn(**{**out["payload"], "task": "email"})
    assert state() == "pending" and rows(db_conn, tenant) == []
    actors.record_audit_event.fn(**out["payload"])
    assert state() == "done" and len(rows(db_conn, tenant)) == 1


@pytest.fixture
def worker(actors):
    """A real Dramatiq worker consuming the audit queue of this module's broker."""
    w = dramatiq.Worker(actors.broker, worker_threads=2, worker_timeout=100)
    w.start()
    yield w
    w.stop()


def test_a_worker_records_a_booking_audit_task_once_and_dead_letters_garbage(
    actors, worker, db_conn, tenant
):
    """The relay's message (stable id = event id), published twice, plus a malformed one."""
    # This test plays the relay: nothing else may publish these rows.
    booking_id, messages = booking_without_relay(db_conn, tenant["id"], actor="token:test")
    out = messages["audit"]
    broker = actors.broker

    def publish(kwargs: dict, message_id: str) -> None:
        broker.enqueue(dramatiq.Message(queue_name=AUDIT.queue, actor_name=AUDIT.actor, args=(),
                                        kwargs=kwargs, options={}, message_id=message_id))
        broker.join(AUDIT.queue, timeout=30_000)

    publish(out["payload"], out["message_id"])
    publish(out["payload"], out["message_id"])  # a relay crash republishes the same message
    bad_id = str(uuid.uuid4())
    publish({**out["payload"], "event_id": bad_id, "kind": "booking.exploded"}, bad_id)

    recorded = rows(db_conn, tenant)
    assert [(r["seq"], r["event_id"], r["kind"]) for r in recorded] == [
        (1, out["message_id"], "booking.created")
    ]
    task = db_conn.execute(
        "SELECT state, attempts, last_error FROM booking_tasks WHERE booking_id = %s"
        " AND task = 'audit'", (booking_id,),
    ).fetchone()
    assert (task["state"], task["attempts"], task["last_error"]) == ("done", 1, None)
    # Redis keys dead letters by a per-enqueue id; the Dramatiq message id is inside.
    dead_key = f"{actors.settings.redis_namespace}:{AUDIT.queue}.XQ.msgs"
    dead = [dramatiq.Message.decode(m) for m in broker.client.hvals(dead_key)]
    assert [m.message_id for m in dead] == [bad_id]
    assert dead[0].options.get("retries", 0) == 0, "a permanent error must not be retried"
    (report,) = chain.verify(db_conn, tenant["id"])
    assert report.ok


def test_a_pooled_connection_is_returned_clean(actors, database_url, tenant):
    actors.record_audit_event.fn(**payload(tenant))
    pool = db.pool(database_url, max_size=actors.settings.db_pool_max)
    with pool.connection() as conn:
        assert conn.info.transaction_status == 0  # IDLE: append committed, nothing left open
