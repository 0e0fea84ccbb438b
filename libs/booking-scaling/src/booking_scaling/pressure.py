"""Is the accept path over its latency budget?  The signal that holds scale-ups.

More workers mean more load on the Postgres the API writes to, and on a small
box more CPU taken from the API: adding them while bookings already wait makes
the accept path slower and drains the backlog no faster (issue 9).  So both
actuators ask, before a scale-up, whether the API answers within its budget.

The signal is the API's own request-latency histogram
(`booking_http_request_duration_seconds`), read from its Prometheus text: the
p99 of the requests answered between two readings.  It measures exactly the
thing the budget is about (a Postgres that is busy without hurting the
API is no reason to hold; one that hurts it shows here), costs one HTTP GET of
a page the API already serves, takes no connection from the database pool the
API needs, and is the same source locally (gunicorn sums its workers) and on a
cluster (Prometheus' `/federate` sums the pods).  Everything here is pure: the
callers fetch the text and keep the previous reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from booking_scaling.policy import PolicyError, _int_at_least, _number_at_least

#: The API's request latency histogram (booking_api.metrics.LATENCY).
LATENCY_METRIC = "booking_http_request_duration_seconds"


@dataclass(frozen=True)
class AcceptPath:
    """The decision core's input: is the accept path saturated, and in words why (or why not)."""

    saturated: bool
    reason: str


@dataclass(frozen=True, kw_only=True)
class LatencyBudget:
    """Where the API's latency is read and what it may be (spec block `acceptPath`)."""

    #: Prometheus text with the API's histogram; None: no signal, nothing is ever held.
    metrics_url: str | None = None
    #: The route template whose requests count (POST = accept, GET = dashboard list).
    route: str = "/api/v1/bookings"
    #: p99 above this many seconds is over budget.
    p99_budget_seconds: float = 0.1
    #: Fewer requests than this between two readings say nothing: not held.
    min_requests: int = 20

    def __post_init__(self) -> None:
        if self.metrics_url is not None and (
                not isinstance(self.metrics_url, str) or not self.metrics_url.startswith(("http://", "https://"))):
            raise PolicyError(f"acceptPath.metricsUrl must be an http(s) URL, got {self.metrics_url!r}")
        if not isinstance(self.route, str) or not self.route.startswith("/"):
            raise PolicyError(f"acceptPath.route must be a route template starting with /, got {self.route!r}")
        _number_at_least(self.p99_budget_seconds, 0, "acceptPath.p99BudgetSeconds", strict=True)
        _int_at_least(self.min_requests, 1, "acceptPath.minRequests")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LatencyBudget:
        """From the camelCase `acceptPath` block (absent or null: no signal)."""
        if spec is None:
            return cls()
        if not isinstance(spec, Mapping):
            raise PolicyError(f"acceptPath must be an object, got {spec!r}")
        names = {"metricsUrl": "metrics_url", "route": "route", "p99BudgetSeconds": "p99_budget_seconds",
                 "minRequests": "min_requests"}
        return cls(**{attr: spec[camel] for camel, attr in names.items() if spec.get(camel) is not None})


@dataclass(frozen=True)
class LatencyReading:
    """Cumulative request counts per bucket upper bound (seconds; +inf last), summed over series."""

    buckets: tuple[tuple[float, float], ...]

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    @classmethod
    def parse(cls, text: str, route: str) -> LatencyReading:
        """The histogram's buckets for `route`, every method and pod summed.

        No series for the route yet (no such request since the API started) is an empty
        reading; text without the histogram at all is a ValueError (a wrong URL).
        """
        sums: dict[float, float] = {}
        found = False
        for family in text_string_to_metric_families(text):
            if family.name != LATENCY_METRIC:
                continue
            found = True
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                    bound = float(sample.labels["le"])
                    sums[bound] = sums.get(bound, 0.0) + sample.value
        if not found:
            raise ValueError(f"no {LATENCY_METRIC} histogram in the text")
        return cls(tuple(sorted(sums.items())))


def quantile(q: float, before: LatencyReading, after: LatencyReading) -> float | None:
    """The q-quantile of the requests between two readings, as Prometheus' histogram_quantile
    estimates it (linear within a bucket; the highest finite bound if it falls in +Inf).

    None when there were no requests, or when the buckets differ or went backwards (a
    restarted API or pod: its counters started again), so the interval tells nothing.
    """
    if not before.buckets:  # no request for the route before: every count starts from 0
        before = LatencyReading(tuple((bound, 0.0) for bound, _ in after.buckets))
    if not after.buckets or [b for b, _ in before.buckets] != [b for b, _ in after.buckets]:
        return None
    deltas = [(bound, a - b) for (bound, b), (_, a) in zip(before.buckets, after.buckets, strict=True)]
    if any(d < 0 for _, d in deltas) or deltas[-1][1] <= 0:
        return None
    rank = q * deltas[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in deltas:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower  # pragma: no cover - the +Inf bucket always holds the rank


def judge(before: LatencyReading | None, after: LatencyReading, budget: LatencyBudget, seconds: float) -> AcceptPath:
    """Saturated when the p99 of the requests between the readings is over budget."""
    what = f"{budget.route} p99"
    if before is None:
        return AcceptPath(False, f"{what}: first reading")
    n = after.count - before.count
    if n < 0:
        return AcceptPath(False, f"{what}: counters restarted")
    if n < budget.min_requests:
        return AcceptPath(False, f"{what}: {n:.0f} requests in {seconds:.0f}s, "
                                 f"fewer than minRequests {budget.min_requests}")
    p99 = quantile(0.99, before, after)
    if p99 is None:
        return AcceptPath(False, f"{what}: counters restarted")
    words = (f"{what} {p99 * 1000:.0f} ms over {seconds:.0f}s ({n:.0f} requests), "
             f"budget {budget.p99_budget_seconds * 1000:.0f} ms")
    return AcceptPath(p99 > budget.p99_budget_seconds, words)


class LatencyWatch:
    """Judges each fetched /metrics text against the reading before it (the caller fetches).

    A text that cannot be fetched or parsed holds nothing: a broken probe must not
    freeze a pool; the next good reading starts a new interval.
    """

    def __init__(self, budget: LatencyBudget):
        self.budget = budget
        self._last: tuple[float, LatencyReading] | None = None

    def observe(self, text: str, now: float) -> AcceptPath:
        """The verdict on the requests since the last good reading."""
        try:
            reading = LatencyReading.parse(text, self.budget.route)
        except ValueError as e:
            return self.unreadable(e)
        before, self._last = self._last, (now, reading)
        if before is None:
            return judge(None, reading, self.budget, 0)
        return judge(before[1], reading, self.budget, now - before[0])

    def unreadable(self, error: BaseException) -> AcceptPath:
        """The verdict when the text could not be had: not saturated, and why."""
        self._last = None
        return AcceptPath(False, f"API latency unreadable ({type(error).__name__}: {error}); nothing held")
