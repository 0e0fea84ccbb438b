"""The local autoscaler keeps the API first: CPU-bound pools capped by cores, scale-ups held
while the API is over its latency budget.

Real Redis (the session's) holds a real Dramatiq queue; the API's /metrics is a real
prometheus_client Histogram with the API's name and buckets, served over HTTP by
prometheus_client's own server on a free port; the tests play the API's requests.
"""

from __future__ import annotations

import logging
import os
import uuid

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from booking_embedded import free_port
from booking_scaling.policy import Policy
from booking_scaling.pressure import LATENCY_METRIC, LatencyBudget
from bookingctl.autoscale import DEFAULT_POLICIES, Autoscaler, cpu_bound_limit

ROUTE = "/api/v1/bookings"
POLICY = Policy(min_replica_count=1, max_replica_count=4, target_backlog_per_replica=10, polling_interval=1)


class FakeApiMetrics:
    """The API's request-latency histogram, served as Prometheus text on 127.0.0.1."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.latency = Histogram(LATENCY_METRIC, "Time to answer an HTTP request.", ["route", "method"],
                                 registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        port = free_port()
        self.server, self.thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        self.url = f"http://127.0.0.1:{port}/metrics"

    def serve(self, seconds: float, n: int) -> None:
        for _ in range(n):
            self.latency.labels(route=ROUTE, method="POST").observe(seconds)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api_metrics():
    metrics = FakeApiMetrics()
    yield metrics
    metrics.close()


@pytest.fixture
def invoices(redis_url):
    """50 invoice messages waiting in a Dramatiq namespace of the test's own."""
    namespace = f"as-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)

    @dramatiq.actor(broker=broker, queue_name="invoice", actor_name="issue_invoice")
    def issue_invoice(n: int) -> None:  # pragma: no cover - never run
        pass

    for i in range(50):
        issue_invoice.send(i)
    yield namespace
    broker.client.delete(f"{namespace}:invoice", f"{namespace}:invoice.msgs")
    broker.close()


def test_cpu_bound_pools_get_at_most_one_process_per_usable_core(redis_url):
    policies = {q: Policy(min_replica_count=1, max_replica_count=8, fallback_replicas=6) for q in ("invoice", "email")}
    two = Autoscaler(policies, redis_url, "dramatiq", cores=2)
    assert cpu_bound_limit(2) == 2 and cpu_bound_limit(0) == 1
    assert (two.pools["invoice"].policy.max_replica_count, two.pools["invoice"].policy.fallback_replicas) == (2, 2)
    assert two.pools["email"].policy.max_replica_count == 8  # waits on SMTP, not the CPU
    assert Autoscaler(policies, redis_url, "dramatiq", cores=16).pools["invoice"].policy == policies["invoice"]
    one = Autoscaler({"invoice": Policy(min_replica_count=3, max_replica_count=4)}, redis_url, "dramatiq", cores=1)
    capped = one.pools["invoice"].policy
    assert (capped.min_replica_count, capped.max_replica_count) == (1, 1)


def test_the_default_invoice_pool_never_outgrows_this_machine(redis_url):
    scaler = Autoscaler(DEFAULT_POLICIES, redis_url, "dramatiq")
    assert scaler.pools["invoice"].policy.max_replica_count <= max(1, len(os.sched_getaffinity(0)))


def test_a_slow_api_holds_the_scale_up_with_a_logged_reason_until_it_is_fast_again(
        redis_url, invoices, api_metrics, caplog):
    scaler = Autoscaler({"invoice": POLICY}, redis_url, invoices, api_metrics_url=api_metrics.url,
                        budget=LatencyBudget(p99_budget_seconds=0.05, min_requests=20), cores=8)
    resized: list[tuple[str, int]] = []
    caplog.set_level(logging.INFO, logger="bookingctl.autoscale")

    scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=0)  # first latency reading
    assert resized == [("invoice", 4)]  # no judgement yet from one reading: nothing held
    resized.clear()

    api_metrics.serve(0.004, 200)
    api_metrics.serve(0.3, 10)  # 5 % of the bookings requests took 300 ms: p99 over 50 ms
    scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=2)
    assert resized == []
    held = scaler.pools["invoice"].last
    assert held.action == "hold" and held.held.startswith(f"{ROUTE} p99 ")
    assert "budget 50 ms" in held.held and "(210 requests)" in held.held
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage().startswith("invoice workers: scale-up held: backlog 50 (ready 50")

    api_metrics.serve(0.3, 30)
    scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=4)  # still slow: logged once only
    assert resized == [] and len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    api_metrics.serve(0.004, 300)  # the API is fast again
    scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=6)
    assert resized == [("invoice", 4)]
    assert any("scale-up no longer held" in r.getMessage() for r in caplog.records)


