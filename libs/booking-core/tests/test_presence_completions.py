"""Worker presence adds the messages each process finished to its queue's completion counter.

A real RedisBroker and Worker on the session's Redis: the autoscaler's throughput
estimate (booking_scaling.promise) reads what this writes.
"""

from __future__ import annotations

import uuid

import dramatiq
from dramatiq import Worker
from dramatiq.brokers.redis import RedisBroker

from booking_core.queues.presence import PresenceMiddleware
from booking_scaling import completions
from e2e_helpers import wait_until


def test_finished_messages_are_counted_and_failures_are_not(redis_url):
    broker = RedisBroker(url=redis_url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    broker.add_middleware(PresenceMiddleware(interval_seconds=0.1))
    queue = "email"

    @dramatiq.actor(broker=broker, queue_name=queue, max_retries=0)
    def send(ok: bool) -> None:
        if not ok:
            raise ValueError("refused")

    worker = Worker(broker, worker_threads=2)
    worker.start()
    try:
        for i in range(12):
            send.send(i % 4 != 0)  # 9 succeed, 3 fail
        broker.join(queue)
        worker.join()
        wait_until(lambda: completions.read(broker.client, broker.namespace, [queue]) == 9, timeout=10)
    finally:
        worker.stop()
    assert completions.read(broker.client, broker.namespace, [queue, "invoice"]) == 9
    for key in broker.client.scan_iter(f"{broker.namespace}:*"):
        broker.client.delete(key)
    broker.close()
