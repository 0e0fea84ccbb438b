"""What a shared namespace and a busy API server need from the operator, under KopfRunner on KMock.

- It writes a QueueScaler's status only when something in it changed: a poll that
  finds the same backlog and takes the same decision costs the API server nothing.
- It acts only on the QueueScalers its release's label selector matches
  (QUEUE_AUTOSCALER_LABEL_SELECTOR, set by the chart): another release's objects in
  the same namespace get no finalizer, no status and no scaling, and keep the other
  operator's finalizer (each release has its own: kopf strips its finalizer from any
  object it carries but no handler matches).
- Ready and Fallback are exported as gauges, for the alerts.
"""

from __future__ import annotations

import re

from e2e_helpers import local_metrics

POLL = 1
OURS = {"app.kubernetes.io/instance": "booking", "app.kubernetes.io/name": "booking-platform"}
THEIRS = {"app.kubernetes.io/instance": "other", "app.kubernetes.io/name": "booking-platform"}
SELECTOR = "app.kubernetes.io/instance=booking,app.kubernetes.io/name=booking-platform"
OUR_FINALIZER = "scaling.booking-platform.io/operator-booking"
THEIR_FINALIZER = "scaling.booking-platform.io/operator-other"
LEGACY_FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"
QS = "/apis/scaling.booking-platform.io/v1alpha1/namespaces/{ns}/queuescalers"


def spec(work, target: str = "invoice-worker", redis_ref: str = "redis", **policy) -> dict:
    return {
        "scaleTargetRef": {"name": target}, "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": redis_ref, "key": "url"}, "namespace": work.namespace},
        "minReplicaCount": 1, "maxReplicaCount": 5, "targetBacklogPerReplica": 10,
        "pollingInterval": POLL, "stabilizationWindowSeconds": 2, **policy,
    }


def writes(cluster, name: str) -> list:
    """The operator's writes to one QueueScaler (status or object), the test's own aside."""
    return [r for r in cluster.requests()
            if r.method in ("PATCH", "PUT") and r.headers.get("User-Agent") != cluster.SETUP_AGENT
            and r.resource is not None and r.resource.plural == "queuescalers" and r.name == name]


def status_writes(cluster, name: str) -> list:
    return [r for r in writes(cluster, name) if r.subresource == "status" or "status" in (r.data or {})]


def polls(port: int, ns: str, name: str) -> float:
    """How many decisions the operator has taken for one QueueScaler (one per poll)."""
    pattern = rf'queue_autoscaler_decisions_total\{{action="\w+",namespace="{ns}",scaler="{name}"\}} ([0-9.]+)'
    return sum(float(v) for v in re.findall(pattern, local_metrics(port)))


def test_status_is_written_only_when_something_changed(cluster, ns, work, operator, redis_url, wait_for,
                                                       metrics_port):
    cluster.deployment(ns, "invoice-worker", replicas=2)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(15)  # 15 / 10 per replica -> 2: what it has, nothing to do
    cluster.queuescaler(ns, "invoice", spec(work))
    with operator():
        first = wait_for(lambda: cluster.status(ns, "invoice").get("desiredReplicas") == 2
                         and cluster.status(ns, "invoice"))
        settled = len(status_writes(cluster, "invoice"))
        seen = polls(metrics_port, ns, "invoice")
        wait_for(lambda: polls(metrics_port, ns, "invoice") >= seen + 4, timeout=30)  # four more polls ...
        idle_writes = len(status_writes(cluster, "invoice")) - settled  # ... that found nothing new

        work.send(10)  # a real change: backlog 25 -> 3 replicas, and a status that says so
        changed = wait_for(lambda: cluster.status(ns, "invoice").get("backlog", {}).get("load") == 25
                           and cluster.status(ns, "invoice"))
        scraped = local_metrics(metrics_port)

    assert idle_writes == 0, f"{idle_writes} status writes while nothing changed: " + repr(
        [(r.url.path, r.data) for r in status_writes(cluster, "invoice")[settled:]])
    assert len(status_writes(cluster, "invoice")) > settled
    assert changed["desiredReplicas"] == 3 and first["backlog"]["load"] == 15
    assert "lastPollTime" not in changed  # it changed at every poll: the metric below says when instead
    assert f'queue_autoscaler_last_poll_timestamp_seconds{{namespace="{ns}",scaler="invoice"}}' in scraped


