"""The tracing middleware in a process without the OpenTelemetry SDK (tracing off, the default).

No exporter is configured in these tests, so the global tracer provider is
OpenTelemetry's proxy: spans here record nothing.  A context that arrives
with a message must still reach the work (and the next hop) unchanged.
"""

from __future__ import annotations

import dramatiq
from opentelemetry import trace

from booking_core.telemetry.tracing import OPTION, TracingMiddleware, current_trace_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CARRIER = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}


def _message(options: dict) -> dramatiq.Message:
    return dramatiq.Message(queue_name="email", actor_name="send_confirmation_email", args=(), kwargs={},
                            options=options)


def test_tracing_is_off_in_these_tests():
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_a_worker_without_tracing_runs_the_task_in_the_context_the_message_carries():
    middleware, message = TracingMiddleware(), _message({OPTION: dict(CARRIER)})
    middleware.before_process_message(None, message)
    try:
        assert current_trace_id() == TRACE_ID
    finally:
        middleware.after_process_message(None, message)
    assert current_trace_id() is None


def test_a_message_without_a_context_runs_outside_any_trace():
    middleware, message = TracingMiddleware(), _message({})
    middleware.before_process_message(None, message)
    assert current_trace_id() is None
    middleware.after_process_message(None, message)
    assert current_trace_id() is None


def test_a_relay_without_tracing_passes_the_context_on_and_adds_none():
    middleware = TracingMiddleware()
    carried, bare = _message({OPTION: dict(CARRIER)}), _message({})
    for message in (carried, bare):
        middleware.before_enqueue(None, message, 0)
        middleware.after_enqueue(None, message, 0)
    assert carried.options[OPTION]["traceparent"].split("-")[1] == TRACE_ID
    assert OPTION not in bare.options
