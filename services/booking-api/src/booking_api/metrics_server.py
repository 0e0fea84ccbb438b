"""The API's `/metrics`, served by the gunicorn master on a port of its own.

Why the master: it outlives its workers and sees every worker's request
metrics through prometheus_client's multiprocess files, so one scrape gets the
whole pod.  Why a port of its own: the HTTP port is the one an Ingress routes,
every path of it, and metrics need no token; the metrics port is reached only
by what the NetworkPolicy lets in.

The pipeline gauges (outbox backlog, paused queues, queue depth) are read at
scrape time: two small SQL queries on one connection and one Redis Lua snapshot
per scrape, so they are exact, not sampled.  The master forks workers at any time, so this module opens no pool
and shares no client with them: each scrape opens one short-lived Postgres
connection, and the Redis client is this collector's own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

from booking_core import db
from booking_core.config import Settings
from booking_core.messaging.contracts import QUEUES
from booking_core.queues import pauses
from booking_core.tasks import deadletters
from booking_core.webhooks import deliveries as webhook_deliveries
from booking_scaling.depth import QueueReader

log = logging.getLogger(__name__)

#: A scrape must answer even when a server hangs: each source gets this long.
READ_TIMEOUT_SECONDS = 2


class PipelineCollector:
    """Scrape-time gauges: outbox backlog and age, paused queues, queue depth and age per queue."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._redis: redis.Redis | None = None

    def _postgres(self) -> tuple[dict, frozenset[str], dict[str, int], dict]:
        """Count and age of the outbox, the paused queues, the open dead letters and the webhooks' figures,
        on a connection of its own."""
        with db.connect(self.settings.database_url, autocommit=True, connect_timeout=READ_TIMEOUT_SECONDS,
                        options=f"-c statement_timeout={READ_TIMEOUT_SECONDS * 1000}") as conn:
            outbox = conn.execute(
                "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) AS age"
                " FROM outbox").fetchone()
            return (outbox, frozenset(pauses.paused(conn)), deadletters.open_by_queue(conn),
                    webhook_deliveries.stats(conn))

    def _queues(self):
        """One atomic snapshot of every queue's depth."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.settings.redis_url, socket_timeout=READ_TIMEOUT_SECONDS,
                                               socket_connect_timeout=READ_TIMEOUT_SECONDS)
        return QueueReader(self._redis, self.settings.redis_namespace).snapshot(QUEUES)

    def collect(self):
        """Yield the gauges; a source that cannot be read is reported by `booking_pipeline_read_ok`."""
        up = GaugeMetricFamily("booking_pipeline_read_ok", "1 if the last scrape read this source.",
                               labels=["source"])
        try:
            row, paused, dead, hooks = self._postgres()
            yield GaugeMetricFamily("booking_outbox_messages", "Messages waiting in the outbox.", value=row["n"])
            yield GaugeMetricFamily("booking_outbox_oldest_age_seconds",
                                    "Age of the oldest outbox message (0 when empty).", value=float(row["age"]))
            gauge = GaugeMetricFamily("booking_queue_paused", "1 while the queue is paused (workers start none "
                                      "of its messages), else 0.", labels=["queue"])
            for queue in QUEUES:  # the fixed list: a label never comes from a row
                gauge.add_metric([queue], 1 if queue in paused else 0)
            yield gauge
            letters = GaugeMetricFamily("booking_dead_letters_open", "Open dead letters per queue, from their "
                                        "Postgres record (Redis' copy expires; this one waits for a human).",
                                        labels=["queue"])
            for queue, n in dead.items():
                letters.add_metric([queue], n)
            yield letters
            yield from _webhook_gauges(hooks)
            up.add_metric(["postgres"], 1)
        except Exception:  # noqa: BLE001 - a scrape must not fail because a server is down
            log.warning("metrics: outbox, pause and dead-letter read failed", exc_info=True)
            up.add_metric(["postgres"], 0)
        try:
            depths = self._queues()
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


def _webhook_gauges(hooks: dict):
    """The webhooks' delivery backlog and endpoint health, platform-wide (no tenant or URL label: both are
    the tenants' own, and unbounded)."""
    d = GaugeMetricFamily("booking_webhook_deliveries", "Webhook deliveries still being tried (open) and dead.",
                          labels=["state"])
    d.add_metric(["open"], hooks["open"])
    d.add_metric(["dead"], hooks["dead"])
    yield d
    yield GaugeMetricFamily("booking_webhook_overdue_seconds", "How long the longest-due open delivery has been due "
                            "(0: none is waiting past its time).", value=hooks["overdue_seconds"])
    e = GaugeMetricFamily("booking_webhook_endpoints", "Webhook endpoints by state (auto_disabled: disabled by the "
                          "platform after failing continuously).", labels=["state"])
    for state in ("healthy", "failing", "auto_disabled", "disabled"):
        e.add_metric([state], hooks[state])
    yield e
    yield GaugeMetricFamily("booking_webhook_longest_failing_seconds", "The longest run of failures of an enabled "
                            "endpoint; it is disabled when this reaches BOOKING_WEBHOOKS_DISABLE_AFTER_SECONDS.",
                            value=hooks["longest_failing_seconds"])


def registry(settings: Settings, multiproc_dir: str | Path) -> CollectorRegistry:
    """What the metrics port exposes: every worker's request metrics, then the pipeline gauges."""
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=str(multiproc_dir))
    reg.register(PipelineCollector(settings))
    return reg


def serve(settings: Settings, multiproc_dir: str | Path, host: str, port: int):
    """Start the metrics HTTP server in a daemon thread; return (server, thread)."""
    return start_http_server(port, addr=host, registry=registry(settings, multiproc_dir))
