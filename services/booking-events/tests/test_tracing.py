"""booking-events joins the caller's trace, as the API does (the real `booking-events` process, a real
OTLP/HTTP receiver): a console action's request span continues an incoming `traceparent`, and the
Postgres work of the action nests under it."""

from __future__ import annotations

import http.client
import secrets
from urllib.parse import urlencode

import pytest
from otlp_receiver import OtlpReceiver

from booking_core.model import tenants
from e2e_helpers import wait_until


@pytest.fixture
def receiver():
    with OtlpReceiver() as r:
        yield r


def test_a_console_action_joins_the_trace_of_its_traceparent(events_process, receiver, db_conn, tenant):
    admin = tenants.create_token(db_conn, tenant["id"], admin=True, label="Traced")
    proc = events_process(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
                          OTEL_TRACES_SAMPLER="always_on")
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    c = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
    c.request("POST", "/ops/sign-in", body=urlencode({"token": admin["token"]}),
              headers={"Content-Type": "application/x-www-form-urlencoded",
                       "traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert c.getresponse().status == 303
    c.close()

    def joined():
        spans = receiver.trace(trace_id)
        servers = [s for s in spans if s.kind == "SERVER" and s.service == "booking-events"]
        return (spans, servers[0]) if servers and any(s.parent_id == servers[0].span_id for s in spans) else None

    spans, server = wait_until(joined, timeout=30, what="the sign-in's span and its SQL in the caller's trace")
    assert server.parent_id == parent_id, "the request span continues the incoming traceparent"
    sql = [s for s in spans if s.parent_id == server.span_id]
    assert sql and all(s.kind == "CLIENT" and s.service == "booking-events" for s in sql)
