"""The operator under KopfRunner, against KMock's Kubernetes emulator and real Redis.

Queues are filled, taken (in flight) and finished through Dramatiq's own
RedisBroker in a Redis namespace of the test's own; the tests play the worker.
Times are short (poll 1 s, window 2 s, cooldown 3 s) so each test runs in seconds.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, start_http_server

from booking_scaling import pausemirror

POLL, WINDOW, COOLDOWN = 1, 2, 3


def spec(work, **policy):
    """A QueueScaler spec for the `invoice-worker` Deployment on the test's queue."""
    return {
        "scaleTargetRef": {"name": "invoice-worker"},
        "queues": [work.queue],
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "namespace": work.namespace},
        "minReplicaCount": 0, "maxReplicaCount": 5, "targetBacklogPerReplica": 10,
        "pollingInterval": POLL, "cooldownPeriod": COOLDOWN, "stabilizationWindowSeconds": WINDOW, **policy,
    }


def condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def events(cluster, ns, reason):
    return [e for e in cluster.events(ns) if e.get("reason") == reason]


def scale_patches(cluster):
    return [r for r in cluster.requests() if r.method == "PATCH" and str(r.url.path).endswith("/scale")]


def last_poll(ns: str, name: str) -> float:
    """When the QueueScaler's last poll began (its metric; the operator runs in this process), 0 before any."""
    return REGISTRY.get_sample_value("queue_autoscaler_last_poll_timestamp_seconds",
                                     {"namespace": ns, "scaler": name}) or 0.0


def polls(wait_for, ns: str, name: str, count: int = 2, *, after: float | None = None) -> None:
    """Wait for `count` polls of `name` that began after `after` (default: now) and have acted.

    What a test that asserts "nothing changed" waits for before it looks: polls, not
    seconds, so a busy machine cannot make it look before the operator did.  The
    metric is set at the end of a poll, after any scaling, with the poll's start time.
    """
    seen = time.time() if after is None else after
    for _ in range(count):
        seen = wait_for(lambda since=seen: (at := last_poll(ns, name)) > since and at,
                        timeout=max(20.0, seen - time.time() + 20.0))


def test_backlog_above_target_scales_up_at_once_and_posts_an_event(cluster, ns, work, operator, redis_url,
                                                                   wait_for, metrics_port, liveness_port):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(47)
    work.take(3)  # in flight: counted, unlike KEDA's ready-list-only scaler
    cluster.queuescaler(ns, "invoice", spec(work))
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 5)
        [event] = wait_for(lambda: events(cluster, ns, "ScaledUp"))
        status = wait_for(lambda: cluster.status(ns, "invoice").get("desiredReplicas") and
                          cluster.status(ns, "invoice"))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            scraped = resp.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=5) as resp:
            liveness = json.loads(resp.read())

    # One step, 1→5 (not 1→2→…): scale-up is immediate; how fast in seconds is measured, not asserted.
    assert len(scale_patches(cluster)) == 1
    assert event["type"] == "Normal"
    assert event["involvedObject"]["kind"] == "QueueScaler"
    assert "Deployment invoice-worker 1→5" in event["message"]
    assert "backlog 47 (ready 44, in flight 3, delayed 0)" in event["message"]
    assert status["backlog"] == {"ready": 44, "inFlight": 3, "delayed": 0, "delayedDue": 0, "dead": 0, "load": 47}
    assert status["queues"] == [{"name": work.queue, "ready": 44, "inFlight": 3, "delayed": 0, "delayedDue": 0,
                                 "dead": 0}]
    assert (status["currentReplicas"], status["desiredReplicas"]) == (5, 5)
    assert status["lastScaleTime"] and status["lastActiveTime"]
    assert "scaled up 1→5" in status["reason"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Active": "True", "Fallback": "False", "Paused": "False", "ScaleUpHeld": "False",
        "PromiseKept": "Unknown"}
    assert condition(status, "ScaleUpHeld")["reason"] == "NoLatencySignal"
    assert liveness["polls"]["scalers"] == 1
    labels = f'namespace="{ns}",queue="{work.queue}",scaler="invoice"'
    assert f'queue_autoscaler_backlog_messages{{component="ready",{labels}}} 44.0' in scraped
    assert f'queue_autoscaler_backlog_messages{{component="in_flight",{labels}}} 3.0' in scraped
    assert f'queue_autoscaler_backlog_messages{{component="delayed_due",{labels}}} 0.0' in scraped
    assert f'queue_autoscaler_desired_replicas{{namespace="{ns}",scaler="invoice"}} 5.0' in scraped
    assert f'queue_autoscaler_decisions_total{{action="scale_up",namespace="{ns}",scaler="invoice"}} 1.0' in scraped