def test_a_queuescaler_of_another_release_is_left_alone(cluster, ns, work, operator, redis_url, wait_for,
                                                        metrics_port, monkeypatch):
    monkeypatch.setenv("QUEUE_AUTOSCALER_LABEL_SELECTOR", SELECTOR)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.deployment(ns, "other-invoice-worker", replicas=1)
    work.send(30)
    cluster.queuescaler(ns, "invoice", spec(work), labels=OURS)
    # As the other release's operator leaves it: a finalizer of its own, which ours must not strip.
    cluster.queuescaler(ns, "other-invoice", spec(work, target="other-invoice-worker"), labels=THEIRS,
                        finalizers=[THEIR_FINALIZER])
    cluster.queuescaler(ns, "unlabelled", spec(work, target="other-invoice-worker"))
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 3)
        seen = polls(metrics_port, ns, "invoice")
        wait_for(lambda: polls(metrics_port, ns, "invoice") >= seen + 3, timeout=30)
        theirs = cluster.queuescaler_object(ns, "other-invoice")
        unlabelled = cluster.queuescaler_object(ns, "unlabelled")
        scraped = local_metrics(metrics_port)

    assert cluster.replicas(ns, "other-invoice-worker") == 1
    for obj in (theirs, unlabelled):
        assert not obj.get("status"), obj
        assert writes(cluster, obj["metadata"]["name"]) == []
    assert theirs["metadata"]["finalizers"] == [THEIR_FINALIZER]
    assert not unlabelled["metadata"].get("finalizers")
    assert 'scaler="other-invoice"' not in scraped and 'scaler="unlabelled"' not in scraped
    ours = cluster.queuescaler_object(ns, "invoice")
    assert ours["metadata"]["finalizers"] == [OUR_FINALIZER] and ours["status"]["desiredReplicas"] == 3


def test_what_earlier_versions_left_is_replaced_the_finalizer_and_the_poll_time(cluster, ns, work, operator,
                                                                                redis_url, wait_for, monkeypatch):
    """Before finalizers were per release every operator used kopf's own, which nothing would remove now;
    and a lastPollTime written at every poll would stay, stale, in the status."""
    monkeypatch.setenv("QUEUE_AUTOSCALER_LABEL_SELECTOR", SELECTOR)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.queuescaler(ns, "invoice", spec(work), labels=OURS, finalizers=[LEGACY_FINALIZER],
                        status={"lastPollTime": "2026-01-01T00:00:00Z", "desiredReplicas": 1})
    assert cluster.status(ns, "invoice")["lastPollTime"]
    with operator():
        wait_for(lambda: "conditions" in cluster.status(ns, "invoice"))
        assert "lastPollTime" not in cluster.status(ns, "invoice")
        # A set: KMock keeps one resourceVersion, so kopf may add its finalizer twice (a real server refuses the
        # second patch's stale resourceVersion test).
        wait_for(lambda: set(cluster.queuescaler_object(ns, "invoice")["metadata"].get("finalizers", []))
                 == {OUR_FINALIZER})
        cluster.api("DELETE", QS.format(ns=ns) + "/invoice")
        wait_for(lambda: cluster.queuescaler_object(ns, "invoice") is None)  # and it can go


def test_a_selector_that_is_not_a_list_of_equalities_is_refused_with_its_variable(monkeypatch):
    from queue_autoscaler.settings import OperatorSettings

    assert OperatorSettings.from_env({"QUEUE_AUTOSCALER_LABEL_SELECTOR": SELECTOR}).labels == OURS
    assert OperatorSettings.from_env({}).labels == {}
    for bad in ("app.kubernetes.io/instance!=booking", "instance in (a,b)", "=booking", "a=b,,c"):
        try:
            OperatorSettings.from_env({"QUEUE_AUTOSCALER_LABEL_SELECTOR": bad})
        except ValueError as e:
            assert "QUEUE_AUTOSCALER_LABEL_SELECTOR" in str(e)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_ready_and_fallback_are_exported_for_the_alerts(cluster, ns, work, operator, redis_url, wait_for,
                                                        metrics_port):
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.secret(ns, "dead-redis", {"url": "redis://127.0.0.1:9/0"})  # discard port: nothing listens
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.deployment(ns, "email-worker", replicas=1)
    cluster.queuescaler(ns, "healthy", spec(work))
    cluster.queuescaler(ns, "blind", spec(work, target="email-worker", redis_ref="dead-redis"))
    cluster.queuescaler(ns, "orphan", spec(work, target="no-such-worker"))

    def gauge(metric: str, name: str) -> float | None:
        try:
            text = local_metrics(metrics_port)
        except OSError:  # the operator's metrics server is not up yet
            return None
        m = re.search(rf'{metric}\{{namespace="{ns}",scaler="{name}"\}} ([0-9.]+)', text)
        return float(m[1]) if m else None

    with operator():
        wait_for(lambda: all(gauge("queue_autoscaler_ready", n) is not None for n in ("healthy", "blind", "orphan"))
                 and gauge("queue_autoscaler_fallback", "blind") == 1, timeout=30)
        got = {n: (gauge("queue_autoscaler_ready", n), gauge("queue_autoscaler_fallback", n))
               for n in ("healthy", "blind", "orphan")}
        cluster.api("DELETE", f"/apis/scaling.booking-platform.io/v1alpha1/namespaces/{ns}/queuescalers/orphan")
        wait_for(lambda: gauge("queue_autoscaler_ready", "orphan") is None)  # no stale series left

    assert got == {"healthy": (1, 0), "blind": (1, 1), "orphan": (0, 0)}
