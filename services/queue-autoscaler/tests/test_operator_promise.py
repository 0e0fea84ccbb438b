"""The promise (spec.maxAge) on the operator: KMock's emulator and real Redis.

KMock stands in for the Kubernetes API (none can run here); Redis is real, filled
through Dramatiq's own RedisBroker, and the completion counter is the one the
workers' presence stamp writes (booking_scaling.completions).
"""

from __future__ import annotations

import time

from booking_scaling import completions


def spec(work, **policy):
    """A QueueScaler spec for the `invoice-worker` Deployment on the test's queue (poll 1 s)."""
    return {
        "scaleTargetRef": {"name": "invoice-worker"}, "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
        "minReplicaCount": 0, "maxReplicaCount": 5, "pollingInterval": 1, "cooldownPeriod": 3,
        "stabilizationWindowSeconds": 2, **policy,
    }


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def events(cluster, ns, reason):
    return [e for e in cluster.events(ns) if e.get("reason") == reason]


def send_aged(work, count: int, age_s: float) -> None:
    """`count` messages that were created `age_s` ago (Dramatiq's message_timestamp is what the age is read from)."""
    created = int((time.time() - age_s) * 1000)
    for i in range(count):
        work.broker.enqueue(work.actor.message(i).copy(message_timestamp=created))


def test_max_age_is_read_reported_and_a_broken_promise_warned(cluster, ns, work, operator, redis_url, wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.broker.client.set(completions.key(work.namespace, work.queue), 100)
    send_aged(work, 40, 50)
    cluster.queuescaler(ns, "invoice", spec(work, maxAge=20, podStartSeconds=2, minThroughputPerReplica=1))
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 5)
        status = wait_for(lambda: cluster.status(ns, "invoice").get("promise") and cluster.status(ns, "invoice"))
        [warning] = wait_for(lambda: events(cluster, ns, "OldestOverMaxAge"))
        [up] = wait_for(lambda: events(cluster, ns, "ScaledUp"))

        work.drain_ready()
        work.broker.client.incrby(completions.key(work.namespace, work.queue), 40)
        work.send(2)
        kept = wait_for(lambda: condition(cluster.status(ns, "invoice"), "PromiseKept").get("status") == "True"
                        and cluster.status(ns, "invoice"))

    promise = status["promise"]
    assert promise["maxAge"] == 20 and promise["oldestAgeSeconds"] >= 49
    assert promise["podStartSeconds"] == 2 and promise["throughputMeasured"] is False
    assert promise["throughputPerReplica"] == 1
    assert promise["predictedDrainSeconds"] > 0
    assert condition(status, "PromiseKept")["status"] == "False"
    assert warning["type"] == "Warning" and "over maxAge 20s" in warning["message"]
    assert "oldest 5" in up["message"] and "maxAge 20s" in up["message"]
    assert "even maxReplicaCount 5 cannot keep the promise" in status["reason"]
    assert condition(kept, "PromiseKept")["reason"] == "WithinMaxAge"
    assert kept["promise"]["oldestAgeSeconds"] < 20


def test_the_pods_start_latency_is_measured_from_creation_to_the_workers_boot(cluster, ns, work, operator, redis_url,
                                                                              wait_for, pod_records):
    """Two pods created, their workers booted 12 s and 20 s later: the promise predicts with the median, 16 s."""
    cluster.deployment(ns, "invoice-worker", replicas=2)
    cluster.secret(ns, "redis", {"url": redis_url})
    created = time.time() - 120
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    created = float(int(created))  # creationTimestamp has whole seconds
    cluster.pod(ns, "invoice-worker-a", {"app": "invoice-worker"}, created=stamp)
    cluster.pod(ns, "invoice-worker-b", {"app": "invoice-worker"}, created=stamp)
    cluster.pod(ns, "api-x", {"app": "api"}, created=stamp)  # not the target's: never measured
    work.send(3)
    workers = {"a1": ("invoice-worker-a", None, created + 12), "b1": ("invoice-worker-b", None, created + 20),
               "x1": ("api-x", None, created + 1)}
    cluster.queuescaler(ns, "invoice", spec(work, maxAge=60, podStartSeconds=45, minReplicaCount=1))
    with pod_records(work, workers), operator():
        promise = wait_for(lambda: (cluster.status(ns, "invoice").get("promise") or {}).get("podStartMeasured")
                           and cluster.status(ns, "invoice")["promise"])
        reason = cluster.status(ns, "invoice")["reason"]
    assert promise["podStartSeconds"] == 16.0
    assert "pod start 16s" in reason
    pod_lists = [r for r in cluster.requests() if r.resource is not None and r.resource.plural == "pods"
                 and r.method == "GET"]
    assert len(pod_lists) == 1, "the pods are listed once, when new pods stamp, not at every poll"
