"""The relay's copy of the outbox backlog in Redis, and the backlog the autoscalers add it to."""

from __future__ import annotations

import uuid

import redis

from booking_scaling import outboxmirror
from booking_scaling.backlog import Backlog
from booking_scaling.decision import ScalerState, decide
from booking_scaling.depth import QueueDepth
from booking_scaling.outboxmirror import OutboxBacklog
from booking_scaling.policy import Policy
from booking_scaling.promise import Observed


def test_written_copies_read_back_and_lapse(redis_url):
    client = redis.Redis.from_url(redis_url)
    ns = f"om-{uuid.uuid4().hex[:8]}"
    outboxmirror.write(client, ns, [OutboxBacklog("email", 900, 3, 1_700_000_000_000)], ttl_ms=200)
    got = outboxmirror.read(client, ns, ["email", "invoice"])
    assert got == {"email": OutboxBacklog("email", 900, 3, 1_700_000_000_000), "invoice": OutboxBacklog("invoice")}
    assert 0 < client.pttl(outboxmirror.key(ns, "email")) <= 200


def test_a_malformed_copy_reads_as_zero(redis_url):
    client = redis.Redis.from_url(redis_url)
    ns = f"om-{uuid.uuid4().hex[:8]}"
    client.hset(outboxmirror.key(ns, "audit"), mapping={"waiting": "lots", "later": "-4", "oldest_ms": "7"})
    assert outboxmirror.read(client, ns, ["audit"])["audit"] == OutboxBacklog("audit", 0, 0, 7)


def test_the_oldest_age_counts_only_while_something_is_due():
    assert OutboxBacklog("email", 2, 0, 1_000).oldest_age_ms(4_000) == 3_000
    assert OutboxBacklog("email", 0, 5, 1_000).oldest_age_ms(4_000) == 0


def test_the_backlog_counts_the_outbox_and_its_retries_as_not_yet_due():
    redis_side = QueueDepth("email", ready=16, in_flight=4, delayed=0, dead=0, delayed_due=0)
    b = Backlog.from_depths([redis_side], outbox=[OutboxBacklog("email", waiting=980, later=5)])
    assert (b.outbox, b.delayed, b.due, b.load) == (980, 5, 0, 16 + 4 + 980)
    assert "in the outbox 980" in b.describe()


def test_a_backlog_held_in_the_outbox_scales_the_workers_up():
    policy = Policy(min_replica_count=1, max_replica_count=10, target_backlog_per_replica=100)
    redis_side = QueueDepth("email", ready=16, in_flight=4, delayed=0, dead=0)
    alone = decide(Backlog.from_depths([redis_side]), 1, policy, ScalerState(), 0.0)
    seen = decide(Backlog.from_depths([redis_side], outbox=[OutboxBacklog("email", 980)]), 1, policy,
                  ScalerState(), 0.0)
    assert alone.desired == 1 and seen.desired == 10


def test_the_promise_sees_the_oldest_task_waiting_in_the_outbox():
    # Under the fair order Redis holds the publish-ahead's young messages; the oldest task waits in the outbox.
    now = 1_700_000_100_000
    depth = QueueDepth("email", ready=16, in_flight=0, delayed=0, dead=0, oldest_ready_age_ms=2_000)
    backlog = Backlog.from_depths([depth], outbox=[OutboxBacklog("email", 900, 0, now - 95_000)])
    assert backlog.oldest_age_seconds([depth], now) == 95.0
    # Nothing due in the outbox: Redis's age alone.
    idle = Backlog.from_depths([depth], outbox=[OutboxBacklog("email", 0, 5, 0)])
    assert idle.oldest_age_seconds([depth], now) == 2.0
    policy = Policy(min_replica_count=1, max_replica_count=50, max_age=60, pod_start_seconds=10,
                    min_throughput_per_replica=1.0)
    seen = decide(backlog, 1, policy, ScalerState(), 0.0,
                  observed=Observed(oldest_age=backlog.oldest_age_seconds([depth], now), completed=None))
    redis_only = decide(Backlog.from_depths([depth]), 1, policy, ScalerState(), 0.0,
                        observed=Observed(oldest_age=2.0, completed=None))
    assert seen.desired > redis_only.desired
