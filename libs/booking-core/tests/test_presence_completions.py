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


def test_presence_says_which_pod_a_process_runs_in_how_busy_it_is_and_when_it_last_worked(redis_url):
    """What the operator's pod-deletion-cost reads (booking_scaling.podload), written by a real worker."""
    import threading
    import time

    from booking_scaling import podload

    broker = RedisBroker(url=redis_url, namespace=f"test-{uuid.uuid4().hex[:8]}")
    broker.add_middleware(PresenceMiddleware(interval_seconds=0.1, host="invoice-worker-5d8f7-x2k4q"))
    queue, release = "invoice", threading.Event()

    @dramatiq.actor(broker=broker, queue_name=queue, max_retries=0)
    def render(n: int) -> None:
        release.wait(10)

    def loads() -> dict:
        return podload.read(broker.client, broker.namespace, [queue], int(time.time() * 1000))

    worker = Worker(broker, worker_threads=2)
    worker.start()
    try:
        before = wait_until(lambda: loads().get("invoice-worker-5d8f7-x2k4q"), timeout=10)
        assert before.in_flight == 0 and before.last_work_ms is None and before.workers == 1
        assert 0 <= time.time() * 1000 - before.booted_ms < 10_000
        render.send(1)
        render.send(2)
        busy = wait_until(lambda: (load := loads()["invoice-worker-5d8f7-x2k4q"]).in_flight == 2 and load,
                          timeout=10)
        assert busy.last_work_ms is None
        release.set()
        broker.join(queue)
        done = wait_until(lambda: (load := loads()["invoice-worker-5d8f7-x2k4q"]).last_work_ms and load, timeout=10)
        assert done.in_flight == 0 and time.time() * 1000 - done.last_work_ms < 10_000
    finally:
        worker.stop()
    assert loads() == {}  # a stopped process removes its record
    for key in broker.client.scan_iter(f"{broker.namespace}:*"):
        broker.client.delete(key)
    broker.close()