def test_an_unreadable_api_holds_nothing(redis_url, invoices):
    scaler = Autoscaler({"invoice": POLICY}, redis_url, invoices, api_metrics_url=f"http://127.0.0.1:{free_port()}/",
                        cores=8)
    resized: list[tuple[str, int]] = []
    scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=0)
    assert resized == [("invoice", 4)]
    assert scaler.accept_path(1).reason.startswith("API latency unreadable (URLError")


def test_a_paused_queue_is_not_scaled_up_the_hold_is_logged_and_resume_scales_at_once(
        redis_url, database_url, no_queue_pauses, invoices, caplog):
    from booking_core.queues import pauses

    db_conn = no_queue_pauses
    scaler = Autoscaler({"invoice": POLICY}, redis_url, invoices, cores=8, database_url=database_url)
    resized: list[tuple[str, int]] = []
    caplog.set_level(logging.INFO, logger="bookingctl.autoscale")
    try:
        # Given 50 invoices waiting and the invoice queue paused by an operator
        pauses.pause(db_conn, "invoice", actor="test-operator", reason="template fix")
        scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=0)
        # Then the pool holds, and says why where the other holds show
        held = scaler.pools["invoice"].last
        assert resized == [] and (held.action, held.held) == ("hold", "queue paused")
        [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warning.startswith("invoice workers: scale-up held: backlog 50") and "queue paused" in warning
        # When resumed, the scale-up comes on the next round
        pauses.resume(db_conn, "invoice", actor="test-operator")
        scaler.tick({"invoice": 1}, lambda q, n: resized.append((q, n)), now=2)
        assert resized == [("invoice", 4)]
        assert any("scale-up no longer held (queue resumed)" in r.getMessage() for r in caplog.records)
    finally:
        scaler.pauses.close()


def test_a_pool_with_max_age_is_scaled_on_its_promise_with_the_workers_completion_count(redis_url, invoices):
    """The same core as the operator: the oldest age from the snapshot, throughput from the completion counter."""
    import redis as redis_lib

    from booking_scaling import completions

    client = redis_lib.Redis.from_url(redis_url)
    client.set(completions.key(invoices, "invoice"), 7)
    policy = Policy(min_replica_count=1, max_replica_count=4, polling_interval=1, max_age=20, pod_start_seconds=1,
                    min_throughput_per_replica=2)
    scaler = Autoscaler({"invoice": policy}, redis_url, invoices, cores=8)
    resized = {}
    scaler.tick({"invoice": 1}, lambda q, n: resized.__setitem__(q, n), now=100.0)
    decision = scaler.pools["invoice"].last
    assert decision.promise is not None and decision.promise.max_age == 20
    assert decision.new_state.rates is not None and decision.new_state.rates.completed == 7
    assert "maxAge 20s" in decision.reason and "target" not in decision.reason
    # 50 waiting at 2 tasks/s per replica: 2 replicas start them all within the 19 s deadline.
    assert resized == {"invoice": 2}
    client.delete(completions.key(invoices, "invoice"))


def test_every_local_pool_keeps_a_promise_by_default_and_a_policy_file_can_change_or_drop_it(tmp_path):
    from bookingctl.autoscale import load_policies

    assert {q: p.max_age for q, p in DEFAULT_POLICIES.items()} == {"email": 20, "invoice": 120, "audit": 60,
                                                                   "webhook": 30}
    assert all(p.max_age > p.polling_interval and p.pod_start_seconds < 10
               and p.replica_concurrency == (16 if q == "webhook" else 4) for q, p in DEFAULT_POLICIES.items())
    path = tmp_path / "policy.json"
    path.write_text('{"email": {"maxAge": 10}, "audit": {"maxAge": null}}')
    policies = load_policies(path)
    assert policies["email"].max_age == 10 and policies["audit"].max_age is None
    assert policies["invoice"] == DEFAULT_POLICIES["invoice"]


def test_every_queue_has_a_local_policy_and_takes_overrides():
    """`bookingctl up` scales every queue's pool, the webhook worker's included (`--scale webhook=1:3`)."""
    from booking_core.messaging.contracts import QUEUES
    from bookingctl.autoscale import load_policies

    policies = load_policies(None, ["webhook=2:5"])
    assert set(policies) == set(QUEUES) and "webhook" in QUEUES
    assert (policies["webhook"].min_replica_count, policies["webhook"].max_replica_count) == (2, 5)
    with pytest.raises(ValueError, match="QUEUE one of email, invoice, audit, webhook"):
        load_policies(None, ["sms=1:2"])


def test_a_promise_at_risk_pauses_the_looser_pools_and_lifts_only_its_own_pauses(
        redis_url, database_url, no_queue_pauses):
    """The tighter promise first (booking_scaling.yielding): real Redis ages, real pauses in Postgres."""
    import time

    from booking_core.queues import pauses
    from bookingctl.cpu_yield import ACTOR

    db_conn = no_queue_pauses
    namespace = f"as-{uuid.uuid4().hex[:8]}"
    broker = RedisBroker(url=redis_url, namespace=namespace)

    @dramatiq.actor(broker=broker, queue_name="email", actor_name="send_confirmation")
    def send_confirmation(n: int) -> None:  # pragma: no cover - never run
        pass

    # Given five emails that have waited 10 s (half of email's 20 s maxAge), and audit paused by a person
    waited = int(time.time() * 1000) - 10_000
    for i in range(5):
        broker.enqueue(send_confirmation.message(i).copy(message_timestamp=waited))
    pauses.pause(db_conn, "audit", actor="cli:ops@host", reason="a person's pause")
    scaler = Autoscaler(DEFAULT_POLICIES, redis_url, namespace, cores=8, database_url=database_url)
    running = {q: 1 for q in DEFAULT_POLICIES}
    try:
        scaler.tick(running, lambda q, n: None, now=0)
        # Then every pool with a longer promise is paused by the runner, but the person's pause is theirs
        held = pauses.paused(db_conn)
        assert {q: p.paused_by for q, p in held.items()} == {"invoice": ACTOR, "webhook": ACTOR,
                                                              "audit": "cli:ops@host"}
        assert "email (oldest 10s of maxAge 20s)" in held["invoice"].reason
        # When the emails are out, the runner lifts its own pauses only
        broker.client.delete(f"{namespace}:email", f"{namespace}:email.msgs")
        scaler.tick(running, lambda q, n: None, now=2)
        assert {q: p.paused_by for q, p in pauses.paused(db_conn).items()} == {"audit": "cli:ops@host"}
        # A runner killed while its pools yielded left them paused: the next one lifts them at start
        pauses.pause(db_conn, "invoice", actor=ACTOR, reason="left by a killed runner")
        scaler.release()
        assert set(pauses.paused(db_conn)) == {"audit"}
        # Old emails in a queue a person paused are no risk to yield to: no CPU would start them
        for i in range(5):
            broker.enqueue(send_confirmation.message(i).copy(message_timestamp=waited))
        pauses.pause(db_conn, "email", actor="cli:ops@host", reason="SMTP incident")
        scaler.tick(running, lambda q, n: None, now=4)
        assert set(pauses.paused(db_conn)) == {"audit", "email"}
    finally:
        scaler.close()
        broker.client.delete(f"{namespace}:email", f"{namespace}:email.msgs")
        broker.close()
