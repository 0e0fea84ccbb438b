"""Request metrics of the API: how many requests, how long they took.

Labelled by route template (`/api/v1/bookings/<booking_id>`), method and
status, never by anything a client sent.  Under gunicorn every worker writes
them to `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode), and
the gunicorn master serves their sum, with the pipeline gauges, on a metrics
port of its own (`booking_api.metrics_server`): the API's HTTP port has no
`/metrics`, so an Ingress that routes every path to it exposes none.
"""

from __future__ import annotations

import time

from flask import Flask, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Request metrics live here (in multiprocess mode their values go to files instead).
REQUEST_REGISTRY = CollectorRegistry()
REQUESTS = Counter("booking_http_requests", "HTTP requests answered, by route template, method and status.",
                   ["route", "method", "status"], registry=REQUEST_REGISTRY)
LATENCY = Histogram("booking_http_request_duration_seconds", "Time to answer an HTTP request.",
                    ["route", "method"], registry=REQUEST_REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
#: Set by each /readyz: 1 while a dependency the API can do without (Redis) does not answer. Under gunicorn
#: the most recent probe's value wins, whichever worker answered it (`livemostrecent`).
DEGRADED = Gauge("booking_api_degraded", "1 while /readyz finds this dependency unreachable and the API runs "
                 "degraded (still ready: bookings are accepted, their work waits in the outbox), else 0.",
                 ["dependency"], registry=REQUEST_REGISTRY, multiprocess_mode="livemostrecent")


def init_app(app: Flask) -> None:
    """Time and count every request."""

    @app.before_request
    def _start_timer():
        g.metrics_start = time.perf_counter()

    @app.after_request
    def _observe(response):
        start = g.pop("metrics_start", None)
        if start is not None:
            route = request.url_rule.rule if request.url_rule else "<unmatched>"
            LATENCY.labels(route, request.method).observe(time.perf_counter() - start)
            REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        return response
#: The admission limiter (booking_api.admission).  No tenant label: tenants are unbounded.
LIMITED = Counter("booking_api_rate_limited", "Bookings refused with 429 because their tenant's plan rate was used "
                  "up.", registry=REQUEST_REGISTRY)
FAIL_OPEN = Counter("booking_api_limiter_fail_open", "Bookings admitted without a limit check because the "
                    "limiter's store (Redis) did not answer.", registry=REQUEST_REGISTRY)
