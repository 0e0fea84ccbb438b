"""The relay's Prometheus metrics, served by `main` on `BOOKING_METRICS_PORT`."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

PUBLISHED = Counter("booking_relay_published", "Outbox messages published to Redis, by queue.", ["queue"])
FAILURES = Counter("booking_relay_failures", "Relay loop failures, by kind (redis, postgres).", ["kind"])
BATCH_SECONDS = Histogram("booking_relay_batch_duration_seconds", "Time to publish and delete one outbox batch.",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RECONCILED = Counter("booking_relay_reconciled", "Tasks re-published by the reconciler (their message was lost), "
                     "by queue.", ["queue"])
EVENTS_COMPACTED = Counter("booking_relay_events_compacted", "Booking events deleted by the event log's compaction "
                           "(older than BOOKING_EVENT_HISTORY_DAYS and not their task's latest).")


class BacklogCollector:
    """The latest backlog report (`outbox_relay.backlog`) as gauges; swapped whole, so a scrape sees one reading."""

    def __init__(self) -> None:
        self.report = None

    def collect(self):
        report = self.report
        if report is None:
            return
        outbox = GaugeMetricFamily("booking_outbox_queue_messages", "Rows waiting in the outbox per queue: due "
                                   "(waiting for their turn) or later (a retry's backoff).", labels=["queue", "state"])
        age = GaugeMetricFamily("booking_queue_oldest_waiting_age_seconds", "Age of each queue's oldest task not "
                                "yet started, counting its time in the outbox.", labels=["queue"])
        for b in report.queues:
            outbox.add_metric([b.queue, "waiting"], b.waiting)
            outbox.add_metric([b.queue, "later"], b.later)
            age.add_metric([b.queue], report.oldest_age_ms.get(b.queue, 0) / 1000)
        tenants = GaugeMetricFamily("booking_tenant_backlog_messages", "Outbox rows per queue of the tenants with "
                                    "the most, and `other` for the rest.", labels=["queue", "tenant"])
        tenant_age = GaugeMetricFamily("booking_tenant_oldest_age_seconds", "Age of the oldest due outbox row per "
                                       "queue of the tenants with the most, and `other`.", labels=["queue", "tenant"])
        for t in report.tenants:
            tenants.add_metric([t.queue, t.tenant], t.messages)
            tenant_age.add_metric([t.queue, t.tenant], max(0, report.at_ms - t.oldest_ms) / 1000 if t.oldest_ms else 0)
        yield from (outbox, age, tenants, tenant_age)


BACKLOG = BacklogCollector()
REGISTRY.register(BACKLOG)
