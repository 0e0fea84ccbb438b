"""QueueReader: one atomic snapshot of Dramatiq's Redis keys per queue."""

from __future__ import annotations

import time

import dramatiq

from booking_core.broker import make_broker
from booking_core.queues import QueueReader


def message(queue: str, *, age_ms: int = 0) -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={},
                            message_timestamp=int(time.time() * 1000) - age_ms)


def test_snapshot_counts_ready_in_flight_delayed_and_dead_separately(settings):
    broker = make_broker(settings)
    reader = QueueReader(broker.client, settings.redis_namespace)
    # Given four ready messages on invoice, the oldest 5 s old, and two delayed ones
    broker.enqueue(message("invoice", age_ms=5000))
    for _ in range(3):
        broker.enqueue(message("invoice"))
    broker.enqueue(message("invoice"), delay=60_000)
    broker.enqueue(message("invoice"), delay=60_000)
    (before,) = reader.snapshot(["invoice"])
    assert (before.ready, before.in_flight, before.delayed, before.dead) == (4, 0, 2, 0)
    assert 4500 <= before.oldest_ready_age_ms < 60_000

    # When a consumer fetches two (in flight) and dead-letters one of them
    consumer = broker.consume("invoice", prefetch=2, timeout=100)
    first, second = next(consumer), next(consumer)
    consumer.nack(first)
    (after,) = reader.snapshot(["invoice"])
    # Then ready 2, in flight 1 (the other fetched one), delayed 2, dead 1
    assert (after.ready, after.in_flight, after.delayed, after.dead) == (2, 1, 2, 1)
    assert after.backlog == 5
    consumer.ack(second)
    consumer.close()
    (done,) = reader.snapshot(["invoice"])
    assert (done.in_flight, done.dead) == (0, 1)


def test_empty_and_unknown_queues_read_as_zero(settings):
    reader = QueueReader(make_broker(settings).client, settings.redis_namespace)
    depths = reader.snapshot(["email", "audit"])
    assert [(d.queue, d.ready, d.in_flight, d.delayed, d.dead, d.oldest_ready_age_ms) for d in depths] == [
        ("email", 0, 0, 0, 0, 0), ("audit", 0, 0, 0, 0, 0)]
