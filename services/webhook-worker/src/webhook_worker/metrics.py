"""The webhook worker's own metrics: attempts by outcome and their latency.

Created on first use, never at import: Dramatiq's Prometheus middleware turns on
prometheus_client's multiprocess mode when the worker process boots, and a
metric made before that would live in this process only, invisible to the
exposition server.  Labels are a fixed set (no tenant, URL or status text:
those are the tenants' and unbounded).
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_metrics: dict = {}


def _get() -> dict:
    with _lock:
        if not _metrics:
            from prometheus_client import Counter, Histogram

            _metrics["attempts"] = Counter("booking_webhook_attempts", "Webhook delivery attempts by outcome "
                                           "(busy: put back, the endpoint's slots were full; tenant_busy: put back, "
                                           "the tenant's were (half the threads); breaker_open: put back, "
                                           "its circuit breaker is open; skipped: the delivery "
                                           "was closed or its endpoint disabled).", ["outcome"])
            _metrics["latency"] = Histogram("booking_webhook_attempt_seconds", "Duration of webhook attempts, "
                                            "connect to the end of the answer.",
                                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30))
        return _metrics


def attempt(outcome: str, seconds: float | None = None) -> None:
    m = _get()
    m["attempts"].labels(outcome).inc()
    if seconds is not None:
        m["latency"].observe(seconds)
