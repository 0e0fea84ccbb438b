"""QueueReader: one atomic snapshot of Dramatiq's Redis keys per queue."""

from __future__ import annotations

import time

import dramatiq

from booking_scaling.backlog import Backlog
from booking_scaling.decision import ScalerState, decide
from booking_scaling.depth import QueueReader
from booking_scaling.policy import Policy


def message(queue: str, *, age_ms: int = 0) -> dramatiq.Message:
    return dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={},
                            message_timestamp=int(time.time() * 1000) - age_ms)


def test_snapshot_counts_ready_in_flight_delayed_and_dead_separately(broker):
    reader = QueueReader(broker.client, broker.namespace)
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


def test_empty_and_unknown_queues_read_as_zero(broker):
    reader = QueueReader(broker.client, broker.namespace)
    depths = reader.snapshot(["email", "audit"])
    assert [(d.queue, d.ready, d.in_flight, d.delayed, d.dead, d.oldest_ready_age_ms) for d in depths] == [
        ("email", 0, 0, 0, 0, 0), ("audit", 0, 0, 0, 0, 0)]


def test_delayed_due_counts_only_messages_due_within_the_lead_time(broker):
    ns = broker.namespace
    reader = QueueReader(broker.client, ns)
    # Given delayed invoice messages due in 10 min, 5 s, 5 s, 60 s, 10 min and 10 min (enqueue order)
    for delay in (600_000, 5_000, 5_000, 60_000, 600_000, 600_000):
        broker.enqueue(message("invoice"), delay=delay)
    # and a worker already holding the first two fetched from invoice.DQ until their eta (10 min and 5 s)
    consumer = broker.consume("invoice.DQ", prefetch=2, timeout=100)
    held = [next(consumer), next(consumer)]
    assert sorted(round((m.options["eta"] - m.message_timestamp) / 1000) for m in held) == [5, 600]
    assert broker.client.llen(f"{ns}:invoice.DQ") == 4

    # Without a lead time every delayed message is reported, due or not (as before)
    (plain,) = reader.snapshot(["invoice"])
    assert (plain.ready, plain.in_flight, plain.delayed, plain.delayed_due) == (0, 0, 6, None)
    assert "delayed_due" not in plain.as_dict()

    # With one, only those whose eta falls within it, held or still listed
    due = {lead: reader.snapshot(["invoice", "email"], due_within_ms=lead) for lead in (0, 30_000, 120_000, 900_000)}
    assert {lead: depths[0].delayed_due for lead, depths in due.items()} == {
        0: 0, 30_000: 2, 120_000: 3, 900_000: 6}
    assert all(depths[0].delayed == 6 and depths[1].delayed_due == 0 for depths in due.values())
    assert due[30_000][0].as_dict()["delayed_due"] == 2

    # A delayed id whose body cannot be read counts as due: the safe side
    broker.client.rpush(f"{ns}:invoice.DQ", "no-such-message")
    (unknown,) = reader.snapshot(["invoice"], due_within_ms=30_000)
    assert (unknown.delayed, unknown.delayed_due) == (7, 3)
    consumer.close()


def test_far_future_retries_let_a_pool_reach_zero_after_cooldown_and_due_ones_keep_a_worker(broker):
    reader = QueueReader(broker.client, broker.namespace)
    # Given one pool with a retry due in 10 minutes and another with one due in 5 seconds
    broker.enqueue(message("email"), delay=600_000)
    broker.enqueue(message("invoice"), delay=5_000)
    policy = Policy(min_replica_count=0, max_replica_count=4, cooldown_period=120,
                    stabilization_window_seconds=60, delayed_lead_seconds=30)

    def replicas(queue: str, lead_ms: float | None) -> list[int]:
        """One replica running; decisions at t=0, inside the cooldown and after it, on fresh readings."""
        state, current, seen = ScalerState(), 1, []
        for now in (0, 90, 200):
            (depth,) = reader.snapshot([queue], due_within_ms=lead_ms)
            decision = decide(Backlog.from_depths([depth]), current, policy, state, now)
            state, current = decision.new_state, decision.desired
            seen.append(current)
        return seen

    lead_ms = policy.delayed_lead_seconds * 1000
    # Then the far-future pool goes to zero once the cooldown has passed, never before it
    assert replicas("email", lead_ms) == [1, 1, 0]
    # while the pool whose retry is due within the lead keeps its worker
    assert replicas("invoice", lead_ms) == [1, 1, 1]
    # and without a lead time (every delayed message due) both keep one
    assert replicas("email", None) == [1, 1, 1]
