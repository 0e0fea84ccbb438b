"""Before a scale-down the operator marks the idlest pods with a low pod-deletion-cost: KMock and real Redis.

No Kubernetes API server can run here; KMock's emulator stands in for it (with an
equality labelSelector and 403 for what RBAC would refuse, as conftest's Emulator
adds), and the tests assert the requests the operator sent.  Redis is real: the
in-flight messages are fetched through Dramatiq's own RedisBroker, and the pods'
records are the ones worker presence writes (booking_scaling.podload).
"""

from __future__ import annotations

from e2e_helpers import local_metrics
from queue_autoscaler.deletion_cost import ANNOTATION

POD = {"app": "invoice-worker"}


def spec(work) -> dict:
    """Scale `invoice-worker` on the test's queue, polling every second, scaling down after a 1 s window."""
    return {
        "scaleTargetRef": {"name": "invoice-worker"}, "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
        "minReplicaCount": 1, "maxReplicaCount": 5, "targetBacklogPerReplica": 10, "pollingInterval": 1,
        "stabilizationWindowSeconds": 1, "cooldownPeriod": 3,
    }


def pod_patches(cluster, ns) -> list[tuple[str, object]]:
    """(pod, annotation value sent) of every pod patch the operator sent, in order."""
    return [(r.name, r.data["metadata"]["annotations"][ANNOTATION]) for r in cluster.requests()
            if r.resource is not None and r.resource.plural == "pods" and r.method == "PATCH"
            and r.namespace == ns]


def scale_patches(cluster, ns) -> list[int]:
    return [i for i, r in enumerate(cluster.requests())
            if r.resource is not None and r.resource.plural == "deployments" and r.subresource == "scale"
            and r.method == "PATCH" and r.namespace == ns]


def test_idle_pods_get_the_lowest_cost_before_the_scale_down(cluster, ns, work, operator, redis_url, wait_for,
                                                             pod_records):
    cluster.deployment(ns, "invoice-worker", replicas=3)
    cluster.secret(ns, "redis", {"url": redis_url})
    # a: rendering two invoices, and still marked from an earlier scale-down; b: idle for a minute;
    # c: idle, finished a message 2 s ago; another workload's pod with a cost of its own.
    cluster.pod(ns, "invoice-worker-a", POD, {ANNOTATION: "-1"})
    cluster.pod(ns, "invoice-worker-b", POD)
    cluster.pod(ns, "invoice-worker-c", POD)
    cluster.pod(ns, "api-x", {"app": "api"}, {ANNOTATION: "-5"})
    work.send(2)
    taken = work.take(2)  # in flight in work.broker's ack set: pod a's process
    workers = {work.broker.broker_id: ("invoice-worker-a", 0.5, None), "proc-b": ("invoice-worker-b", 60.0, None),
               "proc-c": ("invoice-worker-c", 2.0, None)}
    cluster.queuescaler(ns, "invoice", spec(work))
    with pod_records(work, workers), operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 1)
        [down] = wait_for(lambda: [e for e in cluster.events(ns) if e.get("reason") == "ScaledDown"])
    work.finish(taken)

    patches = pod_patches(cluster, ns)
    assert sorted(patches) == [("invoice-worker-a", None), ("invoice-worker-b", "-2"), ("invoice-worker-c", "-1")]
    pods = {r.name: i for i, r in enumerate(cluster.requests())
            if r.resource is not None and r.resource.plural == "pods" and r.method == "PATCH"}
    assert max(pods.values()) < scale_patches(cluster, ns)[0], "the costs are set before the replicas change"
    assert "3→1" in down["message"]


def test_a_refused_patch_is_logged_and_counted_and_the_scale_down_happens(cluster, ns, work, operator, redis_url,
                                                                         wait_for, metrics_port):
    cluster.emulator.forbidden = {("PATCH", "pods")}  # an operator upgraded before its Role
    cluster.deployment(ns, "invoice-worker", replicas=2)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.pod(ns, "invoice-worker-a", POD)
    cluster.pod(ns, "invoice-worker-b", POD)
    cluster.queuescaler(ns, "invoice", spec(work))
    with operator() as runner:
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 1)
        text = wait_for(lambda: (t := local_metrics(metrics_port))
                        and "queue_autoscaler_deletion_cost_errors_total{" in t and t)

    errors = [line for line in text.splitlines()
              if line.startswith("queue_autoscaler_deletion_cost_errors_total{") and f'namespace="{ns}"' in line]
    assert errors and float(errors[0].split()[-1]) == 1.0
    assert len(pod_patches(cluster, ns)) == 1  # one pod to mark, refused; nothing else tried
    assert "pod-deletion-cost not set before scaling invoice-worker down (scaling anyway)" in runner.output
    assert "pods is forbidden" in runner.output