def test_drain_scales_down_after_the_window_and_to_zero_only_when_idle_after_cooldown(
        cluster, ns, work, operator, redis_url, wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=0)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(30)
    held = work.take(5)
    cluster.queuescaler(ns, "invoice", spec(work, delayedLeadSeconds=30))
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 3)

        work.drain_ready()  # the burst is done, 5 messages still in flight
        drained = time.monotonic()
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 1)
        assert time.monotonic() - drained >= WINDOW - POLL
        [down] = wait_for(lambda: events(cluster, ns, "ScaledDown"))
        assert f"highest recommendation in the last {WINDOW}s: 1" in down["message"]

        # In flight: never to zero, whatever the cooldown (a poll begun after it has passed looked).
        polls(wait_for, ns, "invoice", 1, after=time.time() + COOLDOWN + POLL)
        assert cluster.replicas(ns, "invoice-worker") == 1

        work.send(1, delay_ms=20_000)  # a retry waiting out its backoff, due within delayedLeadSeconds (30)
        work.finish(held)
        # Delayed and due soon: never to zero either.
        polls(wait_for, ns, "invoice", 1, after=time.time() + COOLDOWN + POLL)
        assert cluster.replicas(ns, "invoice-worker") == 1
        assert "delayed 1" in cluster.status(ns, "invoice")["reason"]

        work.clear_delayed()
        work.send(1, delay_ms=600_000)  # a retry due in 10 minutes: no reason to keep a worker now
        idle = time.monotonic()
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 0)
        assert time.monotonic() - idle >= COOLDOWN - POLL
        status = cluster.status(ns, "invoice")

    assert "scaled down 1→0" in status["reason"]
    assert "delayed 0 due (+1 later)" in status["reason"]
    assert (status["backlog"]["delayed"], status["backlog"]["delayedDue"]) == (1, 0)
    assert (status["queues"][0]["delayed"], status["queues"][0]["delayedDue"]) == (1, 0)
    assert condition(status, "Active")["status"] == "False"
    assert [e["message"].split(":")[0] for e in events(cluster, ns, "ScaledDown")] == [
        "Deployment invoice-worker 3→1", "Deployment invoice-worker 1→0"]


def test_unreachable_redis_holds_replicas_and_sets_fallback(cluster, ns, work, operator, redis_url, wait_for):
    dead_redis = "redis://127.0.0.1:9/0"  # discard port: nothing listens
    cluster.secret(ns, "redis", {"url": dead_redis})
    cluster.secret(ns, "redis-fb", {"url": dead_redis})
    cluster.deployment(ns, "invoice-worker", replicas=2)
    cluster.deployment(ns, "email-worker", replicas=4)
    cluster.queuescaler(ns, "held", spec(work))
    fb = spec(work, fallbackReplicas=1)
    fb["scaleTargetRef"]["name"] = "email-worker"
    fb["redis"]["urlSecretRef"]["name"] = "redis-fb"
    cluster.queuescaler(ns, "fallback", fb)
    with operator():
        status = wait_for(lambda: condition(cluster.status(ns, "held"), "Fallback").get("status") == "True"
                          and cluster.status(ns, "held"))
        wait_for(lambda: cluster.replicas(ns, "email-worker") == 1)
        polls(wait_for, ns, "held")
        assert cluster.replicas(ns, "invoice-worker") == 2
        [warning] = [e for e in events(cluster, ns, "BacklogUnreadable") if e["involvedObject"]["name"] == "held"]

        # Redis back: the scaler reads again and acts on the real backlog.
        cluster.api("PATCH", f"/api/v1/namespaces/{ns}/secrets/redis",
                    {"data": {"url": __import__("base64").b64encode(redis_url.encode()).decode()}})
        recovered = wait_for(lambda: condition(cluster.status(ns, "held"), "Fallback").get("status") == "False"
                             and cluster.status(ns, "held"), timeout=30)

    assert "holding 2" in status["reason"] and "ConnectionError" in status["reason"]
    assert condition(status, "Active")["status"] == "Unknown"
    assert warning["type"] == "Warning"
    assert "fallbackReplicas 1" in cluster.status(ns, "fallback")["reason"]
    assert recovered["backlog"]["load"] == 0


def test_paused_changes_nothing_until_resumed(cluster, ns, work, operator, redis_url, wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(100)
    cluster.queuescaler(ns, "invoice", spec(work, paused=True))
    with operator():
        status = wait_for(lambda: condition(cluster.status(ns, "invoice"), "Paused").get("status") == "True"
                          and cluster.status(ns, "invoice"))
        polls(wait_for, ns, "invoice")
        assert cluster.replicas(ns, "invoice-worker") == 1
        assert scale_patches(cluster) == []

        cluster.patch_queuescaler(ns, "invoice", {"spec": {"paused": False}})
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 5)

    assert status["reason"] == "paused: replicas left at 1"
    assert status["backlog"]["ready"] == 100  # still observed, only not acted on


