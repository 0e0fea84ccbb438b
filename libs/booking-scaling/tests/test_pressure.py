"""The accept path's latency signal: the API's own histogram, read as Prometheus text.

The histograms here are real prometheus_client Histograms with the API's buckets,
exposed with generate_latest(), as the API's /metrics serves them.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from booking_scaling.policy import PolicyError
from booking_scaling.pressure import LATENCY_METRIC, LatencyBudget, LatencyReading, LatencyWatch, judge, quantile

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
ROUTE = "/api/v1/bookings"
BUDGET = LatencyBudget(metrics_url="http://127.0.0.1:8000/metrics", p99_budget_seconds=0.1, min_requests=20)


class Api:
    """The API's latency histogram in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(LATENCY_METRIC, "Time to answer an HTTP request.", ["route", "method"],
                                 registry=self.registry, buckets=BUCKETS)

    def serve(self, seconds: float, n: int = 1, method: str = "POST", route: str = ROUTE) -> None:
        for _ in range(n):
            self.latency.labels(route=route, method=method).observe(seconds)

    def read(self) -> LatencyReading:
        return LatencyReading.parse(generate_latest(self.registry).decode(), ROUTE)


def test_a_fast_api_is_within_budget():
    api = Api()
    before = api.read()
    api.serve(0.004, 400)
    verdict = judge(before, api.read(), BUDGET, 2)
    assert not verdict.saturated
    assert verdict.reason == "/api/v1/bookings p99 5 ms over 2s (400 requests), budget 100 ms"


def test_a_slow_tail_over_one_percent_is_saturated():
    api = Api()
    before = api.read()
    api.serve(0.004, 390)
    api.serve(0.3, 10, method="GET")  # the dashboard list counts too: same route
    verdict = judge(before, api.read(), BUDGET, 2)
    assert verdict.saturated
    assert "p99 " in verdict.reason and "(400 requests), budget 100 ms" in verdict.reason


def test_only_the_requests_between_the_readings_count():
    api = Api()
    api.serve(2.0, 1000)  # an old slow spell
    before = api.read()
    api.serve(0.004, 100)
    assert not judge(before, api.read(), BUDGET, 2).saturated


def test_other_routes_do_not_count():
    api = Api()
    before = api.read()
    api.serve(0.004, 100)
    api.serve(3.0, 100, route="/api/v1/dead-letters")
    assert not judge(before, api.read(), BUDGET, 2).saturated


def test_too_few_requests_or_a_first_reading_hold_nothing():
    api = Api()
    before = api.read()
    api.serve(3.0, 19)
    few = judge(before, api.read(), BUDGET, 2)
    assert not few.saturated and "19 requests in 2s, fewer than minRequests 20" in few.reason
    assert judge(None, api.read(), BUDGET, 2).reason == "/api/v1/bookings p99: first reading"


def test_a_restarted_api_says_nothing():
    api = Api()
    api.serve(0.5, 500)
    before = api.read()
    fresh = Api()
    fresh.serve(0.5, 100)
    verdict = judge(before, fresh.read(), BUDGET, 2)
    assert not verdict.saturated and "counters restarted" in verdict.reason


def test_series_of_several_pods_are_summed():
    text = "\n".join(
        f'{LATENCY_METRIC}_bucket{{le="{le}",method="POST",route="{ROUTE}",pod="{pod}"}} {n}'
        for pod in ("a", "b") for le, n in (("0.1", 10), ("+Inf", 12)))
    reading = LatencyReading.parse(f"# TYPE {LATENCY_METRIC} histogram\n{text}\n", ROUTE)
    assert reading.buckets == ((0.1, 20.0), (float("inf"), 24.0))


def test_text_without_the_histogram_is_an_error_and_a_route_not_yet_served_is_empty():
    with pytest.raises(ValueError, match="no booking_http_request_duration_seconds histogram"):
        LatencyReading.parse("# TYPE up gauge\nup 1\n", ROUTE)
    assert Api().read() == LatencyReading(())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0005, 0.003, 0.008, 0.02, 0.07, 0.2, 0.7, 3.0, 9.0]), min_size=1, max_size=300))
def test_p99_lies_in_the_bucket_that_holds_the_true_p99(latencies):
    api = Api()
    before = api.read()
    for seconds in latencies:
        api.serve(seconds)
    estimate = quantile(0.99, before, api.read())
    ranked = sorted(latencies)
    true = ranked[max(0, -(-99 * len(ranked) // 100) - 1)]
    upper = next((b for b in BUCKETS if true <= b), BUCKETS[-1])
    lower = max((b for b in BUCKETS if b < true), default=0.0)
    assert lower <= estimate <= upper


@pytest.mark.parametrize(("spec", "field"), [
    ({"metricsUrl": "ftp://x"}, "acceptPath.metricsUrl"),
    ({"route": "api"}, "acceptPath.route"),
    ({"p99BudgetSeconds": 0}, "acceptPath.p99BudgetSeconds"),
    ({"minRequests": 0}, "acceptPath.minRequests"),
    ("yes", "acceptPath"),
])
def test_invalid_budgets_are_refused_naming_the_field(spec, field):
    with pytest.raises(PolicyError, match=field.replace(".", r"\.")):
        LatencyBudget.from_spec(spec)


def test_budget_from_spec_and_defaults():
    assert LatencyBudget.from_spec(None) == LatencyBudget()
    assert LatencyBudget.from_spec({"metricsUrl": "http://api:8000/metrics", "p99BudgetSeconds": 0.25}) == \
        LatencyBudget(metrics_url="http://api:8000/metrics", p99_budget_seconds=0.25)


def test_a_watch_judges_each_reading_against_the_last_good_one():
    api, watch = Api(), LatencyWatch(BUDGET)
    text = lambda: generate_latest(api.registry).decode()  # noqa: E731
    assert watch.observe(text(), 0).reason.endswith("first reading")
    api.serve(0.3, 50)
    slow = watch.observe(text(), 2)
    assert slow.saturated and "over 2s (50 requests)" in slow.reason
    broken = watch.observe("not prometheus text {", 4)
    assert not broken.saturated and broken.reason.startswith("API latency unreadable (ValueError")
    api.serve(0.3, 50)
    assert watch.observe(text(), 6).reason.endswith("first reading")  # a new interval after a failure
    assert watch.unreadable(TimeoutError("timed out")).reason == \
        "API latency unreadable (TimeoutError: timed out); nothing held"
