"""The webhooks' scrape-time gauges on the API's metrics port: delivery backlog and endpoint health."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from booking_api.metrics_server import PipelineCollector
from booking_core.webhooks import deliveries, endpoints, sealing
from relay_helpers import create_booking


def scrape(settings) -> dict[tuple, float]:
    reg = CollectorRegistry()
    reg.register(PipelineCollector(settings))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(reg).decode()) for s in f.samples}


def test_webhook_gauges_follow_deliveries_and_endpoint_health(settings, db_conn, tenant):
    before = scrape(settings)
    endpoint, _ = endpoints.create(db_conn, sealing.Sealer([sealing.new_key()]), tenant["id"],
                                   {"url": "https://hooks.example/"})
    booking_id = create_booking(db_conn, tenant["id"])
    [event] = db_conn.execute("SELECT id::text FROM webhook_events WHERE booking_id = %s", (booking_id,))
    deliveries.fan_out(db_conn, event["id"], tenant["id"])
    after = scrape(settings)
    assert after[("booking_webhook_deliveries", (("state", "open"),))] == before[
        ("booking_webhook_deliveries", (("state", "open"),))] + 1
    assert after[("booking_webhook_endpoints", (("state", "healthy"),))] == before[
        ("booking_webhook_endpoints", (("state", "healthy"),))] + 1
    # The open delivery, due an hour ago and not yet sent: the oldest overdue is that hour, whatever else waits.
    db_conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 hour'"
                    " WHERE endpoint_id = %s", (endpoint["id"],))
    assert scrape(settings)[("booking_webhook_overdue_seconds", ())] >= 3600
    db_conn.execute("UPDATE webhook_endpoints SET failing_since = now() - interval '2 hours' WHERE id = %s",
                    (endpoint["id"],))
    failing = scrape(settings)
    assert failing[("booking_webhook_endpoints", (("state", "failing"),))] == before[
        ("booking_webhook_endpoints", (("state", "failing"),))] + 1
    assert failing[("booking_webhook_longest_failing_seconds", ())] >= 7200
    db_conn.execute("UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'failing' WHERE id = %s",
                    (endpoint["id"],))
    disabled = scrape(settings)
    assert disabled[("booking_webhook_endpoints", (("state", "auto_disabled"),))] == before[
        ("booking_webhook_endpoints", (("state", "auto_disabled"),))] + 1
    assert ("booking_queue_messages", (("queue", "webhook"), ("state", "ready"))) in disabled
