"""Each pod's load: the worker processes' records joined with Dramatiq's in-flight sets, in real Redis."""

from __future__ import annotations

import dramatiq

from booking_scaling import podload

NOW = 1_000_000_000


def record(broker, worker_id: str, host: str, last: int | None, at: int = NOW, queues=("invoice",),
           boot: int | None = None) -> None:
    pipe = broker.client.pipeline(transaction=False)
    podload.add(pipe, broker.namespace, queues, worker_id, host, last, at, boot)
    pipe.execute()


def in_flight(broker, queue: str, count: int) -> list:
    """`count` messages fetched and not acked by `broker`'s consumer, as a busy worker holds them."""
    actor = dramatiq.actor(lambda n: None, broker=broker, queue_name=queue, actor_name=f"job_{queue}")
    for i in range(count):
        actor.send(i)
    consumer = broker.consume(queue, prefetch=count, timeout=100)
    taken = []
    while len(taken) < count:
        message = next(consumer)
        if message is not None:
            taken.append(message)
    return [consumer, taken]


def test_a_pods_processes_are_summed_and_in_flight_read_from_dramatiqs_acks(broker):
    held = in_flight(broker, "invoice", 3)
    record(broker, broker.broker_id, "invoice-worker-7f9c-a", last=NOW - 500)
    record(broker, "second-process", "invoice-worker-7f9c-a", last=NOW - 100)
    record(broker, "idle-process", "invoice-worker-7f9c-b", last=None)
    loads = podload.read(broker.client, broker.namespace, ["invoice"], NOW)
    assert loads == {
        "invoice-worker-7f9c-a": podload.PodLoad(in_flight=3, last_work_ms=NOW - 100, workers=2, booted_ms=None),
        "invoice-worker-7f9c-b": podload.PodLoad(in_flight=0, last_work_ms=None, workers=1),
    }
    held[0].close()


def test_a_process_consuming_two_of_the_pools_queues_counts_once_with_both_queues_in_flight(broker):
    held = [in_flight(broker, "email", 1), in_flight(broker, "audit", 2)]
    record(broker, broker.broker_id, "mixed-0", last=NOW, queues=("email", "audit"))
    loads = podload.read(broker.client, broker.namespace, ["email", "audit"], NOW)
    assert loads == {"mixed-0": podload.PodLoad(in_flight=3, last_work_ms=NOW, workers=1)}
    for consumer, _ in held:
        consumer.close()


def test_stale_malformed_and_unsafe_records_are_ignored(broker):
    record(broker, "crashed", "invoice-worker-old", last=NOW, at=NOW - podload.TTL_MS - 1)
    record(broker, "evil", "../../api", last=NOW)
    record(broker, "upper", "Invoice-Worker", last=NOW)
    broker.client.hset(podload.key(broker.namespace, "invoice"), "garbage", b"{not json")
    broker.client.hset(podload.key(broker.namespace, "invoice"), "no-host", b'{"at": 1000000000}')
    record(broker, "live", "invoice-worker-ok", last=NOW)
    assert set(podload.read(broker.client, broker.namespace, ["invoice"], NOW)) == {"invoice-worker-ok"}


def test_a_stopped_process_is_removed_and_nothing_read_is_an_empty_map(broker):
    record(broker, "w1", "invoice-worker-a", last=NOW)
    pipe = broker.client.pipeline(transaction=False)
    podload.remove(pipe, broker.namespace, ["invoice"], "w1")
    pipe.execute()
    assert podload.read(broker.client, broker.namespace, ["invoice"], NOW) == {}


def test_a_pod_booted_when_its_first_process_did(broker):
    record(broker, "p1", "invoice-worker-a", last=None, boot=NOW - 9_000)
    record(broker, "p2", "invoice-worker-a", last=None, boot=NOW - 4_000)
    record(broker, "old", "invoice-worker-b", last=None)  # written before boot times were
    loads = podload.read(broker.client, broker.namespace, ["invoice"], NOW)
    assert loads["invoice-worker-a"].booted_ms == NOW - 9_000
    assert loads["invoice-worker-b"].booted_ms is None
