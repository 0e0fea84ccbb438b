"""booking-events joins traces as the API does: booking_core.telemetry's set-up, OpenTelemetry's aiohttp instrumentor.

With `OTEL_*` asking for export, each request (a stream, a progress page, a
console action) is a SERVER span that continues the caller's `traceparent`,
and the Postgres and Redis calls it makes (psycopg and redis, instrumented by
the same set-up, run in threads that carry the context) nest under it.
Without `OTEL_*` nothing is instrumented: tracing costs nothing.  Paths to
leave untraced (health checks) go in OpenTelemetry's standard
`OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS`.
"""

from __future__ import annotations

from booking_core.telemetry.sdk import setup_tracing


def instrument() -> bool:
    """Set tracing up, once per process, before the aiohttp Application is made; whether it is on.

    The instrumentor puts its middleware first in every Application made after this call.
    """
    if not setup_tracing("booking-events"):
        return False
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    instrumentor = AioHttpServerInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return True
