"""The Dramatiq Redis broker every process shares, configured from Settings.

Workers call `setup_broker()` in their `broker` module (Dramatiq's own layout:
`dramatiq pkg.broker pkg.actors`); the relay calls it to publish.  Retries,
backoff and dead-lettering stay Dramatiq's own middleware; the task-state
middleware is appended after Retries so it sees whether a failure will be
retried or has been dead-lettered.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from booking_core.config import Settings


def make_broker(settings: Settings, *, track_tasks: bool = False) -> RedisBroker:
    """A Redis broker for `settings`; `track_tasks` adds the task-state middleware."""
    broker = RedisBroker(
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
    )
    # Outermost, so the consumer span is current around every other middleware's work.
    from booking_core.tracing import TracingMiddleware

    broker.add_middleware(TracingMiddleware(), before=type(broker.middleware[0]))
    if track_tasks:
        from booking_core.taskstate import TaskStateMiddleware

        broker.add_middleware(TaskStateMiddleware(settings), before=Retries)
    return broker


def setup_broker(settings: Settings | None = None, *, track_tasks: bool = True,
                 service_name: str | None = None) -> RedisBroker:
    """Build a worker's broker from the environment and make it Dramatiq's global broker.

    Also sets up tracing (`OTEL_*`) and Dramatiq's Prometheus middleware for the
    worker named `service_name`.
    """
    settings = settings or Settings.from_env()
    if service_name:
        from booking_core.telemetry import setup_tracing

        setup_tracing(service_name)
    broker = make_broker(settings, track_tasks=track_tasks)
    if service_name:
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    dramatiq.set_broker(broker)
    return broker


def actor_options(settings: Settings, queue: str) -> dict:
    """Dramatiq Retries options for the actor on `queue`, from its RetryPolicy."""
    policy = settings.retry[queue]
    return {
        "max_retries": policy.max_retries,
        "min_backoff": policy.min_backoff_ms,
        "max_backoff": policy.max_backoff_ms,
    }