def decisions(metrics_port: int, ns: str, name: str) -> float:
    """Decisions taken for one QueueScaler so far: one per poll."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    pattern = rf'queue_autoscaler_decisions_total\{{action="\w+",namespace="{ns}",scaler="{name}"\}} ([0-9.]+)'
    return sum(float(v) for v in re.findall(pattern, text))


def test_a_queue_its_workers_report_paused_gets_no_more_workers_until_resumed(cluster, ns, work, operator,
                                                                              redis_url, wait_for, metrics_port):
    """The workers' copy of a pause (booking_scaling.pausemirror) holds scale-ups; the lapsed copy lets them go."""
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(100)
    pausemirror.write(work.broker.client, work.namespace, frozenset({work.queue}), frozenset({work.queue}))
    cluster.queuescaler(ns, "invoice", spec(work))
    with operator():
        status = wait_for(lambda: "queue paused" in cluster.status(ns, "invoice").get("reason", "")
                          and cluster.status(ns, "invoice"))
        seen = decisions(metrics_port, ns, "invoice")
        wait_for(lambda: decisions(metrics_port, ns, "invoice") > seen)  # a later poll, still held
        later = cluster.status(ns, "invoice")
        assert "queue paused" in later["reason"]
        assert cluster.replicas(ns, "invoice-worker") == 1
        assert scale_patches(cluster) == []

        pausemirror.write(work.broker.client, work.namespace, frozenset({work.queue}), frozenset())  # resumed
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 5)

    assert status["reason"].endswith("; scale-up to 5 held at 1: queue paused")
    assert status["backlog"]["ready"] == 100
    assert condition(status, "ScaleUpHeld")["reason"] == "QueuePaused"
    assert "paused" in events(cluster, ns, "QueuePaused")[0]["message"]


def test_a_deployment_scaled_by_an_hpa_is_refused(cluster, ns, work, operator, redis_url, wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.api("POST", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "cpu", "namespace": ns},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "invoice-worker"},
                 "minReplicas": 1, "maxReplicas": 3},
    })
    work.send(100)
    cluster.queuescaler(ns, "invoice", spec(work))
    with operator():
        ready = wait_for(lambda: condition(cluster.status(ns, "invoice"), "Ready").get("status") == "False"
                         and condition(cluster.status(ns, "invoice"), "Ready"))
        [warning] = wait_for(lambda: events(cluster, ns, "HPAConflict"))
        polls(wait_for, ns, "invoice")

    assert ready["reason"] == "HPAConflict"
    assert "HorizontalPodAutoscaler cpu already scales Deployment invoice-worker" in warning["message"]
    assert cluster.replicas(ns, "invoice-worker") == 1
    assert scale_patches(cluster) == []


def test_invalid_spec_and_missing_target_are_reported(cluster, ns, work, operator, redis_url, wait_for):
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.queuescaler(ns, "bad", spec(work, minReplicaCount=3, maxReplicaCount=2))
    cluster.queuescaler(ns, "orphan", spec(work))  # no invoice-worker Deployment exists
    with operator():
        bad = wait_for(lambda: condition(cluster.status(ns, "bad"), "Ready").get("reason"))
        orphan = wait_for(lambda: condition(cluster.status(ns, "orphan"), "Ready").get("reason"))
        wait_for(lambda: events(cluster, ns, "InvalidSpec") and events(cluster, ns, "TargetNotFound"))

    assert (bad, orphan) == ("InvalidSpec", "TargetNotFound")
    assert "minReplicaCount (3) must not exceed maxReplicaCount (2)" in cluster.status(ns, "bad")["reason"]


def test_a_restarted_operator_waits_a_window_and_keeps_the_cooldown(cluster, ns, work, operator, redis_url,
                                                                    wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=0)
    cluster.secret(ns, "redis", {"url": redis_url})
    work.send(30)
    cluster.queuescaler(ns, "invoice", spec(work, stabilizationWindowSeconds=3, cooldownPeriod=60))
    with operator():
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 3)
        wait_for(lambda: cluster.status(ns, "invoice").get("lastActiveTime"))

    work.drain_ready()  # drained while no operator ran
    with operator():
        restarted = time.monotonic()
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 1)
        waited = time.monotonic() - restarted
        polls(wait_for, ns, "invoice", 1)
        status = cluster.status(ns, "invoice")

    assert waited >= 3, f"scaled down {waited:.1f}s after a restart, inside the 3s window"
    assert cluster.replicas(ns, "invoice-worker") == 1
    assert "cooldownPeriod" in status["reason"]  # lastActiveTime came back from the status


