"""The 429 of a tenant the process holds refused, answered before Flask (booking_api.held_refusals)."""

from __future__ import annotations

import pytest

from booking_api.metrics import LIMITED, REQUESTS
from booking_core.model import plans
from booking_core.model.plans import Plan


@pytest.fixture
def held(client, auth, booking_body, db_conn, tenant):
    """This test's tenant on a plan of one booking every 100 s, used up and refused once by Redis."""
    plans.set_plan(db_conn, tenant["id"], Plan("tight", 0.01, 1, 1), actor="test")
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 201
    first = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert first.status_code == 429
    return first


def without_seconds(text: str) -> str:
    import re

    return re.sub(r"\d+", "N", text)


def test_a_held_refusal_is_the_views_429_header_for_header(client, auth, booking_body, held):
    again = client.post("/api/v1/bookings", json=booking_body(), headers=auth)
    assert again.status_code == 429
    assert list(again.headers.keys()) == list(held.headers.keys())
    for name in ("Content-Type", "Content-Length", "RateLimit-Policy", "X-Content-Type-Options",
                 "X-Frame-Options", "Content-Security-Policy"):
        assert again.headers[name] == held.headers[name], name
    for name in ("Retry-After", "RateLimit"):  # the seconds left count down
        assert without_seconds(again.headers[name]) == without_seconds(held.headers[name]), name
    assert 99 <= int(again.headers["Retry-After"]) <= 100
    body, first = again.get_json(), held.get_json()
    assert body.keys() == first.keys() and body["type"].endswith("/rate-limited")
    assert without_seconds(body["detail"]) == without_seconds(first["detail"])


def test_a_held_refusal_is_counted_like_any_429(client, auth, booking_body, held):
    answered = REQUESTS.labels("/api/v1/bookings", "POST", "429")
    before, limited = answered._value.get(), LIMITED._value.get()
    for _ in range(3):
        assert client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code == 429
    assert answered._value.get() == before + 3
    assert LIMITED._value.get() == limited + 3


def test_a_held_tenant_gets_its_429_whatever_its_body(client, auth, held, db_conn, tenant):
    """Refused before its body is read: the client is told to wait, which no fix of the body changes."""
    for body, kind in ((b"{not json", "application/json"), (b"<booking/>", "application/xml"), (b"", None)):
        headers = auth | ({"Content-Type": kind} if kind else {})
        answer = client.post("/api/v1/bookings", data=body, headers=headers)
        assert answer.status_code == 429, (body, answer.get_json())
    assert db_conn.execute("SELECT count(*) AS n FROM bookings WHERE tenant_id = %s",
                           (tenant["id"],)).fetchone()["n"] == 1


def test_what_is_not_a_plain_refusal_still_goes_to_the_app(client, auth, booking_body, held):
    # A key that is no key is a 400 (the view parses it before it refuses).
    assert client.post("/api/v1/bookings", json=booking_body(), headers=auth | {"Idempotency-Key": ""}
                       ).status_code == 400
    # An unknown token is a 401, not the held tenant's 429.
    assert client.post("/api/v1/bookings", json=booking_body(),
                       headers={"Authorization": "Bearer nope"}).status_code == 401
    # Reads are not limited; another route's POST is not this one.
    assert client.get("/api/v1/bookings", headers=auth).status_code == 200
    assert client.post("/api/v1/bookings/", json=booking_body(), headers=auth).status_code != 429


def test_only_the_refusal_redis_decided_is_traced(app, auth, booking_body, db_conn, tenant):
    """One span per repeat would say nothing new and, in a flood, fill the exporter's queue the others share."""
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    try:
        plans.set_plan(db_conn, tenant["id"], Plan("tight", 0.01, 1, 1), actor="test")
        client = app.test_client()
        codes = [client.post("/api/v1/bookings", json=booking_body(), headers=auth).status_code for _ in range(5)]
    finally:
        FlaskInstrumentor().uninstrument_app(app)
    assert codes == [201, 429, 429, 429, 429]
    statuses = [span.attributes.get("http.status_code", span.attributes.get("http.response.status_code"))
                for span in exporter.get_finished_spans() if span.name.startswith("POST")]
    assert statuses == [201, 429]
