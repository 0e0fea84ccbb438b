"""The relay's Prometheus metrics, served by `main` on `BOOKING_METRICS_PORT`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUBLISHED = Counter("booking_relay_published", "Outbox messages published to Redis, by queue.", ["queue"])
FAILURES = Counter("booking_relay_failures", "Relay loop failures, by kind (redis, postgres).", ["kind"])
BATCH_SECONDS = Histogram("booking_relay_batch_duration_seconds", "Time to publish and delete one outbox batch.",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
RECONCILED = Counter("booking_relay_reconciled", "Tasks re-published by the reconciler (their message was lost), "
                     "by queue.", ["queue"])
EVENTS_COMPACTED = Counter("booking_relay_events_compacted", "Booking events deleted by the event log's compaction "
                           "(older than BOOKING_EVENT_HISTORY_DAYS and not their task's latest).")