def test_reaction_time_from_a_burst_to_the_first_scale_up(cluster, ns, work, operator, redis_url, wait_for):
    cluster.deployment(ns, "invoice-worker", replicas=0)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.queuescaler(ns, "invoice", spec(work, pollingInterval=2))
    with operator():
        wait_for(lambda: "desiredReplicas" in cluster.status(ns, "invoice"))  # the first poll is done
        burst = time.monotonic()
        work.send(200)
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") > 0)
        reaction = time.monotonic() - burst

    # A measurement for the record (`pytest -k reaction -s`), not a timed assertion: the
    # behaviour asserted is one direct step from 0 to the computed count.
    print(f"\nreaction from a burst of 200 to the first scale-up: {reaction:.2f}s (pollingInterval 2s)")
    patches = scale_patches(cluster)
    assert len(patches) == 1 and cluster.replicas(ns, "invoice-worker") == 5  # 200 / 10, clamped to max 5


class ApiLatency:
    """The API's request-latency histogram on a real prometheus_client HTTP server, fed by a
    thread that answers bookings requests at ~200/s, each taking `seconds` (what the tests set)."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.latency = Histogram("booking_http_request_duration_seconds", "Time to answer an HTTP request.",
                                 ["route", "method"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)  # any free port
        self.url = f"http://127.0.0.1:{self.server.server_port}/metrics"
        self.seconds = 0.004
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.wait(0.05):
            for _ in range(10):
                self.latency.labels(route="/api/v1/bookings", method="POST").observe(self.seconds)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_latency():
    api = ApiLatency()
    yield api
    api.close()


def test_scale_up_is_held_while_the_accept_path_is_over_budget(cluster, ns, work, operator, redis_url, wait_for,
                                                              metrics_port, api_latency):
    cluster.deployment(ns, "invoice-worker", replicas=1)
    cluster.secret(ns, "redis", {"url": redis_url})
    cluster.queuescaler(ns, "invoice", spec(work, minReplicaCount=1, acceptPath={
        "metricsUrl": api_latency.url, "p99BudgetSeconds": 0.05, "minRequests": 20}))
    held_metric = f'queue_autoscaler_scale_up_held{{namespace="{ns}",reason="accept_path_latency",scaler="invoice"}}'
    with operator():
        wait_for(lambda: condition(cluster.status(ns, "invoice"), "ScaleUpHeld").get("reason")
                 == "AcceptPathWithinBudget")  # two readings of a fast API: judged, within budget
        api_latency.seconds = 0.3  # the API slows down ...
        wait_for(lambda: "budget 50 ms" in condition(cluster.status(ns, "invoice"), "ScaleUpHeld").get("message", "")
                 and "p99 5 ms" not in condition(cluster.status(ns, "invoice"), "ScaleUpHeld")["message"])
        work.send(50)  # ... and a backlog arrives that would take 5 replicas
        status = wait_for(lambda: condition(cluster.status(ns, "invoice"), "ScaleUpHeld").get("status") == "True"
                          and cluster.status(ns, "invoice"))
        [warning] = wait_for(lambda: events(cluster, ns, "AcceptPathOverBudget"))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            held_scrape = resp.read().decode()
        polls(wait_for, ns, "invoice")
        assert cluster.replicas(ns, "invoice-worker") == 1 and scale_patches(cluster) == []

        api_latency.seconds = 0.004  # fast again: the held scale-up comes at once
        wait_for(lambda: cluster.replicas(ns, "invoice-worker") == 5)
        after = wait_for(lambda: condition(cluster.status(ns, "invoice"), "ScaleUpHeld").get("status") == "False"
                         and cluster.status(ns, "invoice"))
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            fast_scrape = resp.read().decode()

    held = condition(status, "ScaleUpHeld")
    assert held["reason"] == "AcceptPathOverBudget"
    assert held["message"].startswith("/api/v1/bookings p99 ") and "budget 50 ms" in held["message"]
    assert "scale-up to 5 held at 1: accept path over its latency budget" in status["reason"]
    assert status["desiredReplicas"] == 1
    assert warning["type"] == "Warning" and warning["message"] == held["message"]
    assert f"{held_metric} 1.0" in held_scrape and f"{held_metric} 0.0" in fast_scrape
    assert condition(after, "ScaleUpHeld")["reason"] in ("AcceptPathWithinBudget", "NothingToHold")
    assert len(events(cluster, ns, "AcceptPathOverBudget")) == 1  # one Warning when the hold began
