"""Prometheus metrics of the API: requests, latency, outbox backlog and queue depth.

Request metrics are labelled by route template (`/api/v1/bookings/<booking_id>`),
method and status, never by anything a client sent.  Under gunicorn with
several workers, `PROMETHEUS_MULTIPROC_DIR` must name a writable dir (the
gunicorn config clears it at start); `/metrics` then sums all workers.
Outbox and queue depth are read at scrape time: one SQL query and one Redis
Lua snapshot per scrape, so they are exact, not sampled.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from booking_core import db
from booking_core.contracts import QUEUES
from booking_core.queues import QueueReader

log = logging.getLogger(__name__)

#: Request metrics live here (in multiprocess mode their values go to files instead).
REQUEST_REGISTRY = CollectorRegistry()
REQUESTS = Counter("booking_http_requests", "HTTP requests answered, by route template, method and status.",
                   ["route", "method", "status"], registry=REQUEST_REGISTRY)
LATENCY = Histogram("booking_http_request_duration_seconds", "Time to answer an HTTP request.",
                    ["route", "method"], registry=REQUEST_REGISTRY,
                    buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class PipelineCollector:
    """Scrape-time gauges: outbox backlog and age, queue depth and age per queue."""

    def __init__(self, app: Flask):
        self.app = app

    def collect(self):
        from booking_api.database import get_redis, settings

        with self.app.app_context():
            s = settings()
            up = GaugeMetricFamily("booking_pipeline_read_ok", "1 if the last scrape read this source.",
                                   labels=["source"])
            try:
                with db.pool(s.database_url, max_size=s.db_pool_max).connection(timeout=2) as conn:
                    row = conn.execute(
                        "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS age"
                        " FROM outbox").fetchone()
                yield GaugeMetricFamily("booking_outbox_messages", "Messages waiting in the outbox.", value=row["n"])
                yield GaugeMetricFamily("booking_outbox_oldest_age_seconds",
                                        "Age of the oldest outbox message (0 when empty).", value=float(row["age"]))
                up.add_metric(["postgres"], 1)
            except Exception:  # noqa: BLE001 - a scrape must not fail because a server is down
                log.warning("metrics: outbox read failed", exc_info=True)
                up.add_metric(["postgres"], 0)
            try:
                depths = QueueReader(get_redis(), s.redis_namespace).snapshot(QUEUES)
                msgs = GaugeMetricFamily("booking_queue_messages", "Messages per queue and state.",
                                         labels=["queue", "state"])
                age = GaugeMetricFamily("booking_queue_oldest_age_seconds",
                                        "How long the oldest ready message of each queue has waited.", labels=["queue"])
                for d in depths:
                    for state in ("ready", "in_flight", "delayed", "dead"):
                        msgs.add_metric([d.queue, state], getattr(d, state))
                    age.add_metric([d.queue], d.oldest_ready_age_ms / 1000)
                yield msgs
                yield age
                up.add_metric(["redis"], 1)
            except Exception:  # noqa: BLE001
                log.warning("metrics: queue snapshot failed", exc_info=True)
                up.add_metric(["redis"], 0)
            yield up


def _registries(app: Flask) -> list[CollectorRegistry]:
    """What /metrics exposes: request metrics (of every worker), then the pipeline gauges."""
    requests = REQUEST_REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        requests = CollectorRegistry()
        multiprocess.MultiProcessCollector(requests)
    pipeline = CollectorRegistry()
    pipeline.register(PipelineCollector(app))
    return [requests, pipeline]


def init_app(app: Flask) -> None:
    """Time every request and serve /metrics."""
    registries = _registries(app)

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

    @app.get("/metrics")
    def metrics():
        """Prometheus text exposition."""
        return Response(b"".join(generate_latest(r) for r in registries), mimetype=CONTENT_TYPE_LATEST)
