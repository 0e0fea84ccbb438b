"""A worker's retries wait in the outbox (fair order), and in Redis only when Postgres cannot take them."""

from __future__ import annotations

import uuid
from dataclasses import replace

import dramatiq
from dramatiq.middleware import Retries

from booking_core.worker.broker import make_broker
from booking_core.worker.delays import OutboxDelayBroker
from booking_scaling.depth import QueueReader
from e2e_helpers import wait_until


def outbox_row(db_conn, message_id: str) -> dict | None:
    return db_conn.execute(
        "SELECT queue, actor, payload, options, tenant_id,"
        " extract(epoch FROM available_at - clock_timestamp()) AS due_in FROM outbox WHERE message_id = %s",
        (message_id,)).fetchone()


def delayed(broker, namespace: str, queue: str) -> int:
    return QueueReader(broker.client, namespace).snapshot([queue])[0].delayed


def test_a_delayed_platform_message_waits_in_the_outbox_with_its_options(settings, db_conn):
    broker = make_broker(settings, track_tasks=True)
    assert isinstance(broker, OutboxDelayBroker)
    tenant = str(uuid.uuid4())
    message = dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(),
                               kwargs={"task": "email", "booking_id": str(uuid.uuid4()), "tenant_id": tenant},
                               options={"retries": 2, "trace_context": {"traceparent": "00-ab-cd-01"},
                                        "redis_message_id": "old", "eta": 1})
    broker.enqueue(message, delay=30_000)
    row = outbox_row(db_conn, message.message_id)
    assert row is not None and row["queue"] == "email" and row["tenant_id"] == tenant
    assert row["options"] == {"retries": 2, "trace_context": {"traceparent": "00-ab-cd-01"}}
    assert 25 < row["due_in"] <= 30
    assert delayed(broker, settings.redis_namespace, "email") == 0


def test_without_postgres_the_retry_goes_to_redis_as_before(settings, db_conn):
    broker = make_broker(replace(settings, database_url="postgresql://nobody@127.0.0.1:1/none",
                                 db_acquire_timeout_ms=300), track_tasks=True)
    message = dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(),
                               kwargs={"tenant_id": str(uuid.uuid4())}, options={})
    broker.enqueue(message, delay=30_000)
    assert delayed(broker, settings.redis_namespace, "email") == 1
    assert outbox_row(db_conn, message.message_id) is None


def test_fifo_order_keeps_dramatiqs_own_delayed_queue(settings):
    broker = make_broker(replace(settings, relay_order="fifo"), track_tasks=True)
    assert type(broker).__name__ == "RedisBroker"


def test_retries_decides_and_the_retry_lands_in_the_outbox(settings, db_conn):
    """A real worker: the actor fails, Dramatiq's Retries backs off, the retry waits in the outbox."""
    broker = OutboxDelayBroker(database_url=settings.database_url, url=settings.redis_url,
                               namespace=settings.redis_namespace)
    assert any(isinstance(m, Retries) for m in broker.middleware)

    @dramatiq.actor(broker=broker, queue_name="audit", actor_name="fails_once", max_retries=3,
                    min_backoff=60_000, max_backoff=60_000)
    def fails_once(**_kwargs):
        raise RuntimeError("not yet")

    sent = fails_once.send_with_options(kwargs={"tenant_id": "t"})
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_until(lambda: outbox_row(db_conn, sent.message_id) is not None, timeout=20)
    finally:
        worker.stop()
    row = outbox_row(db_conn, sent.message_id)
    # Dramatiq's jitter puts a backoff over max_backoff at 50-100 % of it: 30-60 s here, less the time since
    # the row was written (29.96 s was read once on a loaded machine).  Well over the 0 of a retry published now.
    assert row["options"]["retries"] == 1 and row["due_in"] > 20
    assert delayed(broker, settings.redis_namespace, "audit") == 0
