"""Traces across the queue and Prometheus metrics, on the real platform processes.

One traced platform serves both tests (each start costs ~10 CPU-s): each stops one component and
starts it again, looks at its own booking's trace, and counts metrics as differences from before it
booked or in a queue whose backlog only it makes.
"""

from __future__ import annotations

import pytest
from otlp_receiver import OtlpReceiver

from e2e_helpers import scrape_metrics, wait_until

pytestmark = pytest.mark.e2e

TRACE_ENV = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "always_on"}


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def platform(new_platform, receiver):
    """The module's platform, every process exporting every span to `receiver`."""
    platform = new_platform("observability", {**TRACE_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
    platform.start()
    yield platform
    platform.stop()


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def test_one_trace_links_the_request_to_every_task_including_retries(platform, api_of, receiver):
    api = api_of(platform)
    platform.stop_component("smtp")  # the first email attempt fails and is retried
    booking = api.book(name="Traced Guest", email="traced@example.com")
    trace_id = booking["trace_id"]
    assert trace_id and all(t["trace_id"] == trace_id for t in booking["tasks"].values())
    api.wait_states(booking["id"], {"email": "retrying"})
    platform.start_component("smtp")
    api.wait_states(booking["id"], {"email": "done", "invoice": "done", "audit": "done"})

    def complete():
        spans = receiver.trace(trace_id)
        need = [by_name(spans, f"process {q}") for q in ("invoice", "audit")]
        emails = by_name(spans, "process email")
        return spans if all(need) and len(emails) >= 2 and any(s.status_code != 2 for s in emails) else None

    spans = wait_until(complete, timeout=30, what="all spans of the booking's trace")
    ids = {s.span_id: s for s in spans}
    (server,) = [s for s in spans if s.kind == "SERVER" and s.attributes.get("http.method", "POST") == "POST"
                 and s.service == "booking-api"]
    assert server.parent_id == ""  # the request is the root

    def reaches_server(span) -> bool:
        while span.parent_id:
            if span.parent_id == server.span_id:
                return True
            span = ids[span.parent_id]
        return False

    for queue in ("email", "invoice", "audit"):
        producers = [s for s in by_name(spans, f"send {queue}") if reaches_server(s)]
        assert producers, f"no producer span for {queue} under the request"
        producer = producers[0]
        assert producer.kind == "PRODUCER" and producer.service == "booking-relay"
        assert producer.attributes["messaging.system"] == "dramatiq"
        assert producer.attributes["messaging.destination.name"] == queue
        assert producer.attributes["messaging.operation.type"] == "send"
        consumers = [s for s in by_name(spans, f"process {queue}") if s.parent_id == producer.span_id]
        assert consumers, f"no consumer span of {queue} under its producer"
        for c in consumers:
            assert c.kind == "CONSUMER" and c.service == f"{queue}-worker"
            assert c.attributes["messaging.operation.type"] == "process"
            assert c.attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]

    emails = sorted(by_name(spans, "process email"), key=lambda s: s.attributes["messaging.dramatiq.retries"])
    assert [s.attributes["messaging.dramatiq.retries"] for s in emails][:2] == [0, 1]
    assert emails[0].status_code == 2 and emails[0].attributes["error.type"] == "TemporaryEmailError"
    assert emails[-1].status_code != 2
    # The worker's own SQL nests under its consumer span.
    invoice = by_name(spans, "process invoice")[0]
    assert any(s.parent_id == invoice.span_id and s.kind == "CLIENT" for s in spans)


def value(samples: dict, name: str, **labels) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_every_process_serves_metrics_that_move_with_bookings(platform, api_of):
    api = api_of(platform)
    urls = platform.metrics_urls
    assert set(urls) == {"api", "relay", "email-worker-1", "invoice-worker-1", "audit-worker-1", "webhook-worker-1",
                         "events"}
    before = {name: scrape_metrics(url) for name, url in urls.items()}

    platform.stop_component("invoice-worker-1")
    ids = [api.book(name=f"Metric {i}", email=f"m{i}@example.com")["id"] for i in range(3)]
    for booking_id in ids:
        api.wait_states(booking_id, {"email": "done", "audit": "done"})
    api_metrics = wait_until(lambda: (m := scrape_metrics(urls["api"])) and value(
        m, "booking_queue_messages", queue="invoice", state="ready") == 3 and m, what="3 ready invoices")
    assert value(api_metrics, "booking_queue_oldest_age_seconds", queue="invoice") > 0
    assert value(api_metrics, "booking_http_requests_total", route="/api/v1/bookings", method="POST",
                 status="201") - value(before["api"], "booking_http_requests_total", route="/api/v1/bookings",
                                       method="POST", status="201") == 3
    assert value(api_metrics, "booking_http_request_duration_seconds_count", route="/api/v1/bookings") >= 3
    assert ("booking_outbox_messages", ()) in api_metrics
    assert ("booking_outbox_oldest_age_seconds", ()) in api_metrics
    relay = scrape_metrics(urls["relay"])
    assert value(relay, "booking_relay_published_total", queue="invoice") - value(
        before["relay"], "booking_relay_published_total", queue="invoice") == 3

    platform.start_component("invoice-worker-1")
    for booking_id in ids:
        # A wait, not a speed check: a worker that starts (WeasyPrint's imports) and renders three PDFs
        # beside another test worker's platform took more than the default minute at load 20.
        api.wait_states(booking_id, {"invoice": "done"}, timeout=180)
    wait_until(lambda: value(scrape_metrics(urls["api"]), "booking_queue_messages", queue="invoice",
                             state="ready") == 0, what="the invoice queue to drain")
    for queue in ("email", "invoice", "audit"):
        worker = scrape_metrics(urls[f"{queue}-worker-1"])
        assert value(worker, "dramatiq_messages_total", queue_name=queue) >= 3, queue
        assert ("dramatiq_message_errors_total" in {n for n, _ in worker}) or queue
        assert any(n == "dramatiq_message_duration_milliseconds_count" for n, _ in worker)
    # No label carries client input: every label value is from a fixed vocabulary or a route template.
    events = scrape_metrics(urls["events"])
    assert events, "the events service serves Prometheus text"
    for samples in (api_metrics, relay, events):
        for (_, labels) in samples:
            for key, val in labels:
                assert "@" not in val and "Metric" not in val and not any(i in val for i in ids), (key, val)
