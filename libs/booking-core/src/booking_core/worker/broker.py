"""The Dramatiq Redis broker every process shares, configured from Settings.

Each worker's `broker` module reads the environment once (a bad variable stops
the worker: `booking_settings.boot`) and calls `setup_broker(settings, ...)`
(Dramatiq's own layout: `dramatiq pkg.broker pkg.actors`); its actors take
`settings` from that module.  The relay calls `make_broker` to publish.
Retries, backoff and dead-lettering stay Dramatiq's own middleware; ours is
placed by name around them:

- `TracingMiddleware` first, ahead of Dramatiq's defaults (AgeLimit, TimeLimit,
  ...), so the consumer span is current around every other middleware's work
  and a skipped (too old) message still ends its span;
- `TaskStateMiddleware` just before `Retries`, so its after-hook runs after
  Retries' and sees whether a failure will be retried or was dead-lettered;
- `DatabaseOutageRetries` just after `Retries`, so its after-hook runs before
  Retries decides, and a Postgres outage costs no retry budget;
- `QueuePauseMiddleware` and `PresenceMiddleware` (with the task-state middleware: every worker), last;
  it only acts at worker boot and from its own poll thread, so its place in the
  chain does not matter;
- `Lifeline` (every worker process) and our `Prometheus` (its metrics fork): both
  die with Dramatiq's parent, and a worker that can no longer work ends
  (`booking_core.worker.lifeline`, `booking_core.worker.exposition`); they act at process boot only.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries, default_middleware

from booking_core.config import Settings
from booking_core.tasks.outage import DatabaseOutageRetries
from booking_core.telemetry.tracing import TracingMiddleware


def make_broker(settings: Settings, *, track_tasks: bool = False) -> RedisBroker:
    """A Redis broker for `settings`; `track_tasks` (a worker's broker) adds the task-state and pause middleware.

    A worker's broker under the fair ordering sends its retries through the outbox
    (`booking_core.worker.delays`), so they wait their turn like new work.
    """
    kind, extra = RedisBroker, {}
    if track_tasks and settings.relay_order == "fair":
        from booking_core.worker.delays import OutboxDelayBroker

        kind, extra = OutboxDelayBroker, {"database_url": settings.database_url, "pool_max": settings.db_pool_max,
                                          "acquire_timeout": min(2.0, settings.db_acquire_timeout_ms / 1000)}
    broker = kind(
        **extra,
        url=settings.redis_url,
        namespace=settings.redis_namespace,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
        middleware=[TracingMiddleware(), *(m() for m in default_middleware)],
    )
    broker.add_middleware(DatabaseOutageRetries(), after=Retries)
    if track_tasks:
        from booking_core.tasks.taskstate import TaskStateMiddleware

        broker.add_middleware(
            TaskStateMiddleware(database_url=settings.database_url, pool_max=settings.db_pool_max,
                                # Short: a state write is retried, and holds up its thread.
                                connect_timeout=min(2.0, settings.db_acquire_timeout_ms / 1000)),
            before=Retries,
        )
        from booking_core.queues.pausewatch import QueuePauseMiddleware
        from booking_core.queues.presence import PresenceMiddleware

        broker.add_middleware(QueuePauseMiddleware(database_url=settings.database_url,
                                                   poll_ms=settings.pause_poll_ms))
        broker.add_middleware(PresenceMiddleware(host=settings.worker_host or None))
    return broker


def setup_broker(settings: Settings, *, track_tasks: bool = True,
                 service_name: str | None = None) -> RedisBroker:
    """Build a worker's broker from its `settings` and make it Dramatiq's global broker.

    Also sets up tracing (`OTEL_*`) and Prometheus metrics (Dramatiq's middleware,
    with a fork that dies with its parent) for the worker named `service_name`, and
    ties every worker process to its Dramatiq parent (`Lifeline`).
    """
    from booking_core import db

    db.set_backend_nice(settings.db_backend_nice)
    if service_name:
        from booking_core.telemetry.sdk import setup_tracing

        setup_tracing(service_name)
    broker = make_broker(settings, track_tasks=track_tasks)
    if service_name:
        from booking_core.worker.exposition import Prometheus

        broker.add_middleware(Prometheus())
    from booking_core.worker.lifeline import Lifeline

    # Half the heartbeat timeout: a worker that cannot log that long ends, and its
    # messages come back within one and a half heartbeat timeouts.
    broker.add_middleware(Lifeline(stall_seconds=settings.heartbeat_timeout_ms / 2000))
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
